/* pass.h — graph passes and the pass manager.
 *
 * A pass rewrites a graph in place (it may drop nodes with ir_graph_compact) and reports user
 * errors through the diag; it returns false on error. Each pass lives in passes/NAME.c and
 * exports pass_NAME. The registry in pass.c names every pass (with dashes, e.g.
 * "lower-precision"); pass_run_pipeline runs a comma-separated list of them with the verifier
 * between passes, and can print the IR after one pass (--after) or time them (--time-passes).
 */
#ifndef LOOM_PASS_H
#define LOOM_PASS_H

#include <stdbool.h>

#include "ir/ir.h"

typedef bool (*pass_fn)(ir_graph *g, ir_diag *d);
/* A pass that needs the device mesh and this rank (passes/mesh.h: shard, pipeline). */
struct pass_mesh;
typedef bool (*pass_mesh_fn)(ir_graph *g, const struct pass_mesh *m, ir_diag *d);

typedef struct {
    const char *name;        /* as written in --passes, e.g. "dce" */
    pass_fn fn;
    const char *description; /* one line for --help and error messages */
} pass_info;
/* The mesh function of a mesh pass (its registry fn only reports that it needs --mesh), or NULL. */
pass_mesh_fn pass_mesh_function(const pass_info *p);

typedef struct {
    const char *after;  /* print the IR to stdout after the first run of this pass and stop */
    bool time_passes;   /* print per-pass wall times to stderr at the end */
    bool verify_each;   /* run ir_verify on the input and after each pass */
    const struct pass_mesh *mesh; /* --mesh/--rank for the mesh passes; NULL: a single device */
    ir_dtype precision; /* lower-precision's half type (DT_BF16, DT_F16); DT_VOID: none given */
    bool f32_library;   /* the target's GEMM and attention steps take f32 operands only (the
                           device executors): lower-precision leaves them in f32 */
    /* called after each pass with its name and its start and end on the pipeline's clock
     * (monotonic milliseconds; --profile's compile slices); NULL: none */
    void (*on_pass)(void *ctx, const char *pass, double start_ms, double end_ms);
    void *on_pass_ctx;
} pass_options;

/* Default options: nothing printed, verify_each on. */
pass_options pass_options_default(void);

/* The registry: *n receives the number of passes. */
const pass_info *pass_list(int *n);
/* Looks a pass up by name; NULL if none. */
const pass_info *pass_lookup(const char *name);

/* Comma-separated list of the passes `loom dump --after` and the compile pipeline run. */
const char *pass_default_pipeline(void);
/* The pipeline under a mesh: "pipeline,shard," then the default one. */
const char *pass_mesh_pipeline(void);
/* The pipeline of a training step's gradient program ("dce,cse,autodiff,dce,cse,fuse"); `loom
 * dump --after=PASS` uses it when PASS is in it but not in the default pipeline. */
const char *pass_training_pipeline(void);
/* A training step's gradients before fusion: "dce,cse,autodiff,dce,cse". */
const char *pass_gradient_pipeline(void);
/* The same on one rank of a mesh with tp or pp: autodiff on the whole model, then the pipeline
 * and shard passes, so the backward is split like the forward. */
const char *pass_mesh_gradient_pipeline(void);

/* Runs the passes named in names_csv ("" = none) over g, in order. An unknown name, an
 * opt->after that is not in the list, a failing pass or (with verify_each) a verifier failure
 * is reported through d and makes it return false; nothing runs when the list is invalid.
 * With opt->after, the IR is printed after that pass and the remaining passes are skipped. */
bool pass_run_pipeline(ir_graph *g, const char *names_csv, const pass_options *opt, ir_diag *d);

/* ---- the passes ---- */
/* dce: removes nodes whose results reach no output; inputs and params always stay. */
bool pass_dce(ir_graph *g, ir_diag *d);
/* cse: merges identical pure nodes (same op, operands, attributes, type, shard, stage). */
bool pass_cse(ir_graph *g, ir_diag *d);
/* autodiff: adds the backward graph of the scalar output "loss" and an output "grad/<name>"
 * per param (passes/autodiff.c). */
