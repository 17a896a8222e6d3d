/* options.c — the option parser shared by every subcommand, model loading, and the pipeline of
 * a half --precision. */
#include "engine/options.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options that take a value; `field` is the offset of the const char * that receives it. */
static const struct {
    const char *name;
    size_t field;
} valued[] = {
    {"--after", offsetof(eng_opts, after)},       {"--passes", offsetof(eng_opts, passes)},
    {"--mesh", offsetof(eng_opts, mesh)},         {"--target", offsetof(eng_opts, target)},
    {"--weights", offsetof(eng_opts, weights)},   {"--inputs", offsetof(eng_opts, inputs)},
    {"--outputs", offsetof(eng_opts, outputs)},   {"-o", offsetof(eng_opts, out)},
    {"--precision", offsetof(eng_opts, precision)}, {"--vocab", offsetof(eng_opts, vocab)},
    {"--profile", offsetof(eng_opts, profile)},
    {"--hf", offsetof(eng_opts, hf)},
};

/* Valued options of one subcommand, kept as (name, value) pairs in o->named_*. */
static const struct {
    const char *cmd, *name;
} named[] = {
    {"train", "--data"},        {"train", "--steps"},        {"train", "--lr"},          {"train", "--min-lr"},
    {"train", "--warmup"},      {"train", "--weight-decay"}, {"train", "--beta1"},       {"train", "--beta2"},
    {"train", "--eps"},         {"train", "--clip"},         {"train", "--optimizer"},   {"train", "--momentum"},
    {"train", "--accum"},       {"train", "--eval-every"},   {"train", "--eval-batches"}, {"train", "--sample"},
    {"train", "--temperature"}, {"train", "--top-k"},        {"train", "--log"},         {"train", "--checkpoint"},
    {"train", "--save-every"},  {"train", "--resume"},       {"train", "--prompt"},      {"train", "--trace"},
    {"generate", "--prompt"},   {"generate", "--max-tokens"}, {"generate", "--temperature"}, {"generate", "--top-k"},
    {"generate", "--top-p"},    {"generate", "--dump-logits"},
    {"check", "--microbatches"}, {"run", "--allreduce"}, {"train", "--allreduce"},
    {"train", "--microbatches"}, {"train", "--schedule"}, {"train", "--timeout"}, {"run", "--timeout"},
    {"train", "--loss-scale"},  {"train", "--on-nan"},
    {"quantize", "--format"},  {"quantize", "--group"},     {"quantize", "--scales"},  {"prune", "--sparsity"},
    {"prune", "--pattern"},     {"train", "--mask"},         {"train", "--teacher"},    {"train", "--teacher-weights"},
    {"train", "--teacher-define"}, {"train", "--distill-alpha"}, {"train", "--distill-temperature"},
    {"dump", "--emit"},         {"dump", "--sm"}, /* engine/emit.h */
    {"check", "--schedule"},    {"check", "--accum"},        {"check", "--optimizer"},   {"check", "--momentum"},
    /* check --explain, plan: the machine model (engine/net_model.h) */
    {"check", "--bandwidth"},   {"check", "--latency"},      {"check", "--gpus-per-node"},
    {"plan", "--devices"},      {"plan", "--device-memory"}, {"plan", "--bandwidth"},    {"plan", "--latency"},
    {"plan", "--gpus-per-node"}, {"plan", "--peak-tflops"},  {"plan", "--mfu"},          {"plan", "--batch"},
    {"plan", "--top"},          {"plan", "--optimizer"},     {"plan", "--recompute"},    {"plan", "--memory-bandwidth"},
    /* build --mesh --train: what a training executable compiles in */
    {"build", "--microbatches"}, {"build", "--accum"},       {"build", "--optimizer"},   {"build", "--momentum"},
    {"build", "--weight-decay"}, {"build", "--beta1"},       {"build", "--beta2"},       {"build", "--eps"},
    {"build", "--clip"},
    {"train", "--zero"},        {"check", "--zero"},         {"build", "--zero"},
    {"train", "--recompute"},   {"check", "--recompute"},    {"build", "--recompute"},
    {"train", "--virtual-stages"}, {"check", "--virtual-stages"}, {"build", "--virtual-stages"},
    {"train", "--peak-tflops"}, {"dump", "--dot-depth"}, {"plot", "--x"}, {"plot", "--title"},
};

