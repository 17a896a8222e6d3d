/* qgemm_cpu.c — one GEMM whose B is weight-only quantized (gemm_cpu.h: rt_gemm_desc's qbits):
 * C = A · dequantize(B), B's codes read as they are stored, never widened into a whole f32
 * matrix. The dequantize op's numbers (ir/interp.c: code × its group's scale, the scale an f32
 * here) in f32 arithmetic.
 *
 * B is stored as codes [R, Cq] row-major: R × C logical, (R, C) = (K, N), or (N, K) with
 * trans_b; int8 one code a byte, int4 two a byte along the row (low nibble first, each code + 8).
 * The scales (f32, or f16/bf16 widened a row at a time) hold one value per qgroup codes along K:
 * [K/g, N], or [N, K/g] with trans_b.
 *
 * Two ways, split over the pool (OpenBLAS single-threaded meanwhile):
 *  - few rows of A (M ≤ QGEMM_DIRECT_M: decode): each stored row of B is decoded once into an
 *    L1-resident f32 row and used by every row of A right away; per group the partial sums are
 *    scaled. B's bytes stream from memory once and in order, a quarter (int8) or an eighth
 *    (int4) of the f32 weight's: without trans_b a thread takes a range of B's rows (whole
 *    groups) and axpys each into its own partial C, summed at the end (a block of columns would
 *    read B with a stride and starve the prefetchers: measured 2x slower); with trans_b a
 *    thread takes a range of B's rows, each a column of C, by dot products.
 *  - more rows (prefill, training shapes): blocks of QB_N columns; a block of QB_K × QB_N
 *    weights is dequantized into an L2-resident f32 panel and multiplied by OpenBLAS's sgemm,
 *    accumulating over the K blocks.
 * The hot loops are compiled for AVX-512 and AVX2 too (target_clones), picked at load time.
 */
#include "runtime/cpu/gemm_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/half.h"

#define QGEMM_DIRECT_M 16 /* rows of A up to which B's rows are decoded and used directly */
#define QB_N 256          /* columns of C a task computes */
#define QB_K 256          /* rows of the logical B a panel holds (the sgemm path) */

#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

typedef struct {
    const rt_gemm_desc *g;
    const float *A;
    const void *B;
    float *C;
    int64_t lda, ldc;
} qjob;

/* Codes [c0, c1) of stored row r of B as f32 into out (no scale). */
HOT_CLONES static void decode_row(const rt_gemm_desc *g, const void *B, int64_t cols, int64_t r, int64_t c0, int64_t c1,
                                  float *restrict out)
{
    if (g->qbits == 8) {
        const int8_t *restrict q = (const int8_t *)B + r * cols + c0;
        for (int64_t j = 0; j < c1 - c0; j++)
            out[j] = (float)q[j];
        return;
    }
    /* int4: c0 and c1 even (callers' blocks are) */
    const uint8_t *restrict q = (const uint8_t *)B + r * (cols / 2) + c0 / 2;
    for (int64_t j = 0; j < (c1 - c0) / 2; j++) {
        out[2 * j] = (float)((int)(q[j] & 15) - 8);
        out[2 * j + 1] = (float)((int)(q[j] >> 4) - 8);
    }
}

/* y += Σ a[i]·q_i over four int8 code rows, converted as they are read: y is loaded and stored
 * once for four rows of B. */
HOT_CLONES static void axpy4_q8(float *restrict y, const float *a, const int8_t *restrict q0, const int8_t *restrict q1,
                                const int8_t *restrict q2, const int8_t *restrict q3, int64_t n)
{
    float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (int64_t j = 0; j < n; j++) /* fused multiply-adds: the conversions are the cost */
        y[j] = fmaf(a3, (float)q3[j], fmaf(a2, (float)q2[j], fmaf(a1, (float)q1[j], fmaf(a0, (float)q0[j], y[j]))));
}

/* The int4 form: a byte j of a code row holds columns 2j (low nibble) and 2j + 1 (high), which
 * go to ye[j] and yo[j] (the partial sums kept even columns first, then odd ones: no shuffles). */
