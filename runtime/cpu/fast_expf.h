/* fast_expf.h — e^x for f32 as an inline branch-free polynomial, shared by the CPU attention
 * routines (attention_cpu.c, attention_grad_cpu.c) so that their inner loops vectorize
 * without -ffast-math. */
#ifndef LOOM_RT_FAST_EXPF_H
#define LOOM_RT_FAST_EXPF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

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

/* Eight lanes at once with GCC/clang vector extensions (one AVX register, two SSE ones): the
 * same operations in the same order as rt_fast_expf, so each lane is bit-identical to it. The
 * attention loops use these where a scalar loop would not vectorize (in-order sums, selects).
 * Vectors go through pointers, never by value: no ABI question in builds without AVX. */
typedef float rt_v8f __attribute__((vector_size(32)));
typedef int32_t rt_v8i __attribute__((vector_size(32)));

#define RT_V8F_SPLAT(x) ((rt_v8f){(x), (x), (x), (x), (x), (x), (x), (x)})
/* lane-wise mask ? a : b (mask lanes all ones or all zeros, as comparisons give) */
#define RT_V8F_SELECT(mask, a, b) ((rt_v8f)(((mask) & (rt_v8i)(a)) | (~(mask) & (rt_v8i)(b))))

/* *acc = lane-wise max(p[0..8), *acc), as acc > p ? acc : p */
static inline void rt_max8(const float *p, rt_v8f *acc)
{
    rt_v8f x;
    memcpy(&x, p, sizeof x);
    *acc = RT_V8F_SELECT(x > *acc, x, *acc);
}

/* p[0..8) = e^(p - sub) lane by lane; *sum += the results */
static inline void rt_exp8_sub(float *p, float sub, rt_v8f *sum)
{
    rt_v8f x, lo = RT_V8F_SPLAT(-87.0f), hi = RT_V8F_SPLAT(88.0f);
    memcpy(&x, p, sizeof x);
    x -= sub;
    rt_v8f xc = RT_V8F_SELECT(x < lo, lo, RT_V8F_SELECT(x > hi, hi, x));
    rt_v8f t = xc * 1.44269504088896341f + 0.5f;
    rt_v8i ti = __builtin_convertvector(t, rt_v8i);  /* toward zero ... */
    ti += (__builtin_convertvector(ti, rt_v8f) > t); /* ... then floor: -1 where above t */
    rt_v8f n = __builtin_convertvector(ti, rt_v8f);
    rt_v8f r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    rt_v8f y = RT_V8F_SPLAT(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    rt_v8f s = (rt_v8f)((ti + 127) << 23);
    x = RT_V8F_SELECT(x < lo, RT_V8F_SPLAT(0.0f), y * s);
    memcpy(p, &x, sizeof x);
    *sum += x;
}

#endif
