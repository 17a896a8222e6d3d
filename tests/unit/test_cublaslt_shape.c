/* test_cublaslt_shape.c — the mapping of plan GEMMs onto cuBLASLt's column-major problem
 * (rt_cublaslt_shape_of, runtime/cuda/cublaslt.h), checked without a GPU: a column-major GEMM
 * written here with cuBLASLt's documented semantics (op(A) rows × cols with leading dim ld,
 * strided batches, D = act(alpha·op(A)·op(B) + beta·C + bias[row])), driven only by the shape
 * description (operands swapped as the mapping says, outer batch dims looped), must give what
 * the CPU GEMM (rt_gemm_f32) gives for the same plan GEMM: random sizes, both transposes,
 * padded leading dims, up to 3 batch dims with mergeable and broadcast (stride 0) strides,
 * alpha, beta, bias, relu and gelu-tanh (the CPU side applies them as rt_gemm's epilogue
 * function). Tolerance |err| <= 1e-4 · max(1, |cpu|); the max error is printed. Also: erf-GELU
 * and SiLU map to a bare GEMM followed by the plan's epilogue kernel, relu and tanh-gelu to
 * cuBLASLt's epilogues, and an activation without epilogue kernel is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cublaslt.h"
#include "runtime/cpu/gemm_cpu.h"
#include "test_check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1p-53;
}
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(urand() * (double)(hi - lo + 1)); }

/* cuBLASLt's epilogues (cublasLt.h's values): the activation, and whether the bias is added
 * (cuBLASLt ignores a bias pointer under an epilogue without BIAS) */
static double act(cublasLtEpilogue_t epilogue, double x)
{
    if (epilogue == CUBLASLT_EPILOGUE_RELU || epilogue == CUBLASLT_EPILOGUE_RELU_BIAS)
        return x > 0 ? x : 0;
    if (epilogue == CUBLASLT_EPILOGUE_GELU || epilogue == CUBLASLT_EPILOGUE_GELU_BIAS)
        return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    return x;
}

static bool adds_bias(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS;
}

/* cuBLASLt's semantics on host memory: A, B, C are operands 0, 1, 2 of s (our b, a, c). */
static void lt_reference(const rt_cublaslt_shape *s, float alpha, float beta, const float *A, const float *B, float *C,
                         const float *bias)
{
    int64_t m = (int64_t)(s->op[0] ? s->cols[0] : s->rows[0]), k = (int64_t)(s->op[0] ? s->rows[0] : s->cols[0]);
    int64_t kb = (int64_t)(s->op[1] ? s->cols[1] : s->rows[1]), n = (int64_t)(s->op[1] ? s->rows[1] : s->cols[1]);
    CHECK(k == kb && (uint64_t)m == s->rows[2] && (uint64_t)n == s->cols[2], "operand shapes disagree");
    int64_t idx[RT_PLAN_MAX_BATCH] = {0};
    for (int64_t call = 0; call < s->calls; call++) {
        int64_t off[3] = {0, 0, 0};
        for (int i = 0; i < s->nouter; i++)
            for (int o = 0; o < 3; o++)
                off[o] += idx[i] * s->outer_stride[i][o];
        for (int32_t b = 0; b < s->count; b++) {
            const float *a = A + off[0] + b * s->stride[0], *bb = B + off[1] + b * s->stride[1];
            float *c = C + off[2] + b * s->stride[2];
            for (int64_t r = 0; r < m; r++)
                for (int64_t col = 0; col < n; col++) {
                    double acc = 0;
                    for (int64_t t = 0; t < k; t++) {
                        double x = s->op[0] ? a[t + r * s->ld[0]] : a[r + t * s->ld[0]];
                        double y = s->op[1] ? bb[col + t * s->ld[1]] : bb[t + col * s->ld[1]];
                        acc += x * y;
                    }
                    double v = alpha * acc + (beta != 0 ? beta * c[r + col * s->ld[2]] : 0) + (bias && adds_bias(s->epilogue) ? bias[r] : 0);
                    c[r + col * s->ld[2]] = (float)act(s->epilogue, v);
                }
        }
        for (int i = s->nouter - 1; i >= 0; i--) {
            if (++idx[i] < s->outer[i])
                break;
            idx[i] = 0;
        }
    }
}

/* The CPU side's activation (rt_gemm's epilogue function, as the plan's epilogue kernel would
 * be): C = act(C) over rows [row0, row1) of the batch, row b·M + r being row r of C[b]. */
typedef struct {
    const rt_plan_gemm *g;
    float *C;
} cpu_act_ctx;

