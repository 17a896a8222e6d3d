/* standalone_main.c — main() of a model's `loom build` executable (io/exe_payload.h):
 *
 *     EXE --weights W.safetensors --inputs I.safetensors --outputs O.safetensors [--stats]
 *         [--repeat N]
 *
 * Reads its payload (target, the model's graph as textual IR, the pipeline) from the end of its
 * own file (/proc/self/exe), parses the graph, and runs it exactly as `loom run --target T`
 * does, through the same function (engine/run.c: eng_run_files): the same checks and messages
 * for missing, extra and mistyped tensors, optional inputs that may be absent (the outputs that
 * need them are dropped), the same pipeline, lowering and memory plan, the same outputs and
 * --stats lines. Only compiling differs: program_new is exe/program_aot.c's, whose backends find
 * each kernel compiled into this executable by the hash of its kernel IR (cpu, cuda) or render
 * OpenCL C (opencl) — no LLVM, flex or bison. --repeat N times N more runs (for benchmarks;
 * implies --stats). Threads: LOOM_NUM_THREADS, default all CPUs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run.h"
#include "plan/plan_io.h"
#include "io/exe_payload.h"

typedef struct {
    const char *weights, *inputs, *outputs, *profile;
    bool stats;
    int repeat;
} exe_opts;

static const char *prog = "loom-exe";

static void usage(FILE *out, const char *model)
{
    fprintf(out,
            "usage: %s --weights W.safetensors --inputs I.safetensors --outputs O.safetensors [--stats] "
            "[--repeat N] [--profile FILE.json]\n%s%s%s",
            prog, model ? "built by `loom build` from " : "", model ? model : "", model ? "\n" : "");
}

/* 0: parsed; 1: --help shown; -1: an error (printed). */
static int parse(int argc, char **argv, exe_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--stats") == 0) {
            o->stats = true;
            continue;
        }
        static const char *const names[] = {"--weights", "--inputs", "--outputs", "--profile", "--repeat"};
        const char **fields[] = {&o->weights, &o->inputs, &o->outputs, &o->profile, NULL};
        const char *v;
        int k = rt_exe_option(argc, argv, &i, names, 5, prog, &v);
        if (k < 0)
            return -1;
        if (fields[k]) {
            *fields[k] = v;
            continue;
        }
        char *end;
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 1 || n > 100000) {
            fprintf(stderr, "%s: --repeat expects an integer in [1, 100000], got '%s'\n", prog, v);
            return -1;
        }
        o->repeat = (int)n;
        o->stats = true;
    }
    return 0;
}

/* The text of the blob called name (malloc'd), or NULL after an error naming it. */
static char *need_text(const rt_plan_blob *b, int n, const char *name, ir_diag *d)
{
    const rt_plan_blob *x = rt_plan_blob_find(b, n, name);
    if (!x) {
        ir_diag_error(d, -1, 0, 0, "%s: the payload has no '%s' record (not a model's executable)", prog, name);
        return NULL;
    }
    return rt_plan_blob_text(x);
}

int main(int argc, char **argv)
{
    prog = rt_exe_name(argc > 0 ? argv[0] : NULL, prog);
    ir_diag d;
    ir_diag_init(&d);
    rt_plan plan = {0};
    rt_plan_blob *blobs = NULL;
    int n_blobs = 0;
    if (!rt_exe_load(prog, &plan, &blobs, &n_blobs, &d))
        return rt_exe_finish(&d);
    char *target = need_text(blobs, n_blobs, "target", &d), *pipeline = need_text(blobs, n_blobs, "pipeline", &d);
    const rt_plan_blob *graph = rt_plan_blob_find(blobs, n_blobs, "graph");
    const rt_plan_blob *model = rt_plan_blob_find(blobs, n_blobs, "model");
    if (!graph && ir_diag_ok(&d))
        ir_diag_error(&d, -1, 0, 0, "%s: the payload has no 'graph' record (not a model's executable)", prog);
    char *model_text = rt_plan_blob_text(model);
    exe_opts o;
    int parsed = ir_diag_ok(&d) ? parse(argc, argv, &o) : 0;
    if (parsed > 0)
        usage(stdout, model_text);
    /* the graph as `loom run` loads it; its messages name the record: graph:LINE:COL */
    ir_graph *g = parsed == 0 && ir_diag_ok(&d)
                      ? ir_parse(&d, ir_diag_add_source(&d, "graph", (const char *)graph->data, graph->size))
                      : NULL;
    if (g) {
        eng_run_opts ro = {.who = prog, .target = target, .pipeline = pipeline, .prec = IR_PREC_F32,
                           .stats = o.stats, .repeats = o.repeat, .profile = o.profile};
        eng_run_files(g, &ro, o.weights, o.inputs, o.outputs, &d);
    }
    ir_graph_free(g);
    free(model_text);
    free(target);
    free(pipeline);
    rt_plan_clear(&plan);
    rt_plan_blobs_free(blobs, n_blobs);
    if (parsed != 0) {
        ir_diag_free(&d);
        return parsed > 0 ? 0 : 2;
    }
    return rt_exe_finish(&d);
}
