/* compress.c — model compression over weight files (docs/compression.md):
 *   loom quantize W.safetensors --format int8|int4 [--group 32|64|128] [--scales f16|f32] -o Q
 *   loom prune W.safetensors --sparsity S | --pattern N:M -o P
 * and the graph side of quantized files: eng_dequantize_graph rewrites a model's params that a
 * weights file holds quantized (passes/quantize.c), so run and generate bind it by name.
 *
 * Which tensors: the GEMM weights, told by name as Hugging Face checkpoints name them — float
 * matrices whose name ends in "weight" and names no embedding table (wte, wpe, embed,
 * position, token_type) nor optimizer state (a '/'). Embeddings, norms and biases (rank 1) stay float. The axis a GEMM
 * reduces over: rows for GPT-2's Conv1D weights, stored [in, out] (c_attn, c_proj, c_fc),
 * columns for every nn.Linear weight, stored [out, in]. Quantization groups and pruning's N:M
 * blocks run along that axis; int8 has one scale per output channel.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compress.h"
#include "engine/jobs.h"
#include "io/hf.h"
#include "io/safetensors.h"
#include "passes/pass.h"

/* ---- which tensors --------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

bool eng_gemm_weight(const char *name, ir_dtype dt, const ir_shape *s, int *axis)
{
    static const char *const tables[] = {"wte", "wpe", "embed", "position", "token_type"};
    if (!ir_dtype_is_float(dt) || s->rank != 2 || !ends_with(name, "weight") || strchr(name, '/'))
        return false;
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
        if (strstr(name, tables[i]))
            return false;
    *axis = ends_with(name, "c_attn.weight") || ends_with(name, "c_proj.weight") || ends_with(name, "c_fc.weight") ? 0 : 1;
    return true;
}

/* The index in a [R, C] matrix of the k-th element along the reduction axis of line l (a
 * column of it for axis 0, a row for axis 1). */
static inline int64_t at_line(int axis, int64_t C, int64_t l, int64_t k) { return axis == 0 ? k * C + l : l * C + k; }

/* ---- quantize -------------------------------------------------------------------------------- */

/* The tensors to write and the memory they own. */
typedef struct {
    rt_st_entry *e;
    int n, cap;
    void **owned;
    int n_owned, cap_owned;
} entry_list;

static void own(entry_list *L, void *p)
{
    if (L->n_owned == L->cap_owned) {
        L->cap_owned = L->cap_owned ? 2 * L->cap_owned : 64;
        L->owned = realloc(L->owned, sizeof *L->owned * (size_t)L->cap_owned);
        if (!L->owned)
            ir_unreachable("out of memory");
    }
    L->owned[L->n_owned++] = p;
}

static void add_entry(entry_list *L, rt_st_entry e, void *owned)
{
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 64;
        L->e = realloc(L->e, sizeof *L->e * (size_t)L->cap);
        if (!L->e)
            ir_unreachable("out of memory");
    }
    L->e[L->n++] = e;
    if (owned)
        own(L, owned);
}

static void entries_free(entry_list *L)
{
    for (int i = 0; i < L->n_owned; i++)
        free(L->owned[i]);
    free(L->owned);
    free(L->e);
}

static char *name_with(const char *name, const char *suffix)
{
    size_t n = strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (!s)
        ir_unreachable("out of memory");
    snprintf(s, n, "%s%s", name, suffix);
    return s;
}

static float *load_f32(const rt_st_tensor *t)
{
    size_t n = (size_t)ir_shape_numel(&t->shape);
    float *w = malloc(sizeof *w * (n ? n : 1));
    if (!w)
        ir_unreachable("out of memory");
    rt_convert_to_f32(t->dtype, t->data, w, n);
    return w;
}

/* The stored value of scale s in dtype dt (f16 rounds). */
static double stored_scale(ir_dtype dt, double s)
{
    if (dt == DT_F32)
        return (float)s;
    return rt_f16_to_f64(rt_f64_to_f16(s));
}

