/* exec_cuda.c — the CUDA executor (exec_cuda.h): device memory from the plan, PTX modules,
 * kernel launches, cuBLASLt GEMMs, the fused attention kernel, copies and id checks on one
 * stream.
 *
 * Device memory: one arena for every activation (the memory plan's offsets), one allocation
 * per param, input and output (params stay resident: training rebinds or updates them in
 * place). Kernel arguments are device addresses fixed at creation, so a run only launches.
 * An id check waits for the stream, copies the ids to the host and checks them there (ids are
 * small and usually inputs). A fault inside a kernel surfaces at the next synchronization;
 * LOOM_CUDA_SYNC=1 synchronizes after every step so that the message names the step.
 */
#include "runtime/cuda/exec_cuda.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cpu/exec_cpu.h" /* rt_attention_grad_f32: staged through the host */
#include "runtime/clock.h"
#include "runtime/trace.h"

enum { ERR_CAP = 4096 };

struct rt_cuda_exec {
    const rt_plan *plan;
    rt_cuda *cu;
    rt_cu_device dev;
    rt_cu_context ctx;
    rt_cu_stream stream;
    rt_cublaslt *lt;
    int n_mod;
    rt_cu_module *mod;
    rt_cu_module train_mod;     /* rt_cuda_training_ptx, loaded when the plan has training steps */
    rt_cu_function sum_rows_fn, scatter_fn[3]; /* scatter by ids dtype: i32, i64, u8 */
    rt_cu_deviceptr arena;
    rt_cu_deviceptr *base;      /* per buffer: device address of its first element */
    bool *bound;                /* per buffer: param/input bound at least once */
    void **host;                /* per output buffer: host copy */
    bool *stale;                /* per output buffer: host copy older than the last run */
    rt_cu_function *fn;         /* per step: kernel (kernel and attention steps) */
    rt_cuda_launch *launch;     /* per step */
    uint64_t **kargs;           /* per kernel step: argument values (device addresses) */
    void ***kparams;            /* per kernel step: pointers to them (cuLaunchKernel) */
    rt_cublaslt_op **gemm;      /* per gemm step */
    bool sync_each;
    bool profile;
    rt_cu_event *ev;            /* with profile: 2 per step */
    double ms[RT_STEP_KIND_COUNT];
    rt_trace *trace;            /* with profile under --profile: each step a slice on the stream's
                                   track, at the events' device times (trace.h) */
    int *trace_desc;            /* per step: its interned description, -1 until first traced */
    char err[ERR_CAP];
};

static size_t buf_bytes(const rt_plan_buffer *b) { return (size_t)b->numel * (size_t)ir_dtype_size(b->dtype); }

static rt_cu_deviceptr at(const rt_cuda_exec *e, rt_plan_ref r)
{
    if (r.buf < 0)
        return 0;
    return e->base[r.buf] + (uint64_t)r.offset * (uint64_t)ir_dtype_size(e->plan->bufs[r.buf].dtype);
}

static const char *step_name(const rt_plan *p, int s, char *buf, size_t cap)
{
    const rt_plan_step *st = &p->steps[s];
    switch (st->kind) {
    case RT_STEP_KERNEL: snprintf(buf, cap, "step %d (kernel %s)", s, st->kernel.name); break;
    case RT_STEP_GEMM:
        snprintf(buf, cap, "step %d (gemm %" PRId64 "x%" PRId64 "x%" PRId64 ")", s, st->gemm.M, st->gemm.N, st->gemm.K);
        break;
    case RT_STEP_ATTENTION: snprintf(buf, cap, "step %d (attention)", s); break;
    case RT_STEP_COPY: snprintf(buf, cap, "step %d (copy)", s); break;
    case RT_STEP_CHECK_IDS: snprintf(buf, cap, "step %d (id check)", s); break;
    case RT_STEP_WRITE_ROWS: snprintf(buf, cap, "step %d (cache write)", s); break;
    case RT_STEP_ATTENTION_GRAD: snprintf(buf, cap, "step %d (attention gradient, host staged)", s); break;
    case RT_STEP_SCATTER_ADD: snprintf(buf, cap, "step %d (scatter-add)", s); break;
    case RT_STEP_SUM_ROWS: snprintf(buf, cap, "step %d (sum over rows)", s); break;
    }
    return buf;
}

static void fail(rt_cuda_exec *e, ir_diag *d, const char *what)
{
    ir_diag_error(d, -1, 0, 0, "cuda: %s%s%s", what ? what : "", what ? ": " : "", e->err);
}

/* ---- the training steps' kernels ---------------------------------------------------------------
 * Hand-written PTX (sm_80; the driver JITs it for newer GPUs), the same algorithms as the
 * OpenCL executor's: one thread per column, rows added in order, so sums are deterministic.
 *   loomrt_sum_rows(dst, src, rows, width, stride): dst[c] = Σ_r src[r·stride + c]
 *   loomrt_scatter_add_T(dst, src, ids, n, width, rows, stride): dst = 0, then
 *       dst[ids[j]·width + c] += src[j·stride + c] for j in order (ids outside [0, rows) skipped)
 * Pointers are u64 device addresses of the first element; the rest u64 counts. */
