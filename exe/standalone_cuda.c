/* standalone_cuda.c — a `loom build --target cuda` executable's device: the CUDA executor
 * (exec_cuda.h) on the payload's PTX and launch geometry. The driver API and cuBLASLt are
 * loaded with dlopen, so the executable starts anywhere and says "no CUDA driver found" where
 * there is none; no LLVM, OpenCL or CLBlast. */
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/exec_cuda.h"
#include "runtime/half.h"
#include "io/exe_payload.h"

static bool cuda_bind(void *ex, const char *name, const void *data, ir_diag *d) { return rt_cuda_exec_bind(ex, name, data, d); }
static bool cuda_run(void *ex, ir_diag *d) { return rt_cuda_exec_run(ex, d); }
static void *cuda_output(void *ex, const char *name) { return rt_cuda_exec_output(ex, name); }


/* "cuda_launch": u32 n_steps, then n_steps × (grid[3], block[3]) as u32. */
static rt_cuda_launch *decode_launch(const rt_plan_blob *b, const rt_plan *plan, const char *who, ir_diag *d)
{
    rt_rbuf r = {b->data, b->size, 0, false};
    uint32_t count = rt_rbuf_u32(&r);
    if (r.bad || count != (uint32_t)plan->n_steps) {
        ir_diag_error(d, -1, 0, 0, "%s: malformed 'cuda_launch' record", who);
        return NULL;
    }
    rt_cuda_launch *l = calloc((size_t)count + 1, sizeof *l);
    if (!l)
        ir_unreachable("out of memory");
    for (uint32_t s = 0; s < count; s++)
        for (int k = 0; k < 6; k++)
            (k < 3 ? l[s].grid : l[s].block)[k % 3] = rt_rbuf_u32(&r);
    if (r.bad) {
        ir_diag_error(d, -1, 0, 0, "%s: malformed 'cuda_launch' record", who);
        free(l);
        return NULL;
    }
    return l;
}

bool rt_standalone_run_cuda(const char *target, const rt_plan *plan, const rt_plan_blob *blobs, int n_blobs,
                            const rt_io_sig *sig, const ir_named_tensor *vals, int n_vals, bool stats,
                            ir_named_tensor **outs, int *n_outs, const char *who, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    const rt_plan_blob *lb = rt_standalone_need_blob(blobs, n_blobs, "cuda_launch", who, d);
    rt_cuda_launch *launch = lb ? decode_launch(lb, plan, who, d) : NULL;
    char *ptx = rt_standalone_blob_text(rt_plan_blob_find(blobs, n_blobs, "ptx"));
    const char *mods[1] = {ptx};
    if (launch && rt_plan_half_library(plan) != DT_VOID) { /* loom build refuses these; a payload may not */
        ir_diag_error(d, -1, 0, 0, "%s: the plan has half GEMM or attention steps, which the CUDA executor does not run",
                      who);
        free(launch);
        launch = NULL;
    }
    rt_cuda_exec *ex = launch ? rt_cuda_exec_new(plan, mods, ptx ? 1 : 0, launch, d) : NULL;
    free(ptx);
    free(launch);
    rt_standalone_exec dev = {ex, cuda_bind, cuda_run, cuda_output};
    bool ok = ex && rt_standalone_run_exec(&dev, target, plan, sig, vals, n_vals, stats, outs, n_outs, d);
    if (ex)
        rt_cuda_exec_free(ex);
    return ok;
}