/* Quantizes tensor t (a GEMM weight reducing along axis) into codes and scales entries. */
static bool quantize_tensor(const char *path, const rt_st_tensor *t, int axis, int bits, int64_t group,
                            ir_dtype sdt, entry_list *out, ir_diag *d)
{
    int64_t R = t->shape.dim[0], C = t->shape.dim[1], len = t->shape.dim[axis], lines = t->shape.dim[1 - axis];
    int64_t g = bits == 8 ? len : group;
    if (len % g != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' %s: the group %" PRId64 " does not divide its %" PRId64
                      " %s (try --group 32, 64 or 128)", path, t->name,
                      ir_type_str(t->dtype, &t->shape, (char[64]){0}, 64), g, len, axis == 0 ? "rows" : "columns");
        return false;
    }
    if (bits == 4 && C % 2 != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': int4 packs two columns a byte; %" PRId64 " columns is odd", path,
                      t->name, C);
        return false;
    }
    int64_t groups = len / g, qmax = bits == 8 ? 127 : 7;
    float *w = load_f32(t);
    double *scales = malloc(sizeof *scales * (size_t)(groups * lines));
    uint8_t *codes = calloc((size_t)(bits == 8 ? R * C : R * C / 2), 1);
    if (!scales || !codes)
        ir_unreachable("out of memory");
    bool ok = true;
    for (int64_t l = 0; l < lines && ok; l++)
        for (int64_t gi = 0; gi < groups && ok; gi++) {
            double amax = 0;
            for (int64_t k = gi * g; k < (gi + 1) * g; k++) {
                double v = w[at_line(axis, C, l, k)];
                if (!isfinite(v)) {
                    ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' holds a non-finite value (%g)", path, t->name, v);
                    ok = false;
                    break;
                }
                amax = fmax(amax, fabs(v));
            }
            double s = stored_scale(sdt, amax / (double)qmax);
            if (!isfinite(s)) {
                ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': a scale of %g overflows f16 (use --scales f32)", path,
                              t->name, amax / (double)qmax);
                ok = false;
                break;
            }
            /* scales are [groups, C] along axis 0, [R, groups] along axis 1 */
            scales[axis == 0 ? gi * C + l : l * groups + gi] = s;
            for (int64_t k = gi * g; k < (gi + 1) * g; k++) {
                int64_t i = at_line(axis, C, l, k);
                double q = s > 0 ? nearbyint(w[i] / s) : 0;
                q = q > (double)qmax ? (double)qmax : q < -(double)qmax ? -(double)qmax : q;
                if (bits == 8)
                    codes[i] = (uint8_t)(int8_t)q;
                else
                    codes[i / 2] |= (uint8_t)(((int)q + 8) << (i % 2 ? 4 : 0));
            }
        }
    free(w);
    if (!ok) {
        free(scales);
        free(codes);
        return false;
    }
    void *sbytes = malloc((size_t)(groups * lines) * (size_t)ir_dtype_size(sdt));
    if (!sbytes)
        ir_unreachable("out of memory");
    rt_convert_from_f64(sdt, scales, sbytes, (size_t)(groups * lines));
    free(scales);
    char *qn = name_with(t->name, PASS_QWEIGHT_SUFFIX), *sn = name_with(t->name, PASS_QSCALES_SUFFIX);
    ir_shape qs = {2, {R, bits == 8 ? C : C / 2}}, ss = {2, {axis == 0 ? groups : R, axis == 0 ? C : groups}};
    add_entry(out, (rt_st_entry){qn, bits == 8 ? DT_I8 : DT_U8, qs, codes}, codes);
    own(out, qn);
    add_entry(out, (rt_st_entry){sn, sdt, ss, sbytes}, sbytes);
    own(out, sn);
    return true;
}

/* Opens the input (o->file, a safetensors file) and checks -o; false after reporting. */
static bool open_input(const eng_opts *o, const char *cmd, rt_st_file *f, ir_diag *d)
{
    if (!o->file) {
        ir_diag_error(d, -1, 0, 0, "%s: no weights file given (loom %s W.safetensors ... -o OUT.safetensors)", cmd, cmd);
        return false;
    }
    if (!o->out) {
        ir_diag_error(d, -1, 0, 0, "%s: missing -o OUT.safetensors (where to write the result)", cmd);
        return false;
    }
    if (o->n_extra) {
        ir_diag_error(d, -1, 0, 0, "%s: one weights file at a time (got '%s' too)", cmd, o->extra[0]);
        return false;
    }
    return rt_st_open(o->file, f, d);
}

/* The input's metadata and one entry of ours; the caller frees the array. */
static rt_st_meta *with_meta(const rt_st_file *f, const rt_st_meta *ours, int n_ours, int *n)
{
    rt_st_meta *m = calloc((size_t)(f->n_meta + n_ours) + 1, sizeof *m);
    if (!m)
        ir_unreachable("out of memory");
    int k = 0;
    for (int i = 0; i < f->n_meta; i++) {
        bool replaced = false;
        for (int j = 0; j < n_ours; j++)
            replaced |= strcmp(f->meta[i].key, ours[j].key) == 0;
        if (!replaced)
            m[k++] = f->meta[i];
    }
    for (int j = 0; j < n_ours; j++)
        m[k++] = ours[j];
    *n = k;
    return m;
}

