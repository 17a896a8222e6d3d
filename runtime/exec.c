/* exec.c — the plan walker (exec.h): buffers, binding, the step loop and its dispatch over a
 * backend's operations, checks, profiling. Nothing here knows a device: the CPU, CUDA and
 * OpenCL executors are this file plus their rt_backend_ops.
 */
#include "runtime/exec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/trace.h"

struct rt_walker {
    const rt_plan *plan;
    const rt_backend_ops *ops;
    void *dev;
    bool lib;             /* library steps run their kernels, natives or not */
    bool async, profile;
    void *arena;
    rt_mem *base;         /* per buffer: where it lives (.mem NULL: param/input not bound yet) */
    void **own;           /* per buffer: the walker's own allocation (params, inputs, outputs) */
    bool *ext;            /* per buffer: bound to memory someone else owns */
    const void **user;    /* per buffer: the caller's host memory bound to it (param, input) */
    bool *host_checked;   /* per buffer: its ids/positions were checked in host memory at bind */
    void **host;          /* per output: host copy (device backends) */
    bool *fresh;          /* per output: host copy read since the last run */
    bool *kernels;        /* per step: it runs its plan kernels (not the backend's routine) */
    void *(*kh)[RT_PLAN_MAX_LIB]; /* per step, per kernel it launches: the backend's handle */
    void **gh;            /* per GEMM step: the backend's prepared GEMM */
    bool *bad;            /* per check step: its host-checked value was out of range ... */
    int64_t *bad_val;     /* ... this one */
    rt_mem *args;         /* scratch: the widest kernel's arguments */
    int max_args;
    void **ev;            /* with profile: two events per step */
    double ms[RT_STEP_KIND_COUNT], ms_elem, ms_red;
    double *step_ms;      /* LOOM_PROFILE_STEPS=N: per step, the N slowest printed at free */
    rt_trace *trace;      /* with profile under --profile: each step a slice (trace.h), on the
                             host track (a host backend) or the device's */
    int *trace_desc;      /* per step: its interned description, -1 until first traced */
    void (*on_step)(void *ctx, int step); /* rt_walker_set_step_hook */
    void *on_step_ctx;
};

static size_t buf_bytes(const rt_plan_buffer *b) { return (size_t)b->numel * (size_t)ir_dtype_size(b->dtype); }

const rt_plan *rt_walker_plan(const rt_walker *w) { return w->plan; }
void *rt_walker_kernel(const rt_walker *w, int s, int x) { return w->kh[s][x]; }
rt_mem rt_walker_arena(const rt_walker *w) { return (rt_mem){w->arena, 0}; }

rt_mem rt_walker_mem(const rt_walker *w, rt_plan_ref r)
{
    if (r.buf < 0)
        return (rt_mem){NULL, 0};
    return rt_mem_plus(w->base[r.buf], (size_t)r.offset * (size_t)ir_dtype_size(w->plan->bufs[r.buf].dtype));
}

/* ---- setup ------------------------------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n + 1, size);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Whether GEMM step s runs as kernels rather than through ops->gemm. */
static bool gemm_as_kernels(const rt_walker *w, int s)
{
    return w->kernels[s] || (w->plan->steps[s].gemm.qbits && !w->ops->gemm_codes);
}

