/* cublaslt.c — plan GEMMs through cuBLASLt, loaded with dlopen (cublaslt.h).
 *
 * Row-major C[M,N] = op(A)·op(B) is column-major Cᵀ[N,M] = op(B)ᵀ·op(A)ᵀ, so cuBLASLt's first
 * operand is our B and its second our A, each viewed column-major with its row-major leading
 * dim (a transpose flag flips which of the two shapes it is). The bias is per column of C: per
 * row of Cᵀ, which is what cuBLASLt's bias epilogues take. Batch dims that are one strided
 * sequence for A, B and C together are merged; the innermost remaining dim becomes cuBLASLt's
 * strided batch (unless A or B broadcasts along it), and any outer ones are a loop of calls.
 * The algorithm is chosen on the first run (the heuristic looks at pointer alignment) and kept.
 * Types, enums and prototypes come from the toolkit's cublasLt.h; the library is dlopen'ed.
 */
#include "runtime/cuda/cublaslt.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cublasLt.h's types under short names */
typedef cublasStatus_t lt_status;
typedef cublasLtMatmulAlgo_t lt_algo;
typedef cublasLtMatmulHeuristicResult_t lt_heuristic;

static const size_t WORKSPACE = 32u << 20;

/* The library: one field per entry point, typed as cublasLt.h's prototype (checked in
 * rt_cublaslt_load). */
struct rt_cublaslt {
    const rt_cuda *cu;
    void *lib;
    cublasLtHandle_t h;
    rt_cu_deviceptr workspace;
    cublasStatus_t (*Create)(cublasLtHandle_t *h);
    cublasStatus_t (*Destroy)(cublasLtHandle_t h);
    cublasStatus_t (*MatmulDescCreate)(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale);
    cublasStatus_t (*MatmulDescDestroy)(cublasLtMatmulDesc_t d);
    cublasStatus_t (*MatmulDescSetAttribute)(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *buf,
                                             size_t n);
    cublasStatus_t (*MatrixLayoutCreate)(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                         int64_t ld);
    cublasStatus_t (*MatrixLayoutDestroy)(cublasLtMatrixLayout_t l);
    cublasStatus_t (*MatrixLayoutSetAttribute)(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                               const void *buf, size_t n);
    cublasStatus_t (*MatmulPreferenceCreate)(cublasLtMatmulPreference_t *p);
    cublasStatus_t (*MatmulPreferenceDestroy)(cublasLtMatmulPreference_t p);
    cublasStatus_t (*MatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                                                   const void *buf, size_t n);
    cublasStatus_t (*MatmulAlgoGetHeuristic)(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                             cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                             cublasLtMatmulPreference_t p, int requested, lt_heuristic results[],
                                             int *returned);
    cublasStatus_t (*Matmul)(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *a,
                             cublasLtMatrixLayout_t al, const void *b, cublasLtMatrixLayout_t bl, const void *beta,
                             const void *c, cublasLtMatrixLayout_t cl, void *dd, cublasLtMatrixLayout_t dl,
                             const lt_algo *algo, void *ws, size_t ws_bytes, cudaStream_t s);
    const char *(*GetStatusString)(cublasStatus_t st); /* optional */
};

struct rt_cublaslt_op {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc; /* cuBLASLt's A (our b), B (our a), C = D */
    rt_cublaslt_shape sh;
    float alpha, beta;
    bool have_algo;
    lt_algo algo;
    char what[96];             /* "gemm MxNxK ×batch" for messages */
};

static void msg(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static const char *status_name(const rt_cublaslt *lt, lt_status st)
{
    switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return lt && lt->GetStatusString ? lt->GetStatusString(st) : "CUBLAS_STATUS_?";
    }
}

/* Evaluates a cuBLASLt call; on failure writes "file:line: call: STATUS" and is false. */
#define LT_CHECK(lt, expr, err, cap) lt_check((lt), (expr), #expr, __FILE__ ":" RT_CU_STR(__LINE__), (err), (cap))
static bool lt_check(const rt_cublaslt *lt, lt_status st, const char *call, const char *where, char *err, size_t cap)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return true;
    msg(err, cap, "%s: %s: %s (%d)", where, call, status_name(lt, st), (int)st);
    return false;
}

