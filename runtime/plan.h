/* plan.h — the execution plan: what a lowered graph asks a device to do, as pure data.
 *
 * A plan is a list of buffers and a list of steps. Lowering (codegen/lower.c) writes it, the
 * memory planner (passes/plan_memory.c) gives activation buffers their arena offsets, and an
 * executor (runtime/exec_cpu.c) walks it. Nothing here refers to LLVM or to the graph IR's
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
 *    (bias.buf -1: none).
 *  - ATTENTION: the fused attention of ir.md over strided q/k/v/mask/out (strides in elements;
 *    the last dim of q, k, v and out is contiguous); mask.buf -1: none.
 *  - COPY: bytes from src to dst.
 *  - CHECK_IDS: every element x of integer buffer ids (numel elements) must satisfy
 *    lo <= x < hi (or x < 0 when allow_negative); else the run fails with message
 *    "WHAT: id X is outside [lo, hi)". It guards gathers against out-of-range ids.
 */
#ifndef LOOM_RT_PLAN_H
#define LOOM_RT_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include "ir.h"

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

typedef enum { RT_STEP_KERNEL, RT_STEP_GEMM, RT_STEP_ATTENTION, RT_STEP_COPY, RT_STEP_CHECK_IDS } rt_step_kind;

#define RT_PLAN_MAX_BATCH 6 /* = RT_GEMM_MAX_BATCH_DIMS */

typedef struct {
    char *name;        /* kernel symbol (malloc) */
    int n_args;
    rt_plan_ref *args; /* (malloc) */
    int64_t grid0;     /* extent of grid dim 0 */
    int64_t work;      /* estimated elements touched per dim-0 index */
} rt_plan_kernel;

typedef struct {
    int nbatch;
    int64_t batch[RT_PLAN_MAX_BATCH];
    int64_t stride_a[RT_PLAN_MAX_BATCH], stride_b[RT_PLAN_MAX_BATCH], stride_c[RT_PLAN_MAX_BATCH];
    int64_t M, N, K;
    int trans_a, trans_b;
    int64_t lda, ldb, ldc;
    double alpha, beta;
    int act;           /* rt_act (gemm.h) */
    rt_plan_ref a, b, c, bias;
} rt_plan_gemm;

typedef struct {
    rt_plan_ref q, k, v, mask, out;
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
    rt_step_kind kind;
    rt_plan_kernel kernel;
    rt_plan_gemm gemm;
    rt_plan_attention attn;
    rt_plan_copy copy;
    rt_plan_check check;
} rt_plan_step;

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
        free(p->steps[i].check.what);
    }
    free(p->bufs);
    free(p->steps);
    memset(p, 0, sizeof *p);
}

#endif
