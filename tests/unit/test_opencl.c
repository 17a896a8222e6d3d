/* test_opencl.c — the OpenCL backend: kernel IR rendered to OpenCL C (codegen/render_c.c) and
 * run through the ICD loader (runtime/opencl/opencl.c) on whatever platform is there (PoCL on the
 * dev/CI machines), compared with plain C loops in this file:
 *   elementwise gelu with broadcasting (f32, f64), a scalar argument, 2-D transpose and 3-D
 *   permutation (i64, u8 → i32), softmax rows with +1000 and -inf rows, layernorm with mean and
 *   rstd outputs, f16/bf16 copies of all 65,536 bit patterns and f32 → f16/bf16 stores (exact),
 *   float math on 64K inputs against double libm within OpenCL's ulp bounds, NaN-propagating
 *   max/min (binary and reduce), reductions over rows longer than the work-group (f32, i32,
 *   i64; odd local sizes), in-place (inout) row updates; then the runtime: a kernel with a
 *   syntax error (injected into the rendered source) reports the build log and its kernel name;
 *   target selection errors; device listing; the memory and disk program caches.
 * Tolerances: 1e-5 relative for f32 kernels, exact for copies and integers; max abs/rel errors
 * are printed. With no OpenCL platform the test prints "skipped: no OpenCL platform" and exits 0.
 *
 * Without a device too: the source text of what no graph lowers to (f64 buffers, i64 scalars
 * in both ABIs, a 3-D grid, an i32 min reduce, the barrier for inout rows); the rest of the
 * renderer's text is FileChecked in tests/lit/opencl on .lir graphs (`loom dump --emit=cl`).
 * `test_opencl --bench` times softmax over [256, 4096] on the OpenCL device against the host JIT.
 */
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/opencl/opencl.h"
#include "test_kir_kernels.h"
#include "test_kir_util.h"

/* PoCL and the ICD loader keep allocations until exit: runtime/opencl/opencl.c's LeakSanitizer
 * suppressions (linked in with it) cover them. */

/* ---- helpers -------------------------------------------------------------------------------- */

static char *diag_text(const ir_diag *d)
{
    size_t n = 1;
    for (int i = 0; i < d->n_msg; i++)
        n += strlen(d->msg[i].msg) + 1;
    char *s = calloc(n, 1);
    CHECK(s);
    for (int i = 0; i < d->n_msg; i++) {
        strcat(s, d->msg[i].msg);
        strcat(s, "\n");
    }
    return s;
}

static void die_diag(ir_diag *d, const char *what)
{
    fprintf(stderr, "%s failed:\n", what);
    ir_diag_print(d, stderr);
    exit(1);
}

static char *render(cg_kernel *k)
{
    ir_diag d;
    ir_diag_init(&d);
    char *src = cg_opencl_source(&k, 1, &d);
    if (!src) {
        cg_kernel_print(k, stderr);
        die_diag(&d, "cg_opencl_source");
    }
    ir_diag_free(&d);
    return src;
}

/* Runs kernel k on o with host[a] holding each argument (a buffer of numel elements of its
 * storage dtype, or an int64_t for a scalar): renders, builds, copies `in`/`inout` buffers to
 * the device, launches (groups × local; 0: cg_opencl_launch_dims), copies `out`/`inout` back. */
static void ocl_run_dims(rt_ocl *o, cg_kernel *k, void **host, size_t groups, size_t local)
{
    ir_diag d;
    ir_diag_init(&d);
    char *src = render(k);
    rt_ocl_program *p = rt_ocl_build(o, src, NULL, &d);
    if (!p) {
        fputs(src, stderr);
        die_diag(&d, "rt_ocl_build");
    }
    rt_ocl_buf **bufs = calloc((size_t)k->n_args, sizeof *bufs);
    rt_ocl_arg *args = calloc((size_t)k->n_args, sizeof *args);
    CHECK(bufs && args);
    for (int a = 0; a < k->n_args; a++) {
        const cg_arg *ka = &k->args[a];
        if (ka->scalar) {
            args[a] = rt_ocl_arg_i64(*(const int64_t *)host[a]);
            continue;
        }
        size_t bytes = (size_t)ka->numel * (size_t)ir_dtype_size(ka->dtype);
        bufs[a] = rt_ocl_alloc(o, bytes, &d);
        if (!bufs[a] || ((ka->access & CG_IN) && !rt_ocl_write(o, bufs[a], 0, host[a], bytes, &d)))
            die_diag(&d, "rt_ocl_alloc/write");
        args[a] = rt_ocl_arg_buf(bufs[a]);
    }
    if (!groups)
        cg_opencl_launch_dims(k, &groups, &local);
    char name[128];
    snprintf(name, sizeof name, "%s%s", CG_OPENCL_PREFIX, k->name);
    if (!rt_ocl_launch(o, p, name, args, k->n_args, groups, local, &d))
        die_diag(&d, "rt_ocl_launch");
    for (int a = 0; a < k->n_args; a++) {
        const cg_arg *ka = &k->args[a];
        if (!ka->scalar && (ka->access & CG_OUT) &&
            !rt_ocl_read(o, bufs[a], 0, host[a], (size_t)ka->numel * (size_t)ir_dtype_size(ka->dtype), &d))
            die_diag(&d, "rt_ocl_read");
        rt_ocl_free(bufs[a]);
    }
    free(bufs);
    free(args);
    free(src);
    ir_diag_free(&d);
}

static void ocl_run(rt_ocl *o, cg_kernel *k, void **host) { ocl_run_dims(o, k, host, 0, 0); }

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- kernels (the kernel IR tests' ones come from test_kir_kernels.h) ------------------------ */

enum { ER = 37, EN = 129 };

enum { TM = 45, TN = 67, PA = 5, PB = 6, PC = 7 };

enum { SR = 33, SC = 301 };
enum { LR = 19, LC = 768 };
static const double LN_EPS = 1e-5;

enum { HN = 65536 };

/* Float math: one input and one output buffer per case. ulps: OpenCL 1.2's full-profile bound
 * for f32 (sigmoid: exp's 3 plus the add and the divide). */
typedef struct {
    cg_op op;
    const char *name;
    double (*ref)(double);
    float lo, hi;
    double ulps, atol;
} mcase;

static double sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }
static double rsqrt_ref(double x) { return 1 / sqrt(x); }
static double pow_ref(double x) { return pow(x, (double)1.7f); }

