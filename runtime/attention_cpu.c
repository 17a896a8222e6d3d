/* attention_cpu.c — fused multi-head attention on the CPU (rt_attention_f32, exec.h).
 *
 * For every (batch b, head h, query row i): scores s_j = scale · q_i·k_j + mask[b, h, i, j]
 * over the allowed keys j (all S, or j <= i + S - T when causal), out_i = softmax(s) · v.
 * Keys are visited in blocks of KB with an online softmax (running max m, running sum l and an
 * unnormalized accumulator rescaled when m grows), so no T×S score matrix exists and memory
 * traffic is one pass over K and V per query row. Head h reads kv head h / (H / G) (GQA). A
 * row with no allowed key, or only -inf scores, is 0 (as the reference interpreter).
 *
 * Work is split over (b, h, blocks of QB query rows) on the pool. For each block of KB keys,
 * K is transposed once into scratch (D x KB) and reused by every query row of the block;
 * rows go in groups of RG so that each K column and V row loaded serves RG rows. The inner
 * loops run over contiguous keys (scores: s[jj] += q[d]·kᵀ[d][jj]) or contiguous E
 * (acc[e] += p·v[e]) with an inline polynomial exp, so the compiler vectorizes them without
 * -ffast-math.
 */
#include <math.h>
#include <stdlib.h>

#include "exec.h"
#include "fast_expf.h"

enum { KB = 64, QB = 16, RG = 4 };

typedef struct {
    const rt_plan_attention *a;
    const float *q, *k, *v, *mask;
    float *out;
    int64_t nblk; /* query blocks per (b, h) */
} attn_ctx;

/* Keys query row i may see: [0, jmax(i)). */
static inline int64_t key_limit(const rt_plan_attention *a, int64_t i)
{
    int64_t j = a->causal ? i + a->S - a->T + 1 : a->S;
    return j < 0 ? 0 : j > a->S ? a->S : j;
}

/* Scratch of one worker: K block transposed (D x KB), accumulators (QB x E), running max and
 * sum (QB), scores / probabilities of a row group (RG x KB). */
typedef struct {
    float *kt, *acc, *m, *l, *s;
} attn_scratch;

