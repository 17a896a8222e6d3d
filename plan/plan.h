/* plan.h — the execution plan: what a lowered graph asks a device to do, as pure data.
 *
 * A plan is a list of buffers and a list of steps. Lowering (codegen/lower.c) writes it, the
 * memory planner (plan/plan_memory.c) gives activation buffers their arena offsets, and an
 * executor (runtime/cpu/exec_cpu.c) walks it. Nothing here refers to LLVM or to the graph IR's
 * nodes: a kernel step names its kernel by string, and the executor asks a resolver callback
 * for the function, so the same plan runs from a JIT or from a linked object file.
 *
 * Buffers
 *  - param, input: bound by external name to caller memory before a run (input may be
 *    optional only if no step uses it — lowering drops what needs an absent input);
 *  - output: allocated by the executor, read back by output name after a run;
 *  - activation: lives in the one arena at `offset` bytes (64-byte aligned), live from the
 *    first step that touches it to the last (inclusive); two activations whose live ranges
 *    overlap never overlap in the arena;
 *  - constant: reserved for data baked into the plan (none yet).
 * A buffer holds `numel` elements of `dtype`, row-major.
 *
 * Steps run in order; each finishes (all threads) before the next starts.
 *  - KERNEL: call kernel `name` with args[i] pointing at element args[i].offset of buffer
 *    args[i].buf, split over grid dim 0 of extent `grid0` (see codegen.h's host ABI);
 *    `work` estimates the cost of one dim-0 index (elements touched), for the grain size.
 *  - GEMM: rt_gemm_f32 with the descriptor fields below; a/b/c/bias are buffer references
 *    (bias.buf -1: none). With an epilogue kernel (epi.name set) the GEMM adds no bias itself:
 *    the kernel epi then finishes C in place, C = act(C + bias) elementwise — the kernel IR of
 *    the fused bias add and activation (codegen/lower.c), rendered by each backend like any
 *    plan kernel, with args and the extent grid0 = batch·M (C's rows; C is contiguous). `act`
 *    names that activation (rt_act) for a library whose GEMM has the same function built in
 *    (cuBLASLt: relu, tanh-gelu): such a backend may apply bias and activation in the GEMM
 *    and skip epi. Without epi, act is RT_ACT_NONE.
 *  - ATTENTION: the fused attention of ir.md over strided q/k/v/mask/out (strides in elements;
 *    the last dim of q, k, v and out is contiguous); mask.buf -1: none.
 *  - COPY: bytes from src to dst.
 *  - CHECK_IDS: every element x of integer buffer ids (numel elements) must satisfy
 *    lo <= x < hi (or x < 0 when allow_negative); else the run fails with message
 *    "WHAT: id X is outside [lo, hi)". It guards gathers against out-of-range ids.
 *  - WRITE_ROWS (cache_write): for each of `outer` blocks, copies rows_src rows of row_bytes
 *    from src to rows [p, p + rows_src) of the rows_dst-row block of dst, p read at run time
 *    from the integer buffer pos (dtype pos_dtype); p < 0 or p + rows_src > rows_dst fails
 *    the run ("cache_write: position P ..."). dst may be an INPUT buffer: lowering writes a
 *    cache_write in place into its cache operand when that is an input used by nothing else,
 *    so the caller's bound memory is updated by the run (the KV cache that a prefill and a
 *    decode program share, passes/kv_cache.c). Otherwise dst is the node's own buffer, filled
 *    from the cache by a COPY step first.
 *  - ATTENTION_GRAD (attention_grad, ir.md): from the forward operands (fwd: q, k, v, mask
 *    with their strides) and dy, computes any of dq [B, H, T, D], dk [B, G, S, D],
 *    dv [B, G, S, E] and dmask [B, H, T, S] (the scores' gradient), each contiguous; one step
 *    serves every attention_grad of the same operands. Deterministic: parallel over (b, kv
 *    head), query heads of a kv head accumulated in order.
 *  - SCATTER_ADD (embedding_grad): dst (rows × width, contiguous) = 0, then for j = 0..n-1 in
 *    order, row ids[j] of dst += row j of src (src rows src_stride apart). ids (integer
 *    buffer, dtype ids_dtype) are range-checked by an earlier CHECK_IDS step. Deterministic:
 *    parallel over column ranges, ids visited in order.
 *  - SUM_ROWS (a sum over leading axes, e.g. a bias gradient): dst (width, contiguous) = the
 *    sum of the rows of src (rows of width contiguous f32, src_stride apart), rows added in
 *    order; parallel over column ranges (deterministic), vectorized along the row.
 *
 * Library steps as kernels. ATTENTION, ATTENTION_GRAD, SUM_ROWS, SCATTER_ADD and WRITE_ROWS
 * also carry the step itself as plan kernels, `lib[0..n_lib)`, run in order (codegen/
 * library.c builds their kernel IR, so every backend renders the one description). A backend
 * with a routine of its own for the step (the CPU: OpenBLAS-blocked attention, vectorized
 * column sums) may run that instead; the others launch the kernels. Their extra buffers:
 *  - ATTENTION lse (buf -1: none): f32 [B·H·T], each query row's log-sum-exp of its allowed
 *    scores (−inf for a row without one), written by the forward kernel when the plan also
 *    differentiates this attention: the backward recomputes the probabilities from it.
 *  - ATTENTION_GRAD fwd.lse: the forward's lse, or a scratch buffer of this step that its
 *    first kernel fills (the forward is not in the plan); delta: scratch f32 [B·H·T], each
 *    row's Σ dy·out (flash attention's D).
 */
