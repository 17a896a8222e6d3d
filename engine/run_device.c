/* run_device.c — `loom run --target cuda` (and any program.h target other than the CPU's):
 * eng_run_program compiles the graph once through program_new, binds params and inputs
 * (converted to their declared dtypes; the GPU backends copy them to the device), runs, and
 * reads the outputs back. Outputs that need an absent optional input are dropped first, as
 * on the CPU. --stats: plan step counts, arena, compile time, the first run, then
 * LOOM_STATS_RUNS (default 10) more runs timed on the host (median, min) and one profiled
 * run's device time by step kind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "engine/run.h"
#include "engine/run_values.h"
#include "engine/program.h"
#include "io/safetensors.h"

static bool bind_all(program *p, const ir_named_tensor *vals, int n_vals, ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    bool ok = true;
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        const ir_tensor *t = eng_find_value(vals, n_vals, n->name);
        if (!t) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "missing value for %s '%s'", ir_ops[n->op].mnemonic,
                          n->name);
            return false;
        }
        size_t count = (size_t)ir_shape_numel(&n->shape);
        void *buf = malloc(count * (size_t)ir_dtype_size(n->dtype) + 1);
        if (!buf)
            ir_unreachable("out of memory");
        rt_convert_from_f64(n->dtype, t->data, buf, count);
        ok = program_bind(p, n->name, buf, d);
        free(buf); /* a GPU program copied it; the CPU program is not run from here */
    }
    return ok;
}

static void print_stats(program *p, double first_ms, double *runs, int n_runs)
{
    const rt_plan *plan = program_plan(p);
    rt_exec_stats s = program_stats(p);
    rt_sort_doubles(runs, (size_t)n_runs);
    printf("%s: %d kernels, %d gemms, %d attentions, %d copies, %d id checks; arena %.1f MiB\n", program_target(p),
           s.kernels, s.gemms, s.attentions, s.copies, s.checks, (double)plan->arena_bytes / (1 << 20));
    printf("%s: compile %.1f ms, first run %.3f ms, %d more runs: median %.3f ms, min %.3f ms\n", program_target(p),
           program_compile_ms(p), first_ms, n_runs, n_runs ? runs[n_runs / 2] : 0.0, n_runs ? runs[0] : 0.0);
    printf("%s: one profiled run (device time): kernels %.3f ms, gemms %.3f ms, attention %.3f ms, other %.3f ms\n",
           program_target(p), s.ms_kernels, s.ms_gemms, s.ms_attentions, s.ms_other);
}

bool eng_run_program(const char *target, const ir_graph *g0, const char *pipeline, const ir_named_tensor *vals,
                     int n_vals, bool stats, ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    ir_graph *g0c = ir_graph_clone(g0);
    eng_drop_absent(g0c, vals, n_vals);
    program *p = program_new(target, g0c, pipeline, NULL, d);
    ir_graph_free(g0c);
    if (!p)
        return false;
    bool ok = bind_all(p, vals, n_vals, d);
    double t0 = rt_now_ms();
    ok = ok && program_run(p, d);
    double first_ms = rt_now_ms() - t0;
    if (ok && stats) {
        const char *env = getenv("LOOM_STATS_RUNS");
        int n_runs = env && atoi(env) > 0 ? atoi(env) : 10;
        double *runs = calloc((size_t)n_runs + 1, sizeof *runs);
        if (!runs)
            ir_unreachable("out of memory");
        for (int r = 0; ok && r < n_runs; r++) {
            double t = rt_now_ms();
            ok = program_run(p, d);
            runs[r] = rt_now_ms() - t;
        }
        program_profile(p, true);
        ok = ok && program_run(p, d);
        if (ok)
            print_stats(p, first_ms, runs, n_runs);
        free(runs);
    }
    const ir_graph *g = program_graph(p);
    if (ok) {
        int n = 0;
        for (int i = 0; i < g->n_nodes; i++)
            n += g->nodes[i]->op == OP_output;
        *outs = calloc((size_t)n + 1, sizeof **outs);
        if (!*outs)
            ir_unreachable("out of memory");
        for (int i = 0; ok && i < g->n_nodes; i++) {
            const ir_node *o = g->nodes[i];
            if (o->op != OP_output)
                continue;
            const ir_node *x = o->in[0];
            void *host = program_output(p, o->name);
            if (!host) {
                ir_diag_error(d, -1, 0, 0, "%s: cannot read output '%s'", target, o->name);
                ok = false;
                break;
            }
            ir_tensor *t = ir_tensor_new(x->dtype, &x->shape);
            rt_convert_to_f64(x->dtype, host, t->data, (size_t)ir_shape_numel(&x->shape));
            char *name = strdup(o->name);
            if (!name)
                ir_unreachable("out of memory");
            (*outs)[(*n_outs)++] = (ir_named_tensor){name, t};
        }
    }
    program_free(p);
    return ok;
}