static const mcase mcases[] = {
    {CG_EXP, "exp", exp, -103, 88.7f, 3, 0},
    {CG_TANH, "tanh", tanh, -9, 9, 5, 0},
    {CG_SIGMOID, "sigmoid", sigmoid_ref, -30, 30, 6, 0},
    {CG_LOG, "log", log, 1e-30f, 1e30f, 3, 1e-7},
    {CG_SQRT, "sqrt", sqrt, 0, 1e30f, 3, 0},
    {CG_RSQRT, "rsqrt", rsqrt_ref, 1e-30f, 1e30f, 2, 0},
    {CG_ERF, "erf", erf, -5, 5, 16, 0},
    {CG_SIN, "sin", sin, -100, 100, 4, 1e-7},
    {CG_COS, "cos", cos, -100, 100, 4, 1e-7},
    {CG_POW, "pow(x, 1.7)", pow_ref, 0, 1000, 16, 0},
};
enum { NMC = sizeof mcases / sizeof *mcases, MN = 1 << 16 };

static cg_kernel *build_math(void)
{
    cg_op ops[NMC];
    for (int c = 0; c < NMC; c++)
        ops[c] = mcases[c].op;
    return kt_math_f32("math_f32", ops, NMC, MN);
}

/* Reductions over long rows on a 2-D grid [RA, RB], rows of RL > the work-group:
 * fsum = sum x, fmax = max x (NaN propagates), imin = min (i32) q, lmax = max (i64) q*1e6,
 * isum = sum (i32) q; plus elementwise NaN-propagating max/min of x and the row max. */
enum { RA = 3, RB = 5, RL = 5000 };

static cg_kernel *build_rowred(void)
{
    cg_kernel *k = cg_kernel_new("row_reduce");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, RA * RB * RL);
    int q = cg_kernel_buffer(k, "q", DT_I32, CG_IN, RA * RB * RL);
    int fsum = cg_kernel_buffer(k, "fsum", DT_F32, CG_OUT, RA * RB);
    int fmax = cg_kernel_buffer(k, "fmax", DT_F32, CG_OUT, RA * RB);
    int imin = cg_kernel_buffer(k, "imin", DT_I32, CG_OUT, RA * RB);
    int isum = cg_kernel_buffer(k, "isum", DT_I32, CG_OUT, RA * RB);
    int lmax = cg_kernel_buffer(k, "lmax", DT_I64, CG_OUT, RA * RB);
    int emax = cg_kernel_buffer(k, "emax", DT_F32, CG_OUT, RA * RB * RL);
    int emin = cg_kernel_buffer(k, "emin", DT_F32, CG_OUT, RA * RB * RL);
    cg_kernel_dim(k, RA);
    cg_kernel_dim(k, RB);
    int l0 = cg_kernel_loop(k, RL), l1 = cg_kernel_loop(k, RL);
    cg_val r = cg_add(k, cg_mul(k, cg_pidx(k, 0), cg_i64(k, RB)), cg_pidx(k, 1));
    cg_val base = cg_mul(k, r, cg_i64(k, RL));
    cg_val at0 = cg_add(k, base, cg_lidx(k, l0));
    cg_val x0 = cg_load(k, x, at0), q0 = cg_load(k, q, at0);
    cg_store(k, fsum, r, cg_reduce(k, CG_RED_SUM, l0, x0));
    cg_val m = cg_reduce(k, CG_RED_MAX, l0, x0);
    cg_store(k, fmax, r, m);
    cg_store(k, imin, r, cg_reduce(k, CG_RED_MIN, l0, q0));
    cg_store(k, isum, r, cg_reduce(k, CG_RED_SUM, l0, q0));
    cg_val big = cg_mul(k, cg_cast(k, CG_I64, q0), cg_i64(k, 1000000));
    cg_store(k, lmax, r, cg_reduce(k, CG_RED_MAX, l0, big));
    cg_val at1 = cg_add(k, base, cg_lidx(k, l1));
    cg_val x1 = cg_load(k, x, at1);
    cg_val half_m = cg_mul(k, m, cg_f32(k, 0.5));
    cg_store(k, emax, at1, cg_binary(k, CG_MAX, x1, half_m));
    cg_store(k, emin, at1, cg_binary(k, CG_MIN, half_m, x1));
    return k;
}

enum { IR_ = 7, IC = 1000 };
static cg_kernel *build_inplace(void) { return kt_inplace_rows(IR_, IC); }

/* ---- tests ----------------------------------------------------------------------------------- */

