/* test_kir_transpose.c — index mappings on multi-dimensional grids, JIT-compiled for the host
 * and compared exactly with plain C loops: a 2-D transpose out[j, i] = in[i, j] (f32), and a
 * 3-D permutation out[c, a, b] = in[a, b, c] (i64 and u8 → i32), each run whole and in chunks
 * of grid dim 0.
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

enum { M = 45, N = 67 };
enum { A = 5, B = 6, C = 7 };

static void test_transpose_2d(void)
{
    cg_kernel *k = kt_transpose2d(M, N);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(M * N, -1, 1), *y = calloc(M * N, sizeof *y), *ref = calloc(M * N, sizeof *ref);
    for (int ii = 0; ii < M; ii++)
        for (int jj = 0; jj < N; jj++)
            ref[jj * M + ii] = x[ii * N + jj];
    void *args[] = {x, y};
    for (int chunks = 1; chunks <= 4; chunks += 3) {
        memset(y, 0, M * N * sizeof *y);
        kt_run(fn, args, N, chunks);
        CHECK(memcmp(y, ref, M * N * sizeof *y) == 0);
    }
    printf("%-28s [%d, %d] exact: OK\n", "transpose 2-D f32", M, N);
    free(x), free(y), free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

/* out[c, a, b] = in[a, b, c] (perm [2, 0, 1]) on a grid [C, A, B]; also writes
 * wide[c, a, b] = (i32) bytes[a, b, c] + 1 from a u8 buffer. */
static void test_permute_3d(void)
{
    cg_kernel *k = kt_permute3d(A, B, C);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    int64_t x[A * B * C], y[A * B * C], ref[A * B * C];
    uint8_t u[A * B * C];
    int32_t w[A * B * C], wref[A * B * C];
    for (int i = 0; i < A * B * C; i++) {
        x[i] = (int64_t)i * 1000003 - 77;
        u[i] = (uint8_t)(i * 37);
    }
    for (int aa = 0; aa < A; aa++)
        for (int bb = 0; bb < B; bb++)
            for (int cc = 0; cc < C; cc++) {
                ref[(cc * A + aa) * B + bb] = x[(aa * B + bb) * C + cc];
                wref[(cc * A + aa) * B + bb] = u[(aa * B + bb) * C + cc] + 1;
            }
    void *args[] = {x, u, y, w};
    kt_run(fn, args, C, 3);
    CHECK(memcmp(y, ref, sizeof y) == 0);
    CHECK(memcmp(w, wref, sizeof w) == 0);
    printf("%-28s [%d, %d, %d] exact: OK\n", "permute 3-D i64, u8->i32", A, B, C);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

int main(void)
{
    test_transpose_2d();
    test_permute_3d();
    return 0;
}