#ifndef LOOM_RT_PLAN_H
#define LOOM_RT_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

typedef enum { RT_BUF_PARAM, RT_BUF_INPUT, RT_BUF_OUTPUT, RT_BUF_ACTIVATION, RT_BUF_CONSTANT } rt_buf_kind;

typedef struct {
    char *name;        /* external name for param/input/output; a description otherwise (malloc) */
    ir_dtype dtype;
    int64_t numel;
    rt_buf_kind kind;
    int64_t offset;    /* activation: byte offset in the arena (set by the memory planner) */
} rt_plan_buffer;

/* Element `offset` of buffer `buf`. */
typedef struct {
    int buf;
    int64_t offset;
} rt_plan_ref;

typedef enum { RT_STEP_KERNEL, RT_STEP_GEMM, RT_STEP_ATTENTION, RT_STEP_COPY, RT_STEP_CHECK_IDS,
               RT_STEP_WRITE_ROWS, RT_STEP_ATTENTION_GRAD, RT_STEP_SCATTER_ADD, RT_STEP_SUM_ROWS } rt_step_kind;
#define RT_STEP_KIND_COUNT 9

#define RT_PLAN_MAX_BATCH 6 /* = RT_GEMM_MAX_BATCH_DIMS */

/* The activation of a GEMM's epilogue kernel, by name: what a library with epilogues built in
 * needs to know to do the same (the formulas are the ops' kernel IR, ir/unary.def's kir_ID). */
typedef enum {
    RT_ACT_NONE,        /* no epilogue kernel, or one with an activation no library has */
    RT_ACT_GELU_TANH,   /* gelu {approx = tanh} */
    RT_ACT_GELU_ERF,    /* gelu {approx = erf} */
    RT_ACT_RELU,        /* relu */
    RT_ACT_SILU,        /* silu */
} rt_act;
#define RT_ACT_COUNT 5

typedef struct {
    char *name;        /* kernel symbol (malloc); NULL: no kernel (a GEMM without epilogue) */
    int n_args;
    rt_plan_ref *args; /* (malloc) */
    int64_t grid0;     /* extent of grid dim 0 */
    int64_t work;      /* estimated elements touched per dim-0 index */
    bool loops;        /* the kernel has loops (a row or reduction kernel): for statistics */
} rt_plan_kernel;

typedef struct {
    int nbatch;
    int64_t batch[RT_PLAN_MAX_BATCH];
    int64_t stride_a[RT_PLAN_MAX_BATCH], stride_b[RT_PLAN_MAX_BATCH], stride_c[RT_PLAN_MAX_BATCH];
    int64_t M, N, K;
    int trans_a, trans_b;
    int64_t lda, ldb, ldc;
    double alpha, beta;
    int act;           /* rt_act: the activation of epi */
    rt_plan_ref a, b, c, bias;
    rt_plan_kernel epi; /* the epilogue kernel (name NULL: none): C = act(C + bias) in place */
    /* a weight-only quantized B (fuse.c joins B's dequantize to the GEMM): qbits 8
     * or 4 (0: B is float), b its codes as stored (i8, or u8 pairs of 4-bit codes along the
     * rows; [K, N], or [N, K] with trans_b; packed), b_scales one scale (f32 or f16) per
     * qgroup codes along K ([K/qgroup, N], or [N, K/qgroup] with trans_b) */
    int qbits;
    int64_t qgroup;
    rt_plan_ref b_scales;
} rt_plan_gemm;

typedef struct {
    rt_plan_ref q, k, v, mask, out;
    rt_plan_ref lse;   /* f32 [B·H·T] row log-sum-exps written by the kernel (buf -1: none) */
    int64_t B, H, G, T, S, D, E;
    int64_t q_stride[3], k_stride[3], v_stride[3], out_stride[3]; /* (b, h, t) per tensor */
    int64_t mask_stride[4];  /* (b, h, t, s); 0 where the mask broadcasts */
    int causal;
    double scale;      /* already resolved: never 0 */
} rt_plan_attention;

