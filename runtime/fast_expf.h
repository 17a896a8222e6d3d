/* fast_expf.h — e^x for f32 as an inline branch-free polynomial, shared by the CPU attention
 * routines (attention_cpu.c, attention_grad_cpu.c) so that their inner loops vectorize
 * without -ffast-math. */
#ifndef LOOM_RT_FAST_EXPF_H
#define LOOM_RT_FAST_EXPF_H

#include <math.h>
#include <stdint.h>

/* Cephes expf: range reduction by n = round(x log2 e), degree-6 polynomial; within a few ulp.
 * x <= -88 gives 0 (through the clamp and the 2^n scale); NaN is not expected (scores are
 * finite or -inf). */
static inline float rt_fast_expf(float x)
{
    float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s = {.i = ((int32_t)n + 127) << 23};
    return x < -87.0f ? 0.0f : y * s.f;
}

#endif
