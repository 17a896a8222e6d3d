/* render_nvptx.c — kernel IR → LLVM IR for nvptx64 → PTX text, through the LLVM 19 C API
 * (NVPTX target: triple nvptx64-nvidia-cuda, CPU sm_80 or sm_90, features +ptx75 / +ptx78).
 *
 * What a node computes is emitted by the code shared with the host renderer (render_llvm.h);
 * this file owns the GPU mapping of kir.h's grid and loops and the GPU math table.
 *
 * Mapping (cg_ptx_launch_dims in codegen.h gives the launch that goes with it; ptx_launch.c,
 * without LLVM, so that a `loom build --target cuda` executable computes it at run time):
 *  - a kernel without loops: one thread per grid point. The global thread id
 *    blockIdx.x·blockDim.x + threadIdx.x is the flattened (row-major) grid point, turned into
 *    grid indices by div/mod by the constant dims (in i32 when the grid has < 2^31 points);
 *    a grid-stride loop (step gridDim.x·blockDim.x) covers points beyond the launch, and its
 *    bounds check retires the tail threads.
 *  - a kernel with loops: one block per grid point (blockIdx.x flattened, grid-stride over
 *    blocks). Every thread computes the even slots (values before, between and after the
 *    loops) redundantly, so they are uniform across the block; a store in an even slot is
 *    executed by thread 0 only. Loop k runs iterations threadIdx.x, +blockDim.x, ... in each
 *    thread; a store inside it is executed by the thread that owns the iteration. A reduce
 *    over loop k is a per-thread accumulator, then a butterfly over the warp
 *    (shfl.sync.bfly), then one value per warp through a static .shared array (one slot per
 *    reduce node and warp), bar.sync, and a second butterfly over the warps' values, so that
 *    every thread holds the block's result (uniform again). A bar.sync ends each grid point
 *    of a kernel with reductions, so the next point's writes to the shared slots cannot
 *    overtake a slow warp's reads. Where an `inout` element loaded by some threads is then
 *    stored by another with no reduction in between, a bar.sync comes first: where
 *    cg_kernel_group_barriers (kir.h) says, the same places render_c.c puts OpenCL's.
 *  Requirements of the code: blockDim.x a multiple of 32 and at most CG_PTX_MAX_BLOCK (256;
 *  the kernel carries .maxntid 256) — the full-warp shuffles and the 8 shared slots per reduce
 *  rely on it; blockDim.y = blockDim.z = 1.
 *
 * Kernel parameters: `ptr addrspace(1) noalias` per buffer (readonly for `in`: loads may use
 * the non-coherent path, ld.global.nc), i64 per scalar; calling convention ptx_kernel, which
 * makes a `.visible .entry`.
 *
 * Math (no libdevice is linked; everything is an NVVM intrinsic or straight-line IR):
 *   f32 exp    ex2.approx(hi) · (1 + lo·ln2) where hi + lo = x·log2(e) exactly (FMA), x
 *              clamped to [-150, 100] (beyond: 0 and inf); rel err ~2 ulp of ex2.approx
 *   f32 log    lg2.approx(x) · ln2 (abs err ~1e-7)
 *   f32 rsqrt  rsqrt.approx (rel err ~2^-23)
 *   f32 tanh, erf  the host's straight-line rational approximations (cg_llvm_tanh_f32, _erf_f32)
 *   f32 sin, cos   sin/cos.approx after a two-constant reduction by 2π (abs err ~1e-6)
 *   f32 pow    ex2(y · lg2|x|), with x < 0: NaN unless y is an integer (odd y: negated);
 *              y = 0: 1
 *   sqrt (f32, f64): sqrt.rn; div: div.rn; f64 rsqrt: 1/sqrt.rn.
 *   f64 sin, cos  reduced by 2π in f64, then the f32 sin/cos.approx (rope's angles; abs err ~1e-6)
 *   f64 pow    2^(y·log2|x|) with an f64 log2 series and an f64 exp2 polynomial (~1e-15 rel)
 *   f64 exp, log, tanh, erf, sigmoid have no lowering: cg_ptx reports them.
 */
#include "codegen/render_llvm.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>

const cg_ptx_options cg_ptx_defaults = {.sm = 80, .ptx = 0, .opt_level = 3};

enum { WARP = 32, MAX_WARPS = CG_PTX_MAX_BLOCK / WARP, ADDR_GLOBAL = 1, ADDR_SHARED = 3 };

/* The number of grid points of k (the product of its dims). */
static int64_t grid_points(const cg_kernel *k)
{
    int64_t p = 1;
    for (int d = 0; d < k->n_dims; d++)
        p *= k->dim[d];
    return p;
}

/* ---- rendering state ------------------------------------------------------------------------ */

typedef struct {
    cg_llvm_emitter e;
    LLVMValueRef tid, ntid;   /* i64 threadIdx.x, blockDim.x */
    LLVMValueRef lane, warp;  /* i32 threadIdx.x % 32, / 32 */
    LLVMValueRef nwarps;      /* i32 blockDim.x / 32 */
    LLVMValueRef shared;      /* [n_red * MAX_WARPS x i64] addrspace(3), or NULL */
    int *red_slot;            /* per node: the reduce's index among the kernel's reduces */
    bool *bar;                /* cg_kernel_group_barriers: a bar.sync before node i / loop l */
} pctx;

