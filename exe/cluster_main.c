/* cluster_main.c — main() of a cluster executable (`loom build --mesh`, engine/build.c):
 *
 *     mpirun -np N EXE --weights W.safetensors [--inputs I.safetensors] --outputs O.safetensors
 *         [--allreduce backend|ring|tree] [--timeout SECONDS] [--stats]
 *
 * The payload (io/exe_payload.h) is a plan file with no steps whose blobs are
 *     "target"   "cpu", "opencl[:P[:D]]": every rank's segments on its OpenCL device (OpenCL C
 *                rendered from kernel IR at start-up, program_aot.c), or "cuda": on its GPU (the
 *                PTX module compiled in, program_cuda_table.c); values staged through the host
 *     "mesh"     the mesh, e.g. "dp=1,tp=2,pp=2"
 *     "model"    text: the model file and -D options it was built with
 *     "rank.R"   rank R's graph after the pipeline and shard passes, as textual IR (ir/print.c)
 * Each process takes its rank from the launcher (OpenMPI, PMI, Slurm), parses its graph and
 * runs it as `loom run --mesh` does (mesh_exec_job), each segment's kernels found among those
 * linked into the executable (program_table.c): no LLVM, flex or bison where it runs.
 *
 * A training executable (`--train`; blobs "train", "model_file", "model_source", "defines",
 * "fixed": the train options compiled in) runs `loom train` (cmd_train.c) on the embedded
 * model: every program it compiles (program_aot.c) finds its kernels in the table.
 *
 *     mpirun -np N EXE --data FILE --steps N [loom train's other options]
 * Not part of the `loom` command: CMake builds it into libloom_cluster.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jobs.h"
#include "engine/run_values.h"
#include "collectives/coll.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "plan/plan_io.h"
#include "engine/program.h"
#include "io/exe_payload.h"
#include "io/hf.h"

static const char *prog = "loom-cluster-exe";

typedef struct {
    const char *weights, *inputs, *outputs, *profile;
    bool stats;
    int n_coll;
    const char *coll_key[4], *coll_value[4];
} exe_opts;

/* 0: parsed; 1: --help; -1: an error (printed). */
static int parse(int argc, char **argv, exe_opts *o)
{
    memset(o, 0, sizeof *o);
    static const char *const names[] = {"--weights", "--inputs", "--outputs", "--allreduce", "--timeout", "--profile"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--stats") == 0) {
            o->stats = true;
            continue;
        }
        const char *v;
        int k = rt_exe_option(argc, argv, &i, names, 6, prog, &v);
        if (k < 0)
            return -1;
        if (k == 5)
            o->profile = v;
        else if (k < 3)
            *(k == 0 ? &o->weights : k == 1 ? &o->inputs : &o->outputs) = v;
        else if (o->n_coll < 4) {
            o->coll_key[o->n_coll] = names[k];
            o->coll_value[o->n_coll++] = v;
        }
    }
    return 0;
}

/* This rank's graph from the payload; NULL after reporting. */
static ir_graph *rank_graph(const rt_plan_blob *blobs, int n_blobs, int rank, ir_diag *d)
{
    char name[32];
    snprintf(name, sizeof name, "rank.%d", rank);
    const rt_plan_blob *b = rt_plan_blob_find(blobs, n_blobs, name);
    if (!b) {
        ir_diag_error(d, -1, 0, 0, "%s: the payload has no '%s' record", prog, name);
        return NULL;
    }
    int file = ir_diag_add_source(d, name, (const char *)b->data, b->size);
    return ir_parse(d, file);
}

/* Splits text at '\n' into malloc'd words appended to v (n of them, at most cap). */
static void add_lines(const rt_plan_blob *b, char **v, int *n, int cap)
{
    char *text = rt_plan_blob_text(b);
    for (char *save = NULL, *w = text ? strtok_r(text, "\n", &save) : NULL; w && *n < cap; w = strtok_r(NULL, "\n", &save))
        v[(*n)++] = strdup(w);
    free(text);
}

/* A training executable (`loom build --mesh M --train`): `loom train` itself, with the model,
 * the mesh and the options that decide its programs from the payload and the rest (--data,
 * --steps, --lr, --checkpoint, ...) from the command line. */
