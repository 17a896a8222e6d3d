/* init.c — deterministic, order-independent parameter initialization (the generator is
 * specified in init.h). */
#include "io/init.h"

#include <math.h>
#include <string.h>

#include "io/safetensors.h"

#define GAMMA 0x9E3779B97F4A7C15ull

/* SplitMix64's output function: a bijective avalanche mix of 64 bits. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a, 64-bit, over the bytes of s. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* Uniform in [0, 1) from counter c of the stream `key`: 53 random bits. */
static double uniform01(uint64_t key, uint64_t c)
{
    return (double)(mix64(key + (c + 1) * GAMMA) >> 11) * 0x1p-53;
}

/* ---- the normal init: Box–Muller, its ln, sin and cos written here ----------------------------
 * glibc's log and sincos, a call per value, were 80% of initializing GPT-2 small (1.5 s of `loom
 * train`'s start-up on 2 threads). These are polynomials over arrays that the compiler
 * vectorizes (AVX-512, AVX2 or SSE2 clones: the same operations in the same order, so the same
 * bits on every machine; -ffp-contract=off for this file, CMakeLists.txt), within about an ulp of
 * the true values — as glibc's are — so the f32 params they give are glibc's bits but for a
 * value that falls within an ulp of an f32 rounding boundary (none of GPT-2 small's 124 M;
 * tests/unit/test_safetensors.c compares against libm). */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define INIT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define INIT_CLONES
#endif

#define LN2_HI 0.6931471805592082     /* ln 2 to 40 bits: k · LN2_HI is exact for the k here */
#define LN2_LO 7.371002565167799e-13  /* ln 2 − LN2_HI */

/* c[0] + x·(c[1] + x·(... + x·c[n − 1])), by Horner's rule. */
static inline double series(const double *c, int n, double x)
{
    double p = c[n - 1];
    for (int j = n - 2; j >= 0; j--)
        p = p * x + c[j];
    return p;
}

/* 1/3, 1/5, ..., 1/23: atanh(t)/t − 1 over t² */
static const double atanh_c[] = {1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13,
                                 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21, 1.0 / 23};
/* 1/3!, 1/5!, ..., 1/19!: sin r = r − r³ · series(sin_c, −r²) */
static const double sin_c[] = {1.0 / 6.0, 1.0 / 120.0, 1.0 / 5040.0, 1.0 / 362880.0, 1.0 / 39916800.0,
                               1.0 / 6227020800.0, 1.0 / 1307674368000.0, 1.0 / 355687428096000.0,
                               1.0 / 121645100408832000.0};
/* 1/4!, 1/6!, ..., 1/20!: cos r = 1 − r²/2 + r⁴ · series(cos_c, −r²) */
static const double cos_c[] = {1.0 / 24.0, 1.0 / 720.0, 1.0 / 40320.0, 1.0 / 3628800.0, 1.0 / 479001600.0,
                               1.0 / 87178291200.0, 1.0 / 20922789888000.0, 1.0 / 6402373705728000.0,
                               1.0 / 2432902008176640000.0};
#define N_OF(a) ((int)(sizeof a / sizeof *a))

/* ln x for x in (0, 1]: x = 2^k · m, m in [√½, √2); ln m = 2 atanh(t), t = (m − 1)/(m + 1),
 * |t| < 0.172, by its series to t^23 (the next term is below 2^-60 of the sum). */
static inline double ln_unit(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int64_t k = (int64_t)(b >> 52) - 1023;
    b = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull; /* m in [1, 2) */
    double m;
    memcpy(&m, &b, sizeof m);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        k += 1;
    }
    double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double kd = (double)k;
    return kd * LN2_HI + (2.0 * t + (2.0 * t * t2 * series(atanh_c, N_OF(atanh_c), t2) + kd * LN2_LO));
}

/* sin and cos of θ in [0, 2π]: θ − q·π/2 (q the nearest quadrant) in three parts of π/2 (each
 * product q·part exact), then the Taylor series on [−π/4, π/4] to r^19 and r^20. */
static inline void sincos_turn(double theta, double *s_out, double *c_out)
{
    /* π/2 = pio2_1 + pio2_2 + pio2_3: 33 bits, 33 bits, the rest (so q · pio2_1, q · pio2_2 exact) */
    const double pio2_1 = 1.5707963267341256, pio2_2 = 6.077100506303966e-11, pio2_3 = 2.0222662487959506e-21;
    double q = (double)(int64_t)(theta * 0.63661977236758134308 + 0.5); /* 2/π; θ ≥ 0 */
    double r = ((theta - q * pio2_1) - q * pio2_2) - q * pio2_3;
    double r2 = r * r;
    double sin_r = r - r * r2 * series(sin_c, N_OF(sin_c), -r2);
    double cos_r = 1.0 - 0.5 * r2 + r2 * r2 * series(cos_c, N_OF(cos_c), -r2);
    int64_t quad = (int64_t)q & 3;
    double a = quad & 1 ? cos_r : sin_r, c = quad & 1 ? sin_r : cos_r;
    *s_out = quad & 2 ? -a : a;
    *c_out = (quad + 1) & 2 ? -c : c;
}