static const char SUM_ROWS_PTX[] =
    ".visible .entry loomrt_sum_rows(.param .u64 p_dst, .param .u64 p_src, .param .u64 p_rows,\n"
    "    .param .u64 p_width, .param .u64 p_stride)\n"
    "{\n"
    "    .reg .pred %p<3>;\n    .reg .b32 %r<5>;\n    .reg .b64 %rd<16>;\n    .reg .f32 %f<3>;\n"
    "    ld.param.u64 %rd1, [p_dst];\n    ld.param.u64 %rd2, [p_src];\n    ld.param.u64 %rd3, [p_rows];\n"
    "    ld.param.u64 %rd4, [p_width];\n    ld.param.u64 %rd5, [p_stride];\n"
    "    cvta.to.global.u64 %rd1, %rd1;\n    cvta.to.global.u64 %rd2, %rd2;\n"
    "    mov.u32 %r1, %ctaid.x;\n    mov.u32 %r2, %ntid.x;\n    mov.u32 %r3, %tid.x;\n    mov.u32 %r4, %nctaid.x;\n"
    "    mul.wide.u32 %rd6, %r1, %r2;\n    cvt.u64.u32 %rd7, %r3;\n    add.s64 %rd6, %rd6, %rd7;\n"
    "    mul.wide.u32 %rd8, %r4, %r2;\n    shl.b64 %rd11, %rd5, 2;\n"
    "COL:\n"
    "    setp.ge.s64 %p1, %rd6, %rd4;\n    @%p1 bra DONE;\n"
    "    mov.f32 %f1, 0f00000000;\n    shl.b64 %rd9, %rd6, 2;\n    add.s64 %rd10, %rd2, %rd9;\n    mov.u64 %rd12, 0;\n"
    "ROW:\n"
    "    setp.ge.s64 %p2, %rd12, %rd3;\n    @%p2 bra STORE;\n"
    "    ld.global.f32 %f2, [%rd10];\n    add.rn.f32 %f1, %f1, %f2;\n"
    "    add.s64 %rd10, %rd10, %rd11;\n    add.s64 %rd12, %rd12, 1;\n    bra ROW;\n"
    "STORE:\n"
    "    add.s64 %rd13, %rd1, %rd9;\n    st.global.f32 [%rd13], %f1;\n    add.s64 %rd6, %rd6, %rd8;\n    bra COL;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";

/* %1$s: name suffix; %2$s: the id load (into %rd20 from address %rd19); %3$d: log2 of the id size. */
static const char SCATTER_PTX_FORMAT[] =
    ".visible .entry loomrt_scatter_add_%1$s(.param .u64 p_dst, .param .u64 p_src, .param .u64 p_ids,\n"
    "    .param .u64 p_n, .param .u64 p_width, .param .u64 p_rows, .param .u64 p_stride)\n"
    "{\n"
    "    .reg .pred %%p<5>;\n    .reg .b32 %%r<6>;\n    .reg .b64 %%rd<24>;\n    .reg .f32 %%f<4>;\n"
    "    ld.param.u64 %%rd1, [p_dst];\n    ld.param.u64 %%rd2, [p_src];\n    ld.param.u64 %%rd3, [p_ids];\n"
    "    ld.param.u64 %%rd4, [p_n];\n    ld.param.u64 %%rd5, [p_width];\n    ld.param.u64 %%rd6, [p_rows];\n"
    "    ld.param.u64 %%rd7, [p_stride];\n"
    "    cvta.to.global.u64 %%rd1, %%rd1;\n    cvta.to.global.u64 %%rd2, %%rd2;\n    cvta.to.global.u64 %%rd3, %%rd3;\n"
    "    mov.u32 %%r1, %%ctaid.x;\n    mov.u32 %%r2, %%ntid.x;\n    mov.u32 %%r3, %%tid.x;\n    mov.u32 %%r4, %%nctaid.x;\n"
    "    mul.wide.u32 %%rd8, %%r1, %%r2;\n    cvt.u64.u32 %%rd9, %%r3;\n    add.s64 %%rd8, %%rd8, %%rd9;\n"
    "    mul.wide.u32 %%rd10, %%r4, %%r2;\n    shl.b64 %%rd11, %%rd5, 2;\n    shl.b64 %%rd12, %%rd7, 2;\n"
    "    mov.f32 %%f1, 0f00000000;\n"
    "COL:\n"
    "    setp.ge.s64 %%p1, %%rd8, %%rd5;\n    @%%p1 bra DONE;\n"
    "    shl.b64 %%rd13, %%rd8, 2;\n    add.s64 %%rd14, %%rd1, %%rd13;\n    mov.u64 %%rd15, 0;\n"
    "ZERO:\n"
    "    setp.ge.s64 %%p2, %%rd15, %%rd6;\n    @%%p2 bra ADD;\n"
    "    st.global.f32 [%%rd14], %%f1;\n    add.s64 %%rd14, %%rd14, %%rd11;\n    add.s64 %%rd15, %%rd15, 1;\n"
    "    bra ZERO;\n"
    "ADD:\n"
    "    add.s64 %%rd16, %%rd2, %%rd13;\n    mov.u64 %%rd17, 0;\n"
    "NEXT:\n"
    "    setp.ge.s64 %%p2, %%rd17, %%rd4;\n    @%%p2 bra COLNEXT;\n"
    "    shl.b64 %%rd18, %%rd17, %3$d;\n    add.s64 %%rd19, %%rd3, %%rd18;\n"
    "%2$s"
    "    setp.lt.s64 %%p3, %%rd20, 0;\n    setp.ge.s64 %%p4, %%rd20, %%rd6;\n    or.pred %%p3, %%p3, %%p4;\n"
    "    @%%p3 bra SKIP;\n"
    "    mul.lo.s64 %%rd21, %%rd20, %%rd11;\n    add.s64 %%rd21, %%rd21, %%rd13;\n    add.s64 %%rd21, %%rd1, %%rd21;\n"
    "    ld.global.f32 %%f2, [%%rd21];\n    ld.global.f32 %%f3, [%%rd16];\n    add.rn.f32 %%f2, %%f2, %%f3;\n"
    "    st.global.f32 [%%rd21], %%f2;\n"
    "SKIP:\n"
    "    add.s64 %%rd16, %%rd16, %%rd12;\n    add.s64 %%rd17, %%rd17, 1;\n    bra NEXT;\n"
    "COLNEXT:\n"
    "    add.s64 %%rd8, %%rd8, %%rd10;\n    bra COL;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";

