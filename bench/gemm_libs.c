/* gemm_libs.c — the GEMM libraries side by side on GPT-2 small's shapes (issue 21, goal 1): the
 * measurement behind runtime/cpu/gemm_dnnl.c (docs/performance.md, "The GEMM chosen by
 * measurement").
 *
 * One binary a library, from this one file:
 *   cblas (OpenBLAS):  gcc -O2 -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/gemm_libs.c -lopenblas -o /tmp/gl_openblas
 *   cblas (BLIS):      gcc -O2 -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/gemm_libs.c \
 *                          -L/usr/lib/x86_64-linux-gnu/blis-openmp -lblis -o /tmp/gl_blis   (libblis-dev)
 *   oneDNN matmul:     gcc -O2 -DUSE_DNNL bench/gemm_libs.c -ldnnl -o /tmp/gl_dnnl
 *   oneDNN, B packed:  gcc -O2 -DUSE_DNNL -DPACKED bench/gemm_libs.c -ldnnl -o /tmp/gl_dnnl_packed
 *   ... bf16 A and B:  add -DBF16 to either oneDNN line (f32 C)
 * Run with OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 BLIS_NUM_THREADS=2 OMP_WAIT_POLICY=passive.
 *
 * Shapes: the forward's GEMMs at 1024 and 64 rows (qkv, proj, fc, fc proj, the LM head over the
 * 50257-row tied embedding, B transposed) and the training step's at 256 rows (batch 4 × 64,
 * vocabulary 50304: the head's dX and dW, and dW/dX of the layers). Each shape rotates over six
 * A, B and C (as twelve layers' distinct weights do, so B is not left in cache by the previous
 * call); one untimed call, then calls until 0.5 s have passed; the best time is printed with its
 * GFLOP/s. PACKED reorders each B into oneDNN's blocked layout before timing (what packing a
 * constant weight once at bind time would give); plain oneDNN reads B as stored.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef USE_DNNL
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

enum { ROT = 6 };

typedef struct {
    const char *name;
    int M, N, K, ta, tb;
} shape;

static const shape shapes[] = {
    {"qkv 1024", 1024, 2304, 768, 0, 0},     {"proj 1024", 1024, 768, 768, 0, 0},
    {"fc 1024", 1024, 3072, 768, 0, 0},      {"fcproj 1024", 1024, 768, 3072, 0, 0},
    {"head 1024", 1024, 50257, 768, 0, 1},   {"qkv 64", 64, 2304, 768, 0, 0},
    {"fc 64", 64, 3072, 768, 0, 0},          {"fcproj 64", 64, 768, 3072, 0, 0},
    {"head 64", 64, 50257, 768, 0, 1},       {"head 256", 256, 50304, 768, 0, 1},
    {"head dX 256", 256, 768, 50304, 0, 0},  {"head dW 256", 50304, 768, 256, 1, 0},
    {"qkv dW 256", 768, 2304, 256, 1, 0},    {"qkv dX 256", 256, 768, 2304, 0, 1},
    {"fcproj dW 256", 3072, 768, 256, 1, 0},
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#ifdef USE_DNNL
#ifdef BF16
#define DT dnnl_bf16
#define ESIZE 2
#else
#define DT dnnl_f32
#define ESIZE 4
#endif
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) != dnnl_success) {                                                                 \
            fprintf(stderr, "gemm_libs: %s failed\n", #x);                                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void md2(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int trans, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols};
    CHECK(dnnl_memory_desc_init_by_tag(md, 2, dims, dt, trans ? dnnl_ba : dnnl_ab));
}
#else
#define ESIZE 4
#endif

/* Best seconds of one shape. */
static double time_shape(const shape *s, const char **impl) {
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
    void *A[ROT], *B[ROT];
    float *C[ROT];
    for (int r = 0; r < ROT; r++) {
        A[r] = malloc(na * ESIZE);
        B[r] = malloc(nb * ESIZE);
        C[r] = calloc(nc, sizeof(float));
        if (!A[r] || !B[r] || !C[r]) {
            fprintf(stderr, "gemm_libs: out of memory\n");
            exit(1);
        }
        memset(A[r], 0x3c, na * ESIZE); /* small finite values in f32 and bf16 alike */
        memset(B[r], 0x3c, nb * ESIZE);
    }
    double best = 1e30;
#ifdef USE_DNNL
    dnnl_memory_desc_t ad, bd, bwant, cd;
    md2(&ad, s->M, s->K, s->ta, DT);
    md2(&bd, s->K, s->N, s->tb, DT);
    md2(&cd, s->M, s->N, 0, dnnl_f32);
#ifdef PACKED
    dnnl_dims_t bdims = {s->K, s->N};
    CHECK(dnnl_memory_desc_init_by_tag(&bwant, 2, bdims, DT, dnnl_format_tag_any));
#else
    bwant = bd;
#endif
    dnnl_matmul_desc_t op;
    CHECK(dnnl_matmul_desc_init(&op, &ad, &bwant, NULL, &cd));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &op, NULL, engine, NULL));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, impl));
    const dnnl_memory_desc_t *bq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t mm;
    CHECK(dnnl_primitive_create(&mm, pd));
    dnnl_memory_t ma[ROT], mb[ROT], mc[ROT];
    for (int r = 0; r < ROT; r++) {
        CHECK(dnnl_memory_create(&ma[r], &ad, engine, A[r]));
        CHECK(dnnl_memory_create(&mc[r], &cd, engine, C[r]));
        dnnl_memory_t plain;
        CHECK(dnnl_memory_create(&plain, &bd, engine, B[r]));
#ifdef PACKED
        CHECK(dnnl_memory_create(&mb[r], bq, engine, DNNL_MEMORY_ALLOCATE));
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t reorder;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &bd, engine, bq, engine, NULL));
        CHECK(dnnl_primitive_create(&reorder, rpd));
        dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, mb[r]}};
        CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
        CHECK(dnnl_stream_wait(stream));
        dnnl_primitive_destroy(reorder);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(plain);
