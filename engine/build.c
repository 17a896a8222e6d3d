/* build.c — `loom build MODEL [-D n=v]... [--target cpu|opencl[:P[:D]]|cuda] [--generic-cpu]
 * [--precision bf16|fp16] [--passes P] -o EXE`: a model's executable, which runs as `loom run
 * --target T` does because it runs through the same function (engine/run.c: eng_run_files).
 *
 * The payload (io/exe_payload.h) carries the model's graph as textual IR, the pipeline `loom
 * run` would run (--passes; dce,cse,fuse; a half --precision adds lower-precision, cpu only so
 * far) and the target. At start-up the executable drops the optional inputs not given, runs the
 * pipeline, lowers and plans memory as `loom run` does; only the kernels come from elsewhere.
 * Since the inputs given decide the graph and so its kernels, build lowers the graph of every
 * combination of optional inputs given and absent (at most BUILD_MAX_OPTIONAL optional inputs)
 * and compiles each distinct kernel once, named by the hash of its kernel IR
 * (program_kernel_symbol): cpu — one host object file (tuned for this machine, as the JIT, so
 * the outputs are bit-identical to `loom run`; --generic-cpu: for any CPU of this architecture,
 * e.g. another node, with outputs that may differ in the last bits) and a generated name →
 * function table; cuda — one PTX module (LOOM_CUDA_SM as for `loom run`) compiled into the
 * table file as a string; opencl — nothing: the executable renders OpenCL C from kernel IR at
 * start-up, which needs no LLVM. The system C compiler driver links the table (and object)
 * with libloom_exe.a (exe/standalone_main.c, exe/program_aot.c and the kernel-table backends)
 * and libloom.a, cJSON and OpenBLAS — no LLVM, flex or bison; a device target forces in its
 * backend (-Wl,-u,NAME): an OpenCL executable needs the ICD loader and CLBlast, a CUDA one
 * loads the driver and cuBLASLt with dlopen (runs, and fails clearly, without them).
 *
 * The compiler and the libraries are the ones this loom was built with (CMake passes
 * LOOM_CC, LOOM_LINK_LIBS and LOOM_LINK_FLAGS); LOOM_CC in the environment overrides the
 * compiler. Work files go to a fresh directory under $TMPDIR (default /tmp), removed after.
 *
 * --mesh dp=D,tp=T,pp=P (cpu): a cluster executable, run as `mpirun -np N EXE --weights W
 * --inputs I --outputs O` (exe/cluster_main.c). Each rank's graph after the pipeline and shard
 * passes goes into the payload as textual IR; the kernels of every rank's segments (lowered as
 * mesh_exec.c will at run time) go into one object, each distinct kernel once under a name
 * that hashes its kernel IR (program_kernel_symbol). The executable links libloom_cluster.a
 * (the same rank runner as `loom run --mesh`), passes, codegen's lowering, collectives and MPI.
 * With --train the executable runs `loom train` instead (cluster_main.c): the kernels are those
 * of every program loom train compiles on each rank (collect_training), and the payload holds
 * the model's text with the options that shape those programs.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/jobs.h"
#include "engine/train.h"
#include "engine/run.h"
#include "engine/run_values.h"
#include "codegen/codegen.h"
#include "codegen/lower.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "passes/pass.h"
#include "plan/plan_io.h"
#include "plan/plan_memory.h"
#include "engine/program.h"
#include "io/run_io.h"
#include "io/exe_payload.h"

#ifndef LOOM_CC
#define LOOM_CC "cc"
#endif
#ifndef LOOM_LINK_LIBS
#define LOOM_LINK_LIBS ""
#endif
#ifndef LOOM_LINK_FLAGS
#define LOOM_LINK_FLAGS ""
#endif
#ifndef LOOM_OPENCL_LINK_LIBS
#define LOOM_OPENCL_LINK_LIBS "-lOpenCL -lclblast"
#endif
#ifndef LOOM_CUDA_LINK_LIBS
#define LOOM_CUDA_LINK_LIBS "-ldl"
#endif

#ifndef LOOM_CLUSTER_LINK_LIBS
#define LOOM_CLUSTER_LINK_LIBS ""
#endif

/* BUILD_CLUSTER: --mesh on the cpu (cluster_main.c) */
typedef enum { BUILD_CPU, BUILD_OPENCL, BUILD_CUDA, BUILD_CLUSTER } build_target;

extern char **environ;