static float gelu_ref(float x)
{
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static void test_elementwise(rt_ocl *o)
{
    cg_kernel *k = kt_gelu_bcast("gelu_bcast", DT_F32, ER, EN);
    float *a = kt_random(ER * EN, -3, 3), *b = kt_random(EN, -1, 1);
    float *out = calloc(ER * EN, sizeof *out), *ref = calloc(ER * EN, sizeof *ref);
    for (int i = 0; i < ER * EN; i++)
        ref[i] = gelu_ref(a[i] + b[i % EN]);
    void *host[] = {a, b, out};
    ocl_run(o, k, host);
    CHECK(kt_compare("gelu(a + b) f32", out, ref, ER * EN, 1e-5, 1e-6));
    memset(out, 0, ER * EN * sizeof *out);
    ocl_run_dims(o, k, host, 3, 64); /* fewer work-items than points: the stride covers them */
    CHECK(kt_compare("gelu(a + b) f32, 3x64 items", out, ref, ER * EN, 1e-5, 1e-6));
    free(a), free(b), free(out), free(ref);
    cg_kernel_free(k);

    k = kt_gelu_bcast("gelu_bcast64", DT_F64, ER, EN);
    if (!rt_ocl_has_fp64(o)) {
        ir_diag d;
        ir_diag_init(&d);
        char *src = render(k);
        CHECK(!rt_ocl_build(o, src, NULL, &d));
        char *msg = diag_text(&d);
        CHECK(strstr(msg, "cl_khr_fp64") && strstr(msg, "loom_gelu_bcast64"));
        printf("%-28s device lacks cl_khr_fp64, reported: OK\n", "gelu(a + b) f64");
        free(msg), free(src);
        ir_diag_free(&d);
        cg_kernel_free(k);
        return;
    }
    double *a64 = malloc(ER * EN * sizeof *a64), *b64 = malloc(EN * sizeof *b64), *o64 = calloc(ER * EN, sizeof *o64);
    for (int i = 0; i < ER * EN; i++)
        a64[i] = kt_uniform(-3, 3);
    for (int i = 0; i < EN; i++)
        b64[i] = kt_uniform(-1, 1);
    void *h64[] = {a64, b64, o64};
    ocl_run(o, k, h64);
    double max_rel = 0;
    for (int i = 0; i < ER * EN; i++) {
        double x = a64[i] + b64[i % EN];
        double want = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        double e = fabs(o64[i] - want);
        if (fabs(want) > 1e-3 && e / fabs(want) > max_rel)
            max_rel = e / fabs(want);
        CHECK(e <= 1e-12 * fabs(want) + 1e-14);
    }
    printf("%-28s n=%-8d max rel err %.3g (rtol 1e-12): OK\n", "gelu(a + b) f64", ER * EN, max_rel);
    free(a64), free(b64), free(o64);
    cg_kernel_free(k);
}

static void test_scalar(rt_ocl *o)
{
    cg_kernel *k = kt_scale_by_n(100);
    float *in = kt_random(100, -50, 50);
    int64_t nv = 3, res[100];
    void *host[] = {in, &nv, res};
    ocl_run(o, k, host);
    for (int i = 0; i < 100; i++)
        CHECK(res[i] == (int64_t)(in[i] * 3.0f) + i);
    printf("%-28s n=%-8d exact: OK\n", "(i64)(a * n) + i, scalar n", 100);
    free(in);
    cg_kernel_free(k);
}

static void test_transpose(rt_ocl *o)
{
    cg_kernel *k = kt_transpose2d(TM, TN);
    float *x = kt_random(TM * TN, -1, 1), *y = calloc(TM * TN, sizeof *y), *ref = calloc(TM * TN, sizeof *ref);
    for (int i = 0; i < TM; i++)
        for (int j = 0; j < TN; j++)
            ref[j * TM + i] = x[i * TN + j];
    void *host[] = {x, y};
    ocl_run(o, k, host);
    CHECK(memcmp(y, ref, TM * TN * sizeof *y) == 0);
    printf("%-28s [%d, %d] exact: OK\n", "transpose 2-D f32", TM, TN);
    free(x), free(y), free(ref);
    cg_kernel_free(k);

    k = kt_permute3d(PA, PB, PC);
    int64_t xi[PA * PB * PC], yi[PA * PB * PC], refi[PA * PB * PC];
    uint8_t u[PA * PB * PC];
    int32_t w[PA * PB * PC], wref[PA * PB * PC];
    for (int i = 0; i < PA * PB * PC; i++) {
        xi[i] = (int64_t)i * 1000003 - 77;
        u[i] = (uint8_t)(i * 37);
    }
    for (int a = 0; a < PA; a++)
        for (int b = 0; b < PB; b++)
            for (int c = 0; c < PC; c++) {
                refi[(c * PA + a) * PB + b] = xi[(a * PB + b) * PC + c];
                wref[(c * PA + a) * PB + b] = u[(a * PB + b) * PC + c] + 1;
            }
    void *h2[] = {xi, u, yi, w};
    ocl_run(o, k, h2);
    CHECK(memcmp(yi, refi, sizeof yi) == 0);
    CHECK(memcmp(w, wref, sizeof w) == 0);
    printf("%-28s [%d, %d, %d] exact: OK\n", "permute 3-D i64, u8->i32", PA, PB, PC);
    cg_kernel_free(k);
}

static void softmax_ref(const float *x, float *ref, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float m = -INFINITY;
        double s = 0;
        for (int c = 0; c < cols; c++)
            m = xr[c] > m ? xr[c] : m;
        for (int c = 0; c < cols; c++)
            s += exp((double)xr[c] - m);
        for (int c = 0; c < cols; c++)
            ref[(size_t)r * cols + c] = (float)(exp((double)xr[c] - m) / s);
    }
}

static void test_softmax(rt_ocl *o)
{
    cg_kernel *k = kt_softmax_rows("softmax_rows", SR, SC);
    float *x = kt_random(SR * SC, -8, 8), *y = calloc(SR * SC, sizeof *y), *ref = calloc(SR * SC, sizeof *ref);
    for (int c = 0; c < SC; c++) {
        x[1 * SC + c] += 1000.0f;
        x[2 * SC + c] = c == 17 ? 0.5f : -INFINITY;
    }
    softmax_ref(x, ref, SR, SC);
    void *host[] = {x, y};
    ocl_run(o, k, host);
    CHECK(kt_compare("softmax f32", y, ref, SR * SC, 1e-5, 0));
    CHECK(y[2 * SC + 17] == 1.0f && y[2 * SC + 16] == 0.0f);
    /* odd geometries: a local size that is no power of two, a single work-item, few groups */
    size_t dims[][2] = {{5, 7}, {2, 1}, {SR, 100}};
    for (int i = 0; i < 3; i++) {
        memset(y, 0, SR * SC * sizeof *y);
        ocl_run_dims(o, k, host, dims[i][0], dims[i][1]);
        char what[64];
        snprintf(what, sizeof what, "softmax f32, %zux%zu items", dims[i][0], dims[i][1]);
        CHECK(kt_compare(what, y, ref, SR * SC, 1e-5, 0));
    }
    for (int r = 0; r < SR; r++) {
        double s = 0;
        for (int c = 0; c < SC; c++)
            s += y[r * SC + c];
        CHECK(fabs(s - 1) < 1e-5);
    }
    free(x), free(y), free(ref);
    cg_kernel_free(k);
}

