/* plan_memory.c — arena offsets for activation buffers by liveness (plan_memory.h).
 *
 * Live range of a buffer: [first step referencing it, last step referencing it]. Buffers are
 * placed largest first (ties: earlier first use, then index, so the result is deterministic);
 * each goes into the smallest gap, among the already placed buffers whose live ranges overlap
 * its own, that holds it — or after the highest of them when no gap does (TFLite's "greedy by
 * size" with best fit). O(n²) in the number of buffers, which is a few per layer.
 */
#include "plan/plan_memory.h"

#include <stdbool.h>
#include <stdlib.h>

#define ALIGN 64

static int64_t rounded(const rt_plan_buffer *b)
{
    int64_t bytes = b->numel * ir_dtype_size(b->dtype);
    return (bytes + ALIGN - 1) / ALIGN * ALIGN;
}

static void touch(int *first, int *last, rt_plan_ref r, int step)
{
    if (r.buf < 0)
        return;
    if (first[r.buf] < 0)
        first[r.buf] = step;
    last[r.buf] = step;
}

/* Marks step as a use of each of the n buffers in refs (the order does not matter). */
static void touch_all(int *first, int *last, int step, const rt_plan_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        touch(first, last, refs[i], step);
}

/* REFS(x, y, ...): the array of those refs and its length, the last two arguments of touch_all. */
#define REFS(...) \
    (const rt_plan_ref[]){__VA_ARGS__}, sizeof((rt_plan_ref[]){__VA_ARGS__}) / sizeof(rt_plan_ref)

/* Is buffer a placed before b? Larger first; ties by first use, then index. */
static bool before_size(const rt_plan *p, const int *first, int a, int b)
{
    int64_t sa = rounded(&p->bufs[a]), sb = rounded(&p->bufs[b]);
    if (sa != sb)
        return sa > sb;
    if (first[a] != first[b])
        return first[a] < first[b];
    return a < b;
}

static bool before_offset(const rt_plan *p, const int *first, int a, int b)
{
    (void)first;
    int64_t oa = p->bufs[a].offset, ob = p->bufs[b].offset;
    return oa != ob ? oa < ob : a < b;
}

/* Insertion sort (a few hundred buffers at most; no global context as qsort would need). */
static void sort(int *v, int n, const rt_plan *p, const int *first,
                 bool (*before)(const rt_plan *, const int *, int, int))
{
    for (int i = 1; i < n; i++) {
        int x = v[i], j = i;
        for (; j > 0 && before(p, first, x, v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

int64_t pass_plan_memory_unshared(const rt_plan *p)
{
    int64_t total = 0;
    for (int i = 0; i < p->n_bufs; i++)
        if (p->bufs[i].kind == RT_BUF_ACTIVATION)
            total += rounded(&p->bufs[i]);
    return total;
}

void rt_plan_live_ranges(const rt_plan *p, int *first, int *last)
{
    for (int i = 0; i < p->n_bufs; i++)
        first[i] = last[i] = -1;
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        switch (st->kind) {
        case RT_STEP_KERNEL:
            touch_all(first, last, s, st->kernel.args, (size_t)st->kernel.n_args);
            break;
        case RT_STEP_GEMM:
            touch_all(first, last, s, REFS(st->gemm.a, st->gemm.b, st->gemm.c, st->gemm.bias));
            touch_all(first, last, s, st->gemm.epi.args, (size_t)st->gemm.epi.n_args);
            break;
        case RT_STEP_ATTENTION:
            touch_all(first, last, s, REFS(st->attn.q, st->attn.k, st->attn.v, st->attn.mask, st->attn.out, st->attn.lse));
            break;
        case RT_STEP_COPY:
            touch_all(first, last, s, REFS(st->copy.src, st->copy.dst));
            break;
        case RT_STEP_CHECK_IDS:
            touch_all(first, last, s, REFS(st->check.ids));
            break;
        case RT_STEP_WRITE_ROWS:
            touch_all(first, last, s, REFS(st->rows.dst, st->rows.src, st->rows.pos));
            break;
        case RT_STEP_ATTENTION_GRAD: {
            const rt_plan_attention_grad *a = &st->agrad;
            touch_all(first, last, s, REFS(a->fwd.q, a->fwd.k, a->fwd.v, a->fwd.mask, a->fwd.out, a->fwd.lse,
                                           a->dy, a->dq, a->dk, a->dv, a->dmask, a->delta));
            break;
        }
        case RT_STEP_SCATTER_ADD:
            touch_all(first, last, s, REFS(st->scatter.ids, st->scatter.src, st->scatter.dst));
            break;
        case RT_STEP_SUM_ROWS:
            touch_all(first, last, s, REFS(st->sum_rows.src, st->sum_rows.dst));
            break;
        }
        for (int l = 0; l < st->n_lib; l++) /* a library step's kernels touch the step's buffers */
            touch_all(first, last, s, st->lib[l].args, (size_t)st->lib[l].n_args);
    }
}

int64_t pass_plan_memory(rt_plan *p)
{
    int n = p->n_bufs;
    int *first = malloc(sizeof(int) * ((size_t)n + 1)), *last = malloc(sizeof(int) * ((size_t)n + 1));
    int *order = malloc(sizeof(int) * ((size_t)n + 1)), *near = malloc(sizeof(int) * ((size_t)n + 1));
    bool *placed = calloc((size_t)n + 1, sizeof(bool));
    if (!first || !last || !order || !near || !placed)
        ir_unreachable("out of memory");
    rt_plan_live_ranges(p, first, last);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (p->bufs[i].kind == RT_BUF_ACTIVATION) {
            p->bufs[i].offset = 0;
            if (first[i] < 0) /* never used: give it a range so it still gets a place */
                first[i] = last[i] = 0;
            order[m++] = i;
        }
    sort(order, m, p, first, before_size);
    int64_t peak = 0;
    for (int k = 0; k < m; k++) {
        int b = order[k];
        int64_t size = rounded(&p->bufs[b]);
        int nn = 0;
        for (int j = 0; j < n; j++)
            if (placed[j] && first[j] <= last[b] && first[b] <= last[j])
                near[nn++] = j;
        sort(near, nn, p, first, before_offset);
        int64_t at = 0, best = -1, best_gap = INT64_MAX;
        for (int j = 0; j < nn; j++) {
            const rt_plan_buffer *o = &p->bufs[near[j]];
            int64_t gap = o->offset - at;
            if (gap >= size && gap < best_gap) {
                best = at;
                best_gap = gap;
            }
            int64_t end = o->offset + rounded(o);
            at = end > at ? end : at;
        }
        p->bufs[b].offset = best >= 0 ? best : at;
        placed[b] = true;
        int64_t end = p->bufs[b].offset + size;
        peak = end > peak ? end : peak;
    }
    free(first);
    free(last);
    free(order);
    free(near);
    free(placed);
    p->arena_bytes = peak;
    return peak;
}