/* A parse error: "loom CMD: ..." into why (cap bytes); false. */
static bool fail(char *why, size_t cap, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(char *why, size_t cap, const char *cmd, const char *fmt, ...)
{
    int n = snprintf(why, cap, "loom %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < cap)
        vsnprintf(why + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool add_define(const char *cmd, const char *text, eng_opts *o, char *why, size_t cap)
{
    const char *eq = strchr(text, '=');
    if (!eq || eq == text || !eq[1])
        return fail(why, cap, cmd, "-D expects name=value, got '%s'", text);
    if (o->n_defines == ENG_MAX_DEFINES)
        return fail(why, cap, cmd, "more than %d -D options", ENG_MAX_DEFINES);
    /* argv strings are const: split a copy, kept in o */
    size_t n = (size_t)(eq - text);
    if (n >= sizeof o->define_text[0] || strlen(eq + 1) >= sizeof o->define_text[0] - n - 1)
        return fail(why, cap, cmd, "-D %s: too long", text);
    char *s = o->define_text[o->n_defines];
    memcpy(s, text, n);
    s[n] = 0;
    strcpy(s + n + 1, eq + 1);
    o->defines[o->n_defines++] = (fe_define){s, s + n + 1};
    return true;
}

static bool parse_int(const char *cmd, const char *opt, const char *v, long long lo, long long hi,
                      long long *out, char *why, size_t cap)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return fail(why, cap, cmd, "%s expects an integer in [%lld, %lld], got '%s'", opt, lo, hi, v);
    *out = x;
    return true;
}

bool eng_opts_define(eng_opts *o, const char *name, const char *value, char *why, size_t cap)
{
    char text[600];
    if ((size_t)snprintf(text, sizeof text, "%s=%s", name, value) >= sizeof text)
        return fail(why, cap, "define", "-D %s: too long", name);
    return add_define("define", text, o, why, cap);
}

bool eng_opts_parse(const char *cmd, int argc, char **argv, eng_opts *o, char *why, size_t cap)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "-D", 2) == 0) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : "");
            if (!add_define(cmd, v, o, why, cap))
                return false;
            continue;
        }
        if (strcmp(a, "--time-passes") == 0) {
            o->time_passes = true;
            continue;
        }
        if (strcmp(a, "--stats") == 0) {
            o->stats = true;
            continue;
        }
        bool *flag = strcmp(a, "--decode") == 0       ? &o->decode
                     : strcmp(a, "--bytes") == 0      ? &o->bytes
                     : strcmp(a, "--no-special") == 0 ? &o->no_special
                     : strcmp(a, "--recompute") == 0 && strcmp(cmd, "generate") == 0 ? &o->recompute
                     : strcmp(a, "--ignore-eos") == 0 ? &o->ignore_eos
                     : strcmp(a, "--generic-cpu") == 0 ? &o->generic_cpu
                     : strcmp(a, "--train") == 0      ? &o->train
                     : strcmp(a, "--explain") == 0    ? &o->explain
                     : strcmp(a, "--sequence-parallel") == 0 ? &o->seq_parallel
                     : strcmp(a, "--dot") == 0        ? &o->dot
                     : strcmp(a, "--json") == 0       ? &o->json
                     : strcmp(a, "--log-y") == 0      ? &o->log_y
                                                      : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        const char *name_end = strchr(a, '=');
        size_t name_len = name_end ? (size_t)(name_end - a) : strlen(a);
        bool matched = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued && !matched; k++) {
            if (strlen(valued[k].name) != name_len || strncmp(a, valued[k].name, name_len) != 0)
                continue;
            const char *v = name_end ? name_end + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v)
                return fail(why, cap, cmd, "%s needs a value", valued[k].name);
            *(const char **)((char *)o + valued[k].field) = v;
            matched = true;
        }
        for (size_t k = 0; k < sizeof named / sizeof *named && !matched; k++) {
            if (strcmp(cmd, named[k].cmd) != 0 || strlen(named[k].name) != name_len ||
                strncmp(a, named[k].name, name_len) != 0)
                continue;
            const char *v = name_end ? name_end + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v)
                return fail(why, cap, cmd, "%s needs a value", named[k].name);
            if (o->n_named == (int)(sizeof o->named_key / sizeof *o->named_key))
                return fail(why, cap, cmd, "too many options");
            o->named_key[o->n_named] = named[k].name;
            o->named_value[o->n_named++] = v;
            matched = true;
        }
        if (matched)
            continue;
        if (strncmp(a, "--seed", 6) == 0 || strncmp(a, "--rank", 6) == 0) {
            const char *v = name_end ? name_end + 1 : (i + 1 < argc ? argv[++i] : "");
            long long x = 0;
            bool seed = a[2] == 's';
            if (!parse_int(cmd, seed ? "--seed" : "--rank", v, 0, seed ? (1LL << 62) : 1 << 20, &x, why, cap))
                return false;
            if (seed)
                o->seed = (uint64_t)x;
            else {
                o->rank = (int)x;
                o->rank_given = true;
            }
            continue;
        }
        if (a[0] == '-' && a[1])
            return fail(why, cap, cmd, "unknown option '%s' (see loom --help)", a);
        if (!o->file)
            o->file = a;
        else if (o->n_extra < 64)
            o->extra[o->n_extra++] = argv[i];
        else
            return fail(why, cap, cmd, "too many arguments");
    }
    return true;
}

