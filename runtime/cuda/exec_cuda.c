/* exec_cuda.c — the CUDA executor (exec_cuda.h): the plan walker (runtime/exec.h) over one
 * GPU's operations — device memory from cuMemAlloc (never managed memory), the plan's kernels
 * launched from loaded PTX modules, cuBLASLt GEMMs, copies and events on the device's one
 * stream. The GPU itself (driver, primary context, stream, cuBLASLt handle, transfer counts) is
 * an rt_cuda_dev that every executor of a job shares, so their buffers and their order are one.
 *
 * A fault inside a kernel surfaces at the next synchronization; LOOM_CUDA_SYNC=1 synchronizes
 * after every launch so that the message names the kernel. Every failure names the call.
 */
#include "runtime/cuda/exec_cuda.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cublaslt.h"
#include "runtime/cuda/cuda_driver.h"

enum { ERR_CAP = 4096 };

struct rt_cuda_dev {
    rt_cuda *cu;
    rt_cu_device dev;
    rt_cu_context ctx;
    rt_cu_stream stream;
    rt_cublaslt *lt;  /* loaded with the first GEMM */
    rt_xfer xfer;
    bool sync_each;   /* LOOM_CUDA_SYNC=1 */
    char err[ERR_CAP];
};

static bool dev_fail(rt_cuda_dev *g, ir_diag *d, const char *what)
{
    ir_diag_error(d, -1, 0, 0, "cuda: %s%s%s", what ? what : "", what ? ": " : "", g->err);
    return false;
}

#define CU(g, expr) RT_CU_CHECK((g)->cu, (expr), (g)->err, ERR_CAP)

rt_cuda_dev *rt_cuda_dev_open(ir_diag *d)
{
    rt_cuda_dev *g = calloc(1, sizeof *g);
    if (!g)
        ir_unreachable("out of memory");
    const char *sync = getenv("LOOM_CUDA_SYNC");
    g->sync_each = sync && *sync && strcmp(sync, "0") != 0;
    g->cu = rt_cuda_load(g->err, ERR_CAP);
    if (!g->cu) {
        ir_diag_error(d, -1, 0, 0, "--target cuda: %s", g->err);
        free(g);
        return NULL;
    }
    if (!CU(g, g->cu->DeviceGet(&g->dev, 0)) || !CU(g, g->cu->DevicePrimaryCtxRetain(&g->ctx, g->dev)) ||
        !CU(g, g->cu->CtxSetCurrent(g->ctx)) || !CU(g, g->cu->StreamCreate(&g->stream, 0))) {
        dev_fail(g, d, "setting up device 0");
        rt_cuda_dev_close(g);
        return NULL;
    }
    return g;
}

void rt_cuda_dev_close(rt_cuda_dev *g)
{
    if (!g)
        return;
    rt_cuda *cu = g->cu;
    if (cu && g->stream)
        cu->StreamSynchronize(g->stream);
    rt_cublaslt_free(g->lt);
    if (cu && g->stream)
        cu->StreamDestroy(g->stream);
    if (cu && g->ctx)
        cu->DevicePrimaryCtxRelease(g->dev);
    rt_cuda_unload(cu);
    free(g);
}

rt_xfer *rt_cuda_dev_xfer(rt_cuda_dev *g) { return &g->xfer; }

static rt_cu_deviceptr addr(rt_mem m) { return (rt_cu_deviceptr)(uintptr_t)m.mem + m.off; }

void *rt_cuda_dev_alloc(rt_cuda_dev *g, size_t bytes, ir_diag *d)
{
    size_t n = bytes ? (bytes + 255) / 256 * 256 : 256;
    rt_cu_deviceptr p = 0;
    if (!CU(g, g->cu->MemAlloc(&p, n)) || !CU(g, g->cu->MemsetD8(p, 0, n))) {
        char what[96];
        snprintf(what, sizeof what, "allocating %zu bytes", bytes);
        if (p)
            g->cu->MemFree(p);
        dev_fail(g, d, what);
        return NULL;
    }
    return (void *)(uintptr_t)p;
}

void rt_cuda_dev_free(rt_cuda_dev *g, void *mem)
{
    if (mem)
        g->cu->MemFree((rt_cu_deviceptr)(uintptr_t)mem);
}