static LLVMValueRef i64c(pctx *c, int64_t v) { return LLVMConstInt(c->e.ty[CG_I64], (unsigned long long)v, 1); }
static LLVMValueRef i32c(pctx *c, int64_t v) { return LLVMConstInt(c->e.ty[CG_I32], (unsigned long long)v, 1); }

/* Calls a non-overloaded intrinsic. */
static LLVMValueRef nvvm(cg_llvm_emitter *e, const char *name, LLVMValueRef *args, unsigned n)
{
    return cg_llvm_call_intrinsic(e, name, NULL, 0, args, n);
}

static LLVMValueRef nvvm1(cg_llvm_emitter *e, const char *name, LLVMValueRef x) { return nvvm(e, name, &x, 1); }

static LLVMValueRef sreg(pctx *c, const char *name)
{
    char full[64];
    snprintf(full, sizeof full, "llvm.nvvm.read.ptx.sreg.%s", name);
    return nvvm(&c->e, full, NULL, 0);
}

static LLVMBasicBlockRef new_block(pctx *c, const char *name)
{
    return LLVMAppendBasicBlockInContext(c->e.ctx, c->e.fn, name);
}

static void barrier(pctx *c) { nvvm(&c->e, "llvm.nvvm.barrier0", NULL, 0); }

/* ---- GPU math table -------------------------------------------------------------------------- */

static const double LN2 = 0.693147180559945309;

static LLVMValueRef fma3(cg_llvm_emitter *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMValueRef abc[3] = {a, b, c};
    return cg_llvm_call_intrinsic(e, "llvm.fma", &t, 1, abc, 3);
}

/* 2^(hi + lo) for an f32 hi and a small correction lo: ex2.approx(hi) · (1 + lo·ln2). */
static LLVMValueRef ex2_split(cg_llvm_emitter *e, LLVMValueRef hi, LLVMValueRef lo)
{
    LLVMValueRef corr = fma3(e, lo, cg_llvm_fconst(e, CG_F32, LN2), cg_llvm_fconst(e, CG_F32, 1.0));
    return LLVMBuildFMul(e->b, nvvm1(e, "llvm.nvvm.ex2.approx.f", hi), corr, "");
}

static LLVMValueRef gm_exp(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    const float l2e = 1.44269502162933349609375f;            /* log2(e) rounded to f32 */
    const double l2e_lo = 1.4426950408889634 - (double)l2e;  /* the rest */
    LLVMValueRef xc = cg_llvm_clamp_keep_nan(e, x, -150.0, 100.0);
    LLVMValueRef L = cg_llvm_fconst(e, CG_F32, l2e);
    LLVMValueRef hi = LLVMBuildFMul(e->b, xc, L, ""); /* no contract: lo is its exact error */
    LLVMValueRef lo = fma3(e, xc, L, LLVMBuildFNeg(e->b, hi, ""));
    lo = fma3(e, xc, cg_llvm_fconst(e, CG_F32, l2e_lo), lo);
    return ex2_split(e, hi, lo);
}

static LLVMValueRef gm_log(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    return LLVMBuildFMul(e->b, nvvm1(e, "llvm.nvvm.lg2.approx.f", x), cg_llvm_fconst(e, CG_F32, LN2), "");
}

static LLVMValueRef gm_rsqrt(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    if (t == CG_F32)
        return nvvm1(e, "llvm.nvvm.rsqrt.approx.f", x);
    LLVMTypeRef lt = e->ty[t];
    LLVMValueRef s = cg_llvm_call_intrinsic(e, "llvm.sqrt", &lt, 1, &x, 1);
    return LLVMBuildFDiv(e->b, cg_llvm_fconst(e, t, 1.0), s, "");
}

static LLVMValueRef gm_tanh(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y) { return cg_llvm_tanh_f32(e, x); }
static LLVMValueRef gm_erf(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y) { return cg_llvm_erf_f32(e, x); }

/* x - 2π·rint(x / 2π), with 2π in two parts (the first exact in 8 bits, so k·hi is exact for
 * |k| < 2^16). */
static LLVMValueRef reduce_2pi(cg_llvm_emitter *e, LLVMValueRef x)
{
    const double two_pi = 6.28318530717958647692, hi = 6.28125;
    LLVMTypeRef f = e->ty[CG_F32];
    LLVMValueRef q = LLVMBuildFMul(e->b, x, cg_llvm_fconst(e, CG_F32, 1.0 / two_pi), "");
    LLVMValueRef k = cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &q, 1);
    LLVMValueRef r = fma3(e, LLVMBuildFNeg(e->b, k, ""), cg_llvm_fconst(e, CG_F32, hi), x);
    return fma3(e, LLVMBuildFNeg(e->b, k, ""), cg_llvm_fconst(e, CG_F32, two_pi - hi), r);
}

static LLVMValueRef gm_sin(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    return nvvm1(e, "llvm.nvvm.sin.approx.f", reduce_2pi(e, x));
}

static LLVMValueRef gm_cos(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    return nvvm1(e, "llvm.nvvm.cos.approx.f", reduce_2pi(e, x));
}

