/* test_opencl_gemm.c — the OpenCL GEMM step (runtime/opencl/gemm_opencl.c: rt_ocl_gemm) against a
 * plain double-precision loop written here, for every generated variant forced
 * (LOOM_OCL_GEMM=generated:I), CLBlast (clblast) and the measured choice (auto).
 *
 * Shapes that are not tile multiples (1x1x1, 7x13x5, 65x33x129, ...), both transposes, a 2-D
 * batch with a broadcast (stride 0) operand, leading dims wider than the matrix, element
 * offsets, alpha/beta (C read), K = 0, a bias, and one GEMM big enough that auto times it on
 * fewer columns (activations are the plan's epilogue kernels: tests/unit/test_opencl_ops.c). Tolerance:
 * |err| <= 1e-5 · (1 + Σ_k |alpha · a · b| + |beta · c| + |bias|) per element (fp32 sums of at
 * most 129 terms). Elements of C's buffer outside the matrices (padding, gaps, before the
 * offset) must be untouched, and the generated variants must agree with each other bit for bit
 * (but g4, dot products along k, on transposed B).
 * Also: a bad LOOM_OCL_GEMM is a clear error. Device: argv[1] or $LOOM_TEST_OPENCL_TARGET
 * (default "opencl"); no OpenCL platform prints "skipped".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/opencl/exec_opencl.h"
#include "runtime/cpu/gemm_cpu.h"
#include "runtime/opencl/opencl.h"
#include "test_check.h"

static rt_ocl *OCL;
static rt_ocl_program *PROG;

typedef struct {
    const char *what;
    int64_t M, N, K;
    int ta, tb;
    int64_t pad_a, pad_b, pad_c;         /* leading dim = packed width + pad (0: packed) */
    int nbatch;
    int64_t batch[2];
    int bcast_a, bcast_b;                /* batch dim (index) whose A / B stride is 0; -1 none */
    size_t off_a, off_b, off_c, off_bias;
    double alpha, beta;
    int bias;
} gemm_case;