bool rt_cuda_dev_write(rt_cuda_dev *g, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d)
{
    g->xfer.h2d += (int64_t)bytes;
    if (async)
        return CU(g, g->cu->MemcpyHtoDAsync(addr(dst), src, bytes, g->stream)) || dev_fail(g, d, "copying to the device");
    /* the stream may still read the old contents */
    return (CU(g, g->cu->StreamSynchronize(g->stream)) && CU(g, g->cu->MemcpyHtoD(addr(dst), src, bytes))) ||
           dev_fail(g, d, "copying to the device");
}

bool rt_cuda_dev_read(rt_cuda_dev *g, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    g->xfer.d2h += (int64_t)bytes;
    return (CU(g, g->cu->StreamSynchronize(g->stream)) && CU(g, g->cu->MemcpyDtoH(dst, addr(src), bytes))) ||
           dev_fail(g, d, "copying from the device (LOOM_CUDA_SYNC=1 names a failing kernel)");
}

bool rt_cuda_dev_sync(rt_cuda_dev *g, ir_diag *d)
{
    return CU(g, g->cu->StreamSynchronize(g->stream)) ||
           dev_fail(g, d, "running the plan (LOOM_CUDA_SYNC=1 names the failing kernel)");
}

/* ---- the backend's state for one executor ------------------------------------------------------ */

typedef struct {
    rt_cuda_dev *g;
    const rt_plan *plan;
    int n_mod;
    rt_cu_module *mod;
    const rt_cuda_launch *launch; /* the caller's, during rt_cuda_exec_new only */
} cuda_ctx;

struct rt_cuda_exec {
    cuda_ctx c;
    rt_walker *w;
    bool own_dev;
};

static void *cuda_alloc(void *dev, size_t bytes, ir_diag *d) { return rt_cuda_dev_alloc(((cuda_ctx *)dev)->g, bytes, d); }
static void cuda_free(void *dev, void *mem) { rt_cuda_dev_free(((cuda_ctx *)dev)->g, mem); }

static bool cuda_write(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d)
{
    return rt_cuda_dev_write(((cuda_ctx *)dev)->g, dst, src, bytes, false, d);
}

static bool cuda_write_async(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d)
{
    return rt_cuda_dev_write(((cuda_ctx *)dev)->g, dst, src, bytes, true, d);
}

static bool cuda_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    return rt_cuda_dev_read(((cuda_ctx *)dev)->g, src, dst, bytes, d);
}

static bool cuda_copy(void *dev, rt_mem dst, rt_mem src, size_t bytes, ir_diag *d)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    return CU(g, g->cu->MemcpyDtoDAsync(addr(dst), addr(src), bytes, g->stream)) || dev_fail(g, d, "a device copy");
}

/* ---- kernels ------------------------------------------------------------------------------------ */

typedef struct {
    rt_cu_function fn;
    rt_cuda_launch geo;
    const char *name;   /* the plan kernel's (for messages) */
    uint64_t *vals;     /* argument values: device addresses */
    void **params;      /* pointers to them (cuLaunchKernel) */
} cuda_kernel;

static void *cuda_kernel_new(void *dev, const rt_plan_kernel *k, ir_diag *d)
{
    cuda_ctx *c = dev;
    /* the caller's launch entry of this kernel: by its place in the plan */
    const rt_cuda_launch *geo = NULL;
    for (int s = 0; s < c->plan->n_steps && !geo; s++) {
        const rt_plan_kernel *ks[RT_CUDA_STEP_KERNELS + 1];
        int nk = rt_plan_step_kernels(&c->plan->steps[s], ks);
        for (int x = 0; x < nk && !geo; x++)
            if (ks[x] == k)
                geo = &c->launch[s * RT_CUDA_STEP_KERNELS + x];
    }
    if (!geo)
        ir_unreachable("cuda: a kernel that is not the plan's");
    const char *fname = geo->fn ? geo->fn : k->name;
    cuda_kernel *h = calloc(1, sizeof *h);
    if (!h)
        ir_unreachable("out of memory");
    for (int m = 0; m < c->n_mod && !h->fn; m++)
        if (c->g->cu->ModuleGetFunction(&h->fn, c->mod[m], fname) != RT_CU_SUCCESS)
            h->fn = NULL;
    if (!h->fn) {
        ir_diag_error(d, -1, 0, 0, "cuda: kernel '%s' is in no loaded PTX module", fname);
        free(h);
        return NULL;
    }
    h->geo = *geo;
    h->geo.fn = NULL; /* the caller's string, needed only above */
    h->name = k->name;
    h->vals = calloc((size_t)k->n_args + 1, sizeof *h->vals);
    h->params = calloc((size_t)k->n_args + 1, sizeof *h->params);
    if (!h->vals || !h->params)
        ir_unreachable("out of memory");
    for (int a = 0; a < k->n_args; a++)
        h->params[a] = &h->vals[a];
    return h;
}

