/* run_io.c — the signature, binding and writing for `loom run` and `loom build` executables
 * (run_io.h). */
#include "runtime/clock.h"
#include "io/run_io.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/hf.h"
#include "io/safetensors.h"

static char *xstrdup(const char *s)
{
    char *c = strdup(s);
    if (!c)
        ir_unreachable("out of memory");
    return c;
}

/* ---- the signature ----------------------------------------------------------------------- */
rt_io_sig rt_io_sig_from_graph(const ir_graph *g)
{
    rt_io_sig s = {0, calloc((size_t)g->n_nodes + 1, sizeof(rt_io_slot))};
    if (!s.slots)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input && n->op != OP_output)
            continue;
        const ir_node *t = n->op == OP_output ? n->in[0] : n;
        rt_io_kind k = n->op == OP_param ? RT_IO_PARAM : n->op == OP_input ? RT_IO_INPUT : RT_IO_OUTPUT;
        s.slots[s.n++] = (rt_io_slot){xstrdup(n->name), k, t->dtype, t->shape, n->optional};
    }
    return s;
}

void rt_io_sig_free(rt_io_sig *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->slots[i].name);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

int rt_io_sig_count(const rt_io_sig *s, rt_io_kind kind, bool required_only)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->slots[i].kind == kind && !(required_only && s->slots[i].optional);
    return n;
}

/* ---- binding ----------------------------------------------------------------------------- */
/* What a run binds from one file: the params or the inputs. */
typedef struct {
    const char *what;     /* "parameter" or "input" */
    rt_io_kind kind;
    const char *option;   /* the option naming the file, for messages */
} binding_kind;

static const binding_kind PARAMS = {"parameter", RT_IO_PARAM, "--weights"};
static const binding_kind INPUTS = {"input", RT_IO_INPUT, "--inputs"};

bool rt_io_check_options(const rt_io_sig *s, const char *who, const char *weights, const char *inputs,
                         const char *outputs, ir_diag *d)
{
    bool ok = true;
    if (!outputs) {
        ir_diag_error(d, -1, 0, 0, "%s: missing --outputs FILE.safetensors (where to write the outputs)", who);
        ok = false;
    }
    int n_params = rt_io_sig_count(s, RT_IO_PARAM, false), n_required = rt_io_sig_count(s, RT_IO_INPUT, true);
    if (n_params && !weights) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: missing --weights FILE.safetensors (the model has %d parameters; "
                      "`loom init` writes a fresh set)",
                      who, n_params);
        ok = false;
    }
    if (n_required && !inputs) {
        ir_diag_error(d, -1, 0, 0, "%s: missing --inputs FILE.safetensors (the model has %d inputs)", who,
                      n_required);
        ok = false;
    }
    return ok;
}

/* Whether file tensor t can be slot n's value (a float for a float, an integer for an
 * integer, the same shape); reports why not. */
static bool value_fits(const char *path, const binding_kind *k, const rt_st_tensor *t, const rt_io_slot *n,
                       ir_diag *d)
{
    char want[300], got[300];
    ir_type_str(n->dtype, &n->shape, want, sizeof want);
    ir_type_str(t->dtype, &t->shape, got, sizeof got);
    bool same_class = ir_dtype_is_float(n->dtype) ? ir_dtype_is_float(t->dtype) : ir_dtype_is_int(t->dtype);
    if (!same_class || !ir_shape_eq(&n->shape, &t->shape)) {
        ir_diag_error(d, -1, 0, 0, "%s: %s '%s': expected %s, got %s", path, k->what, n->name, want, got);
        return false;
    }
    return true;
}

/* Integers of another width: every element of x[0..count) must fit slot n's dtype. */
static bool ints_fit(const char *path, const binding_kind *k, const rt_io_slot *n, const double *x, size_t count,
                     size_t first, ir_diag *d)
{
    double lo = n->dtype == DT_U8 ? 0 : n->dtype == DT_I8 ? -128 : n->dtype == DT_I32 ? -0x1p31 : -0x1p63;
    double hi = n->dtype == DT_U8 ? 256 : n->dtype == DT_I8 ? 128 : n->dtype == DT_I32 ? 0x1p31 : 0x1p63;
    for (size_t i = 0; i < count; i++)
        if (!(x[i] >= lo && x[i] < hi)) {
            ir_diag_error(d, -1, 0, 0, "%s: %s '%s': element %zu is %.17g, which does not fit in %s", path, k->what,
                          n->name, first + i, x[i], ir_dtype_name(n->dtype));
            return false;
        }
    return true;
}

