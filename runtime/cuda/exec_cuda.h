/* exec_cuda.h — the CUDA executor: runs an execution plan (plan.h) on one NVIDIA GPU, as the
 * plan walker (runtime/exec.h) over the GPU's operations (exec_cuda.c).
 *
 * The GPU is an rt_cuda_dev: the driver (cuda_driver.h, loaded with dlopen), device 0's primary
 * context, one stream, cuBLASLt (cublaslt.h, loaded with the first GEMM) and the transfer
 * counts. Executors that share one (rt_cuda_exec_new_on) share its memory and its order:
 * training's programs and generation's prefill and decode hand buffers to each other and run
 * in the order they were enqueued. Device memory comes from cuMemAlloc (never managed memory).
 * The runtime does not link codegen: the caller gives the PTX text and the launch geometry
 * (cg_ptx_launch_dims) of every kernel a step launches — kernel steps, GEMM epilogues, library
 * steps (plan.h: kernel IR from codegen/library.c). A GEMM whose activation cuBLASLt has
 * (relu, tanh-gelu: rt_cublaslt_has_act) runs with cuBLASLt's epilogue; another runs bare and
 * then its epilogue kernel.
 *
 * Params and inputs are copied host→device when bound (or bound to device memory) and stay on
 * the device across runs; outputs are copied back on the first rt_cuda_exec_output after a
 * run. With profiling, events around every step time it.
 */
#ifndef LOOM_RT_EXEC_CUDA_H
#define LOOM_RT_EXEC_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/exec_stats.h"
#include "plan/plan.h"
#include "runtime/exec.h"

/* Kernels a step launches at most (rt_plan_step_kernels): launch geometry is indexed by
 * step · RT_CUDA_STEP_KERNELS + the kernel's index in its step. */
#define RT_CUDA_STEP_KERNELS RT_PLAN_MAX_LIB

typedef struct {
    unsigned grid[3], block[3];
    /* the kernel's function in the PTX modules; NULL: the step's kernel name (a `loom build
     * --target cuda` executable's PTX names each kernel by a hash of its kernel IR). Read by
     * rt_cuda_exec_new only. */
    const char *fn;
} rt_cuda_launch;

typedef struct rt_cuda_exec rt_cuda_exec;
typedef struct rt_cuda_dev rt_cuda_dev;

/* The GPU (device 0): NULL with the reason in d (no driver, no device). */
rt_cuda_dev *rt_cuda_dev_open(ir_diag *d);
void rt_cuda_dev_close(rt_cuda_dev *g);
/* Its memory, for callers that own buffers programs bind (zeroed; .mem of an rt_mem) and its
 * copies (write: async returns once enqueued on the stream — src must stay unchanged until the
 * stream has run it; else after the stream finished and the copy is done), counted in its
 * transfers. */
void *rt_cuda_dev_alloc(rt_cuda_dev *g, size_t bytes, ir_diag *d);
void rt_cuda_dev_free(rt_cuda_dev *g, void *mem);
bool rt_cuda_dev_write(rt_cuda_dev *g, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d);
bool rt_cuda_dev_read(rt_cuda_dev *g, rt_mem src, void *dst, size_t bytes, ir_diag *d);
bool rt_cuda_dev_sync(rt_cuda_dev *g, ir_diag *d);
rt_xfer *rt_cuda_dev_xfer(rt_cuda_dev *g);

/* plan p outlives the executor; ptx[0..n_ptx) are NUL-terminated PTX modules;
 * launch[s · RT_CUDA_STEP_KERNELS + x] is the geometry (and function) of the x-th kernel of
 * step s (other entries unused). On GPU g (which outlives the executor), or on a GPU of its own
 * (rt_cuda_exec_new). NULL on error, reported through d. */
rt_cuda_exec *rt_cuda_exec_new_on(rt_cuda_dev *g, const rt_plan *p, const char *const *ptx, int n_ptx,
                                  const rt_cuda_launch *launch, ir_diag *d);
rt_cuda_exec *rt_cuda_exec_new(const rt_plan *p, const char *const *ptx, int n_ptx, const rt_cuda_launch *launch,
                               ir_diag *d);
void rt_cuda_exec_free(rt_cuda_exec *e);

/* Copies host data (numel elements of the buffer's dtype) to the param or input called name. */
bool rt_cuda_exec_bind(rt_cuda_exec *e, const char *name, const void *host, ir_diag *d);
/* Runs every step and waits for the GPU. */
bool rt_cuda_exec_run(rt_cuda_exec *e, ir_diag *d);
/* The output called name, copied to host memory owned by the executor; NULL if absent. */
void *rt_cuda_exec_output(rt_cuda_exec *e, const char *name);
/* The plan walker underneath (runtime/exec.h: binding device memory, async runs). */
rt_walker *rt_cuda_exec_walker(rt_cuda_exec *e);

void rt_cuda_exec_profile(rt_cuda_exec *e, bool on);
rt_exec_stats rt_cuda_exec_stats(const rt_cuda_exec *e);

#endif
