/* attention_cpu.c — fused multi-head attention on the CPU (rt_attention_f32, exec.h).
 *
 * For every (batch b, head h, query row i): scores s_j = scale · q_i·k_j + mask[b, h, i, j]
 * over the allowed keys j (all S, or j <= i + S - T when causal), out_i = softmax(s) · v.
 * Keys are visited in blocks of KB with an online softmax (running max m, running sum l and an
 * unnormalized accumulator rescaled when m grows), so no T×S score matrix exists and memory
 * traffic is one pass over K and V per query row. Head h reads kv head h / (H / G) (GQA). A
 * row with no allowed key, or only -inf scores, is 0 (as the reference interpreter).
 *
 * Work is split over (b, h, blocks of QB query rows) on the pool. Inner loops run over
 * contiguous D / E elements with fixed-width partial sums and an inline polynomial exp, so
 * the compiler vectorizes them without -ffast-math.
 */
#include <math.h>
#include <stdlib.h>

#include "exec.h"

enum { KB = 64, QB = 8, LANES = 8 };

/* e^x for f32 (Cephes expf: range reduction by n = round(x log2 e), degree-6 polynomial),
 * within a few ulp; x <= -88 gives 0 (through the clamp and the 2^n scale), NaN is not
 * expected (scores are finite or -inf). Written branch-free so loops over it vectorize. */
static inline float fast_expf(float x)
{
    float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s = {.i = ((int32_t)n + 127) << 23};
    return x < -87.0f ? 0.0f : y * s.f;
}

static inline float dot(const float *restrict a, const float *restrict b, int64_t n)
{
    float part[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            part[l] += a[c + l] * b[c + l];
    float s = 0;
    for (; c < n; c++)
        s += a[c] * b[c];
    for (int l = 0; l < LANES; l++)
        s += part[l];
    return s;
}

typedef struct {
    const rt_plan_attention *a;
    const float *q, *k, *v, *mask;
    float *out;
    int64_t nblk; /* query blocks per (b, h) */
} attn_ctx;

/* One query row: out[0..E) = attention of q row i over keys [0, jmax). */
static void attend_row(const attn_ctx *c, int64_t b, int64_t h, int64_t i, float *acc, float *s)
{
    const rt_plan_attention *a = c->a;
    int64_t g = h / (a->H / a->G);
    const float *qi = c->q + b * a->q_stride[0] + h * a->q_stride[1] + i * a->q_stride[2];
    const float *kb = c->k + b * a->k_stride[0] + g * a->k_stride[1];
    const float *vb = c->v + b * a->v_stride[0] + g * a->v_stride[1];
    const float *mrow = c->mask ? c->mask + b * a->mask_stride[0] + h * a->mask_stride[1] + i * a->mask_stride[2] : NULL;
    float *oi = c->out + b * a->out_stride[0] + h * a->out_stride[1] + i * a->out_stride[2];
    int64_t E = a->E, jmax = a->causal ? i + a->S - a->T + 1 : a->S;
    if (jmax > a->S)
        jmax = a->S;
    float scale = (float)a->scale, m = -INFINITY, l = 0;
    for (int64_t e = 0; e < E; e++)
        acc[e] = 0;
    for (int64_t j0 = 0; j0 < jmax; j0 += KB) {
        int64_t n = jmax - j0 < KB ? jmax - j0 : KB;
        float bm = -INFINITY;
        for (int64_t jj = 0; jj < n; jj++) {
            float sc = dot(qi, kb + (j0 + jj) * a->k_stride[2], a->D) * scale;
            if (mrow)
                sc += mrow[(j0 + jj) * a->mask_stride[3]];
            s[jj] = sc;
            bm = sc > bm ? sc : bm;
        }
        if (bm == -INFINITY)
            continue; /* every key of the block masked out */
        if (bm > m) {
            float corr = m == -INFINITY ? 0.0f : fast_expf(m - bm);
            l *= corr;
            for (int64_t e = 0; e < E; e++)
                acc[e] *= corr;
            m = bm;
        }
        for (int64_t jj = 0; jj < n; jj++) {
            float p = fast_expf(s[jj] - m);
            l += p;
            const float *vj = vb + (j0 + jj) * a->v_stride[2];
            for (int64_t e = 0; e < E; e++)
                acc[e] += p * vj[e];
        }
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t e = 0; e < E; e++)
        oi[e] = acc[e] * inv;
}

static void attend_chunk(void *ctx, int64_t begin, int64_t end)
{
    const attn_ctx *c = ctx;
    const rt_plan_attention *a = c->a;
    float *acc = malloc(sizeof(float) * (size_t)(a->E + KB));
    if (!acc)
        ir_unreachable("out of memory");
    float *s = acc + a->E;
    for (int64_t t = begin; t < end; t++) {
        int64_t blk = t % c->nblk, bh = t / c->nblk, h = bh % a->H, b = bh / a->H;
        int64_t i1 = (blk + 1) * QB < a->T ? (blk + 1) * QB : a->T;
        for (int64_t i = blk * QB; i < i1; i++)
            attend_row(c, b, h, i, acc, s);
    }
    free(acc);
}

void rt_attention_f32(const rt_plan_attention *a, const float *q, const float *k, const float *v,
                      const float *mask, float *out, rt_pool *pool)
{
    attn_ctx c = {a, q, k, v, mask, out, (a->T + QB - 1) / QB};
    int64_t tasks = a->B * a->H * c.nblk;
    rt_pool_parallel_for(pool, tasks, attend_chunk, &c);
}
