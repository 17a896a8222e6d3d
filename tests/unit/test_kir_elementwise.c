/* test_kir_elementwise.c — an elementwise kernel with broadcasting, JIT-compiled for the host:
 * out[i] = gelu_tanh(a[i] + b[i % N]) over a [R, N] tensor flattened to a 1-D grid, checked
 * against a plain C loop (rel 1e-5 + abs 1e-6), run whole and split into chunks as a thread
 * pool would. Also an f64 variant and a scalar argument (out[i] = a[i] * n).
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { R = 37, N = 129 };

static float gelu_ref(float x)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static void test_f32(void)
{
    cg_kernel *k = kt_gelu_bcast("gelu_bcast", DT_F32, R, N);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *a = kt_random(R * N, -3, 3), *b = kt_random(N, -1, 1);
    float *out = calloc(R * N, sizeof *out), *ref = calloc(R * N, sizeof *ref);
    for (int i = 0; i < R * N; i++)
        ref[i] = gelu_ref(a[i] + b[i % N]);
    void *args[] = {a, b, out};
    kt_run(fn, args, R * N, 1);
    CHECK(kt_compare("gelu(a + b) f32", out, ref, R * N, 1e-5, 1e-6));
    memset(out, 0, R * N * sizeof *out);
    kt_run(fn, args, R * N, 7);
    CHECK(kt_compare("gelu(a + b) f32, 7 chunks", out, ref, R * N, 1e-5, 1e-6));
    fn(args, 5, 5); /* empty range: no effect, no crash */
    free(a), free(b), free(out), free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

static void test_f64(void)
{
    cg_kernel *k = kt_gelu_bcast("gelu_bcast64", DT_F64, R, N);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    double *a = malloc(R * N * sizeof *a), *b = malloc(N * sizeof *b), *out = calloc(R * N, sizeof *out);
    float *got = malloc(R * N * sizeof *got), *ref = malloc(R * N * sizeof *ref);
    for (int i = 0; i < R * N; i++)
        a[i] = kt_uniform(-3, 3);
    for (int i = 0; i < N; i++)
        b[i] = kt_uniform(-1, 1);
    void *args[] = {a, b, out};
    kt_run(fn, args, R * N, 3);
    double max_rel = 0;
    for (int i = 0; i < R * N; i++) {
        double x = a[i] + b[i % N];
        double want = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        double e = fabs(out[i] - want) / (fabs(want) + 1e-300);
        max_rel = e > max_rel && fabs(want) > 1e-3 ? e : max_rel;
        CHECK(fabs(out[i] - want) <= 1e-12 * fabs(want) + 1e-14);
    }
    printf("%-28s n=%-8d max rel err %.3g (rtol 1e-12): OK\n", "gelu(a + b) f64", R * N, max_rel);
    free(a), free(b), free(out), free(got), free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

static void test_scalar_arg(void)
{
    cg_kernel *k = kt_scale_by_n(100);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *in = kt_random(100, -50, 50);
    int64_t nv = 3, res[100];
    void *args[] = {in, &nv, res};
    kt_run(fn, args, 100, 2);
    for (int i2 = 0; i2 < 100; i2++)
        CHECK(res[i2] == (int64_t)(in[i2] * 3.0f) + i2);
    printf("%-28s n=%-8d exact: OK\n", "(i64)(a * n) + i, scalar n", 100);
    free(in);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

int main(void)
{
    test_f32();
    test_f64();
    test_scalar_arg();
    return 0;
}
