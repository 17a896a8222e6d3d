/* exec_opencl.c — the OpenCL executor (exec_opencl.h): the plan walker (runtime/exec.h) over
 * an OpenCL device's operations. One program holds the plan's kernels (library steps'
 * included, rendered from kernel IR by the caller) and the generated GEMMs; buffers are
 * rt_ocl_bufs with byte offsets, handed to kernels as (cl_mem, element offset) pairs.
 */
#include "runtime/clock.h"
#include "runtime/opencl/exec_opencl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The backend's state for one executor. */
typedef struct {
    rt_ocl *o;
    const rt_plan *plan;
    rt_ocl_program *prog;
    const rt_ocl_kernel_dims *dims; /* the caller's, during rt_ocl_exec_new only */
    int n_dims;
    rt_ocl_arg *args;               /* scratch: a kernel's arguments */
    int cap_args;
    char where[300];
} ocl_ctx;

struct rt_ocl_exec {
    ocl_ctx c;
    rt_walker *w;
    size_t device_bytes;
};

/* Appends s to the malloc'd string *dst. */
static void append(char **dst, size_t *len, const char *s)
{
    size_t n = strlen(s);
    *dst = realloc(*dst, *len + n + 1);
    if (!*dst)
        ir_unreachable("out of memory");
    memcpy(*dst + *len, s, n + 1);
    *len += n;
}

static rt_ocl_buf *buf_of(rt_mem m) { return m.mem; }

/* ---- memory ----------------------------------------------------------------------------------- */

static void *ocl_alloc(void *dev, size_t bytes, ir_diag *d)
{
    ocl_ctx *c = dev;
    rt_ocl_buf *b = rt_ocl_alloc(c->o, bytes, d);
    if (b && !rt_ocl_zero(c->o, b, d)) {
        rt_ocl_free(b);
        return NULL;
    }
    return b;
}

static void ocl_free(void *dev, void *mem)
{
    (void)dev;
    rt_ocl_free(mem);
}

static bool ocl_write(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d)
{
    return rt_ocl_write(((ocl_ctx *)dev)->o, buf_of(dst), dst.off, src, bytes, d);
}

static bool ocl_write_async(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d)
{
    return rt_ocl_write_async(((ocl_ctx *)dev)->o, buf_of(dst), dst.off, src, bytes, d);
}

static bool ocl_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    return rt_ocl_read(((ocl_ctx *)dev)->o, buf_of(src), src.off, dst, bytes, d);
}

static bool ocl_copy(void *dev, rt_mem dst, rt_mem src, size_t bytes, ir_diag *d)
{
    return rt_ocl_copy(((ocl_ctx *)dev)->o, buf_of(src), src.off, buf_of(dst), dst.off, bytes, d);
}

/* ---- kernels ----------------------------------------------------------------------------------- */

typedef struct {
    char *fn;               /* RT_OCL_KERNEL_PREFIX + the plan kernel's name */
    size_t groups, local;
} ocl_kernel;

static void *ocl_kernel_new(void *dev, const rt_plan_kernel *k, ir_diag *d)
{
    ocl_ctx *c = dev;
    const rt_ocl_kernel_dims *kd = NULL;
    for (int i = 0; i < c->n_dims && !kd; i++)
        if (strcmp(c->dims[i].name, k->name) == 0)
            kd = &c->dims[i];
    if (!kd) {
        ir_diag_error(d, -1, 0, 0, "opencl: kernel '%s' has no launch dims", k->name);
        return NULL;
    }
    ocl_kernel *h = malloc(sizeof *h);
    size_t n = strlen(RT_OCL_KERNEL_PREFIX) + strlen(k->name) + 1;
    char *fn = malloc(n);
    if (!h || !fn)
        ir_unreachable("out of memory");
    snprintf(fn, n, "%s%s", RT_OCL_KERNEL_PREFIX, k->name);
    *h = (ocl_kernel){fn, kd->groups, kd->local};
    return h;
}

static void ocl_kernel_free(void *dev, void *h)
{
    (void)dev;
    free(((ocl_kernel *)h)->fn);
    free(h);
}

/* (buffer, element offset) of argument memory m of plan buffer `buf`. */
static rt_ocl_ref ref_of(const ocl_ctx *c, int buf, rt_mem m)
{
    if (!m.mem)
        return (rt_ocl_ref){NULL, 0};
    return (rt_ocl_ref){buf_of(m), m.off / (size_t)ir_dtype_size(c->plan->bufs[buf].dtype)};
}

static bool ocl_launch(void *dev, void *handle, const rt_plan_kernel *k, const rt_mem *args, ir_diag *d)
{
    ocl_ctx *c = dev;
    const ocl_kernel *h = handle;
    if (2 * k->n_args > c->cap_args) {
        c->cap_args = 2 * k->n_args;
        c->args = realloc(c->args, sizeof *c->args * (size_t)c->cap_args);
        if (!c->args)
            ir_unreachable("out of memory");
    }
    for (int a = 0; a < k->n_args; a++) {
        rt_ocl_ref r = ref_of(c, k->args[a].buf, args[a]);
        c->args[2 * a] = rt_ocl_arg_buf(r.buf);
        c->args[2 * a + 1] = rt_ocl_arg_i64((int64_t)r.offset);
    }
    return rt_ocl_launch(c->o, c->prog, h->fn, c->args, 2 * k->n_args, h->groups, h->local, d);
}

/* GEMM (rt_ocl_gemm: CLBlast or a generated kernel, whichever was faster on the shape), then
 * the step's epilogue kernel, which adds the bias itself (plan.h). */
