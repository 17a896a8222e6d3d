/* exec_cuda.h — the CUDA executor: runs an execution plan (plan.h) on one NVIDIA GPU.
 *
 * rt_cuda_exec_new loads the driver (cuda_driver.h) and cuBLASLt (cublaslt.h), allocates one
 * device arena for the plan's activations (cuMemAlloc, never managed memory), a device buffer
 * per param, input and output, loads the PTX modules (the JIT's log surfaced on failure), and
 * prepares every GEMM. The runtime does not link codegen: the caller gives the PTX text and
 * the launch geometry (cg_ptx_launch_dims) of each kernel step and of each GEMM step's
 * epilogue kernel (plan.h), by step. A GEMM whose activation cuBLASLt has (relu, tanh-gelu:
 * rt_cublaslt_has_act) runs with cuBLASLt's epilogue; another runs bare and then its epilogue
 * kernel. Attention steps launch the kernel
 * RT_CUDA_ATTENTION_KERNEL, which one of the modules must hold (cg_ptx_options.attention).
 *
 * Params and inputs are copied host→device when bound and stay on the device across runs
 * (rebind to change them); outputs are copied back on the first rt_cuda_exec_output after a
 * run. Everything runs on one stream; with profiling, events around every step time it.
 * Every failure names the call and the kernel or step that caused it.
 */
#ifndef LOOM_RT_EXEC_CUDA_H
#define LOOM_RT_EXEC_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/exec_stats.h"
#include "plan/plan.h"

/* The fused attention kernels (codegen.h: CG_PTX_ATTENTION_KERNEL, the same constants):
 * NAME_64, NAME_128, NAME_256 by the larger head dim; parameters q, k, v, mask, out (u64
 * device pointers to the first element; mask 0: none), i64 B, H, G, T, S, D, E,
 * q_stride[3], k_stride[3], v_stride[3], out_stride[3], mask_stride[4], causal, f32 scale.
 * Launch: RT_CUDA_ATTENTION_ROWS warps (one query row each) per block of 32·ROWS threads,
 * ceil(B·H·T / ROWS) blocks. */
#define RT_CUDA_ATTENTION_KERNEL "loom_attention_f32"
#define RT_CUDA_ATTENTION_ROWS 4
#define RT_CUDA_ATTENTION_MAX_DIM 256

typedef struct {
    unsigned grid[3], block[3];
    /* the kernel's function in the PTX modules; NULL: the step's kernel name (a `loom build
     * --target cuda` executable's PTX names each kernel by a hash of its kernel IR). Read by
     * rt_cuda_exec_new only. */
    const char *fn;
} rt_cuda_launch;

typedef struct rt_cuda_exec rt_cuda_exec;

/* plan p outlives the executor; ptx[0..n_ptx) are NUL-terminated PTX modules; launch[s] is
 * the geometry (and function) of kernel step s (other entries unused). NULL on error,
 * reported through d. */
rt_cuda_exec *rt_cuda_exec_new(const rt_plan *p, const char *const *ptx, int n_ptx, const rt_cuda_launch *launch,
                               ir_diag *d);
void rt_cuda_exec_free(rt_cuda_exec *e);

/* Copies host data (numel elements of the buffer's dtype) to the param or input called name. */
bool rt_cuda_exec_bind(rt_cuda_exec *e, const char *name, const void *host, ir_diag *d);
/* Runs every step and waits for the GPU. */
bool rt_cuda_exec_run(rt_cuda_exec *e, ir_diag *d);
/* The output called name, copied to host memory owned by the executor; NULL if absent. */
void *rt_cuda_exec_output(rt_cuda_exec *e, const char *name);
/* The device address of the buffer called name (param, input or output), 0 if absent: for
 * device-to-device hand-offs between programs (training). */
uint64_t rt_cuda_exec_device_ptr(rt_cuda_exec *e, const char *name);

/* The PTX module (sm_80, hand-written) of the training steps' kernels: SUM_ROWS and SCATTER_ADD
 * (WRITE_ROWS is device copies, ATTENTION_GRAD host-staged); malloc'd. Loaded by the executor
 * when a plan has such steps; tests/unit/test_ptx_models.c assembles it with ptxas. */
char *rt_cuda_training_ptx(void);

void rt_cuda_exec_profile(rt_cuda_exec *e, bool on);
rt_exec_stats rt_cuda_exec_stats(const rt_cuda_exec *e);

#endif