/* Converts file tensor t to a tensor of slot n's type (doubles), or reports why it cannot. */
static ir_tensor *load_value(const char *path, const binding_kind *k, const rt_st_tensor *t, const rt_io_slot *n,
                             ir_precision prec, ir_diag *d)
{
    if (!value_fits(path, k, t, n, d))
        return NULL;
    ir_tensor *v = ir_tensor_new(n->dtype, &n->shape);
    size_t count = (size_t)ir_shape_numel(&n->shape);
    rt_convert_to_f64(t->dtype, t->data, v->data, count);
    if (t->dtype == n->dtype)
        return v;
    if (ir_dtype_is_float(n->dtype)) {
        if (prec == IR_PREC_F32)
            for (size_t i = 0; i < count; i++)
                v->data[i] = ir_round_to(n->dtype, v->data[i]);
        return v;
    }
    if (!ints_fit(path, k, n, v->data, count, 0, d)) {
        ir_tensor_free(v);
        return NULL;
    }
    return v;
}

/* File tensor t as slot n's value in n's own dtype: t's bytes in the mapped file when they
 * already are (and aligned for it), else converted into *owned (float to float rounded to
 * nearest even, integers of another width checked to fit), in chunks through doubles. */
static const void *native_value(const char *path, const binding_kind *k, const rt_st_tensor *t, const rt_io_slot *n,
                                void **owned, ir_diag *d)
{
    *owned = NULL;
    if (!value_fits(path, k, t, n, d))
        return NULL;
    size_t es = (size_t)ir_dtype_size(n->dtype), count = (size_t)ir_shape_numel(&n->shape);
    if (t->dtype == n->dtype && (uintptr_t)t->data % es == 0)
        return t->data;
    char *out = malloc(count * es + 1);
    if (!out)
        ir_unreachable("out of memory");
    if (t->dtype == n->dtype)
        memcpy(out, t->data, count * es);
    else if (n->dtype == DT_F32)
        rt_convert_to_f32(t->dtype, t->data, (float *)out, count);
    else {
        enum { CHUNK = 1 << 14 };
        double buf[CHUNK];
        size_t ts = (size_t)ir_dtype_size(t->dtype);
        for (size_t at = 0; at < count; at += CHUNK) {
            size_t m = count - at < CHUNK ? count - at : CHUNK;
            rt_convert_to_f64(t->dtype, t->data + at * ts, buf, m);
            if (!ir_dtype_is_float(n->dtype) && !ints_fit(path, k, n, buf, m, at, d)) {
                free(out);
                return NULL;
            }
            rt_convert_from_f64(n->dtype, buf, out + at * es, m);
        }
    }
    *owned = out;
    return out;
}

/* Tensors that Hugging Face checkpoints carry besides parameters: buffers that the model
 * recomputes (position ids, rotary inverse frequencies, GPT-2's causal-mask buffers). A weights
 * file may hold them; they are skipped rather than reported as unexpected. */
