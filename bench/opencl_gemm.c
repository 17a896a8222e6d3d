/* opencl_gemm.c — GPT-2 small's forward GEMM shapes (batch 1) on an OpenCL device: CLBlast (+ the
 * bias kernel), each generated variant (runtime/opencl/gemm_opencl.c through rt_ocl_gemm with
 * LOOM_OCL_GEMM=clblast / generated:I), and OpenBLAS's cblas_sgemm on the host, in one run.
 *
 *     bench_opencl_gemm [--target opencl[:P[:D]]] [--seq T]... [--reps R]
 *
 * Each figure is the fastest of R runs (default 5) after one warm-up (the least disturbed by
 * other load on a shared machine), the device finished after every run; operands live on the device (host memory for OpenBLAS, which runs the product
 * only: no bias). The fc GEMM's gelu is the plan's epilogue kernel, not timed here. Default
 * sequences: 64 and 256.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/opencl/exec_opencl.h"
#include "runtime/cpu/gemm_cpu.h"
#include "runtime/opencl/opencl.h"

typedef struct {
    const char *what;
    int64_t N, K;
    int trans_b, bias;
} shape;

/* M is the sequence length (batch 1); the weights are (K, N) except the tied LM head. */
static const shape SHAPES[] = {
    {"attn qkv", 2304, 768, 0, 1},
    {"attn proj", 768, 768, 0, 1},
    {"mlp fc", 3072, 768, 0, 1},
    {"mlp proj", 768, 3072, 0, 1},
    {"lm head", 50257, 768, 1, 0},
};

static rt_ocl *OCL;
static rt_ocl_program *PROG;

static void die(ir_diag *d)
{
    ir_diag_print(d, stderr);
    exit(1);
}

static rt_ocl_buf *device_random(size_t n)
{
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    ir_diag d;
    ir_diag_init(&d);
    rt_ocl_buf *b = rt_ocl_alloc(OCL, n * sizeof(float), &d);
    if (!b || !rt_ocl_write(OCL, b, 0, h, n * sizeof(float), &d))
        die(&d);
    free(h);
    return b;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The fastest of reps runs of g under LOOM_OCL_GEMM=mode, after one warm-up, in ms. */
static double time_device(const char *mode, const rt_plan_gemm *g, rt_ocl_buf *a, rt_ocl_buf *b, rt_ocl_buf *c,
                          rt_ocl_buf *bias, int reps)
{
    setenv("LOOM_OCL_GEMM", mode, 1);
    ir_diag d;
    ir_diag_init(&d);
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = rt_now_ms();
        if (!rt_ocl_gemm(OCL, PROG, g, (rt_ocl_ref){a, 0}, (rt_ocl_ref){b, 0}, (rt_ocl_ref){c, 0},
                         (rt_ocl_ref){bias, 0}, &d) ||
            !rt_ocl_finish(OCL, &d))
            die(&d);
        if (r >= 0)
            t[r] = rt_now_ms() - t0;
    }
    ir_diag_free(&d);
    qsort(t, (size_t)reps, sizeof *t, cmp);
    return t[0];
}

static double time_openblas(int64_t M, const shape *s, int reps)
{
    size_t na = (size_t)(M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(M * s->N);
    float *A = calloc(na, sizeof(float)), *B = calloc(nb, sizeof(float)), *C = calloc(nc, sizeof(float));
    for (size_t i = 0; i < na; i++)
        A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < nb; i++)
        B[i] = (float)(i % 5) * 0.1f;
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = rt_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)s->N, (int)s->K,
                    1.0f, A, (int)s->K, B, s->trans_b ? (int)s->K : (int)s->N, 0.0f, C, (int)s->N);
        if (r >= 0)
            t[r] = rt_now_ms() - t0;
    }
    free(A), free(B), free(C);
    qsort(t, (size_t)reps, sizeof *t, cmp);
    return t[0];
}

int main(int argc, char **argv)
{
    const char *target = "opencl";
    int64_t seqs[8];
    int n_seq = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target = argv[++i];
        else if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc && n_seq < 8)
            seqs[n_seq++] = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--target opencl[:P[:D]]] [--seq T]... [--reps R]\n", argv[0]);
            return 1;
        }
    }
    if (!n_seq)
        seqs[n_seq++] = 64, seqs[n_seq++] = 256;
    if (reps < 1 || reps > 64)
        reps = 5;
    ir_diag d;
    ir_diag_init(&d);
    if (!(OCL = rt_ocl_open(target, &d)))
        die(&d);
    char *src = rt_ocl_gemm_source();
    if (!(PROG = rt_ocl_build(OCL, src, "-cl-std=CL1.2", &d)))
        die(&d);
    free(src);
    printf("device %s; fastest of %d runs after a warm-up, ms (OpenBLAS: product only, %s)\n",
           rt_ocl_device_name(OCL), reps, openblas_get_config());
    const int n_var = 5;
    for (int si = 0; si < n_seq; si++) {
        int64_t M = seqs[si];
        printf("\nseq %lld       %9s %9s %9s %9s %9s %9s %9s  best  clblast/best  best/openblas\n", (long long)M,
               "clblast", "g0", "g1", "g2", "g3", "g4", "openblas");
        double tot_cl = 0, tot_best = 0, tot_blas = 0;
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            const shape *s = &SHAPES[k];
            rt_plan_gemm g;
            memset(&g, 0, sizeof g);
            g.M = M, g.N = s->N, g.K = s->K, g.trans_b = s->trans_b, g.alpha = 1.0;
            rt_ocl_buf *a = device_random((size_t)(M * s->K)), *b = device_random((size_t)(s->K * s->N));
            rt_ocl_buf *c = device_random((size_t)(M * s->N)), *bias = s->bias ? device_random((size_t)s->N) : NULL;
            int r = s->N * M * s->K > 1000000000 ? (reps < 3 ? reps : 3) : reps; /* the LM head: fewer */
            double cl = time_device("clblast", &g, a, b, c, bias, r), gen[5], best = 1e300;
            int bi = 0;
            for (int v = 0; v < n_var; v++) {
                char mode[32];
                snprintf(mode, sizeof mode, "generated:%d", v);
                gen[v] = time_device(mode, &g, a, b, c, bias, r);
                if (gen[v] < best)
                    best = gen[v], bi = v;
            }
            double blas = time_openblas(M, s, r);
            printf("%-12s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f  g%d  %10.2fx %12.2fx\n", s->what, cl, gen[0],
                   gen[1], gen[2], gen[3], gen[4], blas, bi, cl / best, best / blas);
            double times = s->trans_b ? 1 : 12; /* 12 layers, one head */
            tot_cl += times * cl, tot_best += times * best, tot_blas += times * blas;
            rt_ocl_free(a), rt_ocl_free(b), rt_ocl_free(c), rt_ocl_free(bias);
        }
        printf("forward's GEMMs (12 layers + head): clblast %.0f ms, best generated %.0f ms, openblas %.0f ms\n",
               tot_cl, tot_best, tot_blas);
    }
    rt_ocl_close(OCL);
    ir_diag_free(&d);
    return 0;
}