rt_walker *rt_walker_new(const rt_plan *p, const rt_backend_ops *ops, void *dev, bool lib_kernels, ir_diag *d)
{
    rt_walker *w = xcalloc(1, sizeof *w);
    *w = (rt_walker){.plan = p, .ops = ops, .dev = dev, .lib = lib_kernels};
    size_t nb = (size_t)p->n_bufs, ns = (size_t)p->n_steps;
    w->base = xcalloc(nb, sizeof *w->base);
    w->own = xcalloc(nb, sizeof *w->own);
    w->ext = xcalloc(nb, sizeof *w->ext);
    w->user = xcalloc(nb, sizeof *w->user);
    w->host_checked = xcalloc(nb, sizeof *w->host_checked);
    w->host = xcalloc(nb, sizeof *w->host);
    w->fresh = xcalloc(nb, sizeof *w->fresh);
    w->kernels = xcalloc(ns, sizeof *w->kernels);
    w->kh = xcalloc(ns, sizeof *w->kh);
    w->gh = xcalloc(ns, sizeof *w->gh);
    w->bad = xcalloc(ns, sizeof *w->bad);
    w->bad_val = xcalloc(ns, sizeof *w->bad_val);
    w->arena = ops->alloc(dev, p->arena_bytes ? (size_t)p->arena_bytes : 1, d);
    if (!w->arena) {
        ir_diag_note(d, -1, 0, 0, "%s: allocating the %" PRId64 "-byte activation arena", ops->name, p->arena_bytes);
        rt_walker_free(w);
        return NULL;
    }
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if (b->kind == RT_BUF_CONSTANT)
            ir_unreachable("exec: constant buffers are not produced by lowering yet");
        if (b->kind == RT_BUF_ACTIVATION)
            w->base[i] = (rt_mem){w->arena, (size_t)b->offset};
        else if (b->kind == RT_BUF_OUTPUT && ops->host) { /* readable before any run, as zeros */
            w->own[i] = ops->alloc(dev, buf_bytes(b) ? buf_bytes(b) : 1, d);
            if (!w->own[i]) {
                ir_diag_note(d, -1, 0, 0, "%s: allocating output '%s'", ops->name, b->name);
                rt_walker_free(w);
                return NULL;
            }
            w->base[i] = (rt_mem){w->own[i], 0};
        }
    }
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        bool own = st->kind == RT_STEP_GEMM ? !st->gemm.qbits || ops->gemm_codes : ops->native[st->kind] != NULL;
        w->kernels[s] = st->n_lib > 0 && (w->lib || !own);
        const rt_plan_kernel *ks[RT_PLAN_MAX_LIB + 1];
        int nk = st->kind == RT_STEP_KERNEL || w->kernels[s] ? rt_plan_step_kernels(st, ks) : 0;
        if (st->kind == RT_STEP_GEMM && !w->kernels[s] && st->gemm.epi.name) /* the epilogue alone */
            ks[nk++] = &st->gemm.epi;
        for (int x = 0; x < nk; x++) {
            w->kh[s][x] = ops->kernel(dev, ks[x], d);
            if (!w->kh[s][x]) {
                rt_walker_free(w);
                return NULL;
            }
            if (ks[x]->n_args > w->max_args)
                w->max_args = ks[x]->n_args;
        }
        if (st->kind == RT_STEP_GEMM && ops->gemm_prepare && !gemm_as_kernels(w, s)) {
            w->gh[s] = ops->gemm_prepare(dev, &st->gemm, d);
            if (!w->gh[s]) {
                ir_diag_note(d, -1, 0, 0, "%s: preparing the GEMM of step %d", ops->name, s);
                rt_walker_free(w);
                return NULL;
            }
        }
    }
    w->args = xcalloc((size_t)w->max_args, sizeof *w->args);
    return w;
}

/* LOOM_PROFILE_STEPS=N: the N slowest steps of the profiled runs, for finding hot spots. */
static void print_slowest_steps(const rt_walker *w)
{
    const rt_plan *p = w->plan;
    int n = atoi(getenv("LOOM_PROFILE_STEPS"));
    bool *shown = xcalloc((size_t)p->n_steps, sizeof *shown);
    static const char *kinds[RT_STEP_KIND_COUNT] = {"kernel", "gemm", "attention", "copy", "check_ids",
                                                    "write_rows", "attention_grad", "scatter_add", "sum_rows"};
    for (int k = 0; k < n && k < p->n_steps; k++) {
        int best = -1;
        for (int s = 0; s < p->n_steps; s++)
            if (!shown[s] && (best < 0 || w->step_ms[s] > w->step_ms[best]))
                best = s;
        shown[best] = true;
        const rt_plan_step *st = &p->steps[best];
        fprintf(stderr, "step %4d %-14s %8.3f ms", best, kinds[st->kind], w->step_ms[best]);
        if (st->kind == RT_STEP_KERNEL)
            fprintf(stderr, "  %s grid %" PRId64, st->kernel.name, st->kernel.grid0);
        if (st->kind == RT_STEP_GEMM)
            fprintf(stderr, "  M %" PRId64 " N %" PRId64 " K %" PRId64 " batch %d ta %d tb %d", st->gemm.M, st->gemm.N,
                    st->gemm.K, st->gemm.nbatch, st->gemm.trans_a, st->gemm.trans_b);
        fprintf(stderr, "\n");
    }
    free(shown);
}

