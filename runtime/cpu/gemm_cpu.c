/* gemm_cpu.c — rt_gemm_f32/f64/half on the CPU: per batch entry oneDNN's matmul (gemm_dnnl.c:
 * f32 GEMMs on all threads from DNNL_MIN_MNK on, and half operands) or OpenBLAS cblas_{s,d}gemm
 * (row-major; GEMVs, small and f64 GEMMs, and wherever oneDNN is off or missing), then the
 * epilogue (bias, then the caller's epilogue function) over the rows of C.
 *
 * Threading. A batch runs one of two ways (rt_gemm_batch_policy):
 *  - SERIAL: loop over the batch on the caller; OpenBLAS threads each GEMM itself (it goes
 *    single-threaded on its own below M·N·K ≈ 2^18). The epilogue then runs over all rows of C
 *    on the pool.
 *  - POOL: OpenBLAS is set to one thread for the call and the pool splits the batch; each chunk
 *    applies the epilogue to its own C matrices while they are still in cache.
 * AUTO picks POOL for batches of GEMMs that OpenBLAS would not thread well, or that divide
 * evenly over the threads (see choose_pool, measured on GPT-2's attention shapes).
 *
 * Elements are addressed as float or double through one driver: `f64` selects the type.
 */
#include "runtime/cpu/gemm_cpu.h"
#include "runtime/cpu/gemm_dnnl.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* OpenBLAS 0.3.x runs a GEMM single-threaded when M·N·K ≤ 65536 · GEMM_MULTITHREAD_THRESHOLD
 * (default 4). Up to SMALL_GEMM_MNK, splitting a batch across threads beats letting OpenBLAS
 * thread each GEMM whatever the batch size (see choose_pool). */
#define OPENBLAS_SERIAL_MNK (1 << 18)
#define SMALL_GEMM_MNK (1 << 24)
/* From this size on a GEMM on all threads goes to oneDNN (gemm_dnnl.c): it took 5–29% less time
 * than OpenBLAS there on GPT-2's shapes; below it OpenBLAS's one thread is as fast. */
#define DNNL_MIN_MNK OPENBLAS_SERIAL_MNK

rt_gemm_desc rt_gemm_desc_make(int64_t M, int64_t N, int64_t K) {
    rt_gemm_desc g;
    memset(&g, 0, sizeof g);
    g.M = M;
    g.N = N;
    g.K = K;
    g.alpha = 1.0;
    g.beta = 0.0;
    g.policy = RT_GEMM_BATCH_AUTO;
    return g;
}