static const char *const SCATTER_SUFFIX[3] = {"i32", "i64", "u8"};

char *rt_cuda_training_ptx(void)
{
    static const char *const load[3] = {
        "    ld.global.s32 %r5, [%rd19];\n    cvt.s64.s32 %rd20, %r5;\n",
        "    ld.global.s64 %rd20, [%rd19];\n",
        "    ld.global.u8 %r5, [%rd19];\n    cvt.u64.u32 %rd20, %r5;\n",
    };
    static const int shift[3] = {2, 3, 0};
    size_t cap = sizeof SUM_ROWS_PTX + 3 * (sizeof SCATTER_PTX_FORMAT + 128) + 256, n = 0;
    char *ptx = malloc(cap);
    if (!ptx)
        ir_unreachable("out of memory");
    n += (size_t)snprintf(ptx + n, cap - n, "// loom: the CUDA executor's training-step kernels (exec_cuda.c)\n"
                                            ".version 7.0\n.target sm_80\n.address_size 64\n\n%s", SUM_ROWS_PTX);
    for (int i = 0; i < 3; i++)
        n += (size_t)snprintf(ptx + n, cap - n, SCATTER_PTX_FORMAT, SCATTER_SUFFIX[i], load[i], shift[i]);
    if (n >= cap)
        ir_unreachable("training PTX buffer too small");
    return ptx;
}

/* ---- setup -------------------------------------------------------------------------------- */

static bool alloc_zeroed(rt_cuda_exec *e, rt_cu_deviceptr *p, size_t bytes)
{
    size_t n = bytes ? (bytes + 255) / 256 * 256 : 256;
    return RT_CU_CHECK(e->cu, e->cu->MemAlloc(p, n), e->err, ERR_CAP) &&
           RT_CU_CHECK(e->cu, e->cu->MemsetD8(*p, 0, n), e->err, ERR_CAP);
}

