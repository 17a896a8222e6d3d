/* test_kir_half.c — f16 and bf16 as storage types: loads widen to f32, stores round to nearest
 * even; the round_f16 / round_bf16 ops (a cast to a half type in a register) round alike. One JIT-compiled kernel over all 65536 bit patterns checks (a) f16 → f16 and
 * bf16 → bf16 copies are exact (NaNs stay NaN), (b) f32 → f16 and f32 → bf16 stores match
 * independent C conversions bit for bit on random values, ties, subnormals, overflow and
 * specials, and (c) math on widened values: bf16 out = f16 a * bf16 b + 1 (the product of an
 * 11-bit and an 8-bit significand is exact in f32, so FMA contraction cannot change it).
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { N = 65536 };

int main(void)
{
    cg_kernel *k = kt_half_io(N);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    uint16_t *h = malloc(N * 2), *b = malloc(N * 2), *hc = calloc(N, 2), *bc = calloc(N, 2);
    uint16_t *hf = calloc(N, 2), *bf = calloc(N, 2), *mix = calloc(N, 2);
    float *f = malloc(N * sizeof *f), *hr = calloc(N, sizeof *hr), *br = calloc(N, sizeof *br);
    for (int i = 0; i < N; i++) {
        h[i] = (uint16_t)i;
        b[i] = (uint16_t)(i * 40503u); /* every pattern, in another order */
        uint32_t bits = (uint32_t)i * 2654435761u;
        memcpy(&f[i], &bits, sizeof f[i]); /* all exponents: subnormal, overflow, inf, NaN */
    }
    const float special[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.9802322e-8f, 5.96e-8f,
                             1.0009765625f /* f16 tie */, 1.00048828125f, 3.4028235e38f, -INFINITY,
                             1.00390625f /* bf16 tie, odd */, 1.01171875f /* bf16 tie, even */, NAN};
    for (size_t s = 0; s < sizeof special / sizeof *special; s++)
        f[s] = special[s];
    for (int i = 64; i < 4096; i++)
        f[i] = kt_uniform(-70000, 70000) * ldexpf(1, (i % 60) - 40);
    void *args[] = {h, b, f, hc, bc, hf, bf, mix, hr, br};
    kt_run(fn, args, N, 5);
    int nan_h = 0, nan_b = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(kt_half_to_float(h[i]))) {
            CHECK(isnan(kt_half_to_float(hc[i])));
            nan_h++;
        } else {
            CHECK(hc[i] == h[i]);
        }
        if (isnan(kt_bf16_to_float(b[i]))) {
            CHECK(isnan(kt_bf16_to_float(bc[i])));
            nan_b++;
        } else {
            CHECK(bc[i] == b[i]);
        }
        if (isnan(f[i])) {
            CHECK(isnan(kt_half_to_float(hf[i])) && isnan(kt_bf16_to_float(bf[i])));
        } else {
            if (hf[i] != kt_float_to_half(f[i]))
                fprintf(stderr, "f16(%.9g): got %04x want %04x\n", f[i], hf[i], kt_float_to_half(f[i]));
            if (bf[i] != kt_float_to_bf16(f[i]))
                fprintf(stderr, "bf16(%.9g): got %04x want %04x\n", f[i], bf[i], kt_float_to_bf16(f[i]));
            CHECK(hf[i] == kt_float_to_half(f[i]) && bf[i] == kt_float_to_bf16(f[i]));
        }
        float want = kt_half_to_float(h[i]) * kt_bf16_to_float(b[i]) + 1.0f;
        if (isnan(want))
            CHECK(isnan(kt_bf16_to_float(mix[i])));
        else
            CHECK(mix[i] == kt_float_to_bf16(want));
        if (!kt_rounds_ok(f[i], hr[i], br[i]))
            fprintf(stderr, "round(%.9g): f16 %.9g bf16 %.9g\n", f[i], hr[i], br[i]);
        CHECK(kt_rounds_ok(f[i], hr[i], br[i]));
    }
    printf("%-28s all %d patterns exact (%d/%d NaN patterns stay NaN): OK\n", "f16/bf16 copy", N, nan_h, nan_b);
    printf("%-28s n=%d bit-exact vs C round-to-nearest-even: OK\n", "f32 -> f16, f32 -> bf16", N);
    printf("%-28s n=%d bit-exact: OK\n", "bf16(f16 * bf16 + 1)", N);
    printf("%-28s n=%d bit-exact vs the stores' rounding: OK\n", "round_f16, round_bf16 (f32)", N);
    free(h), free(b), free(hc), free(bc), free(hf), free(bf), free(mix), free(f), free(hr), free(br);
    cg_jit_free(jit);
    cg_kernel_free(k);
    return 0;
}
