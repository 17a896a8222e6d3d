/* test_kir_kernels.h — the kernels of the kernel IR tests (tests/unit/test_kir_*.c), one
 * builder each with its sizes as arguments, shared with the backend tests that render the same
 * kernels (test_opencl.c, test_ptx.c, test_cuda_driver.c); and the independent f16 / bf16
 * conversions the half tests check against. Header-only so that the unit-test glob (one
 * executable per .c) stays one file per test.
 */
#ifndef LOOM_TEST_KIR_KERNELS_H
#define LOOM_TEST_KIR_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"

/* gelu_tanh(x) in kernel IR, in x's float type. */
static inline cg_val kt_gelu_tanh(cg_kernel *k, cg_val x, cg_type t)
{
    cg_val x3 = cg_mul(k, cg_mul(k, x, x), x);
    cg_val in = cg_mul(k, cg_const_float(k, t, 0.7978845608028654),
                       cg_add(k, x, cg_mul(k, cg_const_float(k, t, 0.044715), x3)));
    cg_val th = cg_unary(k, CG_TANH, in);
    return cg_mul(k, cg_mul(k, cg_const_float(k, t, 0.5), x), cg_add(k, cg_const_float(k, t, 1), th));
}

/* out[i] = gelu_tanh(a[i] + b[i % n]) over a [r, n] tensor flattened to a 1-D grid. */
static inline cg_kernel *kt_gelu_bcast(const char *name, ir_dtype dt, int64_t r, int64_t n)
{
    cg_kernel *k = cg_kernel_new(name);
    int a = cg_kernel_buffer(k, "a", dt, CG_IN, r * n);
    int b = cg_kernel_buffer(k, "b", dt, CG_IN, n);
    int out = cg_kernel_buffer(k, "out", dt, CG_OUT, r * n);
    cg_kernel_dim(k, r * n);
    cg_val i = cg_pidx(k, 0);
    cg_val x = cg_add(k, cg_load(k, a, i), cg_load(k, b, cg_mod(k, i, cg_i64(k, n))));
    cg_store(k, out, i, kt_gelu_tanh(k, x, cg_compute_type(dt)));
    return k;
}

/* A scalar argument: out[i] = (i64)(a[i] * (f32) n) + i over len elements. */
static inline cg_kernel *kt_scale_by_n(int64_t len)
{
    cg_kernel *k = cg_kernel_new("scale_by_n");
    int a = cg_kernel_buffer(k, "a", DT_F32, CG_IN, len);
    int n = cg_kernel_scalar(k, "n");
    int out = cg_kernel_buffer(k, "out", DT_I64, CG_OUT, len);
    cg_kernel_dim(k, len);
    cg_val i = cg_pidx(k, 0);
    cg_val x = cg_mul(k, cg_load(k, a, i), cg_cast(k, CG_F32, cg_scalar(k, n)));
    cg_store(k, out, i, cg_add(k, cg_cast(k, CG_I64, x), i));
    return k;
}

/* out[j, i] = in[i, j] for in [m, n] (f32), on a grid [n, m]. */
static inline cg_kernel *kt_transpose2d(int64_t m, int64_t n)
{
    cg_kernel *k = cg_kernel_new("transpose2d");
    int in = cg_kernel_buffer(k, "in", DT_F32, CG_IN, m * n);
    int out = cg_kernel_buffer(k, "out", DT_F32, CG_OUT, m * n);
    cg_kernel_dim(k, n); /* j: output rows */
    cg_kernel_dim(k, m); /* i: output cols */
    cg_val j = cg_pidx(k, 0), i = cg_pidx(k, 1);
    cg_val src = cg_add(k, cg_mul(k, i, cg_i64(k, n)), j);
    cg_val dst = cg_add(k, cg_mul(k, j, cg_i64(k, m)), i);
    cg_store(k, out, dst, cg_load(k, in, src));
    return k;
}

