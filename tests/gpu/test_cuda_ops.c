/* test_cuda_ops.c — the op suite (tests/unit/op_suite.h: every op of ir/ops.def on randomized
 * shapes, against the reference interpreter at IR_PREC_F32, tolerance
 * |err| <= 1e-4 · max(1, |ref|), max errors printed) run on the GPU instead of the CPU.
 *
 * The backend renders the lowered kernels to PTX (library steps' included), gives each kernel
 * cg_ptx_launch_dims's geometry (engine/program_cuda_exec.c) and runs the plan with
 * exec_cuda.h: every step, the backward ones included.
 * Without a CUDA driver or device: "skipped: no CUDA device" and exit 0.
 */
#include "tests/unit/op_suite.h"

#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/exec_cuda.h"
#include "engine/program.h"

static void *gpu_open(const cg_lowered *low, ir_diag *d)
{
    const rt_plan *p = &low->plan;
    rt_cuda_launch *launch = calloc((size_t)(p->n_steps + 1) * RT_CUDA_STEP_KERNELS, sizeof *launch);
    program_cuda_launch(p, low->kernels, low->n_kernels, launch, NULL);
    bool any = low->n_kernels > 0;
    char *ptx = any ? cg_ptx(low->kernels, low->n_kernels, &cg_ptx_defaults, d) : NULL;
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
    static const op_backend gpu = {"cuda", gpu_open, gpu_bind, gpu_run, gpu_output, gpu_close, true};
    op_suite_run(&gpu, true);
    printf("on the GPU: %d cases, %d failed\n", n_cases, n_failed);
    return n_failed > 0;
}
