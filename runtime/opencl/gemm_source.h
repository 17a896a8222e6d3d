/* gemm_source.h — the OpenCL executor's generated GEMM: OpenCL C text of a tiled kernel with the
 * bias fused into its store, one kernel per variant (gemm_source.c). The executor renders
 * and times the variants on the device at run time (gemm_opencl.c), `loom build` executables
 * included, so it lives beside the executor and needs only libc.
 *
 * Kernel NAME(a, a_off, b, b_off, c, c_off, bias, bias_off, M, N, K, lda, ldb, ldc, flags,
 * alpha_bits, beta_bits, nb, stride_a, stride_b, stride_c): buffers are `__global float *` each
 * followed by a `long` element offset, the rest are `long`. For every b < nb:
 *     C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] + bias
 * with A[b] at a + a_off + b·stride_a (likewise B, C; stride 0 broadcasts), row-major leading
 * dims lda/ldb/ldc, flags = trans_a | trans_b << 1 | has_bias << 2, alpha/beta as the bits of
 * an f32 (beta 0: C is not read). An activation is not applied here: it is the plan's epilogue
 * kernel (plan/plan.h), rendered from kernel IR like every plan kernel. Launch 1-D: groups = nb ·
 * ceil(M / tile_m) · ceil(N / tile_n), local = rt_ocl_gemm_variant_local (required: the kernel
 * declares reqd_work_group_size). M, N >= 1; any K >= 0. */
#ifndef LOOM_RT_OCL_GEMM_SOURCE_H
#define LOOM_RT_OCL_GEMM_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

/* Work-items per group at most (as codegen.h's CG_OPENCL_MAX_LOCAL for the kernels it renders). */
#define RT_OCL_MAX_LOCAL 256

typedef struct {
    int tile_m, tile_n; /* the C tile of one work-group */
    int tile_k;         /* K elements per __local tile (local_tiles only) */
    int work_m, work_n; /* C elements per work-item (register blocking); divide tile_m, tile_n */
    int vector;         /* 1, 2, 4, 8, 16: columns per float vector (divides work_n); a
                           work-item's columns come in runs of `vector` neighbours */
    bool local_tiles;   /* stage A and B tiles in __local memory; else read __global directly */
    int dot_k;          /* 0, or 4/8/16 (vector 1, no local tiles): with B transposed and A not,
                           partial sums along k in float<dot_k> vectors, lanes added at the end
                           (another order of the sum than the other variants) */
} rt_ocl_gemm_variant;

/* Whether v is renderable: sizes >= 1, work divides tile, vector divides work_n, tiles <= 256,
 * tile_k <= 64, 1 <= local <= RT_OCL_MAX_LOCAL, work_m · work_n <= 128. */
bool rt_ocl_gemm_variant_valid(const rt_ocl_gemm_variant *v);
/* Work-items per group: (tile_m / work_m) · (tile_n / work_n). */
size_t rt_ocl_gemm_variant_local(const rt_ocl_gemm_variant *v);
/* The OpenCL C text of kernel `name` for variant v (valid), malloc'd. */
char *rt_ocl_gemm_variant_source(const rt_ocl_gemm_variant *v, const char *name);

#endif
