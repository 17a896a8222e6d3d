/* library.c — the library steps of a plan as kernel IR (library.h): attention forward and
 * backward, column sums, scatter-add and cache rows, each built once here from the step's
 * fields and rendered by every backend.
 *
 * Kernels take one argument per plan buffer (named bN, as lowering's), indices counted from
 * the buffer's start (a ref's element offset is added to its indices), so the validator checks
 * every index against the whole buffer. All but write_rows are sequential kernels (kir.h).
 */
#include "codegen/library.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const rt_plan *p;
    cg_kernel *k;
    int *arg;            /* per plan buffer: the kernel's argument, -1 */
    rt_plan_ref *args;   /* the kernel's arguments as plan refs */
    int n_args, cap_args;
} lib;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

static void lib_init(lib *L, const rt_plan *p, int step, const char *what, bool seq)
{
    memset(L, 0, sizeof *L);
    L->p = p;
    char name[80];
    snprintf(name, sizeof name, "k%d_%s", step, what);
    L->k = cg_kernel_new(name);
    if (seq)
        cg_kernel_set_seq(L->k);
    L->arg = malloc(sizeof(int) * ((size_t)p->n_bufs + 1));
    if (!L->arg)
        ir_unreachable("out of memory");
    for (int i = 0; i < p->n_bufs; i++)
        L->arg[i] = -1;
}

/* Declares buffer r.buf as an argument (access merged with an earlier declaration). Every
 * argument is declared before the first node: a sequential kernel places loads of written
 * buffers by their access. */
static void use(lib *L, rt_plan_ref r, cg_access acc)
{
    if (r.buf < 0)
        return;
    if (L->arg[r.buf] >= 0) {
        L->k->args[L->arg[r.buf]].access |= acc;
        return;
    }
    const rt_plan_buffer *b = &L->p->bufs[r.buf];
    char name[32];
    snprintf(name, sizeof name, "b%d", r.buf);
    L->arg[r.buf] = cg_kernel_buffer(L->k, name, b->dtype, acc, b->numel);
    ir_grow((void **)&L->args, &L->cap_args, L->n_args + 1, sizeof *L->args);
    L->args[L->n_args++] = (rt_plan_ref){r.buf, 0};
}

static cg_val i64c(lib *L, int64_t v) { return cg_i64(L->k, v); }
static cg_val f32c(lib *L, double v) { return cg_f32(L->k, v); }
static cg_val add(lib *L, cg_val a, cg_val b) { return cg_add(L->k, a, b); }
static cg_val mul(lib *L, cg_val a, cg_val b) { return cg_mul(L->k, a, b); }
static cg_val sub(lib *L, cg_val a, cg_val b) { return cg_sub(L->k, a, b); }
static cg_val sel(lib *L, cg_val c, cg_val a, cg_val b) { return cg_select(L->k, c, a, b); }
static cg_val cmp(lib *L, cg_op op, cg_val a, cg_val b) { return cg_binary(L->k, op, a, b); }
static cg_val imin(lib *L, cg_val a, cg_val b) { return cg_binary(L->k, CG_MIN, a, b); }
static cg_val imax(lib *L, cg_val a, cg_val b) { return cg_binary(L->k, CG_MAX, a, b); }

/* Element idx of the view starting at ref r (a load in the buffer's compute type). */
static cg_val ld(lib *L, rt_plan_ref r, cg_val idx)
{
    return cg_load(L->k, L->arg[r.buf], add(L, i64c(L, r.offset), idx));
}

/* Stores v (converted to the buffer's compute type) at element idx of the view at r. */
static void st(lib *L, rt_plan_ref r, cg_val idx, cg_val v)
{
    cg_type ct = cg_compute_type(L->p->bufs[r.buf].dtype);
    cg_store(L->k, L->arg[r.buf], add(L, i64c(L, r.offset), idx), cg_cast(L->k, ct, v));
}

/* A load widened to f32 (f16/bf16 buffers load as f32 already; f32 stays). */
static cg_val ldf(lib *L, rt_plan_ref r, cg_val idx) { return cg_cast(L->k, CG_F32, ld(L, r, idx)); }

/* Σ v[0..n) as a balanced tree of adds (independent partial sums: shorter chains). */
static cg_val tree_sum(lib *L, cg_val *v, int64_t n)
{
    if (n == 0)
        return f32c(L, 0);
    while (n > 1) { /* pairs (0, 1), (2, 3), ... into 0, 1, ...; an odd last one carried over */
        int64_t h = n / 2;
        for (int64_t i = 0; i < h; i++)
            v[i] = add(L, v[2 * i], v[2 * i + 1]);
        if (n % 2)
            v[h] = v[n - 1];
        n = h + n % 2;
    }
    return v[0];
}

/* Kernel step work estimate: elements touched per dim-0 index (the CPU's grain). */
static int64_t work_of(const cg_kernel *k)
{
    int64_t w = 1;
    for (int d = 1; d < k->n_dims; d++)
        w *= k->dim[d];
    int64_t loops = 0;
    for (int j = 0; j < k->n_loops; j++) {
        int64_t e = k->loop[j];
        for (int x = k->loop_parent[j]; x >= 0; x = k->loop_parent[x])
            e *= k->loop[x];
        loops += e;
    }
    return w * (loops ? loops : 1);
}

