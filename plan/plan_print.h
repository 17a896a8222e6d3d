/* plan_print.h — the text form of an execution plan (plan.h), for `loom dump --emit=plan` and
 * the lowering tests (tests/lit/lower). Pure data → text: one line per buffer, then one line per
 * step, every field of the step named, in a fixed order, e.g.
 *
 *   plan arena=256 {
 *     b0 = param "w" f32[64]
 *     b1 = input "x" f32[32]
 *     b2 = activation "%2 add" f32[32] bytes=128 offset=0
 *     b3 = output "y" f32[32]
 *     step 0 kernel k0_add(b1, b0, b2) grid=32 work=3
 *     step 1 gemm a=b2 b=b0 c=b3 bias=none M=4 N=16 K=8 trans_a=0 trans_b=0 lda=8 ldb=16 ldc=16 alpha=1 beta=0 act=none
 *   }
 *
 * A buffer reference is bN, or bN+E for element E of buffer N; "none" where a step has none
 * (buf -1). Sizes are element counts (bytes= and offset= in bytes, activations only); floats
 * print in the shortest form that reads back the same (%.17g trimmed). The form is stable:
 * a field is only ever added at the end of its line. It is not parsed back (plan files are
 * plan_io.h's binary form).
 */
#ifndef LOOM_RT_PLAN_PRINT_H
#define LOOM_RT_PLAN_PRINT_H

#include <stdio.h>

#include "plan/plan.h"

/* "param", "input", "output", "activation", "constant". */
const char *rt_plan_buf_kind_name(rt_buf_kind k);
/* "kernel", "gemm", "attention", "copy", "check_ids", "write_rows", "attention_grad",
 * "scatter_add", "sum_rows". */
const char *rt_plan_step_kind_name(rt_step_kind k);
/* "none", "gelu_tanh", "gelu_erf", "relu", "silu"; "?" for anything else. */
const char *rt_plan_act_name(int act);

/* Writes p's text form (above) to out. Never fails, even on a plan that does not validate
 * (a reference out of range prints as it is). */
void rt_plan_print(const rt_plan *p, FILE *out);

#endif
