/* attention_cpu.c — fused multi-head attention on the CPU (rt_attention_f32, exec.h).
 *
 * For every (batch b, head h, query row i): scores s_j = scale · q_i·k_j + mask[b, h, i, j]
 * over the allowed keys j (all S, or j <= i + S - T when causal), out_i = softmax(s) · v.
 * Keys are visited in blocks of KB with an online softmax (running max m, running sum l and an
 * unnormalized accumulator rescaled when m grows), so no T×S score matrix exists and K and V
 * are read once per block of query rows. Head h reads kv head h / (H / G) (GQA). A
 * row with no allowed key, or only -inf scores, is 0 (as the reference interpreter).
 *
 * Work is split over (b, h, blocks of QB query rows) on the pool. For each block of KB keys the
 * scores S = scale·Q_blk·K_blkᵀ (QB x KB) and the update acc += P·V_blk are small SGEMMs handed
 * to OpenBLAS (single-threaded inside the pool, so each block's sums have one order whatever the
 * thread count); mask, causal limit and online softmax run over contiguous score rows with an
 * inline polynomial exp that vectorizes without -ffast-math. Key blocks past the block's last
 * allowed key are skipped (the causal limit, and a tail of keys the mask makes -inf for every
 * row: decode over a KV cache reads only the rows written so far), and rows that see no key of
 * a block are left out of its GEMMs.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "runtime/cpu/exec_cpu.h"
#include "runtime/cpu/fast_expf.h"

/* 64 x 64 x D score GEMMs: large enough for OpenBLAS to run near its peak (KB = 128 measured the
 * same), small enough that the score block stays in L1 and under OpenBLAS's serial cut. */
enum { KB = 64, QB = 64 };
enum { LANES = 8 }; /* rt_v8f lanes: partial max / sum per row; KB is a multiple */

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

/* Scratch of one worker: scores / probabilities (QB x KB), accumulators (QB x E), running max
 * and sum (QB). */
typedef struct {
    float *s, *acc, *m, *l;
} attn_scratch;

/* x86-64 builds are generic (SSE2); the softmax loops get an AVX2+FMA clone picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT_CLONES
#endif

/* Rows [r0, nrows) of the score block s (keys j0 .. j0+n of query rows i0 + r): add the mask,
 * cut at the causal limit, update the running max / sum, rescale acc, turn s into e^(s - m). */
HOT_CLONES static void softmax_block(const attn_ctx *c, const float *mb, int64_t i0, int64_t r0, int64_t nrows,
                                     int64_t j0, int64_t n, const attn_scratch *w)
{
    const rt_plan_attention *a = c->a;
    int64_t E = a->E, n8 = (n + LANES - 1) / LANES * LANES;
    for (int64_t r = r0; r < nrows; r++) {
        int64_t i = i0 + r, lim = key_limit(a, i) - j0;
        float *restrict sr = w->s + r * KB, *restrict acc = w->acc + r * E;
        if (mb) {
            const float *mrow = mb + i * a->mask_stride[2] + j0 * a->mask_stride[3];
            for (int64_t jj = 0; jj < n; jj++)
                sr[jj] += mrow[jj * a->mask_stride[3]];
        }
        /* keys past the limit and the padding up to a multiple of LANES score -inf (p = 0) */
        for (int64_t jj = lim < 0 ? 0 : lim < n ? lim : n; jj < n8; jj++)
            sr[jj] = -INFINITY;
        /* max and sum in LANES fixed partial results (vector lanes): vectorized, in one fixed
         * order whatever the machine */
        rt_v8f lane = RT_V8F_SPLAT(-INFINITY);
        for (int64_t jj = 0; jj < n8; jj += LANES)
            rt_max8(sr + jj, &lane);
        float bm = -INFINITY;
        for (int u = 0; u < LANES; u++)
            bm = lane[u] > bm ? lane[u] : bm;
        if (bm == -INFINITY) { /* nothing allowed in this block: p = 0 */
            for (int64_t jj = 0; jj < n8; jj++)
                sr[jj] = 0;
            continue;
        }
        float *m = &w->m[r];
        if (bm > *m) {
            float corr = *m == -INFINITY ? 0.0f : rt_fast_expf(*m - bm);
            w->l[r] *= corr;
            for (int64_t e = 0; e < E; e++)
                acc[e] *= corr;
            *m = bm;
        }
        float mm = *m;
        lane = RT_V8F_SPLAT(0.0f);
        for (int64_t jj = 0; jj < n8; jj += LANES)
            rt_exp8_sub(sr + jj, mm, &lane);
        float sum = 0;
        for (int u = 0; u < LANES; u++)
            sum += lane[u];
        w->l[r] += sum;
    }
}

