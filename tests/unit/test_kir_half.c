/* test_kir_half.c — f16 and bf16 as storage types: loads widen to f32, stores round to nearest
 * even. One JIT-compiled kernel over all 65536 bit patterns checks (a) f16 → f16 and
 * bf16 → bf16 copies are exact (NaNs stay NaN), (b) f32 → f16 and f32 → bf16 stores match
 * independent C conversions bit for bit on random values, ties, subnormals, overflow and
 * specials, and (c) math on widened values: bf16 out = f16 a * bf16 b + 1 (the product of an
 * 11-bit and an 8-bit significand is exact in f32, so FMA contraction cannot change it).
 */
#include <string.h>

#include "test_kir_util.h"

enum { N = 65536 };

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000 ? -v : v;
}

static float bf16_to_float(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Round to nearest even by arithmetic on the value (not the kernel's bit trick). */
static uint16_t float_to_half(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (isnan(f))
        return sign | 0x7e00;
    if (a >= 65520.0f) /* halfway between 65504 and 2^16 rounds (to even) up: inf */
        return sign | 0x7c00;
    if (a < ldexpf(1, -14))
        return sign | (uint16_t)nearbyintf(a * 16777216.0f); /* m * 2^-24; 1024 is the least normal */
    int e;
    frexpf(a, &e);
    uint32_t q = (uint32_t)nearbyintf(ldexpf(a, 11 - e)); /* 11 significant bits, in [1024, 2048] */
    int E = e + 14;
    if (q == 2048)
        q = 1024, E++;
    return E >= 31 ? (uint16_t)(sign | 0x7c00) : (uint16_t)(sign | (E << 10) | (q - 1024));
}

/* The nearer of the two bf16 neighbours of f; ties to the even one. */
static uint16_t float_to_bf16(float f)
{
    if (isnan(f))
        return 0x7fc0;
    uint32_t x, lo, hi;
    memcpy(&x, &f, sizeof x);
    lo = x & 0xffff0000u;
    hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, sizeof flo);
    memcpy(&fhi, &hi, sizeof fhi);
    double dhi_val = (hi & 0x7fffffffu) == 0x7f800000u ? copysign(ldexp(1, 128), f) : fhi;
    double dlo = fabs((double)f - flo), dhi = fabs(dhi_val - f);
    uint32_t r = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;
    return (uint16_t)(r >> 16);
}

static cg_kernel *build(void)
{
    cg_kernel *k = cg_kernel_new("half_io");
    int h_in = cg_kernel_buffer(k, "h_in", DT_F16, CG_IN, N);
    int b_in = cg_kernel_buffer(k, "b_in", DT_BF16, CG_IN, N);
    int f_in = cg_kernel_buffer(k, "f_in", DT_F32, CG_IN, N);
    int h_copy = cg_kernel_buffer(k, "h_copy", DT_F16, CG_OUT, N);
    int b_copy = cg_kernel_buffer(k, "b_copy", DT_BF16, CG_OUT, N);
    int h_from_f = cg_kernel_buffer(k, "h_from_f", DT_F16, CG_OUT, N);
    int b_from_f = cg_kernel_buffer(k, "b_from_f", DT_BF16, CG_OUT, N);
    int mix = cg_kernel_buffer(k, "mix", DT_BF16, CG_OUT, N);
    cg_kernel_dim(k, N);
    cg_val i = cg_pidx(k, 0);
    cg_val h = cg_load(k, h_in, i), b = cg_load(k, b_in, i), f = cg_load(k, f_in, i);
    cg_store(k, h_copy, i, h);
    cg_store(k, b_copy, i, b);
    cg_store(k, h_from_f, i, f);
    cg_store(k, b_from_f, i, f);
    cg_store(k, mix, i, cg_add(k, cg_mul(k, h, b), cg_f32(k, 1)));
    return k;
}

int main(void)
{
    cg_kernel *k = build();
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    uint16_t *h = malloc(N * 2), *b = malloc(N * 2), *hc = calloc(N, 2), *bc = calloc(N, 2);
    uint16_t *hf = calloc(N, 2), *bf = calloc(N, 2), *mix = calloc(N, 2);
    float *f = malloc(N * sizeof *f);
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
    void *args[] = {h, b, f, hc, bc, hf, bf, mix};
    kt_run(fn, args, N, 5);
    int nan_h = 0, nan_b = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(half_to_float(h[i]))) {
            CHECK(isnan(half_to_float(hc[i])));
            nan_h++;
        } else {
            CHECK(hc[i] == h[i]);
        }
        if (isnan(bf16_to_float(b[i]))) {
            CHECK(isnan(bf16_to_float(bc[i])));
            nan_b++;
        } else {
            CHECK(bc[i] == b[i]);
        }
        if (isnan(f[i])) {
            CHECK(isnan(half_to_float(hf[i])) && isnan(bf16_to_float(bf[i])));
        } else {
            if (hf[i] != float_to_half(f[i]))
                fprintf(stderr, "f16(%.9g): got %04x want %04x\n", f[i], hf[i], float_to_half(f[i]));
            if (bf[i] != float_to_bf16(f[i]))
                fprintf(stderr, "bf16(%.9g): got %04x want %04x\n", f[i], bf[i], float_to_bf16(f[i]));
            CHECK(hf[i] == float_to_half(f[i]) && bf[i] == float_to_bf16(f[i]));
        }
        float want = half_to_float(h[i]) * bf16_to_float(b[i]) + 1.0f;
        if (isnan(want))
            CHECK(isnan(bf16_to_float(mix[i])));
        else
            CHECK(mix[i] == float_to_bf16(want));
    }
    printf("%-28s all %d patterns exact (%d/%d NaN patterns stay NaN): OK\n", "f16/bf16 copy", N, nan_h, nan_b);
    printf("%-28s n=%d bit-exact vs C round-to-nearest-even: OK\n", "f32 -> f16, f32 -> bf16", N);
    printf("%-28s n=%d bit-exact: OK\n", "bf16(f16 * bf16 + 1)", N);
    free(h), free(b), free(hc), free(bc), free(hf), free(bf), free(mix), free(f);
    cg_jit_free(jit);
    cg_kernel_free(k);
    return 0;
}