const char *rt_gemm_desc_from_shapes(rt_gemm_desc *g, int rank_a, const int64_t *shape_a,
                                     int rank_b, const int64_t *shape_b, int trans_a,
                                     int trans_b) {
    if (rank_a < 2 || rank_b < 2) return "matmul operands need rank >= 2";
    int64_t M = shape_a[rank_a - (trans_a ? 1 : 2)];
    int64_t K = shape_a[rank_a - (trans_a ? 2 : 1)];
    int64_t Kb = shape_b[rank_b - (trans_b ? 1 : 2)];
    int64_t N = shape_b[rank_b - (trans_b ? 2 : 1)];
    if (K != Kb) return "matmul contraction dims differ";
    *g = rt_gemm_desc_make(M, N, K);
    g->trans_a = trans_a;
    g->trans_b = trans_b;

    /* Batch dims, aligned from the right. Walk from the innermost batch dim outwards,
     * accumulating each operand's contiguous stride, and collect the kept dims reversed. */
    int nba = rank_a - 2, nbb = rank_b - 2;
    int nb = nba > nbb ? nba : nbb;
    int64_t sa = M * K, sb = K * N, sc = M * N;  /* element stride of the current dim */
    int64_t dims[8], st_a[8], st_b[8], st_c[8];
    int kept = 0;
    for (int i = 0; i < nb; i++) {  /* i-th batch dim from the right */
        int64_t da = i < nba ? shape_a[nba - 1 - i] : 1;
        int64_t db = i < nbb ? shape_b[nbb - 1 - i] : 1;
        if (da != db && da != 1 && db != 1) return "matmul batch dims do not broadcast";
        int64_t d = da == 1 ? db : da;
        if (d != 1) {
            if (kept == RT_GEMM_MAX_BATCH_DIMS) return "matmul has too many batch dims";
            dims[kept] = d;
            st_a[kept] = da == 1 ? 0 : sa;
            st_b[kept] = db == 1 ? 0 : sb;
            st_c[kept] = sc;
            kept++;
        }
        sa *= da;
        sb *= db;
        sc *= d;
    }
    g->nbatch = kept;
    for (int i = 0; i < kept; i++) {  /* reverse into outermost-first order */
        g->batch[i] = dims[kept - 1 - i];
        g->stride_a[i] = st_a[kept - 1 - i];
        g->stride_b[i] = st_b[kept - 1 - i];
        g->stride_c[i] = st_c[kept - 1 - i];
    }
    return NULL;
}

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* The leading dims a call uses: the given ones, or packed (at least 1, as BLAS requires). */
static int64_t ld_a(const rt_gemm_desc *g) { return g->lda ? g->lda : max1(g->trans_a ? g->M : g->K); }
static int64_t ld_b(const rt_gemm_desc *g) { return g->ldb ? g->ldb : max1(g->trans_b ? g->K : g->N); }
static int64_t ld_c(const rt_gemm_desc *g) { return g->ldc ? g->ldc : max1(g->N); }

const char *rt_gemm_validate(const rt_gemm_desc *g) {
    if (g->M < 0 || g->N < 0 || g->K < 0) return "gemm: negative M, N or K";
    if (g->M > INT_MAX || g->N > INT_MAX || g->K > INT_MAX) return "gemm: M, N or K exceeds int";
    if (g->nbatch < 0 || g->nbatch > RT_GEMM_MAX_BATCH_DIMS) return "gemm: bad number of batch dims";
    for (int d = 0; d < g->nbatch; d++) {
        if (g->batch[d] < 0) return "gemm: negative batch dim";
        if (g->batch[d] > 1 && g->stride_c[d] == 0) return "gemm: C batch stride 0 (C broadcast)";
    }
    int64_t lda = ld_a(g), ldb = ld_b(g), ldc = ld_c(g);
    if (lda < max1(g->trans_a ? g->M : g->K)) return "gemm: lda too small";
    if (ldb < max1(g->trans_b ? g->K : g->N)) return "gemm: ldb too small";
    if (ldc < max1(g->N)) return "gemm: ldc too small";
    if (lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX) return "gemm: leading dim exceeds int";
    if ((unsigned)g->policy > RT_GEMM_BATCH_POOL) return "gemm: unknown batch policy";
    if (g->qbits != 0 && g->qbits != 8 && g->qbits != 4) return "gemm: quantized B of 8 or 4 bits only";
    if (g->qbits) {
        for (int d = 0; d < g->nbatch; d++)
            if (g->stride_b[d] != 0) return "gemm: a quantized B is shared by the batch";
        if (g->qgroup <= 0 || g->K % g->qgroup != 0 || !g->qscales) return "gemm: quantized B's groups or scales";
        int64_t cols = g->trans_b ? g->K : g->N;
        if (ldb != max1(cols)) return "gemm: a quantized B is packed";
        if (g->qbits == 4 && cols % 2) return "gemm: int4 rows hold pairs of codes";
        if (g->alpha != 1.0 || g->beta != 0.0) return "gemm: a quantized B takes alpha 1, beta 0";
    }
    return NULL;
}

/* ---- epilogue: row[j] += bias[j] for j < n, then the caller's epilogue ---- */

