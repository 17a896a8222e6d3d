/* emit.h — `loom dump --emit=STAGE`: each stage of lowering as text, so that the pipeline, the
 * lowering, the memory plan and every renderer can be tested from a .lir or .loom file
 * (tests/lit/lower, tests/lit/ptx, tests/lit/opencl; docs/backend.md).
 *
 * Stages, in lowering order:
 *   graph    the graph IR as loaded (loom dump's default; --after/--passes apply as before)
 *   fused    the graph after the pipeline, fuse groups visible (`group N`)
 *   plan     the execution plan after memory planning (plan/plan_print.h)
 *   kir      the kernel IR of every kernel, in step order (codegen/kir.h's text form)
 *   ll       the host LLVM IR of the kernels after the O3 pipeline (what the CPU backend JITs)
 *   ptx      the PTX module the CUDA backend loads (plus the fused attention kernels when the
 *            plan has an attention step), each kernel's launch geometry first as a comment
 *   ptx-ll   the nvptx64 LLVM IR behind that PTX
 *   cl       the OpenCL C the OpenCL backend builds (the executor's ABI with element offsets,
 *            cg_opencl_source_offsets), each kernel's launch geometry first as a comment
 * The pipeline is --passes (which must end with fuse for the stages after `fused`), else the
 * one a program compiles with: dce,cse,fuse; with lower-precision at a half --precision; with
 * autodiff first under --train (the gradient program of a training step).
 */
#ifndef LOOM_ENGINE_EMIT_H
#define LOOM_ENGINE_EMIT_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/options.h"
#include "ir/diag.h"
#include "ir/ir.h"

typedef enum {
    ENG_EMIT_GRAPH,
    ENG_EMIT_FUSED,
    ENG_EMIT_PLAN,
    ENG_EMIT_KIR,
    ENG_EMIT_LL,
    ENG_EMIT_PTX,
    ENG_EMIT_PTX_LL,
    ENG_EMIT_CL,
} eng_emit_stage;

typedef struct {
    const char *cmd;       /* the command, for messages ("dump") */
    eng_emit_stage stage;
    const char *pipeline;  /* comma-separated passes; NULL: the compile pipeline (above) */
    ir_dtype half;         /* DT_BF16 or DT_F16: lower-precision's type; DT_VOID: f32 */
    bool train;            /* the training step's gradient program (autodiff) */
    bool time_passes;      /* --time-passes: the pipeline's pass times on stderr */
    bool generic_cpu;      /* ll: tuned for a generic CPU of this architecture */
    int sm;                /* ptx, ptx-ll: compute capability × 10; 0: the CUDA backend's */
} eng_emit_options;

/* The emit options of `loom CMD` from o: --emit (absent: graph), --sm, --passes, --precision,
 * --train, --time-passes, --generic-cpu. Reports a bad value or a combination that makes no
 * sense (--after or --mesh with a stage after graph, --precision f64 where it lowers, --sm
 * without ptx) as "CMD: ..." and returns false. */
bool eng_emit_options_get(const eng_opts *o, const char *cmd, eng_emit_options *eo, ir_diag *d);

/* Writes stage eo->stage of g to out. g is not changed (a clone goes through the pipeline).
 * A graph that does not lower, or a kernel a renderer cannot render, is reported through d
 * (nothing is written then); returns false. */
bool eng_emit(const ir_graph *g, const eng_emit_options *eo, FILE *out, ir_diag *d);

#endif