static void lib_finish(lib *L, rt_plan_step *s, cg_kernel ***ks, int *n, int *cap)
{
    cg_kernel *k = L->k;
    free(L->arg);
    for (int i = 0; i < k->n_dims; i++)
        if (k->dim[i] == 0) { /* nothing to do (an empty attention: no queries): no kernel */
            free(L->args);
            cg_kernel_free(k);
            return;
        }
    cg_kernel_dce(k);
    ir_diag d;
    ir_diag_init(&d);
    if (!cg_kernel_validate(k, &d)) {
        cg_kernel_print(k, stderr);
        ir_diag_print(&d, stderr);
        ir_unreachable("library: built an invalid kernel");
    }
    ir_diag_free(&d);
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *ks = realloc(*ks, sizeof **ks * (size_t)*cap);
        if (!*ks)
            ir_unreachable("out of memory");
    }
    (*ks)[(*n)++] = k;
    if (s->n_lib >= RT_PLAN_MAX_LIB)
        ir_unreachable("library: too many kernels for one step");
    s->lib[s->n_lib++] = (rt_plan_kernel){xstrdup(k->name), L->n_args, L->args, k->dim[0], work_of(k), k->n_loops > 0};
}

/* Rows (or keys) a grid point takes: as many as keep per_row·tile values near 128 (registers
 * on a GPU), 1 to 8, at most n. */
static int64_t tile_of(int64_t per_row, int64_t n)
{
    int64_t t = 128 / (per_row > 0 ? per_row : 1);
    t = t < 1 ? 1 : t > 8 ? 8 : t;
    return t < n ? t : n > 0 ? n : 1; /* >= 1: an empty attention (n = 0) has no tiles, not a zero tile */
}

/* ---- attention ------------------------------------------------------------------------------ */

/* What the attention kernels share about one query row (or the row a key meets). */
typedef struct {
    const rt_plan_attention *a;
    cg_val b, h, g;      /* batch, query head, kv head */
} attn_at;

/* The score of query row t (its q values qv) against key j (its k values kv): scale·q·k plus
 * the mask, −inf where causality forbids j. */
static cg_val score(lib *L, const attn_at *at, cg_val t, cg_val j, const cg_val *qv, const cg_val *kv)
{
    const rt_plan_attention *a = at->a;
    cg_val *prod = malloc(sizeof(cg_val) * ((size_t)a->D + 1));
    if (!prod)
        ir_unreachable("out of memory");
    for (int64_t d = 0; d < a->D; d++)
        prod[d] = mul(L, qv[d], kv[d]);
    cg_val s = mul(L, tree_sum(L, prod, a->D), f32c(L, a->scale));
    free(prod);
    if (a->mask.buf >= 0) {
        cg_val mi = add(L, add(L, mul(L, at->b, i64c(L, a->mask_stride[0])), mul(L, at->h, i64c(L, a->mask_stride[1]))),
                        add(L, mul(L, t, i64c(L, a->mask_stride[2])), mul(L, j, i64c(L, a->mask_stride[3]))));
        s = add(L, s, ldf(L, a->mask, mi));
    }
    if (a->causal) /* allowed: j < t + S - T + 1 */
        s = sel(L, cmp(L, CG_LT, j, add(L, t, i64c(L, a->S - a->T + 1))), s, f32c(L, -INFINITY));
    return s;
}

/* 1 + the last key j that the mask leaves (not −inf) to one of the n query rows t: the keys
 * after it score −inf in every row (decode over a KV cache: the rows not written yet), so the
 * attention loop stops there (the CPU's attention_cpu.c does the same). A scan of the mask
 * rows, (D + E) times less than the keys and values it saves reading. */
static cg_val masked_tail(lib *L, const attn_at *at, const cg_val *t, int64_t n)
{
    const rt_plan_attention *a = at->a;
    cg_kernel *k = L->k;
    int lm = cg_loop_open(k, a->S, -1);
    cg_val j = cg_lidx(k, lm), tail = cg_carry(k, lm, i64c(L, 0)), open = -1;
    cg_val base = add(L, mul(L, at->b, i64c(L, a->mask_stride[0])), mul(L, at->h, i64c(L, a->mask_stride[1])));
    for (int64_t r = 0; r < n; r++) {
        cg_val mi = add(L, base, add(L, mul(L, t[r], i64c(L, a->mask_stride[2])), mul(L, j, i64c(L, a->mask_stride[3]))));
        cg_val fin = cmp(L, CG_NE, ldf(L, a->mask, mi), f32c(L, -INFINITY));
        open = open < 0 ? fin : cg_binary(k, CG_OR, open, fin);
    }
    cg_carry_next(k, tail, sel(L, open, add(L, j, i64c(L, 1)), tail));
    cg_loop_close(k);
    return cg_last(k, tail);
}

/* n values of row `row` of a view with row stride `rs` from `base` (contiguous). */
static void load_row(lib *L, rt_plan_ref r, cg_val base, int64_t n, cg_val *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = ldf(L, r, add(L, base, i64c(L, i)));
}

