/* test_cpu_ops.c — the op suite (op_suite.h: every op of ir/ops.def, forward and backward, on
 * randomized shapes against the reference interpreter at IR_PREC_F32, max errors printed,
 * tolerance |err| <= 1e-4 · max(1, |ref|)) through the CPU path: the host JIT and
 * runtime/cpu/exec_cpu.c, as engine/run.c runs them — twice: with the executor's own library
 * routines (OpenBLAS-blocked attention and its backward, column sums, scatter-add, cache rows),
 * then with the library steps' kernel IR (codegen/library.c) rendered by the host renderer,
 * the one description the GPU and OpenCL backends run.
 */
#include "op_suite.h"

static bool lib_kernels; /* the second pass: library steps as their kernels */

typedef struct cpu_exec {
    cg_jit *jit;
    rt_pool *pool;
    rt_exec *ex;
} cpu_exec;

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d) { return (rt_kernel_fn)cg_jit_lookup(ctx, name, d); }

static void cpu_close(void *p)
{
    cpu_exec *c = p;
    rt_exec_free(c->ex);
    rt_pool_free(c->pool);
    cg_jit_free(c->jit);
    free(c);
}

static void *cpu_open(const cg_lowered *low, ir_diag *d)
{
    cpu_exec *c = calloc(1, sizeof *c);
    c->jit = cg_jit_new(d);
    bool ok = c->jit && cg_jit_add(c->jit, low->kernels, low->n_kernels, NULL, d);
    if (ok) {
        c->pool = rt_pool_new(3); /* more participants than cores: chunks really split */
        c->ex = rt_exec_new_lib(&low->plan, resolve, c->jit, c->pool, lib_kernels, d);
        ok = c->ex != NULL;
    }
    if (!ok) {
        cpu_close(c);
        return NULL;
    }
    return c;
}

static bool cpu_bind(void *p, const char *name, const void *data, ir_diag *d)
{
    return rt_exec_bind(((cpu_exec *)p)->ex, name, data, d);
}
static bool cpu_run(void *p, ir_diag *d) { return rt_exec_run(((cpu_exec *)p)->ex, d); }
static const void *cpu_output(void *p, const char *name, ir_diag *d)
{
    (void)d;
    return rt_exec_output(((cpu_exec *)p)->ex, name);
}

int main(void)
{
    static const op_backend cpu = {"cpu", cpu_open, cpu_bind, cpu_run, cpu_output, cpu_close, false};
    int failed = op_suite_run(&cpu, true);
    printf("---- again, library steps as kernel IR (codegen/library.c) ----\n");
    lib_kernels = true;
    failed += op_suite_run(&cpu, true);
    return failed ? 1 : 0;
}
