/* test_cuda_ops.c — the op suite (tests/unit/op_suite.h: every op of ir/ops.def on randomized
 * shapes, against the reference interpreter at IR_PREC_F32, tolerance
 * |err| <= 1e-4 · max(1, |ref|), max errors printed) run on the GPU instead of the CPU.
 *
 * The backend renders the lowered kernels to PTX (with the fused attention kernels), gives each
 * kernel step cg_ptx_launch_dims's geometry and runs the plan with exec_cuda.h. Cases whose
 * plans need steps the GPU does not implement yet (the training steps: write rows, attention
 * gradient, scatter add) are counted and reported as skipped.
 * Without a CUDA driver or device: "skipped: no CUDA device" and exit 0.
 */
#include "tests/unit/op_suite.h"

#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/exec_cuda.h"

static int gpu_unsupported;

static void *gpu_open(const cg_lowered *low, ir_diag *d)
{
    const rt_plan *p = &low->plan;
    cg_ptx_options o = cg_ptx_defaults;
    rt_cuda_launch *launch = calloc((size_t)p->n_steps + 1, sizeof *launch);
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        o.attention |= st->kind == RT_STEP_ATTENTION;
        if (st->kind != RT_STEP_KERNEL && st->kind != RT_STEP_GEMM && st->kind != RT_STEP_ATTENTION &&
            st->kind != RT_STEP_COPY && st->kind != RT_STEP_CHECK_IDS) {
            gpu_unsupported++;
            printf("(needs a training step the GPU lacks) ");
            free(launch);
            ir_diag_error(d, -1, 0, 0, "cuda: training step (skipped)");
            return NULL;
        }
        if (st->kind != RT_STEP_KERNEL)
            continue;
        for (int i = 0; i < low->n_kernels; i++)
            if (strcmp(low->kernels[i]->name, st->kernel.name) == 0)
                cg_ptx_launch_dims(low->kernels[i], launch[s].grid, launch[s].block);
    }
    bool any = low->n_kernels > 0 || o.attention;
    char *ptx = any ? cg_ptx(low->kernels, low->n_kernels, &o, d) : NULL;
    rt_cuda_exec *e = NULL;
    if (ptx || !any) {
        const char *mods[1] = {ptx};
        e = rt_cuda_exec_new(p, mods, ptx ? 1 : 0, launch, d);
    }
    free(ptx);
    free(launch);
    return e;
}

static bool gpu_bind(void *e, const char *name, const void *data, ir_diag *d) { return rt_cuda_exec_bind(e, name, data, d); }
static bool gpu_run(void *e, ir_diag *d) { return rt_cuda_exec_run(e, d); }
static const void *gpu_output(void *e, const char *name, ir_diag *d)
{
    (void)d;
    return rt_cuda_exec_output(e, name);
}
static void gpu_close(void *e) { rt_cuda_exec_free(e); }

int main(void)
{
    char err[512];
    rt_cuda *cu = rt_cuda_load(err, sizeof err);
    if (!cu) {
        printf("skipped: no CUDA device (%s)\n", err);
        return 0;
    }
    rt_cuda_list_devices(stdout);
    rt_cuda_unload(cu);
    static const op_backend gpu = {"cuda", gpu_open, gpu_bind, gpu_run, gpu_output, gpu_close};
    op_suite_run(&gpu, true);
    printf("on the GPU: %d cases, %d failed, %d skipped (training steps not on the GPU yet)\n", n_cases,
           n_failed - gpu_unsupported, gpu_unsupported);
    return n_failed - gpu_unsupported > 0;
}