static void cpu_act(void *ctx, int64_t row0, int64_t row1)
{
    const cpu_act_ctx *e = ctx;
    const rt_plan_gemm *g = e->g;
    cublasLtEpilogue_t epilogue = g->act == RT_ACT_RELU        ? CUBLASLT_EPILOGUE_RELU
                                  : g->act == RT_ACT_GELU_TANH ? CUBLASLT_EPILOGUE_GELU
                                                               : CUBLASLT_EPILOGUE_DEFAULT;
    int64_t ldc = g->ldc ? g->ldc : g->N;
    for (int64_t row = row0; row < row1; row++) {
        int64_t b = row / g->M, oc = row % g->M * ldc;
        for (int i = g->nbatch - 1; i >= 0; i--) {
            oc += b % g->batch[i] * g->stride_c[i];
            b /= g->batch[i];
        }
        for (int64_t j = 0; j < g->N; j++)
            e->C[oc + j] = (float)act(epilogue, e->C[oc + j]);
    }
}

static int one_case(int c)
{
    rt_plan_gemm g;
    memset(&g, 0, sizeof g);
    g.M = irand(1, 12), g.N = irand(1, 12), g.K = irand(1, 12);
    g.trans_a = (int)irand(0, 1), g.trans_b = (int)irand(0, 1);
    int64_t ra = g.trans_a ? g.K : g.M, ca = g.trans_a ? g.M : g.K, rb = g.trans_b ? g.N : g.K, cb = g.trans_b ? g.K : g.N;
    g.lda = irand(0, 1) ? 0 : ca + irand(0, 3);
    g.ldb = irand(0, 1) ? 0 : cb + irand(0, 3);
    g.ldc = irand(0, 1) ? 0 : g.N + irand(0, 3);
    int64_t lda = g.lda ? g.lda : ca, ldb = g.ldb ? g.ldb : cb, ldc = g.ldc ? g.ldc : g.N;
    g.nbatch = (int)irand(0, 3);
    int64_t size_a = ra * lda, size_b = rb * ldb, size_c = g.M * ldc;
    bool bcast_a = irand(0, 3) == 0, bcast_b = !bcast_a && irand(0, 3) == 0;
    for (int i = g.nbatch - 1; i >= 0; i--) { /* packed (mergeable) strides, sometimes padded */
        g.batch[i] = irand(1, 3);
        int64_t pad = irand(0, 2) == 0 ? irand(1, 5) : 0;
        g.stride_a[i] = bcast_a && i == g.nbatch - 1 ? 0 : size_a + pad;
        g.stride_b[i] = bcast_b ? 0 : size_b + pad;
        g.stride_c[i] = size_c + pad;
        size_a = g.stride_a[i] ? g.stride_a[i] * g.batch[i] : size_a;
        size_b = g.stride_b[i] ? g.stride_b[i] * g.batch[i] : size_b;
        size_c = g.stride_c[i] * g.batch[i];
    }
    g.alpha = irand(0, 1) ? 1.0 : 0.5 + urand();
    g.beta = irand(0, 2) == 0 ? 0.75 : 0.0;
    static const int acts[] = {RT_ACT_NONE, RT_ACT_RELU, RT_ACT_GELU_TANH};
    g.act = acts[irand(0, 2)];
    bool has_bias = irand(0, 1);
    g.bias.buf = has_bias ? 3 : -1;
    float *A = malloc(sizeof(float) * (size_t)size_a), *B = malloc(sizeof(float) * (size_t)size_b);
    float *C0 = malloc(sizeof(float) * (size_t)size_c), *C1 = malloc(sizeof(float) * (size_t)size_c);
    float *bias = malloc(sizeof(float) * (size_t)g.N);
    for (int64_t i = 0; i < size_a; i++)
        A[i] = (float)(urand() * 2 - 1);
    for (int64_t i = 0; i < size_b; i++)
        B[i] = (float)(urand() * 2 - 1);
    for (int64_t i = 0; i < size_c; i++)
        C0[i] = C1[i] = (float)(urand() * 2 - 1);
    for (int64_t i = 0; i < g.N; i++)
        bias[i] = (float)(urand() * 2 - 1);

    rt_gemm_desc desc = rt_gemm_desc_make(g.M, g.N, g.K); /* as exec_cpu.c's run_gemm */
    desc.nbatch = g.nbatch;
    for (int i = 0; i < g.nbatch; i++) {
        desc.batch[i] = g.batch[i];
        desc.stride_a[i] = g.stride_a[i], desc.stride_b[i] = g.stride_b[i], desc.stride_c[i] = g.stride_c[i];
    }
    desc.trans_a = g.trans_a, desc.trans_b = g.trans_b;
    desc.lda = g.lda, desc.ldb = g.ldb, desc.ldc = g.ldc;
    desc.alpha = g.alpha, desc.beta = g.beta;
    desc.bias = has_bias ? bias : NULL;
    cpu_act_ctx actx = {&g, C0};
    if (g.act != RT_ACT_NONE)
        desc.epilogue = cpu_act, desc.epilogue_ctx = &actx;
    CHECK(rt_gemm_f32(&desc, A, B, C0) == 0, "%s", rt_gemm_validate(&desc));

    rt_cublaslt_shape s;
    char err[256];
    CHECK(rt_cublaslt_shape_of(&g, &s, err, sizeof err), "%s", err);
    lt_reference(&s, (float)g.alpha, (float)g.beta, B, A, C1, has_bias ? bias : NULL); /* operand 0 is our b */
    double worst = 0;
    for (int64_t i = 0; i < size_c; i++)
        worst = fmax(worst, fabs((double)C1[i] - C0[i]) / fmax(1.0, fabs((double)C0[i])));
    bool ok = worst <= 1e-4;
    if (!ok || c < 3)
        printf("case %2d: M %lld N %lld K %lld ta %d tb %d batch %d (cuBLASLt batch %d, %lld host calls) act %d bias %d: "
               "max rel err %.2e %s\n",
               c, (long long)g.M, (long long)g.N, (long long)g.K, g.trans_a, g.trans_b, g.nbatch, s.count,
               (long long)s.calls, g.act, has_bias, worst, ok ? "OK" : "FAIL");
    free(A), free(B), free(C0), free(C1), free(bias);
    return ok ? 0 : 1;
}

