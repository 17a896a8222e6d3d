/* program_cuda_table.c — program.h's CUDA backend for `loom build --target cuda` executables:
 * `loom build` rendered every distinct kernel of every graph the executable may lower (one per
 * combination of optional inputs given) to one PTX module, each kernel under its
 * program_kernel_symbol, and compiled it in as RT_KERNEL_PTX (io/exe_payload.h). Here each
 * kernel step launches the function of its kernel's hash with cg_ptx_launch_dims's geometry
 * (codegen/ptx_launch.c, no LLVM) on the CUDA executor; the calls on it are
 * engine/program_cuda_exec.c's, as for `loom run --target cuda`. The driver and cuBLASLt are
 * loaded with dlopen when the executor starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/program.h"
#include "io/exe_payload.h"
#include "runtime/cuda/exec_cuda.h"

extern const char RT_KERNEL_PTX[];

/* Is function name an entry of the PTX compiled in? */
static bool has_entry(const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, ".entry %s(", name);
    return strstr(RT_KERNEL_PTX, pat) != NULL;
}

static void *cuda_table_create(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                               ir_diag *d)
{
    (void)pool;
    if (!program_cuda_supported(plan, d))
        return NULL;
    size_t n = (size_t)(plan->n_steps + 1) * RT_CUDA_STEP_KERNELS;
    rt_cuda_launch *launch = calloc(n, sizeof *launch);
    char(*fn)[32] = calloc(n, sizeof *fn);
    if (!launch || !fn)
        ir_unreachable("out of memory");
    program_cuda_launch(plan, kernels, n_kernels, launch, fn);
    bool ok = true;
    for (int s = 0; ok && s < plan->n_steps; s++) {
        const rt_plan_kernel *ks[RT_CUDA_STEP_KERNELS + 1];
        int nk = rt_plan_step_kernels(&plan->steps[s], ks);
        for (int x = 0; ok && x < nk; x++) {
            const rt_cuda_launch *l = &launch[s * RT_CUDA_STEP_KERNELS + x];
            if (l->fn && !has_entry(l->fn)) {
                ir_diag_error(d, -1, 0, 0,
                              "kernel %s (%s) is not in this executable: it was built from another model or loom version",
                              ks[x]->name, l->fn);
                ok = false;
            }
        }
    }
    rt_cuda_exec *ex = NULL;
    if (ok) {
        const char *mods[1] = {RT_KERNEL_PTX};
        ex = rt_cuda_exec_new_on(dev, plan, mods, RT_KERNEL_PTX[0] ? 1 : 0, launch, d);
    }
    free(fn);
    free(launch);
    return ex;
}

const program_backend program_backend_cuda_table = {
    .target = "cuda",
    .create_dev = cuda_table_create,
    .supported = program_cuda_supported,
    .f32_library = true,
    PROGRAM_CUDA_CALLS,
};
