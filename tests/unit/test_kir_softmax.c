/* test_kir_softmax.c — a row kernel: softmax over the last axis of [ROWS, COLS], as kernel IR
 * with three loops per row (max-reduce, sum-of-exp reduce, store), JIT-compiled for the host
 * and compared with a plain C loop (rel 1e-5). Rows include large offsets (exp overflows
 * without the max) and a row of -inf but one element (as a causal mask makes).
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { ROWS = 33, COLS = 301 };

int main(void)
{
    cg_kernel *k = kt_softmax_rows("softmax_rows", ROWS, COLS);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(ROWS * COLS, -8, 8), *y = calloc(ROWS * COLS, sizeof *y);
    float *ref = calloc(ROWS * COLS, sizeof *ref);
    for (int c = 0; c < COLS; c++) {
        x[1 * COLS + c] += 1000.0f;                  /* exp would overflow without the max */
        x[2 * COLS + c] = c == 17 ? 0.5f : -INFINITY; /* fully masked but one */
    }
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x + r * COLS;
        float m = -INFINITY, s = 0;
        for (int c = 0; c < COLS; c++)
            m = xr[c] > m ? xr[c] : m;
        for (int c = 0; c < COLS; c++)
            s += expf(xr[c] - m);
        for (int c = 0; c < COLS; c++)
            ref[r * COLS + c] = expf(xr[c] - m) / s;
    }
    void *args[] = {x, y};
    kt_run(fn, args, ROWS, 1);
    CHECK(kt_compare("softmax f32", y, ref, ROWS * COLS, 1e-5, 0));
    memset(y, 0, ROWS * COLS * sizeof *y);
    kt_run(fn, args, ROWS, 4);
    CHECK(kt_compare("softmax f32, 4 chunks", y, ref, ROWS * COLS, 1e-5, 0));
    CHECK(y[2 * COLS + 17] == 1.0f && y[2 * COLS + 16] == 0.0f);
    for (int r = 0; r < ROWS; r++) {
        double s = 0;
        for (int c = 0; c < COLS; c++)
            s += y[r * COLS + c];
        CHECK(fabs(s - 1) < 1e-5);
    }
    free(x), free(y), free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
    return 0;
}
