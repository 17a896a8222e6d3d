/* program_cuda.c — program.h's CUDA backend: the plan's kernels (library steps' included)
 * rendered to one PTX module by LLVM, the launch geometry of each from cg_ptx_launch_dims, and
 * the CUDA executor (exec_cuda.h; the
 * calls on it are program_cuda_exec.c's, shared with executables' exe/program_cuda_table.c).
 * $LOOM_CUDA_SM picks the PTX target (80, the default, or 90). */
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/exec_cuda.h"
#include "runtime/half.h"
#include "engine/program.h"

int program_cuda_sm(void)
{
    const char *sm = getenv("LOOM_CUDA_SM");
    return sm && *sm ? atoi(sm) : cg_ptx_defaults.sm;
}

char *program_cuda_ptx(cg_kernel *const *kernels, int n_kernels, ir_diag *d)
{
    cg_ptx_options o = cg_ptx_defaults;
    o.sm = program_cuda_sm();
    return cg_ptx(kernels, n_kernels, &o, d);
}

static void *cuda_create_dev(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                             ir_diag *d)
{
    (void)pool;
    if (!program_cuda_supported(plan, d))
        return NULL;
    rt_cuda_launch *launch = calloc((size_t)(plan->n_steps + 1) * RT_CUDA_STEP_KERNELS, sizeof *launch);
    if (!launch)
        ir_unreachable("out of memory");
    program_cuda_launch(plan, kernels, n_kernels, launch, NULL);
    bool any = n_kernels > 0;
    char *ptx = any ? program_cuda_ptx(kernels, n_kernels, d) : NULL;
    rt_cuda_exec *ex = NULL;
    if (ptx || !any) {
        const char *mods[1] = {ptx};
        ex = rt_cuda_exec_new_on(dev, plan, mods, ptx ? 1 : 0, launch, d);
    }
    free(ptx);
    free(launch);
    return ex;
}

const program_backend program_backend_cuda = {
    .target = "cuda",
    .create_dev = cuda_create_dev,
    .supported = program_cuda_supported,
    .f32_library = true,
    PROGRAM_CUDA_CALLS,
};
