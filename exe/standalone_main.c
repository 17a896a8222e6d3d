/* standalone_main.c — main() of a `loom build` executable (standalone.h):
 *
 *     EXE --weights W.safetensors --inputs I.safetensors --outputs O.safetensors [--stats]
 *         [--repeat N]
 *
 * Reads its payload (plan, signature) from the end of its own file (/proc/self/exe), validates
 * it, resolves the plan's kernels from the linked table, then binds, runs and writes exactly
 * as `loom run --target cpu` does (io/run_io.c): the same checks and messages for
 * missing, extra and mistyped tensors. --repeat N runs N more forwards and prints their median
 * time (for benchmarks; implies --stats). Threads: LOOM_NUM_THREADS, default all CPUs.
 * Not part of libloom_runtime: CMake builds it into libloom_standalone.a.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/run.h"
#include "runtime/cpu/exec_cpu.h"
#include "plan/plan_io.h"
#include "io/run_io.h"
#include "io/exe_payload.h"

extern const rt_kernel_entry RT_KERNEL_TABLE[];
extern const int RT_KERNEL_COUNT;
/* Linked only into an executable of their target (cmd_build.c passes -u NAME): else NULL. */
#pragma weak rt_standalone_run_opencl
#pragma weak rt_standalone_run_cuda

typedef struct {
    const char *weights, *inputs, *outputs;
    bool stats;
    int repeat;
} exe_opts;

static const char *prog = "loom-exe";

static void usage(FILE *out, const char *model)
{
    fprintf(out,
            "usage: %s --weights W.safetensors --inputs I.safetensors --outputs O.safetensors [--stats] "
            "[--repeat N]\n%s%s%s",
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
        static const char *const names[] = {"--weights", "--inputs", "--outputs", "--repeat"};
        const char **fields[] = {&o->weights, &o->inputs, &o->outputs, NULL};
        const char *v;
        int k = rt_exe_option(argc, argv, &i, names, 4, prog, &v);
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

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d)
{
    (void)ctx;
    (void)d;
    for (int i = 0; i < RT_KERNEL_COUNT; i++)
        if (strcmp(RT_KERNEL_TABLE[i].name, name) == 0)
            return RT_KERNEL_TABLE[i].fn;
    return NULL;
}

/* The blob called name, or an error naming it. */
static const rt_plan_blob *need_blob(const rt_plan_blob *b, int n, const char *name, ir_diag *d)
{
    const rt_plan_blob *x = rt_plan_blob_find(b, n, name);
    if (!x)
        ir_diag_error(d, -1, 0, 0, "%s: the payload has no '%s' record", prog, name);
    return x;
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
    const rt_plan_blob *target = need_blob(blobs, n_blobs, "target", &d), *sigb = need_blob(blobs, n_blobs, "signature", &d),
                       *infob = need_blob(blobs, n_blobs, "plan_info", &d), *model = rt_plan_blob_find(blobs, n_blobs, "model");
    rt_io_sig sig = {0};
    rt_io_plan_info info = {0};
    char *target_name = target ? strndup((const char *)target->data, target->size) : NULL;
    bool on_cpu = target_name && strcmp(target_name, "cpu") == 0;
    rt_standalone_run_fn *run_device = !target_name || on_cpu                 ? NULL
                                       : strncmp(target_name, "opencl", 6) == 0 ? rt_standalone_run_opencl
                                       : strncmp(target_name, "cuda", 4) == 0   ? rt_standalone_run_cuda
                                                                                : NULL;
    if (target && (!target_name || (!on_cpu && !run_device)))
        ir_diag_error(&d, -1, 0, 0, "%s: the payload is for target %s, which this executable cannot run", prog,
                      target_name ? target_name : "?");
    bool ok = ir_diag_ok(&d) && rt_io_sig_decode(sigb->data, sigb->size, prog, &sig, &d) &&
              rt_io_plan_info_decode(infob->data, infob->size, prog, &info, &d);
    char *model_text = NULL;
    if (ok && model) {
        model_text = strndup((const char *)model->data, model->size);
        if (!model_text)
            ir_unreachable("out of memory");
    }

    exe_opts o;
    int parsed = ok ? parse(argc, argv, &o) : 0;
    if (ok && parsed != 0) {
        if (parsed > 0)
            usage(stdout, model_text);
        free(model_text);
        free(target_name);
        rt_io_sig_free(&sig);
        rt_plan_clear(&plan);
        rt_plan_blobs_free(blobs, n_blobs);
        ir_diag_free(&d);
        return parsed > 0 ? 0 : 2;
    }
    ir_named_tensor *vals = NULL, *outs = NULL;
    int n_vals = 0, n_outs = 0;
    rt_pool *pool = NULL;
    rt_exec *e = NULL;
    ok = ok && rt_io_check_options(&sig, prog, o.weights, o.inputs, o.outputs, &d) &&
         rt_io_load(&sig, o.weights, o.inputs, IR_PREC_F32, &vals, &n_vals, &d);
    if (ok && !on_cpu) {
        ok = run_device(target_name, &plan, blobs, n_blobs, &sig, vals, n_vals, o.stats, &outs, &n_outs,
                                      prog, &d);
        if (ok)
            rt_io_write_outputs(o.outputs, outs, n_outs, IR_PREC_F32, &d);
        ok = false; /* done: skip the cpu path */
    }
    if (ok) {
        pool = rt_pool_new(0);
        e = rt_exec_new(&plan, resolve, NULL, pool, &d);
        ok = e != NULL;
    }
    eng_run_times times;
    ok = ok && eng_run_exec(e, &sig, vals, n_vals, o.stats ? (o.repeat ? o.repeat : 1) : 0, o.stats, &times, &outs,
                             &n_outs, &d);
    if (ok && o.stats)
        eng_print_cpu_stats(&plan, e, pool, &info, &times);
    if (ok)
        rt_io_write_outputs(o.outputs, outs, n_outs, IR_PREC_F32, &d);
    if (outs)
        ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    rt_exec_free(e);
    rt_pool_free(pool);
    free(model_text);
    free(target_name);
    rt_io_sig_free(&sig);
    rt_plan_clear(&plan);
    rt_plan_blobs_free(blobs, n_blobs);
    return rt_exe_finish(&d);
}
