/* lower.h — lowering a fused graph (after passes/fuse.c) to an execution plan
 * (plan/plan.h) and the kernel IR of its kernels (kir.h).
 *
 * Every group becomes one plan step (two for cross_entropy: per-row losses, then their mean),
 * plus CHECK_IDS steps before gathers and COPY steps for outputs that are params, inputs or a
 * value already output under another name. Each stored value gets a plan buffer (an output
 * buffer when an output names it, else an activation); params and inputs are buffers bound by
 * name. Kernels are named "k<step>_<op>" (a GEMM step's epilogue kernel, which applies its bias
 * and activation to C in place, "k<step>_<op>_epilogue") and built with index expressions over the buffers
 * (see docs/backend.md); library steps read inlined layout chains as strided views.
 * Activation offsets are not set here: run pass_plan_memory on the plan afterwards.
 */
#ifndef LOOM_CG_LOWER_H
#define LOOM_CG_LOWER_H

#include <stdbool.h>

#include "plan/plan.h"
#include "ir/diag.h"
#include "ir/ir.h"
#include "codegen/kir.h"

typedef struct {
    rt_plan plan;
    int n_kernels;
    cg_kernel **kernels;   /* the plan's kernels, in step order */
} cg_lowered;

/* Lowers fused graph g (every node's group set by pass_fuse; node ids compact). f32 compute:
 * a graph with f64 values is rejected, as are ops or shapes the CPU path does not handle,
 * with an error naming the node. On failure *out is empty. */
bool cg_lower(const ir_graph *g, cg_lowered *out, ir_diag *d);
void cg_lowered_free(cg_lowered *l);

#endif
