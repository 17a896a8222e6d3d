/* test_gemm.c — rt_gemm_f32/f64 against a naive triple loop in double: random shapes (M, N,
 * K = 1 included), transposes, padded leading dims, batch broadcast (stride 0 on A or B),
 * alpha/beta (beta = 1 accumulates), bias and a caller's epilogue function (each row of the batch
 * exactly once, numbered b·M + r), both batch policies, K = 0, empty
 * problems, invalid descriptors, and rt_gemm_desc_from_shapes against an independent
 * NumPy-style broadcasting matmul. Prints max abs/rel error per group.
 *
 * Tolerance: |C − ref| ≤ tol · (|ref| + 1) with tol = 1e-5 · max(1, K/256) for f32 (1e-12 · ...
 * for f64): round-off of a K-term dot product grows with K.
 *
 * Large f32 GEMMs on all threads run on oneDNN (gemm_dnnl.c) unless LOOM_CPU_GEMM=openblas:
 * ctest runs this file both ways. rt_gemm_half (bf16/f16 operands read as they are) is checked
 * against the reference on the same half-rounded values: f32 C within the f32 tolerance, a half
 * C within one rounding of its type (2^-8 bf16, 2^-11 f16) on top. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/gemm_cpu.h"
#include "runtime/cpu/gemm_dnnl.h"
#include "runtime/half.h"
#include "runtime/threadpool.h"

#include "test_check.h"

/* ---- random numbers: xorshift64*, uniform in [-1, 1) ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double rng_uniform(void) { return (double)(rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0; }
static int rng_int(int n) { return (int)(rng_u64() % (uint64_t)n); }

/* ---- error bookkeeping for one group of checks ---- */

typedef struct {
    const char *name;
    double max_abs, max_rel;
    int bad, cases;
} err_stats;

static void stats_add(err_stats *s, double got, double ref, double tol) {
    double abs_err = fabs(got - ref), rel = abs_err / (fabs(ref) + 1.0);
    if (!(abs_err <= s->max_abs)) s->max_abs = abs_err;  /* NaN-safe: NaN becomes the max */
    if (!(rel <= s->max_rel)) s->max_rel = rel;
    if (!(rel <= tol)) s->bad++;
}

static void stats_report(const err_stats *s) {
    printf("%-28s %4d cases  max abs err %.3e  max rel err %.3e  %s\n", s->name, s->cases,
           s->max_abs, s->max_rel, s->bad ? "FAIL" : "OK");
    CHECK(s->bad == 0, "%s: %d elements out of tolerance", s->name, s->bad);
}

/* ---- the reference: the descriptor's definition, naively, in double ---- */

/* The caller's epilogue used here: y = x/2 − 1 (applied twice or not at all, it shows). */
static double epi_ref(double x) { return 0.5 * x - 1.0; }

static int64_t nbatch_total(const rt_gemm_desc *g) {
    int64_t n = 1;
    for (int d = 0; d < g->nbatch; d++) n *= g->batch[d];
    return n;
}

static int64_t lda_of(const rt_gemm_desc *g) { return g->lda ? g->lda : (g->trans_a ? g->M : g->K); }
static int64_t ldb_of(const rt_gemm_desc *g) { return g->ldb ? g->ldb : (g->trans_b ? g->K : g->N); }
static int64_t ldc_of(const rt_gemm_desc *g) { return g->ldc ? g->ldc : g->N; }

/* Elements an operand spans: batch offsets + (rows - 1)·ld + cols. */
static size_t extent(const rt_gemm_desc *g, const int64_t *stride, int64_t rows, int64_t cols, int64_t ld) {
    int64_t e = 0;
    for (int d = 0; d < g->nbatch; d++) e += (g->batch[d] - 1) * stride[d];
    if (rows > 0 && cols > 0) e += (rows - 1) * ld + cols;
    return (size_t)(e > 0 ? e : 1);
}