void rt_walker_free(rt_walker *w)
{
    if (!w)
        return;
    const rt_plan *p = w->plan;
    const rt_backend_ops *ops = w->ops;
    if (w->step_ms) {
        print_slowest_steps(w);
        free(w->step_ms);
    }
    ir_diag quiet; /* nothing may still use what is freed below; an error was reported before */
    ir_diag_init(&quiet);
    ops->sync(w->dev, &quiet);
    ir_diag_free(&quiet);
    for (int s = 0; s < p->n_steps; s++) {
        for (int x = 0; x < RT_PLAN_MAX_LIB; x++)
            if (w->kh[s][x])
                ops->kernel_free(w->dev, w->kh[s][x]);
        if (w->gh[s])
            ops->gemm_free(w->dev, w->gh[s]);
    }
    for (int i = 0; w->ev && i < 2 * p->n_steps; i++)
        if (w->ev[i])
            ops->event_free(w->dev, w->ev[i]);
    for (int i = 0; i < p->n_bufs; i++) {
        if (w->own[i])
            ops->free(w->dev, w->own[i]);
        free(w->host[i]);
    }
    if (w->arena)
        ops->free(w->dev, w->arena);
    free(w->ev);
    free(w->trace_desc);
    free(w->base);
    free(w->own);
    free(w->ext);
    free(w->user);
    free(w->host_checked);
    free(w->host);
    free(w->fresh);
    free(w->kernels);
    free(w->kh);
    free(w->gh);
    free(w->bad);
    free(w->bad_val);
    free(w->args);
    free(w);
}

/* ---- binding ----------------------------------------------------------------------------------- */

static int64_t int_at(ir_dtype dt, const void *p, int64_t i)
{
    return dt == DT_I32 ? ((const int32_t *)p)[i] : dt == DT_I64 ? ((const int64_t *)p)[i] : ((const uint8_t *)p)[i];
}

/* The first id of c's n out of range in ids (host memory), or false. */
static bool first_bad_id(const rt_plan_check *c, ir_dtype dt, const void *ids, int64_t *bad)
{
    for (int64_t i = 0; i < c->numel; i++) {
        int64_t x = int_at(dt, ids, i);
        if (x < 0 && c->allow_negative)
            continue;
        if (x < c->lo || x >= c->hi) {
            *bad = x;
            return true;
        }
    }
    return false;
}

static bool position_ok(const rt_plan_write_rows *r, int64_t p)
{
    return p >= 0 && r->rows_src <= r->rows_dst && p <= r->rows_dst - r->rows_src; /* no p + rows: p may be huge */
}

/* Device backends: the checks of steps that read buffer b, on the host data just bound. */
static void check_at_bind(rt_walker *w, int b, const void *data)
{
    const rt_plan *p = w->plan;
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        if (st->kind == RT_STEP_CHECK_IDS && st->check.ids.buf == b) {
            const char *ids = (const char *)data + st->check.ids.offset * ir_dtype_size(p->bufs[b].dtype);
            w->bad[s] = first_bad_id(&st->check, p->bufs[b].dtype, ids, &w->bad_val[s]);
        } else if (st->kind == RT_STEP_WRITE_ROWS && st->rows.pos.buf == b) {
            int64_t pos = int_at(st->rows.pos_dtype, data, st->rows.pos.offset);
            w->bad[s] = !position_ok(&st->rows, pos);
            w->bad_val[s] = pos;
        }
    }
    w->host_checked[b] = true;
}