#else
        (void)bq;
        mb[r] = plain;
#endif
    }
    double t0 = now();
    for (int it = -1; it < 3 || now() - t0 < 0.5; it++) {
        int r = (it + ROT) % ROT;
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma[r]}, {DNNL_ARG_WEIGHTS, mb[r]}, {DNNL_ARG_DST, mc[r]}};
        double a = now();
        CHECK(dnnl_primitive_execute(mm, stream, 3, args));
        CHECK(dnnl_stream_wait(stream));
        if (it >= 0 && now() - a < best) best = now() - a;
    }
    for (int r = 0; r < ROT; r++) {
        dnnl_memory_destroy(ma[r]);
        dnnl_memory_destroy(mb[r]);
        dnnl_memory_destroy(mc[r]);
    }
    dnnl_primitive_destroy(mm);
    dnnl_primitive_desc_destroy(pd);
#else
    *impl = "cblas_sgemm";
    double t0 = now();
    for (int it = -1; it < 3 || now() - t0 < 0.5; it++) {
        int r = (it + ROT) % ROT;
        double a = now();
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                    s->K, 1.0f, A[r], s->ta ? s->M : s->K, B[r], s->tb ? s->K : s->N, 0.0f, C[r], s->N);
        if (it >= 0 && now() - a < best) best = now() - a;
    }
#endif
    for (int r = 0; r < ROT; r++) {
        free(A[r]);
        free(B[r]);
        free(C[r]);
    }
    return best;
}

int main(int argc, char **argv) {
#ifdef USE_DNNL
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
#endif
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        if (argc > 1 && !strstr(s->name, argv[1])) continue; /* a filter: "64", "head", ... */
        const char *impl = "";
        double t = time_shape(s, &impl);
        printf("%-14s %5d x %5d x %5d  %8.2f ms  %6.1f GFLOP/s  %s\n", s->name, s->M, s->N, s->K, t * 1e3,
               2.0 * s->M * s->N * s->K / t * 1e-9, impl);
    }
#ifdef USE_DNNL
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
#endif
    return 0;
}