/* Writes s as the C string literal that holds it. */
static void write_c_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            fputs("\\n\"\n\"", f); /* one source line per line of text */
        else if (*p == '"' || *p == '\\' || *p == '?')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\%03o", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Writes the C table of kernels: name → function, for the executable's resolver; with ptx,
 * also the PTX module as RT_KERNEL_PTX (a cuda executable's). */
static bool write_table(const char *path, cg_kernel *const *kernels, int n_kernels, const char *ptx, ir_diag *d)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "build: cannot write %s: %s", path, strerror(errno));
        return false;
    }
    fprintf(f, "/* generated by loom build: the kernels of the plan, by name */\n#include <stdint.h>\n"
               "typedef struct { const char *name; void (*fn)(void **, int64_t, int64_t); } rt_kernel_entry;\n");
    for (int i = 0; i < n_kernels; i++)
        fprintf(f, "void %s(void **, int64_t, int64_t);\n", kernels[i]->name);
    fprintf(f, "const rt_kernel_entry loom_kernel_table[] = {\n");
    for (int i = 0; i < n_kernels; i++)
        fprintf(f, "    {\"%s\", %s},\n", kernels[i]->name, kernels[i]->name);
    fprintf(f, "    {0, 0}\n};\nconst int loom_kernel_count = %d;\n", n_kernels);
    if (ptx) {
        fprintf(f, "const char %s[] =\n", RT_KERNEL_PTX_NAME);
        write_c_string(f, ptx);
        fprintf(f, ";\n");
    }
    bool ok = fclose(f) == 0;
    if (!ok)
        ir_diag_error(d, -1, 0, 0, "build: cannot write %s: %s", path, strerror(errno));
    return ok;
}

/* Appends the words of s (separated by ';' or spaces) to argv. */
static void add_words(char **argv, int *argc, int cap, char *s)
{
    for (char *w = strtok(s, "; "); w && *argc < cap - 1; w = strtok(NULL, "; "))
        argv[(*argc)++] = w;
}

/* Runs the C compiler driver: cc -o exe table.c [kernels.o | -Wl,-u,BACKEND] LIBS [DEVICE LIBS]
 * FLAGS. A cluster executable for OpenCL ranks (cluster_opencl) links the OpenCL backend too. */
static bool link_exe(const char *cc, const char *exe, const char *table, const char *obj, build_target bt,
                     build_target cluster_dev, ir_diag *d)
{
    bool cl = bt == BUILD_OPENCL || (bt == BUILD_CLUSTER && cluster_dev == BUILD_OPENCL);
    bool cu = bt == BUILD_CUDA || (bt == BUILD_CLUSTER && cluster_dev == BUILD_CUDA);
    char *libs = strdup(bt == BUILD_CLUSTER ? LOOM_CLUSTER_LINK_LIBS : LOOM_LINK_LIBS), *flags = strdup(LOOM_LINK_FLAGS),
         *dev = strdup(cl ? LOOM_OPENCL_LINK_LIBS : cu ? LOOM_CUDA_LINK_LIBS : "");
    if (!libs || !flags || !dev)
        ir_unreachable("out of memory");
    char *argv[128];
    int argc = 0;
    argv[argc++] = (char *)cc;
    argv[argc++] = "-o";
    argv[argc++] = (char *)exe;
    argv[argc++] = (char *)table;
    /* program_new from libloom_exe.a / libloom_cluster_main.a (exe/program_aot.c: the kernels
     * compiled in), asked for before libloom.a is read, whose program_targets.c would bring the JIT */
    argv[argc++] = "-Wl,-u,program_new";
    if (bt == BUILD_CPU || (bt == BUILD_CLUSTER && !cu))
        argv[argc++] = (char *)obj;
    /* the device backend, a weak reference in exe/program_aot.c: OpenCL C rendered from kernel
     * IR at start-up, as `loom run` does; CUDA's PTX compiled in */
    if (cl)
        argv[argc++] = "-Wl,-u,program_backend_opencl";
    if (cu)
        argv[argc++] = "-Wl,-u,program_backend_cuda_table";
    if (bt == BUILD_CLUSTER) /* the libraries call each other both ways */
        argv[argc++] = "-Wl,--start-group";
    add_words(argv, &argc, 120, libs);
    if (bt == BUILD_CLUSTER)
        argv[argc++] = "-Wl,--end-group";
    add_words(argv, &argc, 120, dev);
    add_words(argv, &argc, 120, flags);
    argv[argc] = NULL;
    pid_t pid;
    int err = posix_spawnp(&pid, cc, NULL, NULL, argv, environ);
    bool ok = false;
    if (err)
        ir_diag_error(d, -1, 0, 0, "build: cannot run the C compiler '%s': %s (set LOOM_CC to a C compiler driver)", cc,
                      strerror(err));
    else {
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok)
            ir_diag_error(d, -1, 0, 0, "build: linking with '%s' failed (%s %d)", cc,
                          WIFEXITED(status) ? "exit status" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    free(libs);
    free(flags);
    free(dev);
    return ok;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* Copies the linked executable to out and appends payload + trailer. */
static bool write_exe(const char *linked, const char *out, const uint8_t *payload, size_t n, ir_diag *d)
{
    FILE *in = fopen(linked, "rb");
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0777);
    bool ok = in && fd >= 0;
    char buf[1 << 16];
    size_t got;
    while (ok && (got = fread(buf, 1, sizeof buf, in)) > 0)
        ok = write_all(fd, buf, got);
    uint8_t tr[RT_EXE_TRAILER_BYTES];
    uint64_t sum = rt_fnv1a64(payload, n);
    memcpy(tr, RT_EXE_TRAILER_MAGIC, 8);
    for (int i = 0; i < 8; i++) {
        tr[8 + i] = (uint8_t)((uint64_t)n >> (8 * i));
        tr[16 + i] = (uint8_t)(sum >> (8 * i));
    }
    ok = ok && !ferror(in) && write_all(fd, payload, n) && write_all(fd, tr, sizeof tr);
    int e = errno;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (in)
        fclose(in);
    if (!ok)
        ir_diag_error(d, -1, 0, 0, "build: cannot write %s: %s", out, strerror(e));
    return ok;
}

/* What the executable was built from: the model file and its -D options. */
static void model_text(const eng_opts *o, rt_wbuf *wm)
{
    rt_wbuf_bytes(wm, o->file, strlen(o->file));
    for (int i = 0; i < o->n_defines; i++) {
        char def[600];
        int len = snprintf(def, sizeof def, " -D %s=%s", o->defines[i].name, o->defines[i].value);
        rt_wbuf_bytes(wm, def, (size_t)(len < (int)sizeof def ? len : (int)sizeof def - 1));
    }
}

/* A fresh work directory under $TMPDIR and the paths of the files made in it. */
typedef struct {
    char dir[4096], obj[4200], table[4200], linked[4200];
} workdir;

static bool workdir_new(workdir *w, ir_diag *d)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(w->dir, sizeof w->dir, "%s/loom-build-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(w->dir)) {
        ir_diag_error(d, -1, 0, 0, "build: cannot create a work directory %s: %s", w->dir, strerror(errno));
        w->dir[0] = 0;
        return false;
    }
    snprintf(w->obj, sizeof w->obj, "%s/kernels.o", w->dir);
    snprintf(w->table, sizeof w->table, "%s/kernels.c", w->dir);
    snprintf(w->linked, sizeof w->linked, "%s/exe", w->dir);
    return true;
}