static bool bind(rt_walker *w, const char *name, const void *data, bool async, ir_diag *d);

bool rt_walker_bind(rt_walker *w, const char *name, const void *data, ir_diag *d) { return bind(w, name, data, false, d); }

bool rt_walker_bind_async(rt_walker *w, const char *name, const void *data, ir_diag *d)
{
    return bind(w, name, data, true, d);
}

static bool bind(rt_walker *w, const char *name, const void *data, bool async, ir_diag *d)
{
    const rt_plan *p = w->plan;
    const rt_backend_ops *ops = w->ops;
    bool found = false;
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if ((b->kind != RT_BUF_PARAM && b->kind != RT_BUF_INPUT) || strcmp(b->name, name) != 0)
            continue;
        found = true;
        w->ext[i] = false;
        w->user[i] = data;
        if (ops->host) {
            w->base[i] = (rt_mem){(void *)data, 0};
            continue;
        }
        if (!w->own[i] && !(w->own[i] = ops->alloc(w->dev, buf_bytes(b) ? buf_bytes(b) : 1, d))) {
            ir_diag_note(d, -1, 0, 0, "%s: allocating %zu bytes for '%s'", ops->name, buf_bytes(b), b->name);
            return false;
        }
        w->base[i] = (rt_mem){w->own[i], 0};
        bool (*write)(void *, rt_mem, const void *, size_t, ir_diag *) = async && ops->write_async ? ops->write_async : ops->write;
        if (!write(w->dev, w->base[i], data, buf_bytes(b), d))
            return false;
        check_at_bind(w, i, data);
    }
    if (!found)
        ir_diag_error(d, -1, 0, 0, "%s: the plan has no parameter or input '%s'", ops->name, name);
    return found;
}

bool rt_walker_bind_mem(rt_walker *w, const char *name, bool output, rt_mem m, ir_diag *d)
{
    const rt_plan *p = w->plan;
    bool found = false;
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        bool kind_ok = output ? b->kind == RT_BUF_OUTPUT : b->kind == RT_BUF_PARAM || b->kind == RT_BUF_INPUT;
        if (!kind_ok || strcmp(b->name, name) != 0)
            continue;
        found = true;
        if (w->own[i] && !w->ops->host) { /* device memory of its own is no longer needed */
            w->ops->free(w->dev, w->own[i]);
            w->own[i] = NULL;
        }
        w->base[i] = m;
        w->ext[i] = true;
        w->user[i] = NULL;
        w->host_checked[i] = false;
        w->fresh[i] = false;
    }
    if (!found)
        ir_diag_error(d, -1, 0, 0, "%s: the plan has no %s '%s'", w->ops->name, output ? "output" : "parameter or input",
                      name);
    return found;
}

/* A device backend's output buffer, allocated on first need (a bound one needs none). */
static bool output_ready(rt_walker *w, int i, ir_diag *d)
{
    if (w->base[i].mem)
        return true;
    const rt_plan_buffer *b = &w->plan->bufs[i];
    w->own[i] = w->ops->alloc(w->dev, buf_bytes(b) ? buf_bytes(b) : 1, d);
    if (!w->own[i]) {
        ir_diag_note(d, -1, 0, 0, "%s: allocating output '%s'", w->ops->name, b->name);
        return false;
    }
    w->base[i] = (rt_mem){w->own[i], 0};
    return true;
}

static int output_index(const rt_walker *w, const char *name)
{
    for (int i = 0; i < w->plan->n_bufs; i++)
        if (w->plan->bufs[i].kind == RT_BUF_OUTPUT && strcmp(w->plan->bufs[i].name, name) == 0)
            return i;
    return -1;
}

rt_mem rt_walker_output_mem(rt_walker *w, const char *name, ir_diag *d)
{
    int i = output_index(w, name);
    if (i < 0 || !output_ready(w, i, d))
        return (rt_mem){NULL, 0};
    return w->base[i];
}

