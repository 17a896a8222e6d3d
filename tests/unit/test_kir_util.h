/* test_kir_util.h — helpers shared by the kernel IR tests (tests/unit/test_kir_*.c): a fixed
 * random generator, JIT-compiling one kernel, running it in chunks the way a thread pool would,
 * and comparing against a plain C reference with the max abs/rel error printed. Header-only so
 * that the unit-test glob (one executable per .c) stays one file per test.
 */
#ifndef LOOM_TEST_KIR_UTIL_H
#define LOOM_TEST_KIR_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codegen/codegen.h"

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static uint64_t kt_state = 0x9e3779b97f4a7c15ull;

/* Uniform in [lo, hi). */
static inline float kt_uniform(float lo, float hi)
{
    kt_state ^= kt_state << 13;
    kt_state ^= kt_state >> 7;
    kt_state ^= kt_state << 17;
    return lo + (hi - lo) * (float)((kt_state >> 40) * (1.0 / 16777216.0));
}

static inline float *kt_random(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    CHECK(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = kt_uniform(lo, hi);
    return p;
}

/* Validates and JIT-compiles kernel k into a fresh JIT (*jit, freed by the caller) and returns
 * its entry point; prints the kernel and the diagnostics and exits on any error. */
static inline cg_host_fn kt_jit(cg_kernel *k, cg_jit **jit)
{
    ir_diag d;
    ir_diag_init(&d);
    *jit = cg_jit_new(&d);
    cg_host_fn fn = NULL;
    if (*jit && cg_jit_add(*jit, &k, 1, NULL, &d))
        fn = cg_jit_lookup(*jit, k->name, &d);
    if (!fn) {
        cg_kernel_print(k, stderr);
        ir_diag_print(&d, stderr);
        exit(1);
    }
    ir_diag_free(&d);
    return fn;
}

/* Runs fn over grid dim 0 of size n in `chunks` pieces, as a thread pool would split it. */
static inline void kt_run(cg_host_fn fn, void **args, int64_t n, int chunks)
{
    for (int c = 0; c < chunks; c++)
        fn(args, n * c / chunks, n * (c + 1) / chunks);
}

/* Compares got with want: passes if |got - want| <= rtol * |want| + atol everywhere. Prints
 * the max abs error and the max rel error (over |want| >= 1e-3). */
static inline bool kt_compare(const char *what, const float *got, const float *want, int64_t n, double rtol,
                              double atol)
{
    double max_abs = 0, max_rel = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double a = got[i], b = want[i], e = fabs(a - b);
        if (!(e <= rtol * fabs(b) + atol) && bad < 0)
            bad = i;
        if (e > max_abs || isnan(e))
            max_abs = e;
        if (fabs(b) >= 1e-3 && e / fabs(b) > max_rel)
            max_rel = e / fabs(b);
    }
    printf("%-28s n=%-8lld max abs err %.3g, max rel err %.3g (rtol %g, atol %g): %s\n", what, (long long)n,
           max_abs, max_rel, rtol, atol, bad < 0 ? "OK" : "FAIL");
    if (bad >= 0)
        fprintf(stderr, "  first mismatch at %lld: got %.9g, want %.9g\n", (long long)bad, got[bad], want[bad]);
    return bad < 0;
}

#endif