bool pass_autodiff(ir_graph *g, ir_diag *d);
/* recompute, recompute-selective: the backward reads block activations recomputed from the
 * saved block inputs (selective: GEMM and attention results saved too) (passes/recompute.c). */
bool pass_recompute(ir_graph *g, ir_diag *d);
bool pass_recompute_selective(ir_graph *g, ir_diag *d);
/* fuse: sets node->group: which plan step computes each value (see fuse.h). */
bool pass_fuse(ir_graph *g, ir_diag *d);
/* lower-precision: activations and GEMM/attention operands in half (DT_BF16 or DT_F16),
 * reductions, params and outputs in their declared f32 (passes/lower_precision.c). In a
 * pipeline it is written "lower-precision=bf16" / "=fp16", or bare with pass_options.precision.
 * f32_library: GEMMs and attention stay in f32 (their half operands widened by casts, their
 * results rounded where a half op reads them), for targets whose library steps take f32 only. */
bool pass_lower_precision(ir_graph *g, ir_dtype half, bool f32_library, ir_diag *d);
/* half-params (after lower-precision, graphs without gradients): a float param read only
 * through its cast to the half type becomes a param of that type (passes/half_params.c). */
bool pass_half_params(ir_graph *g, ir_diag *d);
/* quantize (passes/quantize.c, docs/compression.md): each listed param P f32 [R, C] becomes
 * params P.qweight (i8 [R, C], or u8 [R, C/2] at 4 bits) and P.scales (scale_dtype, [groups, C]
 * for axis 0 or [R, groups] for axis 1) and a dequantize in P's place. A listed param that is
 * no float matrix, or whose groups do not divide the axis, is reported by name. */
#define PASS_QWEIGHT_SUFFIX ".qweight"
#define PASS_QSCALES_SUFFIX ".scales"
typedef struct {
    const char *name;   /* the param's external name */
    int bits;           /* 8 or 4 */
    int axis;           /* the axis the groups run along (the matmul's reduction axis) */
    int64_t groups;     /* scales along that axis (1: one scale per output channel) */
    ir_dtype scale_dtype; /* DT_F16 or DT_F32 */
} pass_qparam;
bool pass_quantize_params(ir_graph *g, const pass_qparam *q, int n, ir_diag *d);
/* quantize-int8, quantize-int4: every GEMM weight (a rank-2 param used only as matmul's second
 * operand) per output channel at 8 bits, in groups of 32 along the reduction at 4 bits. */
bool pass_quantize_int8(ir_graph *g, ir_diag *d);
bool pass_quantize_int4(ir_graph *g, ir_diag *d);
/* distill (passes/distill.c, docs/compression.md): g's output "loss" = cross_entropy(zs, targets)
 * becomes alpha · CE + (1 − alpha) · T² · KL(softmax(zt/T) ‖ softmax(zs/T)) (KL's mean over
 * positions), zt the output "logits" of teacher, whose forward is copied into g reading g's
 * "tokens", its params made inputs "teacher/NAME" (no gradient). Reported: a student without
 * that loss, a teacher without logits of zs's type or with other inputs, alpha outside [0, 1],
 * T <= 0. */
bool pass_distill(ir_graph *g, const ir_graph *teacher, double alpha, double temperature, ir_diag *d);
/* "dce,cse,lower-precision,half-params,fuse": the default pipeline at a half precision (what
 * `loom run` and `loom build` compile). */
const char *pass_precision_pipeline(void);
/* The training pipeline at a half precision (half DT_BF16 or DT_F16): autodiff first, so that
 * the backward's reductions (norm and loss gradients, scatter-adds, attention backward) stay
 * f32 while its GEMMs run in half: "dce,cse,autodiff,lower-precision=bf16,dce,cse,fuse". */
const char *pass_training_precision_pipeline(ir_dtype half);

#endif