/* Leading dimension for cblas of `rows` rows of `cols` floats `stride` apart: cblas wants at
 * least max(1, cols) even where a single row's stride does not matter (T = 1, D = 0). */
static inline int blas_ld(int64_t stride, int64_t rows, int64_t cols)
{
    int64_t need = cols > 1 ? cols : 1;
    return (int)(rows <= 1 && stride < need ? need : stride);
}

/* The keys [0, jend) less those at the end that rows [i0, i1) all mask with -inf: one
 * decode step attends over the cache rows written so far, not the whole cache (its mask is
 * -inf past the position). Each row's scan stops at its last allowed key: O(rows) for masks
 * without such a tail. */
static int64_t masked_tail(const rt_plan_attention *a, const float *mb, int64_t i0, int64_t i1, int64_t jend)
{
    int64_t last = 0;
    for (int64_t i = i0; i < i1 && last < jend; i++) {
        const float *mrow = mb + i * a->mask_stride[2];
        int64_t j = jend;
        while (j > last && mrow[(j - 1) * a->mask_stride[3]] == -INFINITY)
            j--;
        last = j > last ? j : last;
    }
    return last;
}

/* Query rows [i0, i1) of head h of batch b. */
static void attend_block(const attn_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t i1, const attn_scratch *w)
{
    const rt_plan_attention *a = c->a;
    int64_t g = h / (a->H / a->G), D = a->D, E = a->E, nrows = i1 - i0;
    const float *qb = c->q + b * a->q_stride[0] + h * a->q_stride[1] + i0 * a->q_stride[2];
    const float *kb = c->k + b * a->k_stride[0] + g * a->k_stride[1];
    const float *vb = c->v + b * a->v_stride[0] + g * a->v_stride[1];
    const float *mb = c->mask ? c->mask + b * a->mask_stride[0] + h * a->mask_stride[1] : NULL;
    for (int64_t r = 0; r < nrows; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0;
        for (int64_t e = 0; e < E; e++)
            w->acc[r * E + e] = 0;
    }
    int64_t jend = key_limit(a, i1 - 1); /* the last row sees the most keys */
    if (mb) /* keys that every row masks with -inf at the end (decode's unfilled cache) */
        jend = masked_tail(a, mb, i0, i1, jend);
    int64_t r0 = 0;                      /* rows before r0 see no key from j0 on (causal) */
    for (int64_t j0 = 0; j0 < jend; j0 += KB) {
        int64_t n = jend - j0 < KB ? jend - j0 : KB;
        while (r0 < nrows && key_limit(a, i0 + r0) <= j0)
            r0++;
        int64_t nr = nrows - r0;
        const float *qr = qb + r0 * a->q_stride[2], *kj = kb + j0 * a->k_stride[2], *vj = vb + j0 * a->v_stride[2];
        float *s = w->s + r0 * KB, *acc = w->acc + r0 * E;
        if (nr == 1) /* one query row (decode): matrix-vector products */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)D, (float)a->scale, kj, blas_ld(a->k_stride[2], n, D),
                        qr, 1, 0.0f, s, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)n, (int)D, (float)a->scale, qr,
                        blas_ld(a->q_stride[2], nr, D), kj, blas_ld(a->k_stride[2], n, D), 0.0f, s, KB);
        softmax_block(c, mb, i0, r0, nrows, j0, n, w);
        if (nr == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)E, 1.0f, vj, blas_ld(a->v_stride[2], n, E), s, 1, 1.0f,
                        acc, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)E, (int)n, 1.0f, s, KB, vj,
                        blas_ld(a->v_stride[2], n, E), 1.0f, acc, blas_ld(E, 1, E));
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
    size_t nf = (size_t)(QB * KB + QB * a->E + 2 * QB);
    float *buf = malloc(sizeof(float) * nf);
    if (!buf)
        ir_unreachable("out of memory");
    attn_scratch w = {buf, buf + QB * KB, buf + QB * KB + QB * a->E, buf + QB * KB + QB * a->E + QB};
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
    /* one OpenBLAS thread per pool worker (the pool spreads the blocks; serial GEMMs keep every
     * sum in one order). Blocks up to OpenBLAS's serial cut (M·N·K <= 2^18, as gemm_cpu.c) run
     * serially anyway: switching its thread count per call costs more CPU than it saves. */
    int64_t dmax = a->D > a->E ? a->D : a->E;
    int prev = openblas_get_num_threads(), serial = QB * KB * dmax <= (1 << 18);
    if (prev != 1 && !serial)
        openblas_set_num_threads(1);
    rt_pool_parallel_for(pool, tasks, attend_chunk, &c);
    if (prev != 1 && !serial)
        openblas_set_num_threads(prev);
}