static void workdir_free(workdir *w)
{
    if (!w->dir[0])
        return;
    unlink(w->obj);
    unlink(w->table);
    unlink(w->linked);
    rmdir(w->dir);
}

static const char *c_compiler(void)
{
    const char *cc = getenv("LOOM_CC");
    return cc && *cc ? cc : LOOM_CC;
}

/* ---- --mesh: a cluster executable (cluster_main.c) ------------------------------------------- */

/* The kernels of every rank's segments, each distinct one once under its symbol. */
typedef struct {
    cg_lowered *lows; /* every segment's, alive until the object is written: they own the kernels */
    int n_lows, cap_lows;
    cg_kernel **unique;
    char **symbols;
    int n_unique, cap_unique, n_total;
    pass_opt_config opt; /* --train: the optimizer and micro-batches compiled in */
    int micro;
    bool device;         /* for a device: also the library steps' kernels (the CPU runs its own) */
    bool cuda;           /* each plan checked as the CUDA executor checks it at start-up */
} cluster_kernels;

/* Lowers g through pipeline as the executable's program_new will, keeps its new kernels. */
static bool collect_program(cluster_kernels *c, const ir_graph *g, const char *pipeline, ir_diag *d)
{
    ir_graph *fused = NULL;
    ir_grow((void **)&c->lows, &c->cap_lows, c->n_lows + 1, sizeof *c->lows);
    cg_lowered *low = &c->lows[c->n_lows++];
    *low = (cg_lowered){0};
    bool ok = program_lower(g, pipeline, c->device, &fused, low, d);
    ir_graph_free(fused);
    ok = ok && (!c->cuda || program_cuda_supported(&low->plan, d));
    for (int i = 0; ok && i < low->n_kernels; i++) {
        if (!c->device && !program_host_calls(&low->plan, low->kernels[i]->name, false))
            continue;
        char sym[32];
        program_kernel_symbol(low->kernels[i], sym, sizeof sym);
        c->n_total++;
        int u = 0;
        while (u < c->n_unique && strcmp(c->symbols[u], sym) != 0)
            u++;
        if (u < c->n_unique)
            continue;
        int cap = c->cap_unique;
        ir_grow((void **)&c->unique, &cap, c->n_unique + 1, sizeof *c->unique);
        ir_grow((void **)&c->symbols, &c->cap_unique, c->n_unique + 1, sizeof *c->symbols);
        c->unique[c->n_unique] = low->kernels[i];
        c->symbols[c->n_unique++] = strdup(sym);
    }
    return ok;
}