void *rt_walker_output(rt_walker *w, const char *name, ir_diag *d)
{
    int i = output_index(w, name);
    if (i < 0 || !output_ready(w, i, d))
        return NULL;
    if (w->ops->host && !w->ext[i])
        return w->base[i].mem;
    const rt_plan_buffer *b = &w->plan->bufs[i];
    if (!w->host[i])
        w->host[i] = xcalloc(buf_bytes(b), 1);
    if (!w->fresh[i]) {
        if (!w->ops->read(w->dev, w->base[i], w->host[i], buf_bytes(b), d))
            return NULL;
        w->fresh[i] = true;
    }
    return w->host[i];
}

/* ---- steps ------------------------------------------------------------------------------------- */

/* Launches plan kernel k (the x-th of step s) over its arguments' memory. */
static bool launch(rt_walker *w, int s, int x, const rt_plan_kernel *k, ir_diag *d)
{
    for (int a = 0; a < k->n_args; a++)
        w->args[a] = rt_walker_mem(w, k->args[a]);
    return w->ops->launch(w->dev, w->kh[s][x], k, w->args, d);
}

/* The integer at element i of ref r, read back from the device. */
static bool read_ints(rt_walker *w, rt_plan_ref r, int64_t n, void **out, ir_diag *d)
{
    size_t es = (size_t)ir_dtype_size(w->plan->bufs[r.buf].dtype);
    *out = xcalloc((size_t)n, es);
    return w->ops->read(w->dev, rt_walker_mem(w, r), *out, (size_t)n * es, d);
}

static bool check_ids(rt_walker *w, int s, const rt_plan_check *c, ir_diag *d)
{
    int64_t bad = 0;
    bool is_bad;
    if (w->host_checked[c->ids.buf]) {
        is_bad = w->bad[s];
        bad = w->bad_val[s];
    } else {
        void *ids = NULL;
        bool ok = read_ints(w, c->ids, c->numel, &ids, d);
        is_bad = ok && first_bad_id(c, w->plan->bufs[c->ids.buf].dtype, ids, &bad);
        free(ids);
        if (!ok)
            return false;
    }
    if (is_bad)
        ir_diag_error(d, -1, 0, 0, "%s: id %" PRId64 " is outside [%" PRId64 ", %" PRId64 ")", c->what, bad, c->lo, c->hi);
    return !is_bad;
}

/* cache_write: the position checked (where the host bound it, at bind), the step's kernel; an
 * input destination the caller bound in host memory is read back into it (on a host backend
 * it is that memory), as the run updates it (plan.h). */
static bool write_rows(rt_walker *w, int s, const rt_plan_write_rows *r, ir_diag *d)
{
    int64_t pos;
    bool bad;
    if (w->host_checked[r->pos.buf]) {
        bad = w->bad[s];
        pos = w->bad_val[s];
    } else {
        void *p = NULL;
        bool ok = read_ints(w, r->pos, 1, &p, d);
        pos = ok ? int_at(r->pos_dtype, p, 0) : 0;
        free(p);
        if (!ok)
            return false;
        bad = !position_ok(r, pos);
    }
    if (bad) {
        ir_diag_error(d, -1, 0, 0, "cache_write: position %" PRId64 " with %" PRId64 " rows is outside the cache of %" PRId64,
                      pos, r->rows_src, r->rows_dst);
        return false;
    }
    const rt_plan_step *st = &w->plan->steps[s];
    for (int x = 0; x < st->n_lib; x++)
        if (!launch(w, s, x, &st->lib[x], d))
            return false;
    const rt_plan_buffer *db = &w->plan->bufs[r->dst.buf];
    if (!w->ops->host && db->kind == RT_BUF_INPUT && w->user[r->dst.buf])
        return w->ops->read(w->dev, w->base[r->dst.buf], (void *)w->user[r->dst.buf], buf_bytes(db), d);
    return true;
}

/* A GEMM step run as its library kernel (a quantized B where the backend's GEMM takes f32
 * only, or the op suite's kernels), then its epilogue kernel; none when the GEMM is empty. */