rt_cublaslt *rt_cublaslt_load(const rt_cuda *cu, char *err, size_t cap)
{
    const char *names[] = {getenv("LOOM_LIBCUBLASLT"), "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                           "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.12"};
    void *lib = NULL;
    char first[256] = "";
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++) {
        if (!names[i] || !*names[i])
            continue;
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && !*first)
            snprintf(first, sizeof first, "%s", dlerror());
    }
    if (!lib) {
        msg(err, cap, "no cuBLASLt found (%s; set LOOM_LIBCUBLASLT to its path)", first);
        return NULL;
    }
    rt_cublaslt *lt = calloc(1, sizeof *lt);
    if (!lt)
        abort();
    lt->cu = cu;
    lt->lib = lib;
    /* the field, its symbol; the assignment inside sizeof (never evaluated) holds the field's
     * type to cublasLt.h's prototype of the symbol */
#define E(field, fn) {(void **)&lt->field + 0 * sizeof(lt->field = fn), #fn}
    struct {
        void **field;
        const char *sym;
    } e[] = {
        E(Create, cublasLtCreate),
        E(Destroy, cublasLtDestroy),
        E(MatmulDescCreate, cublasLtMatmulDescCreate),
        E(MatmulDescDestroy, cublasLtMatmulDescDestroy),
        E(MatmulDescSetAttribute, cublasLtMatmulDescSetAttribute),
        E(MatrixLayoutCreate, cublasLtMatrixLayoutCreate),
        E(MatrixLayoutDestroy, cublasLtMatrixLayoutDestroy),
        E(MatrixLayoutSetAttribute, cublasLtMatrixLayoutSetAttribute),
        E(MatmulPreferenceCreate, cublasLtMatmulPreferenceCreate),
        E(MatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy),
        E(MatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute),
        E(MatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic),
        E(Matmul, cublasLtMatmul),
    };
#undef E
    (void)sizeof(lt->GetStatusString = cublasLtGetStatusString);
    for (size_t i = 0; i < sizeof e / sizeof *e; i++) {
        *e[i].field = dlsym(lib, e[i].sym);
        if (!*e[i].field) {
            msg(err, cap, "cuBLASLt library lacks %s", e[i].sym);
            rt_cublaslt_free(lt);
            return NULL;
        }
    }
    *(void **)&lt->GetStatusString = dlsym(lib, "cublasLtGetStatusString");
    if (!LT_CHECK(lt, lt->Create(&lt->h), err, cap) ||
        !RT_CU_CHECK(cu, cu->MemAlloc(&lt->workspace, WORKSPACE), err, cap)) {
        rt_cublaslt_free(lt);
        return NULL;
    }
    return lt;
}

void rt_cublaslt_free(rt_cublaslt *lt)
{
    if (!lt)
        return;
    if (lt->workspace)
        lt->cu->MemFree(lt->workspace);
    if (lt->h)
        lt->Destroy(lt->h);
    dlclose(lt->lib);
    free(lt);
}

void rt_cublaslt_op_free(rt_cublaslt *lt, rt_cublaslt_op *op)
{
    if (!op)
        return;
    if (op->la)
        lt->MatrixLayoutDestroy(op->la);
    if (op->lb)
        lt->MatrixLayoutDestroy(op->lb);
    if (op->lc)
        lt->MatrixLayoutDestroy(op->lc);
    if (op->desc)
        lt->MatmulDescDestroy(op->desc);
    free(op);
}

static bool layout(rt_cublaslt *lt, cublasLtMatrixLayout_t *l, uint64_t rows, uint64_t cols, int64_t ld, int32_t count, int64_t stride,
                   char *err, size_t cap)
{
    return LT_CHECK(lt, lt->MatrixLayoutCreate(l, CUDA_R_32F, rows, cols, ld), err, cap) &&
           (count <= 1 || (LT_CHECK(lt, lt->MatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), err, cap) &&
                           LT_CHECK(lt, lt->MatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
                                    err, cap)));
}

