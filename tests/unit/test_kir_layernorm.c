/* test_kir_layernorm.c — a row kernel with reductions feeding later loops and stores after the
 * loops: layernorm over [ROWS, C] with weight and bias [C], two-pass (mean, then biased
 * variance of x - mean), also writing mean and rstd per row (what a backward pass keeps).
 * JIT-compiled for the host and compared with a plain C loop in double (rel 1e-5 + abs 1e-5:
 * y is O(1) and its f32 error is dominated by the rounding of the row mean).
 */
#include "test_kir_util.h"

enum { ROWS = 19, C = 768 };
static const double EPS = 1e-5;

static cg_kernel *build_layernorm(void)
{
    cg_kernel *k = cg_kernel_new("layernorm_rows");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, ROWS * C);
    int w = cg_kernel_buffer(k, "w", DT_F32, CG_IN, C);
    int b = cg_kernel_buffer(k, "b", DT_F32, CG_IN, C);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_OUT, ROWS * C);
    int mean_out = cg_kernel_buffer(k, "mean", DT_F32, CG_OUT, ROWS);
    int rstd_out = cg_kernel_buffer(k, "rstd", DT_F32, CG_OUT, ROWS);
    cg_kernel_dim(k, ROWS);
    int l0 = cg_kernel_loop(k, C), l1 = cg_kernel_loop(k, C), l2 = cg_kernel_loop(k, C);
    cg_val r = cg_pidx(k, 0), row = cg_mul(k, r, cg_i64(k, C)), inv_c = cg_f32(k, 1.0 / C);
    cg_val mean = cg_mul(k, cg_reduce(k, CG_RED_SUM, l0, cg_load(k, x, cg_add(k, row, cg_lidx(k, l0)))), inv_c);
    cg_val d1 = cg_sub(k, cg_load(k, x, cg_add(k, row, cg_lidx(k, l1))), mean);
    cg_val var = cg_mul(k, cg_reduce(k, CG_RED_SUM, l1, cg_mul(k, d1, d1)), inv_c);
    cg_val rstd = cg_unary(k, CG_RSQRT, cg_add(k, var, cg_f32(k, EPS)));
    cg_val c2 = cg_lidx(k, l2), at = cg_add(k, row, c2);
    cg_val norm = cg_mul(k, cg_sub(k, cg_load(k, x, at), mean), rstd);
    cg_store(k, y, at, cg_add(k, cg_mul(k, norm, cg_load(k, w, c2)), cg_load(k, b, c2)));
    cg_store(k, mean_out, r, mean);
    cg_store(k, rstd_out, r, rstd);
    return k;
}

int main(void)
{
    cg_kernel *k = build_layernorm();
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(ROWS * C, -2, 2), *w = kt_random(C, 0.5f, 1.5f), *b = kt_random(C, -0.5f, 0.5f);
    for (int i = 0; i < C; i++)
        x[3 * C + i] += 30.0f; /* a common offset: one-pass E[x^2] - E[x]^2 would lose digits */
    float *y = calloc(ROWS * C, sizeof *y), *ref = calloc(ROWS * C, sizeof *ref);
    float mean[ROWS], rstd[ROWS], mref[ROWS], rref[ROWS];
    /* reference in double: the kernel's f32 error is then its own, not the sum of two */
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x + r * C;
        double s = 0, v = 0;
        for (int c = 0; c < C; c++)
            s += xr[c];
        double m = s / C;
        for (int c = 0; c < C; c++)
            v += (xr[c] - m) * (xr[c] - m);
        double rs = 1.0 / sqrt(v / C + EPS);
        mref[r] = (float)m, rref[r] = (float)rs;
        for (int c = 0; c < C; c++)
            ref[r * C + c] = (float)((xr[c] - m) * rs * w[c] + b[c]);
    }
    void *args[] = {x, w, b, y, mean, rstd};
    kt_run(fn, args, ROWS, 3);
    CHECK(kt_compare("layernorm y f32", y, ref, ROWS * C, 1e-5, 1e-5));
    CHECK(kt_compare("layernorm mean", mean, mref, ROWS, 1e-5, 1e-6));
    CHECK(kt_compare("layernorm rstd", rstd, rref, ROWS, 1e-5, 0));
    free(x), free(w), free(b), free(y), free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
    return 0;
}
