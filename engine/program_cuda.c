/* program_cuda.c — program.h's CUDA backend: the plan's kernels (and, when the plan has an
 * attention step, the fused attention kernels) rendered to one PTX module, the launch geometry
 * of each kernel step and GEMM epilogue kernel from cg_ptx_launch_dims, and the CUDA executor (exec_cuda.h).
 * $LOOM_CUDA_SM picks the PTX target (80, the default, or 90). */
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/exec_cuda.h"
#include "runtime/half.h"
#include "engine/program.h"

char *program_cuda_ptx(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_cuda_launch *launch,
                       bool *failed, ir_diag *d)
{
    cg_ptx_options o = cg_ptx_defaults;
    const char *sm = getenv("LOOM_CUDA_SM");
    if (sm && *sm)
        o.sm = atoi(sm);
    for (int s = 0; s < plan->n_steps; s++) {
        const rt_plan_step *st = &plan->steps[s];
        o.attention |= st->kind == RT_STEP_ATTENTION;
        /* a kernel step's kernel, or a GEMM's epilogue kernel (the executor runs it when
         * cuBLASLt does not have the epilogue: exec_cuda.c) */
        const char *name = st->kind == RT_STEP_KERNEL ? st->kernel.name
                           : st->kind == RT_STEP_GEMM ? st->gemm.epi.name
                                                      : NULL;
        if (!name)
            continue;
        const cg_kernel *k = NULL;
        for (int i = 0; i < n_kernels && !k; i++)
            if (strcmp(kernels[i]->name, name) == 0)
                k = kernels[i];
        if (!k)
            ir_unreachable("plan step names a kernel that lowering did not build");
        cg_ptx_launch_dims(k, launch[s].grid, launch[s].block);
    }
    *failed = false;
    if (n_kernels == 0 && !o.attention)
        return NULL;
    char *ptx = cg_ptx(kernels, n_kernels, &o, d);
    *failed = ptx == NULL;
    return ptx;
}

static void *cuda_create(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool, ir_diag *d)
{
    (void)pool;
    ir_dtype half = rt_plan_half_library(plan);
    if (half != DT_VOID) { /* cuBLASLt and the attention kernel take f32 here so far */
        ir_diag_error(d, -1, 0, 0, "cuda: %s GEMM and attention steps (--precision %s) are not supported by the CUDA "
                      "executor yet; --target cpu runs them", ir_dtype_name(half), half == DT_F16 ? "fp16" : "bf16");
        return NULL;
    }
    rt_cuda_launch *launch = calloc((size_t)plan->n_steps + 1, sizeof *launch);
    if (!launch)
        ir_unreachable("out of memory");
    bool failed;
    char *ptx = program_cuda_ptx(plan, kernels, n_kernels, launch, &failed, d);
    rt_cuda_exec *ex = NULL;
    if (!failed) {
        const char *mods[1] = {ptx};
        ex = rt_cuda_exec_new(plan, mods, ptx ? 1 : 0, launch, d);
    }
    free(ptx);
    free(launch);
    return ex;
}

static void cuda_destroy(void *state) { rt_cuda_exec_free(state); }
static bool cuda_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_cuda_exec_bind(state, name, data, d);
}
static bool cuda_run(void *state, ir_diag *d) { return rt_cuda_exec_run(state, d); }
static void *cuda_output(void *state, const char *name) { return rt_cuda_exec_output(state, name); }
static void cuda_profile(void *state, bool on) { rt_cuda_exec_profile(state, on); }
static rt_exec_stats cuda_stats(const void *state) { return rt_cuda_exec_stats(state); }

const program_backend program_backend_cuda = {
    .target = "cuda",
    .create = cuda_create,
    .destroy = cuda_destroy,
    .bind = cuda_bind,
    .run = cuda_run,
    .output = cuda_output,
    .profile = cuda_profile,
    .stats = cuda_stats,
};