ir_dtype eng_precision(const eng_opts *o, const char *cmd, ir_diag *d)
{
    static const struct {
        const char *name;
        ir_dtype dt;
    } names[] = {{"f32", DT_F32}, {"fp32", DT_F32}, {"f64", DT_F64}, {"bf16", DT_BF16}, {"fp16", DT_F16}};
    if (!o->precision)
        return DT_F32;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(o->precision, names[i].name) == 0)
            return names[i].dt;
    ir_diag_error(d, -1, 0, 0, "%s: --precision expects f32, f64, bf16 or fp16, got '%s'", cmd, o->precision);
    return DT_VOID;
}

ir_graph *eng_load_graph(const eng_opts *o, ir_diag *d)
{
    if (!o->file) {
        ir_diag_error(d, -1, 0, 0, "no input file given");
        return NULL;
    }
    int file = o->file_text ? ir_diag_add_source(d, o->file, o->file_text, strlen(o->file_text))
                            : ir_diag_load_file(d, o->file);
    if (file < 0)
        return NULL;
    size_t n = strlen(o->file);
    if (n > 4 && strcmp(o->file + n - 4, ".lir") == 0) {
        if (o->n_defines) {
            ir_diag_error(d, file, 0, 0, "-D applies to .loom models, not textual IR");
            return NULL;
        }
        return ir_parse(d, file);
    }
    return fe_build(d, file, o->defines, o->n_defines);
}

const char *eng_named(const eng_opts *o, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < o->n_named; i++)
        if (strcmp(o->named_key[i], key) == 0)
            v = o->named_value[i]; /* the last one wins */
    return v;
}

bool eng_named_int(const eng_opts *o, const char *cmd, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   ir_diag *d)
{
    const char *v = eng_named(o, key);
    if (!v)
        return true;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        ir_diag_error(d, -1, 0, 0, "%s: %s expects an integer in [%" PRId64 ", %" PRId64 "], got '%s'", cmd, key, lo, hi,
                      v);
        return false;
    }
    *out = x;
    return true;
}