#define DEFINE_BIAS_ROW(name, T)                                                                 \
    static void name(T *restrict row, int64_t n, const T *restrict bias) {                       \
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];                                       \
    }

DEFINE_BIAS_ROW(bias_row_f32, float)
DEFINE_BIAS_ROW(bias_row_f64, double)
#undef DEFINE_BIAS_ROW

/* ---- the driver, shared by f32 and f64 ---- */

typedef struct {
    const rt_gemm_desc *g;
    bool f64;
    const void *A, *B;
    void *C;
    int64_t lda, ldb, ldc;
    bool has_epilogue;
    int threads;       /* > 0: the GEMM may run on oneDNN with this many threads (SERIAL policy) */
} gemm_job;

/* Element offsets of batch entry `flat` (row-major over g->batch) in A, B and C. */
static void batch_offsets(const rt_gemm_desc *g, int64_t flat, int64_t *oa, int64_t *ob, int64_t *oc) {
    *oa = *ob = *oc = 0;
    for (int d = g->nbatch - 1; d >= 0; d--) {
        int64_t i = flat % g->batch[d];
        flat /= g->batch[d];
        *oa += i * g->stride_a[d];
        *ob += i * g->stride_b[d];
        *oc += i * g->stride_c[d];
    }
}

/* Rows [r0, r1) of C[b], at element offset oc: bias, then the caller's epilogue. */
static void epilogue_rows(const gemm_job *j, int64_t b, int64_t oc, int64_t r0, int64_t r1) {
    const rt_gemm_desc *g = j->g;
    for (int64_t r = r0; g->bias && r < r1; r++) {
        if (j->f64)
            bias_row_f64((double *)j->C + oc + r * j->ldc, g->N, g->bias);
        else
            bias_row_f32((float *)j->C + oc + r * j->ldc, g->N, g->bias);
    }
    if (g->epilogue) g->epilogue(g->epilogue_ctx, b * g->M + r0, b * g->M + r1);
}

/* C (M, N) at offset oc ← beta·C: what a GEMM with K = 0 computes (BLAS rejects ld 0 there). */
static void scale_c(const gemm_job *j, int64_t oc) {
    const rt_gemm_desc *g = j->g;
    for (int64_t r = 0; r < g->M; r++) {
        for (int64_t c = 0; c < g->N; c++) {
            int64_t at = oc + r * j->ldc + c;
            if (j->f64) {
                double *p = (double *)j->C + at;
                *p = g->beta == 0.0 ? 0.0 : g->beta * *p;
            } else {
                float *p = (float *)j->C + at;
                *p = g->beta == 0.0 ? 0.0f : (float)g->beta * *p;
            }
        }
    }
}

