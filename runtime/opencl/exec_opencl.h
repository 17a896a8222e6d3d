/* exec_opencl.h — the OpenCL executor: runs an execution plan (plan.h) on one OpenCL device.
 *
 * rt_ocl_exec_new allocates, on the device of an open rt_ocl, one arena buffer of the plan's
 * arena_bytes for every activation (each at its planned offset), one buffer per param, input and
 * output, and builds one program: the plan's kernels (OpenCL C from codegen's
 * cg_opencl_source_offsets, handed in as text with each kernel's launch geometry — the runtime
 * never sees kernel IR) plus the executor's own kernels, generated here as text: the GEMM
 * epilogue (bias, activation) and one attention kernel per attention step. The build goes
 * through rt_ocl_build (memory and disk program caches; a failed build names the kernel and
 * shows the compiler's log).
 *
 * Buffers are passed to kernels as (cl_mem, element offset) pairs, never as sub-buffers: a
 * sub-buffer's origin must be aligned to CL_DEVICE_MEM_BASE_ADDR_ALIGN (up to 4 KiB on GPUs),
 * plan offsets are 64-byte aligned and views start at any element.
 *
 * Steps: KERNEL → the kernel launched with its geometry; GEMM → rt_ocl_gemm (gemm_opencl.c):
 * CLBlast (CLBlastSgemm, or CLBlastSgemmStridedBatched over the innermost batch dim, a host loop
 * over outer batch dims) then the epilogue kernel when there is a bias or an activation, or a
 * generated tiled kernel with the bias fused, whichever was faster on the shape's first run,
 * then the step's epilogue kernel (plan.h) when it has one; ATTENTION → the generated
 * kernel (one work-group per (batch, head, block of query rows), one work-item per query row,
 * K and V tiles in __local memory, online softmax: no T×S buffer); COPY → clEnqueueCopyBuffer;
 * CHECK_IDS → the ids read back and checked on the host ("WHAT: id X is outside [lo, hi)",
 * before any gather can read out of bounds); WRITE_ROWS → position read back, device copies
 * (an INPUT destination is read back into the caller's bound memory too); SUM_ROWS → a small
 * kernel adding rows in order; SCATTER_ADD → a kernel, one work-item per column adding rows
 * in id order (deterministic); ATTENTION_GRAD → two generated kernels (attention_opencl.c:
 * per query row dq, dmask and the row statistics, then per key dk, dv; deterministic), or
 * host staging through attention_grad_cpu.c when LOOM_OCL_HOST_AGRAD=1 (the reference path).
 *
 * Params and inputs are uploaded when bound and stay on the device across runs (rebind to
 * change them); outputs are read back on request, once per run. One run at a time.
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

/* attention_opencl.c: the OpenCL C text of an attention kernel called name for step a (sizes,
 * strides, scale and causality baked in; with_mask: reads the mask), malloc'd, and its launch
 * geometry. Parameters: q, q_off, k, k_off, v, v_off, mask, mask_off, out, out_off. */
char *rt_ocl_attention_source(const rt_plan_attention *a, const char *name, bool with_mask, size_t *groups,
                              size_t *local);
/* attention_opencl.c: the OpenCL C text of attention-gradient step g as two kernels, NAME_rows
 * (launch row_groups × local) then NAME_keys (key_groups × local), malloc'd. Both take q, k, v,
 * mask, dy, stats, dq, dk, dv, dmask, each a (buffer, element offset) pair; stats is scratch of
 * 3·B·H·T floats written by NAME_rows and read by NAME_keys; absent operands: any buffer. */
char *rt_ocl_attention_grad_source(const rt_plan_attention_grad *g, const char *name, size_t *row_groups,
                                   size_t *key_groups, size_t *local);

#endif