/* out[c, a, b] = in[a, b, c] (perm [2, 0, 1], i64) on a grid [C, A, B]; also
 * wide[c, a, b] = (i32) bytes[a, b, c] + 1 from a u8 buffer. */
static inline cg_kernel *kt_permute3d(int64_t A, int64_t B, int64_t C)
{
    cg_kernel *k = cg_kernel_new("permute3d");
    int in = cg_kernel_buffer(k, "in", DT_I64, CG_IN, A * B * C);
    int bytes = cg_kernel_buffer(k, "bytes", DT_U8, CG_IN, A * B * C);
    int out = cg_kernel_buffer(k, "out", DT_I64, CG_OUT, A * B * C);
    int wide = cg_kernel_buffer(k, "wide", DT_I32, CG_OUT, A * B * C);
    cg_kernel_dim(k, C);
    cg_kernel_dim(k, A);
    cg_kernel_dim(k, B);
    cg_val c = cg_pidx(k, 0), a = cg_pidx(k, 1), b = cg_pidx(k, 2);
    cg_val src = cg_add(k, cg_mul(k, cg_add(k, cg_mul(k, a, cg_i64(k, B)), b), cg_i64(k, C)), c);
    cg_val dst = cg_add(k, cg_mul(k, cg_add(k, cg_mul(k, c, cg_i64(k, A)), a), cg_i64(k, B)), b);
    cg_store(k, out, dst, cg_load(k, in, src));
    cg_store(k, wide, dst, cg_add(k, cg_load(k, bytes, src), cg_const_int(k, CG_I32, 1)));
    return k;
}

/* softmax over the last axis of x [rows, cols] into y: three loops per row (max-reduce,
 * sum-of-exp reduce, store). */
static inline cg_kernel *kt_softmax_rows(const char *name, int64_t rows, int64_t cols)
{
    cg_kernel *k = cg_kernel_new(name);
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, rows * cols);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_OUT, rows * cols);
    cg_kernel_dim(k, rows);
    int l_max = cg_kernel_loop(k, cols), l_sum = cg_kernel_loop(k, cols), l_out = cg_kernel_loop(k, cols);
    cg_val row = cg_mul(k, cg_pidx(k, 0), cg_i64(k, cols));
    cg_val m = cg_reduce(k, CG_RED_MAX, l_max, cg_load(k, x, cg_add(k, row, cg_lidx(k, l_max))));
    cg_val e1 = cg_unary(k, CG_EXP, cg_sub(k, cg_load(k, x, cg_add(k, row, cg_lidx(k, l_sum))), m));
    cg_val s = cg_reduce(k, CG_RED_SUM, l_sum, e1);
    cg_val inv = cg_unary(k, CG_RECIP, s); /* once per row, after the sum */
    cg_val at = cg_add(k, row, cg_lidx(k, l_out));
    cg_val e2 = cg_unary(k, CG_EXP, cg_sub(k, cg_load(k, x, at), m));
    cg_store(k, y, at, cg_mul(k, e2, inv));
    return k;
}

/* layernorm over x [rows, c] with weight and bias [c], two-pass (mean, then biased variance
 * of x - mean), also writing mean and rstd per row (what a backward pass keeps). */