static void test_layernorm(rt_ocl *o)
{
    cg_kernel *k = kt_layernorm_rows(LR, LC, LN_EPS);
    float *x = kt_random(LR * LC, -2, 2), *w = kt_random(LC, 0.5f, 1.5f), *b = kt_random(LC, -0.5f, 0.5f);
    for (int i = 0; i < LC; i++)
        x[3 * LC + i] += 30.0f;
    float *y = calloc(LR * LC, sizeof *y), *ref = calloc(LR * LC, sizeof *ref);
    float mean[LR], rstd[LR], mref[LR], rref[LR];
    kt_layernorm_ref(x, w, b, LR, LC, LN_EPS, ref, mref, rref);
    void *host[] = {x, w, b, y, mean, rstd};
    ocl_run(o, k, host);
    CHECK(kt_compare("layernorm y f32", y, ref, LR * LC, 1e-5, 1e-5));
    CHECK(kt_compare("layernorm mean", mean, mref, LR, 1e-5, 1e-6));
    CHECK(kt_compare("layernorm rstd", rstd, rref, LR, 1e-5, 0));
    free(x), free(w), free(b), free(y), free(ref);
    cg_kernel_free(k);
}

static void test_half(rt_ocl *o)
{
    cg_kernel *k = kt_half_io(HN);
    uint16_t *h = malloc(HN * 2), *b = malloc(HN * 2), *hc = calloc(HN, 2), *bc = calloc(HN, 2);
    uint16_t *hf = calloc(HN, 2), *bf = calloc(HN, 2), *mix = calloc(HN, 2);
    float *f = malloc(HN * sizeof *f), *hr = calloc(HN, sizeof *hr), *br = calloc(HN, sizeof *br);
    for (int i = 0; i < HN; i++) {
        h[i] = (uint16_t)i;
        b[i] = (uint16_t)(i * 40503u);
        uint32_t bits = (uint32_t)i * 2654435761u;
        memcpy(&f[i], &bits, sizeof f[i]);
    }
    const float special[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.9802322e-8f, 5.96e-8f,
                             1.0009765625f, 1.00048828125f, 3.4028235e38f, -INFINITY, 1.00390625f, 1.01171875f, NAN};
    for (size_t s = 0; s < sizeof special / sizeof *special; s++)
        f[s] = special[s];
    for (int i = 64; i < 4096; i++)
        f[i] = kt_uniform(-70000, 70000) * ldexpf(1, (i % 60) - 40);
    void *host[] = {h, b, f, hc, bc, hf, bf, mix, hr, br};
    ocl_run(o, k, host);
    int nan_h = 0, nan_b = 0, bad = 0;
    for (int i = 0; i < HN && bad < 10; i++) {
        bool ok = true;
        if (isnan(kt_half_to_float(h[i])))
            ok &= isnan(kt_half_to_float(hc[i])), nan_h++;
        else
            ok &= hc[i] == h[i];
        if (isnan(kt_bf16_to_float(b[i])))
            ok &= isnan(kt_bf16_to_float(bc[i])), nan_b++;
        else
            ok &= bc[i] == b[i];
        if (isnan(f[i]))
            ok &= isnan(kt_half_to_float(hf[i])) && isnan(kt_bf16_to_float(bf[i]));
        else
            ok &= hf[i] == kt_float_to_half(f[i]) && bf[i] == kt_float_to_bf16(f[i]);
        float want = kt_half_to_float(h[i]) * kt_bf16_to_float(b[i]) + 1.0f;
        ok &= isnan(want) ? isnan(kt_bf16_to_float(mix[i])) : mix[i] == kt_float_to_bf16(want);
        ok &= kt_rounds_ok(f[i], hr[i], br[i]);
        if (!ok) {
            fprintf(stderr, "half_io %d: h %04x->%04x b %04x->%04x f %.9g->h %04x (want %04x) bf %04x (want %04x)\n", i,
                    h[i], hc[i], b[i], bc[i], f[i], hf[i], kt_float_to_half(f[i]), bf[i], kt_float_to_bf16(f[i]));
            bad++;
        }
    }
    CHECK(bad == 0);
    printf("%-28s all %d patterns exact (%d/%d NaN patterns stay NaN): OK\n", "f16/bf16 copy", HN, nan_h, nan_b);
    printf("%-28s n=%d bit-exact vs C round-to-nearest-even: OK\n", "f32 -> f16, f32 -> bf16", HN);
    printf("%-28s n=%d bit-exact: OK\n", "bf16(f16 * bf16 + 1)", HN);
    printf("%-28s n=%d bit-exact vs the stores' rounding: OK\n", "round_f16, round_bf16 (f32)", HN);
    free(h), free(b), free(hc), free(bc), free(hf), free(bf), free(mix), free(f), free(hr), free(br);
    cg_kernel_free(k);
}

static void math_inputs(const mcase *m, float *x)
{
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 1e-6f, -1e-6f, 3e-4f,
                             88.72f, 88.73f, -87.5f, -103.0f, -150.0f, 7.9f, -7.91f, 20.0f};
    int ns = sizeof special / sizeof *special;
    for (int i = 0; i < MN; i++) {
        double t = (double)i / (MN - 1);
        if (i < ns)
            x[i] = special[i];
        else if (m->lo > 0 && m->hi / m->lo > 1e3)
            x[i] = (float)(m->lo * pow((double)m->hi / m->lo, t));
        else
            x[i] = (float)(m->lo + (m->hi - m->lo) * t);
    }
}