int main(void)
{
    int failed = 0, merged = 0;
    for (int c = 0; c < 300; c++)
        failed += one_case(c);
    /* merging: two packed batch dims become one cuBLASLt batch */
    rt_plan_gemm g = {.nbatch = 2, .batch = {3, 4}, .stride_a = {4 * 6, 6}, .stride_b = {4 * 10, 10},
                      .stride_c = {4 * 15, 15}, .M = 3, .N = 5, .K = 2, .alpha = 1, .bias = {-1, 0}};
    rt_cublaslt_shape s;
    char err[256];
    CHECK(rt_cublaslt_shape_of(&g, &s, err, sizeof err), "%s", err);
    merged = s.count == 12 && s.nouter == 0 && s.stride[0] == 10 && s.stride[1] == 6 && s.stride[2] == 15;
    printf("two packed batch dims merge into one strided batch of 12: %s\n", merged ? "OK" : "FAIL");
    /* activations cuBLASLt lacks: the plan's epilogue kernel (bias included), cuBLASLt bare */
    g.bias.buf = 3;
    char name[] = "k0_silu_epilogue";
    bool kernel = true;
    for (int a = RT_ACT_NONE; a < RT_ACT_COUNT; a++) {
        g.act = a;
        g.epi.name = a == RT_ACT_NONE ? NULL : name;
        bool lib = a == RT_ACT_RELU || a == RT_ACT_GELU_TANH;
        kernel &= rt_cublaslt_shape_of(&g, &s, err, sizeof err) && s.kernel_epilogue == (a != RT_ACT_NONE && !lib) &&
                  (s.kernel_epilogue ? s.epilogue == CUBLASLT_EPILOGUE_DEFAULT : s.epilogue != CUBLASLT_EPILOGUE_DEFAULT) && rt_cublaslt_has_act(a) == lib;
        g.epi.name = name; /* the library's epilogue is used whether or not the plan has a kernel */
        kernel &= !lib || (rt_cublaslt_shape_of(&g, &s, err, sizeof err) && !s.kernel_epilogue);
    }
    g.act = RT_ACT_SILU, g.epi.name = NULL;
    bool refused = !rt_cublaslt_shape_of(&g, &s, err, sizeof err) && strstr(err, "epilogue kernel");
    printf("erf-gelu and silu run as the epilogue kernel after a bare GEMM, relu and tanh-gelu as cuBLASLt's "
           "epilogues: %s\n", kernel ? "OK" : "FAIL");
    printf("an activation without epilogue kernel refused (%s): %s\n", err, refused ? "OK" : "FAIL");
    printf("300 random GEMMs, %d failed\n", failed);
    return failed || !merged || !kernel || !refused || failures;
}
