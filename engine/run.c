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
#include "runtime/half.h"

bool eng_pipeline_ends_with_fuse(const char *pipeline)
{
    size_t n = strlen(pipeline);
    while (n > 0 && pipeline[n - 1] == ' ')
        n--;
    return n >= 4 && strncmp(pipeline + n - 4, "fuse", 4) == 0 && (n == 4 || pipeline[n - 5] == ',');
}

/* Binds every param and input of p's graph to its value in vals, loaded in g0's declared dtype
 * (the CPU reads it in place, a device copies it). A param the pipeline gave a half type
 * (half-params) is bound to a copy rounded to it, kept in *owned (*n_owned of them) until the
 * program is freed. */
static bool bind_all(program *p, const ir_graph *g0, const rt_io_natives *vals, void ***owned, int *n_owned,
                     ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    bool ok = true;
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        const void *data = rt_io_native_find(vals, n->name);
        if (!data) {
            ir_diag_error(d, -1, 0, 0, "missing value for %s '%s'", ir_ops[n->op].mnemonic, n->name);
            return false;
        }
        const ir_node *n0 = n->op == OP_param ? eng_find_node(g0, OP_param, n->name) : NULL;
        if (n0 && n0->dtype == DT_F32 && (n->dtype == DT_BF16 || n->dtype == DT_F16)) {
            size_t count = (size_t)ir_shape_numel(&n->shape);
            void *half = malloc(count * 2 + 1);
            void **grown = realloc(*owned, sizeof **owned * (size_t)(*n_owned + 1));
            if (!half || !grown)
                ir_unreachable("out of memory");
            *owned = grown;
            (*owned)[(*n_owned)++] = half;
            rt_half_narrow(n->dtype, data, half, (int64_t)count);
            data = half;
        }
        ok = program_bind(p, n->name, data, d);
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

/* Writes p's outputs as they are after its last run (each in its own dtype). */
static bool write_outputs(program *p, const char *path, ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    rt_st_entry *e = calloc((size_t)g->n_nodes + 1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    int n = 0;
    bool ok = true;
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const ir_node *o = g->nodes[i];
        if (o->op != OP_output)
            continue;
        const void *host = program_output(p, o->name);
        if (!host) {
            ir_diag_error(d, -1, 0, 0, "%s: cannot read output '%s'", program_target(p), o->name);
            ok = false;
        }
        e[n++] = (rt_st_entry){o->name, o->in[0]->dtype, o->in[0]->shape, host};
    }
    ok = ok && rt_io_write_entries(path, e, n, d);
    free(e);
    return ok;
}

static bool given(const void *vals, const char *name) { return rt_io_native_find(vals, name) != NULL; }

/* A program target: what needs an absent optional input dropped, program_new, every value bound
 * in its declared dtype, one run (with stats the --stats lines after more), the outputs written
 * from the program's own buffers. */
static bool run_program(const ir_graph *g0, const eng_run_opts *o, const rt_io_natives *vals, const char *outputs,
                        ir_diag *d)
{
    if (o->pipeline && !eng_pipeline_ends_with_fuse(o->pipeline)) {
        ir_diag_error(d, -1, 0, 0, "%s: --passes for --target %s must end with fuse (got '%s')",
                      o->who ? o->who : "run", o->target, o->pipeline);
        return false;
    }
    ir_graph *g = ir_graph_clone(g0);
    eng_drop_absent_if(g, given, vals);
    rt_pool *pool = strcmp(o->target, "cpu") == 0 ? rt_pool_new(0) : NULL;
    program *p = program_new(o->target, g, o->pipeline, pool, d);
    ir_graph_free(g);
    void **owned = NULL;
    int n_owned = 0;
    bool ok = p && bind_all(p, g0, vals, &owned, &n_owned, d);
    double t0 = rt_now_ms();
    ok = ok && program_run(p, d);
    double first_ms = rt_now_ms() - t0;
    eng_trace_span("run", "forward", "", t0, t0 + first_ms);
    ok = ok && (!o->stats || stats_runs(p, o, pool, first_ms, d)) && write_outputs(p, outputs, d);
    program_free(p);
    for (int i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    rt_pool_free(pool);
    return ok;
}

/* The reference interpreter: values and outputs as doubles (f64 precision keeps them so). */
static bool run_ref(const ir_graph *g0, const eng_run_opts *o, const rt_io_sig *sig, const char *weights,
                    const char *inputs, const char *outputs, ir_diag *d)
{
    ir_named_tensor *vals = NULL, *outs = NULL;
    int n_vals = 0, n_outs = 0;
    ir_graph *g = ir_graph_clone(g0);
    pass_options po = pass_options_default();
    /* --passes on the reference target: e.g. dce,autodiff gives the reference gradients */
    if (rt_io_load(sig, weights, inputs, o->prec, &vals, &n_vals, d) &&
        (!o->pipeline || pass_run_pipeline(g, o->pipeline, &po, d)) &&
        ir_interp_run(g, o->prec, vals, n_vals, &outs, &n_outs, d))
        rt_io_write_outputs(outputs, outs, n_outs, o->prec, d);
    if (outs)
        ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    ir_graph_free(g);
    return ir_diag_ok(d);
}

bool eng_run_files(const ir_graph *g, const eng_run_opts *o, const char *weights, const char *inputs,
                   const char *outputs, ir_diag *d)
{
    eng_profile *prof = eng_profile_start(o->profile, o->who ? o->who : "loom run", d);
    if (o->profile && !prof)
        return false;
    rt_io_sig sig = rt_io_sig_from_graph(g);
    if (rt_io_check_options(&sig, o->who ? o->who : "run", weights, inputs, outputs, d)) {
        if (strcmp(o->target, "ref") == 0)
            run_ref(g, o, &sig, weights, inputs, outputs, d);
        else {
            rt_io_natives vals;
            if (rt_io_load_native(&sig, weights, inputs, &vals, d))
                run_program(g, o, &vals, outputs, d);
            rt_io_natives_free(&vals); /* after the program: the CPU read the mapped files in place */
        }
    }
    rt_io_sig_free(&sig); /* after the values: their names point into it */
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
