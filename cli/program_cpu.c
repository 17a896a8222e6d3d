/* program_cpu.c — program.h's CPU backend: ORC JIT of the kernels, the CPU executor. */
#include <stdlib.h>

#include "codegen.h"
#include "program.h"

typedef struct {
    cg_jit *jit;
    rt_exec *ex;
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

static bool cpu_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_exec_bind(((cpu_state *)state)->ex, name, data, d);
}

static bool cpu_run(void *state, ir_diag *d) { return rt_exec_run(((cpu_state *)state)->ex, d); }
static void *cpu_output(void *state, const char *name) { return rt_exec_output(((cpu_state *)state)->ex, name); }
static void cpu_profile(void *state, bool on) { rt_exec_profile(((cpu_state *)state)->ex, on); }
static rt_exec_stats cpu_stats(const void *state) { return rt_exec_stats_get(((const cpu_state *)state)->ex); }

rt_exec *program_cpu_exec(void *cpu_state_) { return ((cpu_state *)cpu_state_)->ex; }

const program_backend program_backend_cpu = {
    .target = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .bind = cpu_bind,
    .run = cpu_run,
    .output = cpu_output,
    .profile = cpu_profile,
    .stats = cpu_stats,
};
