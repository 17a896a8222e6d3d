/* gemm.h — batched GEMM with a fused epilogue, the CPU backend's library call for `matmul`.
 *
 * One call computes, for every batch index b of a (possibly multi-dimensional) batch:
 *
 *     C[b] = epilogue(alpha · op(A[b]) · op(B[b]) + beta · C[b] + bias)
 *
 *     op(A[b]) : (M, K)   A[b] stored (M, K) row-major, or (K, M) when trans_a
 *     op(B[b]) : (K, N)   B[b] stored (K, N) row-major, or (N, K) when trans_b
 *     C[b]     : (M, N)   row-major
 *     bias     : (N)      added to every row (optional)
 *
 * This is ir.md's `matmul` (transpose_a, transpose_b, NumPy-broadcast batch dims) plus what
 * fusion puts around it. Batch dims broadcast through strides: a batch stride of 0 on A or B
 * reuses the same matrix for every index of that dim (rt_gemm_desc_from_shapes computes them
 * for contiguous tensors). As in BLAS, when beta is 0 the old contents of C are ignored (NaNs
 * in C do not propagate). The bias and then the epilogue run after the GEMM, on the pool when
 * one is given. The epilogue is a function of the caller's over rows of C — for plans, the GEMM
 * step's epilogue kernel (plan.h: codegen's kernel IR of the activation, rendered for the host),
 * so no activation formula is written here.
 *
 * The implementation (gemm_cpu.c) calls oneDNN's matmul for large f32 GEMMs (gemm_dnnl.h) and
 * OpenBLAS otherwise; rt_gemm_f64 is the same with cblas_dgemm, for f64 graphs and reference
 * checks. A GEMM of one row (M = 1: a decode step) is a GEMV
 * (cblas_sgemv), which streams B once instead of packing it. Neither is meant to be called from several threads at
 * once: RT_GEMM_BATCH_POOL changes OpenBLAS's (process-wide) thread count for its duration.
 */
#ifndef LOOM_RT_GEMM_H
#define LOOM_RT_GEMM_H

#include <stdint.h>

#include "plan/plan.h"
#include "runtime/threadpool.h"

#define RT_GEMM_MAX_BATCH_DIMS 6  /* IR ranks are ≤ 8: 6 batch dims + (M, K) */

/* How a batch of GEMMs is spread over threads. */
typedef enum {
    RT_GEMM_BATCH_AUTO,    /* pick one of the two below from the shapes (measured heuristic) */
    RT_GEMM_BATCH_SERIAL,  /* loop over the batch; OpenBLAS threads each GEMM itself */
    RT_GEMM_BATCH_POOL,    /* split the batch across the pool, OpenBLAS single-threaded */
} rt_gemm_batch_policy;

typedef struct {
    /* Batch: nbatch dims of sizes batch[0..nbatch) (row-major order: the last varies fastest).
     * nbatch = 0 is a single GEMM. Strides are in elements between consecutive matrices along
     * each dim; stride_a/stride_b 0 broadcasts; stride_c must be nonzero where batch[d] > 1. */
    int nbatch;
    int64_t batch[RT_GEMM_MAX_BATCH_DIMS];
    int64_t stride_a[RT_GEMM_MAX_BATCH_DIMS];
    int64_t stride_b[RT_GEMM_MAX_BATCH_DIMS];
    int64_t stride_c[RT_GEMM_MAX_BATCH_DIMS];

    int64_t M, N, K;
    int trans_a, trans_b;
    /* Leading dims (row-major: elements between rows as stored). 0 means packed: A's is K
     * (M when trans_a), B's is N (K when trans_b), C's is N. */
    int64_t lda, ldb, ldc;

    double alpha, beta;

    /* Epilogue. bias points to N floats for rt_gemm_f32, N doubles for rt_gemm_f64, or NULL.
     * epilogue (or NULL) then finishes rows [row0, row1) of C in place, rows counted over the
     * whole batch (row b·M + r is row r of C[b], b row-major over the batch dims); it is called
     * once for every row, on disjoint ranges that may run concurrently on the pool's threads,
     * each range right after its rows got their bias. */
    const void *bias;
    void (*epilogue)(void *ctx, int64_t row0, int64_t row1);
    void *epilogue_ctx;

    rt_pool *pool;                 /* threads for the epilogue and batch splitting; may be NULL */
    rt_gemm_batch_policy policy;

    /* Weight-only quantized B (rt_gemm_f32 only; qgemm_cpu.c): qbits 8 or 4 (0: B is f32). B
     * then holds codes as stored — [K, N], or [N, K] with trans_b, packed (ld 0), int8 a byte
     * each, int4 two a byte along the row (low nibble first, code + 8) — shared by the whole
     * batch (stride_b 0), and qscales one scale (of qscale_dtype: f32, f16 or bf16) per qgroup
     * codes along K ([K/qgroup, N], or [N, K/qgroup] with trans_b). alpha 1, beta 0. */
    int qbits;
    int64_t qgroup;
    const void *qscales;
    ir_dtype qscale_dtype;
} rt_gemm_desc;