static void test_math(rt_ocl *o)
{
    cg_kernel *k = build_math();
    float *buf[2 * NMC];
    void *host[2 * NMC];
    for (int c = 0; c < NMC; c++) {
        buf[2 * c] = malloc(MN * sizeof(float));
        buf[2 * c + 1] = calloc(MN, sizeof(float));
        math_inputs(&mcases[c], buf[2 * c]);
        host[2 * c] = buf[2 * c];
        host[2 * c + 1] = buf[2 * c + 1];
    }
    ocl_run(o, k, host);
    bool ok = true;
    for (int c = 0; c < NMC; c++) {
        const mcase *m = &mcases[c];
        const float *x = buf[2 * c], *y = buf[2 * c + 1];
        double rtol = m->ulps * ldexp(1, -23), max_rel = 0;
        int bad = -1;
        for (int i = 0; i < MN; i++) {
            double want = m->ref(x[i]);
            float wantf = (float)want;
            if (isnan(want) || isnan(y[i])) {
                if (!(isnan(want) && isnan(y[i])) && bad < 0)
                    bad = i;
                continue;
            }
            if (isinf(wantf) || wantf == 0 || fabs(want) < 1e-37) {
                /* OpenCL may flush results below FLT_MIN; inf must be exact */
                if (y[i] != wantf && !(fabs(y[i] - want) <= 1e-37 || (isinf(wantf) && y[i] == wantf)) && bad < 0)
                    bad = i;
                continue;
            }
            double e = fabs(y[i] - want);
            if (fabs(want) >= 1e-3 && e / fabs(want) > max_rel)
                max_rel = e / fabs(want);
            if (e > rtol * fabs(want) + m->atol && bad < 0)
                bad = i;
        }
        printf("opencl %-12s n=%d max rel err %.3g (%g ulp = rtol %.3g, atol %g): %s\n", m->name, MN, max_rel, m->ulps,
               rtol, m->atol, bad < 0 ? "OK" : "FAIL");
        if (bad >= 0) {
            fprintf(stderr, "  %s(%.9g): got %.9g, want %.9g\n", m->name, x[bad], y[bad], m->ref(x[bad]));
            ok = false;
        }
    }
    CHECK(ok);
    for (int c = 0; c < 2 * NMC; c++)
        free(buf[c]);
    cg_kernel_free(k);
}

static void test_row_reduce(rt_ocl *o)
{
    cg_kernel *k = build_rowred();
    enum { ROWS = RA * RB, N = RA * RB * RL };
    float *x = kt_random(N, -1, 1);
    int32_t *q = malloc(N * sizeof *q);
    for (int i = 0; i < N; i++)
        q[i] = (int32_t)(kt_uniform(-1e6f, 1e6f));
    x[4 * RL + 4321] = NAN; /* row 4: max is NaN, and so are the elementwise max/min there */
    float fsum[ROWS], fmax[ROWS], rsum[ROWS], rmax[ROWS];
    int32_t imin[ROWS], isum[ROWS];
    int64_t lmax[ROWS];
    float *emax = calloc(N, sizeof *emax), *emin = calloc(N, sizeof *emin);
    void *host[] = {x, q, fsum, fmax, imin, isum, lmax, emax, emin};
    size_t dims[][2] = {{0, 0}, {4, 100}, {ROWS, 1}};
    for (int t = 0; t < 3; t++) {
        ocl_run_dims(o, k, host, dims[t][0], dims[t][1]);
        int bad = 0;
        for (int r = 0; r < ROWS; r++) {
            double s = 0;
            float m = -INFINITY;
            int32_t mi = INT32_MAX;
            uint32_t si = 0; /* i32 sum wraps the same way in any order */
            int64_t ml = INT64_MIN;
            bool nan = false;
            for (int c = 0; c < RL; c++) {
                float v = x[r * RL + c];
                s += v;
                nan |= isnan(v);
                m = v > m ? v : m;
                mi = q[r * RL + c] < mi ? q[r * RL + c] : mi;
                si += (uint32_t)q[r * RL + c];
                ml = (int64_t)q[r * RL + c] * 1000000 > ml ? (int64_t)q[r * RL + c] * 1000000 : ml;
            }
            rsum[r] = (float)s;
            rmax[r] = nan ? NAN : m;
            bad += imin[r] != mi || isum[r] != (int32_t)si || lmax[r] != ml;
            for (int c = 0; c < RL; c++) {
                float v = x[r * RL + c], h = rmax[r] * 0.5f;
                bool either = isnan(v) || isnan(h);
                float wmax = either ? NAN : v > h ? v : h, wmin = either ? NAN : h < v ? h : v;
                bad += isnan(wmax) ? !isnan(emax[r * RL + c]) : emax[r * RL + c] != wmax;
                bad += isnan(wmin) ? !isnan(emin[r * RL + c]) : emin[r * RL + c] != wmin;
            }
        }
        char what[64];
        snprintf(what, sizeof what, "row sum f32 [%d] %zux%zu", RL, dims[t][0], dims[t][1]);
        /* rtol 1e-5, plus atol 1e-6 of the sum of |x| (~RL/2): the sum may cancel towards 0;
         * row 4 holds the NaN */
        CHECK(isnan(fsum[4]));
        fsum[4] = rsum[4] = 0;
        CHECK(kt_compare(what, fsum, rsum, ROWS, 1e-5, 1e-6 * RL * 0.5));
        snprintf(what, sizeof what, "row max f32 (NaN row) %zux%zu", dims[t][0], dims[t][1]);
        for (int r = 0; r < ROWS; r++)
            CHECK(isnan(rmax[r]) ? isnan(fmax[r]) : fmax[r] == rmax[r]);
        printf("%-28s n=%-8d exact (row 4 NaN): OK\n", what, ROWS);
        printf("%-28s i32 min, i32 sum, i64 max, NaN-propagating max/min: %s\n", "row reduce ints, elementwise",
               bad ? "FAIL" : "exact: OK");
        CHECK(bad == 0);
    }
    free(x), free(q), free(emax), free(emin);
    cg_kernel_free(k);
}

static void test_inplace(rt_ocl *o)
{
    cg_kernel *k = build_inplace();
    enum { N = IR_ * IC };
    float *x = kt_random(N, -1, 1), *y = kt_random(N, 0.5f, 2), *xr = malloc(N * sizeof *xr), *yr = malloc(N * sizeof *yr);
    for (int r = 0; r < IR_; r++) {
        double s = 0;
        for (int c = 0; c < IC; c++)
            s += x[r * IC + c];
        float mean = (float)(s / IC);
        for (int c = 0; c < IC; c++) {
            xr[r * IC + c] = x[r * IC + c] - mean;
            yr[r * IC + c] = y[r * IC + c] * y[r * IC];
        }
    }
    void *host[] = {x, y};
    ocl_run(o, k, host);
    CHECK(kt_compare("in-place x -= mean(x)", x, xr, N, 1e-5, 1e-6));
    CHECK(kt_compare("in-place y *= y[r, 0]", y, yr, N, 1e-6, 0));
    free(x), free(y), free(xr), free(yr);
    cg_kernel_free(k);
}