static bool setup(rt_cuda_exec *e, const char *const *ptx, int n_ptx, const rt_cuda_launch *launch, ir_diag *d)
{
    const rt_plan *p = e->plan;
    rt_cuda *cu = e->cu;
    char where[160];
    if (!RT_CU_CHECK(cu, cu->DeviceGet(&e->dev, 0), e->err, ERR_CAP) ||
        !RT_CU_CHECK(cu, cu->DevicePrimaryCtxRetain(&e->ctx, e->dev), e->err, ERR_CAP) ||
        !RT_CU_CHECK(cu, cu->CtxSetCurrent(e->ctx), e->err, ERR_CAP) ||
        !RT_CU_CHECK(cu, cu->StreamCreate(&e->stream, 0), e->err, ERR_CAP)) {
        fail(e, d, "setting up device 0");
        return false;
    }
    if (!alloc_zeroed(e, &e->arena, (size_t)p->arena_bytes)) {
        snprintf(where, sizeof where, "allocating the %" PRId64 "-byte activation arena", p->arena_bytes);
        fail(e, d, where);
        return false;
    }
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if (b->kind == RT_BUF_ACTIVATION) {
            e->base[i] = e->arena + (uint64_t)b->offset;
            continue;
        }
        if (!alloc_zeroed(e, &e->base[i], buf_bytes(b))) {
            snprintf(where, sizeof where, "allocating buffer '%s' (%zu bytes)", b->name, buf_bytes(b));
            fail(e, d, where);
            return false;
        }
        if (b->kind == RT_BUF_OUTPUT) {
            e->host[i] = calloc(1, buf_bytes(b) + 1);
            if (!e->host[i])
                ir_unreachable("out of memory");
        }
    }
    e->mod = calloc((size_t)n_ptx + 1, sizeof *e->mod);
    if (!e->mod)
        ir_unreachable("out of memory");
    for (int m = 0; m < n_ptx; m++, e->n_mod++)
        if (!rt_cuda_load_ptx(cu, ptx[m], &e->mod[m], e->err, ERR_CAP)) {
            snprintf(where, sizeof where, "loading PTX module %d", m);
            fail(e, d, where);
            return false;
        }
    for (int s = 0; s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        char aname[64];
        if (st->kind == RT_STEP_ATTENTION) {
            int64_t dim = st->attn.D > st->attn.E ? st->attn.D : st->attn.E;
            snprintf(aname, sizeof aname, "%s_%d", RT_CUDA_ATTENTION_KERNEL, dim <= 64 ? 64 : dim <= 128 ? 128 : 256);
        }
        /* the step's kernel: its own, the attention kernel, or a GEMM's epilogue kernel when
         * cuBLASLt does not have that epilogue itself */
        const rt_plan_kernel *pk = st->kind == RT_STEP_KERNEL ? &st->kernel
                                   : st->kind == RT_STEP_GEMM && st->gemm.epi.name && !rt_cublaslt_has_act(st->gemm.act)
                                       ? &st->gemm.epi
                                       : NULL;
        const char *kname = pk ? (launch[s].fn ? launch[s].fn : pk->name) : st->kind == RT_STEP_ATTENTION ? aname : NULL;
        if (kname) {
            for (int m = 0; m < e->n_mod && !e->fn[s]; m++)
                if (cu->ModuleGetFunction(&e->fn[s], e->mod[m], kname) != RT_CU_SUCCESS)
                    e->fn[s] = NULL;
            if (!e->fn[s]) {
                ir_diag_error(d, -1, 0, 0, "cuda: kernel '%s' is in no loaded PTX module", kname);
                return false;
            }
        }
        if (pk) {
            e->launch[s] = launch[s];
            e->launch[s].fn = NULL; /* the caller's string, needed only above */
            int n = pk->n_args;
            e->kargs[s] = calloc((size_t)n + 1, sizeof **e->kargs);
            e->kparams[s] = calloc((size_t)n + 1, sizeof **e->kparams);
            if (!e->kargs[s] || !e->kparams[s])
                ir_unreachable("out of memory");
            for (int a = 0; a < n; a++) {
                e->kargs[s][a] = at(e, pk->args[a]);
                e->kparams[s][a] = &e->kargs[s][a];
            }
        }
        if (st->kind == RT_STEP_GEMM) {
            if (!e->lt && !(e->lt = rt_cublaslt_load(cu, e->err, ERR_CAP))) {
                fail(e, d, NULL);
                return false;
            }
            e->gemm[s] = rt_cublaslt_prepare(e->lt, &st->gemm, e->err, ERR_CAP);
            if (!e->gemm[s]) {
                fail(e, d, step_name(p, s, where, sizeof where));
                return false;
            }
        } else if ((st->kind == RT_STEP_SUM_ROWS || st->kind == RT_STEP_SCATTER_ADD) && !e->train_mod) {
            char *tptx = rt_cuda_training_ptx();
            bool loaded = rt_cuda_load_ptx(cu, tptx, &e->train_mod, e->err, ERR_CAP);
            free(tptx);
            if (!loaded) {
                fail(e, d, "loading the training-step kernels");
                return false;
            }
            char fname[64];
            bool found = cu->ModuleGetFunction(&e->sum_rows_fn, e->train_mod, "loomrt_sum_rows") == RT_CU_SUCCESS;
            for (int i = 0; i < 3; i++) {
                snprintf(fname, sizeof fname, "loomrt_scatter_add_%s", SCATTER_SUFFIX[i]);
                found = found && cu->ModuleGetFunction(&e->scatter_fn[i], e->train_mod, fname) == RT_CU_SUCCESS;
            }
            if (!found)
                ir_unreachable("the training PTX lacks one of its kernels");
        } else if (st->kind == RT_STEP_ATTENTION) {
            if (st->attn.D > RT_CUDA_ATTENTION_MAX_DIM || st->attn.E > RT_CUDA_ATTENTION_MAX_DIM) {
                ir_diag_error(d, -1, 0, 0, "cuda: attention head dims %" PRId64 "/%" PRId64 " exceed %d", st->attn.D,
                              st->attn.E, RT_CUDA_ATTENTION_MAX_DIM);
                return false;
            }
        }
    }
    return true;
}

rt_cuda_exec *rt_cuda_exec_new(const rt_plan *p, const char *const *ptx, int n_ptx, const rt_cuda_launch *launch,
                               ir_diag *d)
{
    rt_cuda_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->plan = p;
    size_t nb = (size_t)p->n_bufs + 1, ns = (size_t)p->n_steps + 1;
    e->base = calloc(nb, sizeof *e->base);
    e->bound = calloc(nb, sizeof *e->bound);
    e->host = calloc(nb, sizeof *e->host);
    e->stale = calloc(nb, sizeof *e->stale);
    e->fn = calloc(ns, sizeof *e->fn);
    e->launch = calloc(ns, sizeof *e->launch);
    e->kargs = calloc(ns, sizeof *e->kargs);
    e->kparams = calloc(ns, sizeof *e->kparams);
    e->gemm = calloc(ns, sizeof *e->gemm);
    if (!e->base || !e->bound || !e->host || !e->stale || !e->fn || !e->launch || !e->kargs || !e->kparams || !e->gemm)
        ir_unreachable("out of memory");
    const char *sync = getenv("LOOM_CUDA_SYNC");
    e->sync_each = sync && *sync && strcmp(sync, "0") != 0;
    e->cu = rt_cuda_load(e->err, ERR_CAP);
    if (!e->cu) {
        ir_diag_error(d, -1, 0, 0, "--target cuda: %s", e->err);
        rt_cuda_exec_free(e);
        return NULL;
    }
    if (!setup(e, ptx, n_ptx, launch, d)) {
        rt_cuda_exec_free(e);
        return NULL;
    }
    return e;
}

