/* gemm_peer.c — the "OpenBLAS alone" peer of the CPU-backend benchmark: times exactly the GEMMs
 * of a GPT-2 small forward (no attention softmax, norms or elementwise work), calling
 * cblas_sgemm directly, so loom's CPU forward can be compared with the GEMM time it cannot beat
 * with OpenBLAS underneath.
 *
 * Per layer (C = 768, H = 12 heads of D = 64, BT = batch·seq rows), weights as in Hugging Face's
 * GPT-2 (Conv1D: [in, out]):
 *     qkv   = x[BT, 768] @ W[768, 2304]
 *     att   = Q[T, 64] @ K[T, 64]^T         for each of batch·12 heads -> [T, T]
 *     y     = att[T, T] @ V[T, 64]          for each of batch·12 heads -> [T, 64] in y[BT, 768]
 *     proj  = y[BT, 768] @ W[768, 768]
 *     fc    = x[BT, 768] @ W[768, 3072]
 *     fcp   = h[BT, 3072] @ W[3072, 768]
 * × 12 layers (distinct weights per layer, as in the real model), then the LM head
 *     logits = x[BT, 768] @ wte[50257, 768]^T.
 * Q, K, V are read in place from qkv (leading dim 2304) and each head's output is written in
 * place into y (leading dim 768): no copies, as a fused attention layout would do.
 *
 * Configurations: (batch 1, seq 1024), (batch 1, seq 64), (batch 8, seq 64). For each: one
 * warm-up forward, then forwards until ~2 s have passed (at least 3); prints the best, mean and
 * median ms per forward, GFLOP/s of the best, and the share of each GEMM kind.
 * bench/gpt2_forward.sh runs it next to loom's forward and prints the ratio.
 *
 * Build and run (Release, -O2; OpenBLAS threads from OPENBLAS_NUM_THREADS, default all cores):
 *   gcc -O2 -std=c11 -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/gemm_peer.c -lopenblas -o /tmp/gemm_peer && /tmp/gemm_peer
 * or: cmake --build BUILD --target bench_gemm_peer (bench/CMakeLists.txt; not built by default).
 * Optional arguments: which configurations to run, as "BxT" (e.g. `/tmp/gemm_peer 1x64 8x64`).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { C = 768, H = 12, D = 64, C3 = 3 * 768, C4 = 4 * 768, V = 50257, LAYERS = 12 };
enum { K_QKV, K_QK, K_PV, K_PROJ, K_FC, K_FCP, K_LMHEAD, NKINDS };
static const char *kind_names[NKINDS] = {"qkv", "QK^T", "PV", "attn proj", "fc", "fc proj", "lm head"};

typedef struct {
    float *w_qkv, *w_proj, *w_fc, *w_fcp;   /* [768, 2304], [768, 768], [768, 3072], [3072, 768] */
} layer_weights;

typedef struct {
    int B, T;
    layer_weights layer[LAYERS];
    float *wte;                              /* [50257, 768] */
    float *x;                                /* [BT, 768] */
    float *qkv;                              /* [BT, 2304] */
    float *att;                              /* [B·12, T, T] */
    float *y;                                /* [BT, 768] */
    float *out;                              /* [BT, 768] */
    float *h;                                /* [BT, 3072] */
    float *logits;                           /* [BT, 50257] */
} model;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *alloc_fill(size_t n, float scale, unsigned *seed) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "gemm_peer: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(*seed >> 8) / 16777216.0f - 0.5f);
    }
    return p;
}

static void model_init(model *m, int B, int T) {
    unsigned seed = 1;
    size_t bt = (size_t)B * T;
    memset(m, 0, sizeof *m);
    m->B = B, m->T = T;
    for (int l = 0; l < LAYERS; l++) {
        m->layer[l].w_qkv = alloc_fill((size_t)C * C3, 0.04f, &seed);
        m->layer[l].w_proj = alloc_fill((size_t)C * C, 0.04f, &seed);
        m->layer[l].w_fc = alloc_fill((size_t)C * C4, 0.04f, &seed);
        m->layer[l].w_fcp = alloc_fill((size_t)C4 * C, 0.04f, &seed);
    }
    m->wte = alloc_fill((size_t)V * C, 0.04f, &seed);
    m->x = alloc_fill(bt * C, 2.0f, &seed);
    m->qkv = alloc_fill(bt * C3, 0.0f, &seed);
    m->att = alloc_fill((size_t)B * H * T * T, 0.0f, &seed);
    m->y = alloc_fill(bt * C, 0.0f, &seed);
    m->out = alloc_fill(bt * C, 0.0f, &seed);
    m->h = alloc_fill(bt * C4, 0.0f, &seed);
    m->logits = alloc_fill(bt * V, 0.0f, &seed);
}

static void model_free(model *m) {
    for (int l = 0; l < LAYERS; l++) {
        free(m->layer[l].w_qkv);
        free(m->layer[l].w_proj);
        free(m->layer[l].w_fc);
        free(m->layer[l].w_fcp);
    }
    free(m->wte); free(m->x); free(m->qkv); free(m->att); free(m->y); free(m->out); free(m->h);
    free(m->logits);
}

