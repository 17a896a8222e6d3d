/* pass.c — the pass manager: the registry of passes and the pipeline runner (see pass.h).
 *
 * The pipeline is a literal list of names (lower-precision may carry its half type:
 * "lower-precision=bf16"); pass_run_pipeline checks the whole list first, then
 * runs it with the verifier on the input and after each pass (verify_each), stopping at the
 * first failure. --after prints the IR after the named pass and stops; --time-passes prints a
 * table of wall times (one row per pass run, the verifier's total, the sum) to stderr.
 */
#include "passes/pass.h"
#include "passes/mesh.h"
#include "passes/kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Mesh passes run through pass_mesh_function with the pipeline's mesh; called without one,
 * they say so. */
static bool needs_mesh(ir_graph *g, ir_diag *d)
{
    (void)g;
    ir_diag_error(d, -1, 0, 0, "this pass needs a mesh (--mesh AXIS=SIZE,... and --rank N)");
    return false;
}

/* lower-precision runs through pass_lower_precision with the pipeline's precision; called
 * without one, it says so. */
static bool needs_precision(ir_graph *g, ir_diag *d)
{
    (void)g;
    ir_diag_error(d, -1, 0, 0, "this pass needs a half precision (--precision bf16 or fp16)");
    return false;
}

/* The registry: every pass, in the order of the default pipeline where it is part of it. */
static const pass_info passes[] = {
    {"dce", pass_dce, "dead code elimination: drop nodes that reach no output"},
    {"cse", pass_cse, "common subexpression elimination: merge identical pure nodes"},
    {"autodiff", pass_autodiff, "reverse-mode autodiff: add a 'grad/<param>' output per param for the output 'loss'"},
    {"fuse", pass_fuse, "fusion: assign each value to the kernel or library call that computes it"},
    {"pipeline", needs_mesh, "pipeline stages: keep this rank's layers of a pp mesh, send/recv between stages"},
    {"shard", needs_mesh, "tensor/data parallel: this rank's local graph with collectives (--mesh, --rank)"},
    {"kv-prefill", pass_kv_prefill, "KV cache: write each causal layer's K/V into cache inputs (prefill from position 0)"},
    {"kv-decode", pass_kv_decode, "KV cache: one token at input cache.position, attending over the cache inputs"},
    {"quantize-int8", pass_quantize_int8, "weight-only int8: GEMM weights as i8 codes and a scale per output channel"},
    {"quantize-int4", pass_quantize_int4, "weight-only int4: GEMM weights as packed 4-bit codes, a scale per 32 along the reduction"},
    {"lower-precision", needs_precision, "mixed precision: activations and GEMM/attention operands in bf16/f16, reductions and params in f32"},
    {"half-params", pass_half_params, "inference at a half precision: params read only through their half cast take the half type"},
    {"recompute", pass_recompute, "activation recomputation: the backward recomputes block activations from the block's saved inputs"},
    {"recompute-selective", pass_recompute_selective, "selective recomputation: as recompute, but GEMM and attention results stay saved"},
};
#define N_PASSES ((int)(sizeof passes / sizeof *passes))

const pass_info *pass_list(int *n)
{
    *n = N_PASSES;
    return passes;
}

const pass_info *pass_lookup(const char *name)
{
    for (int i = 0; i < N_PASSES; i++)
        if (strcmp(passes[i].name, name) == 0)
            return &passes[i];
    return NULL;
}

const char *pass_default_pipeline(void) { return "dce,cse,fuse"; }

const char *pass_mesh_pipeline(void) { return "pipeline,shard,dce,cse,fuse"; }

const char *pass_precision_pipeline(void) { return "dce,cse,lower-precision,half-params,fuse"; }

const char *pass_training_precision_pipeline(ir_dtype half)
{
    return half == DT_F16 ? "dce,cse,autodiff,lower-precision=fp16,dce,cse,fuse"
                          : "dce,cse,autodiff,lower-precision=bf16,dce,cse,fuse";
}