static int run_training(int argc, char **argv, const rt_plan_blob *blobs, int n_blobs, const char *mesh,
                        const char *model, const char *target)
{
    static const char *const fixed[] = {"--mesh",  "--microbatches", "--accum", "--optimizer", "--momentum",
                                        "--weight-decay", "--beta1", "--beta2", "--eps",   "--clip",
                                        "--precision", "--target", "-o",      "--zero", "--recompute",
                                        "--sequence-parallel", "--virtual-stages"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: mpirun -np N %s --data FILE --steps N [loom train's options: --lr, --warmup, --checkpoint, "
                   "--resume, --eval-every, --log, --schedule, --allreduce, --timeout, --stats, ...]\n"
                   "built by `loom build --mesh %s --train` from %s\n",
                   prog, mesh, model ? model : "?");
            return 0;
        }
        const char *prev = i > 1 ? argv[i - 1] : "";
        if (prev[0] == '-' && !strchr(prev, '=') && strcmp(prev, "--stats") != 0)
            continue; /* the value of the option before it */
        bool is_fixed = strncmp(argv[i], "-D", 2) == 0;
        for (size_t k = 0; !is_fixed && k < sizeof fixed / sizeof *fixed; k++) {
            size_t len = strlen(fixed[k]);
            is_fixed = strncmp(argv[i], fixed[k], len) == 0 && (argv[i][len] == 0 || argv[i][len] == '=');
        }
        if (is_fixed) {
            fprintf(stderr, "%s: %s is compiled into this executable (loom build --mesh %s --train ...); build another "
                    "to change it\n", prog, argv[i], mesh);
            return 2;
        }
    }
    enum { CAP = 512 };
    char *v[CAP];
    int n = 0;
    v[n++] = rt_plan_blob_text(rt_plan_blob_find(blobs, n_blobs, "model_file"));
    char *defs[CAP / 4];
    int n_defs = 0;
    add_lines(rt_plan_blob_find(blobs, n_blobs, "defines"), defs, &n_defs, CAP / 4);
    for (int k = 0; k + 1 < n_defs && n + 2 < CAP; k += 2) {
        char *def = malloc(strlen(defs[k]) + strlen(defs[k + 1]) + 2);
        if (!def)
            ir_unreachable("out of memory");
        sprintf(def, "%s=%s", defs[k], defs[k + 1]);
        v[n++] = strdup("-D");
        v[n++] = def;
    }
    for (int k = 0; k < n_defs; k++)
        free(defs[k]);
    v[n++] = strdup("--mesh");
    v[n++] = strdup(mesh);
    if (target && strcmp(target, "cpu") != 0) {
        v[n++] = strdup("--target");
        v[n++] = strdup(target);
    }
    add_lines(rt_plan_blob_find(blobs, n_blobs, "fixed"), v, &n, CAP - argc);
    int first_user = n;
    for (int i = 1; i < argc && n < CAP; i++)
        v[n++] = argv[i];
    static eng_opts o; /* big: not on the stack */
    int status = 2;
    char why[512] = "";
    char *source = rt_plan_blob_text(rt_plan_blob_find(blobs, n_blobs, "model_source"));
    if (v[0] && source && !eng_opts_parse("train", n, v, &o, why, sizeof why))
        fprintf(stderr, "%s\n", why);
    else if (v[0] && source) {
        o.file_text = source;
        o.exe_name = prog;
        ir_diag d;
        ir_diag_init(&d);
        bool preempted;
        eng_train(&o, &d, &preempted);
        status = rt_exe_finish(&d);
        status = status == 0 && preempted ? ENG_EXIT_PREEMPTED : status;
    } else if (!v[0] || !source)
        fprintf(stderr, "%s: the payload has no model (not a training executable)\n", prog);
    free(source);
    for (int k = 0; k < first_user; k++)
        free(v[k]);
    return status;
}

/* mesh_exec.h's compiler: the segment lowered here for the payload's target (ctx): on the CPU
 * its kernels linked in ahead of time, on OpenCL its OpenCL C rendered now. */