static inline cg_kernel *kt_layernorm_rows(int64_t rows, int64_t c, double eps)
{
    cg_kernel *k = cg_kernel_new("layernorm_rows");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, rows * c);
    int w = cg_kernel_buffer(k, "w", DT_F32, CG_IN, c);
    int b = cg_kernel_buffer(k, "b", DT_F32, CG_IN, c);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_OUT, rows * c);
    int mean_out = cg_kernel_buffer(k, "mean", DT_F32, CG_OUT, rows);
    int rstd_out = cg_kernel_buffer(k, "rstd", DT_F32, CG_OUT, rows);
    cg_kernel_dim(k, rows);
    int l0 = cg_kernel_loop(k, c), l1 = cg_kernel_loop(k, c), l2 = cg_kernel_loop(k, c);
    cg_val r = cg_pidx(k, 0), row = cg_mul(k, r, cg_i64(k, c)), inv_c = cg_f32(k, 1.0 / (double)c);
    cg_val mean = cg_mul(k, cg_reduce(k, CG_RED_SUM, l0, cg_load(k, x, cg_add(k, row, cg_lidx(k, l0)))), inv_c);
    cg_val d1 = cg_sub(k, cg_load(k, x, cg_add(k, row, cg_lidx(k, l1))), mean);
    cg_val var = cg_mul(k, cg_reduce(k, CG_RED_SUM, l1, cg_mul(k, d1, d1)), inv_c);
    cg_val rstd = cg_unary(k, CG_RSQRT, cg_add(k, var, cg_f32(k, eps)));
    cg_val c2 = cg_lidx(k, l2), at = cg_add(k, row, c2);
    cg_val norm = cg_mul(k, cg_sub(k, cg_load(k, x, at), mean), rstd);
    cg_store(k, y, at, cg_add(k, cg_mul(k, norm, cg_load(k, w, c2)), cg_load(k, b, c2)));
    cg_store(k, mean_out, r, mean);
    cg_store(k, rstd_out, r, rstd);
    return k;
}

/* kt_layernorm_rows's reference, in double (the kernel's f32 error is then its own, not the
 * sum of two): y [rows, c], mean and rstd [rows]. */
static inline void kt_layernorm_ref(const float *x, const float *w, const float *b, int64_t rows, int64_t c,
                                    double eps, float *y, float *mean, float *rstd)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double s = 0, v = 0;
        for (int64_t i = 0; i < c; i++)
            s += xr[i];
        double m = s / (double)c;
        for (int64_t i = 0; i < c; i++)
            v += (xr[i] - m) * (xr[i] - m);
        double rs = 1.0 / sqrt(v / (double)c + eps);
        mean[r] = (float)m, rstd[r] = (float)rs;
        for (int64_t i = 0; i < c; i++)
            y[r * c + i] = (float)((xr[i] - m) * rs * w[i] + b[i]);
    }
}

/* f16 and bf16 as storage types over n elements: copies (f16 → f16, bf16 → bf16), f32 stores
 * rounded to f16 and bf16, bf16 mix = f16 h * bf16 b + 1, and the rounding ops in registers
 * (f32 h_round = round_f16(f), b_round = round_bf16(f)). */
static inline cg_kernel *kt_half_io(int64_t n)
{
    cg_kernel *k = cg_kernel_new("half_io");
    int h_in = cg_kernel_buffer(k, "h_in", DT_F16, CG_IN, n);
    int b_in = cg_kernel_buffer(k, "b_in", DT_BF16, CG_IN, n);
    int f_in = cg_kernel_buffer(k, "f_in", DT_F32, CG_IN, n);
    int h_copy = cg_kernel_buffer(k, "h_copy", DT_F16, CG_OUT, n);
    int b_copy = cg_kernel_buffer(k, "b_copy", DT_BF16, CG_OUT, n);
    int h_from_f = cg_kernel_buffer(k, "h_from_f", DT_F16, CG_OUT, n);
    int b_from_f = cg_kernel_buffer(k, "b_from_f", DT_BF16, CG_OUT, n);
    int mix = cg_kernel_buffer(k, "mix", DT_BF16, CG_OUT, n);
    int h_round = cg_kernel_buffer(k, "h_round", DT_F32, CG_OUT, n);
    int b_round = cg_kernel_buffer(k, "b_round", DT_F32, CG_OUT, n);
    cg_kernel_dim(k, n);
    cg_val i = cg_pidx(k, 0);
    cg_val h = cg_load(k, h_in, i), b = cg_load(k, b_in, i), f = cg_load(k, f_in, i);
    cg_store(k, h_copy, i, h);
    cg_store(k, b_copy, i, b);
    cg_store(k, h_from_f, i, f);
    cg_store(k, b_from_f, i, f);
    cg_store(k, mix, i, cg_add(k, cg_mul(k, h, b), cg_f32(k, 1)));
    cg_store(k, h_round, i, cg_unary(k, CG_RF16, f));
    cg_store(k, b_round, i, cg_unary(k, CG_RBF16, f));
    return k;
}