/* Element offset of (b, x, t) in a view with strides st[3]. */
static cg_val at3(lib *L, const int64_t *st, cg_val b, cg_val x, cg_val t)
{
    return add(L, add(L, mul(L, b, i64c(L, st[0])), mul(L, x, i64c(L, st[1]))), mul(L, t, i64c(L, st[2])));
}

static cg_val *vals(int64_t n)
{
    cg_val *v = calloc((size_t)n + 1, sizeof *v);
    if (!v)
        ir_unreachable("out of memory");
    return v;
}

/* Forward without keys (S = 0): every row's output is 0 (ir.md) and its log-sum-exp -inf; a
 * grid point per (b, h, row). The kernel IR has no loops of extent 0. */
static void attention_no_keys(lib *L, const rt_plan_attention *a)
{
    cg_kernel *k = L->k;
    use(L, a->out, CG_OUT), use(L, a->lse, CG_OUT);
    cg_kernel_dim(k, a->B * a->H * a->T);
    cg_val p = cg_pidx(k, 0), t = cg_mod(k, p, i64c(L, a->T)), bh = cg_div(k, p, i64c(L, a->T));
    cg_val b = cg_div(k, bh, i64c(L, a->H)), h = cg_mod(k, bh, i64c(L, a->H));
    cg_val ob = at3(L, a->out_stride, b, h, t);
    for (int64_t e = 0; e < a->E; e++)
        st(L, a->out, add(L, ob, i64c(L, e)), f32c(L, 0));
    if (a->lse.buf >= 0)
        st(L, a->lse, p, f32c(L, -INFINITY));
}

/* Forward: a grid point per (b, h, tile of QB rows), online softmax over the keys. */
static void attention_forward(lib *L, const rt_plan_attention *a)
{
    cg_kernel *k = L->k;
    if (a->S == 0) {
        attention_no_keys(L, a);
        return;
    }
    use(L, a->q, CG_IN), use(L, a->k, CG_IN), use(L, a->v, CG_IN), use(L, a->mask, CG_IN);
    use(L, a->out, CG_OUT), use(L, a->lse, CG_OUT);
    int64_t QB = tile_of(a->D + a->E, a->T), nqb = (a->T + QB - 1) / QB, hpg = a->H / a->G;
    cg_kernel_dim(k, a->B * a->H * nqb);
    cg_val p = cg_pidx(k, 0), qb = cg_mod(k, p, i64c(L, nqb)), bh = cg_div(k, p, i64c(L, nqb));
    attn_at at = {a, cg_div(k, bh, i64c(L, a->H)), cg_mod(k, bh, i64c(L, a->H)), -1};
    at.g = cg_div(k, at.h, i64c(L, hpg));
    cg_val t[8], *q[8], m[8], l[8], *acc[8];
    for (int64_t r = 0; r < QB; r++) {
        t[r] = imin(L, add(L, mul(L, qb, i64c(L, QB)), i64c(L, r)), i64c(L, a->T - 1));
        q[r] = vals(a->D);
        load_row(L, a->q, at3(L, a->q_stride, at.b, at.h, t[r]), a->D, q[r]);
        acc[r] = vals(a->E);
    }
    cg_val bound = -1;
    if (a->causal) /* the tile's last row sees the most keys */
        bound = add(L, t[QB - 1], i64c(L, a->S - a->T + 1));
    if (a->mask.buf >= 0) /* and none past the keys the mask leaves to some row of the tile */
        bound = bound >= 0 ? imin(L, bound, masked_tail(L, &at, t, QB)) : masked_tail(L, &at, t, QB);
    int lj = cg_loop_open(k, a->S, bound);
    cg_val j = cg_lidx(k, lj);
    cg_val *kv = vals(a->D), *vv = vals(a->E);
    load_row(L, a->k, at3(L, a->k_stride, at.b, at.g, j), a->D, kv);
    load_row(L, a->v, at3(L, a->v_stride, at.b, at.g, j), a->E, vv);
    for (int64_t r = 0; r < QB; r++) {
        m[r] = cg_carry(k, lj, f32c(L, -INFINITY));
        l[r] = cg_carry(k, lj, f32c(L, 0));
        for (int64_t e = 0; e < a->E; e++)
            acc[r][e] = cg_carry(k, lj, f32c(L, 0));
        cg_val s = score(L, &at, t[r], j, q[r], kv);
        cg_val mn = cg_binary(k, CG_MAX, m[r], s);
        cg_val dead = cmp(L, CG_EQ, mn, f32c(L, -INFINITY)); /* nothing allowed yet */
        cg_val corr = sel(L, dead, f32c(L, 1), cg_unary(k, CG_EXP, sub(L, m[r], mn)));
        cg_val pe = sel(L, dead, f32c(L, 0), cg_unary(k, CG_EXP, sub(L, s, mn)));
        cg_carry_next(k, l[r], add(L, mul(L, l[r], corr), pe));
        for (int64_t e = 0; e < a->E; e++)
            cg_carry_next(k, acc[r][e], add(L, mul(L, acc[r][e], corr), mul(L, pe, vv[e])));
        cg_carry_next(k, m[r], mn);
    }
    cg_loop_close(k);
    for (int64_t r = 0; r < QB; r++) {
        cg_val ll = cg_last(k, l[r]), lm = cg_last(k, m[r]);
        cg_val some = cmp(L, CG_GT, ll, f32c(L, 0));
        cg_val inv = sel(L, some, cg_unary(k, CG_RECIP, ll), f32c(L, 0));
        cg_val ob = at3(L, a->out_stride, at.b, at.h, t[r]);
        for (int64_t e = 0; e < a->E; e++)
            st(L, a->out, add(L, ob, i64c(L, e)), mul(L, cg_last(k, acc[r][e]), inv));
        if (a->lse.buf >= 0) {
            cg_val row = add(L, mul(L, add(L, mul(L, at.b, i64c(L, a->H)), at.h), i64c(L, a->T)), t[r]);
            st(L, a->lse, row, sel(L, some, add(L, lm, cg_unary(k, CG_LOG, ll)), f32c(L, -INFINITY)));
        }
        free(q[r]);
        free(acc[r]);
    }
    free(kv);
    free(vv);
}