static const gemm_case CASES[] = {
    {"1x1x1", 1, 1, 1, 0, 0, 0, 0, 0, 0, {0}, -1, -1, 0, 0, 0, 0, 1.0, 0.0, 0},
    {"7x13x5 trans_a, bias", 7, 13, 5, 1, 0, 0, 0, 0, 0, {0}, -1, -1, 3, 1, 2, 5, 1.0, 0.0, 1},
    {"65x33x129 trans_b, ld > width, bias", 65, 33, 129, 0, 1, 3, 5, 7, 0, {0}, -1, -1, 1, 2, 3, 4, 1.0,
     0.0, 1},
    {"65x33x129 plain", 65, 33, 129, 0, 0, 0, 0, 0, 0, {0}, -1, -1, 0, 0, 0, 0, 1.0, 0.0, 0},
    {"7x13x5 both transposed, alpha 0.5 beta 0.75, bias", 7, 13, 5, 1, 1, 2, 1, 3, 0, {0}, -1, -1, 0, 0, 1,
     0, 0.5, 0.75, 1},
    {"batch [2, 3], B broadcast over dim 1, offsets, bias", 9, 70, 17, 0, 0, 1, 0, 2, 2, {2, 3}, -1, 1, 5, 7,
     11, 3, 1.0, 0.0, 1},
    {"batch [3], A broadcast, trans_a, beta 1", 33, 20, 66, 1, 0, 0, 0, 0, 1, {3}, 0, -1, 0, 0, 0, 0, 1.0, 1.0, 0},
    {"64x2100x1000 trans_b (auto times it on 2048 columns)", 64, 2100, 1000, 0, 1, 0, 0, 0, 0, {0}, -1, -1, 0, 0, 0,
     0, 1.0, 0.0, 0},
    {"5x6x0: C = beta·C + bias", 5, 6, 0, 0, 0, 0, 0, 0, 0, {0}, -1, -1, 0, 0, 0, 0, 1.0, 0.5, 1},
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* Fills g and the buffers' sizes for case c. */
static void describe(const gemm_case *c, rt_plan_gemm *g, size_t *na, size_t *nb, size_t *nc)
{
    memset(g, 0, sizeof *g);
    g->M = c->M, g->N = c->N, g->K = c->K, g->trans_a = c->ta, g->trans_b = c->tb;
    int64_t ra = c->ta ? c->K : c->M, wa = c->ta ? c->M : c->K; /* A as stored: ra rows of wa */
    int64_t rb = c->tb ? c->N : c->K, wb = c->tb ? c->K : c->N;
    g->lda = c->pad_a ? wa + c->pad_a : 0;
    g->ldb = c->pad_b ? wb + c->pad_b : 0;
    g->ldc = c->pad_c ? c->N + c->pad_c : 0;
    int64_t lda = g->lda ? g->lda : wa, ldb = g->ldb ? g->ldb : wb, ldc = g->ldc ? g->ldc : c->N;
    int64_t ma = ra * lda, mb = rb * ldb, mc = c->M * ldc + 4; /* +4: a gap between C matrices */
    g->nbatch = c->nbatch;
    int64_t sa = ma, sb = mb, sc = mc;
    for (int i = c->nbatch - 1; i >= 0; i--) {
        g->batch[i] = c->batch[i];
        g->stride_a[i] = i == c->bcast_a ? 0 : sa;
        g->stride_b[i] = i == c->bcast_b ? 0 : sb;
        g->stride_c[i] = sc;
        sa *= i == c->bcast_a ? 1 : c->batch[i];
        sb *= i == c->bcast_b ? 1 : c->batch[i];
        sc *= c->batch[i];
    }
    *na = c->off_a + (size_t)sa + 1, *nb = c->off_b + (size_t)sb + 1, *nc = c->off_c + (size_t)sc + 3;
    g->alpha = c->alpha, g->beta = c->beta;
}

/* The reference (in place on C, doubles) and each element's error bound. */
static void reference(const gemm_case *c, const rt_plan_gemm *g, const float *A, const float *B, const float *bias,
                      const float *C0, double *R, double *tol, size_t nc)
{
    for (size_t i = 0; i < nc; i++)
        R[i] = C0[i], tol[i] = 0;
    int64_t lda = g->lda ? g->lda : c->ta ? c->M : c->K, ldb = g->ldb ? g->ldb : c->tb ? c->K : c->N;
    int64_t ldc = g->ldc ? g->ldc : c->N;
    int64_t n0 = c->nbatch > 0 ? c->batch[0] : 1, n1 = c->nbatch > 1 ? c->batch[1] : 1;
    for (int64_t b0 = 0; b0 < n0; b0++)
        for (int64_t b1 = 0; b1 < n1; b1++) {
            int64_t oa = (int64_t)c->off_a, ob = (int64_t)c->off_b, oc = (int64_t)c->off_c;
            for (int i = 0; i < c->nbatch; i++) {
                int64_t x = i == 0 ? b0 : b1;
                oa += x * g->stride_a[i], ob += x * g->stride_b[i], oc += x * g->stride_c[i];
            }
            for (int64_t m = 0; m < c->M; m++)
                for (int64_t n = 0; n < c->N; n++) {
                    double s = 0, mag = 0;
                    for (int64_t k = 0; k < c->K; k++) {
                        double a = A[oa + (c->ta ? k * lda + m : m * lda + k)];
                        double b = B[ob + (c->tb ? n * ldb + k : k * ldb + n)];
                        s += a * b, mag += fabs(a * b);
                    }
                    double *r = &R[oc + m * ldc + n];
                    double x = c->alpha * s + (c->beta != 0 ? c->beta * *r : 0);
                    mag = fabs(c->alpha) * mag + (c->beta != 0 ? fabs(c->beta * *r) : 0);
                    if (c->bias)
                        x += bias[c->off_bias + n], mag += fabs(bias[c->off_bias + n]);
                    *r = x;
                    tol[oc + m * ldc + n] = 1e-5 * (1 + mag);
                }
        }
}

static rt_ocl_buf *upload(const float *p, size_t n)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_ocl_buf *b = rt_ocl_alloc(OCL, n * sizeof(float), &d);
    if (!b || !rt_ocl_write(OCL, b, 0, p, n * sizeof(float), &d))
        ir_diag_print(&d, stderr), exit(1);
    ir_diag_free(&d);
    return b;
}

/* Runs case c under LOOM_OCL_GEMM=mode; returns C (malloc'd) or NULL on a reported error. */
static float *run_case(const gemm_case *c, const char *mode, const float *A, const float *B, const float *bias,
                       const float *C0, size_t na, size_t nb, size_t nc, size_t nbias)
{
    rt_plan_gemm g;
    size_t x, y, z;
    describe(c, &g, &x, &y, &z);
    setenv("LOOM_OCL_GEMM", mode, 1);
    rt_ocl_buf *ba = upload(A, na), *bb = upload(B, nb), *bc = upload(C0, nc), *bbias = upload(bias, nbias);
    ir_diag d;
    ir_diag_init(&d);
    float *C = malloc(nc * sizeof(float));
    bool ok = rt_ocl_gemm(OCL, PROG, &g, (rt_ocl_ref){ba, c->off_a}, (rt_ocl_ref){bb, c->off_b},
                          (rt_ocl_ref){bc, c->off_c}, (rt_ocl_ref){c->bias ? bbias : NULL, c->off_bias}, &d) &&
              rt_ocl_finish(OCL, &d) && rt_ocl_read(OCL, bc, 0, C, nc * sizeof(float), &d);
    if (!ok) {
        ir_diag_print(&d, stderr);
        free(C);
        C = NULL;
    }
    ir_diag_free(&d);
    rt_ocl_free(ba), rt_ocl_free(bb), rt_ocl_free(bc), rt_ocl_free(bbias);
    return C;
}