static void offsets(const rt_gemm_desc *g, int64_t flat, int64_t *oa, int64_t *ob, int64_t *oc) {
    *oa = *ob = *oc = 0;
    for (int d = g->nbatch - 1; d >= 0; d--) {
        int64_t i = flat % g->batch[d];
        flat /= g->batch[d];
        *oa += i * g->stride_a[d];
        *ob += i * g->stride_b[d];
        *oc += i * g->stride_c[d];
    }
}

/* ref (same layout as C) ← the descriptor applied to A, B, C0 (all given as double). */
static void ref_gemm(const rt_gemm_desc *g, const double *A, const double *B, const double *C0,
                     const double *bias, double *ref) {
    int64_t lda = lda_of(g), ldb = ldb_of(g), ldc = ldc_of(g);
    for (int64_t b = 0; b < nbatch_total(g); b++) {
        int64_t oa, ob, oc;
        offsets(g, b, &oa, &ob, &oc);
        for (int64_t i = 0; i < g->M; i++)
            for (int64_t j = 0; j < g->N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < g->K; k++) {
                    double a = g->trans_a ? A[oa + k * lda + i] : A[oa + i * lda + k];
                    double bb = g->trans_b ? B[ob + j * ldb + k] : B[ob + k * ldb + j];
                    acc += a * bb;
                }
                int64_t at = oc + i * ldc + j;
                double v = g->alpha * acc + (g->beta != 0 ? g->beta * C0[at] : 0);
                if (bias) v += bias[j];
                ref[at] = g->epilogue ? epi_ref(v) : v;
            }
    }
}

/* The epilogue of the descriptors with one: epi_ref over rows [row0, row1) of C (row b·M + r
 * is row r of C[b]), counting the calls each row gets. */
typedef struct {
    const rt_gemm_desc *g;
    void *C;
    bool f64;
    int *visits;  /* per row of the batch */
} epi_ctx;

static void test_epilogue(void *ctx, int64_t row0, int64_t row1) {
    const epi_ctx *e = ctx;
    const rt_gemm_desc *g = e->g;
    for (int64_t row = row0; row < row1; row++) {
        int64_t oa, ob, oc;
        offsets(g, row / g->M, &oa, &ob, &oc);
        oc += row % g->M * ldc_of(g);
        e->visits[row]++;  /* ranges are disjoint: no two threads touch one row */
        for (int64_t j = 0; j < g->N; j++) {
            if (e->f64)
                ((double *)e->C)[oc + j] = epi_ref(((double *)e->C)[oc + j]);
            else
                ((float *)e->C)[oc + j] = (float)epi_ref(((float *)e->C)[oc + j]);
        }
    }
}

/* Every row of the batch got the epilogue exactly once. */
static void check_visits(const rt_gemm_desc *g, int *visits, err_stats *st) {
    int64_t rows = nbatch_total(g) * g->M;
    for (int64_t r = 0; g->epilogue && r < rows; r++) {
        if (visits[r] != 1) st->bad++;
        visits[r] = 0;
    }
}

/* Runs *g in f32 (and f64 when `f64`) on random data and compares with ref_gemm. Elements of C
 * that no batch entry covers (padding) must be left alone. */