bool eng_quantize(const eng_opts *o, ir_diag *d)
{
    const char *format = eng_named(o, "--format"), *scales = eng_named(o, "--scales");
    if (!format || (strcmp(format, "int8") != 0 && strcmp(format, "int4") != 0)) {
        ir_diag_error(d, -1, 0, 0, "quantize: --format expects int8 or int4, got '%s'", format ? format : "(none)");
        return false;
    }
    int bits = strcmp(format, "int8") == 0 ? 8 : 4;
    int64_t group = 32; /* --group, default 32 */
    if (!eng_named_int(o, "quantize", "--group", 2, 1 << 20, &group, d))
        return false;
    if (bits == 8 && eng_named(o, "--group")) {
        ir_diag_error(d, -1, 0, 0, "quantize: --group is for int4 (int8 has one scale per output channel)");
        return false;
    }
    if (scales && strcmp(scales, "f16") != 0 && strcmp(scales, "f32") != 0) {
        ir_diag_error(d, -1, 0, 0, "quantize: --scales expects f16 or f32, got '%s'", scales);
        return false;
    }
    ir_dtype sdt = scales && strcmp(scales, "f32") == 0 ? DT_F32 : DT_F16;
    rt_st_file f;
    if (!open_input(o, "quantize", &f, d))
        return false;
    entry_list L = {0};
    bool ok = true;
    int n_q = 0;
    int64_t before = 0, after = 0;
    for (int i = 0; i < f.n_tensors && ok; i++) {
        const rt_st_tensor *t = &f.tensors[i];
        int axis;
        int64_t bytes = ir_shape_numel(&t->shape) * ir_dtype_size(t->dtype);
        before += bytes;
        if (ends_with(t->name, PASS_QWEIGHT_SUFFIX) || ends_with(t->name, PASS_QSCALES_SUFFIX)) {
            ir_diag_error(d, -1, 0, 0, "quantize: %s: tensor '%s' is quantized already", o->file, t->name);
            ok = false;
        } else if (eng_gemm_weight(t->name, t->dtype, &t->shape, &axis)) {
            int first = L.n;
            ok = quantize_tensor(o->file, t, axis, bits, group, sdt, &L, d);
            for (int k = first; ok && k < L.n; k++)
                after += ir_shape_numel(&L.e[k].shape) * ir_dtype_size(L.e[k].dtype);
            n_q++;
        } else {
            add_entry(&L, (rt_st_entry){t->name, t->dtype, t->shape, t->data}, NULL);
            after += bytes;
        }
    }
    if (ok && n_q == 0) {
        ir_diag_error(d, -1, 0, 0, "quantize: %s has no GEMM weights (2-D float tensors named *weight that are "
                      "no embedding)", o->file);
        ok = false;
    }
    char group_text[32];
    snprintf(group_text, sizeof group_text, "%" PRId64, bits == 8 ? (int64_t)0 : group);
    rt_st_meta ours[] = {{"loom.quantization", (char *)format}, {"loom.scales", (char *)ir_dtype_name(sdt)},
                         {"loom.group", group_text}};
    int n_meta;
    rt_st_meta *meta = with_meta(&f, ours, bits == 8 ? 2 : 3, &n_meta);
    if (ok)
        ok = rt_st_write(o->out, L.e, L.n, meta, n_meta, NULL, NULL, d);
    if (ok)
        printf("quantized %d GEMM weights to %s%s%s: %.1f MB -> %.1f MB, wrote %s\n", n_q, format,
               bits == 4 ? " group " : "", bits == 4 ? group_text : "", (double)before / 1e6, (double)after / 1e6,
               o->out);
    free(meta);
    entries_free(&L);
    rt_st_close(&f);
    return ok;
}

/* ---- prune ----------------------------------------------------------------------------------- */

static int cmp_abs(const void *a, const void *b)
{
    float x = fabsf(*(const float *)a), y = fabsf(*(const float *)b);
    return (x > y) - (x < y);
}

/* Zeros the smallest-magnitude elements of w [R, C]: a fraction `sparsity` of the whole matrix
 * (exactly floor(sparsity * numel), ties broken by position), or with n:m the m-n smallest of
 * every m consecutive elements along the reduction axis. Returns the zeros made. */