void rt_cuda_exec_free(rt_cuda_exec *e)
{
    if (!e)
        return;
    const rt_plan *p = e->plan;
    rt_cuda *cu = e->cu;
    if (cu && e->stream)
        cu->StreamSynchronize(e->stream);
    for (int s = 0; s < p->n_steps; s++) {
        if (e->gemm && e->gemm[s])
            rt_cublaslt_op_free(e->lt, e->gemm[s]);
        if (e->kargs)
            free(e->kargs[s]);
        if (e->kparams)
            free(e->kparams[s]);
    }
    rt_cublaslt_free(e->lt);
    for (int i = 0; cu && e->base && i < p->n_bufs; i++) {
        if (p->bufs[i].kind != RT_BUF_ACTIVATION && e->base[i])
            cu->MemFree(e->base[i]);
        free(e->host[i]);
    }
    if (cu && e->arena)
        cu->MemFree(e->arena);
    for (int m = 0; m < e->n_mod; m++)
        cu->ModuleUnload(e->mod[m]);
    if (cu && e->train_mod)
        cu->ModuleUnload(e->train_mod);
    if (cu && e->ev)
        for (int i = 0; i < 2 * p->n_steps; i++)
            if (e->ev[i])
                cu->EventDestroy(e->ev[i]);
    if (cu && e->stream)
        cu->StreamDestroy(e->stream);
    if (cu && e->ctx)
        cu->DevicePrimaryCtxRelease(e->dev);
    rt_cuda_unload(cu);
    free(e->ev);
    free(e->trace_desc);
    free(e->mod);
    free(e->base);
    free(e->bound);
    free(e->host);
    free(e->stale);
    free(e->fn);
    free(e->launch);
    free(e->kargs);
    free(e->kparams);
    free(e->gemm);
    free(e);
}

/* ---- bind, output ----------------------------------------------------------------------------- */

bool rt_cuda_exec_bind(rt_cuda_exec *e, const char *name, const void *host, ir_diag *d)
{
    bool found = false;
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if ((b->kind != RT_BUF_PARAM && b->kind != RT_BUF_INPUT) || strcmp(b->name, name) != 0)
            continue;
        found = true;
        /* the stream may still read the old contents */
        if (!RT_CU_CHECK(e->cu, e->cu->StreamSynchronize(e->stream), e->err, ERR_CAP) ||
            !RT_CU_CHECK(e->cu, e->cu->MemcpyHtoD(e->base[i], host, buf_bytes(b)), e->err, ERR_CAP)) {
            char where[128];
            snprintf(where, sizeof where, "binding '%s'", name);
            fail(e, d, where);
            return false;
        }
        e->bound[i] = true;
    }
    if (!found)
        ir_diag_error(d, -1, 0, 0, "cuda: the plan has no parameter or input '%s'", name);
    return found;
}

void *rt_cuda_exec_output(rt_cuda_exec *e, const char *name)
{
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if (b->kind != RT_BUF_OUTPUT || strcmp(b->name, name) != 0)
            continue;
        if (e->stale[i]) {
            if (!RT_CU_CHECK(e->cu, e->cu->StreamSynchronize(e->stream), e->err, ERR_CAP) ||
                !RT_CU_CHECK(e->cu, e->cu->MemcpyDtoH(e->host[i], e->base[i], buf_bytes(b)), e->err, ERR_CAP)) {
                fprintf(stderr, "loom: error: cuda: reading output '%s': %s\n", name, e->err);
                return NULL;
            }
            e->stale[i] = false;
        }
        return e->host[i];
    }
    return NULL;
}

uint64_t rt_cuda_exec_device_ptr(rt_cuda_exec *e, const char *name)
{
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if (b->kind != RT_BUF_ACTIVATION && b->kind != RT_BUF_CONSTANT && strcmp(b->name, name) == 0)
            return e->base[i];
    }
    return 0;
}

/* ---- run -------------------------------------------------------------------------------------- */

static bool check_ids(rt_cuda_exec *e, const rt_plan_check *c, ir_diag *d)
{
    ir_dtype dt = e->plan->bufs[c->ids.buf].dtype;
    size_t w = (size_t)ir_dtype_size(dt);
    void *h = malloc((size_t)c->numel * w + 1);
    if (!h)
        ir_unreachable("out of memory");
    bool ok = RT_CU_CHECK(e->cu, e->cu->StreamSynchronize(e->stream), e->err, ERR_CAP) &&
              RT_CU_CHECK(e->cu, e->cu->MemcpyDtoH(h, at(e, c->ids), (size_t)c->numel * w), e->err, ERR_CAP);
    if (!ok) {
        fail(e, d, "reading ids for a range check");
        free(h);
        return false;
    }
    for (int64_t i = 0; i < c->numel; i++) {
        int64_t x = dt == DT_I32 ? ((const int32_t *)h)[i] : dt == DT_I64 ? ((const int64_t *)h)[i] : ((const uint8_t *)h)[i];
        if (x < 0 && c->allow_negative)
            continue;
        if (x < c->lo || x >= c->hi) {
            ir_diag_error(d, -1, 0, 0, "%s: id %" PRId64 " is outside [%" PRId64 ", %" PRId64 ")", c->what, x, c->lo, c->hi);
            ok = false;
            break;
        }
    }
    free(h);
    return ok;
}