/* mesh_exec_each_segment's fn: a segment, compiled as mesh_exec.c will. */
static bool collect_segment(void *ctx, const ir_graph *segment, ir_diag *d)
{
    return collect_program(ctx, segment, NULL, d);
}

/* --train: the programs `loom train` compiles on rank m->rank (cmd_train.c's setup, in the same
 * order and with the same pipelines): under tp/pp the gradient program's segments (the model
 * with a micro-batch's rows, through autodiff and the pipeline and shard passes) and the update
 * of the rank's slices; else the gradient and eval programs of a dp rank's rows, the update and
 * the sampler (batch 1). */
static bool collect_training(const eng_opts *o, const ir_graph *g, pass_mesh *m, const pass_opt_config *opt0,
                             int micro, cluster_kernels *c, ir_diag *d)
{
    int B = (int)eng_find_node(g, OP_input, "tokens")->shape.dim[0], dp = pass_mesh_size(m, "dp");
    bool sharded = pass_mesh_size(m, "tp") > 1 || pass_mesh_size(m, "pp") > 1;
    pass_opt_config opt = *opt0;
    opt.sumsq_input = sharded || opt.shards > 1; /* --zero 1: the update of a dp rank's chunk */
    if (sharded)
        m->local_outputs = true;
    /* the recipe (recipe.c), as loom train builds it on each rank */
    ir_graph *gg = sharded ? eng_train_graph(o, g, micro > 1 ? B / micro : 0, m, true, "build", d)
                           : eng_train_graph(o, g, dp > 1 ? B / dp : 0, NULL, false, "build", d);
    if (!gg)
        return false;
    bool ok;
    ir_graph *u = NULL;
    if (sharded) {
        ok = mesh_exec_each_segment(gg, m->virtual_stages, collect_segment, c, d) && (u = pass_optimizer_graph(gg, &opt, d)) != NULL &&
             collect_program(c, u, NULL, d);
    } else {
        char buf[256];
        const char *pipeline = eng_recompute_pipeline(o, pass_training_pipeline(), "build", buf, sizeof buf, d);
        ok = pipeline && collect_program(c, gg, pipeline, d) && collect_program(c, gg, NULL, d) &&
             (u = pass_optimizer_graph(g, &opt, d)) != NULL && collect_program(c, u, NULL, d);
        ir_diag d1; /* the sampler is optional, as in loom train */
        ir_diag_init(&d1);
        ir_graph *s = ok ? eng_load_graph_define(o, "batch", "1", &d1) : NULL;
        const ir_node *tok = s ? eng_find_node(s, OP_input, "tokens") : NULL;
        if (tok && tok->shape.dim[0] == 1 && tok->shape.dim[1] == eng_find_node(g, OP_input, "tokens")->shape.dim[1] &&
            eng_find_node(s, OP_output, "logits")) {
            eng_prune_to(s, "logits");
            ok = collect_program(c, s, NULL, d);
        }
        ir_graph_free(s);
        ir_diag_free(&d1);
    }
    ir_graph_free(u);
    ir_graph_free(gg);
    return ok;
}

static void cluster_kernels_free(cluster_kernels *c)
{
    for (int i = 0; i < c->n_lows; i++)
        cg_lowered_free(&c->lows[i]);
    for (int i = 0; i < c->n_unique; i++)
        free(c->symbols[i]);
    free(c->lows);
    free(c->unique);
    free(c->symbols);
}

/* Every rank's graph after the pipeline and shard passes, as text into blobs[rank] ("rank.R"),
 * and its segments' kernels into c. */
static bool cluster_ranks(const eng_opts *o, const ir_graph *g, int world, rt_plan_blob *blobs, cluster_kernels *c,
                          ir_diag *d)
{
    bool ok = true;
    for (int r = 0; ok && r < world; r++) {
        if (o->train) {
            pass_mesh m;
            ok = pass_mesh_parse(o->mesh, r, g, &m, d) && eng_seq_parallel(o, &m, "build", d) &&
                 eng_virtual_stages(o, &m, c->micro, true, "build", d) &&
                 collect_training(o, g, &m, &c->opt, c->micro, c, d);
            continue;
        }
        ir_graph *L = ir_graph_clone(g);
        pass_mesh m;
        pass_options po = pass_options_default();
        po.mesh = &m;
        ok = pass_mesh_parse(o->mesh, r, L, &m, d) && eng_seq_parallel(o, &m, "build", d) &&
             pass_run_pipeline(L, "pipeline,shard,dce,cse", &po, d) &&
             mesh_exec_each_segment(L, m.virtual_stages, collect_segment, c, d);
        if (ok) {
            char *text = NULL, name[32];
            size_t len = 0;
            FILE *f = open_memstream(&text, &len);
            if (!f)
                ir_unreachable("out of memory");
            ir_print(L, f);
            fclose(f);
            snprintf(name, sizeof name, "rank.%d", r);
            blobs[r] = (rt_plan_blob){strdup(name), (uint8_t *)text, len};
        }
        ir_graph_free(L);
    }
    return ok;
}