/* Float math, one input buffer x<c> and one output buffer y<c> of n f32 per op c:
 * y<c> = op(x<c>), CG_POW as pow(x, 1.7). */
static inline cg_kernel *kt_math_f32(const char *name, const cg_op *ops, int n_ops, int64_t n)
{
    cg_kernel *k = cg_kernel_new(name);
    int *in = malloc(2 * (size_t)n_ops * sizeof *in), *out = in + n_ops;
    char nm[16];
    for (int c = 0; c < n_ops; c++) {
        snprintf(nm, sizeof nm, "x%d", c);
        in[c] = cg_kernel_buffer(k, nm, DT_F32, CG_IN, n);
        snprintf(nm, sizeof nm, "y%d", c);
        out[c] = cg_kernel_buffer(k, nm, DT_F32, CG_OUT, n);
    }
    cg_kernel_dim(k, n);
    cg_val i = cg_pidx(k, 0);
    for (int c = 0; c < n_ops; c++) {
        cg_val x = cg_load(k, in[c], i);
        cg_val y = ops[c] == CG_POW ? cg_binary(k, CG_POW, x, cg_f32(k, 1.7)) : cg_unary(k, ops[c], x);
        cg_store(k, out[c], i, y);
    }
    free(in);
    return k;
}

/* ---- independent f16 / bf16 conversions (not the kernels' bit tricks) ------------------------ */

static inline float kt_half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000 ? -v : v;
}

static inline float kt_bf16_to_float(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Round to nearest even by arithmetic on the value (not the kernel's bit trick). */
static inline uint16_t kt_float_to_half(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (isnan(f))
        return sign | 0x7e00;
    if (a >= 65520.0f) /* halfway between 65504 and 2^16 rounds (to even) up: inf */
        return sign | 0x7c00;
    if (a < ldexpf(1, -14))
        return sign | (uint16_t)nearbyintf(a * 16777216.0f); /* m * 2^-24; 1024 is the least normal */
    int e;
    frexpf(a, &e);
    uint32_t q = (uint32_t)nearbyintf(ldexpf(a, 11 - e)); /* 11 significant bits, in [1024, 2048] */
    int E = e + 14;
    if (q == 2048)
        q = 1024, E++;
    return E >= 31 ? (uint16_t)(sign | 0x7c00) : (uint16_t)(sign | (E << 10) | (q - 1024));
}

/* The nearer of the two bf16 neighbours of f; ties to the even one. */
static inline uint16_t kt_float_to_bf16(float f)
{
    if (isnan(f))
        return 0x7fc0;
    uint32_t x, lo, hi;
    memcpy(&x, &f, sizeof x);
    lo = x & 0xffff0000u;
    hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, sizeof flo);
    memcpy(&fhi, &hi, sizeof fhi);
    double dhi_val = (hi & 0x7fffffffu) == 0x7f800000u ? copysign(ldexp(1, 128), f) : fhi;
    double dlo = fabs((double)f - flo), dhi = fabs(dhi_val - f);
    uint32_t r = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;
    return (uint16_t)(r >> 16);
}

/* round_f16(f) and round_bf16(f) as f32 equal the C conversions there and back (bit for bit;
 * a NaN stays NaN). */
static inline bool kt_rounds_ok(float f, float hr, float br)
{
    if (isnan(f))
        return isnan(hr) && isnan(br);
    float wh = kt_half_to_float(kt_float_to_half(f)), wb = kt_bf16_to_float(kt_float_to_bf16(f));
    return memcmp(&hr, &wh, sizeof hr) == 0 && memcmp(&br, &wb, sizeof br) == 0;
}

/* ---- sequential kernels (kir.h, "Sequential kernels") ------------------------------------ */

/* out[c] = sum over r of x[r·W + c], rows added in order (one carry). */
static inline cg_kernel *kt_seq_colsum(int64_t R, int64_t W)
{
    cg_kernel *k = cg_kernel_new("seq_colsum");
    cg_kernel_set_seq(k);
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, R * W);
    int out = cg_kernel_buffer(k, "out", DT_F32, CG_OUT, W);
    cg_kernel_dim(k, W);
    cg_val c = cg_pidx(k, 0);
    int l = cg_loop_open(k, R, -1);
    cg_val acc = cg_carry(k, l, cg_f32(k, 0));
    cg_carry_next(k, acc, cg_add(k, acc, cg_load(k, x, cg_add(k, cg_mul(k, cg_lidx(k, l), cg_i64(k, W)), c))));
    cg_loop_close(k);
    cg_store(k, out, c, cg_last(k, acc));
    return k;
}