static bool launch_attention(rt_cuda_exec *e, int s)
{
    const rt_plan_attention *a = &e->plan->steps[s].attn;
    uint64_t ptr[5] = {at(e, a->q), at(e, a->k), at(e, a->v), at(e, a->mask), at(e, a->out)};
    int64_t iv[24] = {a->B, a->H, a->G, a->T, a->S, a->D, a->E};
    int n = 7;
    for (int i = 0; i < 3; i++)
        iv[n++] = a->q_stride[i];
    for (int i = 0; i < 3; i++)
        iv[n++] = a->k_stride[i];
    for (int i = 0; i < 3; i++)
        iv[n++] = a->v_stride[i];
    for (int i = 0; i < 3; i++)
        iv[n++] = a->out_stride[i];
    for (int i = 0; i < 4; i++)
        iv[n++] = a->mask_stride[i];
    iv[n++] = a->causal;
    float scale = (float)a->scale;
    void *params[30];
    for (int i = 0; i < 5; i++)
        params[i] = &ptr[i];
    for (int i = 0; i < n; i++)
        params[5 + i] = &iv[i];
    params[5 + n] = &scale;
    int64_t rows = a->B * a->H * a->T;
    int64_t blocks = (rows + RT_CUDA_ATTENTION_ROWS - 1) / RT_CUDA_ATTENTION_ROWS;
    if (blocks > INT32_MAX)
        blocks = INT32_MAX; /* the kernel strides over rows beyond the grid */
    return RT_CU_CHECK(e->cu,
                       e->cu->LaunchKernel(e->fn[s], (unsigned)(blocks < 1 ? 1 : blocks), 1, 1, 32 * RT_CUDA_ATTENTION_ROWS, 1,
                                           1, 0, e->stream, params, NULL),
                       e->err, ERR_CAP);
}

/* cache_write: the position read back, then one device copy per outer block. (The CPU and
 * OpenCL executors also copy an INPUT destination back into the caller's memory; this one
 * keeps no caller pointers: read the cache as an output instead.) */
static bool write_rows(rt_cuda_exec *e, const rt_plan_write_rows *w, ir_diag *d, bool *reported)
{
    uint8_t raw[8] = {0};
    size_t pw = (size_t)ir_dtype_size(w->pos_dtype);
    if (!RT_CU_CHECK(e->cu, e->cu->StreamSynchronize(e->stream), e->err, ERR_CAP) ||
        !RT_CU_CHECK(e->cu, e->cu->MemcpyDtoH(raw, at(e, w->pos), pw), e->err, ERR_CAP))
        return false;
    int64_t p = 0;
    if (w->pos_dtype == DT_I32) {
        int32_t v;
        memcpy(&v, raw, sizeof v);
        p = v;
    } else if (w->pos_dtype == DT_I64)
        memcpy(&p, raw, sizeof p);
    else
        p = raw[0];
    if (p < 0 || w->rows_src > w->rows_dst || p > w->rows_dst - w->rows_src) { /* no p + rows: p may be INT64_MAX */
        *reported = true;
        ir_diag_error(d, -1, 0, 0, "cache_write: position %" PRId64 " with %" PRId64 " rows is outside the cache of %" PRId64,
                      p, w->rows_src, w->rows_dst);
        return false;
    }
    int64_t block = w->rows_src * w->row_bytes;
    for (int64_t o = 0; o < w->outer; o++)
        if (!RT_CU_CHECK(e->cu,
                         e->cu->MemcpyDtoDAsync(at(e, w->dst) + (uint64_t)((o * w->rows_dst + p) * w->row_bytes),
                                                at(e, w->src) + (uint64_t)(o * block), (size_t)block, e->stream),
                         e->err, ERR_CAP))
            return false;
    return true;
}

/* Elements a strided 3-D view (b, h, t) with a contiguous last dim of n reaches. */
static size_t span3(const int64_t *stride, int64_t B, int64_t H, int64_t T, int64_t n)
{
    return (size_t)((B - 1) * stride[0] + (H - 1) * stride[1] + (T - 1) * stride[2] + n);
}

static float *stage_in(rt_cuda_exec *e, rt_plan_ref r, size_t n, bool *ok)
{
    float *h = calloc(n + 1, sizeof *h);
    if (!h)
        ir_unreachable("out of memory");
    *ok = *ok && RT_CU_CHECK(e->cu, e->cu->MemcpyDtoH(h, at(e, r), n * sizeof *h), e->err, ERR_CAP);
    return h;
}

/* attention_grad through host staging, as the OpenCL executor: operands copied to the host,
 * attention_grad_cpu.c on this thread, results copied back (correct first; a fused backward
 * kernel is next). */
