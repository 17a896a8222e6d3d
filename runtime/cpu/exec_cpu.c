/* exec_cpu.c — the CPU executor (exec_cpu.h): the plan walker (runtime/exec.h) over this
 * machine's operations. Memory is host memory (params and inputs bound in place, outputs and
 * the arena anonymous mappings); kernels run split over grid dim 0 on the pool, with a grain
 * from the step's work estimate so that tiny kernels run inline on the caller; GEMMs go to
 * rt_gemm_f32 with the pool for their epilogue (the step's epilogue kernel, called on ranges
 * of C's rows) and batch splitting. The CPU keeps routines of its own for the library steps —
 * attention (rt_attention_f32, OpenBLAS-blocked), its backward (rt_attention_grad_f32),
 * embedding_grad's scatter-add and the column sums split over columns, cache rows, id checks —
 * unless asked to run their kernel IR (rt_exec_new_lib).
 */
#include "runtime/clock.h"
#include "runtime/cpu/exec_cpu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/cpu/gemm_cpu.h"
#include "runtime/exec.h"
#include "runtime/half.h"

/* The backend's state: what its operations need. */
typedef struct {
    rt_pool *pool;
    rt_kernel_resolver resolve;
    void *ctx;
    struct mapping {
        void *p;
        size_t n;
    } *maps;                  /* live allocations (anonymous mappings) and their sizes */
    int n_maps, cap_maps;
    void **args;              /* scratch: a kernel's argument pointers */
    int cap_args;
    rt_walker *w;             /* the walker these operations serve (for the routines) */
} cpu_ctx;

struct rt_exec {
    cpu_ctx c;
    rt_walker *w;
    const rt_plan *plan;
};

/* Element ref.offset of ref.buf, as a byte pointer (NULL for buf -1). */
static void *at(const cpu_ctx *e, rt_plan_ref r)
{
    rt_mem m = rt_walker_mem(e->w, r);
    return m.mem ? (char *)m.mem + m.off : NULL;
}

static void *ptr(rt_mem m) { return m.mem ? (char *)m.mem + m.off : NULL; }

/* ---- memory: anonymous mappings (page-aligned, zeroed; untouched pages cost nothing, and
 * mincore() tells which pages the runs touched: rt_exec_arena_touched) ---------------------- */

static void *cpu_alloc(void *dev, size_t bytes, ir_diag *d)
{
    cpu_ctx *c = dev;
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        ir_diag_error(d, -1, 0, 0, "cpu: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    ir_grow((void **)&c->maps, &c->cap_maps, c->n_maps + 1, sizeof *c->maps);
    c->maps[c->n_maps++] = (struct mapping){p, bytes ? bytes : 1};
    return p;
}

static void cpu_free(void *dev, void *mem)
{
    cpu_ctx *c = dev;
    for (int i = 0; i < c->n_maps; i++)
        if (c->maps[i].p == mem) {
            munmap(mem, c->maps[i].n);
            c->maps[i] = c->maps[--c->n_maps];
            return;
        }
    ir_unreachable("cpu: freeing memory it did not allocate");
}

static bool cpu_write(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d)
{
    (void)dev, (void)d;
    memcpy(ptr(dst), src, bytes);
    return true;
}

static bool cpu_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    (void)dev, (void)d;
    memcpy(dst, ptr(src), bytes);
    return true;
}

static bool cpu_copy(void *dev, rt_mem dst, rt_mem src, size_t bytes, ir_diag *d)
{
    (void)dev, (void)d;
    memcpy(ptr(dst), ptr(src), bytes);
    return true;
}

/* ---- kernels ------------------------------------------------------------------------------------ */

typedef struct {
    rt_kernel_fn fn;
} cpu_kernel;

static void *cpu_kernel_new(void *dev, const rt_plan_kernel *k, ir_diag *d)
{
    cpu_ctx *c = dev;
    rt_kernel_fn fn = c->resolve(c->ctx, k->name, d);
    if (!fn) {
        ir_diag_error(d, -1, 0, 0, "cpu: kernel '%s' not found", k->name);
        return NULL;
    }
    cpu_kernel *h = malloc(sizeof *h);
    if (!h)
        ir_unreachable("out of memory");
    h->fn = fn;
    return h;
}

