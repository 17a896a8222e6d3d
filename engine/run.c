/* run.c — `loom run --target cpu`: the graph through fusion, lowering, the memory plan,
 * the host JIT and the CPU executor (run.h: eng_run_cpu).
 *
 * Outputs that need an absent optional input are dropped first (with everything only they
 * need), as the reference interpreter skips them; then the pipeline runs (--passes, default
 * dce,cse,fuse; it must end with fuse) with the verifier between passes, the fused graph is
 * lowered to a plan and kernels, the activation arena is planned, every kernel is JIT-compiled into one module, and the executor runs the
 * plan once on a thread pool of LOOM_NUM_THREADS (default: all CPUs) with params and inputs
 * converted to their declared dtypes. --stats prints the plan's kernels and library calls,
 * its memory as planned and as measured (arena pages touched), and times (compile, and two
 * forwards: the first touches fresh memory). Binding, running and reading back
 * (eng_run_exec) are shared with `loom build` executables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/run.h"
#include "engine/run_values.h"
#include "runtime/clock.h"
#include "engine/program.h"
#include "codegen/codegen.h"
#include "runtime/cpu/exec_cpu.h"
#include "ir/interp.h"
#include "codegen/lower.h"
#include "passes/pass.h"
#include "plan/plan_memory.h"
#include "io/safetensors.h"

/* Does pipeline (a,b,c) end with the pass fuse? */
static bool ends_with_fuse(const char *pipeline)
{
    size_t n = strlen(pipeline);
    while (n > 0 && pipeline[n - 1] == ' ')
        n--;
    return n >= 4 && strncmp(pipeline + n - 4, "fuse", 4) == 0 && (n == 4 || pipeline[n - 5] == ',');
}

bool eng_run_cpu(const ir_graph *g0, const char *pipeline, const ir_named_tensor *vals, int n_vals, bool stats,
                 ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    if (pipeline && !ends_with_fuse(pipeline)) {
        ir_diag_error(d, -1, 0, 0, "run: --passes for --target cpu must end with fuse (got '%s')", pipeline);
        return false;
    }
    ir_graph *g0c = ir_graph_clone(g0);
    eng_drop_absent(g0c, vals, n_vals);
    rt_pool *pool = rt_pool_new(0);
    program *p = program_cpu_new(g0c, pipeline, pool, d);
    ir_graph_free(g0c);
    bool ok = p != NULL;
    /* bind, run (twice with stats: the first touches fresh memory), read back: run_io.c,
     * shared with `loom build` executables */
    rt_io_sig sig = ok ? rt_io_sig_from_graph(program_graph(p)) : (rt_io_sig){0};
    eng_run_times times;
    ok = ok && eng_run_exec(program_exec(p), &sig, vals, n_vals, stats ? 1 : 0, stats, &times, outs, n_outs, d);
    if (ok && stats) {
        rt_io_plan_info info = eng_cpu_plan_info(program_graph(p), program_plan(p));
        info.compile_ms = program_compile_ms(p);
        eng_print_cpu_stats(program_plan(p), program_exec(p), pool, &info, &times);
    }
    rt_io_sig_free(&sig);
    program_free(p);
    rt_pool_free(pool);
    return ok;
}

rt_io_plan_info eng_cpu_plan_info(const ir_graph *g, const rt_plan *plan)
{
    rt_io_plan_info info = {0, 0, pass_plan_memory_unshared(plan), -1};
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
