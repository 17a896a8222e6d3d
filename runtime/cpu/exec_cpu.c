/* exec_cpu.c — the CPU executor (exec.h): one arena from the memory plan, caller-bound params
 * and inputs, executor-owned outputs, and a loop over the plan's steps.
 *
 * Kernels run split over grid dim 0 on the pool, with a grain from the step's work estimate
 * so that tiny kernels run inline on the caller. GEMMs go to rt_gemm_f32 with the pool for
 * their epilogue (the step's epilogue kernel, called on ranges of C's rows) and batch splitting; attention to rt_attention_f32, attention_grad to
 * rt_attention_grad_f32; embedding_grad's scatter-add runs here, split over columns.
 */
#include "runtime/clock.h"
#include "runtime/cpu/exec_cpu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cpu/gemm_cpu.h"
#include "runtime/half.h"
#include "runtime/trace.h"

struct rt_exec {
    const rt_plan *plan;
    rt_pool *pool;
    void *arena;
    void **base;        /* per buffer: its first element (NULL: param/input not bound yet) */
    rt_kernel_fn *fn;   /* per step: the resolved kernel (kernel steps) */
    void **args;        /* scratch: the widest kernel's argument pointers */
    int max_args;
    bool profile;
    double ms[RT_STEP_KIND_COUNT]; /* per rt_step_kind, with profile */
    double *step_ms;    /* per step, with profile and LOOM_PROFILE_STEPS=N: the N slowest
                           steps are printed to stderr when the executor is freed */
    rt_trace *trace;    /* with profile under --profile: each step a slice (trace.h) */
    int *trace_desc;    /* per step: its interned description, -1 until first traced */
};

void rt_exec_profile(rt_exec *e, bool on)
{
    e->profile = on;
    e->trace = on ? rt_trace_active() : NULL;
    if (e->trace && !e->trace_desc) {
        e->trace_desc = malloc(sizeof *e->trace_desc * ((size_t)e->plan->n_steps + 1));
        if (!e->trace_desc)
            ir_unreachable("out of memory");
        for (int s = 0; s < e->plan->n_steps; s++)
            e->trace_desc[s] = -1;
    }
    if (on && !e->step_ms && getenv("LOOM_PROFILE_STEPS")) {
        e->step_ms = calloc((size_t)e->plan->n_steps + 1, sizeof *e->step_ms);
        if (!e->step_ms)
            ir_unreachable("out of memory");
    }
}

/* LOOM_PROFILE_STEPS=N: the N slowest steps of the profiled runs, for finding hot spots. */
static void print_slowest_steps(const rt_exec *e)
{
    const rt_plan *p = e->plan;
    int n = atoi(getenv("LOOM_PROFILE_STEPS"));
    bool *shown = calloc((size_t)p->n_steps + 1, sizeof *shown);
    if (!shown)
        ir_unreachable("out of memory");
    static const char *kinds[RT_STEP_KIND_COUNT] = {"kernel", "gemm", "attention", "copy", "check_ids",
                                                    "write_rows", "attention_grad", "scatter_add", "sum_rows"};
    for (int k = 0; k < n && k < p->n_steps; k++) {
        int best = -1;
        for (int s = 0; s < p->n_steps; s++)
            if (!shown[s] && (best < 0 || e->step_ms[s] > e->step_ms[best]))
                best = s;
        shown[best] = true;
        const rt_plan_step *st = &p->steps[best];
        fprintf(stderr, "step %4d %-14s %8.3f ms", best, kinds[st->kind], e->step_ms[best]);
        if (st->kind == RT_STEP_KERNEL)
            fprintf(stderr, "  %s grid %" PRId64, st->kernel.name, st->kernel.grid0);
        if (st->kind == RT_STEP_GEMM)
            fprintf(stderr, "  M %" PRId64 " N %" PRId64 " K %" PRId64 " batch %d ta %d tb %d", st->gemm.M, st->gemm.N,
                    st->gemm.K, st->gemm.nbatch, st->gemm.trans_a, st->gemm.trans_b);
        fprintf(stderr, "\n");
    }
    free(shown);
}