static bool gemm_kernels(rt_walker *w, int s, ir_diag *d)
{
    const rt_plan_step *st = &w->plan->steps[s];
    int x = st->gemm.epi.name ? 1 : 0; /* kh[s]: the epilogue first (rt_plan_step_kernels) */
    for (int i = 0; i < st->n_lib; i++)
        if (!launch(w, s, x + i, &st->lib[i], d))
            return false;
    return !x || !st->n_lib || launch(w, s, 0, &st->gemm.epi, d);
}

static bool run_step(rt_walker *w, int s, ir_diag *d)
{
    const rt_plan_step *st = &w->plan->steps[s];
    const rt_backend_ops *ops = w->ops;
    if (ops->native[st->kind] && !w->kernels[s])
        return ops->native[st->kind](w->dev, w, s, d);
    switch (st->kind) {
    case RT_STEP_KERNEL: return launch(w, s, 0, &st->kernel, d);
    case RT_STEP_GEMM: {
        if (gemm_as_kernels(w, s))
            return gemm_kernels(w, s, d);
        const rt_plan_gemm *g = &st->gemm;
        rt_mem m[4] = {rt_walker_mem(w, g->a), rt_walker_mem(w, g->b), rt_walker_mem(w, g->c), rt_walker_mem(w, g->bias)};
        if (g->epi.name)
            for (int a = 0; a < g->epi.n_args; a++)
                w->args[a] = rt_walker_mem(w, g->epi.args[a]);
        return ops->gemm(w->dev, w->gh[s], g, m, g->epi.name ? w->kh[s][0] : NULL, w->args, d);
    }
    case RT_STEP_COPY:
        return ops->copy(w->dev, rt_walker_mem(w, st->copy.dst), rt_walker_mem(w, st->copy.src), (size_t)st->copy.bytes, d);
    case RT_STEP_CHECK_IDS: return check_ids(w, s, &st->check, d);
    case RT_STEP_WRITE_ROWS: return write_rows(w, s, &st->rows, d);
    case RT_STEP_ATTENTION:
    case RT_STEP_ATTENTION_GRAD:
    case RT_STEP_SCATTER_ADD:
    case RT_STEP_SUM_ROWS:
        for (int x = 0; x < st->n_lib; x++)
            if (!launch(w, s, x, &st->lib[x], d))
                return false;
        return true;
    }
    return true;
}

static const char *kind_name(rt_step_kind k)
{
    static const char *const names[RT_STEP_KIND_COUNT] = {"kernel", "gemm", "attention", "copy", "id check",
                                                          "cache write", "attention gradient", "scatter-add",
                                                          "sum over rows"};
    return (unsigned)k < RT_STEP_KIND_COUNT ? names[k] : "?";
}