static void cpu_kernel_free(void *dev, void *h)
{
    (void)dev;
    free(h);
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

/* The argument pointers of kernel k (scratch of the backend: one run at a time). */
static void **args_of(cpu_ctx *c, const rt_plan_kernel *k, const rt_mem *args)
{
    if (k->n_args > c->cap_args) {
        c->cap_args = k->n_args;
        c->args = realloc(c->args, sizeof *c->args * (size_t)c->cap_args);
        if (!c->args)
            ir_unreachable("out of memory");
    }
    for (int a = 0; a < k->n_args; a++)
        c->args[a] = ptr(args[a]);
    return c->args;
}

/* A kernel over grid dim 0, split on the pool by its work estimate. */
static bool cpu_launch(void *dev, void *h, const rt_plan_kernel *k, const rt_mem *args, ir_diag *d)
{
    (void)d;
    cpu_ctx *c = dev;
    kernel_call call = {((cpu_kernel *)h)->fn, args_of(c, k, args)};
    rt_pool_parallel_for_grain(c->pool, k->grid0, rt_pool_grain(k->work), run_chunk, &call);
    return true;
}

/* ---- the CPU's routines for library steps and checks ------------------------------------------- */

static bool check_ids(void *dev, rt_walker *w, int s, ir_diag *d)
{
    const cpu_ctx *e = dev;
    const rt_plan_check *c = &rt_walker_plan(w)->steps[s].check;
    const void *p = at(e, c->ids);
    ir_dtype dt = rt_walker_plan(w)->bufs[c->ids.buf].dtype;
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
static bool write_rows(void *dev, rt_walker *w, int s, ir_diag *d)
{
    const cpu_ctx *e = dev;
    const rt_plan_write_rows *r = &rt_walker_plan(w)->steps[s].rows;
    const void *pp = at(e, r->pos);
    int64_t p = r->pos_dtype == DT_I32 ? *(const int32_t *)pp : r->pos_dtype == DT_I64 ? *(const int64_t *)pp : *(const uint8_t *)pp;
    if (p < 0 || r->rows_src > r->rows_dst || p > r->rows_dst - r->rows_src) { /* no p + rows: p may be INT64_MAX */
        ir_diag_error(d, -1, 0, 0, "cache_write: position %" PRId64 " with %" PRId64 " rows is outside the cache of %" PRId64,
                      p, r->rows_src, r->rows_dst);
        return false;
    }
    char *dst = at(e, r->dst);
    const char *src = at(e, r->src);
    int64_t block = r->rows_src * r->row_bytes;
    for (int64_t o = 0; o < r->outer; o++)
        memcpy(dst + (o * r->rows_dst + p) * r->row_bytes, src + o * block, (size_t)block);
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

static void run_scatter(const cpu_ctx *e, const rt_plan_scatter *s)
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

static void run_sum_rows(const cpu_ctx *e, const rt_plan_sum_rows *s)
{
    sum_rows_call c = {s, at(e, s->src), at(e, s->dst)};
    int64_t chunks = (s->width + SCATTER_COLS - 1) / SCATTER_COLS;
    rt_pool_parallel_for_grain(e->pool, chunks, rt_pool_grain(s->rows * SCATTER_COLS), sum_rows_chunk, &c);
}

static void run_attention_grad(const cpu_ctx *e, const rt_plan_attention_grad *g)
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

static void convert(const cpu_ctx *e, ir_dtype dt, bool widen, void *half, float *f32, int64_t n)
{
    convert_call c = {dt, widen, half, f32};
    rt_pool_parallel_for_grain(e->pool, n, rt_pool_grain(1), convert_chunk, &c);
}

static ir_dtype ref_dtype(const cpu_ctx *e, rt_plan_ref r)
{
    return r.buf < 0 ? DT_F32 : rt_walker_plan(e->w)->bufs[r.buf].dtype;
}

static void *lib_at(const cpu_ctx *e, half_copies *h, rt_plan_ref r)
{
    if (!is_half(ref_dtype(e, r)))
        return at(e, r);
    for (int i = 0; i < h->n; i++)
        if (h->buf[i] == r.buf)
            return h->copy[i] + r.offset;
    const rt_plan_buffer *b = &rt_walker_plan(e->w)->bufs[r.buf];
    float *c = malloc(sizeof(float) * ((size_t)b->numel + 1));
    if (!c || h->n == 8)
        ir_unreachable("lib_at: out of memory or too many half operands");
    convert(e, b->dtype, true, at(e, (rt_plan_ref){r.buf, 0}), c, b->numel);
    h->buf[h->n] = r.buf;
    h->copy[h->n++] = c;
    return c + r.offset;
}

/* Rounds the copy of buffer `written` back into it (if it has one) and frees every copy. */
static void lib_done(const cpu_ctx *e, half_copies *h, int written)
{
    for (int i = 0; i < h->n; i++) {
        if (h->buf[i] == written)
            convert(e, rt_walker_plan(e->w)->bufs[written].dtype, false, at(e, (rt_plan_ref){written, 0}), h->copy[i],
                    rt_walker_plan(e->w)->bufs[written].numel);
        free(h->copy[i]);
    }
    h->n = 0;
}


static bool scatter_add(void *dev, rt_walker *w, int s, ir_diag *d)
{
    (void)d;
    run_scatter(dev, &rt_walker_plan(w)->steps[s].scatter);
    return true;
}

static bool sum_rows(void *dev, rt_walker *w, int s, ir_diag *d)
{
    (void)d;
    run_sum_rows(dev, &rt_walker_plan(w)->steps[s].sum_rows);
    return true;
}

static bool attention_grad(void *dev, rt_walker *w, int s, ir_diag *d)
{
    (void)d;
    run_attention_grad(dev, &rt_walker_plan(w)->steps[s].agrad);
    return true;
}

static bool attention(void *dev, rt_walker *w, int s, ir_diag *d)
{
    (void)d;
    const cpu_ctx *e = dev;
    const rt_plan_attention *a = &rt_walker_plan(w)->steps[s].attn;
    half_copies h = {0};
    rt_attention_f32(a, lib_at(e, &h, a->q), lib_at(e, &h, a->k), lib_at(e, &h, a->v), lib_at(e, &h, a->mask),
                     lib_at(e, &h, a->out), e->pool);
    lib_done(e, &h, a->out.buf);
    return true;
}

/* A GEMM step; with an epilogue kernel (plan.h), the kernel finishes each range of C's rows
 * (bias and activation) right after the GEMM that wrote them, on the pool. */
static bool gemm(void *dev, rt_walker *w, int s, ir_diag *d)
{
    (void)d;
    cpu_ctx *e = dev;
    const rt_plan_gemm *g = &rt_walker_plan(w)->steps[s].gemm;
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
    kernel_call epi = {NULL, NULL};
    if (g->epi.name) { /* f32 only (plan_io.c's check): the kernel reads and writes C in place */
        rt_mem *am = malloc(sizeof *am * ((size_t)g->epi.n_args + 1));
        if (!am)
            ir_unreachable("out of memory");
        for (int a = 0; a < g->epi.n_args; a++)
            am[a] = rt_walker_mem(w, g->epi.args[a]);
        epi = (kernel_call){((cpu_kernel *)rt_walker_kernel(w, s, 0))->fn, args_of(e, &g->epi, am)};
        free(am);
        desc.epilogue = run_chunk;
        desc.epilogue_ctx = &epi;
    }
    desc.pool = e->pool;
    if (g->qbits) { /* B is codes and scales, read as stored */
        desc.qbits = g->qbits;
        desc.qgroup = g->qgroup;
        desc.qscales = at(e, g->b_scales);
        desc.qscale_dtype = rt_walker_plan(w)->bufs[g->b_scales.buf].dtype;
    }
    rt_gemm_types t = {ref_dtype(e, g->a), ref_dtype(e, g->b), ref_dtype(e, g->c), ref_dtype(e, g->bias)};
    if (!g->epi.name && !g->qbits && (is_half(t.a) || is_half(t.b) || is_half(t.c))) {
        /* half operands read as they are (oneDNN's bf16 dot products), not widened */
        desc.bias = g->bias.buf >= 0 ? at(e, g->bias) : NULL;
        int r = rt_gemm_half(&desc, &t, at(e, g->a), at(e, g->b), at(e, g->c));
        if (r < 0)
            ir_unreachable(rt_gemm_validate(&desc));
        if (r == 0)
            return true;
    }
    if (!g->epi.name)
        desc.bias = lib_at(e, &h, g->bias); /* (the epilogue kernel adds it otherwise) */
    if (rt_gemm_f32(&desc, lib_at(e, &h, g->a), lib_at(e, &h, g->b), lib_at(e, &h, g->c)) != 0)
        ir_unreachable(rt_gemm_validate(&desc)); /* lowering built an invalid descriptor */
    lib_done(e, &h, g->c.buf);
    return true;
}

/* ---- sync and events: everything on the CPU is done when a call returns ----------------------- */

static bool cpu_sync(void *dev, ir_diag *d)
{
    (void)dev, (void)d;
    return true;
}

static void *cpu_event_new(void *dev)
{
    (void)dev;
    return calloc(1, sizeof(double));
}

static void cpu_event_free(void *dev, void *ev)
{
    (void)dev;
    free(ev);
}

static bool cpu_event_record(void *dev, void *ev, ir_diag *d)
{
    (void)dev, (void)d;
    *(double *)ev = rt_now_ms();
    return true;
}

static double cpu_event_ms(void *dev, void *a, void *b)
{
    (void)dev;
    return *(double *)b - *(double *)a;
}

static const rt_backend_ops cpu_ops = {
    .name = "cpu",
    .host = true,
    .gemm_codes = true,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .write = cpu_write,
    .read = cpu_read,
    .copy = cpu_copy,
    .kernel = cpu_kernel_new,
    .kernel_free = cpu_kernel_free,
    .launch = cpu_launch,
    .native = {[RT_STEP_GEMM] = gemm,
               [RT_STEP_ATTENTION] = attention,
               [RT_STEP_CHECK_IDS] = check_ids,
               [RT_STEP_WRITE_ROWS] = write_rows,
               [RT_STEP_ATTENTION_GRAD] = attention_grad,
               [RT_STEP_SCATTER_ADD] = scatter_add,
               [RT_STEP_SUM_ROWS] = sum_rows},
    .sync = cpu_sync,
    .event_new = cpu_event_new,
    .event_free = cpu_event_free,
    .event_record = cpu_event_record,
    .event_ms = cpu_event_ms,
};

/* ---- the executor --------------------------------------------------------------------------------- */

rt_exec *rt_exec_new(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, ir_diag *d)
{
    return rt_exec_new_lib(p, resolve, ctx, pool, false, d);
}

rt_exec *rt_exec_new_lib(const rt_plan *p, rt_kernel_resolver resolve, void *ctx, rt_pool *pool, bool lib_kernels,
                         ir_diag *d)
{
    rt_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->plan = p;
    e->c = (cpu_ctx){.pool = pool, .resolve = resolve, .ctx = ctx};
    e->w = e->c.w = rt_walker_new(p, &cpu_ops, &e->c, lib_kernels, d);
    if (!e->w) {
        rt_exec_free(e);
        return NULL;
    }
    return e;
}

void rt_exec_free(rt_exec *e)
{
    if (!e)
        return;
    rt_walker_free(e->w);
    if (e->c.n_maps)
        ir_unreachable("cpu: the walker left memory behind");
    free(e->c.maps);
    free(e->c.args);
    free(e);
}

bool rt_exec_bind(rt_exec *e, const char *name, const void *data, ir_diag *d) { return rt_walker_bind(e->w, name, data, d); }

void *rt_exec_output(rt_exec *e, const char *name)
{
    ir_diag d;
    ir_diag_init(&d);
    void *p = rt_walker_output(e->w, name, &d);
    ir_diag_free(&d);
    return p;
}

bool rt_exec_run(rt_exec *e, ir_diag *d) { return rt_walker_run(e->w, d); }

void rt_exec_profile(rt_exec *e, bool on) { rt_walker_profile(e->w, on); }

rt_exec_stats rt_exec_stats_get(const rt_exec *e) { return rt_walker_stats(e->w); }

rt_walker *rt_exec_walker(rt_exec *e) { return e->w; }

void rt_exec_touch_arena(rt_exec *e)
{
    void *arena = rt_walker_arena(e->w).mem;
    if (arena)
        rt_pool_touch(e->c.pool, arena, (size_t)e->plan->arena_bytes);
}

int64_t rt_exec_arena_touched(const rt_exec *e)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)e->plan->arena_bytes;
    size_t pages = (bytes + page - 1) / page;
    void *arena = rt_walker_arena(e->w).mem;
    if (!arena || pages == 0)
        return 0;
    unsigned char *v = malloc(pages);
    if (!v)
        ir_unreachable("out of memory");
    int64_t touched = 0;
    if (mincore(arena, bytes, v) == 0)
        for (size_t i = 0; i < pages; i++)
            touched += v[i] & 1;
    free(v);
    return touched * (int64_t)page;
}