static void check_desc(const rt_gemm_desc *g_in, bool with_bias, bool f64, err_stats *st) {
    rt_gemm_desc g = *g_in;
    int *visits = calloc((size_t)(nbatch_total(&g) * g.M) + 1, sizeof *visits);
    epi_ctx ectx = {&g, NULL, false, visits};
    g.epilogue_ctx = &ectx;
    size_t na = extent(&g, g.stride_a, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, lda_of(&g));
    size_t nb = extent(&g, g.stride_b, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, ldb_of(&g));
    size_t nc = extent(&g, g.stride_c, g.M, g.N, ldc_of(&g));
    size_t nbias = g.N > 0 ? (size_t)g.N : 1;
    double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C0 = malloc(nc * sizeof *C0);
    double *bias = malloc(nbias * sizeof *bias), *ref = malloc(nc * sizeof *ref);
    float *Af = malloc(na * sizeof *Af), *Bf = malloc(nb * sizeof *Bf), *Cf = malloc(nc * sizeof *Cf);
    float *biasf = malloc(nbias * sizeof *biasf);
    for (size_t i = 0; i < na; i++) Af[i] = (float)(A[i] = rng_uniform());
    for (size_t i = 0; i < nb; i++) Bf[i] = (float)(B[i] = rng_uniform());
    for (size_t i = 0; i < nc; i++) Cf[i] = (float)(C0[i] = rng_uniform());
    for (size_t i = 0; i < nbias; i++) biasf[i] = (float)(bias[i] = rng_uniform());
    memcpy(ref, C0, nc * sizeof *ref);  /* padding keeps C0 */
    ref_gemm(&g, A, B, C0, with_bias ? bias : NULL, ref);

    double tol = 1e-5 * fmax(1.0, (double)g.K / 256.0);
    g.bias = with_bias ? biasf : NULL;
    ectx.C = Cf;
    int rc = rt_gemm_f32(&g, Af, Bf, Cf);
    CHECK(rc == 0, "%s: rt_gemm_f32 rejected a valid descriptor: %s", st->name, rt_gemm_validate(&g));
    for (size_t i = 0; i < nc; i++) stats_add(st, Cf[i], ref[i], tol);
    check_visits(&g, visits, st);
    st->cases++;

    if (f64) {
        double *Cd = malloc(nc * sizeof *Cd);
        memcpy(Cd, C0, nc * sizeof *Cd);
        g.bias = with_bias ? bias : NULL;
        ectx.C = Cd, ectx.f64 = true;
        rc = rt_gemm_f64(&g, A, B, Cd);
        CHECK(rc == 0, "%s: rt_gemm_f64 rejected a valid descriptor", st->name);
        check_visits(&g, visits, st);
        double tol64 = 1e-12 * fmax(1.0, (double)g.K / 256.0);
        for (size_t i = 0; i < nc; i++) {
            double e = fabs(Cd[i] - ref[i]) / (fabs(ref[i]) + 1.0);
            if (!(e <= tol64)) st->bad++;
        }
        free(Cd);
    }
    free(A); free(B); free(C0); free(bias); free(ref);
    free(Af); free(Bf); free(Cf); free(biasf); free(visits);
}

/* ---- groups ---- */

static const int64_t dims_pool[] = {1, 1, 2, 3, 7, 16, 17, 33, 64, 100};

static int64_t rand_dim(void) { return dims_pool[rng_int(sizeof dims_pool / sizeof *dims_pool)]; }

/* Random shapes, transposes, leading dims, batches with broadcast, alpha/beta, epilogues. */
static void test_random(rt_pool *pool) {
    err_stats st = {.name = "random shapes"};
    for (int t = 0; t < 120; t++) {
        rt_gemm_desc g = rt_gemm_desc_make(rand_dim(), rand_dim(), rand_dim());
        g.trans_a = rng_int(2);
        g.trans_b = rng_int(2);
        if (rng_int(3) == 0) g.lda = lda_of(&g) + 1 + rng_int(5);
        if (rng_int(3) == 0) g.ldb = ldb_of(&g) + 1 + rng_int(5);
        if (rng_int(3) == 0) g.ldc = ldc_of(&g) + 1 + rng_int(5);
        const double alphas[] = {1.0, 0.5, -2.0}, betas[] = {0.0, 0.0, 1.0, 0.3};
        g.alpha = alphas[rng_int(3)];
        g.beta = betas[rng_int(4)];
        g.epilogue = rng_int(2) ? test_epilogue : NULL;
        g.nbatch = rng_int(3);
        /* batch strides: packed, outermost first; A or B may broadcast a dim (stride 0) */
        int64_t sa = (g.trans_a ? g.K : g.M) * lda_of(&g), sb = (g.trans_b ? g.N : g.K) * ldb_of(&g);
        int64_t sc = g.M * ldc_of(&g);
        for (int d = g.nbatch - 1; d >= 0; d--) {
            g.batch[d] = 1 + rng_int(3);
            int bc = rng_int(4);  /* 0: broadcast A, 1: broadcast B, else none */
            g.stride_a[d] = bc == 0 ? 0 : sa;
            g.stride_b[d] = bc == 1 ? 0 : sb;
            g.stride_c[d] = sc;
            if (bc != 0) sa *= g.batch[d];
            if (bc != 1) sb *= g.batch[d];
            sc *= g.batch[d];
        }
        g.pool = rng_int(4) ? pool : NULL;
        g.policy = (rt_gemm_batch_policy)rng_int(3);
        check_desc(&g, rng_int(2), t % 4 == 0, &st);
    }
    stats_report(&st);
}