bool rt_walker_run(rt_walker *w, ir_diag *d)
{
    const rt_plan *p = w->plan;
    const rt_backend_ops *ops = w->ops;
    bool ok = true;
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if ((b->kind == RT_BUF_PARAM || b->kind == RT_BUF_INPUT) && !w->base[i].mem) {
            ir_diag_error(d, -1, 0, 0, "%s: %s '%s' is not bound", ops->name, b->kind == RT_BUF_PARAM ? "parameter" : "input",
                          b->name);
            ok = false;
        }
        if (b->kind == RT_BUF_OUTPUT)
            ok = ok && output_ready(w, i, d);
    }
    if (!ok)
        return false;
    if (w->profile && !w->ev) {
        w->ev = xcalloc((size_t)2 * p->n_steps, sizeof *w->ev);
        for (int i = 0; i < 2 * p->n_steps; i++)
            if (!(w->ev[i] = ops->event_new(w->dev)))
                ir_unreachable("exec: cannot create a timing event");
    }
    for (int s = 0; ok && s < p->n_steps; s++) {
        ok = (!w->profile || ops->event_record(w->dev, w->ev[2 * s], d)) && run_step(w, s, d) &&
             (!w->profile || ops->event_record(w->dev, w->ev[2 * s + 1], d));
        if (ok && w->on_step)
            w->on_step(w->on_step_ctx, s);
        if (!ok)
            ir_diag_note(d, -1, 0, 0, "in step %d (%s) of the plan%s%s", s, kind_name(p->steps[s].kind),
                         ops->where ? " " : "", ops->where ? ops->where(w->dev) : "");
    }
    if (ok && (!w->async || w->profile))
        ok = ops->sync(w->dev, d);
    /* the queue has just drained: the last event is now on the host clock, and every step is
     * placed by its events' times before that one */
    double synced = rt_now_ms();
    for (int s = 0; ok && w->profile && s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        double ms = ops->event_ms(w->dev, w->ev[2 * s], w->ev[2 * s + 1]);
        if (w->trace) {
            double to_end = ops->event_ms(w->dev, w->ev[2 * s + 1], w->ev[2 * p->n_steps - 1]);
            if (w->trace_desc[s] < 0)
                w->trace_desc[s] = rt_trace_plan_step(w->trace, p, s);
            rt_trace_slice(w->trace, ops->host ? RT_TRACE_HOST : RT_TRACE_DEVICE, w->trace_desc[s], synced - to_end - ms,
                           synced - to_end);
        }
        w->ms[st->kind] += ms;
        if (st->kind == RT_STEP_KERNEL)
            *(st->kernel.loops ? &w->ms_red : &w->ms_elem) += ms;
        if (w->step_ms)
            w->step_ms[s] += ms;
    }
    for (int i = 0; i < p->n_bufs; i++)
        w->fresh[i] = false;
    return ok;
}

void rt_walker_set_async(rt_walker *w, bool async) { w->async = async; }

void rt_walker_set_step_hook(rt_walker *w, void (*fn)(void *ctx, int step), void *ctx)
{
    w->on_step = fn;
    w->on_step_ctx = ctx;
}

void rt_walker_profile(rt_walker *w, bool on)
{
    w->profile = on;
    w->trace = on ? rt_trace_active() : NULL;
    if (w->trace && !w->trace_desc) {
        w->trace_desc = xcalloc((size_t)w->plan->n_steps, sizeof *w->trace_desc);
        for (int s = 0; s < w->plan->n_steps; s++)
            w->trace_desc[s] = -1;
        if (!w->ops->host) {
            char name[64];
            snprintf(name, sizeof name, "%s %s", w->ops->name, strcmp(w->ops->name, "cuda") == 0 ? "stream" : "queue");
            rt_trace_track_name(w->trace, RT_TRACE_DEVICE, name);
        }
    }
    if (on && !w->step_ms && getenv("LOOM_PROFILE_STEPS"))
        w->step_ms = xcalloc((size_t)w->plan->n_steps, sizeof *w->step_ms);
}

rt_exec_stats rt_walker_stats(const rt_walker *w)
{
    rt_exec_stats s = rt_exec_plan_stats(w->plan);
    const double *ms = w->ms;
    s.ms_kernels = ms[RT_STEP_KERNEL] + ms[RT_STEP_SUM_ROWS];
    s.ms_gemms = ms[RT_STEP_GEMM];
    s.ms_attentions = ms[RT_STEP_ATTENTION] + ms[RT_STEP_ATTENTION_GRAD];
    s.ms_scatters = ms[RT_STEP_SCATTER_ADD];
    s.ms_other = ms[RT_STEP_COPY] + ms[RT_STEP_CHECK_IDS] + ms[RT_STEP_WRITE_ROWS];
    s.ms_elementwise = w->ms_elem;
    s.ms_reductions = w->ms_red + ms[RT_STEP_SUM_ROWS] + ms[RT_STEP_SCATTER_ADD];
    s.ms_copies = ms[RT_STEP_COPY] + ms[RT_STEP_CHECK_IDS] + ms[RT_STEP_WRITE_ROWS];
    const rt_xfer *x = w->ops->xfer ? w->ops->xfer(w->dev) : NULL;
    if (x) {
        s.bytes_h2d = x->h2d;
        s.bytes_d2h = x->d2h;
    }
    return s;
}