/* p of a score against the row's log-sum-exp (0 where the row has no allowed key). */
static cg_val prob(lib *L, cg_val s, cg_val lse)
{
    cg_val live = cmp(L, CG_GT, lse, f32c(L, -INFINITY));
    return sel(L, live, cg_unary(L->k, CG_EXP, sub(L, s, lse)), f32c(L, 0));
}

/* Σ x[i]·y[i], i < n */
static cg_val dot(lib *L, const cg_val *x, const cg_val *y, int64_t n)
{
    cg_val *prod = vals(n);
    for (int64_t i = 0; i < n; i++)
        prod[i] = mul(L, x[i], y[i]);
    cg_val s = tree_sum(L, prod, n);
    free(prod);
    return s;
}

/* Backward, kernel 1: per query row, Δ (and the lse when the forward is not in the plan). */
static void attention_stats(lib *L, const rt_plan_attention_grad *g)
{
    const rt_plan_attention *a = &g->fwd;
    cg_kernel *k = L->k;
    use(L, a->q, CG_IN), use(L, a->k, CG_IN), use(L, a->v, CG_IN), use(L, a->mask, CG_IN), use(L, g->dy, CG_IN);
    use(L, a->out, CG_IN);
    use(L, a->lse, g->lse_own ? CG_OUT : CG_IN);
    use(L, g->delta, CG_OUT);
    int64_t hpg = a->H / a->G;
    cg_kernel_dim(k, a->B * a->H * a->T);
    cg_val row = cg_pidx(k, 0), t = cg_mod(k, row, i64c(L, a->T)), bh = cg_div(k, row, i64c(L, a->T));
    attn_at at = {a, cg_div(k, bh, i64c(L, a->H)), cg_mod(k, bh, i64c(L, a->H)), -1};
    at.g = cg_div(k, at.h, i64c(L, hpg));
    cg_val *q = vals(a->D), *dy = vals(a->E), *kv = vals(a->D), *vv = vals(a->E);
    load_row(L, a->q, at3(L, a->q_stride, at.b, at.h, t), a->D, q);
    load_row(L, g->dy, at3(L, g->dy_stride, at.b, at.h, t), a->E, dy);
    cg_val bound = a->causal ? add(L, t, i64c(L, a->S - a->T + 1)) : -1;
    cg_val lse;
    if (g->lse_own) { /* the forward's online max and sum */
        int lj = cg_loop_open(k, a->S, bound);
        cg_val j = cg_lidx(k, lj);
        load_row(L, a->k, at3(L, a->k_stride, at.b, at.g, j), a->D, kv);
        cg_val m = cg_carry(k, lj, f32c(L, -INFINITY)), l = cg_carry(k, lj, f32c(L, 0));
        cg_val s = score(L, &at, t, j, q, kv), mn = cg_binary(k, CG_MAX, m, s);
        cg_val dead = cmp(L, CG_EQ, mn, f32c(L, -INFINITY));
        cg_val corr = sel(L, dead, f32c(L, 1), cg_unary(k, CG_EXP, sub(L, m, mn)));
        cg_val pe = sel(L, dead, f32c(L, 0), cg_unary(k, CG_EXP, sub(L, s, mn)));
        cg_carry_next(k, l, add(L, mul(L, l, corr), pe));
        cg_carry_next(k, m, mn);
        cg_loop_close(k);
        cg_val ll = cg_last(k, l);
        lse = sel(L, cmp(L, CG_GT, ll, f32c(L, 0)), add(L, cg_last(k, m), cg_unary(k, CG_LOG, ll)), f32c(L, -INFINITY));
        st(L, a->lse, row, lse);
    } else {
        lse = ldf(L, a->lse, row);
    }
    cg_val delta;
    if (a->out.buf >= 0) { /* Δ = dy·out */
        cg_val *o = vals(a->E);
        load_row(L, a->out, at3(L, a->out_stride, at.b, at.h, t), a->E, o);
        delta = dot(L, dy, o, a->E);
        free(o);
    } else { /* Δ = Σ_j p_j (dy·v_j) */
        int lj = cg_loop_open(k, a->S, bound);
        cg_val j = cg_lidx(k, lj);
        load_row(L, a->k, at3(L, a->k_stride, at.b, at.g, j), a->D, kv);
        load_row(L, a->v, at3(L, a->v_stride, at.b, at.g, j), a->E, vv);
        cg_val acc = cg_carry(k, lj, f32c(L, 0));
        cg_val pr = prob(L, score(L, &at, t, j, q, kv), lse);
        cg_carry_next(k, acc, add(L, acc, mul(L, pr, dot(L, dy, vv, a->E))));
        cg_loop_close(k);
        delta = cg_last(k, acc);
    }
    st(L, g->delta, row, delta);
    free(q), free(dy), free(kv), free(vv);
}