/* beta = 1 accumulates into C; beta = 0 ignores NaN in C. */
static void test_beta(rt_pool *pool) {
    err_stats st = {.name = "beta = 1 accumulation"};
    rt_gemm_desc g = rt_gemm_desc_make(37, 29, 53);
    g.beta = 1.0;
    g.pool = pool;
    check_desc(&g, false, true, &st);
    g.trans_a = g.trans_b = 1;
    g.alpha = -1.0;
    check_desc(&g, true, true, &st);
    stats_report(&st);

    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1};
    float C[4] = {NAN, NAN, INFINITY, NAN};  /* (2,3) x (3,2) */
    rt_gemm_desc h = rt_gemm_desc_make(2, 2, 3);
    CHECK(rt_gemm_f32(&h, A, B, C) == 0, "beta = 0 call");
    CHECK(C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11,
          "beta = 0 must ignore C: got %g %g %g %g", C[0], C[1], C[2], C[3]);
}

/* Bias and the caller's epilogue, each alone and together, through both the serial and the pool
 * path (the pool calls the epilogue on each batch entry's rows right after its GEMM). */
static void test_epilogues(rt_pool *pool) {
    static const char *names[] = {"epilogue: bias", "epilogue: function", "epilogue: bias + function"};
    for (int e = 0; e < 3; e++) {
        err_stats st = {.name = names[e]};
        bool bias = e != 1;
        rt_gemm_desc g = rt_gemm_desc_make(65, 96, 48);
        g.epilogue = e ? test_epilogue : NULL;
        g.alpha = 2.0;
        g.pool = pool;
        check_desc(&g, bias, true, &st);
        g.nbatch = 1;  /* batched: 6 small GEMMs, POOL policy runs the epilogue per chunk */
        g.batch[0] = 6;
        g.stride_a[0] = g.M * g.K;
        g.stride_b[0] = 0;
        g.stride_c[0] = g.M * g.N;
        g.policy = RT_GEMM_BATCH_POOL;
        check_desc(&g, bias, true, &st);
        g.policy = RT_GEMM_BATCH_SERIAL;
        check_desc(&g, bias, false, &st);
        g.ldc = g.N + 3; /* padded rows */
        g.stride_c[0] = g.M * g.ldc;
        check_desc(&g, bias, false, &st);
        stats_report(&st);
    }
}

/* Larger problems: OpenBLAS's threaded path, both batch policies, broadcast B (a weight). */
static void test_large(rt_pool *pool) {
    err_stats st = {.name = "large + batch policies"};
    for (int p = 0; p < 3; p++) {
        rt_gemm_desc g = rt_gemm_desc_make(130, 150, 300);
        g.pool = pool;
        g.policy = (rt_gemm_batch_policy)p;
        g.nbatch = 2;
        g.batch[0] = 2, g.batch[1] = 3;
        g.stride_a[1] = g.M * g.K, g.stride_a[0] = 3 * g.M * g.K;
        g.stride_b[1] = g.K * g.N, g.stride_b[0] = 0;  /* B broadcast over dim 0 */
        g.stride_c[1] = g.M * g.N, g.stride_c[0] = 3 * g.M * g.N;
        g.epilogue = test_epilogue;
        check_desc(&g, true, p == 0, &st);
    }
    /* attention-like: 12 heads of (64, 64) x (64, 64)^T, AUTO picks the pool split */
    rt_gemm_desc g = rt_gemm_desc_make(64, 64, 64);
    g.trans_b = 1;
    g.alpha = 0.125;
    g.pool = pool;
    g.nbatch = 1;
    g.batch[0] = 12;
    g.stride_a[0] = g.stride_b[0] = g.stride_c[0] = 64 * 64;
    check_desc(&g, false, false, &st);
    stats_report(&st);
}

