/* gemm_opencl.c — the OpenCL executor's GEMM step: CLBlast for the product, a small kernel for
 * the epilogue (exec_opencl.h: rt_ocl_gemm).
 *
 * C[b] = act(alpha · op(A[b]) · op(B[b]) + beta · C[b] + bias) as gemm.h defines it. CLBlast
 * (row-major, element offsets into cl_mem buffers) computes alpha·AB + beta·C; a multi-dim
 * batch runs as CLBlastSgemmStridedBatched over its innermost dim and a host loop over the
 * others (CLBlast takes one stride per operand; stride 0 broadcasts A or B). The epilogue adds
 * the bias and applies the activation in place, over the same batch, as one more kernel —
 * CLBlast has no epilogue hook.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <inttypes.h>

#include "exec_opencl.h"
#include "gemm.h"

/* act: rt_act's values (gemm.h). The formulas are gemm_cpu.c's. */
static const char EPILOGUE_SOURCE[] =
    "\n/* GEMM epilogue (runtime/gemm_opencl.c): c = act(c + bias) over nb matrices M x N */\n"
    "__kernel void " RT_OCL_EPILOGUE_KERNEL "(__global float *c, const long c_off, __global const float *bias,\n"
    "        const long bias_off, const long has_bias, const long act, const long M, const long N,\n"
    "        const long ldc, const long nb, const long stride_c)\n"
    "{\n"
    "    c += c_off;\n"
    "    bias += bias_off;\n"
    "    const long total = nb * M * N;\n"
    "    for (long i = (long)get_global_id(0); i < total; i += (long)get_global_size(0)) {\n"
    "        const long n = i % N, r = i / N, m = r % M, b = r / M;\n"
    "        __global float *p = c + b * stride_c + m * ldc + n;\n"
    "        float x = *p;\n"
    "        if (has_bias)\n"
    "            x += bias[n];\n"
    "        if (act == 1)\n"
    "            x = 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));\n"
    "        else if (act == 2)\n"
    "            x = 0.5f * x * (1.0f + erf(x * 0.7071067811865476f));\n"
    "        else if (act == 3)\n"
    "            x = x > 0.0f ? x : 0.0f;\n"
    "        else if (act == 4)\n"
    "            x = x / (1.0f + exp(-x));\n"
    "        *p = x;\n"
    "    }\n"
    "}\n";

const char *rt_ocl_epilogue_source(void) { return EPILOGUE_SOURCE; }

void rt_ocl_gemm_release(void) { CLBlastClearCache(); }

static bool clblast_ok(CLBlastStatusCode s, const char *call, const rt_plan_gemm *g, ir_diag *d)
{
    if (s == CLBlastSuccess)
        return true;
    ir_diag_error(d, -1, 0, 0,
                  "CLBlast %s failed: status %d (M %" PRId64 ", N %" PRId64 ", K %" PRId64 ", trans %d/%d, ld %" PRId64
                  "/%" PRId64 "/%" PRId64 ")%s",
                  call, (int)s, g->M, g->N, g->K, g->trans_a, g->trans_b, g->lda, g->ldb, g->ldc,
                  s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure
                      ? "\n  ---> HINT: the device ran out of memory (a smaller batch or sequence may fit)"
                      : "");
    return false;
}

bool rt_ocl_gemm(rt_ocl *o, rt_ocl_program *prog, const rt_plan_gemm *g, rt_ocl_ref a, rt_ocl_ref b, rt_ocl_ref c,
                 rt_ocl_ref bias, ir_diag *d)
{
    size_t lda = (size_t)(g->lda ? g->lda : g->trans_a ? g->M : g->K);
    size_t ldb = (size_t)(g->ldb ? g->ldb : g->trans_b ? g->K : g->N);
    size_t ldc = (size_t)(g->ldc ? g->ldc : g->N);
    CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    cl_command_queue *queue = rt_ocl_queue_ptr(o);
    cl_mem ma = rt_ocl_buf_mem(a.buf), mb = rt_ocl_buf_mem(b.buf), mc = rt_ocl_buf_mem(c.buf);
    int inner = g->nbatch - 1; /* the dim CLBlast batches over; -1: none */
    int64_t count = inner >= 0 ? g->batch[inner] : 1, outer = 1;
    for (int i = 0; i < inner; i++)
        outer *= g->batch[i];
    bool epilogue = bias.buf || g->act != RT_ACT_NONE;
    for (int64_t ob = 0; ob < outer; ob++) {
        /* offsets of outer batch index ob (row-major over dims 0..inner-1) */
        size_t oa = a.offset, obb = b.offset, oc = c.offset;
        for (int64_t rest = ob, i = inner - 1; i >= 0; i--) {
            int64_t idx = rest % g->batch[i];
            rest /= g->batch[i];
            oa += (size_t)(idx * g->stride_a[i]);
            obb += (size_t)(idx * g->stride_b[i]);
            oc += (size_t)(idx * g->stride_c[i]);
        }
        CLBlastStatusCode s;
        if (count == 1) {
            s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)g->M, (size_t)g->N, (size_t)g->K, (float)g->alpha,
                             ma, oa, lda, mb, obb, ldb, (float)g->beta, mc, oc, ldc, queue, NULL);
            if (!clblast_ok(s, "CLBlastSgemm", g, d))
                return false;
        } else {
            s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, (size_t)g->M, (size_t)g->N, (size_t)g->K,
                                           (float)g->alpha, ma, oa, lda, (size_t)g->stride_a[inner], mb, obb, ldb,
                                           (size_t)g->stride_b[inner], (float)g->beta, mc, oc, ldc,
                                           (size_t)g->stride_c[inner], (size_t)count, queue, NULL);
            if (!clblast_ok(s, "CLBlastSgemmStridedBatched", g, d))
                return false;
        }
        if (!epilogue)
            continue;
        int64_t total = count * g->M * g->N;
        size_t local = 256, groups = (size_t)((total + 255) / 256);
        if (groups > 65536)
            groups = 65536;
        rt_ocl_arg args[11] = {
            rt_ocl_arg_buf(c.buf),
            rt_ocl_arg_i64((int64_t)oc),
            rt_ocl_arg_buf(bias.buf ? bias.buf : c.buf),
            rt_ocl_arg_i64((int64_t)bias.offset),
            rt_ocl_arg_i64(bias.buf != NULL),
            rt_ocl_arg_i64(g->act),
            rt_ocl_arg_i64(g->M),
            rt_ocl_arg_i64(g->N),
            rt_ocl_arg_i64((int64_t)ldc),
            rt_ocl_arg_i64(count),
            rt_ocl_arg_i64(inner >= 0 ? g->stride_c[inner] : 0),
        };
        if (!rt_ocl_launch(o, prog, RT_OCL_EPILOGUE_KERNEL, args, 11, groups, local, d))
            return false;
    }
    return true;
}
