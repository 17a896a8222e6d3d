/* test_cuda_ops.c — the op suite of tests/unit/test_cpu_ops.c (every op of ir/ops.def on
 * randomized shapes, against the reference interpreter at IR_PREC_F32, tolerance
 * |err| <= 1e-4 · max(1, |ref|), max errors printed) run on the GPU instead of the CPU.
 *
 * The suite is compiled into this file with its CPU executor swapped for the CUDA one: the
 * kernels it would hand the host JIT are kept and rendered to PTX (with the fused attention
 * kernels), each kernel step gets cg_ptx_launch_dims's geometry, and rt_exec_* calls go to
 * exec_cuda.h. Cases whose plans need steps the GPU does not implement yet (the training
 * steps: write rows, attention gradient, scatter add) are counted and reported as skipped.
 * Without a CUDA driver or device: "skipped: no CUDA device" and exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "cuda_driver.h"
#include "exec.h"
#include "exec_cuda.h"
#include "ir.h"

static cg_kernel *const *gpu_kernels;
static int gpu_n_kernels, gpu_unsupported;

static bool gpu_jit_add(cg_jit *j, cg_kernel *const *ks, int n, const cg_host_options *o, ir_diag *d)
{
    (void)j, (void)o, (void)d;
    gpu_kernels = ks;
    gpu_n_kernels = n;
    return true;
}

static rt_exec *gpu_exec_new(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, ir_diag *d)
{
    (void)resolve, (void)ctx, (void)pool;
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
        for (int i = 0; i < gpu_n_kernels; i++)
            if (strcmp(gpu_kernels[i]->name, st->kernel.name) == 0)
                cg_ptx_launch_dims(gpu_kernels[i], launch[s].grid, launch[s].block);
    }
    char *ptx = gpu_n_kernels > 0 || o.attention ? cg_ptx(gpu_kernels, gpu_n_kernels, &o, d) : NULL;
    rt_cuda_exec *e = NULL;
    if (ptx || !(gpu_n_kernels > 0 || o.attention)) {
        const char *mods[1] = {ptx};
        e = rt_cuda_exec_new(p, mods, ptx ? 1 : 0, launch, d);
    }
    free(ptx);
    free(launch);
    return (rt_exec *)e;
}

static bool gpu_exec_bind(rt_exec *e, const char *name, const void *data, ir_diag *d)
{
    return rt_cuda_exec_bind((rt_cuda_exec *)e, name, data, d);
}
static bool gpu_exec_run(rt_exec *e, ir_diag *d) { return rt_cuda_exec_run((rt_cuda_exec *)e, d); }
static void *gpu_exec_output(rt_exec *e, const char *name) { return rt_cuda_exec_output((rt_cuda_exec *)e, name); }
static void gpu_exec_free(rt_exec *e) { rt_cuda_exec_free((rt_cuda_exec *)e); }

#define cg_jit_add gpu_jit_add
#define rt_exec_new gpu_exec_new
#define rt_exec_bind gpu_exec_bind
#define rt_exec_run gpu_exec_run
#define rt_exec_output gpu_exec_output
#define rt_exec_free gpu_exec_free
#define main cpu_ops_main
#include "../unit/test_cpu_ops.c"
#undef main

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
    cpu_ops_main();
    printf("on the GPU: %d cases, %d failed, %d skipped (training steps not on the GPU yet)\n", n_cases,
           n_failed - gpu_unsupported, gpu_unsupported);
    return n_failed - gpu_unsupported > 0;
}