/* C[M, N] = A[M, K] @ op(B), row-major, with explicit leading dims. */
static void sgemm(int tb, int M, int N, int K, const float *A, int lda, const float *Bm, int ldb,
                  float *Cm, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda,
                Bm, ldb, 0.0f, Cm, ldc);
}

/* One forward's GEMMs; adds each kind's seconds into t[kind]. */
static void forward(model *m, double t[NKINDS]) {
    int B = m->B, T = m->T, BT = B * T;
    double t0;
    for (int l = 0; l < LAYERS; l++) {
        const layer_weights *w = &m->layer[l];
        t0 = now();
        sgemm(0, BT, C3, C, m->x, C, w->w_qkv, C3, m->qkv, C3);
        t[K_QKV] += now() - t0;

        t0 = now();
        for (int b = 0; b < B; b++)
            for (int hd = 0; hd < H; hd++) {
                const float *q = m->qkv + (size_t)b * T * C3 + hd * D;  /* [T, 64], ld 2304 */
                const float *k = q + C;
                float *a = m->att + ((size_t)b * H + hd) * T * T;       /* [T, T] */
                sgemm(1, T, T, D, q, C3, k, C3, a, T);
            }
        t[K_QK] += now() - t0;

        t0 = now();
        for (int b = 0; b < B; b++)
            for (int hd = 0; hd < H; hd++) {
                const float *v = m->qkv + (size_t)b * T * C3 + 2 * C + hd * D;  /* [T, 64] */
                const float *a = m->att + ((size_t)b * H + hd) * T * T;
                float *yo = m->y + (size_t)b * T * C + hd * D;                  /* [T, 64], ld 768 */
                sgemm(0, T, D, T, a, T, v, C3, yo, C);
            }
        t[K_PV] += now() - t0;

        t0 = now();
        sgemm(0, BT, C, C, m->y, C, w->w_proj, C, m->out, C);
        t[K_PROJ] += now() - t0;

        t0 = now();
        sgemm(0, BT, C4, C, m->x, C, w->w_fc, C4, m->h, C4);
        t[K_FC] += now() - t0;

        t0 = now();
        sgemm(0, BT, C, C4, m->h, C4, w->w_fcp, C, m->out, C);
        t[K_FCP] += now() - t0;
    }
    t0 = now();
    sgemm(1, BT, V, C, m->x, C, m->wte, C, m->logits, V);
    t[K_LMHEAD] += now() - t0;
}

static double forward_flops(int B, int T) {
    double bt = (double)B * T, per_layer = 2.0 * bt * C * C3          /* qkv */
                                         + 2.0 * 2.0 * B * H * (double)T * T * D  /* QK^T, PV */
                                         + 2.0 * bt * C * C            /* attn proj */
                                         + 2.0 * 2.0 * bt * C * C4;    /* fc, fc proj */
    return LAYERS * per_layer + 2.0 * bt * C * V;
}

enum { MAX_REPS = 1000 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_config(int B, int T) {
    model m;
    model_init(&m, B, T);
    double t[NKINDS] = {0};
    forward(&m, t);  /* warm-up: page faults, OpenBLAS thread start */
    memset(t, 0, sizeof t);
    double best = 1e30, total = 0, times[MAX_REPS];
    int reps = 0;
    double start = now();
    while (reps < MAX_REPS && (reps < 3 || now() - start < 2.0)) {
        double t0 = now();
        forward(&m, t);
        double dt = now() - t0;
        if (dt < best) best = dt;
        total += dt;
        times[reps++] = dt;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double median = reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
    double flops = forward_flops(B, T);
    printf("batch %d, seq %4d: %9.2f ms/forward best, %9.2f mean, %9.2f median (%d reps)  %7.1f GFLOP/s  "
           "(%.1f GFLOP)\n",
           B, T, best * 1e3, total / reps * 1e3, median * 1e3, reps, flops / best * 1e-9, flops * 1e-9);
    printf("   share:");
    for (int k = 0; k < NKINDS; k++) printf(" %s %.1f%%", kind_names[k], 100.0 * t[k] / total);
    printf("\n");
    model_free(&m);
}

int main(int argc, char **argv) {
    printf("gemm_peer: %s, core %s, %d threads\n", openblas_get_config(), openblas_get_corename(),
           openblas_get_num_threads());
    static const int configs[][2] = {{1, 1024}, {1, 64}, {8, 64}};
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            int B, T;
            if (sscanf(argv[i], "%dx%d", &B, &T) != 2 || B < 1 || T < 1) {
                fprintf(stderr, "gemm_peer: bad configuration '%s' (want BxT, e.g. 8x64)\n", argv[i]);
                return 2;
            }
            run_config(B, T);
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) run_config(configs[i][0], configs[i][1]);
    return 0;
}