static void cuda_kernel_free(void *dev, void *handle)
{
    (void)dev;
    cuda_kernel *h = handle;
    free(h->vals);
    free(h->params);
    free(h);
}

static bool cuda_launch(void *dev, void *handle, const rt_plan_kernel *k, const rt_mem *args, ir_diag *d)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    cuda_kernel *h = handle;
    for (int a = 0; a < k->n_args; a++)
        h->vals[a] = addr(args[a]);
    const rt_cuda_launch *l = &h->geo;
    bool ok = CU(g, g->cu->LaunchKernel(h->fn, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                                        0, g->stream, h->params, NULL)) &&
              (!g->sync_each || CU(g, g->cu->StreamSynchronize(g->stream)));
    if (!ok) {
        char what[160];
        snprintf(what, sizeof what, "kernel %s", h->name);
        return dev_fail(g, d, what);
    }
    return true;
}

/* ---- GEMMs: cuBLASLt, with its own epilogue or then the step's epilogue kernel ---------------- */

static void *cuda_gemm_prepare(void *dev, const rt_plan_gemm *gm, ir_diag *d)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    if (!g->lt && !(g->lt = rt_cublaslt_load(g->cu, g->err, ERR_CAP))) {
        dev_fail(g, d, NULL);
        return NULL;
    }
    rt_cublaslt_op *op = rt_cublaslt_prepare(g->lt, gm, g->err, ERR_CAP);
    if (!op) {
        char what[160];
        snprintf(what, sizeof what, "gemm %" PRId64 "x%" PRId64 "x%" PRId64, gm->M, gm->N, gm->K);
        dev_fail(g, d, what);
    }
    return op;
}

static void cuda_gemm_free(void *dev, void *h) { rt_cublaslt_op_free(((cuda_ctx *)dev)->g->lt, h); }

static bool cuda_gemm(void *dev, void *h, const rt_plan_gemm *gm, const rt_mem abcb[4], void *epi, const rt_mem *epi_args,
                      ir_diag *d)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    bool kernel = rt_cublaslt_kernel_epilogue(h); /* the epilogue kernel adds the bias (plan.h) */
    if (!rt_cublaslt_run(g->lt, h, addr(abcb[0]), addr(abcb[1]), addr(abcb[2]), kernel || !abcb[3].mem ? 0 : addr(abcb[3]),
                         g->stream, g->err, ERR_CAP)) {
        char what[160];
        snprintf(what, sizeof what, "gemm %" PRId64 "x%" PRId64 "x%" PRId64, gm->M, gm->N, gm->K);
        return dev_fail(g, d, what);
    }
    return !kernel || !epi || cuda_launch(dev, epi, &gm->epi, epi_args, d);
}

/* ---- sync, events ----------------------------------------------------------------------------- */

static bool cuda_sync(void *dev, ir_diag *d) { return rt_cuda_dev_sync(((cuda_ctx *)dev)->g, d); }

static void *cuda_event_new(void *dev)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    rt_cu_event ev = NULL;
    return CU(g, g->cu->EventCreate(&ev, 0)) ? (void *)ev : NULL;
}

static void cuda_event_free(void *dev, void *ev) { ((cuda_ctx *)dev)->g->cu->EventDestroy(ev); }

static bool cuda_event_record(void *dev, void *ev, ir_diag *d)
{
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    return CU(g, g->cu->EventRecord(ev, g->stream)) || dev_fail(g, d, "recording an event");
}