rt_exec_stats rt_exec_stats_get(const rt_exec *e)
{
    rt_exec_stats s = rt_exec_plan_stats(e->plan);
    s.ms_kernels = e->ms[RT_STEP_KERNEL] + e->ms[RT_STEP_SUM_ROWS];
    s.ms_gemms = e->ms[RT_STEP_GEMM];
    s.ms_attentions = e->ms[RT_STEP_ATTENTION] + e->ms[RT_STEP_ATTENTION_GRAD];
    s.ms_scatters = e->ms[RT_STEP_SCATTER_ADD];
    s.ms_other = e->ms[RT_STEP_COPY] + e->ms[RT_STEP_CHECK_IDS] + e->ms[RT_STEP_WRITE_ROWS];
    return s;
}

static void *aligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64) != 0)
        return NULL;
    return p;
}

/* The arena is its own anonymous mapping: page-aligned, untouched pages cost nothing, and
 * mincore() tells which pages the run touched (rt_exec_arena_touched). */
static void *arena_map(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int64_t rt_exec_arena_touched(const rt_exec *e)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)e->plan->arena_bytes;
    size_t pages = (bytes + page - 1) / page;
    if (!e->arena || pages == 0)
        return 0;
    unsigned char *v = malloc(pages);
    if (!v)
        ir_unreachable("out of memory");
    int64_t touched = 0;
    if (mincore(e->arena, bytes, v) == 0)
        for (size_t i = 0; i < pages; i++)
            touched += v[i] & 1;
    free(v);
    return touched * (int64_t)page;
}

static size_t buf_bytes(const rt_plan_buffer *b) { return (size_t)b->numel * (size_t)ir_dtype_size(b->dtype); }

rt_exec *rt_exec_new(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, ir_diag *d)
{
    rt_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->plan = p;
    e->pool = pool;
    e->base = calloc((size_t)p->n_bufs + 1, sizeof *e->base);
    e->fn = calloc((size_t)p->n_steps + 1, sizeof *e->fn);
    if (!e->base || !e->fn)
        ir_unreachable("out of memory");
    e->arena = arena_map((size_t)p->arena_bytes);
    if (!e->arena) {
        ir_diag_error(d, -1, 0, 0, "cpu: cannot allocate the %" PRId64 "-byte arena", p->arena_bytes);
        rt_exec_free(e);
        return NULL;
    }
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if (b->kind == RT_BUF_ACTIVATION) {
            e->base[i] = (char *)e->arena + b->offset;
        } else if (b->kind == RT_BUF_OUTPUT) {
            e->base[i] = aligned(buf_bytes(b));
            if (!e->base[i]) {
                ir_diag_error(d, -1, 0, 0, "cpu: cannot allocate output '%s'", b->name);
                rt_exec_free(e);
                return NULL;
            }
            memset(e->base[i], 0, buf_bytes(b));
        }
    }
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        const rt_plan_kernel *k = st->kind == RT_STEP_KERNEL ? &st->kernel
                                  : st->kind == RT_STEP_GEMM && st->gemm.epi.name ? &st->gemm.epi
                                                                                  : NULL;
        if (!k)
            continue;
        e->fn[s] = resolve(ctx, k->name, d);
        if (!e->fn[s]) {
            ir_diag_error(d, -1, 0, 0, "cpu: kernel '%s' not found", k->name);
            rt_exec_free(e);
            return NULL;
        }
        if (k->n_args > e->max_args)
            e->max_args = k->n_args;
    }
    e->args = calloc((size_t)e->max_args + 1, sizeof *e->args);
    if (!e->args)
        ir_unreachable("out of memory");
    return e;
}

void rt_exec_free(rt_exec *e)
{
    if (!e)
        return;
    if (e->step_ms) {
        print_slowest_steps(e);
        free(e->step_ms);
    }
    for (int i = 0; e->base && i < e->plan->n_bufs; i++)
        if (e->plan->bufs[i].kind == RT_BUF_OUTPUT)
            free(e->base[i]);
    free(e->base);
    free(e->fn);
    free(e->args);
    free(e->trace_desc);
    if (e->arena)
        munmap(e->arena, e->plan->arena_bytes ? (size_t)e->plan->arena_bytes : 1);
    free(e);
}

bool rt_exec_bind(rt_exec *e, const char *name, const void *data, ir_diag *d)
{
    bool found = false;
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if ((b->kind == RT_BUF_PARAM || b->kind == RT_BUF_INPUT) && strcmp(b->name, name) == 0) {
            e->base[i] = (void *)data;
            found = true;
        }
    }
    if (!found)
        ir_diag_error(d, -1, 0, 0, "cpu: the plan has no parameter or input '%s'", name);
    return found;
}