static bool ocl_gemm(void *dev, void *h, const rt_plan_gemm *g, const rt_mem abcb[4], void *epi, const rt_mem *epi_args,
                     ir_diag *d)
{
    (void)h;
    ocl_ctx *c = dev;
    rt_ocl_ref bias = epi ? (rt_ocl_ref){NULL, 0} : ref_of(c, g->bias.buf, abcb[3]);
    return rt_ocl_gemm(c->o, c->prog, g, ref_of(c, g->a.buf, abcb[0]), ref_of(c, g->b.buf, abcb[1]),
                       ref_of(c, g->c.buf, abcb[2]), bias, d) &&
           (!epi || ocl_launch(dev, epi, &g->epi, epi_args, d));
}

/* ---- sync, events, counters ------------------------------------------------------------------- */

static bool ocl_sync(void *dev, ir_diag *d) { return rt_ocl_finish(((ocl_ctx *)dev)->o, d); }

static void *ocl_event_new(void *dev)
{
    (void)dev;
    return calloc(1, sizeof(double));
}

static void ocl_event_free(void *dev, void *ev)
{
    (void)dev;
    free(ev);
}

/* The queue finished up to here, then the clock (PoCL's queues are not created for profiling). */
static bool ocl_event_record(void *dev, void *ev, ir_diag *d)
{
    bool ok = ocl_sync(dev, d);
    *(double *)ev = rt_now_ms();
    return ok;
}

static double ocl_event_ms(void *dev, void *a, void *b)
{
    (void)dev;
    return *(double *)b - *(double *)a;
}

static rt_xfer *ocl_xfer(void *dev) { return rt_ocl_xfer(((ocl_ctx *)dev)->o); }

static const char *ocl_where(void *dev) { return ((ocl_ctx *)dev)->where; }

static const rt_backend_ops ocl_ops = {
    .name = "opencl",
    .alloc = ocl_alloc,
    .free = ocl_free,
    .write = ocl_write,
    .read = ocl_read,
    .write_async = ocl_write_async,
    .copy = ocl_copy,
    .kernel = ocl_kernel_new,
    .kernel_free = ocl_kernel_free,
    .launch = ocl_launch,
    .gemm = ocl_gemm,
    .sync = ocl_sync,
    .event_new = ocl_event_new,
    .event_free = ocl_event_free,
    .event_record = ocl_event_record,
    .event_ms = ocl_event_ms,
    .xfer = ocl_xfer,
    .where = ocl_where,
};

/* ---- the executor ----------------------------------------------------------------------------- */

rt_ocl_exec *rt_ocl_exec_new(rt_ocl *o, const rt_plan *p, const char *kernel_source, const rt_ocl_kernel_dims *dims,
                             int n_dims, ir_diag *d)
{
    rt_ocl_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->c = (ocl_ctx){.o = o, .plan = p, .dims = dims, .n_dims = n_dims};
    snprintf(e->c.where, sizeof e->c.where, "on %s", rt_ocl_device_name(o));
    /* the program: the plan's kernels, then the GEMM kernels when the plan has GEMMs */
    char *src = NULL;
    size_t len = 0;
    append(&src, &len, kernel_source ? kernel_source : "/* loom: no generated kernels */\n");
    bool any_gemm = false, ok = true;
    for (int s = 0; s < p->n_steps; s++)
        any_gemm |= p->steps[s].kind == RT_STEP_GEMM;
    if (any_gemm) {
        char *gemm = rt_ocl_gemm_source();
        append(&src, &len, gemm);
        free(gemm);
        ok = rt_ocl_gemm_check_env(d);
    }
    if (ok) {
        e->c.prog = rt_ocl_build(o, src, "-cl-std=CL1.2", d);
        ok = e->c.prog != NULL;
    }
    free(src);
    if (ok)
        e->w = rt_walker_new(p, &ocl_ops, &e->c, false, d);
    e->c.dims = NULL;
    if (!e->w) {
        rt_ocl_exec_free(e);
        return NULL;
    }
    e->device_bytes = (size_t)p->arena_bytes;
    for (int i = 0; i < p->n_bufs; i++)
        if (p->bufs[i].kind != RT_BUF_ACTIVATION)
            e->device_bytes += (size_t)p->bufs[i].numel * (size_t)ir_dtype_size(p->bufs[i].dtype);
    return e;
}

void rt_ocl_exec_free(rt_ocl_exec *e)
{
    if (!e)
        return;
    rt_walker_free(e->w);
    free(e->c.args);
    free(e);
}

bool rt_ocl_exec_bind(rt_ocl_exec *e, const char *name, const void *data, ir_diag *d)
{
    return rt_walker_bind(e->w, name, data, d);
}

bool rt_ocl_exec_run(rt_ocl_exec *e, ir_diag *d) { return rt_walker_run(e->w, d); }

void *rt_ocl_exec_output(rt_ocl_exec *e, const char *name, ir_diag *d) { return rt_walker_output(e->w, name, d); }

void rt_ocl_exec_profile(rt_ocl_exec *e, bool on) { rt_walker_profile(e->w, on); }

rt_exec_stats rt_ocl_exec_stats_get(const rt_ocl_exec *e) { return rt_walker_stats(e->w); }

size_t rt_ocl_exec_device_bytes(const rt_ocl_exec *e) { return e->device_bytes; }

rt_walker *rt_ocl_exec_walker(rt_ocl_exec *e) { return e->w; }