/* A descriptor for one (M, K) x (K, N) GEMM, no batch: alpha 1, beta 0, packed leading dims,
 * no epilogue, no pool, AUTO policy. */
rt_gemm_desc rt_gemm_desc_make(int64_t M, int64_t N, int64_t K);

/* Fills *g for `matmul a, b {transpose_a, transpose_b}` on contiguous row-major tensors
 * a (rank_a dims) and b (rank_b dims), both of rank ≥ 2, per ir.md: batch dims broadcast NumPy
 * style (a dim of size 1, or a missing one, gets stride 0), and C is the contiguous result
 * [broadcast batch..., M, N]. Size-1 result batch dims are dropped. Other fields as
 * rt_gemm_desc_make. Returns NULL on success, or a static message (incompatible K or batch
 * dims, too many batch dims, rank < 2). */
const char *rt_gemm_desc_from_shapes(rt_gemm_desc *g, int rank_a, const int64_t *shape_a,
                                     int rank_b, const int64_t *shape_b, int trans_a, int trans_b);

/* Checks a descriptor: sizes ≥ 0 and within OpenBLAS's int range, leading dims large enough,
 * nbatch within limits, C batches not broadcast. Returns NULL when valid, else a static
 * message naming the broken rule. */
const char *rt_gemm_validate(const rt_gemm_desc *g);

/* Runs the batched GEMM and epilogue described by *g (see the file comment). A, B, C must hold
 * every element the strides and leading dims reach; C must not overlap A or B. Returns 0, or
 * -1 when rt_gemm_validate rejects g (then C is untouched). */
int rt_gemm_f32(const rt_gemm_desc *g, const float *A, const float *B, float *C);
int rt_gemm_f64(const rt_gemm_desc *g, const double *A, const double *B, double *C);

/* The element types of a GEMM with half-precision operands: each of DT_F32, DT_BF16, DT_F16
 * (bias only read when g->bias is set). */
typedef struct {
    ir_dtype a, b, c, bias;
} rt_gemm_types;

/* Runs g (no epilogue, no quantized B) on operands of the types t names, without widening them:
 * oneDNN's half-precision kernels (AVX-512 BF16 on this CPU) sum the products in f32 and round C
 * once. Returns 0 when done, 1 when it cannot run here (oneDNN disabled or missing, or only its
 * reference kernels for these types — C untouched: widen and call rt_gemm_f32), -1 when g is
 * invalid. */
int rt_gemm_half(const rt_gemm_desc *g, const rt_gemm_types *t, const void *A, const void *B, void *C);

/* One GEMM of a quantized B (above): C (ldc) = A (lda) · dequantize(B), on g->pool. */
void rt_qgemm_f32(const rt_gemm_desc *g, const float *A, int64_t lda, const void *B, float *C, int64_t ldc);

#endif