/* K = 0 (C = beta·C + bias, then the epilogue), empty problems, invalid descriptors. */
static void test_edges(void) {
    err_stats st = {.name = "K = 0"};
    rt_gemm_desc g = rt_gemm_desc_make(5, 4, 0);
    check_desc(&g, false, true, &st);
    g.beta = 0.5;
    g.epilogue = test_epilogue;
    check_desc(&g, true, true, &st);
    stats_report(&st);

    float A[4] = {1, 1, 1, 1}, B[4] = {1, 1, 1, 1}, C[4] = {7, 7, 7, 7};
    rt_gemm_desc e = rt_gemm_desc_make(0, 2, 2);
    CHECK(rt_gemm_f32(&e, A, B, C) == 0 && C[0] == 7, "M = 0 must do nothing");
    e = rt_gemm_desc_make(2, 0, 2);
    CHECK(rt_gemm_f32(&e, A, B, C) == 0 && C[0] == 7, "N = 0 must do nothing");
    e = rt_gemm_desc_make(2, 2, 2);
    e.nbatch = 1;
    e.batch[0] = 0;
    CHECK(rt_gemm_f32(&e, A, B, C) == 0 && C[0] == 7, "batch 0 must do nothing");

    struct { const char *what; rt_gemm_desc g; } bad[5];
    for (int i = 0; i < 5; i++) bad[i].g = rt_gemm_desc_make(2, 2, 2);
    bad[0].what = "negative M", bad[0].g.M = -1;
    bad[1].what = "lda too small", bad[1].g.lda = 1;
    bad[2].what = "ldc too small", bad[2].g.ldc = 1;
    bad[3].what = "C broadcast", bad[3].g.nbatch = 1, bad[3].g.batch[0] = 2;
    bad[4].what = "too many batch dims", bad[4].g.nbatch = RT_GEMM_MAX_BATCH_DIMS + 1;
    for (int i = 0; i < 5; i++) {
        CHECK(rt_gemm_validate(&bad[i].g) != NULL, "validate accepted: %s", bad[i].what);
        CHECK(rt_gemm_f32(&bad[i].g, A, B, C) == -1 && C[0] == 7, "gemm ran with %s", bad[i].what);
    }
    printf("%-28s %4d cases  rejected, C untouched       OK\n", "invalid descriptors", 5);
}

/* ---- rt_gemm_desc_from_shapes against an independent broadcasting matmul ---- */

/* out[batch..., M, N] = matmul(a, b) by ir.md, with explicit NumPy broadcasting of indices. */
static void ref_matmul(int ra, const int64_t *sa, int rb, const int64_t *sb, int ta, int tb,
                       const double *a, const double *b, int ro, const int64_t *so, double *out) {
    int64_t M = so[ro - 2], N = so[ro - 1], K = sa[ra - (ta ? 2 : 1)];
    int64_t total = 1;
    for (int d = 0; d < ro - 2; d++) total *= so[d];
    for (int64_t flat = 0; flat < total; flat++) {
        /* multi-index over the output batch dims, then each operand's own (right-aligned) */
        int64_t idx[8], rem = flat;
        for (int d = ro - 3; d >= 0; d--) idx[d] = rem % so[d], rem /= so[d];
        int64_t offa = 0, offb = 0;
        for (int d = 0; d < ra - 2; d++) {
            int64_t i = sa[d] == 1 ? 0 : idx[d + (ro - ra)];
            offa = offa * sa[d] + i;
        }
        for (int d = 0; d < rb - 2; d++) {
            int64_t i = sb[d] == 1 ? 0 : idx[d + (ro - rb)];
            offb = offb * sb[d] + i;
        }
        offa *= M * K, offb *= K * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (ta ? a[offa + k * M + i] : a[offa + i * K + k]) *
                           (tb ? b[offb + j * K + k] : b[offb + k * N + j]);
                out[flat * M * N + i * N + j] = acc;
            }
    }
}