static bool is_hf_buffer(const char *name)
{
    static const char *const suffixes[] = {".position_ids", ".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Binds the slots of kind k from f (path) into vals; reports every missing, unexpected or
 * mistyped tensor. */
static void bind(const rt_io_sig *s, const binding_kind *k, const rt_st_file *f, ir_precision prec,
                 ir_named_tensor *vals, rt_io_native *nat, int *n_vals, ir_diag *d)
{
    for (int i = 0; i < s->n; i++) {
        const rt_io_slot *n = &s->slots[i];
        if (n->kind != k->kind)
            continue;
        const rt_st_tensor *t = f ? rt_st_find(f, n->name) : NULL;
        if (!t) {
            if (!n->optional && f) {
                char ty[300];
                ir_type_str(n->dtype, &n->shape, ty, sizeof ty);
                ir_diag_error(d, -1, 0, 0, "%s: missing %s '%s' (%s)", f->path, k->what, n->name, ty);
            }
            continue;
        }
        if (vals) {
            ir_tensor *v = load_value(f->path, k, t, n, prec, d);
            if (v)
                vals[(*n_vals)++] = (ir_named_tensor){n->name, v};
        } else {
            void *owned;
            const void *data = native_value(f->path, k, t, n, &owned, d);
            if (data)
                nat[(*n_vals)++] = (rt_io_native){n->name, data, owned};
        }
    }
    for (int i = 0; f && i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        bool used = false, other = false;
        for (int j = 0; j < s->n && !used; j++) {
            const rt_io_slot *n = &s->slots[j];
            if (n->kind != RT_IO_OUTPUT && strcmp(n->name, name) == 0) {
                used |= n->kind == k->kind;
                other |= n->kind != k->kind;
            }
        }
        if (used || (k == &PARAMS && !other && (is_hf_buffer(name) || f->tensors[i].alias)))
            continue;
        if (other)
            ir_diag_error(d, -1, 0, 0,
                          "%s: unexpected tensor '%s' (the model has no %s of that name; it has %s "
                          "of that name: pass it with %s)",
                          f->path, name, k->what, k == &PARAMS ? "an input" : "a parameter",
                          k == &PARAMS ? INPUTS.option : PARAMS.option);
        else
            ir_diag_error(d, -1, 0, 0, "%s: unexpected tensor '%s' (the model has no %s of that name)", f->path, name,
                          k->what);
    }
}

bool rt_io_load(const rt_io_sig *s, const char *weights, const char *inputs, ir_precision prec,
                ir_named_tensor **vals, int *n_vals, ir_diag *d)
{
    *n_vals = 0;
    *vals = calloc((size_t)s->n + 1, sizeof **vals);
    if (!*vals)
        ir_unreachable("out of memory");
    rt_st_file wf = {0}, inf = {0};
    bool have_w = false, have_i = false;
    if (ir_diag_ok(d) && weights)
        have_w = rt_hf_open_weights(weights, &wf, d);
    if (ir_diag_ok(d) && inputs)
        have_i = rt_st_open(inputs, &inf, d);
    if (ir_diag_ok(d)) {
        bind(s, &PARAMS, have_w ? &wf : NULL, prec, *vals, NULL, n_vals, d);
        bind(s, &INPUTS, have_i ? &inf : NULL, prec, *vals, NULL, n_vals, d);
    }
    /* the mapped files are no longer needed once their tensors are converted */
    if (have_w)
        rt_st_close(&wf);
    if (have_i)
        rt_st_close(&inf);
    return ir_diag_ok(d);
}

bool rt_io_load_native(const rt_io_sig *s, const char *weights, const char *inputs, rt_io_natives *v, ir_diag *d)
{
    memset(v, 0, sizeof *v);
    v->v = calloc((size_t)s->n + 1, sizeof *v->v);
    if (!v->v)
        ir_unreachable("out of memory");
    if (ir_diag_ok(d) && weights)
        v->have_w = rt_hf_open_weights(weights, &v->w, d);
    if (ir_diag_ok(d) && inputs)
        v->have_i = rt_st_open(inputs, &v->i, d);
    if (ir_diag_ok(d)) {
        bind(s, &PARAMS, v->have_w ? &v->w : NULL, IR_PREC_F32, NULL, v->v, &v->n, d);
        bind(s, &INPUTS, v->have_i ? &v->i : NULL, IR_PREC_F32, NULL, v->v, &v->n, d);
    }
    return ir_diag_ok(d);
}

const void *rt_io_native_find(const rt_io_natives *v, const char *name)
{
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->v[i].name, name) == 0)
            return v->v[i].data;
    return NULL;
}

void rt_io_natives_free(rt_io_natives *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->v[i].owned);
    free(v->v);
    if (v->have_w)
        rt_st_close(&v->w);
    if (v->have_i)
        rt_st_close(&v->i);
    memset(v, 0, sizeof *v);
}

/* "wrote NAME TYPE, ... to PATH" */
static void say_wrote(const char *path, const rt_st_entry *e, int n)
{
    printf("wrote");
    for (int i = 0; i < n; i++) {
        char ty[300];
        printf("%s %s %s", i ? "," : "", e[i].name, ir_type_str(e[i].dtype, &e[i].shape, ty, sizeof ty));
    }
    printf("%s to %s\n", n ? "" : " no outputs", path);
}

bool rt_io_write_entries(const char *path, const rt_st_entry *e, int n, ir_diag *d)
{
    rt_st_meta meta[] = {{"format", "pt"}, {"loom.precision", "f32"}};
    bool ok = rt_st_write(path, e, n, meta, 2, NULL, NULL, d);
    if (ok)
        say_wrote(path, e, n);
    return ok;
}

bool rt_io_write_outputs(const char *path, const ir_named_tensor *outs, int n, ir_precision prec, ir_diag *d)
{
    rt_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    if (!e || !bufs)
        ir_unreachable("out of memory");
    for (int i = 0; i < n; i++) {
        const ir_tensor *t = outs[i].t;
        ir_dtype dt = prec == IR_PREC_F64 && ir_dtype_is_float(t->dtype) ? DT_F64 : t->dtype;
        size_t count = (size_t)ir_shape_numel(&t->shape);
        bufs[i] = malloc(count * (size_t)ir_dtype_size(dt) + 1);
        if (!bufs[i])
            ir_unreachable("out of memory");
        rt_convert_from_f64(dt, t->data, bufs[i], count);
        e[i] = (rt_st_entry){outs[i].name, dt, t->shape, bufs[i]};
    }
    rt_st_meta meta[] = {{"format", "pt"}, {"loom.precision", prec == IR_PREC_F64 ? "f64" : "f32"}};
    bool ok = rt_st_write(path, e, n, meta, 2, NULL, NULL, d);
    if (ok)
        say_wrote(path, e, n);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    return ok;
}