pass_mesh_fn pass_mesh_function(const pass_info *p)
{
    if (strcmp(p->name, "pipeline") == 0)
        return pass_pipeline;
    if (strcmp(p->name, "shard") == 0)
        return pass_shard;
    return NULL;
}

/* The gradient program of `loom train`: autodiff after the forward graph is cleaned, then the
 * backward nodes cleaned and everything fused. */
const char *pass_training_pipeline(void) { return "dce,cse,autodiff,dce,cse,fuse"; }

const char *pass_gradient_pipeline(void) { return "dce,cse,autodiff,dce,cse"; }

const char *pass_mesh_gradient_pipeline(void) { return "dce,cse,autodiff,dce,cse,pipeline,shard,dce,cse"; }

pass_options pass_options_default(void) { return (pass_options){.verify_each = true}; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "dce, cse" into buf, for messages. */
static const char *known_passes(char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < N_PASSES && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", passes[i].name);
    return buf;
}

/* The argument of a pipeline entry NAME=ARG: only lower-precision takes one, its half type
 * (bf16 or fp16). Reports and returns false otherwise. */
static bool pass_argument(const pass_info *info, const char *arg, size_t len, ir_dtype *half, ir_diag *d)
{
    if (info->fn != needs_precision) {
        ir_diag_error(d, -1, 0, 0, "pass '%s' takes no argument (got '=%.*s')", info->name, (int)(len > 60 ? 60 : len), arg);
        return false;
    }
    if (len == 4 && strncmp(arg, "bf16", 4) == 0)
        *half = DT_BF16;
    else if (len == 4 && strncmp(arg, "fp16", 4) == 0)
        *half = DT_F16;
    else {
        ir_diag_error(d, -1, 0, 0, "pass '%s' expects =bf16 or =fp16, got '=%.*s'", info->name, (int)(len > 60 ? 60 : len), arg);
        return false;
    }
    return true;
}

/* Splits names_csv into registry entries; reports and returns -1 on an unknown or empty name.
 * *out (malloc'd, caller frees) receives the list, *half_out (malloc'd) each entry's half type
 * from NAME=ARG (DT_VOID: none given). */
static int resolve(const char *csv, const pass_info ***out, ir_dtype **half_out, ir_diag *d)
{
    *out = NULL;
    *half_out = NULL;
    int n = 0, cap = 0, cap_half = 0;
    const pass_info **list = NULL;
    ir_dtype *half = NULL;
    if (!*csv)
        return 0; /* the empty pipeline */
    for (const char *p = csv;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *eq = memchr(s, '=', (size_t)(e - s)), *name_end = eq ? eq : e;
        char name[64];
        const pass_info *info = NULL;
        if (name_end > s && (size_t)(name_end - s) < sizeof name) {
            memcpy(name, s, (size_t)(name_end - s));
            name[name_end - s] = 0;
            info = pass_lookup(name);
        }
        ir_dtype arg = DT_VOID;
        if (!info || (eq && !pass_argument(info, eq + 1, (size_t)(e - eq - 1), &arg, d))) {
            char known[256];
            if (info)
                ; /* a bad argument, reported */
            else if (e == s)
                ir_diag_error(d, -1, 0, 0, "empty pass name in pipeline '%s'", csv);
            else
                ir_diag_error(d, -1, 0, 0, "unknown pass '%.*s' (known passes: %s)", (int)(e - s > 60 ? 60 : e - s), s,
                              known_passes(known, sizeof known));
            free(list);
            free(half);
            return -1;
        }
        ir_grow((void **)&list, &cap, n + 1, sizeof *list);
        ir_grow((void **)&half, &cap_half, n + 1, sizeof *half);
        half[n] = arg;
        list[n++] = info;
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = list;
    *half_out = half;
    return n;
}

static bool verify(ir_graph *g, const char *when, ir_diag *d)
{
    if (ir_verify(g, d))
        return true;
    ir_diag_error(d, -1, 0, 0, "the IR is invalid %s", when);
    return false;
}

static void print_times(const pass_info **list, const double *ms, int n_run, double verify_ms, FILE *out)
{
    double total = verify_ms;
    for (int i = 0; i < n_run; i++)
        total += ms[i];
    double denom = total > 0 ? total : 1;
    fprintf(out, "loom: pass timings (wall clock)\n");
    fprintf(out, "%12s %7s  %s\n", "ms", "%", "pass");
    for (int i = 0; i < n_run; i++)
        fprintf(out, "%12.3f %6.1f%%  %s\n", ms[i], 100 * ms[i] / denom, list[i]->name);
    fprintf(out, "%12.3f %6.1f%%  %s\n", verify_ms, 100 * verify_ms / denom, "(verify)");
    fprintf(out, "%12.3f %6.1f%%  %s\n", total, total > 0 ? 100.0 : 0.0, "total");
}

bool pass_run_pipeline(ir_graph *g, const char *names_csv, const pass_options *opt, ir_diag *d)
{
    const pass_info **list;
    ir_dtype *half;
    int n = resolve(names_csv ? names_csv : "", &list, &half, d);
    if (n < 0)
        return false;
    int stop = -1; /* index of the pass after which to print and stop */
    if (opt->after) {
        for (int i = 0; i < n && stop < 0; i++)
            if (strcmp(list[i]->name, opt->after) == 0)
                stop = i;
        if (stop < 0) {
            char known[256];
            if (!pass_lookup(opt->after))
                ir_diag_error(d, -1, 0, 0, "--after: unknown pass '%s' (known passes: %s)", opt->after,
                              known_passes(known, sizeof known));
            else
                ir_diag_error(d, -1, 0, 0, "--after: pass '%s' is not in the pipeline '%s'", opt->after, names_csv);
            free(list);
            free(half);
            return false;
        }
    }
    double *ms = calloc((size_t)n + 1, sizeof *ms);
    if (!ms)
        ir_unreachable("out of memory");
    double verify_ms = 0;
    bool ok = true;
    int n_run = 0;
    if (opt->verify_each) {
        double t0 = now_ms();
        ok = verify(g, "before the first pass", d);
        verify_ms += now_ms() - t0;
    }
    for (int i = 0; i < n && ok; i++) {
        double t0 = now_ms();
        int before = d->n_errors;
        pass_mesh_fn mesh_fn = pass_mesh_function(list[i]);
        ir_dtype prec = half[i] != DT_VOID ? half[i] : opt->precision;
        if (list[i]->fn == needs_precision && prec != DT_VOID)
            ok = pass_lower_precision(g, prec, opt->f32_library, d);
        else if (list[i]->fn == pass_fuse)
            ok = pass_fuse(g, d);
        else
            ok = mesh_fn && opt->mesh ? mesh_fn(g, opt->mesh, d) : list[i]->fn(g, d);
        double t1 = now_ms();
        ms[i] = t1 - t0;
        n_run = i + 1;
        if (opt->on_pass)
            opt->on_pass(opt->on_pass_ctx, list[i]->name, t0, t1);
        if (!ok) {
            if (d->n_errors == before)
                ir_diag_error(d, -1, 0, 0, "pass '%s' failed", list[i]->name);
            break;
        }
        if (opt->verify_each) {
            char when[96];
            snprintf(when, sizeof when, "after pass '%s'", list[i]->name);
            t0 = now_ms();
            ok = verify(g, when, d);
            verify_ms += now_ms() - t0;
        }
        if (ok && i == stop) {
            ir_print(g, stdout);
            break;
        }
    }
    if (opt->time_passes)
        print_times(list, ms, n_run, verify_ms, stderr);
    free(ms);
    free(list);
    free(half);
    return ok;
}
