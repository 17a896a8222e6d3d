/* gemm_source.c — OpenCL C text of a tiled GEMM with the bias fused into the store
 * (gemm_source.h: rt_ocl_gemm_variant_source), one kernel per rt_ocl_gemm_variant.
 *
 * The OpenCL executor picks among variants by timing them on the device at run time, `loom
 * build` executables included, so the text is rendered here in the runtime: libc only, no
 * kernel IR, no LLVM.
 *
 * Every variant computes the same numbers: each C element is one accumulator (a lane of a
 * float vector when vector > 1), fma'd over k in ascending order, then x = alpha·acc (+ beta·C)
 * (+ bias[n]) — so two variants agree bit for bit — except a dot_k variant
 * on transposed B (partial sums along k). CLBlast's order may differ in the last bits too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/opencl/gemm_source.h"

#include "ir/ir.h"

typedef struct {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            ir_unreachable("render_gemm_opencl: bad format");
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * t->cap + (size_t)n + 1;
        t->s = realloc(t->s, t->cap);
        if (!t->s)
            ir_unreachable("out of memory");
    }
}

bool rt_ocl_gemm_variant_valid(const rt_ocl_gemm_variant *v)
{
    if (v->tile_m < 1 || v->tile_n < 1 || v->tile_k < 1 || v->work_m < 1 || v->work_n < 1)
        return false;
    if (v->vector != 1 && v->vector != 2 && v->vector != 4 && v->vector != 8 && v->vector != 16)
        return false;
    if (v->work_n % v->vector)
        return false;
    if (v->dot_k && (v->vector != 1 || v->local_tiles || (v->dot_k != 4 && v->dot_k != 8 && v->dot_k != 16)))
        return false;
    if (v->tile_m % v->work_m || v->tile_n % v->work_n || v->tile_m > 256 || v->tile_n > 256 || v->tile_k > 64)
        return false;
    size_t wg = rt_ocl_gemm_variant_local(v);
    return wg >= 1 && wg <= RT_OCL_MAX_LOCAL && v->work_m * v->work_n <= 128;
}

size_t rt_ocl_gemm_variant_local(const rt_ocl_gemm_variant *v)
{
    return (size_t)(v->tile_m / v->work_m) * (size_t)(v->tile_n / v->work_n);
}

/* c<i>_<j> = fma(A element of row i, b<j>, c<i>_<j>) for every i < wm, j < jn; a_fmt names A's
 * element of row i (one %d). */
static void put_fmas(text *t, int wm, int jn, const char *a_fmt)
{
    char a_expr[64];
    for (int i = 0; i < wm; i++) {
        snprintf(a_expr, sizeof a_expr, a_fmt, i);
        put(t, "            { const VT a_ = (VT)%s;", a_expr);
        for (int j = 0; j < jn; j++)
            put(t, " c%d_%d = fma(a_, b%d, c%d_%d);", i, j, j, i, j);
        put(t, " }\n");
    }
}

/* The store: every element a work-item owns, inside C's bounds, gets the epilogue. */
static void put_store(text *t)
{
    put(t, "    const float alpha = as_float((int)alpha_bits), beta = as_float((int)beta_bits);\n"
           "    for (int i = 0; i < WM; i++) {\n"
           "        const long m = m0 + tm + i * RM;\n"
           "        if (m >= M)\n"
           "            break;\n"
           "        for (int j = 0; j < JN; j++) {\n"
           "            float e[VW];\n"
           "            VSTORE(acc[i][j], e);\n"
           "            for (int l = 0; l < VW; l++) {\n"
           "                const long n = n0 + (j * RN + tn) * VW + l;\n"
           "                if (n >= N)\n"
           "                    break;\n"
           "                float x = alpha * e[l];\n"
           "                if (beta != 0.0f) /* BLAS: beta 0 ignores C (no NaN from it) */\n"
           "                    x += beta * c[m * ldc + n];\n"
           "                if (flags & 4)\n"
           "                    x += bias[n];\n"
           "                c[m * ldc + n] = x;\n"
           "            }\n"
           "        }\n"
           "    }\n");
}