/* x86-64 builds are generic (SSE2); the hot loop gets an AVX2+FMA clone picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT_CLONES
#endif

/* Query rows [i0, i1) of head h of batch b. */
HOT_CLONES static void attend_block(const attn_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t i1, const attn_scratch *w)
{
    const rt_plan_attention *a = c->a;
    int64_t g = h / (a->H / a->G), D = a->D, E = a->E, nrows = i1 - i0;
    const float *qb = c->q + b * a->q_stride[0] + h * a->q_stride[1];
    const float *kb = c->k + b * a->k_stride[0] + g * a->k_stride[1];
    const float *vb = c->v + b * a->v_stride[0] + g * a->v_stride[1];
    const float *mb = c->mask ? c->mask + b * a->mask_stride[0] + h * a->mask_stride[1] : NULL;
    float scale = (float)a->scale;
    for (int64_t r = 0; r < nrows; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0;
        for (int64_t e = 0; e < E; e++)
            w->acc[r * E + e] = 0;
    }
    int64_t jend = key_limit(a, i1 - 1); /* the last row sees the most keys */
    for (int64_t j0 = 0; j0 < jend; j0 += KB) {
        int64_t n = jend - j0 < KB ? jend - j0 : KB;
        for (int64_t jj = 0; jj < n; jj++) {
            const float *kj = kb + (j0 + jj) * a->k_stride[2];
            for (int64_t d = 0; d < D; d++)
                w->kt[d * KB + jj] = kj[d];
        }
        for (int64_t rg = 0; rg < nrows; rg += RG) {
            int64_t nr = nrows - rg < RG ? nrows - rg : RG;
            float *restrict s = w->s;
            for (int64_t r = 0; r < nr * KB; r++)
                s[r] = 0;
            /* scores: s[r][jj] = q_r · k_jj, vectorized over the keys of the block */
            for (int64_t d = 0; d < D; d++) {
                const float *restrict kt = w->kt + d * KB;
                for (int64_t r = 0; r < nr; r++) {
                    float qd = qb[(i0 + rg + r) * a->q_stride[2] + d] * scale;
                    float *restrict sr = s + r * KB;
                    for (int64_t jj = 0; jj < n; jj++)
                        sr[jj] += qd * kt[jj];
                }
            }
            /* mask, causal limit, online softmax update; s becomes the probabilities */
            for (int64_t r = 0; r < nr; r++) {
                int64_t i = i0 + rg + r, lim = key_limit(a, i) - j0;
                float *restrict sr = s + r * KB, *restrict acc = w->acc + (rg + r) * E;
                if (mb) {
                    const float *mrow = mb + i * a->mask_stride[2] + j0 * a->mask_stride[3];
                    for (int64_t jj = 0; jj < n; jj++)
                        sr[jj] += mrow[jj * a->mask_stride[3]];
                }
                for (int64_t jj = lim < 0 ? 0 : lim; jj < n; jj++)
                    sr[jj] = -INFINITY;
                float bm = -INFINITY;
                for (int64_t jj = 0; jj < n; jj++)
                    bm = sr[jj] > bm ? sr[jj] : bm;
                float *m = &w->m[rg + r];
                if (bm == -INFINITY) { /* nothing allowed in this block */
                    for (int64_t jj = 0; jj < n; jj++)
                        sr[jj] = 0;
                    continue;
                }
                if (bm > *m) {
                    float corr = *m == -INFINITY ? 0.0f : rt_fast_expf(*m - bm);
                    w->l[rg + r] *= corr;
                    for (int64_t e = 0; e < E; e++)
                        acc[e] *= corr;
                    *m = bm;
                }
                float sum = 0, mm = *m;
                for (int64_t jj = 0; jj < n; jj++) {
                    float p = rt_fast_expf(sr[jj] - mm);
                    sr[jj] = p;
                    sum += p;
                }
                w->l[rg + r] += sum;
            }
            /* acc_r += p_r[jj] · v_jj, each V row loaded once for the row group */
            for (int64_t jj = 0; jj < n; jj++) {
                const float *restrict vj = vb + (j0 + jj) * a->v_stride[2];
                for (int64_t r = 0; r < nr; r++) {
                    float p = s[r * KB + jj];
                    float *restrict acc = w->acc + (rg + r) * E;
                    for (int64_t e = 0; e < E; e++)
                        acc[e] += p * vj[e];
                }
            }
        }
    }
    for (int64_t r = 0; r < nrows; r++) {
        float *oi = c->out + b * a->out_stride[0] + h * a->out_stride[1] + (i0 + r) * a->out_stride[2];
        float inv = w->l[r] > 0 ? 1.0f / w->l[r] : 0.0f;
        for (int64_t e = 0; e < E; e++)
            oi[e] = w->acc[r * E + e] * inv;
    }
}

static void attend_chunk(void *ctx, int64_t begin, int64_t end)
{
    const attn_ctx *c = ctx;
    const rt_plan_attention *a = c->a;
    size_t nf = (size_t)(a->D * KB + QB * a->E + 2 * QB + RG * KB);
    float *buf = malloc(sizeof(float) * nf);
    if (!buf)
        ir_unreachable("out of memory");
    attn_scratch w = {buf, buf + a->D * KB, buf + a->D * KB + QB * a->E, buf + a->D * KB + QB * a->E + QB,
                      buf + a->D * KB + QB * a->E + 2 * QB};
    for (int64_t t = begin; t < end; t++) {
        /* blocks of a head alternate from both ends (0, n-1, 1, n-2, ...): with causal masking
         * late rows cost more, and contiguous chunks of tasks then get similar work */
        int64_t k = t % c->nblk, bh = t / c->nblk, h = bh % a->H, b = bh / a->H;
        int64_t blk = k % 2 == 0 ? k / 2 : c->nblk - 1 - k / 2;
        int64_t i1 = (blk + 1) * QB < a->T ? (blk + 1) * QB : a->T;
        attend_block(c, b, h, blk * QB, i1, &w);
    }
    free(buf);
}

void rt_attention_f32(const rt_plan_attention *a, const float *q, const float *k, const float *v,
                      const float *mask, float *out, rt_pool *pool)
{
    attn_ctx c = {a, q, k, v, mask, out, (a->T + QB - 1) / QB};
    int64_t tasks = a->B * a->H * c.nblk;
    rt_pool_parallel_for(pool, tasks, attend_chunk, &c);
}
