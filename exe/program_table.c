/* program_table.c — program.h's CPU backend for the executables of `loom build` (a model's and
 * a cluster's): the kernels were compiled ahead of time into the executable, listed in the
 * generated table RT_KERNEL_TABLE (io/exe_payload.h) under program_kernel_symbol's names; the
 * executor resolves each plan kernel there, by the hash of its kernel IR, instead of through
 * the JIT. */
#include <stdlib.h>
#include <string.h>

#include "plan/plan_io.h"
#include "engine/program.h"
#include "io/exe_payload.h"

extern const rt_kernel_entry RT_KERNEL_TABLE[];
extern const int RT_KERNEL_COUNT;

typedef struct {
    rt_exec *ex; /* first: program_host.c's calls */
    cg_kernel *const *kernels;
    int n_kernels;
} table_state;

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d)
{
    const table_state *s = ctx;
    for (int i = 0; i < s->n_kernels; i++) {
        if (strcmp(s->kernels[i]->name, name) != 0)
            continue;
        char sym[32];
        program_kernel_symbol(s->kernels[i], sym, sizeof sym);
        for (int t = 0; t < RT_KERNEL_COUNT; t++)
            if (strcmp(RT_KERNEL_TABLE[t].name, sym) == 0)
                return RT_KERNEL_TABLE[t].fn;
        ir_diag_error(d, -1, 0, 0,
                      "kernel %s (%s) is not in this executable: it was built from another model or loom version",
                      name, sym);
        return NULL;
    }
    ir_unreachable("program_table: a plan kernel that was not lowered");
}

static void table_destroy(void *state)
{
    table_state *s = state;
    rt_exec_free(s->ex);
    free(s);
}

static void *table_create(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool, ir_diag *d)
{
    table_state *s = calloc(1, sizeof *s);
    if (!s)
        ir_unreachable("out of memory");
    *s = (table_state){NULL, kernels, n_kernels};
    s->ex = rt_exec_new(plan, resolve, s, pool, d);
    if (!s->ex) {
        table_destroy(s);
        return NULL;
    }
    return s;
}

static void *table_create_dev(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                              ir_diag *d)
{
    (void)dev; /* host memory */
    return table_create(plan, kernels, n_kernels, pool, d);
}

const program_backend program_backend_cpu_table = {
    .target = "cpu",
    .create = table_create,
    .create_dev = table_create_dev,
    .destroy = table_destroy,
    PROGRAM_HOST_CALLS,
};