static program *compile_segment(void *ctx, const ir_graph *segment, rt_pool *pool, ir_diag *d)
{
    return program_new(ctx, segment, NULL, pool, d);
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
    char *mesh_spec = rt_plan_blob_text(rt_plan_blob_find(blobs, n_blobs, "mesh"));
    char *model = rt_plan_blob_text(rt_plan_blob_find(blobs, n_blobs, "model"));
    char *target = rt_plan_blob_text(rt_plan_blob_find(blobs, n_blobs, "target"));
    if (!mesh_spec)
        ir_diag_error(&d, -1, 0, 0, "%s: the payload has no 'mesh' record (not a cluster executable)", prog);
    if (mesh_spec && rt_plan_blob_find(blobs, n_blobs, "train")) {
        int status = run_training(argc, argv, blobs, n_blobs, mesh_spec, model, target);
        free(mesh_spec);
        free(model);
        free(target);
        rt_plan_clear(&plan);
        rt_plan_blobs_free(blobs, n_blobs);
        ir_diag_free(&d);
        return status;
    }
    exe_opts o;
    int parsed = ir_diag_ok(&d) ? parse(argc, argv, &o) : 0;
    coll_launch launch;
    coll_error cerr;
    if (parsed > 0)
        printf("usage: mpirun -np N %s --weights W.safetensors [--inputs I.safetensors] --outputs O.safetensors "
               "[--allreduce backend|ring|tree] [--timeout SECONDS] [--stats] [--profile FILE.json]\nbuilt by `loom build --mesh %s` from %s\n",
               prog, mesh_spec, model ? model : "?");
    else if (parsed == 0 && ir_diag_ok(&d) && !o.outputs)
        ir_diag_error(&d, -1, 0, 0, "%s: missing --outputs FILE.safetensors (where to write the outputs)", prog);
    else if (parsed == 0 && ir_diag_ok(&d) && !coll_launch_detect(&launch, &cerr))
        ir_diag_error(&d, -1, 0, 0, "%s: %s", prog, cerr.message);
    int rank = parsed == 0 && ir_diag_ok(&d) && launch.found ? launch.rank : 0;
    ir_graph *L = parsed == 0 && ir_diag_ok(&d) ? rank_graph(blobs, n_blobs, rank, &d) : NULL;
    pass_mesh mesh;
    if (L && pass_mesh_parse(mesh_spec, rank, L, &mesh, &d)) {
        int started = launch.found ? launch.size : 1;
        if (mesh.world != started)
            ir_diag_error(&d, -1, 0, 0,
                          "%s: built for the mesh %s of %d rank%s but %d process%s started; start one process per "
                          "rank (mpirun -np %d %s ...)",
                          prog, mesh_spec, mesh.world, mesh.world == 1 ? "" : "s", started,
                          started == 1 ? " was" : "es were", mesh.world, prog);
    }
    mesh_job job = {.who = prog, .outputs = o.outputs, .stats = o.stats, .profile = o.profile,
                    .compile = compile_segment, .compile_ctx = target ? target : "cpu"};
    rt_st_file wf = {0}, inf = {0};
    bool have_w = false, have_i = false;
    if (L && ir_diag_ok(&d)) {
        have_w = mesh_coll_options(o.coll_key, o.coll_value, o.n_coll, prog, &job.coll, &d) && o.weights &&
                 rt_hf_open_weights(o.weights, &wf, &d);
        job.coll.gpu = target && strcmp(target, "cuda") == 0; /* NCCL unless $LOOM_COLL says, as loom run */
        have_i = ir_diag_ok(&d) && o.inputs && rt_st_open(o.inputs, &inf, &d);
    }
    if (L && ir_diag_ok(&d)) {
        job.weights = have_w ? &wf : NULL;
        job.inputs = have_i ? &inf : NULL;
        mesh_exec_job(L, &mesh, &job, &d);
    } else {
        ir_graph_free(L);
        /* every rank finds the same error: only rank 0 says it */
        if (rank > 0 && parsed == 0)
            ir_diag_quiet(&d);
    }
    if (have_w)
        rt_st_close(&wf);
    if (have_i)
        rt_st_close(&inf);
    free(mesh_spec);
    free(model);
    free(target);
    rt_plan_clear(&plan);
    rt_plan_blobs_free(blobs, n_blobs);
    return parsed > 0 ? (ir_diag_free(&d), 0) : parsed < 0 ? (ir_diag_free(&d), 2) : rt_exe_finish(&d);
}
