/* program_cuda_exec.c — what program.h's two CUDA backends share: program_cuda.c (`loom run
 * --target cuda`: PTX rendered by LLVM) and exe/program_cuda_table.c (a `loom build --target
 * cuda` executable: PTX compiled in, each kernel under its program_kernel_symbol). Each kernel
 * step's launch geometry, the check of what the CUDA executor runs, and the calls on its
 * executor. No LLVM here: an executable links this file. */
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/exec_cuda.h"
#include "runtime/half.h"
#include "engine/program.h"

bool program_cuda_supported(const rt_plan *plan, ir_diag *d)
{
    ir_dtype half = rt_plan_half_library(plan);
    if (half == DT_VOID)
        return true;
    /* lower-precision keeps them in f32 for this executor (f32_library) */
    ir_diag_error(d, -1, 0, 0, "cuda: %s GEMM and attention steps are not supported by the CUDA executor; --precision "
                  "runs them in f32 on half values", ir_dtype_name(half));
    return false;
}

void program_cuda_launch(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_cuda_launch *launch,
                         char (*fn)[32])
{
    for (int s = 0; s < plan->n_steps; s++) {
        const rt_plan_kernel *ks[RT_CUDA_STEP_KERNELS + 1];
        int nk = rt_plan_step_kernels(&plan->steps[s], ks);
        for (int x = 0; x < nk; x++) {
            const cg_kernel *k = NULL;
            for (int i = 0; i < n_kernels && !k; i++)
                if (strcmp(kernels[i]->name, ks[x]->name) == 0)
                    k = kernels[i];
            if (!k)
                ir_unreachable("plan step names a kernel that lowering did not build");
            int at = s * RT_CUDA_STEP_KERNELS + x;
            cg_ptx_launch_dims(k, launch[at].grid, launch[at].block);
            if (fn) {
                program_kernel_symbol(k, fn[at], sizeof fn[at]);
                launch[at].fn = fn[at];
            }
        }
    }
}

void program_cuda_destroy(void *state) { rt_cuda_exec_free(state); }
bool program_cuda_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_cuda_exec_bind(state, name, data, d);
}
bool program_cuda_run(void *state, ir_diag *d) { return rt_cuda_exec_run(state, d); }
void *program_cuda_output(void *state, const char *name) { return rt_cuda_exec_output(state, name); }
void program_cuda_profile(void *state, bool on) { rt_cuda_exec_profile(state, on); }
rt_exec_stats program_cuda_stats(const void *state) { return rt_cuda_exec_stats(state); }

/* ---- the GPU as a device programs share (rt_cuda_dev) ----------------------------------------- */

void *program_cuda_dev_open(const char *target, ir_diag *d)
{
    (void)target;
    return rt_cuda_dev_open(d);
}

void program_cuda_dev_close(void *dev) { rt_cuda_dev_close(dev); }
rt_walker *program_cuda_walker(void *state) { return rt_cuda_exec_walker(state); }
void *program_cuda_buf_alloc(void *dev, size_t bytes, ir_diag *d) { return rt_cuda_dev_alloc(dev, bytes, d); }
void program_cuda_buf_free(void *dev, void *mem) { rt_cuda_dev_free(dev, mem); }

bool program_cuda_buf_write(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d)
{
    return rt_cuda_dev_write(dev, dst, src, bytes, async, d);
}

bool program_cuda_buf_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    return rt_cuda_dev_read(dev, src, dst, bytes, d);
}

bool program_cuda_dev_sync(void *dev, ir_diag *d) { return rt_cuda_dev_sync(dev, d); }
rt_xfer program_cuda_dev_xfer(void *dev) { return *rt_cuda_dev_xfer(dev); }
