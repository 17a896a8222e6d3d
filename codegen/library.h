/* library.h — the library steps of a plan as kernel IR (plan.h, "Library steps as kernels").
 *
 * ATTENTION, ATTENTION_GRAD, SUM_ROWS, SCATTER_ADD, WRITE_ROWS and a GEMM over quantized codes
 * have one description each,
 * a sequential kernel (kir.h) or two, built here from the step's fields and rendered by every
 * backend like any plan kernel: the host JIT (the CPU op suite runs them; the CPU's executor
 * otherwise keeps its OpenBLAS-blocked routines), OpenCL C and PTX. What they compute is the
 * step's semantics in plan.h; how:
 *  - attention: a grid point per (batch, head, tile of QB query rows); the rows' scaled q in
 *    registers, one key at a time (K and V rows loaded once for the tile) with an online
 *    softmax (running max, sum and output accumulators rescaled as the max grows), causal
 *    rows stopping at the tile's last allowed key (a loop bound); the output, and with an lse
 *    buffer each row's log-sum-exp.
 *  - attention_grad (flash attention's backward: probabilities recomputed from the saved
 *    log-sum-exp): a statistics kernel (each row's Δ = dy·out from the forward's output, or
 *    Σ p·dp recomputed, and the lse itself when the forward is not in the plan); a rows kernel
 *    (dq and dmask: per tile of query rows, over the keys); a keys kernel (dk and dv: per tile
 *    of keys, over the query heads of its kv head and their rows, causal rows counted down to
 *    the first that sees the tile). Each grid point owns what it writes and adds in one order:
 *    deterministic, no atomics.
 *  - sum_rows: a grid point per column, rows added in order.
 *  - scatter_add: a grid point per column: the column of dst zeroed, then the src rows added
 *    at their ids in order (an id outside [0, rows) adds nothing, as the CPU's).
 *  - write_rows: one element per grid point, the position read on the device (clamped into
 *    the cache: the executor checks it where it knows it).
 *  - qgemm (a GEMM step whose B is quantized codes, plan.h's qbits; the kernel of backends
 *    whose GEMM library takes f32 only, rt_backend_ops.gemm_codes): a grid point per (batch
 *    entry, tile of up to 8 rows of A, column of C), over B's groups along K: codes converted
 *    as read (int8 bytes, int4 nibbles less 8), each group's sums scaled once, the bias added
 *    unless the step's epilogue kernel adds it.
 * Tile sizes follow the head dims (registers: QB·(D + E) values at most ~128).
 */
#ifndef LOOM_CG_LIBRARY_H
#define LOOM_CG_LIBRARY_H

#include "codegen/kir.h"
#include "plan/plan.h"

/* Builds the kernels of library step `step` of p (nothing for other kinds), named
 * "k<step>_<what>", appends them to *ks (n and cap its count and capacity) and records them
 * in the step's lib[]. The kernels are validated (a failure is a bug: unreachable). */
void cg_library_kernels(rt_plan *p, int step, cg_kernel ***ks, int *n, int *cap);

#endif
