/* cublaslt.h — cuBLASLt loaded at run time with dlopen, for the CUDA executor's GEMMs.
 *
 * As with the driver (cuda_driver.h), the types and enums are the toolkit's (cublasLt.h, found
 * by CMake under $CUDA_HOME/include) and the library is opened with dlopen, never linked: a
 * program starts without it and says why when a GEMM needs it.
 * rt_cublaslt_gemm runs one plan GEMM (row-major, strided batches over up to
 * RT_PLAN_MAX_BATCH dims, transposes, leading dims, alpha/beta, bias and relu/gelu-tanh
 * epilogues; other activations are the step's epilogue kernel, run by the executor) in fp32 with fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32) on a stream.
 */
#ifndef LOOM_CUBLASLT_H
#define LOOM_CUBLASLT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>

#include "runtime/cuda/cuda_driver.h"
#include "plan/plan.h"

typedef struct rt_cublaslt rt_cublaslt;

/* How a plan GEMM maps onto cuBLASLt's column-major problem, as pure data (what
 * rt_cublaslt_prepare configures; tests check it against the CPU GEMM with a column-major
 * reference of cuBLASLt's semantics). Operand 0 is cuBLASLt's A (our b), 1 its B (our a), 2
 * its C and D (our c): rows × cols column-major with leading dim ld, batch of `count` matrices
 * stride[] apart; op[0..1]: 1 = transposed. D = act(alpha·op(A)·op(B) + beta·C + bias[row]).
 * Outer batch dims (nouter of them) are a host loop: offset outer_stride[i][operand] per index. */
typedef struct {
    int op[2];
    uint64_t rows[3], cols[3];
    int64_t ld[3];
    int32_t count;
    int64_t stride[3];
    int nouter;
    int64_t outer[RT_PLAN_MAX_BATCH], outer_stride[RT_PLAN_MAX_BATCH][3];
    int64_t calls;   /* product of outer */
    cublasLtEpilogue_t epilogue; /* CUBLASLT_EPILOGUE_DEFAULT, _RELU, _BIAS, _RELU_BIAS, _GELU, _GELU_BIAS */
    bool kernel_epilogue; /* the step's epilogue kernel runs after the GEMM (bias and activation:
                             epilogue is 1) rather than cuBLASLt's own */
} rt_cublaslt_shape;

/* Fills *s for g: the epilogue is cuBLASLt's when it has g's activation (rt_cublaslt_has_act),
 * else the step's epilogue kernel. False (message in err) for an activation without kernel. */
bool rt_cublaslt_shape_of(const rt_plan_gemm *g, rt_cublaslt_shape *s, char *err, size_t cap);

/* Whether cuBLASLt has the GEMM epilogue activation act (rt_act) built in as the same function
 * (relu, tanh-gelu; see cublaslt.c for how that is checked). */
bool rt_cublaslt_has_act(int act);

/* Loads libcublasLt ($LOOM_LIBCUBLASLT, else libcublasLt.so.13, .so.12, .so, and the same
 * under /usr/local/cuda/lib64) and creates a handle in the current context, with a workspace
 * of `workspace` device bytes. NULL with a message in err on failure. */
rt_cublaslt *rt_cublaslt_load(const rt_cuda *cu, char *err, size_t cap);
void rt_cublaslt_free(rt_cublaslt *lt);

/* The prepared form of one plan GEMM (descriptors, chosen algorithm); opaque. */
typedef struct rt_cublaslt_op rt_cublaslt_op;

/* Prepares g (its buffers' device pointers are given at run time). NULL with a message in err
 * when cuBLASLt rejects it or no algorithm fits. */
rt_cublaslt_op *rt_cublaslt_prepare(rt_cublaslt *lt, const rt_plan_gemm *g, char *err, size_t cap);
void rt_cublaslt_op_free(rt_cublaslt *lt, rt_cublaslt_op *op);

/* Whether op leaves bias and activation to the step's epilogue kernel (shape kernel_epilogue). */
bool rt_cublaslt_kernel_epilogue(const rt_cublaslt_op *op);

/* Enqueues C = act(alpha·op(A)·op(B) + beta·C + bias) for every batch on stream s, or, when
 * rt_cublaslt_kernel_epilogue, C = alpha·op(A)·op(B) + beta·C; a, b, c, bias are device
 * pointers to the first element (bias 0: none). */
bool rt_cublaslt_run(rt_cublaslt *lt, const rt_cublaslt_op *op, rt_cu_deviceptr a, rt_cu_deviceptr b,
                     rt_cu_deviceptr c, rt_cu_deviceptr bias, rt_cu_stream s, char *err, size_t cap);

#endif