static double cuda_event_ms(void *dev, void *a, void *b)
{
    float ms = 0;
    rt_cuda_dev *g = ((cuda_ctx *)dev)->g;
    return CU(g, g->cu->EventElapsedTime(&ms, a, b)) ? ms : 0;
}

static rt_xfer *cuda_xfer(void *dev) { return &((cuda_ctx *)dev)->g->xfer; }

static const rt_backend_ops cuda_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .write = cuda_write,
    .read = cuda_read,
    .write_async = cuda_write_async,
    .copy = cuda_copy,
    .kernel = cuda_kernel_new,
    .kernel_free = cuda_kernel_free,
    .launch = cuda_launch,
    .gemm_prepare = cuda_gemm_prepare,
    .gemm_free = cuda_gemm_free,
    .gemm = cuda_gemm,
    .sync = cuda_sync,
    .event_new = cuda_event_new,
    .event_free = cuda_event_free,
    .event_record = cuda_event_record,
    .event_ms = cuda_event_ms,
    .xfer = cuda_xfer,
};

/* ---- the executor ------------------------------------------------------------------------------ */

rt_cuda_exec *rt_cuda_exec_new_on(rt_cuda_dev *g, const rt_plan *p, const char *const *ptx, int n_ptx,
                                  const rt_cuda_launch *launch, ir_diag *d)
{
    rt_cuda_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->c = (cuda_ctx){.g = g, .plan = p, .launch = launch};
    e->c.mod = calloc((size_t)n_ptx + 1, sizeof *e->c.mod);
    if (!e->c.mod)
        ir_unreachable("out of memory");
    for (int m = 0; m < n_ptx; m++, e->c.n_mod++)
        if (!rt_cuda_load_ptx(g->cu, ptx[m], &e->c.mod[m], g->err, ERR_CAP)) {
            char what[64];
            snprintf(what, sizeof what, "loading PTX module %d", m);
            dev_fail(g, d, what);
            rt_cuda_exec_free(e);
            return NULL;
        }
    e->w = rt_walker_new(p, &cuda_ops, &e->c, false, d);
    e->c.launch = NULL;
    if (!e->w) {
        rt_cuda_exec_free(e);
        return NULL;
    }
    return e;
}

rt_cuda_exec *rt_cuda_exec_new(const rt_plan *p, const char *const *ptx, int n_ptx, const rt_cuda_launch *launch,
                               ir_diag *d)
{
    rt_cuda_dev *g = rt_cuda_dev_open(d);
    if (!g)
        return NULL;
    rt_cuda_exec *e = rt_cuda_exec_new_on(g, p, ptx, n_ptx, launch, d);
    if (!e) {
        rt_cuda_dev_close(g);
        return NULL;
    }
    e->own_dev = true;
    return e;
}

void rt_cuda_exec_free(rt_cuda_exec *e)
{
    if (!e)
        return;
    rt_walker_free(e->w);
    for (int m = 0; m < e->c.n_mod; m++)
        e->c.g->cu->ModuleUnload(e->c.mod[m]);
    free(e->c.mod);
    if (e->own_dev)
        rt_cuda_dev_close(e->c.g);
    free(e);
}

bool rt_cuda_exec_bind(rt_cuda_exec *e, const char *name, const void *host, ir_diag *d)
{
    return rt_walker_bind(e->w, name, host, d);
}

bool rt_cuda_exec_run(rt_cuda_exec *e, ir_diag *d) { return rt_walker_run(e->w, d); }

void *rt_cuda_exec_output(rt_cuda_exec *e, const char *name)
{
    ir_diag d;
    ir_diag_init(&d);
    void *p = rt_walker_output(e->w, name, &d);
    if (!ir_diag_ok(&d))
        ir_diag_print(&d, stderr);
    ir_diag_free(&d);
    return p;
}

void rt_cuda_exec_profile(rt_cuda_exec *e, bool on) { rt_walker_profile(e->w, on); }

rt_exec_stats rt_cuda_exec_stats(const rt_cuda_exec *e) { return rt_walker_stats(e->w); }

rt_walker *rt_cuda_exec_walker(rt_cuda_exec *e) { return e->w; }