/* The train options a training executable compiles in (cmd_train.c reads the same). */
static const char *const fixed_train_options[] = {"--microbatches", "--accum",  "--optimizer", "--momentum", "--weight-decay",
                                                  "--beta1",        "--beta2",  "--eps",       "--clip",     "--zero",
                                                  "--recompute",    "--virtual-stages"};
#define N_FIXED (int)(sizeof fixed_train_options / sizeof *fixed_train_options)

/* --train: the options and checks of `loom train --mesh` that decide its programs. */
static bool train_setup(const eng_opts *o, const ir_graph *g, const pass_mesh *m, cluster_kernels *c, ir_diag *d)
{
    const ir_node *tok = eng_find_node(g, OP_input, "tokens"), *tgt = eng_find_node(g, OP_input, "targets");
    if (!tok || !tgt || tok->dtype != DT_I32 || tok->shape.rank != 2 || !eng_find_node(g, OP_output, "loss")) {
        ir_diag_error(d, -1, 0, 0, "build: --train needs a model with inputs 'tokens' and 'targets' (i32[batch, seq]) "
                      "and an output 'loss'");
        return false;
    }
    for (int a = 0; a < m->n_axes; a++)
        if (m->size[a] > 1 && strcmp(m->axis[a], "dp") != 0 && strcmp(m->axis[a], "tp") != 0 &&
            strcmp(m->axis[a], "pp") != 0) {
            ir_diag_error(d, -1, 0, 0, "build: --train: the axes dp, tp and pp train; %s=%d does not", m->axis[a],
                          m->size[a]);
            return false;
        }
    int B = (int)tok->shape.dim[0], dp = pass_mesh_size(m, "dp"), pp = pass_mesh_size(m, "pp");
    const char *mb = eng_named(o, "--microbatches");
    char *end = NULL;
    long micro = mb ? strtol(mb, &end, 10) : pp;
    if (mb && (!*mb || *end || micro < 1 || micro > 4096)) {
        ir_diag_error(d, -1, 0, 0, "build: --microbatches expects an integer in [1, 4096], got '%s'", mb);
        return false;
    }
    if (mb && pp == 1) {
        ir_diag_error(d, -1, 0, 0, "build: --microbatches schedules pipeline stages; --mesh %s has no pp axis", o->mesh);
        return false;
    }
    if (B % dp != 0 || B % micro != 0 || (B / micro) % dp != 0) {
        ir_diag_error(d, -1, 0, 0, "build: the batch (%d rows) does not split into %ld micro-batch%s of a multiple of "
                      "dp=%d rows; set -D batch= or --microbatches", B, micro, micro == 1 ? "" : "es", dp);
        return false;
    }
    c->micro = (int)micro;
    return (dp * micro == 1 || eng_params_batch_free(o, g, B / (int)micro / dp, "build", d)) &&
           eng_train_optimizer(o, &c->opt, d) && eng_zero(o, dp, "build", &c->opt, d);
}

/* What a training executable needs to run `loom train` itself: the model's text, its -D
 * options and the fixed train options, each "name\nvalue\n". */
static bool train_blobs(const eng_opts *o, rt_plan_blob *b, int *n, ir_diag *d)
{
    FILE *f = fopen(o->file, "rb");
    rt_wbuf src = {0}, defs = {0}, fixed = {0};
    char buf[1 << 16];
    size_t got;
    while (f && (got = fread(buf, 1, sizeof buf, f)) > 0)
        rt_wbuf_bytes(&src, buf, got);
    if (!f || ferror(f)) {
        ir_diag_error(d, -1, 0, 0, "build: cannot read %s: %s", o->file, strerror(errno));
        if (f)
            fclose(f);
        free(src.data);
        return false;
    }
    fclose(f);
    for (int i = 0; i < o->n_defines; i++) {
        rt_wbuf_bytes(&defs, o->defines[i].name, strlen(o->defines[i].name));
        rt_wbuf_bytes(&defs, "\n", 1);
        rt_wbuf_bytes(&defs, o->defines[i].value, strlen(o->defines[i].value));
        rt_wbuf_bytes(&defs, "\n", 1);
    }
    for (int k = 0; k < N_FIXED; k++) {
        const char *v = eng_named(o, fixed_train_options[k]);
        if (!v)
            continue;
        rt_wbuf_bytes(&fixed, fixed_train_options[k], strlen(fixed_train_options[k]));
        rt_wbuf_bytes(&fixed, "\n", 1);
        rt_wbuf_bytes(&fixed, v, strlen(v));
        rt_wbuf_bytes(&fixed, "\n", 1);
    }
    if (o->seq_parallel) { /* a flag: its line alone */
        static const char sp[] = "--sequence-parallel\n";
        rt_wbuf_bytes(&fixed, sp, sizeof sp - 1);
    }
    const char *slash = strrchr(o->file, '/');
    const char *base = slash ? slash + 1 : o->file;
    b[(*n)++] = (rt_plan_blob){strdup("train"), (uint8_t *)strdup("1"), 1};
    b[(*n)++] = (rt_plan_blob){strdup("model_file"), (uint8_t *)strdup(base), strlen(base)};
    b[(*n)++] = (rt_plan_blob){strdup("model_source"), src.data, src.n};
    b[(*n)++] = (rt_plan_blob){strdup("defines"), defs.data, defs.n};
    b[(*n)++] = (rt_plan_blob){strdup("fixed"), fixed.data, fixed.n};
    return true;
}

