/* target_cpu.c — `loom run --target cpu`: the graph through fusion, lowering, the memory plan,
 * the host JIT and the CPU executor (cli.h: cli_run_cpu).
 *
 * Outputs that need an absent optional input are dropped first (with everything only they
 * need), as the reference interpreter skips them; then dce, cse and fuse run with the
 * verifier between them, the fused graph is lowered to a plan and kernels, the activation
 * arena is planned, every kernel is JIT-compiled into one module, and the executor runs the
 * plan once on a thread pool of LOOM_NUM_THREADS (default: all CPUs) with params and inputs
 * converted to their declared dtypes. --stats prints the plan's kernels and library calls,
 * its memory, and times (compile, and two forwards: the first touches fresh memory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "program.h"
#include "codegen.h"
#include "exec.h"
#include "interp.h"
#include "lower.h"
#include "pass.h"
#include "plan_memory.h"
#include "safetensors.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const ir_tensor *find_value(const ir_named_tensor *vals, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (vals[i].name && strcmp(vals[i].name, name) == 0)
            return vals[i].t;
    return NULL;
}

/* Drops absent optional inputs and every node depending on one (outputs included). */
static void drop_absent(ir_graph *g, const ir_named_tensor *vals, int n_vals)
{
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!dead)
        ir_unreachable("out of memory");
    bool any = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input && n->optional && !find_value(vals, n_vals, n->name))
            dead[i] = true;
        for (int k = 0; k < n->n_in; k++)
            dead[i] |= dead[n->in[k]->id];
        any |= dead[i];
    }
    if (any)
        ir_graph_compact(g, dead);
    free(dead);
}

bool cli_run_cpu(const ir_graph *g0, const ir_named_tensor *vals, int n_vals, bool stats, ir_named_tensor **outs,
                 int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    ir_graph *g0c = ir_graph_clone(g0);
    drop_absent(g0c, vals, n_vals);
    rt_pool *pool = rt_pool_new(0);
    program *p = program_cpu_new(g0c, NULL, pool, d);
    ir_graph_free(g0c);
    bool ok = p != NULL;
    const ir_graph *g = ok ? program_graph(p) : NULL;
    void **bound = ok ? calloc((size_t)g->n_nodes + 1, sizeof *bound) : NULL;
    /* bind params and inputs in their declared dtypes */
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        const ir_tensor *t = find_value(vals, n_vals, n->name);
        if (!t) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "missing value for %s '%s'", ir_ops[n->op].mnemonic,
                          n->name);
            ok = false;
            break;
        }
        size_t count = (size_t)ir_shape_numel(&n->shape);
        bound[i] = malloc(count * (size_t)ir_dtype_size(n->dtype) + 1);
        if (!bound[i])
            ir_unreachable("out of memory");
        rt_convert_from_f64(n->dtype, t->data, bound[i], count);
        ok = program_bind(p, n->name, bound[i], d);
    }
    double t1 = now_ms();
    ok = ok && program_run(p, d);
    double t2 = now_ms(), t3 = t2;
    if (ok && stats) {
        rt_exec_profile(program_exec(p), true);
        ok = program_run(p, d);
        t3 = now_ms();
    }
    if (ok) {
        int n = 0;
        for (int i = 0; i < g->n_nodes; i++)
            n += g->nodes[i]->op == OP_output;
        *outs = calloc((size_t)n + 1, sizeof **outs);
        if (!*outs)
            ir_unreachable("out of memory");
        for (int i = 0; i < g->n_nodes; i++) {
            const ir_node *o = g->nodes[i];
            if (o->op != OP_output)
                continue;
            const ir_node *x = o->in[0];
            ir_tensor *t = ir_tensor_new(x->dtype, &x->shape);
            rt_convert_to_f64(x->dtype, program_output(p, o->name), t->data, (size_t)ir_shape_numel(&x->shape));
            char *name = strdup(o->name);
            if (!name)
                ir_unreachable("out of memory");
            (*outs)[(*n_outs)++] = (ir_named_tensor){name, t};
        }
    }
    if (ok && stats) {
        const rt_plan *plan = program_plan(p);
        rt_exec_stats s = rt_exec_plan_stats(plan);
        int layers = 0;
        for (int i = 0; i < g->n_nodes; i++)
            layers = g->nodes[i]->stage + 1 > layers ? g->nodes[i]->stage + 1 : layers;
        printf("cpu: %d kernels, %d library calls (%d gemm, %d attention), %d copies, %d id checks per forward\n",
               s.kernels, s.gemms + s.attentions, s.gemms, s.attentions, s.copies, s.checks);
        if (layers > 0) {
            /* groups whose last member belongs to stage 0 (the first layer): one step each */
            int *last_stage = malloc(sizeof(int) * ((size_t)g->n_nodes + 1)), per_layer = 0;
            if (!last_stage)
                ir_unreachable("out of memory");
            for (int i = 0; i < g->n_nodes; i++)
                last_stage[i] = -2;
            for (int i = 0; i < g->n_nodes; i++)
                if (g->nodes[i]->group >= 0)
                    last_stage[g->nodes[i]->group] = g->nodes[i]->stage;
            for (int i = 0; i < g->n_nodes; i++)
                per_layer += last_stage[i] == 0;
            free(last_stage);
            printf("cpu: %d layers; kernels + library calls in layer 0: %d\n", layers, per_layer);
        }
        printf("cpu: arena %.2f MiB (%.2f MiB without reuse)\n", (double)plan->arena_bytes / 1048576.0,
               (double)pass_plan_memory_unshared(plan) / 1048576.0);
        rt_exec_stats es = rt_exec_stats_get(program_exec(p));
        printf("cpu: compile %.1f ms, forward %.2f ms (first), %.2f ms (second, profiled: kernels %.2f, gemm %.2f, "
               "attention %.2f, other %.2f), %d threads\n",
               program_compile_ms(p), t2 - t1, t3 - t2, es.ms_kernels, es.ms_gemms, es.ms_attentions, es.ms_other,
               rt_pool_size(pool));
    }
    for (int i = 0; bound && i < g->n_nodes; i++)
        free(bound[i]);
    free(bound);
    program_free(p);
    rt_pool_free(pool);
    return ok;
}

bool cli_cpu_plan_peak(const ir_graph *g0, int64_t *peak, int64_t *unshared, ir_diag *d)
{
    ir_graph *g = ir_graph_clone(g0);
    pass_options po = pass_options_default();
    cg_lowered low = {0};
    bool ok = pass_run_pipeline(g, "dce,cse,fuse", &po, d) && cg_lower(g, &low, d);
    if (ok) {
        *peak = pass_plan_memory(&low.plan);
        *unshared = pass_plan_memory_unshared(&low.plan);
    }
    cg_lowered_free(&low);
    ir_graph_free(g);
    return ok;
}