/* One GEMM of the batch, without the epilogue. */
static void gemm_one(const gemm_job *j, int64_t flat) {
    const rt_gemm_desc *g = j->g;
    int64_t oa, ob, oc;
    batch_offsets(g, flat, &oa, &ob, &oc);
    if (g->K == 0) {
        scale_c(j, oc);
        return;
    }
    if (g->qbits) { /* f32 only (gemm_run) */
        rt_qgemm_f32(g, (const float *)j->A + oa, j->lda, j->B, (float *)j->C + oc, j->ldc);
        return;
    }
    enum CBLAS_TRANSPOSE ta = g->trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = g->trans_b ? CblasTrans : CblasNoTrans;
    if (g->M == 1) {
        /* one row (a decode step): GEMV reads B once; OpenBLAS's GEMM would pack all of B
         * first (2-4x slower for GPT-2's weights on the dev machine) */
        enum CBLAS_TRANSPOSE tv = g->trans_b ? CblasNoTrans : CblasTrans;
        int rows = (int)(g->trans_b ? g->N : g->K), cols = (int)(g->trans_b ? g->K : g->N);
        int inc_a = g->trans_a ? (int)j->lda : 1;
        if (j->f64)
            cblas_dgemv(CblasRowMajor, tv, rows, cols, g->alpha, (const double *)j->B + ob, (int)j->ldb,
                        (const double *)j->A + oa, inc_a, g->beta, (double *)j->C + oc, 1);
        else
            cblas_sgemv(CblasRowMajor, tv, rows, cols, (float)g->alpha, (const float *)j->B + ob, (int)j->ldb,
                        (const float *)j->A + oa, inc_a, (float)g->beta, (float *)j->C + oc, 1);
        return;
    }
    if (!j->f64 && j->threads > 0 && (double)g->M * (double)g->N * (double)g->K >= (double)DNNL_MIN_MNK) {
        rt_dnnl_call c = {
            .ta = g->trans_a, .tb = g->trans_b, .M = g->M, .N = g->N, .K = g->K,
            .lda = j->lda, .ldb = j->ldb, .ldc = j->ldc, .alpha = (float)g->alpha, .beta = (float)g->beta,
            .a_dt = DT_F32, .b_dt = DT_F32, .c_dt = DT_F32,
            .A = (const float *)j->A + oa, .B = (const float *)j->B + ob, .C = (float *)j->C + oc,
            .threads = j->threads,
        };
        if (rt_dnnl_gemm(&c)) return;
    }
    if (j->f64)
        cblas_dgemm(CblasRowMajor, ta, tb, (int)g->M, (int)g->N, (int)g->K, g->alpha,
                    (const double *)j->A + oa, (int)j->lda, (const double *)j->B + ob, (int)j->ldb,
                    g->beta, (double *)j->C + oc, (int)j->ldc);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, (int)g->M, (int)g->N, (int)g->K, (float)g->alpha,
                    (const float *)j->A + oa, (int)j->lda, (const float *)j->B + ob, (int)j->ldb,
                    (float)g->beta, (float *)j->C + oc, (int)j->ldc);
}

/* POOL policy chunk: batch entries [begin, end), each GEMM followed by its epilogue. */
static void batch_chunk(void *ctx, int64_t begin, int64_t end) {
    const gemm_job *j = ctx;
    for (int64_t b = begin; b < end; b++) {
        gemm_one(j, b);
        if (j->has_epilogue) {
            int64_t oa, ob, oc;
            batch_offsets(j->g, b, &oa, &ob, &oc);
            epilogue_rows(j, b, oc, 0, j->g->M);
        }
    }
}

/* SERIAL policy epilogue chunk: global rows [begin, end) of batch·M. */
static void epilogue_chunk(void *ctx, int64_t begin, int64_t end) {
    const gemm_job *j = ctx;
    int64_t M = j->g->M;
    for (int64_t r = begin; r < end;) {
        int64_t b = r / M, r0 = r % M;
        int64_t r1 = M < r0 + (end - r) ? M : r0 + (end - r);
        int64_t oa, ob, oc;
        batch_offsets(j->g, b, &oa, &ob, &oc);
        epilogue_rows(j, b, oc, r0, r1);
        r += r1 - r0;
    }
}

/* The AUTO rule, from bench measurements of GPT-2's attention GEMMs (batch·12 heads of
 * (T, 64) x (64, T) and (T, T) x (T, 64)) on the 2-core dev machine: splitting the batch was
 * 1.7-2.2x faster for T = 64 and 128, 1.6-2.6x for T = 256, and equal for T = 1024. It only
 * loses when a few large GEMMs divide unevenly over the threads. */
static bool choose_pool(const rt_gemm_desc *g, int64_t nbatch) {
    int p = rt_pool_size(g->pool);
    if (p <= 1 || nbatch < 2 || g->qbits) return false; /* a quantized GEMM splits its columns */
    if (g->policy != RT_GEMM_BATCH_AUTO) return g->policy == RT_GEMM_BATCH_POOL;
    double mnk = (double)g->M * (double)g->N * (double)g->K;
    if (mnk <= (double)OPENBLAS_SERIAL_MNK) return true;  /* OpenBLAS would use one thread */
    return nbatch >= p && (mnk <= (double)SMALL_GEMM_MNK || nbatch % p == 0 || nbatch >= 4 * p);
}