enum { NORMAL_PAIRS = 256 };

/* r and the angle's sin and cos of pairs [p0, p0 + n), n ≤ NORMAL_PAIRS. */
INIT_CLONES static void normal_pairs(uint64_t key, uint64_t p0, size_t n, double *r, double *s, double *c)
{
    double u1[NORMAL_PAIRS], u2[NORMAL_PAIRS];
    for (size_t i = 0; i < n; i++) {
        u1[i] = uniform01(key, 2 * (p0 + i));
        u2[i] = uniform01(key, 2 * (p0 + i) + 1);
    }
    for (size_t i = 0; i < n; i++) {
        r[i] = sqrt(-2.0 * ln_unit(1.0 - u1[i])); /* 1 − U in (0, 1] */
        sincos_turn(2.0 * M_PI * u2[i], &s[i], &c[i]);
    }
}

static void fill_normal(uint64_t key, double scale, size_t first, size_t count, double *dst)
{
    double r[NORMAL_PAIRS], s[NORMAL_PAIRS], c[NORMAL_PAIRS];
    for (size_t i = 0; i < count;) {
        uint64_t p0 = (first + i) / 2, last = (first + count - 1) / 2;
        size_t n = last - p0 + 1 < NORMAL_PAIRS ? (size_t)(last - p0 + 1) : NORMAL_PAIRS;
        normal_pairs(key, p0, n, r, s, c);
        for (size_t j = 0; j < n && i < count; j++) {
            if ((first + i) % 2 == 0)
                dst[i++] = scale * r[j] * c[j];
            if (i < count)
                dst[i++] = scale * r[j] * s[j];
        }
    }
}

bool rt_init_known(const char *init)
{
    static const char *const names[] = {"zeros", "ones", "normal", "uniform", "const"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(init, names[i]) == 0)
            return true;
    return false;
}

void rt_init_fill(const char *init, double scale, const char *name, uint64_t seed, size_t first,
                  size_t count, double *dst)
{
    uint64_t key = mix64(fnv1a64(name) ^ mix64(seed + GAMMA));
    if (strcmp(init, "zeros") == 0 || strcmp(init, "ones") == 0 || strcmp(init, "const") == 0) {
        double v = init[0] == 'z' ? 0.0 : init[0] == 'o' ? 1.0 : scale;
        for (size_t i = 0; i < count; i++)
            dst[i] = v;
    } else if (strcmp(init, "uniform") == 0) {
        for (size_t i = 0; i < count; i++)
            dst[i] = -scale + 2 * scale * uniform01(key, first + i);
    } else if (strcmp(init, "normal") == 0) {
        fill_normal(key, scale, first, count, dst);
    } else {
        ir_unreachable("rt_init_fill: unknown init (the verifier should have rejected it)");
    }
}

void rt_init_param(const ir_node *param, uint64_t seed, size_t first, size_t count, double *dst)
{
    rt_init_fill(ir_attr_str(param, "init"), ir_attr_float(param, "scale"), param->name, seed,
                 first, count, dst);
}

typedef struct {
    const ir_node *param;
    uint64_t seed;
    size_t first;
    ir_dtype dt;
    char *dst;
} fill_job;

enum { FILL_CHUNK = 2048 }; /* counter-based: any split gives the same numbers */

static void fill_chunks(void *ctx, int64_t begin, int64_t end)
{
    const fill_job *j = ctx;
    double buf[FILL_CHUNK];
    size_t esize = (size_t)ir_dtype_size(j->dt);
    for (int64_t at = begin; at < end; at += FILL_CHUNK) {
        size_t k = (size_t)(end - at < FILL_CHUNK ? end - at : FILL_CHUNK);
        rt_init_param(j->param, j->seed, j->first + (size_t)at, k, buf);
        rt_convert_from_f64(j->dt, buf, j->dst + (size_t)at * esize, k);
    }
}

void rt_init_param_as(const ir_node *param, uint64_t seed, size_t first, size_t count, ir_dtype dt, void *dst,
                      rt_pool *pool)
{
    fill_job j = {param, seed, first, dt, dst};
    rt_pool_parallel_for_grain(pool, (int64_t)count, 1 << 16, fill_chunks, &j);
}