static void check_shapes(int ra, const int64_t *sa, int rb, const int64_t *sb, int ta, int tb,
                         int ro, const int64_t *so, rt_pool *pool, err_stats *st) {
    rt_gemm_desc g;
    const char *err = rt_gemm_desc_from_shapes(&g, ra, sa, rb, sb, ta, tb);
    CHECK(err == NULL, "from_shapes: %s", err ? err : "");
    if (err) return;
    g.pool = pool;
    int64_t na = 1, nb = 1, no = 1;
    for (int d = 0; d < ra; d++) na *= sa[d];
    for (int d = 0; d < rb; d++) nb *= sb[d];
    for (int d = 0; d < ro; d++) no *= so[d];
    double *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    double *ref = malloc((size_t)no * sizeof *ref);
    float *af = malloc((size_t)na * sizeof *af), *bf = malloc((size_t)nb * sizeof *bf);
    float *of = malloc((size_t)no * sizeof *of);
    for (int64_t i = 0; i < na; i++) af[i] = (float)(a[i] = rng_uniform());
    for (int64_t i = 0; i < nb; i++) bf[i] = (float)(b[i] = rng_uniform());
    for (int64_t i = 0; i < no; i++) of[i] = NAN;
    ref_matmul(ra, sa, rb, sb, ta, tb, a, b, ro, so, ref);
    CHECK(rt_gemm_f32(&g, af, bf, of) == 0, "from_shapes gemm");
    for (int64_t i = 0; i < no; i++) stats_add(st, of[i], ref[i], 1e-5);
    st->cases++;
    free(a); free(b); free(ref); free(af); free(bf); free(of);
}

static void test_from_shapes(rt_pool *pool) {
    err_stats st = {.name = "from_shapes broadcast"};
    {   /* a [2, 1, 5, 7] x b [3, 7, 4] -> [2, 3, 5, 4] */
        int64_t sa[] = {2, 1, 5, 7}, sb[] = {3, 7, 4}, so[] = {2, 3, 5, 4};
        check_shapes(4, sa, 3, sb, 0, 0, 4, so, pool, &st);
    }
    {   /* a [5, 7] x b [4, 7, 6] -> [4, 5, 6]: A broadcast */
        int64_t sa[] = {5, 7}, sb[] = {4, 7, 6}, so[] = {4, 5, 6};
        check_shapes(2, sa, 3, sb, 0, 0, 3, so, pool, &st);
    }
    {   /* transposes: a [3, 7, 5]^T x b [1, 6, 7]^T -> [3, 5, 6] */
        int64_t sa[] = {3, 7, 5}, sb[] = {1, 6, 7}, so[] = {3, 5, 6};
        check_shapes(3, sa, 3, sb, 1, 1, 3, so, pool, &st);
    }
    {   /* attention-like: q [2, 3, 8, 4] x k [2, 3, 8, 4]^T -> [2, 3, 8, 8] */
        int64_t sa[] = {2, 3, 8, 4}, sb[] = {2, 3, 8, 4}, so[] = {2, 3, 8, 8};
        check_shapes(4, sa, 4, sb, 0, 1, 4, so, pool, &st);
    }
    {   /* a [1, 4, 1, 3, 2] x b [1, 5, 2, 6] -> [1, 4, 5, 3, 6] */
        int64_t sa[] = {1, 4, 1, 3, 2}, sb[] = {1, 5, 2, 6}, so[] = {1, 4, 5, 3, 6};
        check_shapes(5, sa, 4, sb, 0, 0, 5, so, pool, &st);
    }
    stats_report(&st);

    rt_gemm_desc g;
    int64_t a[] = {2, 5, 7}, b[] = {3, 7, 4}, c[] = {5, 6}, d[] = {5};
    CHECK(rt_gemm_desc_from_shapes(&g, 3, a, 3, b, 0, 0) != NULL, "batch 2 vs 3 must not broadcast");
    CHECK(rt_gemm_desc_from_shapes(&g, 3, a, 2, c, 0, 0) != NULL, "K 7 vs 5 must be rejected");
    CHECK(rt_gemm_desc_from_shapes(&g, 1, d, 2, c, 0, 0) != NULL, "rank 1 must be rejected");
}

