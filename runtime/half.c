/* half.c — f16/bf16 ↔ f32 conversions by bit manipulation (half.h). */
#include "runtime/half.h"

#include <string.h>

static uint32_t bits_of(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static float float_of(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* f16: every case computed and the result picked with masks (no branches), so that the loops
 * below vectorize (inlined there: a call would not). */
static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu;
    uint32_t normal = (em << 13) + 0x38000000u;                    /* rebias 15 → 127 */
    uint32_t sub = bits_of((float)(int32_t)em * 0x1p-24f);         /* em · 2^-24, exact */
    uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);        /* inf, NaN (payload kept) */
    uint32_t is_sub = 0u - (uint32_t)(em < 0x400u), is_special = 0u - (uint32_t)(em >= 0x7c00u); /* masks */
    uint32_t mag = (sub & is_sub) | (special & is_special) | (normal & ~(is_sub | is_special));
    return float_of(sign | mag);
}

float rt_f16_to_f32(uint16_t h) { return f16_to_f32(h); }

static inline uint16_t f32_to_f16(float f)
{
    uint32_t x = bits_of(f), ax = x & 0x7fffffffu;
    uint32_t sign = (x >> 16) & 0x8000u;
    /* normal results: 13 mantissa bits dropped, rounded to nearest even (a carry may step
     * into the exponent, which is right) */
    uint32_t r = ax - 0x38000000u;
    uint32_t normal = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
    /* below 2^-14: adding 0.5 leaves a multiple of 2^-24 rounded by the FPU (ties even); its
     * count is the subnormal's bits (1024 = 2^-14, the smallest normal, encodes the same) */
    uint32_t sub = bits_of(float_of(ax) + 0.5f) - 0x3f000000u;
    uint32_t nan = 0x7e00u | ((ax >> 13) & 0x3ffu);                 /* quiet, top payload bits */
    /* masks: NaN; >= 65520 (the tie above 65504 goes up) or inf; below 2^-14 */
    uint32_t is_nan = 0u - (uint32_t)(ax > 0x7f800000u);
    uint32_t is_inf = ~is_nan & (0u - (uint32_t)(ax >= 0x477ff000u));
    uint32_t is_sub = 0u - (uint32_t)(ax < 0x38800000u);
    uint32_t h = (nan & is_nan) | (0x7c00u & is_inf) | (sub & is_sub) | (normal & ~(is_nan | is_inf | is_sub));
    return (uint16_t)(sign | h);
}

uint16_t rt_f32_to_f16(float f) { return f32_to_f16(f); }

float rt_bf16_to_f32(uint16_t b) { return float_of((uint32_t)b << 16); }

uint16_t rt_f32_to_bf16(float f)
{
    uint32_t x = bits_of(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u); /* nearest even; a carry out of the max rounds to inf */
    return (uint16_t)(x >> 16);
}

void rt_half_widen(ir_dtype dt, const void *src, float *dst, int64_t n)
{
    const uint16_t *s = src;
    if (dt == DT_BF16)
        for (int64_t i = 0; i < n; i++)
            dst[i] = rt_bf16_to_f32(s[i]);
    else if (dt == DT_F16)
        for (int64_t i = 0; i < n; i++)
            dst[i] = f16_to_f32(s[i]);
    else
        ir_unreachable("rt_half_widen: not a half dtype");
}

void rt_half_narrow(ir_dtype dt, const float *src, void *dst, int64_t n)
{
    uint16_t *d = dst;
    if (dt == DT_BF16)
        for (int64_t i = 0; i < n; i++)
            d[i] = rt_f32_to_bf16(src[i]);
    else if (dt == DT_F16)
        for (int64_t i = 0; i < n; i++)
            d[i] = f32_to_f16(src[i]);
    else
        ir_unreachable("rt_half_narrow: not a half dtype");
}

static bool half_ref(const rt_plan *p, rt_plan_ref r, ir_dtype *dt)
{
    if (r.buf < 0 || (p->bufs[r.buf].dtype != DT_F16 && p->bufs[r.buf].dtype != DT_BF16))
        return false;
    *dt = p->bufs[r.buf].dtype;
    return true;
}

ir_dtype rt_plan_half_library(const rt_plan *p)
{
    ir_dtype dt = DT_VOID;
    for (int i = 0; i < p->n_steps; i++) {
        const rt_plan_step *s = &p->steps[i];
        if (s->kind == RT_STEP_GEMM) {
            const rt_plan_gemm *g = &s->gemm;
            if (half_ref(p, g->a, &dt) || half_ref(p, g->b, &dt) || half_ref(p, g->c, &dt) || half_ref(p, g->bias, &dt))
                return dt;
        } else if (s->kind == RT_STEP_ATTENTION) {
            const rt_plan_attention *a = &s->attn;
            if (half_ref(p, a->q, &dt) || half_ref(p, a->k, &dt) || half_ref(p, a->v, &dt) ||
                half_ref(p, a->mask, &dt) || half_ref(p, a->out, &dt))
                return dt;
        }
    }
    return DT_VOID;
}
