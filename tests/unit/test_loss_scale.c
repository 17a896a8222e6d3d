/* test_loss_scale.c — dynamic loss scaling (engine/loss_scale.h) step by step: the start at
 * 2^16; a step with inf or NaN gradients skipped and the scale halved; doubling after exactly
 * 2000 good steps in a row (an overflow restarts the count); the floor and the ceiling;
 * unscaling exact and spotting +inf, -inf and NaN. Then a simulated fp16 run: a gradient of
 * magnitude 1.5 scaled and rounded to fp16 (runtime/half.h) overflows at 2^16 (98304 > 65504),
 * so the scale settles to 2^15 and every 2001st step the growth overflows and is skipped. */
#include <math.h>
#include <string.h>

#include "runtime/half.h"
#include "engine/loss_scale.h"
#include "test_check.h"

static void test_schedule(void)
{
    rt_loss_scale s = rt_loss_scale_default();
    CHECK(s.scale == 65536.0, "starts at %g", s.scale);
    CHECK(!rt_loss_scale_update(&s, false), "an overflowing step is applied");
    CHECK(s.scale == 32768.0 && s.skipped == 1, "after an overflow: scale %g, skipped %lld", s.scale, (long long)s.skipped);
    for (int i = 0; i < 1999; i++)
        CHECK(rt_loss_scale_update(&s, true), "good step %d skipped", i);
    CHECK(s.scale == 32768.0, "grew after 1999 good steps: %g", s.scale);
    CHECK(rt_loss_scale_update(&s, true), "the 2000th good step skipped");
    CHECK(s.scale == 65536.0, "not doubled after 2000 good steps: %g", s.scale);
    /* an overflow in the middle restarts the count */
    for (int i = 0; i < 1500; i++)
        rt_loss_scale_update(&s, true);
    rt_loss_scale_update(&s, false);
    CHECK(s.scale == 32768.0, "halved: %g", s.scale);
    for (int i = 0; i < 1999; i++)
        rt_loss_scale_update(&s, true);
    CHECK(s.scale == 32768.0, "the count was not restarted: %g", s.scale);
    rt_loss_scale_update(&s, true);
    CHECK(s.scale == 65536.0, "not doubled: %g", s.scale);
    CHECK(s.steps == 1 + 2000 + 1501 + 2000 && s.skipped == 2, "steps %lld skipped %lld", (long long)s.steps,
          (long long)s.skipped);
    /* floor: 17 halvings reach 1 and stay there; the steps are still skipped */
    for (int i = 0; i < 40; i++)
        CHECK(!rt_loss_scale_update(&s, false), "an overflow at scale %g applied", s.scale);
    CHECK(s.scale == 1.0, "floor: %g", s.scale);
    /* ceiling: 2^24 */
    s = rt_loss_scale_default();
    for (int i = 0; i < 2000 * 20; i++)
        rt_loss_scale_update(&s, true);
    CHECK(s.scale == 16777216.0, "ceiling: %g", s.scale);
    printf("%-34s start 65536, skip+halve, x2 after 2000, floor 1, ceiling 2^24: %s\n", "schedule",
           failures ? "FAIL" : "OK");
}

static void test_unscale(void)
{
    rt_loss_scale s = rt_loss_scale_default();
    float g[4] = {65536.0f, -3.0f, 1.0f, 0.0f};
    CHECK(rt_loss_scale_unscale(&s, g, 4), "finite gradients reported non-finite");
    CHECK(g[0] == 1.0f && g[1] == -3.0f / 65536.0f && g[2] == 1.0f / 65536.0f && g[3] == 0.0f,
          "unscaled to %g %g %g %g", g[0], g[1], g[2], g[3]);
    const float bad[3] = {INFINITY, -INFINITY, NAN};
    for (int k = 0; k < 3; k++) {
        float h[5] = {1, 2, 3, 4, 5};
        h[k + 1] = bad[k];
        CHECK(!rt_loss_scale_unscale(&s, h, 5), "%g not spotted", bad[k]);
    }
    printf("%-34s exact, +inf/-inf/NaN spotted: %s\n", "unscale", failures ? "FAIL" : "OK");
}

/* fp16 gradients of scale · loss for a true gradient of 1.5: overflow when 1.5 · scale > 65504. */
static void test_fp16_run(void)
{
    rt_loss_scale s = rt_loss_scale_default();
    int applied = 0, skipped_at_growth = 0;
    for (int step = 0; step < 10000; step++) {
        float g = rt_f16_to_f32(rt_f32_to_f16(1.5f * (float)s.scale));
        double before = s.scale;
        bool finite = rt_loss_scale_unscale(&s, &g, 1);
        if (rt_loss_scale_update(&s, finite)) {
            applied++;
            CHECK(g == 1.5f, "step %d: unscaled gradient %g", step, g);
        } else {
            skipped_at_growth += before == 65536.0;
        }
    }
    /* step 0 overflows at 2^16; then 2000 good steps at 2^15, growth, overflow, ... */
    CHECK(s.skipped == 5 && skipped_at_growth == 5 && applied == 9995, "skipped %lld (%d at 2^16), applied %d",
          (long long)s.skipped, skipped_at_growth, applied);
    CHECK(s.scale == 32768.0 || s.scale == 65536.0, "scale %g", s.scale);
    printf("%-34s 10000 steps: %lld skipped (each at 2^16), %d applied, unscaled exactly: %s\n", "simulated fp16 run",
           (long long)s.skipped, applied, failures ? "FAIL" : "OK");
}

int main(void)
{
    test_schedule();
    test_unscale();
    test_fp16_run();
    return failures ? 1 : 0;
}