/* rt_gemm_half on bf16/f16 A and B, f32 or half C, with bias, transposes, padded leading dims,
 * a batch broadcasting B, alpha and beta. */
static void test_half(rt_pool *pool) {
    const struct {
        ir_dtype ab, c, bias;
        const char *name;
    } kinds[] = {
        {DT_BF16, DT_F32, DT_F32, "half: bf16 x bf16 -> f32"},
        {DT_BF16, DT_BF16, DT_BF16, "half: bf16 x bf16 -> bf16"},
        {DT_F16, DT_F16, DT_F16, "half: f16 x f16 -> f16"},
    };
    bool has_bf16 = false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    has_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    for (size_t kd = 0; kd < sizeof kinds / sizeof *kinds; kd++) {
        err_stats st = {.name = kinds[kd].name};
        int skipped = 0;
        for (int t = 0; t < 12; t++) {
            rt_gemm_desc g = rt_gemm_desc_make(1 + rng_int(80), 1 + rng_int(90), 1 + rng_int(300));
            g.trans_a = t & 1;
            g.trans_b = (t >> 1) & 1;
            if (t % 3 == 0) g.lda = lda_of(&g) + 3;
            if (t % 4 == 1) g.ldb = ldb_of(&g) + 5;
            if (t % 5 == 2) g.ldc = ldc_of(&g) + 2;
            g.alpha = t % 3 == 1 ? 0.5 : 1.0;
            g.beta = t % 4 == 3 && kinds[kd].c == DT_F32 ? 1.0 : 0.0;
            if (t >= 8) { /* a batch of 3, B shared */
                g.nbatch = 1;
                g.batch[0] = 3;
                g.stride_a[0] = (g.trans_a ? g.K : g.M) * lda_of(&g);
                g.stride_b[0] = 0;
                g.stride_c[0] = g.M * ldc_of(&g);
            }
            g.pool = pool;
            bool with_bias = t % 2 == 0;
            size_t na = extent(&g, g.stride_a, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, lda_of(&g));
            size_t nb = extent(&g, g.stride_b, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, ldb_of(&g));
            size_t nc = extent(&g, g.stride_c, g.M, g.N, ldc_of(&g));
            double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C0 = malloc(nc * sizeof *C0);
            double *bias = malloc((size_t)g.N * sizeof *bias), *ref = malloc(nc * sizeof *ref);
            uint16_t *Ah = malloc(na * 2), *Bh = malloc(nb * 2), *biash = malloc((size_t)g.N * 2);
            void *Ch = malloc(nc * 4);
            float tmp;
            /* the half operands, and the reference's doubles equal to them */
            for (size_t i = 0; i < na; i++) {
                rt_half_narrow(kinds[kd].ab, (tmp = (float)rng_uniform(), &tmp), &Ah[i], 1);
                rt_half_widen(kinds[kd].ab, &Ah[i], &tmp, 1);
                A[i] = tmp;
            }
            for (size_t i = 0; i < nb; i++) {
                rt_half_narrow(kinds[kd].ab, (tmp = (float)rng_uniform(), &tmp), &Bh[i], 1);
                rt_half_widen(kinds[kd].ab, &Bh[i], &tmp, 1);
                B[i] = tmp;
            }
            for (int64_t i = 0; i < g.N; i++) {
                tmp = (float)rng_uniform();
                if (kinds[kd].bias != DT_F32) { /* else the f32 copy below is the bias */
                    rt_half_narrow(kinds[kd].bias, &tmp, &biash[i], 1);
                    rt_half_widen(kinds[kd].bias, &biash[i], &tmp, 1);
                }
                bias[i] = tmp;
            }
            float *biasf = malloc((size_t)g.N * sizeof *biasf);
            for (int64_t i = 0; i < g.N; i++) biasf[i] = (float)bias[i];
            for (size_t i = 0; i < nc; i++) {
                tmp = (float)rng_uniform();
                if (kinds[kd].c == DT_F32) {
                    ((float *)Ch)[i] = tmp;
                } else {
                    rt_half_narrow(kinds[kd].c, &tmp, &((uint16_t *)Ch)[i], 1);
                    rt_half_widen(kinds[kd].c, &((uint16_t *)Ch)[i], &tmp, 1);
                }
                C0[i] = ref[i] = tmp;
            }
            ref_gemm(&g, A, B, C0, with_bias ? bias : NULL, ref);
            g.bias = !with_bias ? NULL : kinds[kd].bias == DT_F32 ? (const void *)biasf : (const void *)biash;
            rt_gemm_types ty = {kinds[kd].ab, kinds[kd].ab, kinds[kd].c, kinds[kd].bias};
            int rc = rt_gemm_half(&g, &ty, Ah, Bh, Ch);
            CHECK(rc >= 0, "%s: rt_gemm_half rejected a valid descriptor", st.name);
            if (rc == 1) {
                skipped++;
            } else {
                double tol = 1e-5 * fmax(1.0, (double)g.K / 256.0);
                tol += kinds[kd].c == DT_BF16 ? 1.0 / 256 : kinds[kd].c == DT_F16 ? 1.0 / 2048 : 0;
                for (size_t i = 0; i < nc; i++) {
                    if (kinds[kd].c == DT_F32) {
                        stats_add(&st, ((float *)Ch)[i], ref[i], tol);
                    } else {
                        rt_half_widen(kinds[kd].c, &((uint16_t *)Ch)[i], &tmp, 1);
                        stats_add(&st, tmp, ref[i], tol);
                    }
                }
                st.cases++;
            }
            free(A); free(B); free(C0); free(bias); free(ref); free(Ah); free(Bh); free(biash); free(Ch); free(biasf);
        }
        /* where oneDNN is on and the CPU has AVX-512 BF16, bf16 must run there (not fall back) */
        if (kinds[kd].ab == DT_BF16 && has_bf16 && rt_dnnl_enabled())
            CHECK(skipped == 2, /* t = 4 and 10: alpha with a bias (gemm_dnnl.c) */ "%s: %d of 12 GEMMs fell back (2 expected) although the CPU has AVX-512 BF16", st.name, skipped);
        if (skipped)
            printf("%-28s %4d cases not run: %s\n", st.name, skipped,
                   !rt_dnnl_enabled() ? "oneDNN off (LOOM_CPU_GEMM=openblas); the caller widens"
                                      : "alpha with a bias, or no oneDNN kernel for the type on this CPU; the caller widens");
        stats_report(&st);
    }
}

int main(void) {
    rt_pool *pool = rt_pool_new(3);
    printf("large f32 GEMMs on: %s\n", rt_dnnl_enabled() ? "oneDNN when it loads" : "OpenBLAS (LOOM_CPU_GEMM=openblas)");
    CHECK(pool != NULL, "rt_pool_new");
    test_random(pool);
    test_beta(pool);
    test_epilogues(pool);
    test_large(pool);
    test_edges();
    test_from_shapes(pool);
    test_half(pool);
    rt_pool_free(pool);
    if (failures) {
        fprintf(stderr, "test_gemm: %d failures\n", failures);
        return 1;
    }
    printf("test_gemm: OK\n");
    return 0;
}