void *rt_exec_output(rt_exec *e, const char *name)
{
    for (int i = 0; i < e->plan->n_bufs; i++)
        if (e->plan->bufs[i].kind == RT_BUF_OUTPUT && strcmp(e->plan->bufs[i].name, name) == 0)
            return e->base[i];
    return NULL;
}

/* Element ref.offset of ref.buf, as a byte pointer. */
static void *at(const rt_exec *e, rt_plan_ref r)
{
    if (r.buf < 0)
        return NULL;
    return (char *)e->base[r.buf] + r.offset * ir_dtype_size(e->plan->bufs[r.buf].dtype);
}

typedef struct {
    rt_kernel_fn fn;
    void **args;
} kernel_call;

static void run_chunk(void *ctx, int64_t begin, int64_t end)
{
    kernel_call *c = ctx;
    c->fn(c->args, begin, end);
}

static bool check_ids(const rt_exec *e, const rt_plan_check *c, ir_diag *d)
{
    const void *p = at(e, c->ids);
    ir_dtype dt = e->plan->bufs[c->ids.buf].dtype;
    for (int64_t i = 0; i < c->numel; i++) {
        int64_t x = dt == DT_I32 ? ((const int32_t *)p)[i] : dt == DT_I64 ? ((const int64_t *)p)[i] : ((const uint8_t *)p)[i];
        if (x < 0 && c->allow_negative)
            continue;
        if (x < c->lo || x >= c->hi) {
            ir_diag_error(d, -1, 0, 0, "%s: id %" PRId64 " is outside [%" PRId64 ", %" PRId64 ")", c->what, x, c->lo,
                          c->hi);
            return false;
        }
    }
    return true;
}

/* cache_write (plan.h WRITE_ROWS): rows of src into dst at the run-time position. */
static bool write_rows(const rt_exec *e, const rt_plan_write_rows *w, ir_diag *d)
{
    const void *pp = at(e, w->pos);
    int64_t p = w->pos_dtype == DT_I32 ? *(const int32_t *)pp : w->pos_dtype == DT_I64 ? *(const int64_t *)pp : *(const uint8_t *)pp;
    if (p < 0 || w->rows_src > w->rows_dst || p > w->rows_dst - w->rows_src) { /* no p + rows: p may be INT64_MAX */
        ir_diag_error(d, -1, 0, 0, "cache_write: position %" PRId64 " with %" PRId64 " rows is outside the cache of %" PRId64,
                      p, w->rows_src, w->rows_dst);
        return false;
    }
    char *dst = at(e, w->dst);
    const char *src = at(e, w->src);
    int64_t block = w->rows_src * w->row_bytes;
    for (int64_t o = 0; o < w->outer; o++)
        memcpy(dst + (o * w->rows_dst + p) * w->row_bytes, src + o * block, (size_t)block);
    return true;
}

/* embedding_grad (plan.h SCATTER_ADD): each chunk of columns zeroes its part of dst and adds
 * the src rows in id order, so every element's sum has one order whatever the thread count. */
typedef struct {
    const rt_plan_scatter *s;
    const void *ids;
    const float *src;
    float *dst;
} scatter_call;

enum { SCATTER_COLS = 64 }; /* columns per task: a cache line multiple, rows stay contiguous */

static void scatter_chunk(void *ctx, int64_t begin, int64_t end)
{
    const scatter_call *c = ctx;
    const rt_plan_scatter *s = c->s;
    int64_t c0 = begin * SCATTER_COLS, c1 = end * SCATTER_COLS < s->width ? end * SCATTER_COLS : s->width;
    size_t w = (size_t)(c1 - c0);
    for (int64_t r = 0; r < s->rows; r++)
        memset(c->dst + r * s->width + c0, 0, sizeof(float) * w);
    for (int64_t j = 0; j < s->n; j++) {
        int64_t id = s->ids_dtype == DT_I32   ? ((const int32_t *)c->ids)[j]
                     : s->ids_dtype == DT_I64 ? ((const int64_t *)c->ids)[j]
                                              : ((const uint8_t *)c->ids)[j];
        if (id < 0 || id >= s->rows) /* CHECK_IDS ran before: never taken */
            continue;
        float *restrict d = c->dst + id * s->width + c0;
        const float *restrict x = c->src + j * s->src_stride + c0;
        for (size_t k = 0; k < w; k++)
            d[k] += x[k];
    }
}