static LLVMValueRef gm_pow(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    LLVMTypeRef f = e->ty[CG_F32];
    LLVMBuilderRef b = e->b;
    LLVMValueRef zero = cg_llvm_fconst(e, CG_F32, 0.0), one = cg_llvm_fconst(e, CG_F32, 1.0);
    LLVMValueRef ax = cg_llvm_call_intrinsic(e, "llvm.fabs", &f, 1, &x, 1);
    LLVMValueRef r = nvvm1(e, "llvm.nvvm.ex2.approx.f", LLVMBuildFMul(b, y, nvvm1(e, "llvm.nvvm.lg2.approx.f", ax), ""));
    LLVMValueRef half = LLVMBuildFMul(b, y, cg_llvm_fconst(e, CG_F32, 0.5), "");
    LLVMValueRef is_int = LLVMBuildFCmp(b, LLVMRealOEQ, cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &y, 1), y, "");
    LLVMValueRef is_odd = LLVMBuildAnd(b, is_int, LLVMBuildFCmp(b, LLVMRealONE, cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &half, 1), half, ""), "");
    LLVMValueRef neg = LLVMBuildFCmp(b, LLVMRealOLT, x, zero, "");
    r = LLVMBuildSelect(b, LLVMBuildAnd(b, neg, is_odd, ""), LLVMBuildFNeg(b, r, ""), r, "");
    r = LLVMBuildSelect(b, LLVMBuildAnd(b, neg, LLVMBuildNot(b, is_int, ""), ""), cg_llvm_fconst(e, CG_F32, NAN), r, "");
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, y, zero, ""), one, r, "");
}

/* f64 sin/cos (rope's angles): reduced by 2π in f64 (two-part constant, exact products for
 * |k| < 2^20), then sin/cos.approx in f32 (abs err ~1e-6 on [-π, π]), widened back. */
static LLVMValueRef reduce_2pi_f64(cg_llvm_emitter *e, LLVMValueRef x)
{
    const double two_pi = 6.28318530717958647692, hi = 6.28318530717958623; /* hi: 2π rounded to f64 */
    LLVMTypeRef f = e->ty[CG_F64];
    LLVMValueRef q = LLVMBuildFMul(e->b, x, cg_llvm_fconst(e, CG_F64, 1.0 / two_pi), "");
    LLVMValueRef k = cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &q, 1);
    LLVMValueRef r = fma3(e, LLVMBuildFNeg(e->b, k, ""), cg_llvm_fconst(e, CG_F64, hi), x);
    return fma3(e, LLVMBuildFNeg(e->b, k, ""), cg_llvm_fconst(e, CG_F64, 2.4492935982947064e-16), r);
}

static LLVMValueRef gm_sin64(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    LLVMValueRef r = LLVMBuildFPTrunc(e->b, reduce_2pi_f64(e, x), e->ty[CG_F32], "");
    return LLVMBuildFPExt(e->b, nvvm1(e, "llvm.nvvm.sin.approx.f", r), e->ty[CG_F64], "");
}

static LLVMValueRef gm_cos64(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    LLVMValueRef r = LLVMBuildFPTrunc(e->b, reduce_2pi_f64(e, x), e->ty[CG_F32], "");
    return LLVMBuildFPExt(e->b, nvvm1(e, "llvm.nvvm.cos.approx.f", r), e->ty[CG_F64], "");
}

/* f64 pow (rope's inverse frequencies), in f64 without libdevice: x^y = 2^(y·log2|x|).
 * log2 m for x = m·2^e, m in [√½, √2): 2·atanh(s)/ln 2 with s = (m-1)/(m+1), odd series to
 * s^21 (|s| < 0.172: truncation < 1e-17); 2^t = 2^n · e^(f·ln 2), n = rint(t), Taylor to
 * degree 14 (|f·ln 2| <= 0.35). Signs as the f32 version; x = 0: 0 for y > 0, inf for y < 0;
 * y = 0: 1. Normal x only (subnormals count as 0). */