static bool build_cluster(const eng_opts *o, const char *target, bool existed, ir_diag *d)
{
    bool opencl = strncmp(target, "opencl", 6) == 0, cuda = strcmp(target, "cuda") == 0;
    ir_graph *g = eng_load_graph(o, d);
    pass_mesh mesh;
    /* CUDA ranks: every segment's kernels, library steps' included, as one PTX module */
    cluster_kernels c = {.device = cuda, .cuda = cuda};
    for (int k = 0; !o->train && k < N_FIXED; k++)
        if (eng_named(o, fixed_train_options[k]))
            ir_diag_error(d, -1, 0, 0, "build: %s is an option of training executables: add --train",
                          fixed_train_options[k]);
    if (!ir_diag_ok(d) || !g || !pass_mesh_parse(o->mesh, 0, g, &mesh, d) || (o->train && !train_setup(o, g, &mesh, &c, d))) {
        ir_graph_free(g);
        if (!existed)
            unlink(o->out);
        return ir_diag_ok(d);
    }
    int world = mesh.world, n_blobs = o->train ? 0 : world;
    rt_plan_blob *blobs = calloc((size_t)world + 8, sizeof *blobs);
    if (!blobs)
        ir_unreachable("out of memory");
    workdir w = {0};
    bool ok = cluster_ranks(o, g, world, blobs, &c, d) && (!o->train || train_blobs(o, blobs, &n_blobs, d)) &&
              workdir_new(&w, d);
    for (int i = 0; ok && i < c.n_unique; i++)
        c.unique[i]->name = ir_arena_strdup(&c.unique[i]->arena, c.symbols[i]);
    cg_host_options ho = cg_host_defaults;
    ho.generic_cpu = o->generic_cpu;
    char *ptx = NULL;
    if (ok && cuda) {
        ptx = c.n_unique > 0 ? program_cuda_ptx(c.unique, c.n_unique, d) : strdup("");
        ok = ptx != NULL;
    } else
        ok = ok && cg_host_emit_object(c.unique, c.n_unique, &ho, w.obj, d);
    ok = ok && write_table(w.table, c.unique, cuda ? 0 : c.n_unique, ptx, d) &&
         link_exe(c_compiler(), w.linked, w.table, w.obj, BUILD_CLUSTER,
                  opencl ? BUILD_OPENCL : cuda ? BUILD_CUDA : BUILD_CPU, d);
    free(ptx);
    rt_wbuf wm = {0};
    model_text(o, &wm);
    blobs[n_blobs++] = (rt_plan_blob){strdup("target"), (uint8_t *)strdup(target), strlen(target)};
    blobs[n_blobs++] = (rt_plan_blob){strdup("mesh"), (uint8_t *)strdup(o->mesh), strlen(o->mesh)};
    blobs[n_blobs++] = (rt_plan_blob){strdup("model"), wm.data, wm.n};
    size_t n = 0;
    rt_plan empty = {0};
    uint8_t *payload = ok ? rt_plan_serialize(&empty, blobs, n_blobs, &n) : NULL;
    ok = ok && write_exe(w.linked, o->out, payload, n, d);
    if (ok) {
        char m[128];
        printf("built %s%s for the mesh %s (%d ranks, %s): %d kernels, %d distinct%s, payload %zu bytes\n", o->out,
               o->train ? ", a training executable," : "", pass_mesh_str(&mesh, m, sizeof m), world, target, c.n_total,
               c.n_unique,
               opencl ? " for the host (the ranks' OpenCL C rendered at start-up)" : cuda ? ", one PTX module" : "", n);
    } else if (!existed || payload)
        unlink(o->out); /* never leave a half-written executable */
    free(payload);
    rt_plan_blobs_free(blobs, n_blobs);
    cluster_kernels_free(&c);
    workdir_free(&w);
    ir_graph_free(g);
    return ir_diag_ok(d);
}

/* ---- a model's executable (standalone_main.c) ------------------------------------------------ */