HOT_CLONES static void axpy4_q4(float *restrict ye, float *restrict yo, const float *a, const uint8_t *restrict q0,
                                const uint8_t *restrict q1, const uint8_t *restrict q2, const uint8_t *restrict q3,
                                int64_t n)
{
    float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (int64_t j = 0; j < n; j++) {
        ye[j] = fmaf(a3, (float)((q3[j] & 15) - 8),
                     fmaf(a2, (float)((q2[j] & 15) - 8),
                          fmaf(a1, (float)((q1[j] & 15) - 8), fmaf(a0, (float)((q0[j] & 15) - 8), ye[j]))));
        yo[j] = fmaf(a3, (float)((q3[j] >> 4) - 8),
                     fmaf(a2, (float)((q2[j] >> 4) - 8),
                          fmaf(a1, (float)((q1[j] >> 4) - 8), fmaf(a0, (float)((q0[j] >> 4) - 8), yo[j]))));
    }
}

/* Where column n of a partial sum lies: in place, or (int4) even columns first, then odd ones. */
static int64_t slot(const rt_gemm_desc *g, int64_t n)
{
    return g->qbits == 4 ? (n % 2) * (g->N / 2) + n / 2 : n;
}

HOT_CLONES static void scale_add(float *restrict y, const float *restrict s, float *restrict t, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        y[j] += s[j] * t[j];
        t[j] = 0;
    }
}

