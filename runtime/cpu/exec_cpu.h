/* exec_cpu.h — the CPU executor: runs an execution plan (plan.h) on this machine, as the plan
 * walker (runtime/exec.h) over the CPU's operations (exec_cpu.c).
 *
 * rt_exec_new allocates the arena (the plan's arena_bytes, page-aligned) and every output
 * buffer, and resolves each kernel step's function through the caller's resolver — the
 * executor never sees LLVM: a JIT, or a static symbol table of a linked object, answers
 * `name -> function`. Params and inputs are bound to caller memory by external name (the data
 * must be in the buffer's dtype and stay alive and unchanged during runs). rt_exec_run walks
 * the steps: kernels split over grid dim 0 on the thread pool (rt_pool_parallel_for_grain),
 * GEMMs through rt_gemm_f32 (OpenBLAS), attention through rt_attention_f32, copies, id checks.
 * One run at a time per executor.
 */
#ifndef LOOM_RT_EXEC_H
#define LOOM_RT_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/exec_stats.h"
#include "plan/plan.h"
#include "runtime/threadpool.h"

/* A host kernel: runs grid points with dim-0 index in [begin, end) (codegen.h's ABI). */
typedef void (*rt_kernel_fn)(void **args, int64_t begin, int64_t end);
/* Returns the kernel called name, or NULL (then it may report why through d). */
typedef rt_kernel_fn (*rt_kernel_resolver)(void *ctx, const char *name, ir_diag *d);

typedef struct rt_exec rt_exec;

/* Prepares plan p (which must outlive the executor) for running on pool (NULL: the caller's
 * thread only). NULL on error (an unresolved kernel, out of memory), reported through d. */
rt_exec *rt_exec_new(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, ir_diag *d);
/* The same; with lib_kernels, library steps (attention, attention_grad, sum_rows,
 * scatter_add, write_rows) run their plan kernels (plan.h, codegen/library.c) instead of this
 * executor's routines, so the resolver must know those kernels too: how the CPU op suite and
 * LOOM_CPU_LIBRARY=kernels (engine/program_cpu.c) run the one kernel-IR description. */
rt_exec *rt_exec_new_lib(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, bool lib_kernels,
                         ir_diag *d);
void rt_exec_free(rt_exec *e);

/* Binds the param or input called name to data. False (reported) if the plan has none. */
bool rt_exec_bind(rt_exec *e, const char *name, const void *data, ir_diag *d);

/* The output buffer called name (valid until rt_exec_free), or NULL. */
void *rt_exec_output(rt_exec *e, const char *name);

/* Runs every step. False on an unbound param/input or a failed id check, reported through d. */
bool rt_exec_run(rt_exec *e, ir_diag *d);

/* The plan walker underneath (runtime/exec.h: binding device memory, async runs). */
struct rt_walker;
struct rt_walker *rt_exec_walker(rt_exec *e);

/* Bytes of the arena that runs so far have touched (resident pages, by mincore): the measured
 * activation peak, to set against the planned one (the plan's arena_bytes). */
int64_t rt_exec_arena_touched(const rt_exec *e);

/* Faults the whole arena in now, on the pool's threads (rt_pool_touch), so that no timed run
 * pays for its first touch (training's step 1); rt_exec_arena_touched then counts it all. */
void rt_exec_touch_arena(rt_exec *e);

/* Profiling: time every step (a clock read per step) and sum the times by kind. */
void rt_exec_profile(rt_exec *e, bool on);
/* The step counts of e's plan and the times summed so far. */
rt_exec_stats rt_exec_stats_get(const rt_exec *e);

/* ---- the fused attention kernel (attention_cpu.c) ----------------------------------------- */
/* out = softmax(scale · q·kᵀ + mask, causal) · v per ir.md's attention, over the strided
 * tensors of a (see plan.h), the pointers already offset; parallel over (b, h, query blocks). */
void rt_attention_f32(const rt_plan_attention *a, const float *q, const float *k, const float *v,
                      const float *mask, float *out, rt_pool *pool);

/* ---- its backward (attention_grad_cpu.c) --------------------------------------------------- */
/* plan.h's ATTENTION_GRAD: any of dq, dk, dv, dmask (NULL: not wanted) from the strided
 * operands of g (pointers already offset); out: the forward attention's output (strides
 * g->fwd.out_stride) or NULL (then recomputed sums stand in). Parallel over (b, kv head),
 * deterministic. */
void rt_attention_grad_f32(const rt_plan_attention_grad *g, const float *q, const float *k, const float *v,
                           const float *mask, const float *dy, const float *out, float *dq, float *dk, float *dv,
                           float *dmask, rt_pool *pool);

#endif