static int64_t prune_matrix(float *w, int64_t R, int64_t C, int axis, double sparsity, int n, int m)
{
    int64_t numel = R * C, zeros = 0;
    if (m > 0) {
        int64_t len = axis == 0 ? R : C, lines = axis == 0 ? C : R;
        for (int64_t l = 0; l < lines; l++)
            for (int64_t b = 0; b < len; b += m) {
                bool dropped[64] = {false};
                for (int drop = 0; drop < m - n; drop++) { /* the smallest left, first on ties */
                    int best = -1;
                    for (int k = 0; k < m; k++)
                        if (!dropped[k] &&
                            (best < 0 || fabsf(w[at_line(axis, C, l, b + k)]) < fabsf(w[at_line(axis, C, l, b + best)])))
                            best = k;
                    dropped[best] = true;
                    w[at_line(axis, C, l, b + best)] = 0.0f;
                }
            }
        for (int64_t i = 0; i < numel; i++)
            zeros += w[i] == 0;
        return zeros;
    }
    int64_t k = (int64_t)floor(sparsity * (double)numel);
    if (k == 0)
        return 0;
    float *sorted = malloc(sizeof *sorted * (size_t)numel);
    if (!sorted)
        ir_unreachable("out of memory");
    memcpy(sorted, w, sizeof *sorted * (size_t)numel);
    qsort(sorted, (size_t)numel, sizeof *sorted, cmp_abs);
    float thr = fabsf(sorted[k - 1]);
    free(sorted);
    int64_t below = 0;
    for (int64_t i = 0; i < numel; i++)
        below += fabsf(w[i]) < thr;
    int64_t at_thr = k - below; /* those equal to the threshold, first by position */
    for (int64_t i = 0; i < numel; i++) {
        float a = fabsf(w[i]);
        if (a < thr || (a == thr && at_thr-- > 0)) {
            w[i] = 0.0f;
            zeros++;
        }
    }
    return zeros;
}

bool eng_prune(const eng_opts *o, ir_diag *d)
{
    const char *sp = eng_named(o, "--sparsity"), *pat = eng_named(o, "--pattern");
    double sparsity = 0;
    int n = 0, m = 0;
    if ((sp != NULL) == (pat != NULL)) {
        ir_diag_error(d, -1, 0, 0, "prune: give one of --sparsity S (0 <= S < 1) or --pattern N:M (e.g. 2:4)");
        return false;
    }
    if (sp) {
        char *end;
        sparsity = strtod(sp, &end);
        if (end == sp || *end || !(sparsity >= 0 && sparsity < 1)) {
            ir_diag_error(d, -1, 0, 0, "prune: --sparsity expects a fraction in [0, 1), got '%s'", sp);
            return false;
        }
    } else {
        char tail;
        if (sscanf(pat, "%d:%d%c", &n, &m, &tail) != 2 || n < 1 || m < 2 || n >= m || m > 64) {
            ir_diag_error(d, -1, 0, 0, "prune: --pattern expects N:M with 0 < N < M <= 64 (e.g. 2:4), got '%s'", pat);
            return false;
        }
    }
    rt_st_file f;
    if (!open_input(o, "prune", &f, d))
        return false;
    entry_list L = {0};
    bool ok = true;
    int n_p = 0;
    int64_t total = 0, zeros = 0;
    for (int i = 0; i < f.n_tensors && ok; i++) {
        const rt_st_tensor *t = &f.tensors[i];
        int axis;
        if (!eng_gemm_weight(t->name, t->dtype, &t->shape, &axis)) {
            add_entry(&L, (rt_st_entry){t->name, t->dtype, t->shape, t->data}, NULL);
            continue;
        }
        int64_t R = t->shape.dim[0], C = t->shape.dim[1], len = t->shape.dim[axis];
        if (m && len % m != 0) {
            ir_diag_error(d, -1, 0, 0, "prune: %s: tensor '%s': --pattern %d:%d needs the reduction axis (%" PRId64
                          ") to be a multiple of %d", o->file, t->name, n, m, len, m);
            ok = false;
            break;
        }
        float *w = load_f32(t);
        zeros += prune_matrix(w, R, C, axis, sparsity, n, m);
        total += R * C;
        size_t bytes = (size_t)(R * C) * (size_t)ir_dtype_size(t->dtype);
        void *data = t->dtype == DT_F32 ? (void *)w : malloc(bytes);
        if (!data)
            ir_unreachable("out of memory");
        if (t->dtype != DT_F32) {
            double *tmp = malloc(sizeof *tmp * (size_t)(R * C));
            if (!tmp)
                ir_unreachable("out of memory");
            for (int64_t k = 0; k < R * C; k++)
                tmp[k] = w[k];
            rt_convert_from_f64(t->dtype, tmp, data, (size_t)(R * C));
            free(tmp);
            free(w);
        }
        add_entry(&L, (rt_st_entry){t->name, t->dtype, t->shape, data}, data);
        n_p++;
    }
    if (ok && n_p == 0) {
        ir_diag_error(d, -1, 0, 0, "prune: %s has no GEMM weights (2-D float tensors named *weight that are no "
                      "embedding)", o->file);
        ok = false;
    }
    rt_st_meta ours[] = {{"loom.pruning", (char *)(sp ? sp : pat)}};
    int n_meta;
    rt_st_meta *meta = with_meta(&f, ours, 1, &n_meta);
    if (ok)
        ok = rt_st_write(o->out, L.e, L.n, meta, n_meta, NULL, NULL, d);
    if (ok)
        printf("pruned %d GEMM weights (%s %s): %" PRId64 " of %" PRId64 " elements zero (%.2f%%), wrote %s\n", n_p,
               sp ? "sparsity" : "pattern", sp ? sp : pat, zeros, total, 100.0 * (double)zeros / (double)total, o->out);
    free(meta);
    entries_free(&L);
    rt_st_close(&f);
    return ok;
}