/* Sequential kernels (kir.h): nested loops with run-time bounds, carries, a scatter-add whose
 * loads see the work-item's earlier stores, against the C references of test_kir_kernels.h. */
static void test_seq(rt_ocl *o)
{
    enum { R = 37, W = 301, N = 50, D = 7, NI = 97, SR = 11, SW = 70 };
    cg_kernel *k = kt_seq_colsum(R, W);
    float *x = kt_random(R * W, -2, 2), *out = malloc(W * sizeof *out), *ref = malloc(W * sizeof *ref);
    void *h1[] = {x, out};
    ocl_run(o, k, h1);
    kt_seq_colsum_ref(x, ref, R, W);
    CHECK(kt_compare("seq: column sums in order", out, ref, W, 1e-6, 1e-6));
    cg_kernel_free(k);
    free(x), free(out), free(ref);

    k = kt_seq_nested(N, D);
    x = kt_random(N * D, -1, 1);
    float tri[N], none[N], rtri[N], rnone[N];
    int64_t fib[N], rfib[N];
    void *h2[] = {x, tri, none, fib};
    ocl_run(o, k, h2);
    kt_seq_nested_ref(x, rtri, rnone, rfib, N, D);
    CHECK(kt_compare("seq: nested loops with bounds", tri, rtri, N, 1e-5, 1e-5));
    CHECK(memcmp(none, rnone, sizeof none) == 0 && memcmp(fib, rfib, sizeof fib) == 0);
    printf("%-28s empty loop, swapping carries: exact: OK\n", "seq: carries");
    cg_kernel_free(k);
    free(x);

    k = kt_seq_scatter(NI, SR, SW);
    float *src = kt_random(NI * SW, -1, 1), *dst = malloc(sizeof(float) * SR * SW), *dref = malloc(sizeof(float) * SR * SW);
    int32_t ids[NI];
    for (int j = 0; j < NI; j++)
        ids[j] = (int32_t)((j * 7 + j / 3) % SR);
    for (int i = 0; i < SR * SW; i++)
        dst[i] = 123;
    void *h3[] = {src, ids, dst};
    ocl_run(o, k, h3);
    kt_seq_scatter_ref(src, ids, dref, NI, SR, SW);
    CHECK(kt_compare("seq: scatter-add in order", dst, dref, SR * SW, 1e-6, 1e-6));
    cg_kernel_free(k);
    free(src), free(dst), free(dref);
}

/* A module of two kernels, a syntax error injected into the second one's body: the build error
 * must carry the OpenCL compiler's log and name that kernel. */
static void test_build_error(rt_ocl *o)
{
    cg_kernel *ks[2] = {kt_transpose2d(TM, TN), kt_softmax_rows("bad", 4, 8)};
    ir_diag d;
    ir_diag_init(&d);
    char *src = cg_opencl_source(ks, 2, &d);
    CHECK(src);
    const char *at = strstr(src, "__kernel void loom_bad(");
    CHECK(at);
    at = strstr(at, "{\n");
    CHECK(at);
    size_t pre = (size_t)(at + 2 - src);
    const char *inject = "    int loom_injected = ;\n";
    char *bad = malloc(strlen(src) + strlen(inject) + 1);
    CHECK(bad);
    memcpy(bad, src, pre);
    strcpy(bad + pre, inject);
    strcat(bad, src + pre);
    CHECK(!rt_ocl_build(o, bad, NULL, &d));
    char *msg = diag_text(&d);
    if (!strstr(msg, "OpenCL build failed for kernel loom_bad"))
        fprintf(stderr, "build error message:\n%s", msg);
    CHECK(strstr(msg, "OpenCL build failed for kernel loom_bad"));
    CHECK(strstr(msg, "error"));           /* the compiler's own log follows */
    CHECK(strstr(msg, rt_ocl_device_name(o)));
    printf("%-28s %s", "build error reported:", msg);
    free(msg), free(bad), free(src);
    ir_diag_free(&d);
    cg_kernel_free(ks[0]);
    cg_kernel_free(ks[1]);
}

static void expect_target_error(const char *target, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_ocl *o = rt_ocl_open(target, &d);
    CHECK(!o);
    char *msg = diag_text(&d);
    if (!strstr(msg, want)) {
        fprintf(stderr, "target %s: got \"%s\", want \"%s\"\n", target, msg, want);
        exit(1);
    }
    printf("%-28s %s", target, msg);
    free(msg);
    ir_diag_free(&d);
}

static void test_targets(void)
{
    int p, dv;
    ir_diag d;
    ir_diag_init(&d);
    CHECK(rt_ocl_parse_target("opencl", &p, &dv, &d) && p == -1 && dv == -1);
    CHECK(rt_ocl_parse_target("opencl:1", &p, &dv, &d) && p == 1 && dv == -1);
    CHECK(rt_ocl_parse_target("opencl:0:12", &p, &dv, &d) && p == 0 && dv == 12);
    const char *bad[] = {"opencl:", "opencl:x", "opencl:0:", "opencl:0:0:0", "cuda", "opencl0", "opencl:-1", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!rt_ocl_parse_target(bad[i], &p, &dv, &d));
    CHECK(d.n_errors == (int)(sizeof bad / sizeof *bad));
    CHECK(strstr(d.msg[1].msg, "bad OpenCL target 'opencl:x': expected opencl[:PLATFORM[:DEVICE]]"));
    ir_diag_free(&d);

    /* count the platforms, to know what the messages must say */
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    CHECK(f);
    ir_diag_init(&d);
    CHECK(rt_ocl_list_devices(f, &d));
    fclose(f);
    ir_diag_free(&d);
    int np = 0;
    for (const char *s = list; (s = strstr(s, "  platform '")); s++)
        np++;
    CHECK(np >= 1 && strstr(list, "opencl:0:0  "));
    printf("devices:\n%s", list);
    free(list);
    char want[128];
    snprintf(want, sizeof want, "opencl:7: no platform 7 (%d platform%s)", np, np == 1 ? "" : "s");
    expect_target_error("opencl:7", want);
    expect_target_error("opencl:0:9", "opencl:0:9: no device 9 on platform 0 '");
    expect_target_error("opencl:zero", "bad OpenCL target 'opencl:zero'");
}

