/* attention_grad_cpu.c — the backward of fused attention on the CPU (rt_attention_grad_f32,
 * exec.h): dq, dk, dv (and the scores' gradient dmask) of ir.md's attention_grad in one pass
 * over the operands, for every attention_grad of the same operands at once.
 *
 * For query row i with allowed keys j: s_j = scale·q_i·k_j + mask_ij, p = softmax(s),
 * dp_j = dy_i·v_j, D_i = Σ_j p_j dp_j, ds_j = p_j (dp_j − D_i); then
 * dq_i = scale Σ_j ds_j k_j, dk_j += scale ds_j q_i, dv_j += p_j dy_i, dmask_ij = ds_j.
 * Rows go in blocks of QB queries, keys in blocks of KB; every product of a block (scores
 * Q·Kᵀ, dp = dY·Vᵀ, dv += Pᵀ·dY, dk += scale·dSᵀ·Q, dq += scale·dS·K) is a small SGEMM handed to
 * OpenBLAS, single-threaded inside the pool; the softmax loops run on rt_v8f lanes. Pass 1 over the key blocks finds
 * each row's max m and sum l online (rescaled when m grows); D_i = dy_i·out_i from the forward
 * attention's output when the plan gives it (fwd.out), else from u = Σ e^(s−m) dp accumulated
 * alongside (D = u / l). Pass 2 recomputes s and dp block by block and accumulates. No T×S
 * buffer exists: scratch is a few KB-wide blocks per worker.
 *
 * Determinism: work is split over (b, kv head g) only; a task runs the query heads of its kv
 * head and their query blocks in a fixed order and owns dk[b, g] and dv[b, g], so every sum
 * has one order whatever the thread count. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "runtime/cpu/exec_cpu.h"
#include "runtime/cpu/fast_expf.h"

enum { KB = 64, QB = 64 };
enum { LANES = 8 }; /* rt_v8f lanes; KB is a multiple */

typedef struct {
    const rt_plan_attention_grad *g;
    const float *q, *k, *v, *mask, *dy, *out; /* out: the forward's output, or NULL */
    float *dq, *dk, *dv, *dmask;
} agrad_ctx;

/* Per-worker scratch: scores / probabilities and dp / ds of a query block (QB x KB each), row
 * statistics (QB each), dq rows (QB x D). */
typedef struct {
    float *s, *dp, *m, *l, *u, *dqa;
} agrad_scratch;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT_CLONES
#endif

static inline int64_t key_limit(const rt_plan_attention *a, int64_t i)
{
    int64_t j = a->causal ? i + a->S - a->T + 1 : a->S;
    return j < 0 ? 0 : j > a->S ? a->S : j;
}

/* Leading dimension for cblas of `rows` rows of `cols` floats `stride` apart: cblas wants at
 * least max(1, cols) even where a single row's stride does not matter. */
static inline int blas_ld(int64_t stride, int64_t rows, int64_t cols)
{
    int64_t need = cols > 1 ? cols : 1;
    return (int)(rows <= 1 && stride < need ? need : stride);
}

/* Scores (scaled, masked, -inf where not allowed) and dp of rows [i0, i0+nr) against keys
 * [j0, j0+n) into w->s and w->dp (row stride KB), padded with -inf / 0 to a multiple of LANES. */
static void block_scores(const agrad_ctx *c, const float *qb, const float *kb, const float *vb, const float *dyb,
                         const float *mb, int64_t i0, int64_t nr, int64_t j0, int64_t n, bool want_dp,
                         const agrad_scratch *w)
{
    const rt_plan_attention *a = &c->g->fwd;
    int64_t D = a->D, E = a->E, n8 = (n + LANES - 1) / LANES * LANES;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)n, (int)D, (float)a->scale,
                qb + i0 * a->q_stride[2], blas_ld(a->q_stride[2], nr, D), kb + j0 * a->k_stride[2],
                blas_ld(a->k_stride[2], n, D), 0.0f, w->s, KB);
    if (want_dp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)n, (int)E, 1.0f,
                    dyb + i0 * c->g->dy_stride[2], blas_ld(c->g->dy_stride[2], nr, E), vb + j0 * a->v_stride[2],
                    blas_ld(a->v_stride[2], n, E), 0.0f, w->dp, KB);
    for (int64_t r = 0; r < nr; r++) {
        float *restrict sr = w->s + r * KB, *restrict dpr = w->dp + r * KB;
        if (mb) {
            const float *mrow = mb + (i0 + r) * a->mask_stride[2] + j0 * a->mask_stride[3];
            for (int64_t jj = 0; jj < n; jj++)
                sr[jj] += mrow[jj * a->mask_stride[3]];
        }
        int64_t lim = key_limit(a, i0 + r) - j0;
        for (int64_t jj = lim < 0 ? 0 : lim < n ? lim : n; jj < n8; jj++)
            sr[jj] = -INFINITY;
        for (int64_t jj = n; jj < n8; jj++)
            dpr[jj] = 0;
    }
}

