/* half.h — f16 (IEEE binary16) and bf16 values as 16-bit patterns, converted to and from f32:
 * widening is exact, narrowing rounds to nearest even (overflow to ±inf, NaN stays NaN), the
 * same rounding as the kernel IR's half stores and the reference interpreter's ir_round_to.
 * The CPU executor uses it for the library steps (GEMM, attention) of half buffers, which
 * compute in f32 (docs/backend.md, "Precision").
 */
#ifndef LOOM_RT_HALF_H
#define LOOM_RT_HALF_H

#include <stdint.h>

#include "ir/ir.h"
#include "plan/plan.h"

float rt_f16_to_f32(uint16_t h);
uint16_t rt_f32_to_f16(float f);
float rt_bf16_to_f32(uint16_t b);
uint16_t rt_f32_to_bf16(float f);

/* n elements of dtype dt (DT_F16 or DT_BF16) at src into f32 at dst, and back. */
void rt_half_widen(ir_dtype dt, const void *src, float *dst, int64_t n);
void rt_half_narrow(ir_dtype dt, const float *src, void *dst, int64_t n);

/* The dtype (DT_F16 or DT_BF16) of the first half buffer that a GEMM or attention step of p
 * reads or writes, else DT_VOID: device executors whose library calls are f32 only refuse
 * such plans with a clear error. */
ir_dtype rt_plan_half_library(const rt_plan *p);

#endif