char *rt_ocl_gemm_variant_source(const rt_ocl_gemm_variant *v, const char *name)
{
    if (!rt_ocl_gemm_variant_valid(v))
        ir_unreachable("rt_ocl_gemm_variant_source: invalid variant");
    text t = {malloc(8192), 0, 8192};
    if (!t.s)
        ir_unreachable("out of memory");
    int vw = v->vector, rm = v->tile_m / v->work_m, rn = v->tile_n / v->work_n;
    put(&t, "\n/* GEMM %s (gemm_source.c): tile %dx%d, %dx%d per work-item in float%d vectors, %s",
        name, v->tile_m, v->tile_n, v->work_m, v->work_n, vw,
        v->local_tiles ? "A and B tiles in __local memory, k step " : "operands read from __global memory");
    if (v->local_tiles)
        put(&t, "%d", v->tile_k);
    put(&t, "%s */\n", v->dot_k ? ", transposed B as dot products along k" : "");
    /* macros scoped to this kernel: #undef'd at its end. VT: the accumulator type; VLOAD:
     * VW columns of a row; JN: vectors per work-item row */
    put(&t, "#define TM %d\n#define TN %d\n#define TK %d\n#define WM %d\n#define JN %d\n#define VW %d\n#define RM %d\n"
            "#define RN %d\n#define WG %d\n",
        v->tile_m, v->tile_n, v->tile_k, v->work_m, v->work_n / vw, vw, rm, rn, rm * rn);
    if (vw == 1)
        put(&t, "#define VT float\n#define VLOAD(p) (*(p))\n#define VSTORE(x, p) (*(p) = (x))\n");
    else
        put(&t, "#define VT float%d\n#define VLOAD(p) vload%d(0, p)\n#define VSTORE(x, p) vstore%d(x, 0, p)\n", vw, vw,
            vw);
    /* reqd_work_group_size: a launch with another local size fails instead of computing garbage */
    put(&t, "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
            "void %s(__global const float *a, const long a_off, __global const float *b, const long b_off,\n"
            "        __global float *c, const long c_off, __global const float *bias, const long bias_off,\n"
            "        const long M, const long N, const long K, const long lda, const long ldb, const long ldc,\n"
            "        const long flags, const long alpha_bits, const long beta_bits, const long nb,\n"
            "        const long stride_a, const long stride_b, const long stride_c)\n"
            "{\n",
        name);
    /* one work-group per (batch, TM x TN tile of C); work-item (tm, tn) owns rows tm + i*RM and
     * the VW columns from (j*RN + tn)*VW for j < JN: neighbouring work-items touch neighbouring
     * columns */
    put(&t, "    const long tiles_m = (M + TM - 1) / TM, tiles = tiles_m * ((N + TN - 1) / TN);\n"
            "    const long g = (long)get_group_id(0), bi = g / tiles, tile = g %% tiles;\n"
            "    if (bi >= nb)\n"
            "        return;\n"
            "    /* consecutive groups share a column strip of B (read from memory once, A's rows stay\n"
            "     * cached): on a CPU they run one after another on the same core */\n"
            "    const long m0 = tile %% tiles_m * TM, n0 = tile / tiles_m * TN;\n"
            "    const int lid = (int)get_local_id(0), tm = lid / RN, tn = lid %% RN;\n"
            "    const int ta = (int)(flags & 1), tb = (int)((flags >> 1) & 1);\n"
            "    a += a_off + bi * stride_a;\n"
            "    b += b_off + bi * stride_b;\n"
            "    c += c_off + bi * stride_c;\n"
            "    bias += bias_off;\n"
            "    /* element (m, k) of op(A) is a[m * am + k * ak]; (k, n) of op(B) is b[k * bk + n * bn] */\n"
            "    const long am = ta ? 1 : lda, ak = ta ? lda : 1, bk = tb ? 1 : ldb, bn = tb ? ldb : 1;\n"
            "    /* accumulators c<i>_<j> and operands: named variables in unrolled code, so the\n"
            "     * OpenCL compiler keeps them in registers (loops over private arrays did not) */\n");
    int wm = v->work_m, jn = v->work_n / vw;
    for (int i = 0; i < wm; i++)
        for (int j = 0; j < jn; j++)
            put(&t, "    VT c%d_%d = (VT)0.0f;\n", i, j);
    if (v->local_tiles) {
        /* cooperative loads walk the stored matrix's contiguous direction first (coalesced);
         * out-of-range elements load as 0, so edge tiles need no other test */
        put(&t, "    __local float As[TK][TM], Bs[TK][TN];\n"
                "    for (long k0 = 0; k0 < K; k0 += TK) {\n"
                "        for (int e = lid; e < TK * TM; e += WG) {\n"
                "            const int kk = ta ? e / TM : e %% TK, mm = ta ? e %% TM : e / TK;\n"
                "            const long m = m0 + mm, k = k0 + kk;\n"
                "            As[kk][mm] = m < M && k < K ? a[m * am + k * ak] : 0.0f;\n"
                "        }\n"
                "        for (int e = lid; e < TK * TN; e += WG) {\n"
                "            const int kk = tb ? e %% TK : e / TN, nn = tb ? e / TK : e %% TN;\n"
                "            const long n = n0 + nn, k = k0 + kk;\n"
                "            Bs[kk][nn] = n < N && k < K ? b[k * bk + n * bn] : 0.0f;\n"
                "        }\n"
                "        barrier(CLK_LOCAL_MEM_FENCE);\n"
                "        const int kn = K - k0 < TK ? (int)(K - k0) : TK;\n"
                "        for (int kk = 0; kk < kn; kk++) {\n");
        for (int j = 0; j < jn; j++)
            put(&t, "            const VT b%d = VLOAD(&Bs[kk][(%d * RN + tn) * VW]);\n", j, j);
        put_fmas(&t, wm, jn, "As[kk][tm + %d * RM]");
        put(&t, "        }\n"
                "        barrier(CLK_LOCAL_MEM_FENCE);\n"
                "    }\n");
    } else {
        /* no barriers: rows and columns past the edge are clamped to the last one (valid
         * memory; their results are not stored). A vector of B is one load where its VW
         * columns are contiguous and inside N, else VW loads */
        for (int i = 0; i < wm; i++)
            put(&t, "    __global const float *pa%d = a + (m0 + tm + %d * RM < M ? m0 + tm + %d * RM : M - 1) * am;\n", i,
                i, i);
        if (v->dot_k) {
            /* transposed B (rows of A and B both contiguous in k): float<dot_k> partial sums
             * along k, their lanes added at the end, then the k remainder */
            put(&t, "    if (tb && !ta) {\n");
            for (int j = 0; j < jn; j++)
                put(&t, "        __global const float *pb%d = b + (n0 + %d * RN + tn < N ? n0 + %d * RN + tn : N - 1) * ldb;\n",
                    j, j, j);
            for (int i = 0; i < wm; i++)
                for (int j = 0; j < jn; j++)
                    put(&t, "        float%d d%d_%d = (float%d)0.0f;\n", v->dot_k, i, j, v->dot_k);
            put(&t, "        long k = 0;\n"
                    "        for (; k + %d <= K; k += %d) {\n", v->dot_k, v->dot_k);
            for (int j = 0; j < jn; j++)
                put(&t, "            const float%d b%d = vload%d(0, pb%d + k);\n", v->dot_k, j, v->dot_k, j);
            for (int i = 0; i < wm; i++) {
                put(&t, "            { const float%d a_ = vload%d(0, pa%d + k);", v->dot_k, v->dot_k, i);
                for (int j = 0; j < jn; j++)
                    put(&t, " d%d_%d = fma(a_, b%d, d%d_%d);", i, j, j, i, j);
                put(&t, " }\n");
            }
            put(&t, "        }\n");
            for (int i = 0; i < wm; i++)
                for (int j = 0; j < jn; j++) {
                    put(&t, "        { float e[%d]; vstore%d(d%d_%d, 0, e); c%d_%d = e[0];", v->dot_k, v->dot_k, i, j,
                        i, j);
                    put(&t, " for (int l = 1; l < %d; l++) c%d_%d += e[l];", v->dot_k, i, j);
                    put(&t, " for (long r = k; r < K; r++) c%d_%d = fma(pa%d[r], pb%d[r], c%d_%d); }\n", i, j, i, j, i,
                        j);
                }
            put(&t, "    } else\n");
        }
        put(&t, "    if (!tb && n0 + TN <= N) { /* the common case: every B vector one load */\n"
                "        __global const float *bp = b + n0 + tn * VW;\n"
                "        for (long k = 0; k < K; k++, bp += ldb) {\n");
        for (int j = 0; j < jn; j++)
            put(&t, "            const VT b%d = VLOAD(bp + %d * RN * VW);\n", j, j);
        put_fmas(&t, wm, jn, "pa%d[k * ak]");
        put(&t, "        }\n"
                "    } else { /* right edge or transposed B: VW loads per vector, columns clamped */\n"
                "        __global const float *pb[JN][VW];\n"
                "        for (int j = 0; j < JN; j++)\n"
                "            for (int l = 0; l < VW; l++) {\n"
                "                const long n = n0 + (j * RN + tn) * VW + l;\n"
                "                pb[j][l] = b + (n < N ? n : N - 1) * bn;\n"
                "            }\n"
                "        for (long k = 0; k < K; k++) {\n"
                "            float e[JN][VW];\n"
                "            for (int j = 0; j < JN; j++)\n"
                "                for (int l = 0; l < VW; l++)\n"
                "                    e[j][l] = pb[j][l][k * bk];\n");
        for (int j = 0; j < jn; j++)
            put(&t, "            const VT b%d = VLOAD(e[%d]);\n", j, j);
        put_fmas(&t, wm, jn, "pa%d[k * ak]");
        put(&t, "        }\n"
                "    }\n");
    }
    put(&t, "    VT acc[WM][JN];\n");
    for (int i = 0; i < wm; i++)
        for (int j = 0; j < jn; j++)
            put(&t, "    acc[%d][%d] = c%d_%d;\n", i, j, i, j);
    put_store(&t);
    put(&t, "}\n#undef TM\n#undef TN\n#undef TK\n#undef WM\n#undef JN\n#undef VW\n#undef RM\n#undef RN\n#undef WG\n"
            "#undef VT\n#undef VLOAD\n#undef VSTORE\n");
    return t.s;
}