/* Backward, kernel 2: dq and dmask, per (b, h, tile of query rows), over the keys. */
static void attention_rows(lib *L, const rt_plan_attention_grad *g)
{
    const rt_plan_attention *a = &g->fwd;
    cg_kernel *k = L->k;
    use(L, a->q, CG_IN), use(L, a->k, CG_IN), use(L, a->v, CG_IN), use(L, a->mask, CG_IN), use(L, g->dy, CG_IN);
    use(L, a->lse, CG_IN), use(L, g->delta, CG_IN);
    use(L, g->dq, CG_OUT), use(L, g->dmask, CG_OUT);
    int64_t QB = tile_of(2 * a->D + a->E, a->T), nqb = (a->T + QB - 1) / QB, hpg = a->H / a->G;
    cg_kernel_dim(k, a->B * a->H * nqb);
    cg_val p = cg_pidx(k, 0), qb = cg_mod(k, p, i64c(L, nqb)), bh = cg_div(k, p, i64c(L, nqb));
    attn_at at = {a, cg_div(k, bh, i64c(L, a->H)), cg_mod(k, bh, i64c(L, a->H)), -1};
    at.g = cg_div(k, at.h, i64c(L, hpg));
    cg_val t[8], row[8], lse[8], delta[8], *q[8], *dy[8], *acc[8];
    for (int64_t r = 0; r < QB; r++) {
        t[r] = imin(L, add(L, mul(L, qb, i64c(L, QB)), i64c(L, r)), i64c(L, a->T - 1));
        row[r] = add(L, mul(L, bh, i64c(L, a->T)), t[r]);
        q[r] = vals(a->D), dy[r] = vals(a->E), acc[r] = vals(a->D);
        load_row(L, a->q, at3(L, a->q_stride, at.b, at.h, t[r]), a->D, q[r]);
        load_row(L, g->dy, at3(L, g->dy_stride, at.b, at.h, t[r]), a->E, dy[r]);
        lse[r] = ldf(L, a->lse, row[r]);
        delta[r] = ldf(L, g->delta, row[r]);
    }
    /* with dmask every score of the row is written (0 where not allowed): no bound then */
    cg_val bound = a->causal && g->dmask.buf < 0 ? add(L, t[QB - 1], i64c(L, a->S - a->T + 1)) : -1;
    int lj = cg_loop_open(k, a->S, bound);
    cg_val j = cg_lidx(k, lj);
    cg_val *kv = vals(a->D), *vv = vals(a->E);
    load_row(L, a->k, at3(L, a->k_stride, at.b, at.g, j), a->D, kv);
    load_row(L, a->v, at3(L, a->v_stride, at.b, at.g, j), a->E, vv);
    for (int64_t r = 0; r < QB; r++) {
        for (int64_t d = 0; d < a->D; d++)
            acc[r][d] = cg_carry(k, lj, f32c(L, 0));
        cg_val pr = prob(L, score(L, &at, t[r], j, q[r], kv), lse[r]);
        cg_val ds = mul(L, pr, sub(L, dot(L, dy[r], vv, a->E), delta[r]));
        for (int64_t d = 0; d < a->D; d++)
            cg_carry_next(k, acc[r][d], add(L, acc[r][d], mul(L, ds, kv[d])));
        if (g->dmask.buf >= 0)
            st(L, g->dmask, add(L, mul(L, row[r], i64c(L, a->S)), j), ds);
    }
    cg_loop_close(k);
    for (int64_t r = 0; r < QB; r++) {
        for (int64_t d = 0; g->dq.buf >= 0 && d < a->D; d++)
            st(L, g->dq, add(L, mul(L, row[r], i64c(L, a->D)), i64c(L, d)),
               mul(L, cg_last(k, acc[r][d]), f32c(L, a->scale)));
        free(q[r]), free(dy[r]), free(acc[r]);
    }
    free(kv), free(vv);
}

/* Backward, kernel 3: dk and dv, per (b, kv head, tile of keys), over the query heads of the
 * kv head and their rows (causal: counted down from the last row to the first that sees the
 * tile). */