bool rt_cublaslt_shape_of(const rt_plan_gemm *g, rt_cublaslt_shape *s, char *err, size_t cap)
{
    memset(s, 0, sizeof *s);
    /* batch dims: drop size-1 ones, merge neighbours that form one strided sequence */
    int n = 0;
    int64_t bt[RT_PLAN_MAX_BATCH], sa[RT_PLAN_MAX_BATCH], sb[RT_PLAN_MAX_BATCH], sc[RT_PLAN_MAX_BATCH];
    for (int i = 0; i < g->nbatch; i++) {
        if (g->batch[i] == 1)
            continue;
        if (n > 0 && sa[n - 1] == g->stride_a[i] * g->batch[i] && sb[n - 1] == g->stride_b[i] * g->batch[i] &&
            sc[n - 1] == g->stride_c[i] * g->batch[i]) {
            bt[n - 1] *= g->batch[i];
            sa[n - 1] = g->stride_a[i], sb[n - 1] = g->stride_b[i], sc[n - 1] = g->stride_c[i];
            continue;
        }
        bt[n] = g->batch[i], sa[n] = g->stride_a[i], sb[n] = g->stride_b[i], sc[n] = g->stride_c[i];
        n++;
    }
    /* a broadcast (stride 0) operand in the innermost dim: loop over it on the host rather
     * than rely on cuBLASLt accepting a zero batch stride */
    int inner = n > 0 && sa[n - 1] != 0 && sb[n - 1] != 0 ? 1 : 0;
    s->count = inner ? (int32_t)bt[n - 1] : 1;
    s->stride[0] = inner ? sb[n - 1] : 0;
    s->stride[1] = inner ? sa[n - 1] : 0;
    s->stride[2] = inner ? sc[n - 1] : 0;
    s->nouter = n - inner;
    s->calls = 1;
    for (int i = 0; i < s->nouter; i++) {
        s->outer[i] = bt[i];
        s->outer_stride[i][0] = sb[i], s->outer_stride[i][1] = sa[i], s->outer_stride[i][2] = sc[i];
        s->calls *= bt[i];
    }
    int64_t M = g->M, N = g->N, K = g->K;
    s->ld[0] = g->ldb ? g->ldb : g->trans_b ? K : N;
    s->ld[1] = g->lda ? g->lda : g->trans_a ? M : K;
    s->ld[2] = g->ldc ? g->ldc : N;
    s->op[0] = g->trans_b ? 1 : 0;
    s->op[1] = g->trans_a ? 1 : 0;
    s->rows[0] = (uint64_t)(g->trans_b ? K : N), s->cols[0] = (uint64_t)(g->trans_b ? N : K);
    s->rows[1] = (uint64_t)(g->trans_a ? M : K), s->cols[1] = (uint64_t)(g->trans_a ? K : M);
    s->rows[2] = (uint64_t)N, s->cols[2] = (uint64_t)M;
    /* the epilogue: cuBLASLt's own when it has the step's activation as the same function, else
     * none (the executor runs the step's epilogue kernel, which adds the bias: plan.h) */
    bool bias = g->bias.buf >= 0;
    s->kernel_epilogue = g->epi.name && !rt_cublaslt_has_act(g->act);
    if (s->kernel_epilogue)
        s->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    else if (g->act == RT_ACT_RELU)
        s->epilogue = bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    else if (g->act == RT_ACT_GELU_TANH)
        s->epilogue = bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    else if (g->act == RT_ACT_NONE)
        s->epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    else {
        msg(err, cap, "the activation %d of a GEMM without epilogue kernel", g->act);
        return false;
    }
    return true;
}

/* cuBLASLt's epilogues that compute the same function as loom's op (ir/unary.def's kir_ID):
 * RELU is max(x, 0); GELU is documented as the tanh approximation, 0.5x(1 + tanh(√(2/π)(x +
 * 0.044715x³))), i.e. gelu {approx = tanh} — not erf-GELU, which (like SiLU) has no epilogue
 * there and runs as the kernel. How the correspondence is checked: tests/gpu/test_cuda_ops.c runs
 * the op suite's GEMM epilogue cases (tests/unit/op_suite.h, test_matmul: matmul + bias + relu,
 * and + gelu tanh with pre-activations spread over [-4, 4]) through this path on the GPU against
 * the reference interpreter's formulas (ir/interp.c: ref_relu, ref_gelu) at 1e-4·max(1, |ref|);
 * tanh- and erf-GELU differ by more than that on over half of [-4, 4] (by 4.7e-4 near |x| = 2.7),
 * so an epilogue that were another function fails it. tests/unit/test_cublaslt_shape.c checks
 * without a GPU which epilogue each plan GEMM maps to. */
bool rt_cublaslt_has_act(int act) { return act == RT_ACT_RELU || act == RT_ACT_GELU_TANH; }

bool rt_cublaslt_kernel_epilogue(const rt_cublaslt_op *op) { return op->sh.kernel_epilogue; }

