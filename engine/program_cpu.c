/* program_cpu.c — program.h's CPU backend: ORC JIT of the kernels, the CPU executor. */
#include <stdlib.h>

#include "codegen/codegen.h"
#include "engine/program.h"

typedef struct {
    rt_exec *ex; /* first: program_host.c's calls */
    cg_jit *jit;
} cpu_state;

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d)
{
    return (rt_kernel_fn)cg_jit_lookup(ctx, name, d);
}

static void cpu_destroy(void *state)
{
    cpu_state *s = state;
    rt_exec_free(s->ex);
    cg_jit_free(s->jit);
    free(s);
}

static void *cpu_create(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool, ir_diag *d)
{
    cpu_state *s = calloc(1, sizeof *s);
    if (!s)
        ir_unreachable("out of memory");
    s->jit = cg_jit_new(d);
    bool ok = s->jit && cg_jit_add(s->jit, kernels, n_kernels, NULL, d);
    if (ok) {
        s->ex = rt_exec_new(plan, resolve, s->jit, pool, d);
        ok = s->ex != NULL;
    }
    if (!ok) {
        cpu_destroy(s);
        return NULL;
    }
    return s;
}

const program_backend program_backend_cpu = {
    .target = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    PROGRAM_HOST_CALLS,
};
