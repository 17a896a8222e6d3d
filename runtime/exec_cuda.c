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
#include "exec_cuda.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cublaslt.h"
#include "cuda_driver.h"

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
    default: snprintf(buf, cap, "step %d (a training step, kind %d)", s, (int)st->kind); break;
    }
    return buf;
}

static void fail(rt_cuda_exec *e, ir_diag *d, const char *what)
{
    ir_diag_error(d, -1, 0, 0, "cuda: %s%s%s", what ? what : "", what ? ": " : "", e->err);
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
        const char *kname = st->kind == RT_STEP_KERNEL ? st->kernel.name : st->kind == RT_STEP_ATTENTION ? aname : NULL;
        if (kname) {
            for (int m = 0; m < e->n_mod && !e->fn[s]; m++)
                if (cu->ModuleGetFunction(&e->fn[s], e->mod[m], kname) != RT_CU_SUCCESS)
                    e->fn[s] = NULL;
            if (!e->fn[s]) {
                ir_diag_error(d, -1, 0, 0, "cuda: kernel '%s' is in no loaded PTX module", kname);
                return false;
            }
        }
        if (st->kind == RT_STEP_KERNEL) {
            e->launch[s] = launch[s];
            int n = st->kernel.n_args;
            e->kargs[s] = calloc((size_t)n + 1, sizeof **e->kargs);
            e->kparams[s] = calloc((size_t)n + 1, sizeof **e->kparams);
            if (!e->kargs[s] || !e->kparams[s])
                ir_unreachable("out of memory");
            for (int a = 0; a < n; a++) {
                e->kargs[s][a] = at(e, st->kernel.args[a]);
                e->kparams[s][a] = &e->kargs[s][a];
            }
        } else if (st->kind == RT_STEP_GEMM) {
            if (!e->lt && !(e->lt = rt_cublaslt_load(cu, e->err, ERR_CAP))) {
                fail(e, d, NULL);
                return false;
            }
            e->gemm[s] = rt_cublaslt_prepare(e->lt, &st->gemm, e->err, ERR_CAP);
            if (!e->gemm[s]) {
                fail(e, d, step_name(p, s, where, sizeof where));
                return false;
            }
        } else if (st->kind != RT_STEP_COPY && st->kind != RT_STEP_CHECK_IDS && st->kind != RT_STEP_ATTENTION) {
            ir_diag_error(d, -1, 0, 0, "cuda: %s has no GPU implementation yet (training steps run on --target cpu)",
                          step_name(p, s, where, sizeof where));
            return false;
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

static bool run_step(rt_cuda_exec *e, int s, ir_diag *d, bool *reported)
{
    const rt_plan_step *st = &e->plan->steps[s];
    rt_cuda *cu = e->cu;
    switch (st->kind) {
    case RT_STEP_KERNEL: {
        const rt_cuda_launch *l = &e->launch[s];
        return RT_CU_CHECK(cu,
                           cu->LaunchKernel(e->fn[s], l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1],
                                            l->block[2], 0, e->stream, e->kparams[s], NULL),
                           e->err, ERR_CAP);
    }
    case RT_STEP_GEMM: {
        const rt_plan_gemm *g = &st->gemm;
        return rt_cublaslt_run(e->lt, e->gemm[s], at(e, g->a), at(e, g->b), at(e, g->c), at(e, g->bias), e->stream, e->err,
                               ERR_CAP);
    }
    case RT_STEP_ATTENTION: return launch_attention(e, s);
    case RT_STEP_COPY:
        return RT_CU_CHECK(cu, cu->MemcpyDtoDAsync(at(e, st->copy.dst), at(e, st->copy.src), (size_t)st->copy.bytes, e->stream),
                           e->err, ERR_CAP);
    case RT_STEP_CHECK_IDS: *reported = true; return check_ids(e, &st->check, d);
    default: break; /* the training steps: rejected by setup */
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
    if (e->profile)
        for (int s = 0; s < p->n_steps; s++) {
            float ms = 0;
            if (!RT_CU_CHECK(cu, cu->EventElapsedTime(&ms, e->ev[2 * s], e->ev[2 * s + 1]), e->err, ERR_CAP)) {
                fail(e, d, "reading an event");
                return false;
            }
            e->ms[p->steps[s].kind] += ms;
        }
    for (int i = 0; i < p->n_bufs; i++)
        e->stale[i] = p->bufs[i].kind == RT_BUF_OUTPUT;
    return true;
}

void rt_cuda_exec_profile(rt_cuda_exec *e, bool on) { e->profile = on; }

rt_exec_stats rt_cuda_exec_stats(const rt_cuda_exec *e)
{
    rt_exec_stats s = rt_exec_plan_stats(e->plan);
    s.ms_kernels = e->ms[RT_STEP_KERNEL];
    s.ms_gemms = e->ms[RT_STEP_GEMM];
    s.ms_attentions = e->ms[RT_STEP_ATTENTION];
    s.ms_other = e->ms[RT_STEP_COPY] + e->ms[RT_STEP_CHECK_IDS];
    return s;
}