/* The memory cache returns the same program; a second rt_ocl on the same disk cache loads the
 * binary instead of building, and the kernel from it runs correctly. */
static void test_cache(rt_ocl *o, const char *dir)
{
    cg_kernel *k = kt_scale_by_n(100);
    char *src = render(k);
    ir_diag d;
    ir_diag_init(&d);
    rt_ocl_stats s0 = rt_ocl_stats_get(o);
    rt_ocl_program *p1 = rt_ocl_build(o, src, NULL, &d);
    rt_ocl_program *p2 = rt_ocl_build(o, src, NULL, &d);
    CHECK(p1 && p1 == p2);
    rt_ocl_stats s1 = rt_ocl_stats_get(o);
    CHECK(s1.memory_hits >= s0.memory_hits + 1);
    rt_ocl *o2 = rt_ocl_open("opencl", &d);
    CHECK(o2);
    rt_ocl_set_cache_dir(o2, dir);
    CHECK(rt_ocl_build(o2, src, NULL, &d));
    rt_ocl_stats s2 = rt_ocl_stats_get(o2);
    printf("%-28s memory hits %d; second context: built %d, from disk %d\n", "program cache", s1.memory_hits - s0.memory_hits,
           s2.built, s2.disk_hits);
    CHECK(s2.disk_hits == 1 && s2.built == 0);
    float in[100];
    for (int i = 0; i < 100; i++)
        in[i] = (float)i - 50.25f;
    int64_t nv = -2, res[100];
    void *host[] = {in, &nv, res};
    ocl_run(o2, k, host);
    for (int i = 0; i < 100; i++)
        CHECK(res[i] == (int64_t)(in[i] * -2.0f) + i);
    rt_ocl_close(o2);
    free(src);
    ir_diag_free(&d);
    cg_kernel_free(k);
}

/* ---- the source text (no device) --------------------------------------------------------------
 * What no graph lowers to, so that the FileCheck tests of tests/lit/opencl (which take .lir
 * graphs through `loom dump --emit=cl`) cannot see it: f64 buffers, i64 scalar arguments, a
 * 3-D grid, an i32 min reduce, inout buffers. */

/* The OpenCL C of k alone (offsets: the executor's ABI, cg_opencl_source_offsets). */
static char *render_text(cg_kernel *k, bool offsets)
{
    if (!offsets)
        return render(k);
    ir_diag d;
    ir_diag_init(&d);
    char *src = cg_opencl_source_offsets(&k, 1, &d);
    if (!src)
        die_diag(&d, "cg_opencl_source_offsets");
    ir_diag_free(&d);
    return src;
}

/* s contains each of the strings, in this order (NULL-terminated list). */
static bool in_order(const char *s, ...)
{
    va_list ap;
    va_start(ap, s);
    const char *at = s;
    for (const char *want = va_arg(ap, const char *); want && at; want = va_arg(ap, const char *)) {
        at = strstr(at, want);
        if (!at)
            fprintf(stderr, "source text: missing (in order) '%s'\n", want);
        else
            at += strlen(want);
    }
    va_end(ap);
    return at != NULL;
}

static void test_source_text(void)
{
    /* f64: cl_khr_fp64 enabled, double buffers, double constants and math */
    cg_kernel *k = kt_gelu_bcast("gelu_bcast64", DT_F64, ER, EN);
    char *src = render_text(k, false);
    CHECK(in_order(src, "#pragma OPENCL EXTENSION cl_khr_fp64 : enable",
                   "__kernel void loom_gelu_bcast64(__global const double *restrict a",
                   "const double ", " = 0.7978845608028654;", "const double ", " = tanh(", NULL));
    free(src);
    cg_kernel_free(k);

    /* an i64 scalar is a `long` parameter in argument order, read once, cast explicitly; in the
     * executor's ABI it gets no element offset */
    k = kt_scale_by_n(100);
    src = render_text(k, false);
    CHECK(in_order(src, "__kernel void loom_scale_by_n(__global const float *restrict a /* f32[100] */,\n",
                   "        const long n,\n", "        __global long *restrict out /* i64[100] */)", NULL));
    CHECK(in_order(src, " = n;", " = (float)_v", " = (long)_v", NULL));
    free(src);
    src = render_text(k, true);
    CHECK(in_order(src, "__kernel void loom_scale_by_n(__global const float *restrict a /* f32[100] */,\n",
                   "        const long _off0,\n        const long n,\n",
                   "        __global long *restrict out /* i64[100] */,\n        const long _off2)\n{\n",
                   "    a += _off0;\n    out += _off2;\n    for (long _gid", NULL));
    free(src);
    cg_kernel_free(k);

    /* a 3-D grid unflattened innermost first; a u8 load widened to int */
    k = kt_permute3d(PA, PB, PC);
    src = render_text(k, false);
    CHECK(in_order(src, "long _t = _gid;\n", "const long _p2 = _t % 6;\n", "_t /= 6;\n",
                   "const long _p1 = _t % 5;\n", "_t /= 5;\n", "const long _p0 = _t;\n", "= (int)bytes[", NULL));
    free(src);
    cg_kernel_free(k);

    /* an i32 min reduce starts at INT_MAX and combines by < in its tree; a 2-D grid of groups */
    k = build_rowred();
    src = render_text(k, false);
    CHECK(in_order(src, "long _t = _grp;", "= 2147483647; /* reduce.min over loop 0 */",
                   "_red_i32[_lid] = (_a < _b ? _a : _b);", NULL));
    free(src);
    cg_kernel_free(k);

    /* inout rows: y[r, 0], read by every work-item, then written by others with no reduction
     * in between: one global barrier before loop 0's stores; x's reads (loop 0) and writes
     * (loop 1) are already separated by the reduction's local barriers, so no second one */
    k = build_inplace();
    src = render_text(k, false);
    CHECK(in_order(src, "__kernel void loom_inplace_rows(__global float *restrict x /* f32[7000] */,\n",
                   "        __global float *restrict y /* f32[7000] */)", " = y[_v", "barrier(CLK_GLOBAL_MEM_FENCE);\n",
                   "/* reduce.sum over loop 0 */\n", "for (long _l0 = _lid; _l0 < 1000; _l0 += _lsz) {",
                   "barrier(CLK_LOCAL_MEM_FENCE);", "for (long _l1 = _lid; _l1 < 1000; _l1 += _lsz) {", "x[_v",
                   NULL));
    const char *first = strstr(src, "CLK_GLOBAL_MEM_FENCE");
    CHECK(first && !strstr(first + 1, "CLK_GLOBAL_MEM_FENCE"));
    free(src);
    cg_kernel_free(k);
    printf("%-28s f64, i64 scalars (both ABIs), 3-D grid, i32 min, inout barrier: OK\n", "source text");
}