static void run_scatter(const rt_exec *e, const rt_plan_scatter *s)
{
    scatter_call c = {s, at(e, s->ids), at(e, s->src), at(e, s->dst)};
    int64_t chunks = (s->width + SCATTER_COLS - 1) / SCATTER_COLS;
    rt_pool_parallel_for_grain(e->pool, chunks, 1, scatter_chunk, &c);
}

/* SUM_ROWS: each chunk of columns adds the rows in order (one order whatever the threads). */
typedef struct {
    const rt_plan_sum_rows *s;
    const float *src;
    float *dst;
} sum_rows_call;

static void sum_rows_chunk(void *ctx, int64_t begin, int64_t end)
{
    const sum_rows_call *c = ctx;
    const rt_plan_sum_rows *s = c->s;
    int64_t c0 = begin * SCATTER_COLS, c1 = end * SCATTER_COLS < s->width ? end * SCATTER_COLS : s->width;
    float *restrict d = c->dst + c0;
    size_t w = (size_t)(c1 - c0);
    memset(d, 0, sizeof(float) * w);
    for (int64_t r = 0; r < s->rows; r++) {
        const float *restrict x = c->src + r * s->src_stride + c0;
        for (size_t k = 0; k < w; k++)
            d[k] += x[k];
    }
}

static void run_sum_rows(const rt_exec *e, const rt_plan_sum_rows *s)
{
    sum_rows_call c = {s, at(e, s->src), at(e, s->dst)};
    int64_t chunks = (s->width + SCATTER_COLS - 1) / SCATTER_COLS;
    rt_pool_parallel_for_grain(e->pool, chunks, rt_pool_grain(s->rows * SCATTER_COLS), sum_rows_chunk, &c);
}

static void run_attention_grad(const rt_exec *e, const rt_plan_attention_grad *g)
{
    rt_attention_grad_f32(g, at(e, g->fwd.q), at(e, g->fwd.k), at(e, g->fwd.v), at(e, g->fwd.mask), at(e, g->dy),
                          at(e, g->fwd.out), at(e, g->dq), at(e, g->dk), at(e, g->dv), at(e, g->dmask), e->pool);
}

/* Library steps (GEMM, attention) compute in f32: each half (f16/bf16) buffer a step touches
 * is widened whole into an f32 copy before it, and the one it writes rounded back after
 * (lower-precision graphs; docs/backend.md, "Precision"). f32 buffers are used in place. */
typedef struct {
    int n;
    int buf[8];
    float *copy[8];
} half_copies;

static bool is_half(ir_dtype dt) { return dt == DT_F16 || dt == DT_BF16; }

/* One widening or narrowing, split over the pool (weights run to millions of elements). */
typedef struct {
    ir_dtype dt;
    bool widen;
    void *half;
    float *f32;
} convert_call;

static void convert_chunk(void *ctx, int64_t begin, int64_t end)
{
    const convert_call *c = ctx;
    uint16_t *h = (uint16_t *)c->half + begin;
    if (c->widen)
        rt_half_widen(c->dt, h, c->f32 + begin, end - begin);
    else
        rt_half_narrow(c->dt, c->f32 + begin, h, end - begin);
}

static void convert(const rt_exec *e, ir_dtype dt, bool widen, void *half, float *f32, int64_t n)
{
    convert_call c = {dt, widen, half, f32};
    rt_pool_parallel_for_grain(e->pool, n, rt_pool_grain(1), convert_chunk, &c);
}

static void *lib_at(const rt_exec *e, half_copies *h, rt_plan_ref r)
{
    if (r.buf < 0 || !is_half(e->plan->bufs[r.buf].dtype))
        return at(e, r);
    for (int i = 0; i < h->n; i++)
        if (h->buf[i] == r.buf)
            return h->copy[i] + r.offset;
    const rt_plan_buffer *b = &e->plan->bufs[r.buf];
    float *c = malloc(sizeof(float) * ((size_t)b->numel + 1));
    if (!c || h->n == 8)
        ir_unreachable("lib_at: out of memory or too many half operands");
    convert(e, b->dtype, true, e->base[r.buf], c, b->numel);
    h->buf[h->n] = r.buf;
    h->copy[h->n++] = c;
    return c + r.offset;
}

/* Rounds the copy of buffer `written` back into it (if it has one) and frees every copy. */
static void lib_done(const rt_exec *e, half_copies *h, int written)
{
    for (int i = 0; i < h->n; i++) {
        if (h->buf[i] == written)
            convert(e, e->plan->bufs[written].dtype, false, e->base[written], h->copy[i], e->plan->bufs[written].numel);
        free(h->copy[i]);
    }
    h->n = 0;
}

