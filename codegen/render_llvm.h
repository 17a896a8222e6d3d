/* render_llvm.h — LLVM-level interface of the LLVM renderers, shared by render_llvm.c (host),
 * render_nvptx.c (nvptx64 → PTX) and jit.c. Only codegen/ includes this file; everything else
 * uses codegen.h.
 *
 * The two LLVM renderers differ in how they map the grid and the loops (a loop nest on the
 * host; threads, blocks, shuffles and barriers on the GPU) and in their math; everything a
 * node computes per value — loads and stores with their storage conversions (f16, bf16, u8),
 * casts, integer and float arithmetic, comparisons, select, reduce identities and combiners —
 * is emitted by the shared code below, driven by the kernel IR's op classes. A target's math
 * is a table (cg_llvm_math) of emitters per op and float type; an entry a target lacks is
 * NULL, and cg_llvm_math_check reports such a kernel as an error before rendering (never a
 * silent fallback).
 */
#ifndef LOOM_RENDER_LLVM_H
#define LOOM_RENDER_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen/codegen.h"

/* ---- shared per-node emission (render_llvm.c) ------------------------------------------- */
typedef struct cg_llvm_emitter cg_llvm_emitter;

/* Emits op on x (and y for pow) of float type t. */
typedef LLVMValueRef (*cg_llvm_math_fn)(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y);

/* A target's float math: fn[op][0] for f32, fn[op][1] for f64, for the ops whose lowering is
 * target-specific: exp, log, rsqrt, tanh, erf, sin, cos, pow. NULL: the target cannot lower
 * op at that type. Everything else (neg, abs, sqrt, recip, add, max, ...) is shared; sigmoid
 * is 1/(1+exp(-x)) with the table's exp. */
typedef struct {
    const char *target; /* for diagnostics: "host", "nvptx" */
    cg_llvm_math_fn fn[CG_OP_COUNT][2];
} cg_llvm_math;

extern const cg_llvm_math cg_llvm_math_host;      /* inline f32 exp/tanh, libm for the rest */
extern const cg_llvm_math cg_llvm_math_host_libm; /* cg_host_options.libm_math */

/* Rendering state of one kernel, filled by a renderer: the builder is positioned where the
 * node goes; pidx/lidx/arg hold the values of the leaves. */
struct cg_llvm_emitter {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const cg_kernel *k;
    const cg_llvm_math *math;
    LLVMTypeRef ty[CG_TYPE_COUNT]; /* value types: void i1 i32 i64 float double */
    LLVMValueRef fn;               /* the function being built */
    LLVMValueRef *arg;             /* per kernel arg: buffer pointer or scalar i64 */
    LLVMValueRef *val;             /* per node */
    LLVMValueRef pidx[CG_MAX_DIMS], lidx[CG_MAX_LOOPS];
};

/* Sets ctx, mod, math and the value types, and creates the builder (freed by
 * cg_llvm_emitter_dispose). */
void cg_llvm_emitter_init(cg_llvm_emitter *e, LLVMContextRef ctx, LLVMModuleRef mod, const cg_llvm_math *math);
void cg_llvm_emitter_dispose(cg_llvm_emitter *e);

/* Reports each node of k whose op m cannot lower ("kernel K: %N: f64 exp has no nvptx
 * lowering"); false if any. */
bool cg_llvm_math_check(const cg_kernel *k, const cg_llvm_math *m, ir_diag *d);

/* Emits node i of e->k at the builder and sets e->val[i]. Leaves read e->pidx, e->lidx and
 * e->arg; a reduce is not emitted here (its loop sets its value). Buffer pointers may be in
 * any address space. */
void cg_llvm_emit_node(cg_llvm_emitter *e, int i);

/* One grid point of a sequential kernel (kir.h, "Sequential kernels") at the builder, with
 * e->pidx set: slot by slot, each loop a counted loop (guarded when it has a bound) whose
 * carries are phis, nested as the kernel nests them. Shared by the host and NVPTX renderers:
 * on both a grid point of a sequential kernel is one thread's straight-line code and loops. */
void cg_llvm_emit_seq_point(cg_llvm_emitter *e);

/* The identity of a reduce combiner at type t, and acc (op) v. Float combines carry reassoc. */
LLVMValueRef cg_llvm_red_identity(cg_llvm_emitter *e, cg_red red, cg_type t);
LLVMValueRef cg_llvm_red_combine(cg_llvm_emitter *e, cg_red red, cg_type t, LLVMValueRef acc, LLVMValueRef v);

/* Building blocks for target math tables. cg_llvm_call_intrinsic calls intrinsic NAME,
 * overloaded at types tys[0..ntys) (ntys 0 for a non-overloaded one). */
LLVMValueRef cg_llvm_call_intrinsic(cg_llvm_emitter *e, const char *name, LLVMTypeRef *tys, unsigned ntys,
                                    LLVMValueRef *args, unsigned n);
LLVMValueRef cg_llvm_fconst(cg_llvm_emitter *e, cg_type t, double v);
LLVMValueRef cg_llvm_fadd(cg_llvm_emitter *e, LLVMValueRef x, LLVMValueRef y); /* contract */
LLVMValueRef cg_llvm_fmul(cg_llvm_emitter *e, LLVMValueRef x, LLVMValueRef y); /* contract */
/* select(x < lo, lo, select(x > hi, hi, x)) for f32: a clamp that lets NaN through. */
LLVMValueRef cg_llvm_clamp_keep_nan(cg_llvm_emitter *e, LLVMValueRef x, double lo, double hi);
/* Straight-line f32 approximations (no calls, no tables): tanh (Eigen's rational 13/6, max
 * rel err 2.4e-7), erf (Eigen's rational 13/8 on [-4, 4], saturating to +-1 from |x| >= 3.85
 * where erf rounds to +-1; max rel err 3.2e-7). */
LLVMValueRef cg_llvm_tanh_f32(cg_llvm_emitter *e, LLVMValueRef x);
LLVMValueRef cg_llvm_erf_f32(cg_llvm_emitter *e, LLVMValueRef x);

/* Initializes LLVM's native target once (idempotent), and creates a target machine for this
 * host: its triple, and unless o->generic_cpu its CPU name and features; PIC, default code
 * model. NULL on error. Dispose with LLVMDisposeTargetMachine. */
LLVMTargetMachineRef cg_llvm_host_machine(const cg_host_options *o, ir_diag *d);

/* Renders kernels ks[0..n) (each must pass cg_kernel_validate) into a new module in ctx, with
 * tm's triple, data layout, CPU and features, and o's math choice; the module is verified.
 * NULL on error. */
LLVMModuleRef cg_llvm_render_host(LLVMContextRef ctx, cg_kernel *const *ks, int n,
                                  LLVMTargetMachineRef tm, const cg_host_options *o, ir_diag *d);

/* Runs default<O{opt_level}> (loop and SLP vectorization on) over m; nothing for level 0. */
bool cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, int opt_level, ir_diag *d);

/* Validates ks, then creates a target machine, renders and optimizes into ctx: the steps every
 * host consumer (text, object, JIT) shares. On success *tm and the returned module are the
 * caller's. */
LLVMModuleRef cg_llvm_build_host(LLVMContextRef ctx, cg_kernel *const *ks, int n,
                                 const cg_host_options *o, LLVMTargetMachineRef *tm, ir_diag *d);

#endif