static void attention_keys(lib *L, const rt_plan_attention_grad *g)
{
    const rt_plan_attention *a = &g->fwd;
    cg_kernel *k = L->k;
    use(L, a->q, CG_IN), use(L, a->k, CG_IN), use(L, a->v, CG_IN), use(L, a->mask, CG_IN), use(L, g->dy, CG_IN);
    use(L, a->lse, CG_IN), use(L, g->delta, CG_IN);
    use(L, g->dk, CG_OUT), use(L, g->dv, CG_OUT);
    int64_t KB = tile_of(2 * (a->D + a->E), a->S), nkb = (a->S + KB - 1) / KB, hpg = a->H / a->G;
    int64_t shift = a->S - a->T + 1;
    cg_kernel_dim(k, a->B * a->G * nkb);
    cg_val p = cg_pidx(k, 0), kb = cg_mod(k, p, i64c(L, nkb)), bg = cg_div(k, p, i64c(L, nkb));
    attn_at at = {a, cg_div(k, bg, i64c(L, a->G)), -1, cg_mod(k, bg, i64c(L, a->G))};
    cg_val j[8], *kv[8], *vv[8], *dk[8], *dv[8], *dki[8], *dvi[8];
    for (int64_t r = 0; r < KB; r++) {
        j[r] = imin(L, add(L, mul(L, kb, i64c(L, KB)), i64c(L, r)), i64c(L, a->S - 1));
        kv[r] = vals(a->D), vv[r] = vals(a->E);
        dk[r] = vals(a->D), dv[r] = vals(a->E), dki[r] = vals(a->D), dvi[r] = vals(a->E);
        load_row(L, a->k, at3(L, a->k_stride, at.b, at.g, j[r]), a->D, kv[r]);
        load_row(L, a->v, at3(L, a->v_stride, at.b, at.g, j[r]), a->E, vv[r]);
    }
    int lh = cg_loop_open(k, hpg, -1);
    at.h = add(L, mul(L, at.g, i64c(L, hpg)), cg_lidx(k, lh));
    for (int64_t r = 0; r < KB; r++) {
        for (int64_t d = 0; d < a->D; d++)
            dk[r][d] = cg_carry(k, lh, f32c(L, 0));
        for (int64_t e = 0; e < a->E; e++)
            dv[r][e] = cg_carry(k, lh, f32c(L, 0));
    }
    cg_val bound = -1;
    if (a->causal) /* rows i >= j - shift + 1 see key j: the tile's first key the most */
        bound = sub(L, i64c(L, a->T), imax(L, i64c(L, 0), sub(L, mul(L, kb, i64c(L, KB)), i64c(L, shift - 1))));
    int li = cg_loop_open(k, a->T, bound);
    cg_val i = sub(L, i64c(L, a->T - 1), cg_lidx(k, li));
    cg_val row = add(L, mul(L, add(L, mul(L, at.b, i64c(L, a->H)), at.h), i64c(L, a->T)), i);
    cg_val *q = vals(a->D), *dy = vals(a->E);
    load_row(L, a->q, at3(L, a->q_stride, at.b, at.h, i), a->D, q);
    load_row(L, g->dy, at3(L, g->dy_stride, at.b, at.h, i), a->E, dy);
    cg_val lse = ldf(L, a->lse, row), delta = ldf(L, g->delta, row);
    for (int64_t r = 0; r < KB; r++) {
        for (int64_t d = 0; d < a->D; d++)
            dki[r][d] = cg_carry(k, li, dk[r][d]);
        for (int64_t e = 0; e < a->E; e++)
            dvi[r][e] = cg_carry(k, li, dv[r][e]);
        cg_val pr = prob(L, score(L, &at, i, j[r], q, kv[r]), lse);
        cg_val ds = mul(L, pr, sub(L, dot(L, dy, vv[r], a->E), delta));
        for (int64_t d = 0; d < a->D; d++)
            cg_carry_next(k, dki[r][d], add(L, dki[r][d], mul(L, ds, q[d])));
        for (int64_t e = 0; e < a->E; e++)
            cg_carry_next(k, dvi[r][e], add(L, dvi[r][e], mul(L, pr, dy[e])));
    }
    cg_loop_close(k);
    for (int64_t r = 0; r < KB; r++) {
        for (int64_t d = 0; d < a->D; d++)
            cg_carry_next(k, dk[r][d], cg_last(k, dki[r][d]));
        for (int64_t e = 0; e < a->E; e++)
            cg_carry_next(k, dv[r][e], cg_last(k, dvi[r][e]));
    }
    cg_loop_close(k);
    for (int64_t r = 0; r < KB; r++) {
        cg_val kr = add(L, mul(L, bg, i64c(L, a->S)), j[r]);
        for (int64_t d = 0; g->dk.buf >= 0 && d < a->D; d++)
            st(L, g->dk, add(L, mul(L, kr, i64c(L, a->D)), i64c(L, d)), mul(L, cg_last(k, dk[r][d]), f32c(L, a->scale)));
        for (int64_t e = 0; g->dv.buf >= 0 && e < a->E; e++)
            st(L, g->dv, add(L, mul(L, kr, i64c(L, a->E)), i64c(L, e)), cg_last(k, dv[r][e]));
        free(kv[r]), free(vv[r]), free(dk[r]), free(dv[r]), free(dki[r]), free(dvi[r]);
    }
    free(q), free(dy);
}

/* ---- the other library steps ----------------------------------------------------------------- */

/* SUM_ROWS: a grid point per column, rows in order. */
static void sum_rows(lib *L, const rt_plan_sum_rows *s)
{
    cg_kernel *k = L->k;
    use(L, s->src, CG_IN), use(L, s->dst, CG_OUT);
    cg_kernel_dim(k, s->width);
    cg_val c = cg_pidx(k, 0);
    int lr = cg_loop_open(k, s->rows, -1);
    cg_val acc = cg_carry(k, lr, f32c(L, 0));
    cg_carry_next(k, acc, add(L, acc, ldf(L, s->src, add(L, mul(L, cg_lidx(k, lr), i64c(L, s->src_stride)), c))));
    cg_loop_close(k);
    st(L, s->dst, c, cg_last(k, acc));
}

