/* profile_overhead.c — what --profile costs, on and off (docs/profiling.md, "Overhead"):
 *     bench_profile_overhead MODEL.loom [--runs N] [--trace] [-D name=value]...
 * Compiles MODEL for the CPU on the caller's thread alone (no pool: no scheduling noise, and
 * valgrind's callgrind counts one thread), binds zeros to every param and input, runs once to
 * warm up, then N times (default 200), and prints the median and minimum ms of a run. --trace
 * installs a trace first (runtime/trace.h), as `--profile` does, so every step is recorded.
 * With profiling off the executors' only per-step test is the profile flag they always had.
 * Build it against an older tree with -DBENCH_NO_TRACE (no runtime/trace.h there) to compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/program.h"
#include "frontend/frontend.h"
#include "runtime/clock.h"
#ifndef BENCH_NO_TRACE
#include "runtime/trace.h"
#endif

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.loom [--runs N] [--trace] [-D name=value]...\n", argv[0]);
        return 2;
    }
    int runs = 200;
    bool trace = false;
    fe_define defs[32];
    int n_defs = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--trace") == 0)
            trace = true;
        else if (strcmp(argv[i], "-D") == 0 && i + 1 < argc && n_defs < 32) {
            char *eq = strchr(argv[++i], '=');
            if (!eq)
                return 2;
            *eq = 0;
            defs[n_defs++] = (fe_define){argv[i], eq + 1};
        }
    }
#ifndef BENCH_NO_TRACE
    rt_trace *t = trace ? rt_trace_new(0, "bench") : NULL;
    rt_trace_install(t);
#else
    if (trace) {
        fprintf(stderr, "built without runtime/trace.h\n");
        return 2;
    }
#endif
    ir_diag d;
    ir_diag_init(&d);
    int file = ir_diag_load_file(&d, argv[1]);
    ir_graph *g = file >= 0 ? fe_build(&d, file, defs, n_defs) : NULL;
    program *p = g ? program_cpu_new(g, NULL, NULL, &d) : NULL;
    if (!p) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    const ir_graph *pg = program_graph(p);
    void **bufs = calloc((size_t)pg->n_nodes + 1, sizeof *bufs);
    for (int i = 0; i < pg->n_nodes; i++) {
        const ir_node *n = pg->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        bufs[i] = calloc((size_t)ir_shape_numel(&n->shape) + 1, (size_t)ir_dtype_size(n->dtype));
        program_bind(p, n->name, bufs[i], &d);
    }
    double *ms = calloc((size_t)runs + 1, sizeof *ms);
    bool ok = program_run(p, &d);
    for (int r = 0; ok && r < runs; r++) {
        double t0 = rt_now_ms();
        ok = program_run(p, &d);
        ms[r] = rt_now_ms() - t0;
    }
    if (!ok) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    rt_sort_doubles(ms, (size_t)runs);
    printf("%s: %d runs, median %.4f ms, min %.4f ms\n", trace ? "trace on " : "trace off", runs, ms[runs / 2], ms[0]);
    program_free(p);
    for (int i = 0; i < pg->n_nodes; i++)
        free(bufs[i]);
    free(bufs);
    free(ms);
    ir_graph_free(g);
    ir_diag_free(&d);
#ifndef BENCH_NO_TRACE
    rt_trace_install(NULL);
    rt_trace_free(t);
#endif
    return 0;
}
