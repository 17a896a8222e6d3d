/* program_opencl.c — program.h's backend for `--target opencl[:PLATFORM[:DEVICE]]`: the plan's
 * kernels rendered to OpenCL C (cg_opencl_source_offsets) with their launch geometry, and the
 * OpenCL executor (runtime/opencl/exec_opencl.c) on the device the target names (rt_ocl_open: the
 * first platform with a device and its first device when not told). The device (a context and
 * one queue) is a program_device: a program of its own, or shared by the programs made on it
 * (program_new_device), whose buffers are rt_ocl_bufs; programs are cached by source hash in
 * memory and on disk (runtime/opencl/opencl.c).
 */
#include <stdio.h>
#include <stdlib.h>

#include "codegen/codegen.h"
#include "runtime/opencl/exec_opencl.h"
#include "runtime/half.h"
#include "runtime/opencl/opencl.h"
#include "engine/program.h"

typedef struct {
    rt_ocl *o;       /* the device's: not owned */
    rt_ocl_exec *ex;
} ocl_state;

static void ocl_destroy(void *state)
{
    ocl_state *s = state;
    rt_ocl_exec_free(s->ex);
    free(s);
}

static void *ocl_create_dev(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                            ir_diag *d)
{
    (void)pool;
    _Static_assert(sizeof CG_OPENCL_PREFIX == sizeof RT_OCL_KERNEL_PREFIX, "kernel name prefixes differ");
    ocl_state *s = calloc(1, sizeof *s);
    if (!s)
        ir_unreachable("out of memory");
    s->o = dev;
    char *src = NULL;
    rt_ocl_kernel_dims *dims = calloc((size_t)n_kernels + 1, sizeof *dims);
    if (!dims)
        ir_unreachable("out of memory");
    bool ok = s->o != NULL;
    ir_dtype half = rt_plan_half_library(plan);
    if (ok && half != DT_VOID) { /* lower-precision keeps them in f32 here (f32_library) */
        ir_diag_error(d, -1, 0, 0, "opencl: %s GEMM and attention steps are not supported by the OpenCL executor; "
                      "--precision runs them in f32 on half values", ir_dtype_name(half));
        ok = false;
    }
    if (ok && n_kernels > 0) {
        src = cg_opencl_source_offsets(kernels, n_kernels, d);
        ok = src != NULL;
    }
    for (int i = 0; ok && i < n_kernels; i++) {
        dims[i].name = kernels[i]->name;
        cg_opencl_launch_dims(kernels[i], &dims[i].groups, &dims[i].local);
    }
    if (ok) {
        s->ex = rt_ocl_exec_new(s->o, plan, src, dims, n_kernels, d);
        ok = s->ex != NULL;
    }
    free(src);
    free(dims);
    if (!ok) {
        ocl_destroy(s);
        return NULL;
    }
    return s;
}


static bool ocl_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_ocl_exec_bind(((ocl_state *)state)->ex, name, data, d);
}

static bool ocl_run(void *state, ir_diag *d) { return rt_ocl_exec_run(((ocl_state *)state)->ex, d); }

static void *ocl_output(void *state, const char *name)
{
    ir_diag d;
    ir_diag_init(&d);
    void *p = rt_ocl_exec_output(((ocl_state *)state)->ex, name, &d);
    if (!ir_diag_ok(&d))
        ir_diag_print(&d, stderr);
    ir_diag_free(&d);
    return p;
}

static void ocl_profile(void *state, bool on) { rt_ocl_exec_profile(((ocl_state *)state)->ex, on); }

static rt_exec_stats ocl_stats(const void *state) { return rt_ocl_exec_stats_get(((const ocl_state *)state)->ex); }

/* ---- the device ---------------------------------------------------------------------------- */

static void *ocl_dev_open(const char *target, ir_diag *d) { return rt_ocl_open(target, d); }
static void ocl_dev_close(void *dev) { rt_ocl_close(dev); }
static rt_walker *ocl_walker(void *state) { return rt_ocl_exec_walker(((ocl_state *)state)->ex); }

static void *ocl_buf_alloc(void *dev, size_t bytes, ir_diag *d)
{
    rt_ocl_buf *b = rt_ocl_alloc(dev, bytes, d);
    if (b && !rt_ocl_zero(dev, b, d)) {
        rt_ocl_free(b);
        return NULL;
    }
    return b;
}

static void ocl_buf_free(void *dev, void *mem)
{
    (void)dev;
    rt_ocl_free(mem);
}

static bool ocl_buf_write(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d)
{
    return async ? rt_ocl_write_async(dev, dst.mem, dst.off, src, bytes, d) : rt_ocl_write(dev, dst.mem, dst.off, src, bytes, d);
}

static bool ocl_buf_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    return rt_ocl_read(dev, src.mem, src.off, dst, bytes, d);
}

static bool ocl_dev_sync(void *dev, ir_diag *d) { return rt_ocl_finish(dev, d); }
static rt_xfer ocl_dev_xfer(void *dev) { return *rt_ocl_xfer(dev); }

/* create_on: the target names a device after "opencl" ("opencl:1:0") */
const program_backend program_backend_opencl = {
    .target = "opencl",
    .destroy = ocl_destroy,
    .bind = ocl_bind,
    .run = ocl_run,
    .output = ocl_output,
    .profile = ocl_profile,
    .stats = ocl_stats,
    .create_on = NULL,
    .dev_open = ocl_dev_open,
    .dev_close = ocl_dev_close,
    .create_dev = ocl_create_dev,
    .walker = ocl_walker,
    .buf_alloc = ocl_buf_alloc,
    .buf_free = ocl_buf_free,
    .buf_write = ocl_buf_write,
    .buf_read = ocl_buf_read,
    .dev_sync = ocl_dev_sync,
    .dev_xfer = ocl_dev_xfer,
    .f32_library = true,
};