static LLVMValueRef gm_pow64(cg_llvm_emitter *e, cg_type t, LLVMValueRef x, LLVMValueRef y)
{
    LLVMBuilderRef b = e->b;
    LLVMTypeRef f = e->ty[CG_F64], i64 = e->ty[CG_I64];
    LLVMValueRef one = cg_llvm_fconst(e, CG_F64, 1.0), zero = cg_llvm_fconst(e, CG_F64, 0.0);
    LLVMValueRef ax = cg_llvm_call_intrinsic(e, "llvm.fabs", &f, 1, &x, 1);
    LLVMValueRef bits = LLVMBuildBitCast(b, ax, i64, "");
    LLVMValueRef ex = LLVMBuildSub(b, LLVMBuildLShr(b, bits, LLVMConstInt(i64, 52, 0), ""), LLVMConstInt(i64, 1023, 0), "");
    LLVMValueRef mb = LLVMBuildOr(b, LLVMBuildAnd(b, bits, LLVMConstInt(i64, 0xfffffffffffffULL, 0), ""),
                                  LLVMConstInt(i64, 1023ULL << 52, 0), "");
    LLVMValueRef m = LLVMBuildBitCast(b, mb, f, "");
    LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGT, m, cg_llvm_fconst(e, CG_F64, 1.4142135623730951), "");
    m = LLVMBuildSelect(b, big, LLVMBuildFMul(b, m, cg_llvm_fconst(e, CG_F64, 0.5), ""), m, "");
    ex = LLVMBuildSelect(b, big, LLVMBuildAdd(b, ex, LLVMConstInt(i64, 1, 0), ""), ex, "");
    LLVMValueRef sv = LLVMBuildFDiv(b, LLVMBuildFSub(b, m, one, ""), LLVMBuildFAdd(b, m, one, ""), "");
    LLVMValueRef s2 = LLVMBuildFMul(b, sv, sv, "");
    LLVMValueRef poly = cg_llvm_fconst(e, CG_F64, 1.0 / 21);
    for (int k = 19; k >= 1; k -= 2)
        poly = fma3(e, poly, s2, cg_llvm_fconst(e, CG_F64, 1.0 / k));
    LLVMValueRef lg = fma3(e, LLVMBuildFMul(b, sv, poly, ""), cg_llvm_fconst(e, CG_F64, 2.0 / LN2),
                           LLVMBuildSIToFP(b, ex, f, ""));
    LLVMValueRef tt = LLVMBuildFMul(b, y, lg, "");
    tt = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, tt, cg_llvm_fconst(e, CG_F64, -1074.0), ""),
                         cg_llvm_fconst(e, CG_F64, -1080.0), tt, "");
    tt = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, tt, cg_llvm_fconst(e, CG_F64, 1024.0), ""),
                         cg_llvm_fconst(e, CG_F64, 1030.0), tt, "");
    LLVMValueRef n = cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &tt, 1);
    LLVMValueRef fr = LLVMBuildFMul(b, LLVMBuildFSub(b, tt, n, ""), cg_llvm_fconst(e, CG_F64, LN2), "");
    LLVMValueRef ep = cg_llvm_fconst(e, CG_F64, 1.0);
    double fact = 1.0;
    for (int k = 1; k <= 14; k++)
        fact *= k;
    ep = cg_llvm_fconst(e, CG_F64, 1.0 / fact);
    for (int k = 13; k >= 0; k--) {
        fact /= (k + 1);
        ep = fma3(e, ep, fr, cg_llvm_fconst(e, CG_F64, 1.0 / fact));
    }
    /* 2^n in two halves so that n down to -1080 and up to 1030 scales without overflow of the
     * exponent field (results beyond the range become 0 or inf) */
    LLVMValueRef ni = LLVMBuildFPToSI(b, n, i64, "");
    LLVMValueRef n1 = LLVMBuildSDiv(b, ni, LLVMConstInt(i64, 2, 0), ""), n2 = LLVMBuildSub(b, ni, n1, "");
    LLVMValueRef p1 = LLVMBuildBitCast(b, LLVMBuildShl(b, LLVMBuildAdd(b, n1, LLVMConstInt(i64, 1023, 0), ""), LLVMConstInt(i64, 52, 0), ""), f, "");
    LLVMValueRef p2 = LLVMBuildBitCast(b, LLVMBuildShl(b, LLVMBuildAdd(b, n2, LLVMConstInt(i64, 1023, 0), ""), LLVMConstInt(i64, 52, 0), ""), f, "");
    LLVMValueRef r = LLVMBuildFMul(b, LLVMBuildFMul(b, ep, p1, ""), p2, "");
    /* signs, zero, y = 0 */
    LLVMValueRef half = LLVMBuildFMul(b, y, cg_llvm_fconst(e, CG_F64, 0.5), "");
    LLVMValueRef is_int = LLVMBuildFCmp(b, LLVMRealOEQ, cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &y, 1), y, "");
    LLVMValueRef is_odd = LLVMBuildAnd(b, is_int, LLVMBuildFCmp(b, LLVMRealONE, cg_llvm_call_intrinsic(e, "llvm.rint", &f, 1, &half, 1), half, ""), "");
    LLVMValueRef neg = LLVMBuildFCmp(b, LLVMRealOLT, x, zero, "");
    LLVMValueRef tiny = LLVMBuildFCmp(b, LLVMRealOLT, ax, cg_llvm_fconst(e, CG_F64, 2.2250738585072014e-308), "");
    r = LLVMBuildSelect(b, tiny, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, y, zero, ""), zero, cg_llvm_fconst(e, CG_F64, INFINITY), ""), r, "");
    r = LLVMBuildSelect(b, LLVMBuildAnd(b, neg, is_odd, ""), LLVMBuildFNeg(b, r, ""), r, "");
    r = LLVMBuildSelect(b, LLVMBuildAnd(b, neg, LLVMBuildNot(b, is_int, ""), ""), cg_llvm_fconst(e, CG_F64, NAN), r, "");
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOEQ, y, zero, ""), one, r, "");
}

static const cg_llvm_math nvptx_math = {
    .target = "nvptx",
    .fn = {[CG_EXP] = {gm_exp, NULL}, [CG_LOG] = {gm_log, NULL}, [CG_RSQRT] = {gm_rsqrt, gm_rsqrt},
           [CG_TANH] = {gm_tanh, NULL}, [CG_ERF] = {gm_erf, NULL}, [CG_SIN] = {gm_sin, gm_sin64},
           [CG_COS] = {gm_cos, gm_cos64}, [CG_POW] = {gm_pow, gm_pow64}}};

/* ---- warp and block reductions --------------------------------------------------------------- */