/* SCATTER_ADD: a grid point per column: zeroed, then the rows added at their ids in order. */
static void scatter_add(lib *L, const rt_plan_scatter *s)
{
    cg_kernel *k = L->k;
    use(L, s->src, CG_IN), use(L, s->ids, CG_IN), use(L, s->dst, CG_INOUT);
    cg_kernel_dim(k, s->width);
    cg_val c = cg_pidx(k, 0), w = i64c(L, s->width);
    int lz = cg_loop_open(k, s->rows, -1);
    st(L, s->dst, add(L, mul(L, cg_lidx(k, lz), w), c), f32c(L, 0));
    cg_loop_close(k);
    int lj = cg_loop_open(k, s->n, -1);
    cg_val j = cg_lidx(k, lj);
    cg_val id = cg_cast(k, CG_I64, ld(L, s->ids, j));
    cg_val ok = cg_binary(k, CG_AND, cmp(L, CG_GE, id, i64c(L, 0)), cmp(L, CG_LT, id, i64c(L, s->rows)));
    cg_val at = add(L, mul(L, imin(L, imax(L, id, i64c(L, 0)), i64c(L, s->rows - 1)), w), c);
    cg_val x = sel(L, ok, ldf(L, s->src, add(L, mul(L, j, i64c(L, s->src_stride)), c)), f32c(L, 0));
    st(L, s->dst, at, add(L, ldf(L, s->dst, at), x));
    cg_loop_close(k);
}

/* WRITE_ROWS: dst rows [p, p + rows_src) of each outer block = src's, one element a point. */
static void write_rows(lib *L, const rt_plan_write_rows *w)
{
    cg_kernel *k = L->k;
    use(L, w->src, CG_IN), use(L, w->pos, CG_IN), use(L, w->dst, CG_OUT);
    int64_t es = ir_dtype_size(L->p->bufs[w->dst.buf].dtype), row = w->row_bytes / es;
    cg_kernel_dim(k, w->outer * w->rows_src);
    cg_kernel_dim(k, row);
    cg_val o = cg_pidx(k, 0), x = cg_pidx(k, 1);
    cg_val pos = imin(L, imax(L, cg_cast(k, CG_I64, ld(L, w->pos, i64c(L, 0))), i64c(L, 0)),
                      i64c(L, w->rows_dst - w->rows_src));
    cg_val blk = cg_div(k, o, i64c(L, w->rows_src)), r = cg_mod(k, o, i64c(L, w->rows_src));
    cg_val di = add(L, mul(L, add(L, add(L, mul(L, blk, i64c(L, w->rows_dst)), pos), r), i64c(L, row)), x);
    st(L, w->dst, di, ld(L, w->src, add(L, mul(L, o, i64c(L, row)), x)));
}

/* ---- the quantized GEMM ------------------------------------------------------------------- */

/* Code (row, col) of a quantized B stored [rows, cols] (plan.h: rt_plan_gemm's qbits) as f32,
 * its group's scale not applied: an int8 byte, or an int4 nibble (low first) less 8. */
static cg_val qcode(lib *L, const rt_plan_gemm *g, cg_val row, cg_val col, int64_t cols)
{
    cg_kernel *k = L->k;
    if (g->qbits == 8)
        return cg_cast(k, CG_F32, ld(L, g->b, add(L, mul(L, row, i64c(L, cols)), col)));
    cg_val byte = ld(L, g->b, add(L, mul(L, row, i64c(L, cols / 2)), cg_div(k, col, i64c(L, 2))));
    cg_val sixteen = cg_const_int(k, CG_I32, 16);
    cg_val hi = cmp(L, CG_EQ, cg_mod(k, col, i64c(L, 2)), i64c(L, 1));
    cg_val nib = sel(L, hi, cg_div(k, byte, sixteen), cg_mod(k, byte, sixteen));
    return cg_cast(k, CG_F32, sub(L, nib, cg_const_int(k, CG_I32, 8)));
}

/* GEMM over a weight-only quantized B: C = A · dequantize(B) + bias (the bias left to the
 * epilogue kernel when there is one; alpha 1, beta 0: the plan validator's rule). A grid point
 * per (batch entry, tile of QM rows of A, column n); over B's groups along K, each group's
 * partial sums scaled once, so a column's codes are read once per tile. Targets whose GEMM
 * takes f32 only run it (the CPU reads the codes itself, qgemm_cpu.c). */