HOT_CLONES static float dot(const float *restrict x, const float *restrict y, int64_t n)
{
    float acc[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += x[j + l] * y[j + l];
    float s = 0;
    for (; j < n; j++)
        s += x[j] * y[j];
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

/* Scales [off, off + n) as f32: in place, or widened into buf. */
static const float *scales_at(const rt_gemm_desc *g, int64_t off, int64_t n, float *buf)
{
    if (g->qscale_dtype == DT_F32)
        return (const float *)g->qscales + off;
    rt_half_widen(g->qscale_dtype, (const uint16_t *)g->qscales + off, buf, n);
    return buf;
}

/* A's element (m, k) and the stride between its consecutive k. */
static const float *a_row(const qjob *j, int64_t m, int64_t *inc)
{
    *inc = j->g->trans_a ? j->lda : 1;
    return j->A + (j->g->trans_a ? m : m * j->lda);
}

/* Without trans_b, few rows of A: part (M × N) = A's columns [k0, k1) · B's rows [k0, k1)
 * (whole groups), four rows of B at a time where they share a group, their codes converted as
 * they are read (int4: the sums kept in slot order); scaled per group, except with one group
 * (int8), whose scales apply once the parts are summed (sum_parts). sbuf: 2N floats. */
static void direct_kn(const qjob *j, int64_t k0, int64_t k1, float *part, float *tmp, float *sbuf)
{
    const rt_gemm_desc *g = j->g;
    int64_t N = g->N, M = g->M, bytes = g->qbits == 4 ? N / 2 : N; /* of a code row */
    bool one_group = g->qgroup == g->K;
    float *sum = one_group ? part : tmp; /* where the rows' products go */
    memset(part, 0, sizeof(float) * (size_t)(M * N));
    if (!one_group)
        memset(tmp, 0, sizeof(float) * (size_t)(M * N));
    for (int64_t k = k0; k < k1;) {
        int64_t group_end = (k / g->qgroup + 1) * g->qgroup;
        int64_t step = k + 4 <= k1 && k + 4 <= group_end ? 4 : 1;
        const uint8_t *q = (const uint8_t *)j->B + k * bytes;
        for (int64_t m = 0; m < M; m++) {
            int64_t inc;
            const float *a = a_row(j, m, &inc);
            float am[4] = {a[k * inc], 0, 0, 0};
            for (int64_t i = 1; i < step; i++)
                am[i] = a[(k + i) * inc];
            int64_t r1 = step == 4 ? bytes : 0; /* one row: the other three weigh 0 */
            if (g->qbits == 8)
                axpy4_q8(sum + m * N, am, (const int8_t *)q, (const int8_t *)q + r1, (const int8_t *)q + 2 * r1,
                         (const int8_t *)q + 3 * r1, N);
            else
                axpy4_q4(sum + m * N, sum + m * N + N / 2, am, q, q + r1, q + 2 * r1, q + 3 * r1, N / 2);
        }
        k += step;
        if (!one_group && k == group_end) {
            const float *s = scales_at(g, (k / g->qgroup - 1) * N, N, sbuf);
            if (g->qbits == 4) { /* in slot order */
                for (int64_t n = 0; n < N; n++)
                    sbuf[N + slot(g, n)] = s[n];
                s = sbuf + N;
            }
            for (int64_t m = 0; m < M; m++)
                scale_add(part + m * N, s, tmp + m * N, N);
        }
    }
}

/* Columns [n0, n1) of C, B's rows [N, K] (trans_b): each row n decoded whole, then dot products
 * per group with every row of A (gathered contiguous first when A is transposed). */
static void direct_nk(const qjob *j, int64_t n0, int64_t n1, float *row, float *arows, float *sbuf)
{
    const rt_gemm_desc *g = j->g;
    int64_t K = g->K, ng = K / g->qgroup;
    for (int64_t m = 0; m < g->M; m++) {
        int64_t inc;
        const float *a = a_row(j, m, &inc);
        for (int64_t k = 0; k < K; k++)
            arows[m * K + k] = a[k * inc];
    }
    for (int64_t n = n0; n < n1; n++) {
        decode_row(g, j->B, K, n, 0, K, row);
        const float *s = scales_at(g, n * ng, ng, sbuf);
        for (int64_t m = 0; m < g->M; m++) {
            float acc = 0;
            for (int64_t q = 0; q < ng; q++)
                acc += s[q] * dot(arows + m * K + q * g->qgroup, row + q * g->qgroup, g->qgroup);
            j->C[m * j->ldc + n] = acc;
        }
    }
}

/* Columns [n0, n1) of C through f32 panels of QB_K × (n1 − n0) dequantized weights and sgemm. */
static void panels(const qjob *j, int64_t n0, int64_t n1, float *panel, float *row, float *sbuf)
{
    const rt_gemm_desc *g = j->g;
    int64_t nb = n1 - n0, K = g->K;
    for (int64_t k0 = 0; k0 < K; k0 += QB_K) {
        int64_t kb = K - k0 < QB_K ? K - k0 : QB_K;
        if (!g->trans_b) /* panel [kb, nb]: row kk = B's row k0 + kk times its scales */
            for (int64_t kk = 0; kk < kb; kk++) {
                int64_t k = k0 + kk;
                decode_row(g, j->B, g->N, k, n0, n1, row);
                const float *s = scales_at(g, (k / g->qgroup) * g->N + n0, nb, sbuf);
                for (int64_t c = 0; c < nb; c++)
                    panel[kk * nb + c] = row[c] * s[c];
            }
        else /* panel [nb, kb]: row c = B's row n0 + c over k0..k0+kb, times its scales */
            for (int64_t c = 0; c < nb; c++) {
                int64_t n = n0 + c;
                decode_row(g, j->B, K, n, k0, k0 + kb, row);
                const float *s = scales_at(g, n * (K / g->qgroup), K / g->qgroup, sbuf);
                for (int64_t kk = 0; kk < kb; kk++)
                    panel[c * kb + kk] = row[kk] * s[(k0 + kk) / g->qgroup];
            }
        const float *a = j->A + (g->trans_a ? k0 * j->lda : k0);
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                    (int)g->M, (int)nb, (int)kb, 1.0f, a, (int)j->lda, panel, (int)(g->trans_b ? kb : nb),
                    k0 == 0 ? 0.0f : 1.0f, j->C + n0, (int)j->ldc);
    }
}

static float *xmalloc_f32(int64_t n)
{
    float *p = malloc(sizeof(float) * ((size_t)n + 1));
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Pool chunk: column blocks [b0, b1) (QB_N columns each; with trans_b and few rows of A, QB_N
 * rows of B each). */
static void blocks(void *ctx, int64_t b0, int64_t b1)
{
    const qjob *j = ctx;
    const rt_gemm_desc *g = j->g;
    bool direct = g->M <= QGEMM_DIRECT_M;
    float *row = xmalloc_f32(g->trans_b ? g->K : QB_N), *buf = xmalloc_f32(direct ? g->M * g->K : QB_K * QB_N);
    float *sbuf = xmalloc_f32(g->K / g->qgroup > QB_N ? g->K / g->qgroup : QB_N);
    for (int64_t b = b0; b < b1; b++) {
        int64_t n0 = b * QB_N, n1 = n0 + QB_N < g->N ? n0 + QB_N : g->N;
        if (direct)
            direct_nk(j, n0, n1, row, buf, sbuf);
        else
            panels(j, n0, n1, buf, row, sbuf);
    }
    free(row);
    free(buf);
    free(sbuf);
}

/* Without trans_b, few rows of A: the rows of B split into n_parts ranges of whole groups. */
typedef struct {
    const qjob *j;
    int64_t n_parts, rows_per; /* B's rows a part takes (a multiple of the group) */
    float *parts;              /* n_parts × M × N partial products */
} kn_job;

static void kn_parts(void *ctx, int64_t p0, int64_t p1)
{
    const kn_job *kj = ctx;
    const rt_gemm_desc *g = kj->j->g;
    float *tmp = xmalloc_f32(g->M * g->N), *sbuf = xmalloc_f32(2 * g->N);
    for (int64_t p = p0; p < p1; p++) {
        int64_t k0 = p * kj->rows_per, k1 = k0 + kj->rows_per < g->K ? k0 + kj->rows_per : g->K;
        direct_kn(kj->j, k0, k1, kj->parts + p * g->M * g->N, tmp, sbuf);
    }
    free(tmp);
    free(sbuf);
}

/* C = the parts summed (times the scales when there is one group), from slot order (int4);
 * sbuf: 2N floats. */
HOT_CLONES static void sum_parts(const kn_job *kj, int64_t ldc, float *restrict C, float *sbuf)
{
    const rt_gemm_desc *g = kj->j->g;
    int64_t N = g->N, MN = g->M * N;
    const float *restrict s = g->qgroup == g->K ? scales_at(g, 0, N, sbuf) : NULL;
    float *restrict t = sbuf + N;
    for (int64_t m = 0; m < g->M; m++) {
        const float *p0 = kj->parts + m * N;
        for (int64_t n = 0; n < N; n++)
            t[n] = p0[n];
        for (int64_t p = 1; p < kj->n_parts; p++)
            for (int64_t n = 0; n < N; n++)
                t[n] += p0[p * MN + n];
        float *restrict c = C + m * ldc;
        for (int64_t n = 0; n < N; n++)
            c[n] = t[slot(g, n)] * (s ? s[n] : 1.0f);
    }
}

void rt_qgemm_f32(const rt_gemm_desc *g, const float *A, int64_t lda, const void *B, float *C, int64_t ldc)
{
    qjob j = {g, A, B, C, lda, ldc};
    if (g->M <= QGEMM_DIRECT_M && !g->trans_b) {
        /* parts of whole groups (at least 64 rows: fewer are not worth a task) */
        int64_t threads = rt_pool_size(g->pool) > 0 ? rt_pool_size(g->pool) : 1;
        int64_t unit = g->qgroup == g->K ? 1 : g->qgroup, units = g->K / unit;
        int64_t per = (units + 4 * threads - 1) / (4 * threads); /* 4 a thread: the pool balances them */
        while (per * unit < 64 && per < units)
            per++;
        kn_job kj = {&j, per ? (units + per - 1) / per : 1, per * unit, NULL};
        kj.parts = xmalloc_f32(kj.n_parts * g->M * g->N);
        rt_pool_parallel_for_grain(g->pool, kj.n_parts, 1, kn_parts, &kj);
        float *sbuf = xmalloc_f32(2 * g->N);
        sum_parts(&kj, ldc, C, sbuf);
        free(sbuf);
        free(kj.parts);
        return;
    }
    int64_t n_blocks = (g->N + QB_N - 1) / QB_N;
    int prev = openblas_get_num_threads();
    if (prev != 1)
        openblas_set_num_threads(1);
    rt_pool_parallel_for(g->pool, n_blocks, blocks, &j);
    if (prev != 1)
        openblas_set_num_threads(prev);
}