/* shfl.sync.bfly over the full warp: v from lane ^ mask, for any 32- or 64-bit value type. */
static LLVMValueRef shfl_bfly(pctx *c, LLVMValueRef v, cg_type t, int mask)
{
    cg_llvm_emitter *e = &c->e;
    LLVMTypeRef i32 = e->ty[CG_I32], i64 = e->ty[CG_I64];
    if (t == CG_F32 || t == CG_I32) {
        LLVMValueRef a[4] = {i32c(c, -1), v, i32c(c, mask), i32c(c, 0x1f)};
        return nvvm(e, t == CG_F32 ? "llvm.nvvm.shfl.sync.bfly.f32" : "llvm.nvvm.shfl.sync.bfly.i32", a, 4);
    }
    LLVMValueRef w = t == CG_F64 ? LLVMBuildBitCast(e->b, v, i64, "") : v;
    LLVMValueRef lo = LLVMBuildTrunc(e->b, w, i32, "");
    LLVMValueRef hi = LLVMBuildTrunc(e->b, LLVMBuildLShr(e->b, w, i64c(c, 32), ""), i32, "");
    lo = shfl_bfly(c, lo, CG_I32, mask);
    hi = shfl_bfly(c, hi, CG_I32, mask);
    w = LLVMBuildOr(e->b, LLVMBuildShl(e->b, LLVMBuildZExt(e->b, hi, i64, ""), i64c(c, 32), ""),
                    LLVMBuildZExt(e->b, lo, i64, ""), "");
    return t == CG_F64 ? LLVMBuildBitCast(e->b, w, e->ty[CG_F64], "") : w;
}

/* Every lane of the warp gets red over the warp's 32 values. */
static LLVMValueRef warp_allreduce(pctx *c, cg_red red, cg_type t, LLVMValueRef v)
{
    for (int m = WARP / 2; m >= 1; m /= 2)
        v = cg_llvm_red_combine(&c->e, red, t, v, shfl_bfly(c, v, t, m));
    return v;
}

/* Pointer to shared slot (reduce slot, warp w). */
static LLVMValueRef shared_at(pctx *c, int slot, LLVMValueRef w)
{
    LLVMTypeRef i64 = c->e.ty[CG_I64];
    LLVMValueRef idx = LLVMBuildAdd(c->e.b, LLVMBuildZExt(c->e.b, w, i64, ""), i64c(c, (int64_t)slot * MAX_WARPS), "");
    return LLVMBuildInBoundsGEP2(c->e.b, i64, c->shared, &idx, 1, "");
}

/* Combines the per-thread partials acc[i] of the reduce nodes reds[0..n) across the block;
 * every thread ends with the block's values in e.val[reds[j]]. */
static void block_reduce(pctx *c, const int *reds, int n, LLVMValueRef *part)
{
    cg_llvm_emitter *e = &c->e;
    const cg_kernel *k = e->k;
    LLVMValueRef *w = calloc((size_t)n, sizeof *w);
    if (!w)
        ir_unreachable("out of memory");
    for (int j = 0; j < n; j++)
        w[j] = warp_allreduce(c, k->nodes[reds[j]].red, k->nodes[reds[j]].type, part[j]);
    LLVMBasicBlockRef put = new_block(c, "red.put"), sync = new_block(c, "red.sync");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, c->lane, i32c(c, 0), ""), put, sync);
    LLVMPositionBuilderAtEnd(e->b, put);
    for (int j = 0; j < n; j++) {
        LLVMValueRef st = LLVMBuildStore(e->b, w[j], shared_at(c, c->red_slot[reds[j]], c->warp));
        LLVMSetAlignment(st, 8);
    }
    LLVMBuildBr(e->b, sync);
    LLVMPositionBuilderAtEnd(e->b, sync);
    barrier(c);
    /* lane l < nwarps reads warp l's value (index clamped to stay inside the slot) */
    LLVMValueRef lane_ok = LLVMBuildICmp(e->b, LLVMIntULT, c->lane, c->nwarps, "");
    LLVMValueRef at = LLVMBuildAnd(e->b, c->lane, i32c(c, MAX_WARPS - 1), "");
    for (int j = 0; j < n; j++) {
        const cg_node *r = &k->nodes[reds[j]];
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->ty[r->type], shared_at(c, c->red_slot[reds[j]], at), "");
        LLVMSetAlignment(v, 8);
        v = LLVMBuildSelect(e->b, lane_ok, v, cg_llvm_red_identity(e, r->red, r->type), "");
        e->val[reds[j]] = warp_allreduce(c, r->red, r->type, v);
    }
    free(w);
}

/* ---- slots --------------------------------------------------------------------------------- */

/* The nodes of an even slot; stores by thread 0 only when `guard` (a row kernel). */
static void emit_even(pctx *c, int slot, bool guard)
{
    cg_llvm_emitter *e = &c->e;
    const cg_kernel *k = e->k;
    for (int i = 0; i < k->n_nodes; i++) {
        if (k->nodes[i].slot != slot)
            continue;
        if (c->bar[i]) /* others may still be reading this inout element */
            barrier(c);
        if (!(guard && k->nodes[i].op == CG_STORE)) {
            cg_llvm_emit_node(e, i);
            continue;
        }
        LLVMBasicBlockRef st = new_block(c, "store.t0"), cont = new_block(c, "");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, c->tid, i64c(c, 0), ""), st, cont);
        LLVMPositionBuilderAtEnd(e->b, st);
        cg_llvm_emit_node(e, i);
        LLVMBuildBr(e->b, cont);
        LLVMPositionBuilderAtEnd(e->b, cont);
    }
}