static inline void kt_seq_colsum_ref(const float *x, float *out, int64_t R, int64_t W)
{
    for (int64_t c = 0; c < W; c++) {
        float acc = 0;
        for (int64_t r = 0; r < R; r++)
            acc += x[r * W + c];
        out[c] = acc;
    }
}

/* Nested loops, bounds, carries that feed one another; per grid point i < N:
 *   tri[i]  = sum over j <= i (a bound) of sum over d < D of x[j·D + d]·(d + 1) (a carry of the
 *             outer loop whose next value is the last of an inner carry started at it);
 *   none[i] = 7 + sum over an empty loop (bound i - N < 0): the carry's init;
 *   fib[i]  = a after i % 11 steps of (a, b) = (b, a + b) from (0, 1) (carries that swap). */
static inline cg_kernel *kt_seq_nested(int64_t N, int64_t D)
{
    cg_kernel *k = cg_kernel_new("seq_nested");
    cg_kernel_set_seq(k);
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, N * D);
    int tri = cg_kernel_buffer(k, "tri", DT_F32, CG_OUT, N);
    int none = cg_kernel_buffer(k, "none", DT_F32, CG_OUT, N);
    int fib = cg_kernel_buffer(k, "fib", DT_I64, CG_OUT, N);
    cg_kernel_dim(k, N);
    cg_val i = cg_pidx(k, 0);
    int lj = cg_loop_open(k, N, cg_add(k, i, cg_i64(k, 1)));
    cg_val outer = cg_carry(k, lj, cg_f32(k, 0));
    int ld = cg_loop_open(k, D, -1);
    cg_val inner = cg_carry(k, ld, outer);
    cg_val d = cg_lidx(k, ld);
    cg_val xv = cg_load(k, x, cg_add(k, cg_mul(k, cg_lidx(k, lj), cg_i64(k, D)), d));
    cg_carry_next(k, inner, cg_add(k, inner, cg_mul(k, xv, cg_cast(k, CG_F32, cg_add(k, d, cg_i64(k, 1))))));
    cg_loop_close(k);
    cg_carry_next(k, outer, cg_last(k, inner));
    cg_loop_close(k);
    cg_store(k, tri, i, cg_last(k, outer));
    int le = cg_loop_open(k, 5, cg_sub(k, i, cg_i64(k, N)));
    cg_val e = cg_carry(k, le, cg_f32(k, 7));
    cg_carry_next(k, e, cg_add(k, e, cg_f32(k, 100)));
    cg_loop_close(k);
    cg_store(k, none, i, cg_last(k, e));
    int lf = cg_loop_open(k, 10, cg_mod(k, i, cg_i64(k, 11)));
    cg_val a = cg_carry(k, lf, cg_i64(k, 0)), b = cg_carry(k, lf, cg_i64(k, 1));
    cg_carry_next(k, a, b);
    cg_carry_next(k, b, cg_add(k, a, b));
    cg_loop_close(k);
    cg_store(k, fib, i, cg_last(k, a));
    return k;
}