static void qgemm(lib *L, const rt_plan_gemm *g)
{
    cg_kernel *k = L->k;
    use(L, g->a, CG_IN), use(L, g->b, CG_IN), use(L, g->b_scales, CG_IN);
    if (!g->epi.name)
        use(L, g->bias, CG_IN);
    use(L, g->c, CG_OUT);
    int64_t nb = 1;
    for (int i = 0; i < g->nbatch; i++)
        nb *= g->batch[i];
    int64_t QM = g->M < 8 ? g->M : 8, nmt = QM ? (g->M + QM - 1) / QM : 0, ng = g->qgroup ? g->K / g->qgroup : 0;
    int64_t cols = g->trans_b ? g->K : g->N;
    cg_kernel_dim(k, nb * nmt * g->N);
    cg_val p = cg_pidx(k, 0), n = cg_mod(k, p, i64c(L, g->N)), rest = cg_div(k, p, i64c(L, g->N));
    cg_val mt = cg_mod(k, rest, i64c(L, nmt)), bi = cg_div(k, rest, i64c(L, nmt));
    cg_val oa = i64c(L, 0), oc = i64c(L, 0);
    for (int i = g->nbatch - 1; i >= 0; i--) { /* innermost batch dim last */
        cg_val x = cg_mod(k, bi, i64c(L, g->batch[i]));
        bi = cg_div(k, bi, i64c(L, g->batch[i]));
        oa = add(L, oa, mul(L, x, i64c(L, g->stride_a[i])));
        oc = add(L, oc, mul(L, x, i64c(L, g->stride_c[i])));
    }
    cg_val m[8], tot[8], part[8];
    for (int64_t r = 0; r < QM; r++)
        m[r] = imin(L, add(L, mul(L, mt, i64c(L, QM)), i64c(L, r)), i64c(L, g->M - 1));
    if (ng > 0) {
        int lq = cg_loop_open(k, ng, -1);
        cg_val q = cg_lidx(k, lq);
        for (int64_t r = 0; r < QM; r++)
            tot[r] = cg_carry(k, lq, f32c(L, 0));
        int li = cg_loop_open(k, g->qgroup, -1);
        cg_val kk = add(L, mul(L, q, i64c(L, g->qgroup)), cg_lidx(k, li));
        cg_val code = g->trans_b ? qcode(L, g, n, kk, cols) : qcode(L, g, kk, n, cols);
        for (int64_t r = 0; r < QM; r++) {
            cg_val ai = g->trans_a ? add(L, mul(L, kk, i64c(L, g->lda)), m[r]) : add(L, mul(L, m[r], i64c(L, g->lda)), kk);
            part[r] = cg_carry(k, li, f32c(L, 0));
            cg_carry_next(k, part[r], add(L, part[r], mul(L, ldf(L, g->a, add(L, oa, ai)), code)));
        }
        cg_loop_close(k);
        cg_val si = g->trans_b ? add(L, mul(L, n, i64c(L, ng)), q) : add(L, mul(L, q, i64c(L, g->N)), n);
        cg_val scale = ldf(L, g->b_scales, si);
        for (int64_t r = 0; r < QM; r++)
            cg_carry_next(k, tot[r], add(L, tot[r], mul(L, scale, cg_last(k, part[r]))));
        cg_loop_close(k);
    }
    cg_val bias = g->bias.buf >= 0 && !g->epi.name ? ldf(L, g->bias, n) : f32c(L, 0); /* else the epilogue's */
    for (int64_t r = 0; r < QM; r++) {
        cg_val acc = ng > 0 ? cg_last(k, tot[r]) : f32c(L, 0);
        st(L, g->c, add(L, oc, add(L, mul(L, m[r], i64c(L, g->ldc)), n)), add(L, acc, bias));
    }
}

void cg_library_kernels(rt_plan *p, int step, cg_kernel ***ks, int *n, int *cap)
{
    rt_plan_step *s = &p->steps[step];
    lib L;
    switch (s->kind) {
    case RT_STEP_ATTENTION:
        lib_init(&L, p, step, "attention", true);
        attention_forward(&L, &s->attn);
        lib_finish(&L, s, ks, n, cap);
        break;
    case RT_STEP_ATTENTION_GRAD:
        lib_init(&L, p, step, "attention_stats", true);
        attention_stats(&L, &s->agrad);
        lib_finish(&L, s, ks, n, cap);
        if (s->agrad.dq.buf >= 0 || s->agrad.dmask.buf >= 0) {
            lib_init(&L, p, step, "attention_dq", true);
            attention_rows(&L, &s->agrad);
            lib_finish(&L, s, ks, n, cap);
        }
        if (s->agrad.dk.buf >= 0 || s->agrad.dv.buf >= 0) {
            lib_init(&L, p, step, "attention_dkv", true);
            attention_keys(&L, &s->agrad);
            lib_finish(&L, s, ks, n, cap);
        }
        break;
    case RT_STEP_SUM_ROWS:
        lib_init(&L, p, step, "sum_rows", true);
        sum_rows(&L, &s->sum_rows);
        lib_finish(&L, s, ks, n, cap);
        break;
    case RT_STEP_SCATTER_ADD:
        lib_init(&L, p, step, "scatter_add", true);
        scatter_add(&L, &s->scatter);
        lib_finish(&L, s, ks, n, cap);
        break;
    case RT_STEP_GEMM:
        if (!s->gemm.qbits)
            break;
        lib_init(&L, p, step, "qgemm", true);
        qgemm(&L, &s->gemm);
        lib_finish(&L, s, ks, n, cap);
        break;
    case RT_STEP_WRITE_ROWS:
        lib_init(&L, p, step, "write_rows", false);
        write_rows(&L, &s->rows);
        lib_finish(&L, s, ks, n, cap);
        break;
    default: break;
    }
}