/* Loop k spread over the block: iterations tid, tid + ntid, ...; then its reductions. */
static void emit_block_loop(pctx *c, int lk)
{
    cg_llvm_emitter *e = &c->e;
    const cg_kernel *k = e->k;
    LLVMValueRef ext = i64c(c, k->loop[lk]);
    int *reds = calloc((size_t)k->n_nodes + 1, sizeof *reds);
    LLVMValueRef *acc = calloc((size_t)k->n_nodes + 1, sizeof *acc), *next = calloc((size_t)k->n_nodes + 1, sizeof *next);
    LLVMValueRef *ident = calloc((size_t)k->n_nodes + 1, sizeof *ident);
    if (!reds || !acc || !next || !ident)
        ir_unreachable("out of memory");
    int nr = 0;
    for (int i = 0; i < k->n_nodes; i++)
        if (k->nodes[i].op == CG_REDUCE && k->nodes[i].a == lk)
            reds[nr++] = i;

    if (c->bar[k->n_nodes + lk]) /* a store in this loop to an inout element others loaded */
        barrier(c);
    char name[16];
    snprintf(name, sizeof name, "l%d", lk);
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(e->b), body = new_block(c, name), done = new_block(c, "");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, c->tid, ext, ""), body, done);
    LLVMPositionBuilderAtEnd(e->b, body);
    LLVMValueRef iv = LLVMBuildPhi(e->b, e->ty[CG_I64], name);
    LLVMAddIncoming(iv, &c->tid, &pre, 1);
    for (int j = 0; j < nr; j++) {
        const cg_node *r = &k->nodes[reds[j]];
        ident[j] = cg_llvm_red_identity(e, r->red, r->type);
        acc[j] = LLVMBuildPhi(e->b, e->ty[r->type], "acc");
        LLVMAddIncoming(acc[j], &ident[j], &pre, 1);
    }
    e->lidx[lk] = iv;
    emit_even(c, 2 * lk + 1, false); /* odd slot: every thread its own iterations, no guard */
    for (int j = 0; j < nr; j++)
        next[j] = cg_llvm_red_combine(e, k->nodes[reds[j]].red, k->nodes[reds[j]].type, acc[j],
                                      e->val[k->nodes[reds[j]].in[0]]);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMValueRef inc = LLVMBuildNSWAdd(e->b, iv, c->ntid, "");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, inc, ext, ""), body, done);
    LLVMAddIncoming(iv, &inc, &latch, 1);
    LLVMPositionBuilderAtEnd(e->b, done);
    for (int j = 0; j < nr; j++) {
        LLVMAddIncoming(acc[j], &next[j], &latch, 1);
        LLVMValueRef fin = LLVMBuildPhi(e->b, e->ty[k->nodes[reds[j]].type], "part");
        LLVMValueRef in[2] = {ident[j], next[j]};
        LLVMBasicBlockRef from[2] = {pre, latch};
        LLVMAddIncoming(fin, in, from, 2);
        acc[j] = fin;
    }
    if (nr > 0)
        block_reduce(c, reds, nr, acc);
    free(reds);
    free(acc);
    free(next);
    free(ident);
}

/* Grid indices of the flattened point p (row-major), in i32 when the grid allows. */
static void decompose(pctx *c, LLVMValueRef p, int64_t points)
{
    cg_llvm_emitter *e = &c->e;
    const cg_kernel *k = e->k;
    bool narrow = points <= INT32_MAX;
    LLVMTypeRef it = narrow ? e->ty[CG_I32] : e->ty[CG_I64];
    LLVMValueRef q = narrow ? LLVMBuildTrunc(e->b, p, it, "") : p;
    for (int d = k->n_dims - 1; d >= 0; d--) {
        LLVMValueRef dim = LLVMConstInt(it, (unsigned long long)k->dim[d], 0);
        LLVMValueRef idx = d == 0 ? q : LLVMBuildURem(e->b, q, dim, "");
        e->pidx[d] = narrow ? LLVMBuildZExt(e->b, idx, e->ty[CG_I64], "") : idx;
        if (d > 0)
            q = LLVMBuildUDiv(e->b, q, dim, "");
    }
}

/* ---- kernels --------------------------------------------------------------------------------- */

static void add_attr(pctx *c, LLVMValueRef fn, unsigned idx, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->e.ctx, kind, 0));
}

/* !nvvm.annotations !{ptr @fn, !"name", i32 v} */
static void annotate(pctx *c, LLVMValueRef fn, const char *name, int v)
{
    LLVMContextRef ctx = c->e.ctx;
    LLVMMetadataRef ops[3] = {LLVMValueAsMetadata(fn), LLVMMDStringInContext2(ctx, name, strlen(name)),
                              LLVMValueAsMetadata(LLVMConstInt(c->e.ty[CG_I32], (unsigned long long)v, 0))};
    LLVMAddNamedMetadataOperand(c->e.mod, "nvvm.annotations", LLVMMetadataAsValue(ctx, LLVMMDNodeInContext2(ctx, ops, 3)));
}