rt_cublaslt_op *rt_cublaslt_prepare(rt_cublaslt *lt, const rt_plan_gemm *g, char *err, size_t cap)
{
    rt_cublaslt_op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    int64_t total = 1;
    for (int i = 0; i < g->nbatch; i++)
        total *= g->batch[i];
    snprintf(op->what, sizeof op->what, "gemm %lldx%lldx%lld x%lld", (long long)g->M, (long long)g->N, (long long)g->K,
             (long long)total);
    rt_cublaslt_shape *sh = &op->sh;
    if (!rt_cublaslt_shape_of(g, sh, err, cap)) {
        size_t l = strlen(err);
        snprintf(err + l, cap > l ? cap - l : 0, " (%s)", op->what);
        free(op);
        return NULL;
    }
    op->alpha = (float)g->alpha;
    op->beta = (float)g->beta;
    /* attribute values in the widths cublasLt.h documents: int32 transposes, uint32 epilogue */
    int32_t ta = sh->op[0] ? CUBLAS_OP_T : CUBLAS_OP_N, tb = sh->op[1] ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint32_t epi = (uint32_t)sh->epilogue;
    bool ok = LT_CHECK(lt, lt->MatmulDescCreate(&op->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), err, cap) &&
              LT_CHECK(lt, lt->MatmulDescSetAttribute(op->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), err, cap) &&
              LT_CHECK(lt, lt->MatmulDescSetAttribute(op->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), err, cap) &&
              LT_CHECK(lt, lt->MatmulDescSetAttribute(op->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), err, cap) &&
              layout(lt, &op->la, sh->rows[0], sh->cols[0], sh->ld[0], sh->count, sh->stride[0], err, cap) &&
              layout(lt, &op->lb, sh->rows[1], sh->cols[1], sh->ld[1], sh->count, sh->stride[1], err, cap) &&
              layout(lt, &op->lc, sh->rows[2], sh->cols[2], sh->ld[2], sh->count, sh->stride[2], err, cap);
    if (!ok) {
        size_t l = strlen(err);
        snprintf(err + l, cap > l ? cap - l : 0, " (preparing %s)", op->what);
        rt_cublaslt_op_free(lt, op);
        return NULL;
    }
    return op;
}

static bool choose_algo(rt_cublaslt *lt, rt_cublaslt_op *op, char *err, size_t cap)
{
    cublasLtMatmulPreference_t pref = NULL;
    uint64_t ws = WORKSPACE;
    lt_heuristic h;
    int got = 0;
    memset(&h, 0, sizeof h);
    bool ok = LT_CHECK(lt, lt->MatmulPreferenceCreate(&pref), err, cap) &&
              LT_CHECK(lt, lt->MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), err, cap) &&
              LT_CHECK(lt, lt->MatmulAlgoGetHeuristic(lt->h, op->desc, op->la, op->lb, op->lc, op->lc, pref, 1, &h, &got), err,
                       cap);
    if (pref)
        lt->MatmulPreferenceDestroy(pref);
    if (ok && got < 1) {
        msg(err, cap, "cuBLASLt has no algorithm for %s", op->what);
        ok = false;
    }
    if (ok) {
        op->algo = h.algo;
        op->have_algo = true;
    }
    return ok;
}

bool rt_cublaslt_run(rt_cublaslt *lt, const rt_cublaslt_op *cop, rt_cu_deviceptr a, rt_cu_deviceptr b, rt_cu_deviceptr c,
                     rt_cu_deviceptr bias, rt_cu_stream s, char *err, size_t cap)
{
    rt_cublaslt_op *op = (rt_cublaslt_op *)cop;
    if (bias) {
        void *bp = (void *)(uintptr_t)bias;
        if (!LT_CHECK(lt, lt->MatmulDescSetAttribute(op->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp), err, cap))
            return false;
    }
    if (!op->have_algo && !choose_algo(lt, op, err, cap))
        return false;
    const rt_cublaslt_shape *sh = &op->sh;
    int64_t idx[RT_PLAN_MAX_BATCH] = {0};
    for (int64_t call = 0; call < sh->calls; call++) {
        int64_t offa = 0, offb = 0, offc = 0;
        for (int i = 0; i < sh->nouter; i++)
            offb += idx[i] * sh->outer_stride[i][0], offa += idx[i] * sh->outer_stride[i][1],
                offc += idx[i] * sh->outer_stride[i][2];
        void *pa = (void *)(uintptr_t)(a + (uint64_t)offa * 4), *pb = (void *)(uintptr_t)(b + (uint64_t)offb * 4);
        void *pc = (void *)(uintptr_t)(c + (uint64_t)offc * 4);
        if (!LT_CHECK(lt,
                      lt->Matmul(lt->h, op->desc, &op->alpha, pb, op->la, pa, op->lb, &op->beta, pc, op->lc, pc, op->lc,
                                 &op->algo, (void *)(uintptr_t)lt->workspace, WORKSPACE, s),
                      err, cap)) {
            size_t l = strlen(err);
            snprintf(err + l, cap > l ? cap - l : 0, " (%s)", op->what);
            return false;
        }
        for (int i = sh->nouter - 1; i >= 0; i--) {
            if (++idx[i] < sh->outer[i])
                break;
            idx[i] = 0;
        }
    }
    return true;
}
