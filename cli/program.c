/* program.c — program.h's target-independent part: pipeline, lowering, memory plan, and the
 * dispatch to one backend (program_cpu.c, program_cuda.c, ...). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "codegen.h"
#include "lower.h"
#include "pass.h"
#include "plan_memory.h"
#include "program.h"

struct program {
    const program_backend *be;
    void *state;
    ir_graph *g;
    cg_lowered low;
    double compile_ms;
    /* program_follow_host: the host memory of every bind, uploaded again before each run */
    bool follow_host;
    int n_follow;
    struct followed {
        char *name;
        const void *data;
    } *follow;
};

/* Every target a program can be built for; a backend adds its line here. */
static const program_backend *const backends[] = {
    &program_backend_cpu,
    &program_backend_cuda,
    &program_backend_opencl,
};

program *program_new(const char *target, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    const program_backend *be = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (strcmp(backends[i]->target, target) == 0 ||
            (backends[i]->create_on && strlen(backends[i]->target) == strcspn(target, ":") &&
             strncmp(backends[i]->target, target, strcspn(target, ":")) == 0))
            be = backends[i];
    if (!be) {
        ir_diag_error(d, -1, 0, 0, "unknown target '%s' for a compiled program", target);
        return NULL;
    }
    double t0 = rt_now_ms();
    program *p = calloc(1, sizeof *p);
    if (!p)
        ir_unreachable("out of memory");
    p->be = be;
    p->g = ir_graph_clone(g);
    pass_options po = pass_options_default();
    bool ok = pass_run_pipeline(p->g, pipeline ? pipeline : "dce,cse,fuse", &po, d) && cg_lower(p->g, &p->low, d);
    if (ok) {
        pass_plan_memory(&p->low.plan);
        p->state = be->create_on ? be->create_on(target, &p->low.plan, p->low.kernels, p->low.n_kernels, d)
                                 : be->create(&p->low.plan, p->low.kernels, p->low.n_kernels, pool, d);
        ok = p->state != NULL;
    }
    if (!ok) {
        program_free(p);
        return NULL;
    }
    p->compile_ms = rt_now_ms() - t0;
    return p;
}

program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    return program_new("cpu", g, pipeline, pool, d);
}

void program_free(program *p)
{
    if (!p)
        return;
    if (p->state)
        p->be->destroy(p->state);
    cg_lowered_free(&p->low);
    ir_graph_free(p->g);
    for (int i = 0; i < p->n_follow; i++)
        free(p->follow[i].name);
    free(p->follow);
    free(p);
}

const char *program_target(const program *p) { return p->be->target; }
const ir_graph *program_graph(const program *p) { return p->g; }
const rt_plan *program_plan(const program *p) { return &p->low.plan; }
rt_exec *program_exec(program *p) { return p->be == &program_backend_cpu ? program_cpu_exec(p->state) : NULL; }
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

void program_follow_host(program *p, bool on) { p->follow_host = on && p->be != &program_backend_cpu; }

static void remember_bind(program *p, const char *name, const void *data)
{
    for (int i = 0; i < p->n_follow; i++)
        if (strcmp(p->follow[i].name, name) == 0) {
            p->follow[i].data = data;
            return;
        }
    struct followed *f = realloc(p->follow, ((size_t)p->n_follow + 1) * sizeof *f);
    char *copy = strdup(name);
    if (!f || !copy)
        ir_unreachable("out of memory");
    p->follow = f;
    p->follow[p->n_follow++] = (struct followed){copy, data};
}

bool program_bind(program *p, const char *name, const void *data, ir_diag *d)
{
    if (!p->be->bind(p->state, name, data, d))
        return false;
    if (p->follow_host)
        remember_bind(p, name, data);
    return true;
}

bool program_run(program *p, ir_diag *d)
{
    for (int i = 0; i < p->n_follow; i++)
        if (!p->be->bind(p->state, p->follow[i].name, p->follow[i].data, d))
            return false;
    return p->be->run(p->state, d);
}

void *program_output(program *p, const char *name) { return p->be->output(p->state, name); }

void program_profile(program *p, bool on)
{
    if (p->be->profile)
        p->be->profile(p->state, on);
}

rt_exec_stats program_stats(const program *p)
{
    if (p->be->stats)
        return p->be->stats(p->state);
    return rt_exec_plan_stats(&p->low.plan);
}
