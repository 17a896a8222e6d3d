/* test_kir_same_body.c — identical kernels compiled once (kir.h: cg_kernel_same_body; jit.c).
 *
 * y = x * c + 1 over 64 elements, built as kernels "a" and "b" (same c, other arg names) and
 * "c" (another constant) and "d" (another size):
 *  1. a and b have the same body and hash; c and d differ from a;
 *  2. one cg_jit_add of all four: a and b resolve to one function, c and d to their own, and
 *     every name computes its own kernel's numbers (b's through a's code).
 */
#include "test_kir_util.h"

#include <string.h>

static cg_kernel *scale(const char *name, const char *x, const char *y, double c, int64_t n)
{
    cg_kernel *k = cg_kernel_new(name);
    int ax = cg_kernel_buffer(k, x, DT_F32, CG_IN, n), ay = cg_kernel_buffer(k, y, DT_F32, CG_OUT, n);
    cg_kernel_dim(k, n);
    cg_val i = cg_pidx(k, 0);
    cg_store(k, ay, i, cg_add(k, cg_mul(k, cg_load(k, ax, i), cg_f32(k, c)), cg_f32(k, 1)));
    return k;
}

int main(void)
{
    cg_kernel *ks[4] = {scale("a", "x", "y", 3, 64), scale("b", "p", "q", 3, 64), scale("c", "x", "y", 5, 64),
                        scale("d", "x", "y", 3, 32)};
    CHECK(cg_kernel_same_body(ks[0], ks[1]) && cg_kernel_body_hash(ks[0]) == cg_kernel_body_hash(ks[1]));
    CHECK(!cg_kernel_same_body(ks[0], ks[2]) && !cg_kernel_same_body(ks[0], ks[3]));
    printf("same body: a = b (other names), a != c (another constant), a != d (another size): OK\n");

    ir_diag d;
    ir_diag_init(&d);
    cg_jit *jit = cg_jit_new(&d);
    CHECK(jit && cg_jit_add(jit, ks, 4, NULL, &d));
    cg_host_fn fn[4];
    for (int i = 0; i < 4; i++)
        CHECK((fn[i] = cg_jit_lookup(jit, ks[i]->name, &d)) != NULL);
    CHECK(fn[0] == fn[1] && fn[0] != fn[2] && fn[0] != fn[3] && fn[2] != fn[3]);
    printf("one JIT: a and b one function, c and d their own: OK\n");
    float x[64], y[64];
    const double c[4] = {3, 3, 5, 3};
    const int64_t n[4] = {64, 64, 64, 32};
    bool ok = true;
    for (int i = 0; i < 64; i++)
        x[i] = (float)i * 0.25f - 4;
    for (int k = 0; k < 4; k++) {
        memset(y, 0, sizeof y);
        void *args[2] = {x, y};
        kt_run(fn[k], args, n[k], 3);
        for (int i = 0; i < 64; i++)
            ok &= y[i] == (i < n[k] ? x[i] * (float)c[k] + 1 : 0);
    }
    CHECK(ok);
    printf("each name computes its own kernel: OK\n");
    cg_jit_free(jit);
    for (int i = 0; i < 4; i++)
        cg_kernel_free(ks[i]);
    ir_diag_free(&d);
    return 0;
}
