/* exec_opencl.h — the OpenCL executor: runs an execution plan (plan.h) on one OpenCL device,
 * as the plan walker (runtime/exec.h) over the device's operations (exec_opencl.c).
 *
 * rt_ocl_exec_new builds one program on an open rt_ocl: the plan's kernels — kernel steps,
 * GEMM epilogues and the library steps' kernels (plan.h "Library steps as kernels"), OpenCL C
 * the caller rendered from kernel IR (codegen's cg_opencl_source_offsets) with each kernel's
 * launch geometry; the runtime never sees kernel IR — plus the generated GEMM kernels, through
 * rt_ocl_build (memory and disk program caches; a failed build names the kernel and shows the
 * compiler's log). The arena (the plan's arena_bytes, every activation at its planned offset)
 * is allocated then; params and inputs on first bind, outputs on first run (buffers bound to
 * device memory elsewhere need none: rt_walker_bind_mem).
 *
 * Buffers are passed to kernels as (cl_mem, element offset) pairs, never as sub-buffers: a
 * sub-buffer's origin must be aligned to CL_DEVICE_MEM_BASE_ADDR_ALIGN (up to 4 KiB on GPUs),
 * plan offsets are 64-byte aligned and views start at any element.
 *
 * Steps: KERNEL and the library steps (ATTENTION, ATTENTION_GRAD, SUM_ROWS, SCATTER_ADD,
 * WRITE_ROWS) → their kernels; GEMM → rt_ocl_gemm (gemm_opencl.c): CLBlast (CLBlastSgemm, or
 * CLBlastSgemmStridedBatched over the innermost batch dim, a host loop over outer batch dims)
 * then the bias kernel, or a generated tiled kernel with the bias fused, whichever was faster
 * on the shape's first run, then the step's epilogue kernel (plan.h) when it has one; COPY →
 * clEnqueueCopyBuffer; CHECK_IDS and a cache write's position → checked on the host (the data
 * the caller bound, or read back), before any kernel can index out of bounds.
 *
 * One queue per device: executors sharing an rt_ocl run in the order their work was enqueued.
 */
#ifndef LOOM_RT_EXEC_OPENCL_H
#define LOOM_RT_EXEC_OPENCL_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/diag.h"
#include "plan/exec_stats.h"
#include "runtime/opencl/opencl.h"
#include "plan/plan.h"

/* OpenCL function names of plan kernels: this prefix + the plan's kernel name (codegen.h's
 * CG_OPENCL_PREFIX). */
#define RT_OCL_KERNEL_PREFIX "loom_"

/* The launch geometry of plan kernel `name` (codegen's cg_opencl_launch_dims). */
typedef struct {
    const char *name;
    size_t groups, local;
} rt_ocl_kernel_dims;

typedef struct rt_ocl_exec rt_ocl_exec;

/* Prepares plan p (which must outlive the executor) on device o (likewise): buffers, and one
 * program from kernel_source (the plan's kernels, each buffer parameter followed by a long
 * element offset; NULL when the plan has no kernel steps) and the executor's kernels. dims
 * holds one entry per kernel step's kernel. NULL on error (reported through d). */
rt_ocl_exec *rt_ocl_exec_new(rt_ocl *o, const rt_plan *p, const char *kernel_source, const rt_ocl_kernel_dims *dims,
                             int n_dims, ir_diag *d);
void rt_ocl_exec_free(rt_ocl_exec *e);

/* Uploads data (in the buffer's dtype) to the param or input called name. False (reported)
 * if the plan has none or the upload fails. */
bool rt_ocl_exec_bind(rt_ocl_exec *e, const char *name, const void *data, ir_diag *d);

/* Enqueues every step and waits for the device. False on an unbound param/input, a failed id
 * check or an OpenCL/CLBlast error, reported through d. */
bool rt_ocl_exec_run(rt_ocl_exec *e, ir_diag *d);

/* The output called name as host memory (read back on the first call after a run; valid until
 * the next run or rt_ocl_exec_free), or NULL (no such output, or the read failed: reported). */
void *rt_ocl_exec_output(rt_ocl_exec *e, const char *name, ir_diag *d);

/* Profiling: wait for the device after every step and sum wall times by step kind. */
void rt_ocl_exec_profile(rt_ocl_exec *e, bool on);
rt_exec_stats rt_ocl_exec_stats_get(const rt_ocl_exec *e);

/* Device bytes the executor holds (arena + params + inputs + outputs). */
size_t rt_ocl_exec_device_bytes(const rt_ocl_exec *e);
/* The plan walker underneath (runtime/exec.h: binding device memory, async runs). */
rt_walker *rt_ocl_exec_walker(rt_ocl_exec *e);

/* ---- pieces of the executor ------------------------------------------------------------------ */

/* A buffer and an element offset into it. */
typedef struct {
    rt_ocl_buf *buf;
    size_t offset;
} rt_ocl_ref;

/* gemm_opencl.c: the OpenCL C text of the bias kernel run after CLBlast (RT_OCL_EPILOGUE_KERNEL:
 * c += bias over a batch of C matrices). An activation is the plan's epilogue kernel (plan.h),
 * launched by the executor after rt_ocl_gemm. */
#define RT_OCL_EPILOGUE_KERNEL "loomrt_gemm_epilogue"
const char *rt_ocl_epilogue_source(void);
/* gemm_opencl.c: the epilogue kernel and every generated GEMM variant (codegen.h's
 * rt_ocl_gemm_source), malloc'd: what a plan with GEMM steps adds to its program. */
char *rt_ocl_gemm_source(void);
/* gemm_opencl.c: false (reported) when LOOM_OCL_GEMM is not auto, clblast, generated or
 * generated:I. */
bool rt_ocl_gemm_check_env(ir_diag *d);
/* Runs GEMM step g's C = alpha·op(A)·op(B) + beta·C + bias (plan.h, gemm.h semantics; not its
 * epilogue kernel, which the executor launches after) with CLBlast and the bias kernel of prog,
 * or a generated kernel of prog, whichever was fastest the first time this shape ran on this
 * device (LOOM_OCL_GEMM: auto, clblast, generated); bias.buf NULL: none. */
bool rt_ocl_gemm(rt_ocl *o, rt_ocl_program *prog, const rt_plan_gemm *g, rt_ocl_ref a, rt_ocl_ref b, rt_ocl_ref c,
                 rt_ocl_ref bias, ir_diag *d);
/* Frees CLBlast's compiled-kernel cache (rt_ocl_gemm registers it with rt_ocl_on_close: the
 * cache holds programs of the closed context). */
void rt_ocl_gemm_release(void);

#endif