/* softmax over [256, 4096]: the OpenCL device (best of 5 after a warm-up, kernel + finish, data
 * already on the device) against the host JIT on one thread. */
static int bench(rt_ocl *o)
{
    enum { BR = 256, BC = 4096 };
    cg_kernel *k = kt_softmax_rows("softmax_bench", BR, BC);
    float *x = kt_random(BR * BC, -8, 8), *y = calloc(BR * BC, sizeof *y), *ref = calloc(BR * BC, sizeof *ref);
    ir_diag d;
    ir_diag_init(&d);
    char *src = render(k);
    double t0 = now_ms();
    rt_ocl_set_cache_dir(o, NULL);
    rt_ocl_program *p = rt_ocl_build(o, src, NULL, &d);
    if (!p)
        die_diag(&d, "build");
    double t_build = now_ms() - t0;
    rt_ocl_buf *bx = rt_ocl_alloc(o, sizeof(float) * BR * BC, &d), *by = rt_ocl_alloc(o, sizeof(float) * BR * BC, &d);
    CHECK(bx && by && rt_ocl_write(o, bx, 0, x, sizeof(float) * BR * BC, &d));
    rt_ocl_arg args[] = {rt_ocl_arg_buf(bx), rt_ocl_arg_buf(by)};
    size_t groups, local;
    cg_opencl_launch_dims(k, &groups, &local);
    double best = 1e30;
    for (int i = 0; i < 6; i++) {
        t0 = now_ms();
        CHECK(rt_ocl_launch(o, p, "loom_softmax_bench", args, 2, groups, local, &d) && rt_ocl_finish(o, &d));
        double t = now_ms() - t0;
        if (i > 0 && t < best)
            best = t;
    }
    for (size_t l = 8; l <= CG_OPENCL_MAX_LOCAL; l *= 2) { /* how the local size matters here */
        double b = 1e30;
        for (int i = 0; i < 4; i++) {
            t0 = now_ms();
            CHECK(rt_ocl_launch(o, p, "loom_softmax_bench", args, 2, groups, l, &d) && rt_ocl_finish(o, &d));
            double t = now_ms() - t0;
            if (i > 0 && t < b)
                b = t;
        }
        printf("  local %3zu: %.2f ms\n", l, b);
    }
    CHECK(rt_ocl_read(o, by, 0, y, sizeof(float) * BR * BC, &d));
    softmax_ref(x, ref, BR, BC);
    CHECK(kt_compare("softmax [256, 4096] opencl", y, ref, BR * BC, 1e-5, 0));
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    void *hargs[] = {x, y};
    double hbest = 1e30;
    for (int i = 0; i < 6; i++) {
        t0 = now_ms();
        fn(hargs, 0, BR);
        double t = now_ms() - t0;
        if (i > 0 && t < hbest)
            hbest = t;
    }
    CHECK(kt_compare("softmax [256, 4096] host JIT", y, ref, BR * BC, 1e-5, 0));
    printf("softmax [256, 4096]: OpenCL %s %.2f ms (%zu groups x %zu; build %.0f ms), host JIT 1 thread %.2f ms\n",
           rt_ocl_device_name(o), best, groups, local, t_build, hbest);
    cg_jit_free(jit);
    rt_ocl_free(bx), rt_ocl_free(by);
    free(x), free(y), free(ref), free(src);
    ir_diag_free(&d);
    cg_kernel_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    test_source_text();
    ir_diag d;
    ir_diag_init(&d);
    rt_ocl *o = rt_ocl_open("opencl", &d);
    if (!o) {
        char *msg = diag_text(&d);
        int skip = strstr(msg, "no OpenCL platform") || strstr(msg, "no OpenCL device");
        printf("%s%s", skip ? "skipped: no OpenCL platform\n" : "", msg);
        free(msg);
        ir_diag_free(&d);
        return skip ? 0 : 1;
    }
    printf("device: %s (fp64 %s)\n", rt_ocl_device_name(o), rt_ocl_has_fp64(o) ? "yes" : "no");
    if (argc == 2 && strcmp(argv[1], "--bench") == 0) {
        int rc = bench(o);
        rt_ocl_close(o);
        ir_diag_free(&d);
        return rc;
    }
    char dir[] = "/tmp/loom-ocl-cache-XXXXXX";
    CHECK(mkdtemp(dir));
    rt_ocl_set_cache_dir(o, dir);

    test_elementwise(o);
    test_scalar(o);
    test_transpose(o);
    test_softmax(o);
    test_layernorm(o);
    test_half(o);
    test_math(o);
    test_row_reduce(o);
    test_inplace(o);
    test_seq(o);
    test_build_error(o);
    test_targets();
    test_cache(o, dir);

    rt_ocl_close(o);
    ir_diag_free(&d);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
