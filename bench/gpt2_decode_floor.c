/* gpt2_decode_floor.c — the floor under a GPT-2 small decode step on this CPU: one OpenBLAS
 * sgemv per weight matrix (12 layers of c_attn, c_proj, c_fc, mlp c_proj, then the tied LM
 * head), i.e. reading all 124 M weights once, as a token of decode must. No loom code; the
 * "peer" that bench/gpt2_decode.sh prints next to loom's decode rate.
 *
 *   bench_gpt2_decode_floor [REPEATS]      prints the best time of REPEATS (default 5)
 * OPENBLAS_NUM_THREADS sets the threads.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    enum { C = 768, LAYERS = 12, VOCAB = 50257 };
    const int shapes[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}}; /* [in, out], x @ W */
    size_t n = (size_t)VOCAB * C;
    for (int k = 0; k < 4; k++)
        n += (size_t)LAYERS * shapes[k][0] * shapes[k][1];
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    float *w = malloc(n * sizeof *w), *x = malloc(4 * C * sizeof *x), *y = malloc(VOCAB * sizeof *y);
    if (!w || !x || !y)
        return 1;
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(i % 13) * 0.01f;
    for (int i = 0; i < 4 * C; i++)
        x[i] = 1.0f;
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t0 = now_ms();
        size_t off = 0;
        for (int l = 0; l < LAYERS; l++)
            for (int k = 0; k < 4; k++) {
                int in = shapes[k][0], out = shapes[k][1];
                cblas_sgemv(CblasRowMajor, CblasTrans, in, out, 1.0f, w + off, out, x, 1, 0.0f, y, 1);
                off += (size_t)in * out;
            }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, VOCAB, C, 1.0f, w + off, C, x, 1, 0.0f, y, 1); /* LM head */
        double t = now_ms() - t0;
        best = t < best ? t : best;
    }
    printf("gpt2_decode_floor: %zu weights, sgemv each once: best %.1f ms (%.1f tok/s, %.2f GB/s)\n", n, best,
           1e3 / best, (double)n * 4 / best / 1e6);
    free(w);
    free(x);
    free(y);
    return 0;
}