/* Query rows [i0, i0 + nr) of query head h (kv head g) of batch b. */
HOT_CLONES static void grad_block(const agrad_ctx *c, int64_t b, int64_t h, int64_t g, int64_t i0, int64_t nr,
                                  const agrad_scratch *w)
{
    const rt_plan_attention_grad *G = c->g;
    const rt_plan_attention *a = &G->fwd;
    int64_t D = a->D, E = a->E, S = a->S, T = a->T;
    float scale = (float)a->scale;
    const float *qb = c->q + b * a->q_stride[0] + h * a->q_stride[1];
    const float *kb = c->k + b * a->k_stride[0] + g * a->k_stride[1];
    const float *vb = c->v + b * a->v_stride[0] + g * a->v_stride[1];
    const float *dyb = c->dy + b * G->dy_stride[0] + h * G->dy_stride[1];
    const float *mb = c->mask ? c->mask + b * a->mask_stride[0] + h * a->mask_stride[1] : NULL;
    float *dkb = c->dk ? c->dk + (b * a->G + g) * S * D : NULL;
    float *dvb = c->dv ? c->dv + (b * a->G + g) * S * E : NULL;
    float *dmb = c->dmask ? c->dmask + ((b * a->H + h) * T + i0) * S : NULL;
    int64_t jend = key_limit(a, i0 + nr - 1);
    if (dmb) /* disallowed keys (and everything of an empty row) get 0 */
        memset(dmb, 0, sizeof(float) * (size_t)(nr * S));
    /* pass 1: m, l, u per row (u only without the forward output: then D = dy·out) */
    const float *ob = c->out ? c->out + b * a->out_stride[0] + h * a->out_stride[1] : NULL;
    for (int64_t r = 0; r < nr; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = w->u[r] = 0;
    }
    for (int64_t j0 = 0; j0 < jend; j0 += KB) {
        int64_t n = jend - j0 < KB ? jend - j0 : KB, n8 = (n + LANES - 1) / LANES * LANES;
        block_scores(c, qb, kb, vb, dyb, mb, i0, nr, j0, n, !ob, w);
        for (int64_t r = 0; r < nr; r++) {
            float *restrict sr = w->s + r * KB;
            const float *restrict dpr = w->dp + r * KB;
            rt_v8f lane = RT_V8F_SPLAT(-INFINITY);
            for (int64_t jj = 0; jj < n8; jj += LANES)
                rt_max8(sr + jj, &lane);
            float bm = -INFINITY;
            for (int u = 0; u < LANES; u++)
                bm = lane[u] > bm ? lane[u] : bm;
            if (bm == -INFINITY)
                continue;
            if (bm > w->m[r]) {
                float corr = w->m[r] == -INFINITY ? 0.0f : rt_fast_expf(w->m[r] - bm);
                w->l[r] *= corr;
                w->u[r] *= corr;
                w->m[r] = bm;
            }
            /* sr becomes e^(s - m) (pass 2 recomputes it); l and u in LANES partial sums */
            rt_v8f lsum = RT_V8F_SPLAT(0.0f), usum = RT_V8F_SPLAT(0.0f);
            for (int64_t jj = 0; jj < n8; jj += LANES)
                rt_exp8_sub(sr + jj, w->m[r], &lsum);
            if (!ob)
                for (int64_t jj = 0; jj < n8; jj += LANES) {
                    rt_v8f p, dp;
                    memcpy(&p, sr + jj, sizeof p);
                    memcpy(&dp, dpr + jj, sizeof dp);
                    usum += p * dp;
                }
            float l = 0, u = 0;
            for (int k = 0; k < LANES; k++) {
                l += lsum[k];
                u += usum[k];
            }
            w->l[r] += l;
            w->u[r] += u;
        }
    }
    if (ob) /* u = l · (dy·out), so that D = u / l below */
        for (int64_t r = 0; r < nr; r++) {
            const float *oi = ob + (i0 + r) * a->out_stride[2], *dyi = dyb + (i0 + r) * G->dy_stride[2];
            float dot = 0;
            for (int64_t e = 0; e < E; e++)
                dot += oi[e] * dyi[e];
            w->u[r] = dot * w->l[r];
        }
    /* pass 2: p, ds; accumulate dq (scratch), dk, dv (outputs), dmask */
    memset(w->dqa, 0, sizeof(float) * (size_t)(nr * D));
    for (int64_t j0 = 0; j0 < jend; j0 += KB) {
        int64_t n = jend - j0 < KB ? jend - j0 : KB, n8 = (n + LANES - 1) / LANES * LANES;
        block_scores(c, qb, kb, vb, dyb, mb, i0, nr, j0, n, true, w);
        for (int64_t r = 0; r < nr; r++) {
            float *restrict sr = w->s + r * KB, *restrict dpr = w->dp + r * KB;
            float inv = w->l[r] > 0 ? 1.0f / w->l[r] : 0.0f, Dr = w->u[r] * inv;
            if (w->m[r] == -INFINITY) {
                for (int64_t jj = 0; jj < n8; jj++)
                    sr[jj] = dpr[jj] = 0;
                continue;
            }
            rt_v8f unused = RT_V8F_SPLAT(0.0f);
            for (int64_t jj = 0; jj < n8; jj += LANES) {
                rt_exp8_sub(sr + jj, w->m[r], &unused);
                rt_v8f p, dp;
                memcpy(&p, sr + jj, sizeof p);
                memcpy(&dp, dpr + jj, sizeof dp);
                p *= inv;
                dp = p * (dp - Dr);
                memcpy(sr + jj, &p, sizeof p);   /* s becomes p */
                memcpy(dpr + jj, &dp, sizeof dp); /* dp becomes ds */
            }
            if (dmb)
                memcpy(dmb + r * S + j0, dpr, sizeof(float) * (size_t)n);
        }
        if (dvb) /* dv[j0 .. j0+n) += Pᵀ · dY_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)E, (int)nr, 1.0f, w->s, KB,
                        dyb + i0 * G->dy_stride[2], blas_ld(G->dy_stride[2], nr, E), 1.0f, dvb + j0 * E,
                        blas_ld(E, 1, E));
        if (dkb) /* dk[j0 .. j0+n) += scale · dSᵀ · Q_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)D, (int)nr, scale, w->dp, KB,
                        qb + i0 * a->q_stride[2], blas_ld(a->q_stride[2], nr, D), 1.0f, dkb + j0 * D,
                        blas_ld(D, 1, D));
        if (c->dq) /* dq_blk += scale · dS · K[j0 .. j0+n) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)D, (int)n, scale, w->dp, KB,
                        kb + j0 * a->k_stride[2], blas_ld(a->k_stride[2], n, D), 1.0f, w->dqa, blas_ld(D, 1, D));
    }
    if (c->dq)
        memcpy(c->dq + ((b * a->H + h) * T + i0) * D, w->dqa, sizeof(float) * (size_t)(nr * D));
}

static void grad_chunk(void *ctx, int64_t begin, int64_t end)
{
    const agrad_ctx *c = ctx;
    const rt_plan_attention *a = &c->g->fwd;
    int64_t D = a->D, E = a->E, rep = a->H / a->G;
    size_t nf = (size_t)(2 * QB * KB + 3 * QB + QB * D);
    float *buf = malloc(sizeof(float) * nf);
    if (!buf)
        ir_unreachable("out of memory");
    agrad_scratch w;
    w.s = buf;
    w.dp = w.s + QB * KB;
    w.m = w.dp + QB * KB;
    w.l = w.m + QB;
    w.u = w.l + QB;
    w.dqa = w.u + QB;
    for (int64_t t = begin; t < end; t++) {
        int64_t g = t % a->G, b = t / a->G;
        if (c->dk)
            memset(c->dk + t * a->S * D, 0, sizeof(float) * (size_t)(a->S * D));
        if (c->dv)
            memset(c->dv + t * a->S * E, 0, sizeof(float) * (size_t)(a->S * E));
        for (int64_t h = g * rep; h < (g + 1) * rep; h++)
            for (int64_t i0 = 0; i0 < a->T; i0 += QB) {
                int64_t nr = a->T - i0 < QB ? a->T - i0 : QB;
                if (key_limit(a, i0 + nr - 1) == 0) { /* no row of the block sees a key */
                    if (c->dq)
                        memset(c->dq + ((b * a->H + h) * a->T + i0) * D, 0, sizeof(float) * (size_t)(nr * D));
                    if (c->dmask)
                        memset(c->dmask + ((b * a->H + h) * a->T + i0) * a->S, 0, sizeof(float) * (size_t)(nr * a->S));
                    continue;
                }
                grad_block(c, b, h, g, i0, nr, &w);
            }
    }
    free(buf);
}

void rt_attention_grad_f32(const rt_plan_attention_grad *g, const float *q, const float *k, const float *v,
                           const float *mask, const float *dy, const float *out, float *dq, float *dk, float *dv,
                           float *dmask, rt_pool *pool)
{
    agrad_ctx c = {g, q, k, v, mask, dy, out, dq, dk, dv, dmask};
    /* one OpenBLAS thread per pool worker (the pool spreads the (b, g) tasks; serial GEMMs keep
     * every sum in one order). Blocks up to OpenBLAS's serial cut (M·N·K <= 2^18, as gemm_cpu.c)
     * run serially anyway: switching its thread count per call costs more CPU than it saves. */
    int64_t dmax = (&g->fwd)->D > (&g->fwd)->E ? (&g->fwd)->D : (&g->fwd)->E;
    int prev = openblas_get_num_threads(), serial = QB * KB * dmax <= (1 << 18);
    if (prev != 1 && !serial)
        openblas_set_num_threads(1);
    rt_pool_parallel_for(pool, g->fwd.B * g->fwd.G, grad_chunk, &c);
    if (prev != 1 && !serial)
        openblas_set_num_threads(prev);
}