/* ---- the graph of a quantized file ------------------------------------------------------------ */

bool eng_dequantize_graph(ir_graph *g, const char *weights, ir_diag *d)
{
    if (!weights)
        return true;
    /* a file, a shard index or a folder (io/hf.h); one that does not open is the binder's to
     * report, in its turn (after the checks that need no weights) */
    rt_st_file f;
    ir_diag quiet;
    ir_diag_init(&quiet);
    bool opened = rt_hf_open_weights(weights, &f, &quiet);
    ir_diag_free(&quiet);
    if (!opened)
        return true;
    pass_qparam *qs = calloc((size_t)g->n_nodes + 1, sizeof *qs);
    if (!qs)
        ir_unreachable("out of memory");
    int n = 0;
    bool ok = true;
    char name[600];
    for (int i = 0; i < g->n_nodes && ok; i++) {
        const ir_node *p = g->nodes[i];
        if (p->op != OP_param)
            continue;
        /* the codes first: a param the file seems to hold may be an alias (a LLaMA lm_head.weight
         * missing from the file reads as the tied embedding, io/hf.c), not the param itself */
        snprintf(name, sizeof name, "%s%s", p->name, PASS_QWEIGHT_SUFFIX);
        const rt_st_tensor *q = rt_st_find(&f, name);
        snprintf(name, sizeof name, "%s%s", p->name, PASS_QSCALES_SUFFIX);
        const rt_st_tensor *s = rt_st_find(&f, name);
        if (!q && !s)
            continue; /* f32 in the file, or missing: the binder says so */
        char want[64];
        ir_type_str(p->dtype, &p->shape, want, sizeof want);
        if (!q || !s) {
            ir_diag_error(d, -1, 0, 0, "%s: param '%s' %s: '%s%s' without '%s%s'", weights, p->name, want, p->name,
                          q ? PASS_QWEIGHT_SUFFIX : PASS_QSCALES_SUFFIX, p->name,
                          q ? PASS_QSCALES_SUFFIX : PASS_QWEIGHT_SUFFIX);
            ok = false;
            break;
        }
        int bits = q->dtype == DT_I8 ? 8 : q->dtype == DT_U8 ? 4 : 0;
        bool shapes = p->shape.rank == 2 && q->shape.rank == 2 && s->shape.rank == 2 &&
                      q->shape.dim[0] == p->shape.dim[0] && q->shape.dim[1] * (bits == 4 ? 2 : 1) == p->shape.dim[1];
        int axis = !shapes ? -1 : s->shape.dim[1] == p->shape.dim[1] && s->shape.dim[0] != p->shape.dim[0] ? 0
                               : s->shape.dim[0] == p->shape.dim[0] ? 1 : -1;
        if (!bits || axis < 0 || (s->dtype != DT_F16 && s->dtype != DT_F32) ||
            p->shape.dim[axis] % s->shape.dim[axis] != 0) {
            char qt[64], st[64];
            ir_diag_error(d, -1, 0, 0, "%s: param '%s' %s: quantized as %s and %s scales, which do not fit "
                          "(docs/compression.md: i8 [R, C] or u8 [R, C/2]; f16|f32 [G, C] or [R, G])", weights,
                          p->name, want, ir_type_str(q->dtype, &q->shape, qt, sizeof qt),
                          ir_type_str(s->dtype, &s->shape, st, sizeof st));
            ok = false;
            break;
        }
        qs[n++] = (pass_qparam){p->name, bits, axis, s->shape.dim[axis], s->dtype};
    }
    if (ok && n)
        ok = pass_quantize_params(g, qs, n, d);
    free(qs);
    rt_st_close(&f);
    return ok;
}
