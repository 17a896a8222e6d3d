/* run.c — one run of a model (run.h: eng_run, eng_run_files): the path of `loom run` on every
 * target and of every executable of `loom build`.
 *
 * Outputs that need an absent optional input are dropped first, with everything only they
 * need (engine/run_values.c), as the reference interpreter skips them. On a program target
 * (cpu, cuda, opencl[:P[:D]]) program_new runs the pipeline (--passes, default dce,cse,fuse; it
 * must end with fuse) with the verifier between passes, lowers the fused graph to a plan and
 * kernels, plans the activation arena and hands both to the target's backend — in the `loom`
 * command the host JIT, PTX through LLVM or OpenCL C (engine/program_targets.c); in an
 * executable the kernels compiled into it, found by the hash of their kernel IR, or OpenCL C
 * rendered at start-up (exe/program_aot.c). Params and inputs are bound in their declared
 * dtypes (the CPU reads the bound memory during runs; a device copies it), the program runs
 * once (cpu: on a thread pool of LOOM_NUM_THREADS, default all CPUs) and the outputs are read
 * back. --stats: more runs, timed, and the lines of run_stats.c. On ref the reference
 * interpreter runs the graph after the pipeline (if one is given).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/profile.h"
#include "engine/program.h"
#include "engine/run.h"
#include "engine/run_values.h"
#include "codegen/lower.h"
#include "io/safetensors.h"
#include "ir/interp.h"
#include "passes/pass.h"
#include "plan/plan_memory.h"
#include "runtime/clock.h"

bool eng_pipeline_ends_with_fuse(const char *pipeline)
{
    size_t n = strlen(pipeline);
    while (n > 0 && pipeline[n - 1] == ' ')
        n--;
    return n >= 4 && strncmp(pipeline + n - 4, "fuse", 4) == 0 && (n == 4 || pipeline[n - 5] == ',');
}

/* Binds every param and input of p's graph from vals, converted to its dtype into bufs[node]
 * (freed by the caller after the last run: the CPU reads bound memory in place). */
static bool bind_all(program *p, const ir_named_tensor *vals, int n_vals, void **bufs, ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    bool ok = true;
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        const ir_tensor *t = eng_find_value(vals, n_vals, n->name);
        if (!t) {
            ir_diag_error(d, -1, 0, 0, "missing value for %s '%s'", ir_ops[n->op].mnemonic, n->name);
            return false;
        }
        size_t count = (size_t)ir_shape_numel(&n->shape);
        bufs[i] = malloc(count * (size_t)ir_dtype_size(n->dtype) + 1);
        if (!bufs[i])
            ir_unreachable("out of memory");
        rt_convert_from_f64(n->dtype, t->data, bufs[i], count);
        ok = program_bind(p, n->name, bufs[i], d);
    }
    return ok;
}

/* --stats: o->repeats more runs timed (on the CPU each profiled, its lines giving per-run
 * means; on a device unprofiled, then one profiled run for the device time by step kind),
 * then the target's lines. */
static bool stats_runs(program *p, const eng_run_opts *o, rt_pool *pool, double first_ms, ir_diag *d)
{
    bool host = program_exec(p) != NULL;
    int n = o->repeats;
    if (n <= 0) {
        const char *env = getenv("LOOM_STATS_RUNS");
        n = host ? 1 : env && atoi(env) > 0 ? atoi(env) : 10;
    }
    double *ms = calloc((size_t)n + 1, sizeof *ms);
    if (!ms)
        ir_unreachable("out of memory");
    eng_run_times t = {.ms_first = first_ms};
    program_profile(p, host);
    bool ok = true;
    for (int r = 0; ok && r < n; r++) {
        double t0 = rt_now_ms();
        ok = program_run(p, d);
        ms[t.repeats++] = rt_now_ms() - t0;
    }
    if (ok && !host) {
        program_profile(p, true);
        ok = program_run(p, d);
    }
    rt_sort_doubles(ms, (size_t)t.repeats);
    t.ms_min = ms[0];
    int h = t.repeats / 2;
    t.ms_median = t.repeats % 2 ? ms[h] : (ms[h - 1] + ms[h]) / 2;
    free(ms);
    if (ok && host) {
        eng_plan_info info = eng_cpu_plan_info(program_graph(p), program_plan(p));
        info.compile_ms = program_compile_ms(p);
        eng_print_cpu_stats(program_plan(p), program_exec(p), pool, &info, &t);
    } else if (ok)
        eng_print_device_stats(program_target(p), program_plan(p), program_stats(p), program_compile_ms(p), &t);
    return ok;
}

/* The outputs of p after a run, as doubles in graph order. */
static bool read_outputs(program *p, ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    *outs = calloc((size_t)g->n_nodes + 1, sizeof **outs);
    if (!*outs)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *o = g->nodes[i];
        if (o->op != OP_output)
            continue;
        const ir_node *x = o->in[0];
        const void *host = program_output(p, o->name);
        if (!host) {
            ir_diag_error(d, -1, 0, 0, "%s: cannot read output '%s'", program_target(p), o->name);
            return false;
        }
        ir_tensor *t = ir_tensor_new(x->dtype, &x->shape);
        rt_convert_to_f64(x->dtype, host, t->data, (size_t)ir_shape_numel(&x->shape));
        char *name = strdup(o->name);
        if (!name)
            ir_unreachable("out of memory");
        (*outs)[(*n_outs)++] = (ir_named_tensor){name, t};
    }
    return true;
}

