/* standalone_opencl.c — a `loom build --target opencl` executable's device: the OpenCL
 * executor (exec_opencl.h) on the payload's OpenCL C source and launch geometry, on the device
 * the target names (standalone.h). Needs the OpenCL ICD loader and CLBlast at run time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/opencl/exec_opencl.h"
#include "runtime/half.h"
#include "io/exe_payload.h"

static bool ocl_bind(void *ex, const char *name, const void *data, ir_diag *d) { return rt_ocl_exec_bind(ex, name, data, d); }
static bool ocl_run(void *ex, ir_diag *d) { return rt_ocl_exec_run(ex, d); }
static void *ocl_output(void *ex, const char *name)
{
    ir_diag d;
    ir_diag_init(&d);
    void *p = rt_ocl_exec_output(ex, name, &d);
    if (!ir_diag_ok(&d))
        ir_diag_print(&d, stderr);
    ir_diag_free(&d);
    return p;
}

/* "opencl_dims": u32 n, then n × (str name, u64 groups, u64 local). */
static rt_ocl_kernel_dims *decode_dims(const rt_plan_blob *b, int *n, const char *who, ir_diag *d)
{
    rt_rbuf r = {b->data, b->size, 0, false};
    uint32_t count = rt_rbuf_u32(&r);
    if (r.bad || count > b->size) {
        ir_diag_error(d, -1, 0, 0, "%s: malformed 'opencl_dims' record", who);
        return NULL;
    }
    rt_ocl_kernel_dims *dims = calloc((size_t)count + 1, sizeof *dims);
    if (!dims)
        ir_unreachable("out of memory");
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        dims[i].name = rt_rbuf_str(&r);
        dims[i].groups = (size_t)rt_rbuf_u64(&r);
        dims[i].local = (size_t)rt_rbuf_u64(&r);
    }
    *n = (int)count;
    if (r.bad) {
        ir_diag_error(d, -1, 0, 0, "%s: malformed 'opencl_dims' record", who);
        for (uint32_t i = 0; i < count; i++)
            free((char *)dims[i].name);
        free(dims);
        return NULL;
    }
    return dims;
}

bool rt_standalone_run_opencl(const char *target, const rt_plan *plan, const rt_plan_blob *blobs, int n_blobs,
                              const rt_io_sig *sig, const ir_named_tensor *vals, int n_vals, bool stats,
                              ir_named_tensor **outs, int *n_outs, const char *who, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    const rt_plan_blob *db = rt_standalone_need_blob(blobs, n_blobs, "opencl_dims", who, d);
    int n_dims = 0;
    rt_ocl_kernel_dims *dims = db ? decode_dims(db, &n_dims, who, d) : NULL;
    if (dims && rt_plan_half_library(plan) != DT_VOID) { /* loom build refuses these; a payload may not */
        ir_diag_error(d, -1, 0, 0, "%s: the plan has half GEMM or attention steps, which the OpenCL executor does not run",
                      who);
        for (int i = 0; i < n_dims; i++)
            free((char *)dims[i].name);
        free(dims);
        dims = NULL;
    }
    rt_ocl *o = dims ? rt_ocl_open(target, d) : NULL;
    char *text = rt_standalone_blob_text(rt_plan_blob_find(blobs, n_blobs, "opencl_source"));
    rt_ocl_exec *ex = o ? rt_ocl_exec_new(o, plan, text, dims, n_dims, d) : NULL;
    free(text);
    for (int i = 0; dims && i < n_dims; i++)
        free((char *)dims[i].name);
    free(dims);
    rt_standalone_exec dev = {ex, ocl_bind, ocl_run, ocl_output};
    bool ok = ex && rt_standalone_run_exec(&dev, target, plan, sig, vals, n_vals, stats, outs, n_outs, d);
    if (ex)
        rt_ocl_exec_free(ex);
    if (o)
        rt_ocl_close(o);
    return ok;
}