static void run_attention(const rt_exec *e, const rt_plan_attention *a)
{
    half_copies h = {0};
    rt_attention_f32(a, lib_at(e, &h, a->q), lib_at(e, &h, a->k), lib_at(e, &h, a->v), lib_at(e, &h, a->mask),
                     lib_at(e, &h, a->out), e->pool);
    lib_done(e, &h, a->out.buf);
}

/* A GEMM step; with an epilogue kernel (plan.h), the kernel finishes each range of C's rows
 * (bias and activation) right after the GEMM that wrote them, on the pool. */
static void run_gemm(const rt_exec *e, int s, const rt_plan_gemm *g)
{
    half_copies h = {0};
    rt_gemm_desc desc = rt_gemm_desc_make(g->M, g->N, g->K);
    desc.nbatch = g->nbatch;
    for (int i = 0; i < g->nbatch; i++) {
        desc.batch[i] = g->batch[i];
        desc.stride_a[i] = g->stride_a[i];
        desc.stride_b[i] = g->stride_b[i];
        desc.stride_c[i] = g->stride_c[i];
    }
    desc.trans_a = g->trans_a;
    desc.trans_b = g->trans_b;
    desc.lda = g->lda;
    desc.ldb = g->ldb;
    desc.ldc = g->ldc;
    desc.alpha = g->alpha;
    desc.beta = g->beta;
    kernel_call epi = {e->fn[s], e->args};
    if (g->epi.name) { /* f32 only (plan_io.c's check): the kernel reads and writes C in place */
        for (int a = 0; a < g->epi.n_args; a++)
            e->args[a] = at(e, g->epi.args[a]);
        desc.epilogue = run_chunk;
        desc.epilogue_ctx = &epi;
    } else {
        desc.bias = lib_at(e, &h, g->bias);
    }
    desc.pool = e->pool;
    if (rt_gemm_f32(&desc, lib_at(e, &h, g->a), lib_at(e, &h, g->b), lib_at(e, &h, g->c)) != 0)
        ir_unreachable(rt_gemm_validate(&desc)); /* lowering built an invalid descriptor */
    lib_done(e, &h, g->c.buf);
}

bool rt_exec_run(rt_exec *e, ir_diag *d)
{
    const rt_plan *p = e->plan;
    bool ok = true;
    for (int i = 0; i < p->n_bufs; i++)
        if (!e->base[i]) {
            ir_diag_error(d, -1, 0, 0, "cpu: %s '%s' is not bound", p->bufs[i].kind == RT_BUF_PARAM ? "parameter" : "input",
                          p->bufs[i].name);
            ok = false;
        }
    for (int s = 0; ok && s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        double t0 = e->profile ? rt_now_ms() : 0;
        switch (st->kind) {
        case RT_STEP_KERNEL: {
            for (int a = 0; a < st->kernel.n_args; a++)
                e->args[a] = at(e, st->kernel.args[a]);
            kernel_call c = {e->fn[s], e->args};
            rt_pool_parallel_for_grain(e->pool, st->kernel.grid0, rt_pool_grain(st->kernel.work), run_chunk, &c);
            break;
        }
        case RT_STEP_GEMM: run_gemm(e, s, &st->gemm); break;
        case RT_STEP_ATTENTION: run_attention(e, &st->attn); break;
        case RT_STEP_COPY: memcpy(at(e, st->copy.dst), at(e, st->copy.src), (size_t)st->copy.bytes); break;
        case RT_STEP_CHECK_IDS: ok = check_ids(e, &st->check, d); break;
        case RT_STEP_WRITE_ROWS: ok = write_rows(e, &st->rows, d); break;
        case RT_STEP_ATTENTION_GRAD: run_attention_grad(e, &st->agrad); break;
        case RT_STEP_SCATTER_ADD: run_scatter(e, &st->scatter); break;
        case RT_STEP_SUM_ROWS: run_sum_rows(e, &st->sum_rows); break;
        }
        if (e->profile) {
            double t1 = rt_now_ms(), dt = t1 - t0;
            e->ms[st->kind] += dt;
            if (e->step_ms)
                e->step_ms[s] += dt;
            if (e->trace) {
                if (e->trace_desc[s] < 0)
                    e->trace_desc[s] = rt_trace_plan_step(e->trace, p, s);
                rt_trace_slice(e->trace, RT_TRACE_HOST, e->trace_desc[s], t0, t1);
            }
        }
    }
    return ok;
}
