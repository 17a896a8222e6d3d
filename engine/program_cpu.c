/* program_cpu.c — program.h's CPU backend: ORC JIT of the kernels, the CPU executor. */
#include <stdlib.h>
#include <string.h>

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

bool program_cpu_library_kernels(void)
{
    const char *v = getenv("LOOM_CPU_LIBRARY");
    return v && strcmp(v, "kernels") == 0;
}

static void *cpu_create(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool, ir_diag *d)
{
    cpu_state *s = calloc(1, sizeof *s);
    cg_kernel **used = calloc((size_t)n_kernels + 1, sizeof *used);
    if (!s || !used)
        ir_unreachable("out of memory");
    /* only the kernels the executor calls: library steps' when it runs them as kernels */
    bool lib = program_cpu_library_kernels();
    int n = 0;
    for (int i = 0; i < n_kernels; i++)
        if (program_host_calls(plan, kernels[i]->name, lib))
            used[n++] = kernels[i];
    s->jit = cg_jit_new(d);
    bool ok = s->jit && cg_jit_add(s->jit, used, n, NULL, d);
    free(used);
    if (ok) {
        s->ex = rt_exec_new_lib(plan, resolve, s->jit, pool, lib, d);
        ok = s->ex != NULL;
    }
    if (!ok) {
        cpu_destroy(s);
        return NULL;
    }
    return s;
}

static void *cpu_create_dev(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                            ir_diag *d)
{
    (void)dev; /* host memory */
    return cpu_create(plan, kernels, n_kernels, pool, d);
}

const program_backend program_backend_cpu = {
    .target = "cpu",
    .create = cpu_create,
    .create_dev = cpu_create_dev,
    .destroy = cpu_destroy,
    PROGRAM_HOST_CALLS,
};