static void render_kernel(pctx *c)
{
    cg_llvm_emitter *e = &c->e;
    const cg_kernel *k = e->k;
    LLVMTypeRef gptr = LLVMPointerTypeInContext(e->ctx, ADDR_GLOBAL), i64 = e->ty[CG_I64], i32 = e->ty[CG_I32];
    LLVMTypeRef *pt = calloc((size_t)k->n_args + 1, sizeof *pt);
    e->arg = calloc((size_t)k->n_args + 1, sizeof *e->arg);
    e->val = calloc((size_t)k->n_nodes + 1, sizeof *e->val);
    c->red_slot = calloc((size_t)k->n_nodes + 1, sizeof *c->red_slot);
    c->bar = calloc((size_t)(k->n_nodes + k->n_loops) + 1, sizeof *c->bar);
    if (!c->bar)
        ir_unreachable("out of memory");
    cg_kernel_group_barriers(k, c->bar);
    if (!pt || !e->arg || !e->val || !c->red_slot)
        ir_unreachable("out of memory");
    for (int a = 0; a < k->n_args; a++)
        pt[a] = k->args[a].scalar ? i64 : gptr;
    e->fn = LLVMAddFunction(e->mod, k->name, LLVMFunctionType(e->ty[CG_VOID], pt, (unsigned)k->n_args, 0));
    LLVMSetFunctionCallConv(e->fn, LLVMPTXKernelCallConv);
    add_attr(c, e->fn, LLVMAttributeFunctionIndex, "nounwind");
    annotate(c, e->fn, "kernel", 1);
    annotate(c, e->fn, "maxntidx", CG_PTX_MAX_BLOCK);
    for (int a = 0; a < k->n_args; a++) {
        e->arg[a] = LLVMGetParam(e->fn, (unsigned)a);
        LLVMSetValueName2(e->arg[a], k->args[a].name, strlen(k->args[a].name));
        if (k->args[a].scalar)
            continue;
        add_attr(c, e->fn, (unsigned)a + 1, "noalias");
        add_attr(c, e->fn, (unsigned)a + 1, "nocapture");
        if (k->args[a].access == CG_IN)
            add_attr(c, e->fn, (unsigned)a + 1, "readonly");
    }
    int n_red = 0;
    for (int i = 0; i < k->n_nodes; i++)
        if (k->nodes[i].op == CG_REDUCE)
            c->red_slot[i] = n_red++;
    c->shared = NULL;
    if (n_red > 0) {
        char *gname = malloc(strlen(k->name) + 8);
        if (!gname)
            ir_unreachable("out of memory");
        sprintf(gname, "%s.red", k->name);
        LLVMTypeRef at = LLVMArrayType2(i64, (uint64_t)n_red * MAX_WARPS);
        c->shared = LLVMAddGlobalInAddressSpace(e->mod, at, gname, ADDR_SHARED);
        free(gname);
        LLVMSetInitializer(c->shared, LLVMGetUndef(at));
        LLVMSetLinkage(c->shared, LLVMInternalLinkage);
        LLVMSetAlignment(c->shared, 8);
    }

    LLVMPositionBuilderAtEnd(e->b, new_block(c, "entry"));
    LLVMValueRef tid32 = sreg(c, "tid.x"), ntid32 = sreg(c, "ntid.x");
    LLVMValueRef ctaid = LLVMBuildZExt(e->b, sreg(c, "ctaid.x"), i64, ""), nctaid = LLVMBuildZExt(e->b, sreg(c, "nctaid.x"), i64, "");
    c->tid = LLVMBuildZExt(e->b, tid32, i64, "tid");
    c->ntid = LLVMBuildZExt(e->b, ntid32, i64, "ntid");
    c->lane = LLVMBuildAnd(e->b, tid32, LLVMConstInt(i32, WARP - 1, 0), "lane");
    c->warp = LLVMBuildLShr(e->b, tid32, LLVMConstInt(i32, 5, 0), "warp");
    c->nwarps = LLVMBuildLShr(e->b, ntid32, LLVMConstInt(i32, 5, 0), "nwarps");
    int64_t points = grid_points(k);
    bool rows = k->n_loops > 0 && !k->seq; /* a sequential kernel: one thread per point */
    /* rows: point = blockIdx.x, step gridDim.x; else point = global thread id, step all threads */
    LLVMValueRef first = rows ? ctaid : LLVMBuildNUWAdd(e->b, LLVMBuildNUWMul(e->b, ctaid, c->ntid, ""), c->tid, "");
    LLVMValueRef step = rows ? nctaid : LLVMBuildNUWMul(e->b, nctaid, c->ntid, "");
    LLVMValueRef total = i64c(c, points);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(e->b), point = new_block(c, rows ? "row" : "point"), exit = new_block(c, "exit");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, first, total, ""), point, exit);
    LLVMPositionBuilderAtEnd(e->b, point);
    LLVMValueRef p = LLVMBuildPhi(e->b, i64, "p");
    LLVMAddIncoming(p, &first, &entry, 1);
    decompose(c, p, points);
    if (k->seq)
        cg_llvm_emit_seq_point(e);
    for (int s = 0; !k->seq && s < cg_kernel_nslots(k); s++) {
        if (s % 2)
            emit_block_loop(c, s / 2);
        else
            emit_even(c, s, rows);
    }
    if (n_red > 0)
        barrier(c); /* the next point reuses the shared slots */
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMValueRef nextp = LLVMBuildNUWAdd(e->b, p, step, "");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, nextp, total, ""), point, exit);
    LLVMAddIncoming(p, &nextp, &latch, 1);
    LLVMPositionBuilderAtEnd(e->b, exit);
    LLVMBuildRetVoid(e->b);

    free(pt);
    free(e->arg);
    free(e->val);
    free(c->red_slot);
    free(c->bar);
    e->arg = e->val = NULL;
    c->red_slot = NULL;
    c->bar = NULL;
}