static void test_case(const gemm_case *c)
{
    rt_plan_gemm g;
    size_t na, nb, nc, nbias = c->off_bias + (size_t)c->N;
    describe(c, &g, &na, &nb, &nc);
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)), *C0 = malloc(nc * sizeof(float));
    float *bias = malloc(nbias * sizeof(float));
    for (size_t i = 0; i < na; i++)
        A[i] = rnd();
    for (size_t i = 0; i < nb; i++)
        B[i] = rnd();
    for (size_t i = 0; i < nc; i++)
        C0[i] = rnd();
    for (size_t i = 0; i < nbias; i++)
        bias[i] = rnd();
    double *R = malloc(nc * sizeof(double)), *tol = malloc(nc * sizeof(double));
    reference(c, &g, A, B, bias, C0, R, tol, nc);
    static const char *modes[] = {"generated:0", "generated:1", "generated:2", "generated:3", "generated:4",
                                  "clblast", "auto"};
    float *first_generated = NULL;
    printf("%-60s", c->what);
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        float *C = run_case(c, modes[m], A, B, bias, C0, na, nb, nc, nbias);
        CHECK(C != NULL, "%s: %s failed", c->what, modes[m]);
        if (!C)
            continue;
        double max_abs = 0, max_rel = 0;
        size_t bad = 0, touched = 0;
        for (size_t i = 0; i < nc; i++) {
            double err = fabs((double)C[i] - R[i]);
            if (tol[i] == 0) { /* not an element of C: must be untouched */
                touched += memcmp(&C[i], &C0[i], sizeof(float)) != 0;
                continue;
            }
            bad += !(err <= tol[i]);
            max_abs = fmax(max_abs, err);
            max_rel = fmax(max_rel, err / fmax(1.0, fabs(R[i])));
        }
        printf(" %s %.1e", modes[m], max_rel);
        CHECK(bad == 0, "%s under %s: %zu elements beyond tolerance (max abs err %.3g)", c->what, modes[m], bad,
              max_abs);
        CHECK(touched == 0, "%s under %s: %zu elements outside C changed", c->what, modes[m], touched);
        if (strncmp(modes[m], "generated:", 10) == 0) {
            if (!first_generated)
                first_generated = C, C = NULL;
            else if (!(c->tb && !c->ta && strcmp(modes[m], "generated:4") == 0)) /* g4: another order there */
                CHECK(memcmp(C, first_generated, nc * sizeof(float)) == 0, "%s: %s differs from generated:0",
                      c->what, modes[m]);
        }
        free(C);
    }
    printf("\n");
    free(first_generated);
    free(A), free(B), free(C0), free(bias), free(R), free(tol);
}

static void test_bad_env(void)
{
    ir_diag d;
    ir_diag_init(&d);
    setenv("LOOM_OCL_GEMM", "fastest", 1);
    CHECK(!rt_ocl_gemm_check_env(&d), "LOOM_OCL_GEMM=fastest accepted");
    CHECK(d.n_msg == 1 && strcmp(d.msg[0].msg, "LOOM_OCL_GEMM='fastest': expected auto, clblast, generated or "
                                               "generated:I (I in 0..4)") == 0,
          "message: %s", d.n_msg ? d.msg[0].msg : "(none)");
    ir_diag_free(&d);
    ir_diag_init(&d);
    setenv("LOOM_OCL_GEMM", "generated:9", 1);
    CHECK(!rt_ocl_gemm_check_env(&d), "LOOM_OCL_GEMM=generated:9 accepted");
    ir_diag_free(&d);
    printf("bad LOOM_OCL_GEMM: rejected\n");
}

int main(int argc, char **argv)
{
    const char *target = argc > 1 ? argv[1] : getenv("LOOM_TEST_OPENCL_TARGET") ? getenv("LOOM_TEST_OPENCL_TARGET") : "opencl";
    ir_diag d;
    ir_diag_init(&d);
    OCL = rt_ocl_open(target, &d);
    if (!OCL) {
        bool skip = d.n_msg > 0 && (strstr(d.msg[0].msg, "no OpenCL platform") || strstr(d.msg[0].msg, "no OpenCL device"));
        ir_diag_print(&d, stdout);
        printf("%s", skip ? "skipped: no OpenCL platform\n" : "");
        ir_diag_free(&d);
        return skip ? 0 : 1;
    }
    printf("device: %s (max rel error per mode; tolerance 1e-5 · (1 + Σ|terms|))\n", rt_ocl_device_name(OCL));
    char *src = rt_ocl_gemm_source();
    PROG = rt_ocl_build(OCL, src, "-cl-std=CL1.2", &d);
    free(src);
    if (!PROG) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    ir_diag_free(&d);
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++)
        test_case(&CASES[i]);
    test_bad_env();
    rt_ocl_close(OCL);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