static inline void kt_seq_nested_ref(const float *x, float *tri, float *none, int64_t *fib, int64_t N, int64_t D)
{
    for (int64_t i = 0; i < N; i++) {
        float acc = 0;
        for (int64_t j = 0; j <= i; j++)
            for (int64_t d = 0; d < D; d++)
                acc += x[j * D + d] * (float)(d + 1);
        tri[i] = acc;
        none[i] = 7;
        int64_t a = 0, b = 1;
        for (int64_t s = 0; s < (i % 11 < 10 ? i % 11 : 10); s++) {
            int64_t t = a + b;
            a = b;
            b = t;
        }
        fib[i] = a;
    }
}

/* Scatter-add in program order: per column c, dst[r·W + c] = 0 for every row r, then for
 * j < n in order dst[ids[j]·W + c] += src[j·W + c] (reads of what the point wrote before). */
static inline cg_kernel *kt_seq_scatter(int64_t n, int64_t R, int64_t W)
{
    cg_kernel *k = cg_kernel_new("seq_scatter");
    cg_kernel_set_seq(k);
    int src = cg_kernel_buffer(k, "src", DT_F32, CG_IN, n * W);
    int ids = cg_kernel_buffer(k, "ids", DT_I32, CG_IN, n);
    int dst = cg_kernel_buffer(k, "dst", DT_F32, CG_INOUT, R * W);
    cg_kernel_dim(k, W);
    cg_val c = cg_pidx(k, 0), w = cg_i64(k, W);
    int lz = cg_loop_open(k, R, -1);
    cg_store(k, dst, cg_add(k, cg_mul(k, cg_lidx(k, lz), w), c), cg_f32(k, 0));
    cg_loop_close(k);
    int la = cg_loop_open(k, n, -1);
    cg_val j = cg_lidx(k, la);
    cg_val at = cg_add(k, cg_mul(k, cg_cast(k, CG_I64, cg_load(k, ids, j)), w), c);
    cg_store(k, dst, at, cg_add(k, cg_load(k, dst, at), cg_load(k, src, cg_add(k, cg_mul(k, j, w), c))));
    cg_loop_close(k);
    return k;
}

static inline void kt_seq_scatter_ref(const float *src, const int32_t *ids, float *dst, int64_t n, int64_t R, int64_t W)
{
    memset(dst, 0, sizeof(float) * (size_t)(R * W));
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < W; c++)
            dst[ids[j] * W + c] += src[j * W + c];
}

/* In-place row updates (inout) of [R, C]: x[r, :] -= mean(x[r, :]) (the reduction's barrier
 * separates the reads from the writes), and y[r, :] *= y[r, 0] (no reduction: a GPU renderer
 * must put a group barrier between every work-item's read of y[r, 0] and the writes; kir.h's
 * cg_kernel_group_barriers: one, before loop 0). */
static inline cg_kernel *kt_inplace_rows(int64_t R, int64_t C)
{
    cg_kernel *k = cg_kernel_new("inplace_rows");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_INOUT, R * C);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_INOUT, R * C);
    cg_kernel_dim(k, R);
    int l0 = cg_kernel_loop(k, C), l1 = cg_kernel_loop(k, C);
    cg_val row = cg_mul(k, cg_pidx(k, 0), cg_i64(k, C));
    cg_val first = cg_load(k, y, row);
    cg_val at0 = cg_add(k, row, cg_lidx(k, l0));
    cg_store(k, y, at0, cg_mul(k, cg_load(k, y, at0), first));
    cg_val mean = cg_mul(k, cg_reduce(k, CG_RED_SUM, l0, cg_load(k, x, at0)), cg_f32(k, 1.0 / (double)C));
    cg_val at1 = cg_add(k, row, cg_lidx(k, l1));
    cg_store(k, x, at1, cg_sub(k, cg_load(k, x, at1), mean));
    return k;
}

#endif