bool eng_run(const ir_graph *g0, const eng_run_opts *o, const ir_named_tensor *vals, int n_vals,
             ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    ir_graph *g = ir_graph_clone(g0);
    if (strcmp(o->target, "ref") == 0) {
        /* --passes on the reference target: e.g. dce,autodiff gives the reference gradients */
        pass_options po = pass_options_default();
        bool ok = (!o->pipeline || pass_run_pipeline(g, o->pipeline, &po, d)) &&
                  ir_interp_run(g, o->prec, vals, n_vals, outs, n_outs, d);
        ir_graph_free(g);
        return ok;
    }
    if (o->pipeline && !eng_pipeline_ends_with_fuse(o->pipeline)) {
        ir_diag_error(d, -1, 0, 0, "%s: --passes for --target %s must end with fuse (got '%s')",
                      o->who ? o->who : "run", o->target, o->pipeline);
        ir_graph_free(g);
        return false;
    }
    eng_drop_absent(g, vals, n_vals);
    rt_pool *pool = strcmp(o->target, "cpu") == 0 ? rt_pool_new(0) : NULL;
    program *p = program_new(o->target, g, o->pipeline, pool, d);
    ir_graph_free(g);
    if (!p) {
        rt_pool_free(pool);
        return false;
    }
    int n_nodes = program_graph(p)->n_nodes;
    void **bufs = calloc((size_t)n_nodes + 1, sizeof *bufs);
    if (!bufs)
        ir_unreachable("out of memory");
    bool ok = bind_all(p, vals, n_vals, bufs, d);
    double t0 = rt_now_ms();
    ok = ok && program_run(p, d);
    double first_ms = rt_now_ms() - t0;
    eng_trace_span("run", "forward", "", t0, t0 + first_ms);
    ok = ok && (!o->stats || stats_runs(p, o, pool, first_ms, d)) && read_outputs(p, outs, n_outs, d);
    if (!ok && *outs) {
        ir_named_tensors_free(*outs, *n_outs);
        *outs = NULL;
        *n_outs = 0;
    }
    for (int i = 0; i < n_nodes; i++)
        free(bufs[i]);
    free(bufs);
    program_free(p);
    rt_pool_free(pool);
    return ok;
}

bool eng_run_files(const ir_graph *g, const eng_run_opts *o, const char *weights, const char *inputs,
                   const char *outputs, ir_diag *d)
{
    eng_profile *prof = eng_profile_start(o->profile, o->who ? o->who : "loom run", d);
    if (o->profile && !prof)
        return false;
    rt_io_sig sig = rt_io_sig_from_graph(g);
    ir_named_tensor *vals = NULL, *outs = NULL;
    int n_vals = 0, n_outs = 0;
    if (rt_io_check_options(&sig, o->who ? o->who : "run", weights, inputs, outputs, d))
        rt_io_load(&sig, weights, inputs, o->prec, &vals, &n_vals, d);
    if (ir_diag_ok(d) && eng_run(g, o, vals, n_vals, &outs, &n_outs, d))
        rt_io_write_outputs(outputs, outs, n_outs, o->prec, d);
    if (outs)
        ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    rt_io_sig_free(&sig); /* after vals: their names point into it */
    eng_profile_finish(prof, d);
    return ir_diag_ok(d);
}

eng_plan_info eng_cpu_plan_info(const ir_graph *g, const rt_plan *plan)
{
    eng_plan_info info = {0, 0, pass_plan_memory_unshared(plan), -1};
    for (int i = 0; i < g->n_nodes; i++)
        info.layers = g->nodes[i]->stage + 1 > info.layers ? g->nodes[i]->stage + 1 : info.layers;
    if (info.layers > 0) {
        /* groups whose last member belongs to stage 0 (the first layer): one step each */
        int *last_stage = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
        if (!last_stage)
            ir_unreachable("out of memory");
        for (int i = 0; i < g->n_nodes; i++)
            last_stage[i] = -2;
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i]->group >= 0)
                last_stage[g->nodes[i]->group] = g->nodes[i]->stage;
        for (int i = 0; i < g->n_nodes; i++)
            info.per_layer += last_stage[i] == 0;
        free(last_stage);
    }
    return info;
}

bool eng_cpu_plan_peak(const ir_graph *g0, int64_t *peak, int64_t *unshared, ir_diag *d)
{
    ir_graph *g = ir_graph_clone(g0);
    pass_options po = pass_options_default();
    cg_lowered low = {0};
    bool ok = pass_run_pipeline(g, pass_default_pipeline(), &po, d) && cg_lower(g, &low, d);
    if (ok) {
        *peak = pass_plan_memory(&low.plan);
        *unshared = pass_plan_memory_unshared(&low.plan);
    }
    cg_lowered_free(&low);
    ir_graph_free(g);
    return ok;
}
