/* plan_io.c — the plan file (plan_io.h): writer, reader and the plan validator. */
#include "plan/plan_io.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


#define MAX_STRING (1u << 20)
#define MAX_ARGS 4096

/* ---- bytes ------------------------------------------------------------------------------ */
uint64_t rt_fnv1a64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void rt_wbuf_bytes(rt_wbuf *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->n + n)
            cap *= 2;
        w->data = realloc(w->data, cap);
        if (!w->data)
            ir_unreachable("out of memory");
        w->cap = cap;
    }
    if (n)
        memcpy(w->data + w->n, p, n);
    w->n += n;
}

void rt_wbuf_u64(rt_wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    rt_wbuf_bytes(w, b, 8);
}

void rt_wbuf_u32(rt_wbuf *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    rt_wbuf_bytes(w, b, 4);
}

void rt_wbuf_i64(rt_wbuf *w, int64_t v) { rt_wbuf_u64(w, (uint64_t)v); }

void rt_wbuf_f64(rt_wbuf *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    rt_wbuf_u64(w, u);
}

void rt_wbuf_str(rt_wbuf *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    rt_wbuf_u32(w, (uint32_t)n);
    rt_wbuf_bytes(w, s, n);
}

const uint8_t *rt_rbuf_bytes(rt_rbuf *r, size_t n)
{
    if (r->bad || n > r->n - r->pos) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

uint64_t rt_rbuf_u64(rt_rbuf *r)
{
    const uint8_t *b = rt_rbuf_bytes(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

uint32_t rt_rbuf_u32(rt_rbuf *r)
{
    const uint8_t *b = rt_rbuf_bytes(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

int64_t rt_rbuf_i64(rt_rbuf *r) { return (int64_t)rt_rbuf_u64(r); }

double rt_rbuf_f64(rt_rbuf *r)
{
    uint64_t u = rt_rbuf_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

char *rt_rbuf_str(rt_rbuf *r)
{
    uint32_t n = rt_rbuf_u32(r);
    if (n > MAX_STRING)
        r->bad = true;
    const uint8_t *b = r->bad ? NULL : rt_rbuf_bytes(r, n);
    if (!b || memchr(b, 0, n)) {
        r->bad = true;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s)
        ir_unreachable("out of memory");
    memcpy(s, b, n);
    s[n] = 0;
    return s;
}

/* ---- writing ---------------------------------------------------------------------------- */
static void put_ref(rt_wbuf *w, rt_plan_ref r)
{
    rt_wbuf_i64(w, r.buf);
    rt_wbuf_i64(w, r.offset);
}

static void put_attention(rt_wbuf *w, const rt_plan_attention *a)
{
    const rt_plan_ref refs[] = {a->q, a->k, a->v, a->mask, a->out, a->lse};
    for (size_t i = 0; i < 6; i++)
        put_ref(w, refs[i]);
    int64_t f[] = {a->B, a->H, a->G, a->T, a->S, a->D, a->E, a->causal};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        rt_wbuf_i64(w, f[i]);
    for (int i = 0; i < 3; i++) {
        rt_wbuf_i64(w, a->q_stride[i]);
        rt_wbuf_i64(w, a->k_stride[i]);
        rt_wbuf_i64(w, a->v_stride[i]);
        rt_wbuf_i64(w, a->out_stride[i]);
    }
    for (int i = 0; i < 4; i++)
        rt_wbuf_i64(w, a->mask_stride[i]);
    rt_wbuf_f64(w, a->scale);
}

static void put_kernel(rt_wbuf *w, const rt_plan_kernel *k)
{
    rt_wbuf_str(w, k->name);
    rt_wbuf_u32(w, (uint32_t)k->n_args);
    for (int i = 0; i < k->n_args; i++)
        put_ref(w, k->args[i]);
    rt_wbuf_i64(w, k->grid0);
    rt_wbuf_i64(w, k->work);
    rt_wbuf_u32(w, k->loops);
}

static void put_step(rt_wbuf *w, const rt_plan_step *s)
{
    rt_wbuf_u32(w, (uint32_t)s->kind);
    switch (s->kind) {
    case RT_STEP_KERNEL: put_kernel(w, &s->kernel); break;
    case RT_STEP_GEMM: {
        const rt_plan_gemm *g = &s->gemm;
        rt_wbuf_u32(w, (uint32_t)g->nbatch);
        for (int i = 0; i < RT_PLAN_MAX_BATCH; i++) {
            rt_wbuf_i64(w, g->batch[i]);
            rt_wbuf_i64(w, g->stride_a[i]);
            rt_wbuf_i64(w, g->stride_b[i]);
            rt_wbuf_i64(w, g->stride_c[i]);
        }
        int64_t f[] = {g->M, g->N, g->K, g->trans_a, g->trans_b, g->lda, g->ldb, g->ldc, g->act};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            rt_wbuf_i64(w, f[i]);
        rt_wbuf_f64(w, g->alpha);
        rt_wbuf_f64(w, g->beta);
        put_ref(w, g->a);
        put_ref(w, g->b);
        put_ref(w, g->c);
        put_ref(w, g->bias);
        rt_wbuf_u32(w, g->epi.name != NULL);
        if (g->epi.name)
            put_kernel(w, &g->epi);
        rt_wbuf_i64(w, g->qbits);
        rt_wbuf_i64(w, g->qgroup);
        put_ref(w, g->b_scales);
        break;
    }
    case RT_STEP_ATTENTION: put_attention(w, &s->attn); break;
    case RT_STEP_COPY:
        put_ref(w, s->copy.src);
        put_ref(w, s->copy.dst);
        rt_wbuf_i64(w, s->copy.bytes);
        break;
    case RT_STEP_CHECK_IDS:
        put_ref(w, s->check.ids);
        rt_wbuf_i64(w, s->check.numel);
        rt_wbuf_i64(w, s->check.lo);
        rt_wbuf_i64(w, s->check.hi);
        rt_wbuf_u32(w, s->check.allow_negative);
        rt_wbuf_str(w, s->check.what);
        break;
    case RT_STEP_WRITE_ROWS: {
        const rt_plan_write_rows *r = &s->rows;
        put_ref(w, r->dst);
        put_ref(w, r->src);
        put_ref(w, r->pos);
        rt_wbuf_u32(w, (uint32_t)r->pos_dtype);
        rt_wbuf_i64(w, r->outer);
        rt_wbuf_i64(w, r->rows_dst);
        rt_wbuf_i64(w, r->rows_src);
        rt_wbuf_i64(w, r->row_bytes);
        break;
    }
    case RT_STEP_ATTENTION_GRAD: {
        const rt_plan_attention_grad *g = &s->agrad;
        put_attention(w, &g->fwd);
        put_ref(w, g->dy);
        for (int i = 0; i < 3; i++)
            rt_wbuf_i64(w, g->dy_stride[i]);
        put_ref(w, g->dq);
        put_ref(w, g->dk);
        put_ref(w, g->dv);
        put_ref(w, g->dmask);
        put_ref(w, g->delta);
        rt_wbuf_u32(w, g->lse_own);
        break;
    }
    case RT_STEP_SCATTER_ADD: {
        const rt_plan_scatter *c = &s->scatter;
        put_ref(w, c->ids);
        put_ref(w, c->src);
        put_ref(w, c->dst);
        rt_wbuf_u32(w, (uint32_t)c->ids_dtype);
        rt_wbuf_i64(w, c->n);
        rt_wbuf_i64(w, c->width);
        rt_wbuf_i64(w, c->rows);
        rt_wbuf_i64(w, c->src_stride);
        break;
    }
    case RT_STEP_SUM_ROWS: {
        const rt_plan_sum_rows *r = &s->sum_rows;
        put_ref(w, r->src);
        put_ref(w, r->dst);
        rt_wbuf_i64(w, r->rows);
        rt_wbuf_i64(w, r->width);
        rt_wbuf_i64(w, r->src_stride);
        break;
    }
    }
    rt_wbuf_u32(w, (uint32_t)s->n_lib);
    for (int i = 0; i < s->n_lib; i++)
        put_kernel(w, &s->lib[i]);
}

uint8_t *rt_plan_serialize(const rt_plan *p, const rt_plan_blob *blobs, int n_blobs, size_t *size)
{
    rt_wbuf body = {0};
    rt_wbuf_i64(&body, p->arena_bytes);
    rt_wbuf_u32(&body, (uint32_t)p->n_bufs);
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        rt_wbuf_str(&body, b->name);
        rt_wbuf_u32(&body, (uint32_t)b->dtype);
        rt_wbuf_u32(&body, (uint32_t)b->kind);
        rt_wbuf_i64(&body, b->numel);
        rt_wbuf_i64(&body, b->offset);
    }
    rt_wbuf_u32(&body, (uint32_t)p->n_steps);
    for (int i = 0; i < p->n_steps; i++)
        put_step(&body, &p->steps[i]);
    rt_wbuf_u32(&body, (uint32_t)n_blobs);
    for (int i = 0; i < n_blobs; i++) {
        rt_wbuf_str(&body, blobs[i].name);
        rt_wbuf_u64(&body, blobs[i].size);
        rt_wbuf_bytes(&body, blobs[i].data, blobs[i].size);
    }
    rt_wbuf out = {0};
    rt_wbuf_bytes(&out, RT_PLAN_FILE_MAGIC, 8);
    rt_wbuf_u32(&out, RT_PLAN_FILE_VERSION);
    rt_wbuf_u32(&out, 0);
    rt_wbuf_u64(&out, body.n);
    rt_wbuf_u64(&out, rt_fnv1a64(body.data, body.n));
    rt_wbuf_bytes(&out, body.data, body.n);
    free(body.data);
    *size = out.n;
    return out.data;
}

/* ---- reading ---------------------------------------------------------------------------- */
static rt_plan_ref get_ref(rt_rbuf *r)
{
    int64_t buf = rt_rbuf_i64(r);
    rt_plan_ref ref = {buf < -1 || buf > INT32_MAX ? -2 : (int)buf, rt_rbuf_i64(r)};
    return ref;
}

static void get_attention(rt_rbuf *r, rt_plan_attention *a)
{
    rt_plan_ref *refs[] = {&a->q, &a->k, &a->v, &a->mask, &a->out, &a->lse};
    for (size_t i = 0; i < 6; i++)
        *refs[i] = get_ref(r);
    int64_t *f[] = {&a->B, &a->H, &a->G, &a->T, &a->S, &a->D, &a->E};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        *f[i] = rt_rbuf_i64(r);
    int64_t causal = rt_rbuf_i64(r);
    a->causal = causal == 0 || causal == 1 ? (int)causal : -1;
    for (int i = 0; i < 3; i++) {
        a->q_stride[i] = rt_rbuf_i64(r);
        a->k_stride[i] = rt_rbuf_i64(r);
        a->v_stride[i] = rt_rbuf_i64(r);
        a->out_stride[i] = rt_rbuf_i64(r);
    }
    for (int i = 0; i < 4; i++)
        a->mask_stride[i] = rt_rbuf_i64(r);
    a->scale = rt_rbuf_f64(r);
}

/* A dtype read from the file; DT_VOID when unknown (rejected by the validator). */
static ir_dtype get_dtype(rt_rbuf *r)
{
    uint32_t dt = rt_rbuf_u32(r);
    return dt > DT_VOID && dt < DT_COUNT ? (ir_dtype)dt : DT_VOID;
}

/* Reads a kernel's name, args, grid0 and work; false on a short read. */
static bool get_kernel(rt_rbuf *r, rt_plan_kernel *k)
{
    k->name = rt_rbuf_str(r);
    uint32_t n = rt_rbuf_u32(r);
    if (r->bad || n > MAX_ARGS) {
        r->bad = true;
        return false;
    }
    k->n_args = (int)n;
    k->args = calloc((size_t)n + 1, sizeof *k->args);
    if (!k->args)
        ir_unreachable("out of memory");
    for (uint32_t i = 0; i < n; i++)
        k->args[i] = get_ref(r);
    k->grid0 = rt_rbuf_i64(r);
    k->work = rt_rbuf_i64(r);
    k->loops = rt_rbuf_u32(r) != 0;
    return !r->bad;
}

/* Reads one step; false on a short read or an unknown kind (reported). */
static bool get_step(rt_rbuf *r, rt_plan_step *s, int index, const char *what, ir_diag *d)
{
    uint32_t kind = rt_rbuf_u32(r);
    if (r->bad)
        return false;
    if (kind >= RT_STEP_KIND_COUNT) {
        ir_diag_error(d, -1, 0, 0, "%s: step %d has unknown kind %" PRIu32, what, index, kind);
        return false;
    }
    s->kind = (rt_step_kind)kind;
    switch (s->kind) {
    case RT_STEP_KERNEL:
        if (!get_kernel(r, &s->kernel))
            return false;
        break;
    case RT_STEP_GEMM: {
        rt_plan_gemm *g = &s->gemm;
        uint32_t nb = rt_rbuf_u32(r);
        g->nbatch = nb > RT_PLAN_MAX_BATCH ? -1 : (int)nb;
        for (int i = 0; i < RT_PLAN_MAX_BATCH; i++) {
            g->batch[i] = rt_rbuf_i64(r);
            g->stride_a[i] = rt_rbuf_i64(r);
            g->stride_b[i] = rt_rbuf_i64(r);
            g->stride_c[i] = rt_rbuf_i64(r);
        }
        g->M = rt_rbuf_i64(r);
        g->N = rt_rbuf_i64(r);
        g->K = rt_rbuf_i64(r);
        int64_t ta = rt_rbuf_i64(r), tb = rt_rbuf_i64(r);
        g->trans_a = ta == 0 || ta == 1 ? (int)ta : -1;
        g->trans_b = tb == 0 || tb == 1 ? (int)tb : -1;
        g->lda = rt_rbuf_i64(r);
        g->ldb = rt_rbuf_i64(r);
        g->ldc = rt_rbuf_i64(r);
        int64_t act = rt_rbuf_i64(r);
        g->act = act >= RT_ACT_NONE && act < RT_ACT_COUNT ? (int)act : -1;
        g->alpha = rt_rbuf_f64(r);
        g->beta = rt_rbuf_f64(r);
        g->a = get_ref(r);
        g->b = get_ref(r);
        g->c = get_ref(r);
        g->bias = get_ref(r);
        if (rt_rbuf_u32(r) != 0 && !get_kernel(r, &g->epi))
            return false;
        int64_t qbits = rt_rbuf_i64(r);
        g->qbits = qbits == 0 || qbits == 4 || qbits == 8 ? (int)qbits : -1;
        g->qgroup = rt_rbuf_i64(r);
        g->b_scales = get_ref(r);
        break;
    }
    case RT_STEP_ATTENTION: get_attention(r, &s->attn); break;
    case RT_STEP_COPY:
        s->copy.src = get_ref(r);
        s->copy.dst = get_ref(r);
        s->copy.bytes = rt_rbuf_i64(r);
        break;
    case RT_STEP_CHECK_IDS: {
        s->check.ids = get_ref(r);
        s->check.numel = rt_rbuf_i64(r);
        s->check.lo = rt_rbuf_i64(r);
        s->check.hi = rt_rbuf_i64(r);
        uint32_t neg = rt_rbuf_u32(r);
        s->check.allow_negative = neg != 0;
        s->check.what = rt_rbuf_str(r);
        if (neg > 1)
            s->check.numel = -1; /* rejected by the validator */
        break;
    }
    case RT_STEP_WRITE_ROWS: {
        rt_plan_write_rows *w = &s->rows;
        w->dst = get_ref(r);
        w->src = get_ref(r);
        w->pos = get_ref(r);
        w->pos_dtype = get_dtype(r);
        w->outer = rt_rbuf_i64(r);
        w->rows_dst = rt_rbuf_i64(r);
        w->rows_src = rt_rbuf_i64(r);
        w->row_bytes = rt_rbuf_i64(r);
        break;
    }
    case RT_STEP_ATTENTION_GRAD: {
        rt_plan_attention_grad *g = &s->agrad;
        get_attention(r, &g->fwd);
        g->dy = get_ref(r);
        for (int i = 0; i < 3; i++)
            g->dy_stride[i] = rt_rbuf_i64(r);
        g->dq = get_ref(r);
        g->dk = get_ref(r);
        g->dv = get_ref(r);
        g->dmask = get_ref(r);
        g->delta = get_ref(r);
        g->lse_own = rt_rbuf_u32(r) != 0;
        break;
    }
    case RT_STEP_SCATTER_ADD: {
        rt_plan_scatter *c = &s->scatter;
        c->ids = get_ref(r);
        c->src = get_ref(r);
        c->dst = get_ref(r);
        c->ids_dtype = get_dtype(r);
        c->n = rt_rbuf_i64(r);
        c->width = rt_rbuf_i64(r);
        c->rows = rt_rbuf_i64(r);
        c->src_stride = rt_rbuf_i64(r);
        break;
    }
    case RT_STEP_SUM_ROWS: {
        rt_plan_sum_rows *w = &s->sum_rows;
        w->src = get_ref(r);
        w->dst = get_ref(r);
        w->rows = rt_rbuf_i64(r);
        w->width = rt_rbuf_i64(r);
        w->src_stride = rt_rbuf_i64(r);
        break;
    }
    }
    uint32_t n_lib = rt_rbuf_u32(r);
    if (r->bad || n_lib > RT_PLAN_MAX_LIB) {
        r->bad = true;
        return false;
    }
    for (uint32_t i = 0; i < n_lib; i++) {
        s->n_lib = (int)i + 1; /* freed by rt_plan_clear even when the read fails */
        if (!get_kernel(r, &s->lib[i]))
            return false;
    }
    return !r->bad;
}

bool rt_plan_deserialize(const void *data, size_t size, const char *what, rt_plan *p, rt_plan_blob **blobs,
                         int *n_blobs, ir_diag *d)
{
    memset(p, 0, sizeof *p);
    *blobs = NULL;
    *n_blobs = 0;
    rt_rbuf h = {data, size, 0, false};
    const uint8_t *magic = rt_rbuf_bytes(&h, 8);
    uint32_t version = rt_rbuf_u32(&h);
    rt_rbuf_u32(&h);
    uint64_t body_size = rt_rbuf_u64(&h), sum = rt_rbuf_u64(&h);
    if (h.bad || memcmp(magic, RT_PLAN_FILE_MAGIC, 8) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: not a loom plan (bad magic or shorter than its %d-byte header)", what,
                      RT_PLAN_HEADER_BYTES);
        return false;
    }
    if (version != RT_PLAN_FILE_VERSION) {
        ir_diag_error(d, -1, 0, 0, "%s: plan format version %" PRIu32 ", this runtime reads version %d", what, version,
                      RT_PLAN_FILE_VERSION);
        return false;
    }
    if (body_size != size - RT_PLAN_HEADER_BYTES) {
        ir_diag_error(d, -1, 0, 0, "%s: truncated or padded plan (%" PRIu64 " body bytes declared, %zu present)", what,
                      body_size, size - RT_PLAN_HEADER_BYTES);
        return false;
    }
    const uint8_t *body = (const uint8_t *)data + RT_PLAN_HEADER_BYTES;
    if (rt_fnv1a64(body, (size_t)body_size) != sum) {
        ir_diag_error(d, -1, 0, 0, "%s: corrupt plan (checksum mismatch)", what);
        return false;
    }
    rt_rbuf r = {body, (size_t)body_size, 0, false};
    bool ok = true;
    p->arena_bytes = rt_rbuf_i64(&r);
    uint32_t nb = rt_rbuf_u32(&r);
    if (!r.bad && nb > (r.n - r.pos) / 28) /* each buffer takes at least 28 bytes */
        r.bad = true;
    if (!r.bad) {
        p->bufs = calloc((size_t)nb + 1, sizeof *p->bufs);
        if (!p->bufs)
            ir_unreachable("out of memory");
        p->n_bufs = p->cap_bufs = (int)nb;
    }
    for (int i = 0; !r.bad && i < p->n_bufs; i++) {
        rt_plan_buffer *b = &p->bufs[i];
        b->name = rt_rbuf_str(&r);
        uint32_t dt = rt_rbuf_u32(&r), kind = rt_rbuf_u32(&r);
        b->dtype = dt > DT_VOID && dt < DT_COUNT ? (ir_dtype)dt : DT_VOID;
        b->kind = kind <= RT_BUF_CONSTANT ? (rt_buf_kind)kind : RT_BUF_CONSTANT;
        b->numel = rt_rbuf_i64(&r);
        b->offset = rt_rbuf_i64(&r);
        if (b->dtype == DT_VOID || kind > RT_BUF_CONSTANT) {
            ir_diag_error(d, -1, 0, 0, "%s: buffer %d has an unknown dtype (%" PRIu32 ") or kind (%" PRIu32 ")", what, i,
                          dt, kind);
            ok = false;
        }
    }
    uint32_t ns = r.bad ? 0 : rt_rbuf_u32(&r);
    if (!r.bad && ns > (r.n - r.pos) / 4)
        r.bad = true;
    if (!r.bad) {
        p->steps = calloc((size_t)ns + 1, sizeof *p->steps);
        if (!p->steps)
            ir_unreachable("out of memory");
        p->cap_steps = (int)ns;
    }
    for (uint32_t i = 0; ok && !r.bad && i < ns; i++) {
        p->n_steps++;
        ok = get_step(&r, &p->steps[i], (int)i, what, d) || r.bad; /* r.bad: reported below */
    }
    uint32_t nblob = ok && !r.bad ? rt_rbuf_u32(&r) : 0;
    if (!r.bad && nblob > (r.n - r.pos) / 12)
        r.bad = true;
    if (ok && !r.bad) {
        *blobs = calloc((size_t)nblob + 1, sizeof **blobs);
        if (!*blobs)
            ir_unreachable("out of memory");
    }
    for (uint32_t i = 0; ok && !r.bad && i < nblob; i++) {
        rt_plan_blob *b = &(*blobs)[(*n_blobs)++];
        b->name = rt_rbuf_str(&r);
        uint64_t n = rt_rbuf_u64(&r);
        const uint8_t *bytes = r.bad || n > r.n - r.pos ? NULL : rt_rbuf_bytes(&r, (size_t)n);
        if (!bytes) {
            r.bad = true;
            break;
        }
        b->data = malloc((size_t)n + 1);
        if (!b->data)
            ir_unreachable("out of memory");
        memcpy(b->data, bytes, (size_t)n);
        b->size = (size_t)n;
    }
    if (ok && !r.bad && r.pos != r.n) {
        ir_diag_error(d, -1, 0, 0, "%s: %zu stray bytes after the plan", what, r.n - r.pos);
        ok = false;
    }
    if (ok && r.bad) {
        ir_diag_error(d, -1, 0, 0, "%s: malformed plan (a record runs past the end, or a string is invalid)", what);
        ok = false;
    }
    ok = ok && rt_plan_validate(p, what, d);
    if (!ok) {
        rt_plan_clear(p);
        rt_plan_blobs_free(*blobs, *n_blobs);
        *blobs = NULL;
        *n_blobs = 0;
    }
    return ok;
}

void rt_plan_blobs_free(rt_plan_blob *blobs, int n)
{
    for (int i = 0; blobs && i < n; i++) {
        free(blobs[i].name);
        free(blobs[i].data);
    }
    free(blobs);
}

char *rt_plan_blob_text(const rt_plan_blob *b)
{
    char *s = b ? strndup((const char *)b->data, b->size) : NULL;
    if (b && !s)
        ir_unreachable("out of memory");
    return s;
}

const rt_plan_blob *rt_plan_blob_find(const rt_plan_blob *blobs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (blobs[i].name && strcmp(blobs[i].name, name) == 0)
            return &blobs[i];
    return NULL;
}

/* ---- validation ------------------------------------------------------------------------- */
typedef struct {
    const rt_plan *p;
    const char *what;
    int step;
    ir_diag *d;
} checker;

static bool fail(checker *c, const char *msg, const char *field)
{
    ir_diag_error(c->d, -1, 0, 0, "%s: invalid plan: step %d: %s%s%s", c->what, c->step, field ? field : "",
                  field ? ": " : "", msg);
    return false;
}

/* Largest element index reached from `offset` over dims of sizes n[] and strides s[] (all
 * non-negative; dims outermost first), in *last; false on overflow or a negative size/stride.
 * An empty extent (some n[i] == 0: nothing is read) sets *empty, and *last is then what the dims
 * outside the first empty one reach (executors step over those before finding nothing to do). */
static bool extent(int64_t offset, int nd, const int64_t *n, const int64_t *s, int64_t *last, bool *empty)
{
    int64_t x = offset;
    *empty = false;
    for (int i = 0; i < nd; i++) {
        if (n[i] < 0 || s[i] < 0)
            return false;
        *empty |= n[i] == 0;
        int64_t t;
        if (!*empty && (__builtin_mul_overflow(n[i] - 1, s[i], &t) || __builtin_add_overflow(x, t, &x)))
            return false;
    }
    *last = x;
    return true;
}

/* GEMM and attention operands: f32, or a half type (the CPU executor widens half buffers;
 * the device executors refuse such plans, runtime/half.h's rt_plan_half_library). */
#define LIB_FLOAT DT_COUNT

/* ref must name a buffer (or -1 when optional) of dtype dt (DT_VOID: any; LIB_FLOAT) whose elements
 * [ref.offset + 0, ref.offset + reach] exist. */
static bool check_ref(checker *c, const char *field, rt_plan_ref r, bool optional, ir_dtype dt, int nd,
                      const int64_t *n, const int64_t *s)
{
    if (r.buf == -1 && optional)
        return true;
    if (r.buf < 0 || r.buf >= c->p->n_bufs)
        return fail(c, "buffer reference out of range", field);
    const rt_plan_buffer *b = &c->p->bufs[r.buf];
    bool half_ok = dt == LIB_FLOAT && (b->dtype == DT_F16 || b->dtype == DT_BF16);
    if (dt != DT_VOID && b->dtype != (dt == LIB_FLOAT ? DT_F32 : dt) && !half_ok)
        return fail(c, "buffer of the wrong dtype", field);
    if (r.offset < 0 || r.offset > b->numel)
        return fail(c, "element offset outside its buffer", field);
    int64_t last;
    bool empty;
    if (!extent(r.offset, nd, n, s, &last, &empty))
        return fail(c, "negative or overflowing sizes or strides", field);
    /* an empty view reads nothing, but executors still step over its outer dims: those stay
     * within the buffer (its end included) */
    if (empty ? last > b->numel : last >= b->numel)
        return fail(c, "reaches past the end of its buffer", field);
    return true;
}

/* A kernel: a name, args that are buffer references, grid and work >= 0. */
static bool check_kernel(checker *c, const rt_plan_kernel *k, const char *what)
{
    if (!k->name || !k->name[0] || k->n_args < 0 || (k->n_args > 0 && !k->args) || k->grid0 < 0 || k->work < 0)
        return fail(c, "missing name, bad argument count, grid or work", what);
    for (int i = 0; i < k->n_args; i++)
        if (!check_ref(c, "kernel argument", k->args[i], false, DT_VOID, 0, NULL, NULL))
            return false;
    return true;
}

/* Is r one of kernel k's arguments? */
static bool ref_in(const rt_plan_kernel *k, rt_plan_ref r)
{
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].buf == r.buf && k->args[i].offset == r.offset)
            return true;
    return false;
}

/* A quantized B: codes and scales as plan.h says, shared by the batch, alpha 1, beta 0. */
static bool check_qgemm(checker *c, const rt_plan_gemm *g)
{
    int64_t rows = g->trans_b ? g->N : g->K, cols = g->trans_b ? g->K : g->N;
    if (g->qgroup <= 0 || g->K % g->qgroup || g->ldb != cols || (g->qbits == 4 && cols % 2) || g->alpha != 1 ||
        g->beta != 0)
        return fail(c, "quantized B: a group that does not divide K, unpacked or odd int4 rows, alpha or beta",
                    "gemm");
    for (int i = 0; i < g->nbatch; i++)
        if (g->stride_b[i] != 0)
            return fail(c, "quantized B not shared by the batch", "gemm");
    int64_t n[2] = {rows, g->qbits == 4 ? cols / 2 : cols}, s[2] = {n[1], 1};
    int64_t ng = g->K / g->qgroup, ns[2] = {g->trans_b ? g->N : ng, g->trans_b ? ng : g->N}, ss[2] = {ns[1], 1};
    return check_ref(c, "gemm B codes", g->b, false, g->qbits == 8 ? DT_I8 : DT_U8, 2, n, s) &&
           check_ref(c, "gemm B scales", g->b_scales, false, LIB_FLOAT, 2, ns, ss);
}

static bool check_gemm(checker *c, const rt_plan_gemm *g)
{
    if (g->nbatch < 0 || g->trans_a < 0 || g->trans_b < 0 || g->act < 0 || g->M < 0 || g->N < 0 || g->K < 0 ||
        g->qbits < 0)
        return fail(c, "bad batch count, transpose flag, activation, size or code width", "gemm");
    /* BLAS libraries take int sizes and leading dims */
    if (g->M > INT_MAX || g->N > INT_MAX || g->K > INT_MAX || g->lda > INT_MAX || g->ldb > INT_MAX || g->ldc > INT_MAX)
        return fail(c, "a size or leading dimension beyond int (BLAS takes int)", "gemm");
    /* A is M×K (stored K×M when transposed), B is K×N (N×K), C is M×N: dims (batch..., rows, cols) */
    int64_t n[RT_PLAN_MAX_BATCH + 2], s[RT_PLAN_MAX_BATCH + 2];
    int nb = g->nbatch;
    const int64_t *strides[3] = {g->stride_a, g->stride_b, g->stride_c};
    int64_t rows[3] = {g->trans_a ? g->K : g->M, g->trans_b ? g->N : g->K, g->M};
    int64_t cols[3] = {g->trans_a ? g->M : g->K, g->trans_b ? g->K : g->N, g->N};
    int64_t ld[3] = {g->lda, g->ldb, g->ldc};
    const rt_plan_ref refs[3] = {g->a, g->b, g->c};
    const char *names[3] = {"gemm A", "gemm B", "gemm C"};
    for (int i = 0; i < g->nbatch; i++)
        if (g->batch[i] > 1 && g->stride_c[i] == 0)
            return fail(c, "C written by every entry of a batch (stride 0)", "gemm");
    if (g->qbits && !check_qgemm(c, g))
        return false;
    for (int m = 0; m < 3; m++) {
        if (m == 1 && g->qbits)
            continue;
        if (cols[m] > 0 && ld[m] < cols[m])
            return fail(c, "leading dimension smaller than a row", names[m]);
        for (int i = 0; i < nb; i++) {
            n[i] = g->batch[i];
            s[i] = strides[m][i];
        }
        n[nb] = rows[m];
        s[nb] = ld[m];
        n[nb + 1] = cols[m];
        s[nb + 1] = 1;
        if (!check_ref(c, names[m], refs[m], false, LIB_FLOAT, nb + 2, n, s))
            return false;
    }
    int64_t one = 1;
    if (!check_ref(c, "gemm bias", g->bias, true, LIB_FLOAT, 1, &g->N, &one))
        return false;
    if (!g->epi.name)
        return g->act == RT_ACT_NONE || fail(c, "an activation without an epilogue kernel", "gemm");
    /* the epilogue kernel: f32 C and bias, in its args, over C's rows */
    int64_t c_rows = g->M, packed = g->M * g->N; /* C's extent was checked: M·N fits */
    bool contiguous = !g->ldc || g->ldc == g->N;
    for (int i = nb - 1; i >= 0; i--) {
        contiguous &= g->batch[i] == 1 || g->stride_c[i] == packed;
        if (__builtin_mul_overflow(packed, g->batch[i], &packed) || __builtin_mul_overflow(c_rows, g->batch[i], &c_rows))
            return fail(c, "a batch of C beyond 64-bit sizes", "gemm epilogue");
    }
    if (!check_kernel(c, &g->epi, "gemm epilogue"))
        return false;
    if (g->epi.grid0 != c_rows || !contiguous || !ref_in(&g->epi, g->c) ||
        (g->bias.buf >= 0 && !ref_in(&g->epi, g->bias)))
        return fail(c, "an epilogue kernel that is not over C (contiguous) and the bias", "gemm");
    return check_ref(c, "gemm C", g->c, false, DT_F32, 0, NULL, NULL) &&
           check_ref(c, "gemm bias", g->bias, true, DT_F32, 0, NULL, NULL);
}

/* The forward operands of an attention (out only when with_out). */
static bool check_attention_in(checker *c, const rt_plan_attention *a, bool with_out)
{
    /* a forward attention may be empty (no batch, heads, queries, keys or values: a slice of
     * nothing upstream; a row without keys is 0); its backward, which only training makes, not */
    int64_t least = with_out ? 0 : 1;
    if (a->B < least || a->H < least || a->G < 1 || a->T < least || a->S < least || a->D < 1 || a->E < least ||
        a->H % a->G != 0 || a->causal < 0 || !isfinite(a->scale) || a->scale == 0)
        return fail(c, "bad sizes, head groups, causal flag or scale", "attention");
    /* rows of q, k, v and out are separate (their row stride at least a row): the executors
     * hand them to BLAS as leading dimensions, which must cover a row */
    if (a->q_stride[2] < a->D || a->k_stride[2] < a->D || a->v_stride[2] < a->E ||
        (with_out && a->out_stride[2] < a->E) || a->q_stride[2] > INT_MAX || a->k_stride[2] > INT_MAX ||
        a->v_stride[2] > INT_MAX || a->out_stride[2] > INT_MAX)
        return fail(c, "a row stride smaller than a row, or beyond int", "attention");
    int64_t q[4] = {a->B, a->H, a->T, a->D}, k[4] = {a->B, a->G, a->S, a->D}, v[4] = {a->B, a->G, a->S, a->E},
            o[4] = {a->B, a->H, a->T, a->E}, m[4] = {a->B, a->H, a->T, a->S};
    int64_t qs[4] = {a->q_stride[0], a->q_stride[1], a->q_stride[2], 1};
    int64_t ks[4] = {a->k_stride[0], a->k_stride[1], a->k_stride[2], 1};
    int64_t vs[4] = {a->v_stride[0], a->v_stride[1], a->v_stride[2], 1};
    int64_t os[4] = {a->out_stride[0], a->out_stride[1], a->out_stride[2], 1};
    ir_dtype dt = with_out ? LIB_FLOAT : DT_F32; /* the forward step may be half; its backward not */
    return check_ref(c, "attention q", a->q, false, dt, 4, q, qs) &&
           check_ref(c, "attention k", a->k, false, dt, 4, k, ks) &&
           check_ref(c, "attention v", a->v, false, dt, 4, v, vs) &&
           (!with_out || check_ref(c, "attention out", a->out, false, dt, 4, o, os)) &&
           check_ref(c, "attention mask", a->mask, true, dt, 4, m, a->mask_stride);
}

/* n contiguous bytes from r (none at all from an empty buffer: a copy of an empty output). */
static bool check_bytes(checker *c, const char *field, rt_plan_ref r, int64_t bytes)
{
    if (bytes < 0)
        return fail(c, "negative size", field);
    int64_t none = 0, one = 1;
    if (!check_ref(c, field, r, false, DT_VOID, bytes ? 0 : 1, &none, &one))
        return false;
    const rt_plan_buffer *b = &c->p->bufs[r.buf];
    int64_t size = ir_dtype_size(b->dtype);
    if (b->numel - r.offset < bytes / size + (bytes % size != 0))
        return fail(c, "reaches past the end of its buffer", field);
    return true;
}

static bool check_int_ids(checker *c, const char *field, rt_plan_ref r, ir_dtype dt, int64_t n)
{
    int64_t one = 1;
    if (!check_ref(c, field, r, false, DT_VOID, 1, &n, &one))
        return false;
    if (!ir_dtype_is_int(c->p->bufs[r.buf].dtype) || c->p->bufs[r.buf].dtype != dt)
        return fail(c, "not an integer buffer of the declared dtype", field);
    return true;
}

static bool check_write_rows(checker *c, const rt_plan_write_rows *w)
{
    int64_t src, dst;
    if (w->outer < 0 || w->rows_dst < 0 || w->rows_src < 0 || w->row_bytes < 0 || w->rows_src > w->rows_dst ||
        __builtin_mul_overflow(w->outer, w->rows_src, &src) || __builtin_mul_overflow(src, w->row_bytes, &src) ||
        __builtin_mul_overflow(w->outer, w->rows_dst, &dst) || __builtin_mul_overflow(dst, w->row_bytes, &dst))
        return fail(c, "bad block or row counts", "write_rows");
    return check_bytes(c, "write_rows src", w->src, src) && check_bytes(c, "write_rows dst", w->dst, dst) &&
           check_int_ids(c, "write_rows pos", w->pos, w->pos_dtype, 1);
}

static bool check_attention_grad(checker *c, const rt_plan_attention_grad *g)
{
    const rt_plan_attention *a = &g->fwd;
    if (!check_attention_in(c, a, false))
        return false;
    int64_t dy[4] = {a->B, a->H, a->T, a->E}, dys[4] = {g->dy_stride[0], g->dy_stride[1], g->dy_stride[2], 1};
    if (g->dy_stride[2] < a->E || g->dy_stride[2] > INT_MAX)
        return fail(c, "a row stride smaller than a row, or beyond int", "attention_grad dy");
    int64_t one = 1;
    const rt_plan_ref refs[4] = {g->dq, g->dk, g->dv, g->dmask};
    const char *names[4] = {"attention_grad dq", "attention_grad dk", "attention_grad dv", "attention_grad dmask"};
    /* the contiguous results' sizes, products checked */
    const int64_t dims[4][4] = {{a->B, a->H, a->T, a->D}, {a->B, a->G, a->S, a->D}, {a->B, a->G, a->S, a->E},
                                {a->B, a->H, a->T, a->S}};
    if (!check_ref(c, "attention_grad dy", g->dy, false, DT_F32, 4, dy, dys))
        return false;
    for (int i = 0; i < 4; i++) {
        int64_t n = 1;
        for (int k = 0; k < 4; k++)
            if (__builtin_mul_overflow(n, dims[i][k], &n))
                return fail(c, "sizes whose product overflows", names[i]);
        if (!check_ref(c, names[i], refs[i], true, DT_F32, 1, &n, &one))
            return false;
    }
    return true;
}

static bool check_scatter(checker *c, const rt_plan_scatter *s)
{
    if (s->n < 0 || s->width < 0 || s->rows < 0 || s->src_stride < 0)
        return fail(c, "bad counts or stride", "scatter_add");
    int64_t sn[2] = {s->n, s->width}, ss[2] = {s->src_stride, 1};
    int64_t dn[2] = {s->rows, s->width}, ds[2] = {s->width, 1};
    return check_int_ids(c, "scatter_add ids", s->ids, s->ids_dtype, s->n) &&
           check_ref(c, "scatter_add src", s->src, false, DT_F32, 2, sn, ss) &&
           check_ref(c, "scatter_add dst", s->dst, false, DT_F32, 2, dn, ds);
}

static bool check_sum_rows(checker *c, const rt_plan_sum_rows *s)
{
    if (s->rows < 0 || s->width < 0 || s->src_stride < 0)
        return fail(c, "bad counts or stride", "sum_rows");
    int64_t sn[2] = {s->rows, s->width}, ss[2] = {s->src_stride, 1}, one = 1;
    return check_ref(c, "sum_rows src", s->src, false, DT_F32, 2, sn, ss) &&
           check_ref(c, "sum_rows dst", s->dst, false, DT_F32, 1, &s->width, &one);
}

/* A library step's kernels (plan.h) and the extra buffers they use: only library kinds have
 * kernels; an attention's lse and an attention_grad's lse and delta are f32 [B·H·T]. */
static bool check_lib(checker *c, const rt_plan_step *st)
{
    bool library = st->kind == RT_STEP_ATTENTION || st->kind == RT_STEP_ATTENTION_GRAD ||
                   st->kind == RT_STEP_SUM_ROWS || st->kind == RT_STEP_SCATTER_ADD || st->kind == RT_STEP_WRITE_ROWS;
    bool qgemm = st->kind == RT_STEP_GEMM && st->gemm.qbits; /* its kernel: codegen/library.c */
    if (st->n_lib < 0 || st->n_lib > (qgemm ? 1 : RT_PLAN_MAX_LIB) || (!library && !qgemm && st->n_lib > 0))
        return fail(c, "library kernels on a step that is not a library step", NULL);
    bool empty = st->gemm.M == 0 || st->gemm.N == 0;
    for (int i = 0; qgemm && i < st->gemm.nbatch && i < RT_PLAN_MAX_BATCH; i++)
        empty |= st->gemm.batch[i] == 0;
    if (qgemm && st->n_lib != !empty) /* the devices run it: one unless C is empty */
        return fail(c, "a GEMM over quantized codes without its kernel (or an empty one with one)", "gemm");
    for (int i = 0; i < st->n_lib; i++)
        if (!check_kernel(c, &st->lib[i], "library kernel"))
            return false;
    const rt_plan_attention *a = st->kind == RT_STEP_ATTENTION        ? &st->attn
                                 : st->kind == RT_STEP_ATTENTION_GRAD ? &st->agrad.fwd
                                                                      : NULL;
    if (!a)
        return true;
    int64_t rows = a->B * a->H * a->T, one = 1; /* sizes checked by check_attention_in */
    bool grad = st->kind == RT_STEP_ATTENTION_GRAD;
    return check_ref(c, "attention lse", a->lse, !grad, DT_F32, 1, &rows, &one) &&
           (!grad || check_ref(c, "attention_grad delta", st->agrad.delta, false, DT_F32, 1, &rows, &one));
}

static bool check_step(checker *c, const rt_plan_step *st)
{
    switch (st->kind) {
    case RT_STEP_KERNEL: return check_kernel(c, &st->kernel, "kernel");
    case RT_STEP_GEMM: return check_gemm(c, &st->gemm);
    case RT_STEP_ATTENTION: return check_attention_in(c, &st->attn, true);
    case RT_STEP_WRITE_ROWS: return check_write_rows(c, &st->rows);
    case RT_STEP_ATTENTION_GRAD: return check_attention_grad(c, &st->agrad);
    case RT_STEP_SCATTER_ADD: return check_scatter(c, &st->scatter);
    case RT_STEP_SUM_ROWS: return check_sum_rows(c, &st->sum_rows);
    case RT_STEP_COPY:
        return check_bytes(c, "copy src", st->copy.src, st->copy.bytes) &&
               check_bytes(c, "copy dst", st->copy.dst, st->copy.bytes);
    case RT_STEP_CHECK_IDS: {
        const rt_plan_check *k = &st->check;
        if (!k->what || k->numel < 0 || k->lo > k->hi)
            return fail(c, "missing description, bad count or range", "id check");
        int64_t one = 1;
        if (!check_ref(c, "id check", k->ids, false, DT_VOID, 1, &k->numel, &one))
            return false;
        if (!ir_dtype_is_int(c->p->bufs[k->ids.buf].dtype))
            return fail(c, "ids are not integers", "id check");
        return true;
    }
    }
    return fail(c, "unknown step kind", NULL);
}

bool rt_plan_validate(const rt_plan *p, const char *what, ir_diag *d)
{
    if (p->arena_bytes < 0) {
        ir_diag_error(d, -1, 0, 0, "%s: invalid plan: negative arena size", what);
        return false;
    }
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        int64_t bytes;
        const char *bad = NULL;
        if (!b->name)
            bad = "has no name";
        else if (b->dtype <= DT_VOID || b->dtype >= DT_COUNT || (int)b->kind < 0 || b->kind > RT_BUF_CONSTANT)
            bad = "has an unknown dtype or kind";
        else if (b->kind == RT_BUF_CONSTANT) /* lowering makes none, so no executor runs one */
            bad = "is a constant, which no executor takes";
        else if (b->numel < 0 || __builtin_mul_overflow(b->numel, (int64_t)ir_dtype_size(b->dtype), &bytes))
            bad = "has a bad element count";
        else if (b->kind == RT_BUF_ACTIVATION &&
                 (b->offset < 0 || b->offset % 64 != 0 || bytes > p->arena_bytes - b->offset))
            bad = "lies outside the arena";
        else if (b->kind != RT_BUF_ACTIVATION && !b->name[0])
            bad = "has an empty external name";
        for (int j = 0; !bad && j < i && b->kind != RT_BUF_ACTIVATION; j++) {
            const rt_plan_buffer *o = &p->bufs[j];
            bool both_params = b->kind == RT_BUF_PARAM && o->kind == RT_BUF_PARAM;
            bool both_io = b->kind != RT_BUF_PARAM && o->kind != RT_BUF_PARAM && o->kind != RT_BUF_ACTIVATION &&
                           b->kind == o->kind;
            if ((both_params || both_io) && strcmp(b->name, o->name) == 0)
                bad = "has the name of an earlier buffer";
        }
        if (bad) {
            ir_diag_error(d, -1, 0, 0, "%s: invalid plan: buffer %d ('%s') %s", what, i, b->name ? b->name : "", bad);
            return false;
        }
    }
    checker c = {p, what, 0, d};
    for (int s = 0; s < p->n_steps; s++) {
        c.step = s;
        if (!check_step(&c, &p->steps[s]) || !check_lib(&c, &p->steps[s]))
            return false;
    }
    return true;
}
