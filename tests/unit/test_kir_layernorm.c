/* test_kir_layernorm.c — a row kernel with reductions feeding later loops and stores after the
 * loops: layernorm over [ROWS, C] with weight and bias [C], two-pass (mean, then biased
 * variance of x - mean), also writing mean and rstd per row (what a backward pass keeps).
 * JIT-compiled for the host and compared with a plain C loop in double (rel 1e-5 + abs 1e-5:
 * y is O(1) and its f32 error is dominated by the rounding of the row mean).
 */
#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { ROWS = 19, C = 768 };
static const double EPS = 1e-5;

int main(void)
{
    cg_kernel *k = kt_layernorm_rows(ROWS, C, EPS);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(ROWS * C, -2, 2), *w = kt_random(C, 0.5f, 1.5f), *b = kt_random(C, -0.5f, 0.5f);
    for (int i = 0; i < C; i++)
        x[3 * C + i] += 30.0f; /* a common offset: one-pass E[x^2] - E[x]^2 would lose digits */
    float *y = calloc(ROWS * C, sizeof *y), *ref = calloc(ROWS * C, sizeof *ref);
    float mean[ROWS], rstd[ROWS], mref[ROWS], rref[ROWS];
    kt_layernorm_ref(x, w, b, ROWS, C, EPS, ref, mref, rref);
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