static bool attention_grad(rt_cuda_exec *e, const rt_plan_attention_grad *g)
{
    const rt_plan_attention *a = &g->fwd;
    bool ok = RT_CU_CHECK(e->cu, e->cu->StreamSynchronize(e->stream), e->err, ERR_CAP);
    size_t nq = span3(a->q_stride, a->B, a->H, a->T, a->D), nk = span3(a->k_stride, a->B, a->G, a->S, a->D);
    size_t nv = span3(a->v_stride, a->B, a->G, a->S, a->E), ny = span3(g->dy_stride, a->B, a->H, a->T, a->E);
    size_t nm = a->mask.buf >= 0 ? span3(a->mask_stride, a->B, a->H, a->T, (a->S - 1) * a->mask_stride[3] + 1) : 0;
    float *q = stage_in(e, a->q, nq, &ok), *k = stage_in(e, a->k, nk, &ok), *v = stage_in(e, a->v, nv, &ok);
    float *dy = stage_in(e, g->dy, ny, &ok), *mask = nm ? stage_in(e, a->mask, nm, &ok) : NULL;
    size_t n_out[4] = {(size_t)(a->B * a->H * a->T * a->D), (size_t)(a->B * a->G * a->S * a->D),
                       (size_t)(a->B * a->G * a->S * a->E), (size_t)(a->B * a->H * a->T * a->S)};
    rt_plan_ref refs[4] = {g->dq, g->dk, g->dv, g->dmask};
    float *outs[4] = {0};
    for (int i = 0; i < 4; i++)
        if (refs[i].buf >= 0 && !(outs[i] = calloc(n_out[i] + 1, sizeof(float))))
            ir_unreachable("out of memory");
    if (ok)
        rt_attention_grad_f32(g, q, k, v, mask, dy, NULL, outs[0], outs[1], outs[2], outs[3], NULL);
    for (int i = 0; i < 4; i++) {
        if (ok && outs[i])
            ok = RT_CU_CHECK(e->cu, e->cu->MemcpyHtoD(at(e, refs[i]), outs[i], n_out[i] * sizeof(float)), e->err, ERR_CAP);
        free(outs[i]);
    }
    free(q), free(k), free(v), free(dy), free(mask);
    return ok;
}

/* Blocks of 128 threads, one thread per column (the kernels stride over the rest). */
static unsigned column_blocks(int64_t width)
{
    int64_t b = (width + 127) / 128;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

static bool scatter_add(rt_cuda_exec *e, const rt_plan_scatter *s)
{
    uint64_t v[7] = {at(e, s->dst), at(e, s->src), at(e, s->ids), (uint64_t)s->n, (uint64_t)s->width, (uint64_t)s->rows,
                     (uint64_t)s->src_stride};
    void *params[7];
    for (int i = 0; i < 7; i++)
        params[i] = &v[i];
    int k = s->ids_dtype == DT_I32 ? 0 : s->ids_dtype == DT_I64 ? 1 : 2;
    return RT_CU_CHECK(e->cu,
                       e->cu->LaunchKernel(e->scatter_fn[k], column_blocks(s->width), 1, 1, 128, 1, 1, 0, e->stream, params,
                                           NULL),
                       e->err, ERR_CAP);
}

static bool sum_rows(rt_cuda_exec *e, const rt_plan_sum_rows *r)
{
    uint64_t v[5] = {at(e, r->dst), at(e, r->src), (uint64_t)r->rows, (uint64_t)r->width, (uint64_t)r->src_stride};
    void *params[5];
    for (int i = 0; i < 5; i++)
        params[i] = &v[i];
    return RT_CU_CHECK(e->cu,
                       e->cu->LaunchKernel(e->sum_rows_fn, column_blocks(r->width), 1, 1, 128, 1, 1, 0, e->stream, params,
                                           NULL),
                       e->err, ERR_CAP);
}

/* Launches step s's plan kernel (a kernel step's, or a GEMM's epilogue) with its geometry. */
static bool launch_kernel(rt_cuda_exec *e, int s)
{
    const rt_cuda_launch *l = &e->launch[s];
    return RT_CU_CHECK(e->cu,
                       e->cu->LaunchKernel(e->fn[s], l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1],
                                           l->block[2], 0, e->stream, e->kparams[s], NULL),
                       e->err, ERR_CAP);
}

static bool run_step(rt_cuda_exec *e, int s, ir_diag *d, bool *reported)
{
    const rt_plan_step *st = &e->plan->steps[s];
    rt_cuda *cu = e->cu;
    switch (st->kind) {
    case RT_STEP_KERNEL: return launch_kernel(e, s);
    case RT_STEP_GEMM: {
        /* cuBLASLt with its own epilogue, or without one and then the step's epilogue kernel
         * (which adds the bias: plan.h) */
        const rt_plan_gemm *g = &st->gemm;
        bool kernel = rt_cublaslt_kernel_epilogue(e->gemm[s]);
        return rt_cublaslt_run(e->lt, e->gemm[s], at(e, g->a), at(e, g->b), at(e, g->c), kernel ? 0 : at(e, g->bias),
                               e->stream, e->err, ERR_CAP) &&
               (!kernel || launch_kernel(e, s));
    }
    case RT_STEP_ATTENTION: return launch_attention(e, s);
    case RT_STEP_COPY:
        return RT_CU_CHECK(cu, cu->MemcpyDtoDAsync(at(e, st->copy.dst), at(e, st->copy.src), (size_t)st->copy.bytes, e->stream),
                           e->err, ERR_CAP);
    case RT_STEP_CHECK_IDS: *reported = true; return check_ids(e, &st->check, d);
    case RT_STEP_WRITE_ROWS: return write_rows(e, &st->rows, d, reported);
    case RT_STEP_ATTENTION_GRAD: return attention_grad(e, &st->agrad);
    case RT_STEP_SCATTER_ADD: return scatter_add(e, &st->scatter);
    case RT_STEP_SUM_ROWS: return sum_rows(e, &st->sum_rows);
    }
    return true;
}

