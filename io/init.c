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
        for (size_t i = 0; i < count;) {
            uint64_t e = first + i, p = e / 2;
            double r = sqrt(-2.0 * log(1.0 - uniform01(key, 2 * p))); /* 1 − U in (0, 1] */
            double theta = 2.0 * M_PI * uniform01(key, 2 * p + 1);
            if (e % 2 == 1) {
                dst[i++] = scale * r * sin(theta);
                continue;
            }
            dst[i++] = scale * r * cos(theta);
            if (i < count) /* the pair's second element */
                dst[i++] = scale * r * sin(theta);
        }
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