/* Threads for one GEMM on all of them: OpenBLAS's count, at most the pool's. */
static int gemm_threads(const rt_gemm_desc *g) {
    int n = openblas_get_num_threads();
    return g->pool && rt_pool_size(g->pool) < n ? rt_pool_size(g->pool) : n;
}

static int gemm_run(const rt_gemm_desc *g, bool f64, const void *A, const void *B, void *C) {
    if (rt_gemm_validate(g) || (f64 && g->qbits)) return -1;
    int64_t nbatch = 1;
    for (int d = 0; d < g->nbatch; d++) nbatch *= g->batch[d];
    if (nbatch == 0 || g->M == 0 || g->N == 0) return 0;

    gemm_job j = {
        .g = g, .f64 = f64, .A = A, .B = B, .C = C,
        .lda = ld_a(g), .ldb = ld_b(g), .ldc = ld_c(g),
        .has_epilogue = g->bias != NULL || g->epilogue != NULL,
    };

    if (choose_pool(g, nbatch)) {
        int prev = openblas_get_num_threads();
        if (prev != 1) openblas_set_num_threads(1);
        rt_pool_parallel_for(g->pool, nbatch, batch_chunk, &j);
        if (prev != 1) openblas_set_num_threads(prev);
        return 0;
    }
    j.threads = gemm_threads(g);
    for (int64_t b = 0; b < nbatch; b++) gemm_one(&j, b);
    if (j.has_epilogue) {
        int64_t cost = g->N * (g->epilogue ? 8 : 1);
        rt_pool_parallel_for_grain(g->pool, nbatch * g->M, rt_pool_grain(cost), epilogue_chunk, &j);
    }
    return 0;
}

int rt_gemm_f32(const rt_gemm_desc *g, const float *A, const float *B, float *C) {
    return gemm_run(g, false, A, B, C);
}

int rt_gemm_f64(const rt_gemm_desc *g, const double *A, const double *B, double *C) {
    return gemm_run(g, true, A, B, C);
}

int rt_gemm_half(const rt_gemm_desc *g, const rt_gemm_types *t, const void *A, const void *B, void *C) {
    if (rt_gemm_validate(g) || g->qbits || g->epilogue) return -1;
    if (!rt_dnnl_enabled()) return 1;
    int64_t nbatch = 1;
    for (int d = 0; d < g->nbatch; d++) nbatch *= g->batch[d];
    if (nbatch == 0 || g->M == 0 || g->N == 0) return 0;
    int64_t ea = ir_dtype_size(t->a), eb = ir_dtype_size(t->b), ec = ir_dtype_size(t->c);
    rt_dnnl_call c = {
        .ta = g->trans_a, .tb = g->trans_b, .M = g->M, .N = g->N, .K = g->K,
        .lda = ld_a(g), .ldb = ld_b(g), .ldc = ld_c(g), .alpha = (float)g->alpha, .beta = (float)g->beta,
        .a_dt = t->a, .b_dt = t->b, .c_dt = t->c, .bias_dt = t->bias, .bias = g->bias,
        .threads = gemm_threads(g),
    };
    for (int64_t b = 0; b < nbatch; b++) {
        int64_t oa, ob, oc;
        batch_offsets(g, b, &oa, &ob, &oc);
        c.A = (const char *)A + oa * ea;
        c.B = (const char *)B + ob * eb;
        c.C = (char *)C + oc * ec;
        if (g->K == 0 || !rt_dnnl_gemm(&c)) {
            if (b > 0) abort(); /* the first entry decides: oneDNN runs them all or none */
            return 1;
        }
    }
    return 0;
}
