/* gemm_dnnl.h — one row-major GEMM through oneDNN's matmul (gemm_dnnl.c), used by gemm_cpu.c
 * for the GEMMs it runs on all threads and for half-precision operands (bf16 through AVX-512
 * BF16 dot products where the CPU has them).
 *
 *     C (M × N, ldc) = alpha · op(A) · op(B) + beta · C + bias
 *
 * op(A) is A (M × K, lda) or, with ta, the transpose of A stored (K × M, lda); likewise B. The
 * products are summed in f32 whatever the operands' types; a half C is rounded once, at the end.
 */
#ifndef LOOM_RT_GEMM_DNNL_H
#define LOOM_RT_GEMM_DNNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

typedef struct {
    int ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    ir_dtype a_dt, b_dt, c_dt, bias_dt; /* DT_F32, DT_BF16 or DT_F16; bias_dt only with bias */
    const void *A, *B, *bias;           /* bias: N elements, or NULL */
    void *C;
    int threads;                        /* the caller and OpenMP's */
} rt_dnnl_call;

/* false when LOOM_CPU_GEMM=openblas (the OpenBLAS path, kept for comparison and tests). */
bool rt_dnnl_enabled(void);

/* One line naming the CPU's GEMM libraries (`loom devices`): oneDNN's version, or why it is not
 * used (turned off, not found, no 2.x API). */
void rt_dnnl_describe(char *buf, size_t cap);

/* Runs the GEMM. Returns false, with C untouched, when oneDNN is disabled or missing or has only
 * its reference kernels for it: the caller then takes its own path (OpenBLAS, in f32). */
bool rt_dnnl_gemm(const rt_dnnl_call *c);

#endif
