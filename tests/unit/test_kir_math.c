/* test_kir_math.c — accuracy of the host renderer's float math against double-precision libm:
 * exp and tanh (inline vectorizable approximations for f32), sigmoid (built on exp), and the
 * intrinsics/libm ops (log, sqrt, rsqrt, erf, sin, cos, pow), over dense ranges plus specials
 * (±0, ±inf, NaN, overflow and underflow edges). Prints the max relative error of each (over
 * |want| >= 1e-3); the same kernel with libm_math set must pass too.
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { N = 1 << 16 };

typedef struct {
    cg_op op;
    const char *name;
    double (*ref)(double);
    float lo, hi; /* input range */
    double rtol, atol;
} mcase;

static double sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }
static double rsqrt_ref(double x) { return 1 / sqrt(x); }
static double pow_ref(double x) { return pow(x, (double)1.7f); } /* y = the f32 nearest 1.7 */

static const mcase cases[] = {
    {CG_EXP, "exp", exp, -103, 88.7f, 3e-7, 0},
    {CG_TANH, "tanh", tanh, -9, 9, 5e-7, 0},
    {CG_SIGMOID, "sigmoid", sigmoid_ref, -30, 30, 5e-7, 0},
    {CG_LOG, "log", log, 1e-30f, 1e30f, 3e-7, 1e-7},
    {CG_SQRT, "sqrt", sqrt, 0, 1e30f, 1.2e-7, 0},
    {CG_RSQRT, "rsqrt", rsqrt_ref, 1e-30f, 1e30f, 2.4e-7, 0},
    {CG_ERF, "erf", erf, -5, 5, 3e-7, 0},
    {CG_SIN, "sin", sin, -100, 100, 3e-7, 1e-7},
    {CG_COS, "cos", cos, -100, 100, 3e-7, 1e-7},
    {CG_POW, "pow(x, 1.7)", pow_ref, 0, 1000, 3e-7, 0},
};
enum { NC = sizeof cases / sizeof *cases };

static cg_kernel *build(const char *name)
{
    cg_op ops[NC];
    for (int c = 0; c < NC; c++)
        ops[c] = cases[c].op;
    return kt_math_f32(name, ops, NC, N);
}

/* Inputs of case c: specials first, then a dense sweep of [lo, hi] (log-spaced for wide
 * positive ranges). */
static void inputs(const mcase *m, float *x)
{
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 1e-6f, -1e-6f, 3e-4f,
                             88.72f, 88.73f, -87.5f, -103.0f, -150.0f, 7.9f, -7.91f, 20.0f};
    int ns = sizeof special / sizeof *special;
    for (int i = 0; i < N; i++) {
        double t = (double)i / (N - 1);
        if (i < ns)
            x[i] = special[i];
        else if (m->lo > 0 && m->hi / m->lo > 1e3)
            x[i] = (float)(m->lo * pow((double)m->hi / m->lo, t));
        else
            x[i] = (float)(m->lo + (m->hi - m->lo) * t);
    }
}

/* Runs the kernel; returns false on a failure beyond tolerance. */
static bool run(cg_host_fn fn, const char *tag)
{
    float *buf[2 * NC];
    void *args[2 * NC];
    for (int c = 0; c < NC; c++) {
        buf[2 * c] = malloc(N * sizeof(float));
        buf[2 * c + 1] = calloc(N, sizeof(float));
        inputs(&cases[c], buf[2 * c]);
        args[2 * c] = buf[2 * c];
        args[2 * c + 1] = buf[2 * c + 1];
    }
    kt_run(fn, args, N, 4);
    bool ok = true;
    for (int c = 0; c < NC; c++) {
        const mcase *m = &cases[c];
        const float *x = buf[2 * c], *y = buf[2 * c + 1];
        double max_rel = 0;
        int bad = -1;
        for (int i = 0; i < N; i++) {
            double want = m->ref(x[i]);
            float wantf = (float)want; /* the correctly rounded f32 result, ±inf and 0 included */
            if (isnan(want) || isnan(y[i])) {
                if (!(isnan(want) && isnan(y[i])) && bad < 0)
                    bad = i;
                continue;
            }
            if (isinf(wantf) || wantf == 0 || fabs(want) < 1e-37) {
                if (y[i] != wantf && fabs(y[i] - want) > 1e-38 && bad < 0)
                    bad = i;
                continue;
            }
            double e = fabs(y[i] - want);
            if (fabs(want) >= 1e-3 && e / fabs(want) > max_rel)
                max_rel = e / fabs(want);
            if (e > m->rtol * fabs(want) + m->atol && bad < 0)
                bad = i;
        }
        printf("%-10s %-12s n=%d max rel err %.3g (rtol %g, atol %g): %s\n", tag, m->name, N, max_rel, m->rtol,
               m->atol, bad < 0 ? "OK" : "FAIL");
        if (bad >= 0) {
            fprintf(stderr, "  %s(%.9g): got %.9g, want %.9g\n", m->name, x[bad], y[bad], m->ref(x[bad]));
            ok = false;
        }
    }
    for (int c = 0; c < 2 * NC; c++)
        free(buf[c]);
    return ok;
}

int main(void)
{
    cg_kernel *k = build("math_f32");
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    bool ok = run(fn, "inline");
    cg_jit_free(jit);

    cg_kernel_free(k);
    k = build("math_f32_libm");
    ir_diag d;
    ir_diag_init(&d);
    cg_host_options o = cg_host_defaults;
    o.libm_math = true;
    jit = cg_jit_new(&d);
    CHECK(jit && cg_jit_add(jit, &k, 1, &o, &d));
    fn = cg_jit_lookup(jit, "math_f32_libm", &d);
    CHECK(fn);
    ok &= run(fn, "libm");
    cg_jit_free(jit);
    ir_diag_free(&d);
    cg_kernel_free(k);
    return ok ? 0 : 1;
}