/* The most optional inputs an executable compiles the kernels of every given/absent combination
 * for (2^6 = 64 lowerings of the graph at build time). */
#define BUILD_MAX_OPTIONAL 6

/* The optional inputs of a model, and which of them one combination gives. */
typedef struct {
    const char *name[BUILD_MAX_OPTIONAL];
    int n;
    unsigned given; /* bit i: name[i] is given */
} optional_combo;

/* eng_drop_absent_if's question for one combination. */
static bool combo_gives(const void *ctx, const char *name)
{
    const optional_combo *c = ctx;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->name[i], name) == 0)
            return c->given >> i & 1;
    return true;
}

/* The pipeline the executable runs (and `loom run` would): --passes, with lower-precision at a
 * half --precision (cpu only so far), else dce,cse,fuse. NULL after reporting. */
static const char *model_pipeline(const eng_opts *o, build_target bt, char *buf, size_t cap, ir_diag *d)
{
    ir_dtype prec = eng_precision(o, "build", d); /* bf16/fp16: lower-precision (docs/backend.md) */
    bool half = prec == DT_BF16 || prec == DT_F16;
    if (prec == DT_F64)
        ir_diag_error(d, -1, 0, 0, "build: executables compute in f32 (or --precision bf16|fp16), not f64");
    else if (half && bt != BUILD_CPU) /* the device executors' GEMMs are f32 so far */
        ir_diag_error(d, -1, 0, 0, "build: --precision %s executables are built for --target cpu only so far",
                      o->precision);
    if (!ir_diag_ok(d))
        return NULL;
    const char *pipeline = half ? eng_half_pipeline(o->passes, prec, false, "build", buf, cap, d)
                                : o->passes ? o->passes : pass_default_pipeline();
    if (pipeline && !eng_pipeline_ends_with_fuse(pipeline)) {
        ir_diag_error(d, -1, 0, 0, "build: --passes must end with fuse (got '%s')", pipeline);
        return NULL;
    }
    return pipeline;
}

/* Lowers g as the executable will for every combination of its optional inputs given and
 * absent (all given first: c->lows[0]), collecting each distinct kernel once in c, and checks
 * what each target checks at start-up. */
static bool lower_combinations(const ir_graph *g, const char *pipeline, build_target bt, cluster_kernels *c,
                               int *n_combos, ir_diag *d)
{
    optional_combo oc = {.n = 0};
    int n_opt = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input && n->optional && n_opt++ < BUILD_MAX_OPTIONAL)
            oc.name[oc.n++] = n->name;
    }
    if (n_opt > BUILD_MAX_OPTIONAL) {
        ir_diag_error(d, -1, 0, 0, "build: the model has %d optional inputs; an executable holds the kernels of every "
                      "combination of its optional inputs given and absent, for at most %d of them (%d combinations): "
                      "make some of them required", n_opt, BUILD_MAX_OPTIONAL, 1 << BUILD_MAX_OPTIONAL);
        return false;
    }
    *n_combos = 1 << oc.n;
    bool ok = true;
    for (int m = *n_combos - 1; ok && m >= 0; m--) {
        ir_graph *gm = ir_graph_clone(g);
        oc.given = (unsigned)m;
        eng_drop_absent_if(gm, combo_gives, &oc);
        ok = collect_program(c, gm, pipeline, d);
        ir_graph_free(gm);
        const cg_lowered *low = &c->lows[c->n_lows - 1];
        ok = ok && rt_plan_validate(&low->plan, "build", d);
        if (ok && bt == BUILD_OPENCL && low->n_kernels > 0) { /* rendered at start-up: must render */
            char *src = cg_opencl_source_offsets(low->kernels, low->n_kernels, d);
            ok = src != NULL;
            free(src);
        }
        if (ok && bt == BUILD_CUDA)
            ok = program_cuda_supported(&low->plan, d);
    }
    return ok;
}

/* The model's graph as textual IR (ir_print), as a payload record. */
static rt_plan_blob graph_blob(const ir_graph *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        ir_unreachable("out of memory");
    ir_print(g, f);
    fclose(f);
    return (rt_plan_blob){strdup("graph"), (uint8_t *)text, len};
}

static rt_plan_blob text_blob(const char *name, const char *text)
{
    return (rt_plan_blob){strdup(name), (uint8_t *)strdup(text), strlen(text)};
}