typedef struct {
    rt_plan_ref src, dst;
    int64_t bytes;
} rt_plan_copy;

typedef struct {
    rt_plan_ref ids;
    int64_t numel, lo, hi;
    bool allow_negative;
    char *what;        /* (malloc) */
} rt_plan_check;

typedef struct {
    rt_plan_ref dst, src, pos;
    ir_dtype pos_dtype;
    int64_t outer, rows_dst, rows_src, row_bytes;
} rt_plan_write_rows;

typedef struct {
    rt_plan_attention fwd;   /* q, k, v, mask, shapes, strides, causal, scale; out: the forward
                                attention's output when the plan has it (buf -1: none) */
    rt_plan_ref dy;          /* [B, H, T, E] strided like q: dy_stride (last dim contiguous) */
    int64_t dy_stride[3];
    rt_plan_ref dq, dk, dv, dmask; /* contiguous results; buf -1: not wanted */
    rt_plan_ref delta;       /* scratch f32 [B·H·T] of the kernels: Σ dy·out per row */
    bool lse_own;            /* fwd.lse is this step's scratch (its first kernel computes it) */
} rt_plan_attention_grad;

typedef struct {
    rt_plan_ref ids, src, dst;
    ir_dtype ids_dtype;
    int64_t n, width, rows;  /* n ids; src rows of width; dst rows × width */
    int64_t src_stride;      /* elements between consecutive src rows */
} rt_plan_scatter;

typedef struct {
    rt_plan_ref src, dst;
    int64_t rows, width;     /* dst[c] = Σ over r < rows of src[r·src_stride + c], c < width */
    int64_t src_stride;
} rt_plan_sum_rows;

#define RT_PLAN_MAX_LIB 3 /* kernels of a library step at most */

/* Where a step came from, set by lowering (a plan read from a file has none): the source op of
 * its group ("matmul"), its block instance ("block(l=3)"), the .loom location ("gpt2.loom:57"),
 * its result type, and the FLOPs (ir cost rules) and bytes (operands from outside the group and
 * its results) of one run. For traces and reports; executors ignore it. */
typedef struct {
    char *op, *scope, *loc, *type; /* malloc'd; NULL when unknown */
    double flops, bytes;
} rt_plan_origin;

typedef struct {
    rt_step_kind kind;
    rt_plan_origin origin;
    rt_plan_kernel kernel;
    rt_plan_gemm gemm;
    rt_plan_attention attn;
    rt_plan_copy copy;
    rt_plan_check check;
    rt_plan_write_rows rows;
    rt_plan_attention_grad agrad;
    rt_plan_scatter scatter;
    rt_plan_sum_rows sum_rows;
    int n_lib;               /* a library step's kernels (see above), run in order */
    rt_plan_kernel lib[RT_PLAN_MAX_LIB];
} rt_plan_step;

/* The plan kernels step st launches when a backend runs all of it as kernels: a kernel step's
 * kernel, a GEMM's epilogue kernel, a library step's kernels; their number (at most
 * RT_PLAN_MAX_LIB) into out. */
static inline int rt_plan_step_kernels(const rt_plan_step *st, const rt_plan_kernel **out)
{
    int n = 0;
    if (st->kind == RT_STEP_KERNEL)
        out[n++] = &st->kernel;
    else if (st->kind == RT_STEP_GEMM && st->gemm.epi.name)
        out[n++] = &st->gemm.epi;
    for (int i = 0; i < st->n_lib; i++)
        out[n++] = &st->lib[i];
    return n;
}

typedef struct {
    int n_bufs, cap_bufs;
    rt_plan_buffer *bufs;
    int n_steps, cap_steps;
    rt_plan_step *steps;
    int64_t arena_bytes;  /* set by the memory planner: the arena's size (the planned peak) */
} rt_plan;

/* Frees everything a plan owns (not the struct itself) and zeroes it. */
static inline void rt_plan_clear(rt_plan *p)
{
    for (int i = 0; i < p->n_bufs; i++)
        free(p->bufs[i].name);
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].kernel.name);
        free(p->steps[i].kernel.args);
        free(p->steps[i].gemm.epi.name);
        free(p->steps[i].gemm.epi.args);
        free(p->steps[i].check.what);
        for (int l = 0; l < p->steps[i].n_lib; l++) {
            free(p->steps[i].lib[l].name);
            free(p->steps[i].lib[l].args);
        }
        free(p->steps[i].origin.op);
        free(p->steps[i].origin.scope);
        free(p->steps[i].origin.loc);
        free(p->steps[i].origin.type);
    }
    free(p->bufs);
    free(p->steps);
    memset(p, 0, sizeof *p);
}

#endif