ir_graph *eng_load_graph_define(const eng_opts *o, const char *name, const char *value, ir_diag *d)
{
    eng_opts o1 = *o;
    bool have = false;
    for (int i = 0; i < o1.n_defines; i++)
        if (strcmp(o1.defines[i].name, name) == 0) {
            o1.defines[i].value = value;
            have = true;
        }
    if (!have && o1.n_defines < ENG_MAX_DEFINES)
        o1.defines[o1.n_defines++] = (fe_define){name, value};
    return eng_load_graph(&o1, d);
}

ir_graph *eng_load_batch(const eng_opts *o, int rows, const char *cmd, ir_diag *d)
{
    char v[32];
    snprintf(v, sizeof v, "%d", rows);
    ir_graph *g = eng_load_graph_define(o, "batch", v, d);
    const ir_node *tok = NULL;
    for (int i = 0; g && i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_input && strcmp(g->nodes[i]->name, "tokens") == 0)
            tok = g->nodes[i];
    if (g && (!tok || tok->shape.rank != 2 || tok->shape.dim[0] != rows)) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: splitting the batch needs a model whose batch is its hparam 'batch' (-D batch=%d did not "
                      "give tokens %d rows)",
                      cmd, rows, rows);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

bool eng_params_batch_free(const eng_opts *o, const ir_graph *g, int rows, const char *cmd, ir_diag *d)
{
    ir_graph *h = eng_load_batch(o, rows, cmd, d);
    bool ok = h != NULL;
    for (int i = 0, j = 0; ok && i < g->n_nodes; i++) {
        const ir_node *p = g->nodes[i];
        if (p->op != OP_param)
            continue;
        while (j < h->n_nodes && h->nodes[j]->op != OP_param)
            j++;
        const ir_node *q = j < h->n_nodes ? h->nodes[j++] : NULL;
        if (!q || !ir_shape_eq(&p->shape, &q->shape)) {
            char a[300], b[300];
            ir_diag_error(d, p->loc.file, p->loc.line, p->loc.col,
                          "%s: param '%s' changes with the batch (%s, but %s with -D batch=%d): a batch split over dp "
                          "or into micro-batches needs params that do not",
                          cmd, p->name, ir_type_str(p->dtype, &p->shape, a, sizeof a),
                          q ? ir_type_str(q->dtype, &q->shape, b, sizeof b) : "absent", rows);
            ok = false;
        }
    }
    ir_graph_free(h);
    return ok;
}

const char *eng_half_pipeline(const char *passes, ir_dtype half, bool ref, const char *cmd, char *buf, size_t cap,
                              ir_diag *d)
{
    /* half-params after it (compiled targets): weights read only in the half type are bound in
     * it (a no-op on a graph with gradients); the interpreter binds the file's f32 values */
    const char *lower = half == DT_F16 ? (ref ? "lower-precision=fp16" : "lower-precision=fp16,half-params")
                                       : (ref ? "lower-precision=bf16" : "lower-precision=bf16,half-params");
    if (!passes) {
        snprintf(buf, cap, ref ? "dce,cse,%s" : "dce,cse,%s,fuse", lower);
        return buf;
    }
    size_t k = 0;
    bool seen = false;
    buf[0] = 0;
    for (const char *p = passes; p;) {
        const char *comma = strchr(p, ','), *s = p, *e = comma ? comma : p + strlen(p);
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        int len = (int)(e - s);
        bool is_lower = len >= 15 && strncmp(s, "lower-precision", 15) == 0 && (len == 15 || s[15] == '=');
        if (!comma && !seen && !is_lower && len == 4 && strncmp(s, "fuse", 4) == 0) {
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
            seen = true;
        }
        if (is_lower && len == 15)
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
        else
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%.*s", k ? "," : "", len, s);
        seen |= is_lower;
        p = comma ? comma + 1 : NULL;
    }
    if (!seen)
        k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
    if (k >= cap) {
        ir_diag_error(d, -1, 0, 0, "%s: --passes is too long (%zu characters)", cmd, strlen(passes));
        return NULL;
    }
    return buf;
}