static bool build_model(const eng_opts *o, build_target bt, const char *target, bool existed, ir_diag *d)
{
    ir_graph *g = eng_load_graph(o, d);
    char buf[1024];
    const char *pipeline = g ? model_pipeline(o, bt, buf, sizeof buf, d) : NULL;
    cluster_kernels c = {.device = bt != BUILD_CPU};
    int n_combos = 0;
    bool ok = pipeline && lower_combinations(g, pipeline, bt, &c, &n_combos, d);
    for (int i = 0; ok && i < c.n_unique; i++)
        c.unique[i]->name = ir_arena_strdup(&c.unique[i]->arena, c.symbols[i]);
    workdir w = {0};
    ok = ok && workdir_new(&w, d);
    cg_host_options ho = cg_host_defaults;
    ho.generic_cpu = o->generic_cpu;
    char *ptx = NULL;
    if (ok && bt == BUILD_CPU)
        ok = cg_host_emit_object(c.unique, c.n_unique, &ho, w.obj, d);
    if (ok && bt == BUILD_CUDA) {
        ptx = c.n_unique > 0 ? program_cuda_ptx(c.unique, c.n_unique, d) : strdup("");
        ok = ptx != NULL;
    }
    ok = ok && write_table(w.table, c.unique, bt == BUILD_CPU ? c.n_unique : 0, ptx, d) &&
         link_exe(c_compiler(), w.linked, w.table, w.obj, bt, BUILD_CPU, d);
    free(ptx);
    size_t n = 0;
    uint8_t *payload = NULL;
    if (ok) {
        rt_wbuf wm = {0};
        model_text(o, &wm);
        rt_plan_blob blobs[4] = {text_blob("target", target), graph_blob(g), text_blob("pipeline", pipeline),
                                 {strdup("model"), wm.data, wm.n}};
        rt_plan empty = {0};
        payload = rt_plan_serialize(&empty, blobs, 4, &n);
        for (int i = 0; i < 4; i++) {
            free(blobs[i].name);
            free(blobs[i].data);
        }
    }
    ok = ok && write_exe(w.linked, o->out, payload, n, d);
    if (ok) {
        const cg_lowered *all = &c.lows[0]; /* every input given */
        printf("built %s for %s: %d kernels, %d steps, arena %.2f MiB, payload %zu bytes; %d graph%s (%s): %d "
               "kernels, %d distinct\n",
               o->out, target, all->n_kernels, all->plan.n_steps, (double)all->plan.arena_bytes / 1048576.0, n,
               n_combos, n_combos == 1 ? "" : "s",
               n_combos == 1 ? "no optional inputs" : "each optional input given or absent", c.n_total, c.n_unique);
    } else if (!existed || payload)
        unlink(o->out); /* never leave a half-written executable (nor the probe's empty file) */
    free(payload);
    cluster_kernels_free(&c);
    workdir_free(&w);
    ir_graph_free(g);
    return ir_diag_ok(d);
}

bool eng_build(const eng_opts *o, ir_diag *d)
{
    const char *target = o->target ? o->target : "cpu";
    build_target bt = strcmp(target, "cpu") == 0                                             ? BUILD_CPU
                      : strcmp(target, "opencl") == 0 || strncmp(target, "opencl:", 7) == 0 ? BUILD_OPENCL
                      : strcmp(target, "cuda") == 0                                           ? BUILD_CUDA
                                                                                              : (build_target)-1;
    if ((int)bt < 0)
        ir_diag_error(d, -1, 0, 0, "build: --target %s: loom build makes cpu, opencl[:P[:D]] or cuda executables",
                      target);
    if (eng_named(o, "--virtual-stages") && !o->train)
        ir_diag_error(d, -1, 0, 0, "build: --virtual-stages interleaves a training step's micro-batches; add --mesh ... "
                      "--train");
    if (o->seq_parallel && !o->mesh)
        ir_diag_error(d, -1, 0, 0, "build: --sequence-parallel splits the sequence over tp; it needs --mesh with tp > 1");
    if (o->mesh && o->precision) /* the collectives carry f32 and f64 */
        ir_diag_error(d, -1, 0, 0, "build: --mesh executables compute in f32; --precision %s is not supported there",
                      o->precision);
    if (!o->out)
        ir_diag_error(d, -1, 0, 0, "build: missing -o EXE (where to write the executable)");
    if (!ir_diag_ok(d))
        return ir_diag_ok(d);
    /* fail early on an unwritable output, before compiling */
    bool existed = access(o->out, F_OK) == 0;
    int probe = open(o->out, O_WRONLY | O_CREAT, 0777);
    if (probe < 0) {
        ir_diag_error(d, -1, 0, 0, "build: cannot write %s: %s", o->out, strerror(errno));
        return ir_diag_ok(d);
    }
    close(probe);
    if (o->mesh)
        return build_cluster(o, target, existed, d);
    bool train_option = o->train;
    for (int k = 0; k < N_FIXED; k++)
        train_option |= eng_named(o, fixed_train_options[k]) != NULL;
    if (train_option) { /* not silently a forward executable */
        ir_diag_error(d, -1, 0, 0, "build: --train and its options build training executables, which need --mesh "
                      "(e.g. --mesh dp=1 for one rank)");
        if (!existed)
            unlink(o->out);
        return ir_diag_ok(d);
    }
    return build_model(o, bt, target, existed, d);
}
