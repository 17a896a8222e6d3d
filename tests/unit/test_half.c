/* test_half.c — runtime/half.h's conversions, which the CPU executor uses for the GEMM and
 * attention steps of half buffers, against the reference interpreter's rounding (ir_round_to:
 * an independent implementation through doubles, frexp and nearbyint):
 *  - every one of the 65536 f16 and bf16 patterns widens and narrows back to itself (NaNs stay
 *    NaN), and widening is exact (re-rounding the widened value changes nothing);
 *  - f32 → f16 and f32 → bf16 equal ir_round_to on 2^20 values spread over every exponent
 *    (subnormal, overflow, inf), ties and hand-picked boundaries (65504, 65519.99, 65520);
 *  - rt_plan_half_library finds a half GEMM operand and ignores f32 plans. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/half.h"
#include "ir/interp.h"
#include "test_check.h"

static float float_of(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static void test_patterns(void)
{
    int nan_h = 0, nan_b = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t p = (uint16_t)i;
        float h = rt_f16_to_f32(p), b = rt_bf16_to_f32(p);
        if (isnan(h)) {
            nan_h++;
            CHECK(isnan(rt_f16_to_f32(rt_f32_to_f16(h))), "f16 NaN %04x lost", p);
        } else {
            CHECK(rt_f32_to_f16(h) == p, "f16 %04x -> %g -> %04x", p, h, rt_f32_to_f16(h));
            CHECK(ir_round_to(DT_F16, h) == h, "f16 %04x widened to %g, not an f16 value", p, h);
        }
        if (isnan(b)) {
            nan_b++;
            CHECK(isnan(rt_bf16_to_f32(rt_f32_to_bf16(b))), "bf16 NaN %04x lost", p);
        } else {
            CHECK(rt_f32_to_bf16(b) == p, "bf16 %04x -> %g -> %04x", p, b, rt_f32_to_bf16(b));
            CHECK(ir_round_to(DT_BF16, b) == b, "bf16 %04x widened to %g, not a bf16 value", p, b);
        }
    }
    /* NaNs: exponent all ones, mantissa not zero, either sign: 2 · 1023 and 2 · 127 */
    CHECK(nan_h == 2046 && nan_b == 254, "NaN counts %d %d", nan_h, nan_b);
    printf("%-30s all 65536 f16 and bf16 patterns round-trip (%d/%d NaN patterns stay NaN): %s\n", "widen/narrow",
           nan_h, nan_b, failures ? "FAIL" : "OK");
}

static void test_rounding(void)
{
    int bad = 0;
    const float special[] = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e-8f, 2.9802322e-8f,
                             5.96e-8f, 6.1035156e-5f, 6.1e-5f, 1.0009765625f, 1.00048828125f, 1.00390625f,
                             1.01171875f, 3.4028235e38f, 3.3961776e38f, INFINITY, -INFINITY};
    int n_special = (int)(sizeof special / sizeof *special);
    for (uint32_t i = 0; i < (1u << 20) + (uint32_t)n_special; i++) {
        float f = i < (uint32_t)n_special ? special[i] : float_of(i * 4099u * 1031u + 12345u);
        if (isnan(f))
            continue;
        float h = rt_f16_to_f32(rt_f32_to_f16(f)), b = rt_bf16_to_f32(rt_f32_to_bf16(f));
        double wh = ir_round_to(DT_F16, f), wb = ir_round_to(DT_BF16, f);
        if ((double)h != wh || (double)b != wb || signbit(h) != signbit(f)) {
            if (bad++ < 10)
                fprintf(stderr, "%.9g: f16 %.9g (want %.9g), bf16 %.9g (want %.9g)\n", f, h, wh, b, wb);
        }
    }
    CHECK(bad == 0, "%d values rounded unlike ir_round_to", bad);
    printf("%-30s %d values (every exponent, ties, overflow) equal ir_round_to: %s\n", "f32 -> f16, f32 -> bf16",
           (1 << 20) + n_special, bad ? "FAIL" : "OK");
}

static void test_plan(void)
{
    rt_plan p = {0};
    rt_plan_buffer bufs[3] = {{NULL, DT_F32, 8, RT_BUF_INPUT, 0}, {NULL, DT_F32, 8, RT_BUF_PARAM, 0},
                              {NULL, DT_F32, 4, RT_BUF_OUTPUT, 0}};
    rt_plan_step step;
    memset(&step, 0, sizeof step);
    step.kind = RT_STEP_GEMM;
    step.gemm.a = (rt_plan_ref){0, 0};
    step.gemm.b = (rt_plan_ref){1, 0};
    step.gemm.c = (rt_plan_ref){2, 0};
    step.gemm.bias = (rt_plan_ref){-1, 0};
    p.bufs = bufs, p.n_bufs = 3, p.steps = &step, p.n_steps = 1;
    CHECK(rt_plan_half_library(&p) == DT_VOID, "an f32 plan has half library steps");
    bufs[1].dtype = DT_BF16;
    CHECK(rt_plan_half_library(&p) == DT_BF16, "a bf16 B operand missed");
    bufs[1].dtype = DT_F32;
    bufs[2].dtype = DT_F16;
    CHECK(rt_plan_half_library(&p) == DT_F16, "an f16 result missed");
    step.kind = RT_STEP_COPY; /* half buffers of other steps do not count */
    CHECK(rt_plan_half_library(&p) == DT_VOID, "a copy step counted");
    printf("%-30s %s\n", "rt_plan_half_library", failures ? "FAIL" : "OK");
}

int main(void)
{
    test_patterns();
    test_rounding();
    test_plan();
    return failures ? 1 : 0;
}
