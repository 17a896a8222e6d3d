/* program_cpu.c — program.h for the CPU: pipeline, lowering, memory plan, ORC JIT, executor. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen.h"
#include "lower.h"
#include "pass.h"
#include "plan_memory.h"
#include "program.h"

struct program {
    ir_graph *g;
    cg_lowered low;
    cg_jit *jit;
    rt_exec *ex;
    double compile_ms;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d)
{
    return (rt_kernel_fn)cg_jit_lookup(ctx, name, d);
}

program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    double t0 = now_ms();
    program *p = calloc(1, sizeof *p);
    if (!p)
        ir_unreachable("out of memory");
    p->g = ir_graph_clone(g);
    pass_options po = pass_options_default();
    bool ok = pass_run_pipeline(p->g, pipeline ? pipeline : "dce,cse,fuse", &po, d) && cg_lower(p->g, &p->low, d);
    if (ok) {
        pass_plan_memory(&p->low.plan);
        p->jit = cg_jit_new(d);
        ok = p->jit && cg_jit_add(p->jit, p->low.kernels, p->low.n_kernels, NULL, d);
    }
    if (ok) {
        p->ex = rt_exec_new(&p->low.plan, resolve, p->jit, pool, d);
        ok = p->ex != NULL;
    }
    if (!ok) {
        program_free(p);
        return NULL;
    }
    p->compile_ms = now_ms() - t0;
    return p;
}

void program_free(program *p)
{
    if (!p)
        return;
    rt_exec_free(p->ex);
    cg_jit_free(p->jit);
    cg_lowered_free(&p->low);
    ir_graph_free(p->g);
    free(p);
}

const ir_graph *program_graph(const program *p) { return p->g; }
const rt_plan *program_plan(const program *p) { return &p->low.plan; }
rt_exec *program_exec(program *p) { return p->ex; }
double program_compile_ms(const program *p) { return p->compile_ms; }

const ir_node *program_find(const program *p, ir_opcode op, const char *name)
{
    for (int i = 0; i < p->g->n_nodes; i++) {
        const ir_node *n = p->g->nodes[i];
        if (n->op == op && n->name && strcmp(n->name, name) == 0)
            return n;
    }
    return NULL;
}

bool program_bind(program *p, const char *name, const void *data, ir_diag *d)
{
    return rt_exec_bind(p->ex, name, data, d);
}

bool program_run(program *p, ir_diag *d) { return rt_exec_run(p->ex, d); }

void *program_output(program *p, const char *name) { return rt_exec_output(p->ex, name); }