bool rt_cuda_exec_run(rt_cuda_exec *e, ir_diag *d)
{
    const rt_plan *p = e->plan;
    rt_cuda *cu = e->cu;
    bool ok = true;
    char where[160];
    for (int i = 0; i < p->n_bufs; i++)
        if ((p->bufs[i].kind == RT_BUF_PARAM || p->bufs[i].kind == RT_BUF_INPUT) && !e->bound[i]) {
            ir_diag_error(d, -1, 0, 0, "cuda: %s '%s' is not bound", p->bufs[i].kind == RT_BUF_PARAM ? "parameter" : "input",
                          p->bufs[i].name);
            ok = false;
        }
    if (!ok)
        return false;
    if (e->profile && !e->ev) {
        e->ev = calloc((size_t)2 * p->n_steps + 1, sizeof *e->ev);
        if (!e->ev)
            ir_unreachable("out of memory");
        for (int i = 0; i < 2 * p->n_steps; i++)
            if (!RT_CU_CHECK(cu, cu->EventCreate(&e->ev[i], 0), e->err, ERR_CAP)) {
                fail(e, d, "creating timing events");
                return false;
            }
    }
    for (int s = 0; ok && s < p->n_steps; s++) {
        bool reported = false;
        if (e->profile && !RT_CU_CHECK(cu, cu->EventRecord(e->ev[2 * s], e->stream), e->err, ERR_CAP)) {
            fail(e, d, "recording an event");
            return false;
        }
        ok = run_step(e, s, d, &reported);
        if (ok && e->sync_each)
            ok = RT_CU_CHECK(cu, cu->StreamSynchronize(e->stream), e->err, ERR_CAP);
        if (!ok && !reported)
            fail(e, d, step_name(p, s, where, sizeof where));
        if (ok && e->profile && !RT_CU_CHECK(cu, cu->EventRecord(e->ev[2 * s + 1], e->stream), e->err, ERR_CAP)) {
            fail(e, d, "recording an event");
            return false;
        }
    }
    if (!ok)
        return false;
    if (!RT_CU_CHECK(cu, cu->StreamSynchronize(e->stream), e->err, ERR_CAP)) {
        fail(e, d, "running the plan (LOOM_CUDA_SYNC=1 names the failing step)");
        return false;
    }
    /* the stream has just drained: the last event's device time is now on the host clock, and
     * every other event is placed by its device time before that one */
    double synced = rt_now_ms();
    if (e->profile)
        for (int s = 0; s < p->n_steps; s++) {
            float ms = 0, to_end = 0;
            if (!RT_CU_CHECK(cu, cu->EventElapsedTime(&ms, e->ev[2 * s], e->ev[2 * s + 1]), e->err, ERR_CAP) ||
                (e->trace && !RT_CU_CHECK(cu, cu->EventElapsedTime(&to_end, e->ev[2 * s + 1], e->ev[2 * p->n_steps - 1]),
                                          e->err, ERR_CAP))) {
                fail(e, d, "reading an event");
                return false;
            }
            e->ms[p->steps[s].kind] += ms;
            if (e->trace) {
                if (e->trace_desc[s] < 0)
                    e->trace_desc[s] = rt_trace_plan_step(e->trace, p, s);
                rt_trace_slice(e->trace, RT_TRACE_DEVICE, e->trace_desc[s], synced - to_end - ms, synced - to_end);
            }
        }
    for (int i = 0; i < p->n_bufs; i++)
        e->stale[i] = p->bufs[i].kind == RT_BUF_OUTPUT;
    return true;
}

void rt_cuda_exec_profile(rt_cuda_exec *e, bool on)
{
    e->profile = on;
    e->trace = on ? rt_trace_active() : NULL;
    if (e->trace && !e->trace_desc) {
        e->trace_desc = malloc(sizeof *e->trace_desc * ((size_t)e->plan->n_steps + 1));
        if (!e->trace_desc)
            ir_unreachable("out of memory");
        for (int s = 0; s < e->plan->n_steps; s++)
            e->trace_desc[s] = -1;
        rt_trace_track_name(e->trace, RT_TRACE_DEVICE, "cuda stream");
    }
}

rt_exec_stats rt_cuda_exec_stats(const rt_cuda_exec *e)
{
    rt_exec_stats s = rt_exec_plan_stats(e->plan);
    s.ms_kernels = e->ms[RT_STEP_KERNEL];
    s.ms_gemms = e->ms[RT_STEP_GEMM];
    s.ms_attentions = e->ms[RT_STEP_ATTENTION];
    s.ms_other = e->ms[RT_STEP_COPY] + e->ms[RT_STEP_CHECK_IDS] + e->ms[RT_STEP_WRITE_ROWS] + e->ms[RT_STEP_SUM_ROWS] +
                 e->ms[RT_STEP_ATTENTION_GRAD];
    s.ms_scatters = e->ms[RT_STEP_SCATTER_ADD];
    return s;
}