static LLVMTargetMachineRef ptx_machine(const cg_ptx_options *o, ir_diag *d)
{
    if (o->sm < 80) {
        ir_diag_error(d, -1, 0, 0, "ptx: sm_%d is not supported (sm_80 or newer)", o->sm);
        return NULL;
    }
    static bool inited;
    if (!inited) {
        LLVMInitializeNVPTXTargetInfo();
        LLVMInitializeNVPTXTarget();
        LLVMInitializeNVPTXTargetMC();
        LLVMInitializeNVPTXAsmPrinter();
        inited = true;
    }
    const char *triple = "nvptx64-nvidia-cuda";
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        ir_diag_error(d, -1, 0, 0, "LLVM target for %s: %s", triple, err ? err : "");
        LLVMDisposeMessage(err);
        return NULL;
    }
    int ptx = o->ptx ? o->ptx : o->sm >= 90 ? 78 : 75;
    char cpu[16], features[16];
    snprintf(cpu, sizeof cpu, "sm_%d", o->sm);
    snprintf(features, sizeof features, "+ptx%d", ptx);
    LLVMCodeGenOptLevel lvl = o->opt_level <= 0 ? LLVMCodeGenLevelNone
                              : o->opt_level == 1 ? LLVMCodeGenLevelLess
                              : o->opt_level == 2 ? LLVMCodeGenLevelDefault
                                                  : LLVMCodeGenLevelAggressive;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, lvl, LLVMRelocDefault,
                                                      LLVMCodeModelDefault);
    if (!tm)
        ir_diag_error(d, -1, 0, 0, "LLVM could not create an nvptx64 target machine for %s %s", cpu, features);
    return tm;
}

/* Validates, renders and optimizes ks into ctx; *tm and the module are the caller's. */
static LLVMModuleRef build_ptx_module(LLVMContextRef ctx, cg_kernel *const *ks, int n, const cg_ptx_options *o,
                                      LLVMTargetMachineRef *tm, ir_diag *d)
{
    if (!o)
        o = &cg_ptx_defaults;
    *tm = NULL;
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok = ok && cg_kernel_validate(ks[i], d) && cg_llvm_math_check(ks[i], &nvptx_math, d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(ks[i]->name, ks[j]->name) == 0) {
                ir_diag_error(d, -1, 0, 0, "two kernels named %s in one module", ks[i]->name);
                ok = false;
            }
    if (!ok || !(*tm = ptx_machine(o, d)))
        return NULL;
    pctx c;
    memset(&c, 0, sizeof c);
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext(n > 0 ? ks[0]->name : "loom", ctx);
    cg_llvm_emitter_init(&c.e, ctx, m, &nvptx_math);
    char *triple = LLVMGetTargetMachineTriple(*tm);
    LLVMSetTarget(m, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(*tm);
    LLVMSetModuleDataLayout(m, dl);
    LLVMDisposeTargetData(dl);
    for (int i = 0; i < n; i++) {
        c.e.k = ks[i];
        render_kernel(&c);
    }
    cg_llvm_emitter_dispose(&c.e);
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        ir_diag_error(d, -1, 0, 0, "internal error: nvptx LLVM IR does not verify: %s", msg ? msg : "");
        ok = false;
    }
    LLVMDisposeMessage(msg);
    if (ok)
        ok = cg_llvm_optimize(m, *tm, o->opt_level, d);
    if (!ok) {
        LLVMDisposeModule(m);
        LLVMDisposeTargetMachine(*tm);
        *tm = NULL;
        return NULL;
    }
    return m;
}

static char *ptx_or_ir(cg_kernel *const *ks, int n, const cg_ptx_options *o, bool want_ir, ir_diag *d)
{
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMTargetMachineRef tm;
    LLVMModuleRef m = build_ptx_module(ctx, ks, n, o, &tm, d);
    char *text = NULL;
    if (m && want_ir) {
        char *s = LLVMPrintModuleToString(m);
        text = strdup(s);
        LLVMDisposeMessage(s);
    } else if (m) {
        char *err = NULL;
        LLVMMemoryBufferRef buf = NULL;
        if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMAssemblyFile, &err, &buf)) {
            ir_diag_error(d, -1, 0, 0, "internal error: LLVM nvptx code generation: %s", err ? err : "");
            LLVMDisposeMessage(err);
        } else {
            size_t len = LLVMGetBufferSize(buf);
            text = malloc(len + 1);
            if (!text)
                ir_unreachable("out of memory");
            memcpy(text, LLVMGetBufferStart(buf), len);
            text[len] = 0;
            LLVMDisposeMemoryBuffer(buf);
        }
    }
    if (m) {
        LLVMDisposeModule(m);
        LLVMDisposeTargetMachine(tm);
    }
    LLVMContextDispose(ctx);
    return text;
}

char *cg_ptx(cg_kernel *const *ks, int n, const cg_ptx_options *o, ir_diag *d)
{
    return ptx_or_ir(ks, n, o, false, d);
}

char *cg_ptx_llvm_ir(cg_kernel *const *ks, int n, const cg_ptx_options *o, ir_diag *d)
{
    return ptx_or_ir(ks, n, o, true, d);
}
