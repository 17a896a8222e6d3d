/* interp.c — the reference interpreter: one eval_* function per op family (named in ops.def),
 * tensors, rounding to storage dtypes, and ir_interp_run, which walks a graph.
 *
 * Everything here is naive on purpose: plain loops over row-major doubles that follow
 * docs/ir.md line by line, so this file can serve as the oracle for every backend and pass.
 * Eval functions read operand shapes from the tensors they get and the result shape from
 * `out` (allocated by the caller with the node's type); they assume the graph passed its shape
 * rules. Integer results are exact (truncated toward zero) in both precisions; rounding to
 * f32/f16/bf16 storage happens after each node in IR_PREC_F32 only (ir_interp_node).
 */
#include "ir/interp.h"

#include "ir/ops_impl.h"
#include "ir/shape.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tensors and rounding ------------------------------------------------------------------ */

ir_tensor *ir_tensor_new(ir_dtype dt, const ir_shape *shape)
{
    ir_tensor *t = calloc(1, sizeof *t);
    if (t)
        t->data = calloc((size_t)ir_shape_numel(shape) + 1, sizeof(double));
    if (!t || !t->data)
        ir_unreachable("out of memory");
    t->dtype = dt;
    t->shape = *shape;
    return t;
}

void ir_tensor_free(ir_tensor *t)
{
    if (t)
        free(t->data);
    free(t);
}

/* Rounds v to nearest-even in a binary float format with p significand bits (implicit bit
 * included), smallest normal 2^emin, largest finite value maxv; beyond it overflows to inf. */
static double round_format(double v, int p, int emin, double maxv)
{
    if (!isfinite(v) || v == 0)
        return v;
    int e;
    frexp(v, &e);               /* |v| = m * 2^e, m in [0.5, 1): last kept bit is 2^(e - p) */
    int q = e - p;
    if (q < emin - p + 1)
        q = emin - p + 1;       /* subnormals: a fixed quantum 2^(emin - p + 1) */
    double r = ldexp(nearbyint(ldexp(v, -q)), q); /* scaling by 2^q is exact; nearbyint is RNE */
    return fabs(r) > maxv ? copysign(INFINITY, v) : r;
}

double ir_round_to(ir_dtype dt, double v)
{
    switch (dt) {
    case DT_F32: return round_format(v, 24, -126, 0x1.fffffep127);
    case DT_F16: return round_format(v, 11, -14, 65504.0);
    case DT_BF16: return round_format(v, 8, -126, 0x1.fep127);
    case DT_I32:
    case DT_I64:
    case DT_U8:
    case DT_I8: return trunc(v);
    default: return v;
    }
}

/* ---- indexing helpers ---------------------------------------------------------------------- */

/* Row-major strides of s (in elements). */
static void strides_of(const ir_shape *s, int64_t st[IR_MAX_RANK])
{
    int64_t acc = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        st[i] = acc;
        acc *= s->dim[i];
    }
}

/* Strides that read x as if broadcast to `to` (NumPy rules): one per dim of `to`, 0 on dims
 * that x lacks or stretches from 1. */
static void bcast_strides(const ir_shape *x, const ir_shape *to, int64_t st[IR_MAX_RANK])
{
    int64_t xs[IR_MAX_RANK];
    strides_of(x, xs);
    for (int i = 0; i < to->rank; i++) {
        int j = x->rank - to->rank + i;
        st[i] = (j < 0 || x->dim[j] == 1) ? 0 : xs[j];
    }
}

/* Offset under strides st of the element whose row-major index in shape s is i. */
static int64_t offset_at(int64_t i, const ir_shape *s, const int64_t st[IR_MAX_RANK])
{
    int64_t off = 0;
    for (int k = s->rank - 1; k >= 0; k--) {
        off += (i % s->dim[k]) * st[k];
        i /= s->dim[k];
    }
    return off;
}

static int64_t numel(const ir_tensor *t) { return ir_shape_numel(&t->shape); }
static int64_t last_dim(const ir_tensor *t) { return t->shape.rank ? t->shape.dim[t->shape.rank - 1] : 1; }

static bool err(const ir_node *n, ir_diag *d, const char *msg)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: %s", ir_ops[n->op].mnemonic, msg);
    return false;
}

/* ---- sources and sinks ---------------------------------------------------------------------- */

/* input and param get their values from the caller (ir_interp_run binds them). */
bool eval_source(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "missing value for %s '%s'", ir_ops[n->op].mnemonic,
                  n->name ? n->name : "");
    return false;
}

/* const {value}: every element `value` (truncated for integer dtypes). */
bool eval_const(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double v = ir_attr_float(n, "value");
    if (ir_dtype_is_int(out->dtype))
        v = trunc(v);
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = v;
    return true;
}

/* iota {axis}: element = its index along axis. */
bool eval_iota(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int ax = ir_axis_norm(ir_attr_int(n, "axis"), out->shape.rank);
    int64_t st[IR_MAX_RANK];
    strides_of(&out->shape, st);
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = (double)((i / st[ax]) % out->shape.dim[ax]);
    return true;
}

/* output: nothing to compute (ir_interp_run copies the operand out). */
bool eval_output(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d) { return true; }

/* ---- elementwise: the reference formulas of unary.def and binary.def ---------------------- */

#define UNARY(id, epi) static double ref_##id(const ir_node *n, double x);
#include "ir/unary.def"
#undef UNARY
#define BINARY(id) static double ref_##id(double a, double b);
#include "ir/binary.def"
#undef BINARY

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double ref_neg(const ir_node *n, double x) { return -x; }
static double ref_abs(const ir_node *n, double x) { return fabs(x); }
static double ref_exp(const ir_node *n, double x) { return exp(x); }
static double ref_log(const ir_node *n, double x) { return log(x); }
static double ref_sqrt(const ir_node *n, double x) { return sqrt(x); }
static double ref_rsqrt(const ir_node *n, double x) { return 1.0 / sqrt(x); }
static double ref_recip(const ir_node *n, double x) { return 1.0 / x; }
static double ref_tanh(const ir_node *n, double x) { return tanh(x); }
static double ref_sigmoid(const ir_node *n, double x) { return sigmoid(x); }
static double ref_relu(const ir_node *n, double x) { return isnan(x) ? x : x > 0 ? x : 0.0; }
static double ref_silu(const ir_node *n, double x) { return x * sigmoid(x); }
static double ref_cast(const ir_node *n, double x) { return x; } /* rounding: ir_interp_node */

/* gelu {approx}: erf 0.5x(1 + erf(x/√2)); tanh 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))). */
static double ref_gelu(const ir_node *n, double x)
{
    if (strcmp(ir_attr_str(n, "approx"), "erf") == 0)
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double ref_add(double a, double b) { return a + b; }
static double ref_sub(double a, double b) { return a - b; }
static double ref_mul(double a, double b) { return a * b; }
static double ref_div(double a, double b) { return a / b; }
static double ref_pow(double a, double b) { return pow(a, b); }
static double ref_maximum(double a, double b) { return (a > b || isnan(a)) ? a : b; } /* NaN propagates */
static double ref_minimum(double a, double b) { return (a < b || isnan(a)) ? a : b; }

/* neg abs exp log sqrt rsqrt recip tanh sigmoid relu silu gelu cast: same shape. */
bool eval_unary(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double (*f)(const ir_node *, double) = NULL;
    switch (n->op) {
#define UNARY(id, epi) case OP_##id: f = ref_##id; break;
#include "ir/unary.def"
#undef UNARY
    default: ir_unreachable("eval_unary: not an OK_UNARY op"); /* ops.def names eval_unary for those only */
    }
    bool to_int = ir_dtype_is_int(out->dtype);
    for (int64_t i = 0; i < numel(out); i++) {
        double y = f(n, in[0]->data[i]);
        out->data[i] = to_int ? trunc(y) : y;
    }
    return true;
}

/* add sub mul div pow maximum minimum, NumPy broadcasting: out[i] = x[bcast i] op y[bcast i]. */
bool eval_binary(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double (*f)(double, double) = NULL;
    switch (n->op) {
#define BINARY(id) case OP_##id: f = ref_##id; break;
#include "ir/binary.def"
#undef BINARY
    default: ir_unreachable("eval_binary: not an OK_BINARY op");
    }
    int64_t sx[IR_MAX_RANK], sy[IR_MAX_RANK];
    bcast_strides(&in[0]->shape, &out->shape, sx);
    bcast_strides(&in[1]->shape, &out->shape, sy);
    bool is_int = ir_dtype_is_int(out->dtype);
    for (int64_t i = 0; i < numel(out); i++) {
        double a = in[0]->data[offset_at(i, &out->shape, sx)], b = in[1]->data[offset_at(i, &out->shape, sy)];
        if (is_int && n->op == OP_div && b == 0)
            return err(n, d, "integer division by zero");
        double r = f(a, b);
        out->data[i] = is_int ? trunc(r) : r;
    }
    return true;
}

/* ---- layout ------------------------------------------------------------------------------- */

/* reshape: the same row-major elements. */
bool eval_reshape(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    memcpy(out->data, in[0]->data, sizeof(double) * (size_t)numel(out));
    return true;
}

/* transpose {perm}: out[c0, .., cr] = x[c at perm positions]: x's axis perm[i] is out's axis i. */
bool eval_transpose(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ir_attr *perm = ir_attr_get(n, "perm");
    int64_t xs[IR_MAX_RANK], st[IR_MAX_RANK];
    strides_of(&in[0]->shape, xs);
    for (int i = 0; i < out->shape.rank; i++)
        st[i] = xs[ir_axis_norm(perm->ints[i], out->shape.rank)];
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = in[0]->data[offset_at(i, &out->shape, st)];
    return true;
}

/* slice {axis, start, end}: out[.., c, ..] = x[.., c + start, ..]. */
bool eval_slice(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ir_shape *xs = &in[0]->shape;
    int ax = ir_axis_norm(ir_attr_int(n, "axis"), xs->rank);
    int64_t lo, hi, st[IR_MAX_RANK];
    ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), xs->dim[ax], &lo, &hi);
    strides_of(xs, st);
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = in[0]->data[offset_at(i, &out->shape, st) + lo * st[ax]];
    return true;
}

/* concat {axis}: with outer = dims before axis and inner = dims after it, each operand k
 * contributes a block of dim_k * inner elements to every outer row, in operand order. */
bool eval_concat(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int ax = ir_axis_norm(ir_attr_int(n, "axis"), out->shape.rank);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++)
        outer *= out->shape.dim[i];
    for (int i = ax + 1; i < out->shape.rank; i++)
        inner *= out->shape.dim[i];
    int64_t row = out->shape.dim[ax] * inner, at = 0;
    for (int k = 0; k < n->n_in; k++) {
        int64_t block = in[k]->shape.dim[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(out->data + o * row + at, in[k]->data + o * block, sizeof(double) * (size_t)block);
        at += block;
    }
    return true;
}

/* broadcast {shape}: out[i] = x[bcast i]. */
bool eval_broadcast(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t st[IR_MAX_RANK];
    bcast_strides(&in[0]->shape, &out->shape, st);
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = in[0]->data[offset_at(i, &out->shape, st)];
    return true;
}

/* ---- reductions ---------------------------------------------------------------------------- */

/* The folds of reduce.def: an identity and a combination. */
typedef struct {
    double identity;
    double (*combine)(double acc, double v);
} ref_fold;

static double fold_add(double acc, double v) { return acc + v; }
static double fold_max(double acc, double v) { return (v > acc || isnan(v)) ? v : acc; } /* NaN propagates */

static const ref_fold fold_SUM = {0.0, fold_add}, fold_MAX = {-INFINITY, fold_max};

/* sum/mean/max {axes, keepdim}: every input element is folded into the output element at its
 * coordinates with reduced axes set to 0 (the keepdim layout has the same row-major order);
 * a mean is then divided by the count of elements folded into each. */
bool eval_reduce(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ref_fold *f = NULL;
    bool mean = false;
    switch (n->op) {
#define REDUCE(id, fold, is_mean)                                                                                   \
    case OP_##id:                                                                                                  \
        f = &fold_##fold;                                                                                          \
        mean = is_mean;                                                                                            \
        break;
#include "ir/reduce.def"
#undef REDUCE
    default: ir_unreachable("eval_reduce: not an OK_REDUCE op"); /* ops.def names eval_reduce for those only */
    }
    const ir_shape *xs = &in[0]->shape;
    bool mask[IR_MAX_RANK];
    ir_reduce_mask(n, xs->rank, mask);
    ir_shape kept = *xs;
    for (int i = 0; i < xs->rank; i++)
        if (mask[i])
            kept.dim[i] = 1;
    int64_t st[IR_MAX_RANK];
    strides_of(&kept, st);
    for (int i = 0; i < xs->rank; i++)
        if (mask[i])
            st[i] = 0;
    for (int64_t o = 0; o < numel(out); o++)
        out->data[o] = f->identity;
    for (int64_t i = 0; i < numel(in[0]); i++) {
        double *acc = &out->data[offset_at(i, xs, st)];
        *acc = f->combine(*acc, in[0]->data[i]);
    }
    if (mean) {
        double count = (double)numel(in[0]) / (double)(numel(out) ? numel(out) : 1);
        for (int64_t o = 0; o < numel(out); o++)
            out->data[o] /= count;
    }
    return true;
}

/* ---- row ops (last axis) ------------------------------------------------------------------- */

/* softmax: y = exp(x - max) / sum(exp(x - max)) per row. */
bool eval_softmax(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t C = last_dim(out), rows = C ? numel(out) / C : 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0]->data + r * C;
        double *y = out->data + r * C, mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < C; c++)
            mx = x[c] > mx ? x[c] : mx;
        for (int64_t c = 0; c < C; c++)
            sum += y[c] = exp(x[c] - mx);
        for (int64_t c = 0; c < C; c++)
            y[c] /= sum;
    }
    return true;
}

/* layernorm x [rows, C], w [C], b [C] {eps}: (x - mean) / sqrt(var + eps) * w + b,
 * var biased (divided by C). */
bool eval_layernorm(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double eps = ir_attr_float(n, "eps");
    const double *w = in[1]->data, *b = in[2]->data;
    int64_t C = last_dim(out), rows = C ? numel(out) / C : 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0]->data + r * C;
        double *y = out->data + r * C, mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++)
            mean += x[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++)
            var += (x[c] - mean) * (x[c] - mean);
        var /= (double)C;
        double den = sqrt(var + eps);
        for (int64_t c = 0; c < C; c++)
            y[c] = (x[c] - mean) / den * w[c] + b[c];
    }
    return true;
}

/* rmsnorm x [rows, C], w [C] {eps}: x / sqrt(mean(x^2) + eps) * w. */
bool eval_rmsnorm(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double eps = ir_attr_float(n, "eps");
    const double *w = in[1]->data;
    int64_t C = last_dim(out), rows = C ? numel(out) / C : 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0]->data + r * C;
        double *y = out->data + r * C, ms = 0;
        for (int64_t c = 0; c < C; c++)
            ms += x[c] * x[c];
        double den = sqrt(ms / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            y[c] = x[c] / den * w[c];
    }
    return true;
}

/* cross_entropy logits [rows, V], targets [rows]: mean over rows with target >= 0 of
 * logsumexp(row) - row[target]; 0 when no row counts. A target >= V is a run-time error. */
bool eval_xent(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t V = last_dim(in[0]), rows = numel(in[1]), count = 0;
    double loss = 0;
    for (int64_t r = 0; r < rows; r++) {
        double t = in[1]->data[r];
        if (!(t >= 0) && !isnan(t))
            continue; /* ignored position */
        if (!(t < (double)V)) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "cross_entropy: target %.17g is outside [0, %" PRId64 ")",
                          t, V);
            return false;
        }
        const double *x = in[0]->data + r * V;
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < V; c++)
            mx = x[c] > mx ? x[c] : mx;
        for (int64_t c = 0; c < V; c++)
            sum += exp(x[c] - mx);
        loss += mx + log(sum) - x[(int64_t)t];
        count++;
    }
    out->data[0] = count ? loss / (double)count : 0.0;
    return true;
}

/* ---- matmul --------------------------------------------------------------------------------- */

/* matmul a [..., M, K] (or [..., K, M] with transpose_a), b [..., K, N] (or [..., N, K]):
 * out[.., m, n] = sum_k a[.., m, k] * b[.., k, n], batch dims broadcast. */
bool eval_matmul(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ir_tensor *a = in[0], *b = in[1];
    bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
    int r = out->shape.rank;
    int64_t M = out->shape.dim[r - 2], N = out->shape.dim[r - 1];
    int64_t K = ta ? a->shape.dim[a->shape.rank - 2] : a->shape.dim[a->shape.rank - 1];
    /* element (m, k) of a's matrix is at m*am + k*ak; (k, n) of b's at k*bk + n*bn */
    int64_t am = ta ? 1 : K, ak = ta ? M : 1, bk = tb ? 1 : N, bn = tb ? K : 1;
    ir_shape ob = out->shape, abat = a->shape, bbat = b->shape;
    ob.rank -= 2;
    abat.rank -= 2;
    bbat.rank -= 2;
    int64_t ast[IR_MAX_RANK], bst[IR_MAX_RANK];
    bcast_strides(&abat, &ob, ast);
    bcast_strides(&bbat, &ob, bst);
    for (int i = 0; i < ob.rank; i++) {
        ast[i] *= M * K;
        bst[i] *= K * N;
    }
    for (int64_t bi = 0; bi < ir_shape_numel(&ob); bi++) {
        const double *A = a->data + offset_at(bi, &ob, ast), *B = b->data + offset_at(bi, &ob, bst);
        double *C = out->data + bi * M * N;
        if (bn == 1) { /* rows of b contiguous: accumulate out rows, k ascending */
            for (int64_t m = 0; m < M; m++) {
                double *row = C + m * N;
                for (int64_t j = 0; j < N; j++)
                    row[j] = 0;
                for (int64_t k = 0; k < K; k++) {
                    double av = A[m * am + k * ak];
                    const double *brow = B + k * bk;
                    for (int64_t j = 0; j < N; j++)
                        row[j] += av * brow[j];
                }
            }
        } else { /* columns of b contiguous: one dot product per element, k ascending */
            for (int64_t m = 0; m < M; m++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += A[m * am + k * ak] * B[k * bk + j * bn];
                    C[m * N + j] = s;
                }
        }
    }
    return true;
}

/* ---- neural-network ops ---------------------------------------------------------------------- */

/* embedding table [V, C], ids [...]: out[..., :] = table[id, :]; an id outside [0, V) is an error. */
bool eval_embedding(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t V = in[0]->shape.dim[0], C = in[0]->shape.dim[1];
    for (int64_t i = 0; i < numel(in[1]); i++) {
        double id = in[1]->data[i];
        if (!(id >= 0 && id < (double)V)) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "embedding: id %.17g is outside [0, %" PRId64 ")", id,
                          V);
            return false;
        }
        memcpy(out->data + i * C, in[0]->data + (int64_t)id * C, sizeof(double) * (size_t)C);
    }
    return true;
}

/* rope x [..., T, D], positions [T] {theta}: rotate-half; for i < D/2, a = pos[t] * theta^(-2i/D):
 * out[i] = x[i] cos a - x[i + D/2] sin a, out[i + D/2] = x[i + D/2] cos a + x[i] sin a. */
/* The value of code element (r, c) of a dequantize's codes q (docs/ir.md): an i8 as it is, or
 * nibble c % 2 of byte (r, c / 2) less 8. */
static double quant_value(const ir_tensor *q, int bits, int64_t r, int64_t c, int64_t C)
{
    if (bits == 8)
        return q->data[r * C + c];
    int byte = (int)q->data[r * (C / 2) + c / 2];
    return (double)((c % 2 ? byte >> 4 : byte & 15) - 8);
}

bool eval_dequantize(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int bits = (int)ir_attr_int(n, "bits"), axis = (int)ir_attr_int(n, "axis");
    int64_t R = out->shape.dim[0], C = out->shape.dim[1];
    int64_t SC = in[1]->shape.dim[1];
    int64_t g = axis == 0 ? R / in[1]->shape.dim[0] : C / SC;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            double s = axis == 0 ? in[1]->data[(r / g) * SC + c] : in[1]->data[r * SC + c / g];
            out->data[r * C + c] = quant_value(in[0], bits, r, c, C) * s;
        }
    return true;
}

bool eval_rope(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double theta = ir_attr_float(n, "theta");
    int r = out->shape.rank;
    int64_t T = out->shape.dim[r - 2], D = out->shape.dim[r - 1], half = D / 2;
    int64_t rows = T * D != 0 ? numel(out) / (T * D) : 0;
    for (int64_t b = 0; b < rows; b++)
        for (int64_t t = 0; t < T; t++) {
            const double *x = in[0]->data + (b * T + t) * D;
            double *y = out->data + (b * T + t) * D;
            for (int64_t i = 0; i < half; i++) {
                double a = in[1]->data[t] * pow(theta, -2.0 * (double)i / (double)D);
                double c = cos(a), s = sin(a);
                y[i] = x[i] * c - x[i + half] * s;
                y[i + half] = x[i + half] * c + x[i] * s;
            }
        }
    return true;
}

/* attention q [B, H, T, D], k [B, G, S, D], v [B, G, S, E], mask? {causal, scale}:
 * for head h (kv head g = h / (H/G)) and query i, score_j = scale * q_i . k_j + mask[b, h, i, j]
 * over allowed keys (all, or j <= i + S - T when causal); out_i = softmax(score) . v; a row
 * with no allowed key, or only -inf scores, gives 0. */
bool eval_attention(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ir_tensor *q = in[0], *k = in[1], *v = in[2], *mask = n->n_in > 3 ? in[3] : NULL;
    int64_t B = q->shape.dim[0], H = q->shape.dim[1], T = q->shape.dim[2], D = q->shape.dim[3];
    int64_t G = k->shape.dim[1], S = k->shape.dim[2], E = v->shape.dim[3];
    double scale = ir_attr_float(n, "scale");
    if (scale == 0)
        scale = 1.0 / sqrt((double)D);
    bool causal = ir_attr_int(n, "causal") != 0;
    ir_shape scores = {4, {B, H, T, S}};
    int64_t ms[IR_MAX_RANK] = {0};
    if (mask)
        bcast_strides(&mask->shape, &scores, ms);
    double *s = malloc(sizeof(double) * (size_t)(S + 1));
    if (!s)
        ir_unreachable("out of memory");
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / G);
            const double *kh = k->data + (b * G + g) * S * D, *vh = v->data + (b * G + g) * S * E;
            for (int64_t i = 0; i < T; i++) {
                const double *qi = q->data + ((b * H + h) * T + i) * D;
                double *oi = out->data + ((b * H + h) * T + i) * E, mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < S; j++) {
                    if (causal && j > i + S - T) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    double dot = 0;
                    for (int64_t c = 0; c < D; c++)
                        dot += qi[c] * kh[j * D + c];
                    s[j] = dot * scale;
                    if (mask)
                        s[j] += mask->data[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]];
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int64_t e = 0; e < E; e++)
                    oi[e] = 0;
                if (mx == -INFINITY)
                    continue; /* no allowed key */
                for (int64_t j = 0; j < S; j++)
                    sum += s[j] = exp(s[j] - mx);
                for (int64_t j = 0; j < S; j++)
                    for (int64_t e = 0; e < E; e++)
                        oi[e] += s[j] / sum * vh[j * E + e];
            }
        }
    free(s);
    return true;
}

/* cache_write cache [..., S, D], x [..., T, D], pos [1]: the cache with rows [pos, pos + T) of
 * axis -2 replaced by x; pos < 0 or pos + T > S is an error. */
bool eval_cache_write(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int r = out->shape.rank;
    int64_t S = out->shape.dim[r - 2], D = out->shape.dim[r - 1], T = in[1]->shape.dim[r - 2];
    double pos = in[2]->data[0];
    if (!(pos >= 0 && pos + (double)T <= (double)S)) {
        ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col,
                      "cache_write: position %.17g with %" PRId64 " rows is outside the cache of %" PRId64, pos, T, S);
        return false;
    }
    memcpy(out->data, in[0]->data, sizeof(double) * (size_t)numel(out));
    int64_t outer = S * D != 0 ? numel(out) / (S * D) : 0;
    for (int64_t o = 0; o < outer; o++)
        memcpy(out->data + (o * S + (int64_t)pos) * D, in[1]->data + o * T * D, sizeof(double) * (size_t)(T * D));
    return true;
}

/* ---- driving a graph ------------------------------------------------------------------------ */

bool ir_interp_node(const ir_node *n, ir_precision prec, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    if (!ir_ops[n->op].eval(n, in, out, d))
        return false;
    if (prec == IR_PREC_F32)
        for (int64_t i = 0; i < numel(out); i++)
            out->data[i] = ir_round_to(out->dtype, out->data[i]);
    return true;
}

static ir_tensor *tensor_copy(const ir_tensor *t)
{
    ir_tensor *c = ir_tensor_new(t->dtype, &t->shape);
    memcpy(c->data, t->data, sizeof(double) * (size_t)numel(t));
    return c;
}

void ir_named_tensors_free(ir_named_tensor *ts, int n)
{
    for (int i = 0; ts && i < n; i++) {
        free((void *)ts[i].name);
        ir_tensor_free(ts[i].t);
    }
    free(ts);
}

/* The state of one run: a value per node, which of them the caller owns, which are skipped
 * (absent optional inputs and everything depending on them), and each node's last use. */
typedef struct {
    const ir_graph *g;
    ir_tensor **val;
    bool *borrowed, *skipped;
    int *last_use;
    ir_named_tensor *outs;
    int n_outs, cap_outs;
} run_state;

static void run_free(run_state *r, bool keep_outputs)
{
    for (int i = 0; i < r->g->n_nodes; i++)
        if (!r->borrowed[i])
            ir_tensor_free(r->val[i]);
    free(r->val);
    free(r->borrowed);
    free(r->skipped);
    free(r->last_use);
    if (!keep_outputs)
        ir_named_tensors_free(r->outs, r->n_outs);
}

/* Binds input/param node n to its value from `values`; in f32 mode a value that its dtype cannot
 * hold exactly is rounded into a private copy. Reports missing and mistyped values. */
static bool bind_source(run_state *r, const ir_node *n, ir_precision prec, const ir_named_tensor *values,
                        int n_values, ir_diag *d)
{
    const char *kind = ir_ops[n->op].mnemonic, *name = n->name ? n->name : "";
    const ir_tensor *t = NULL;
    for (int k = 0; k < n_values && !t; k++)
        if (values[k].name && strcmp(values[k].name, name) == 0)
            t = values[k].t;
    if (!t) {
        if (n->op == OP_input && n->optional) {
            r->skipped[n->id] = true;
            return true;
        }
        ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "missing value for %s '%s'", kind, name);
        return false;
    }
    if (t->dtype != n->dtype || !ir_shape_eq(&t->shape, &n->shape)) {
        char want[300], got[300];
        ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s '%s': expected %s, got %s", kind, name,
                      ir_type_str(n->dtype, &n->shape, want, sizeof want), ir_type_str(t->dtype, &t->shape, got, sizeof got));
        return false;
    }
    bool exact = true;
    for (int64_t i = 0; prec == IR_PREC_F32 && exact && i < numel(t); i++) {
        double v = t->data[i];
        exact = ir_round_to(t->dtype, v) == v || isnan(v);
    }
    if (exact) {
        r->val[n->id] = (ir_tensor *)t;
        r->borrowed[n->id] = true;
    } else {
        ir_tensor *c = tensor_copy(t);
        for (int64_t i = 0; i < numel(c); i++)
            c->data[i] = ir_round_to(c->dtype, c->data[i]);
        r->val[n->id] = c;
    }
    return true;
}

/* Frees the value of node i unless the caller owns it. */
static void drop(run_state *r, int i)
{
    if (!r->borrowed[i])
        ir_tensor_free(r->val[i]);
    r->val[i] = NULL;
}

bool ir_interp_run(const ir_graph *g, ir_precision prec, const ir_named_tensor *values, int n_values,
                   ir_named_tensor **outputs, int *n_outputs, ir_diag *d)
{
    *outputs = NULL;
    *n_outputs = 0;
    int nn = g->n_nodes, max_in = 1;
    run_state r = {.g = g};
    r.val = calloc((size_t)nn + 1, sizeof *r.val);
    r.borrowed = calloc((size_t)nn + 1, sizeof *r.borrowed);
    r.skipped = calloc((size_t)nn + 1, sizeof *r.skipped);
    r.last_use = malloc(sizeof *r.last_use * ((size_t)nn + 1));
    if (!r.val || !r.borrowed || !r.skipped || !r.last_use)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (n->id != i)
            ir_unreachable("ir_interp_run: node ids out of order (graph not compacted)");
        r.last_use[i] = -1;
        for (int k = 0; k < n->n_in; k++)
            r.last_use[n->in[k]->id] = i;
        max_in = n->n_in > max_in ? n->n_in : max_in;
    }

    /* bind every input and param first, so that all missing values are reported at once */
    bool ok = true;
    for (int i = 0; i < nn; i++)
        if (g->nodes[i]->op == OP_input || g->nodes[i]->op == OP_param)
            ok &= bind_source(&r, g->nodes[i], prec, values, n_values, d);

    ir_tensor **in = malloc(sizeof *in * (size_t)max_in);
    if (!in)
        ir_unreachable("out of memory");
    for (int i = 0; ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_input && n->op != OP_param) {
            for (int k = 0; k < n->n_in; k++) {
                r.skipped[i] |= r.skipped[n->in[k]->id];
                in[k] = r.val[n->in[k]->id];
            }
            if (r.skipped[i]) {
                /* depends on an absent optional input: not computed */
            } else if (n->op == OP_output) {
                ir_grow((void **)&r.outs, &r.cap_outs, r.n_outs + 1, sizeof *r.outs);
                char *name = strdup(n->name ? n->name : "");
                if (!name)
                    ir_unreachable("out of memory");
                r.outs[r.n_outs++] = (ir_named_tensor){name, tensor_copy(in[0])};
            } else {
                r.val[i] = ir_tensor_new(n->dtype, &n->shape);
                ok = ir_interp_node(n, prec, in, r.val[i], d);
            }
        }
        /* free operands at their last use, and values nobody uses */
        for (int k = 0; k < n->n_in; k++)
            if (r.last_use[n->in[k]->id] == i)
                drop(&r, n->in[k]->id);
        if (r.last_use[i] < 0)
            drop(&r, i);
    }
    free(in);
    if (ok) {
        *outputs = r.outs;
        *n_outputs = r.n_outs;
    }
    run_free(&r, ok);
    return ok;
}

/* ---- backward ops (emitted by autodiff, ir/grad.c) --------------------------------------- */

/* The derivatives of unary_grad.def: f'(x). */
#define UNARY_GRAD(fn) static double ref_d_##fn(double x);
#include "ir/unary_grad.def"
#undef UNARY_GRAD

static double ref_d_abs(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0; }   /* abs'(0) = 0 */
static double ref_d_relu(double x) { return x > 0 ? 1.0 : 0.0; }                  /* relu'(0) = 0 */

/* Φ(x) + x φ(x) */
static double ref_d_gelu_erf(double x)
{
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* 0.5 (1 + t) + 0.5 x (1 - t^2) u', t = tanh(u), u = c (x + 0.044715 x^3), c = √(2/π) */
static double ref_d_gelu_tanh(double x)
{
    double c = sqrt(2.0 / M_PI), t = tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x);
}

/* unary_grad x, dy {fn}: dy * fn'(x). */
bool eval_unary_grad(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    double (*df)(double) = NULL;
    switch (ir_deriv_lookup(ir_attr_str(n, "fn"))) {
#define UNARY_GRAD(fn) case IR_DERIV_##fn: df = ref_d_##fn; break;
#include "ir/unary_grad.def"
#undef UNARY_GRAD
    case IR_DERIV_COUNT: return err(n, d, "unknown fn"); /* the shape rule rejects it first */
    }
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = in[1]->data[i] * df(in[0]->data[i]);
    return true;
}

/* layernorm_grad / rmsnorm_grad x [rows, C], w [C], dy [rows, C] {eps, wrt}. With r the row's
 * 1/sqrt(var + eps) (layernorm, xhat = (x - mean) r) or 1/sqrt(mean(x^2) + eps) (rmsnorm,
 * xhat = x r) and e = dy * w:
 *   layernorm dx = r (e - mean(e) - xhat mean(e xhat)); rmsnorm dx = r (e - xhat mean(e xhat));
 *   dw = sum over rows of dy * xhat. */
bool eval_norm_grad(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    bool ln = n->op == OP_layernorm_grad, dw = ir_attr_int(n, "wrt") == 1;
    double eps = ir_attr_float(n, "eps");
    const double *w = in[1]->data;
    int64_t C = last_dim(in[0]), rows = C ? numel(in[0]) / C : 0;
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = 0;
    double *xhat = malloc(sizeof(double) * (size_t)(C + 1));
    if (!xhat)
        ir_unreachable("out of memory");
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0]->data + r * C, *dy = in[2]->data + r * C;
        double mean = 0, var = 0, me = 0, mex = 0;
        for (int64_t c = 0; c < C && ln; c++)
            mean += x[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++)
            var += (x[c] - mean) * (x[c] - mean);
        double rs = 1.0 / sqrt(var / (double)C + eps);
        for (int64_t c = 0; c < C; c++) {
            xhat[c] = (x[c] - mean) * rs;
            me += dy[c] * w[c];
            mex += dy[c] * w[c] * xhat[c];
        }
        me = ln ? me / (double)C : 0;
        mex /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            if (dw)
                out->data[c] += dy[c] * xhat[c];
            else
                out->data[r * C + c] = rs * (dy[c] * w[c] - me - xhat[c] * mex);
        }
    }
    free(xhat);
    return true;
}

/* cross_entropy_grad logits [rows, V], targets [rows], dloss []: for each of the `count` rows
 * with target >= 0, dloss * (softmax(row) - onehot(target)) / count; 0 on ignored rows. */
bool eval_xent_grad(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t V = last_dim(in[0]), rows = numel(in[1]), count = 0;
    for (int64_t r = 0; r < rows; r++) {
        double t = in[1]->data[r];
        if (!(t >= 0) && !isnan(t))
            continue;
        if (!(t < (double)V)) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col,
                          "cross_entropy_grad: target %.17g is outside [0, %" PRId64 ")", t, V);
            return false;
        }
        count++;
    }
    double scale = count ? in[2]->data[0] / (double)count : 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0]->data + r * V;
        double *y = out->data + r * V, t = in[1]->data[r], mx = -INFINITY, sum = 0;
        if (!(t >= 0)) {
            for (int64_t c = 0; c < V; c++)
                y[c] = 0;
            continue;
        }
        for (int64_t c = 0; c < V; c++)
            mx = x[c] > mx ? x[c] : mx;
        for (int64_t c = 0; c < V; c++)
            sum += y[c] = exp(x[c] - mx);
        for (int64_t c = 0; c < V; c++)
            y[c] = scale * (y[c] / sum - (c == (int64_t)t ? 1.0 : 0.0));
    }
    return true;
}

/* embedding_grad dy [..., C], ids [...] {vocab}: out [vocab, C] = 0, then out[id] += dy row for
 * every id (repeated ids accumulate); an id outside [0, vocab) is an error. */
bool eval_embedding_grad(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    int64_t V = out->shape.dim[0], C = out->shape.dim[1];
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = 0;
    for (int64_t i = 0; i < numel(in[1]); i++) {
        double id = in[1]->data[i];
        if (!(id >= 0 && id < (double)V)) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col,
                          "embedding_grad: id %.17g is outside [0, %" PRId64 ")", id, V);
            return false;
        }
        for (int64_t c = 0; c < C; c++)
            out->data[(int64_t)id * C + c] += in[0]->data[i * C + c];
    }
    return true;
}

/* attention_grad q, k, v, dy, mask? {causal, scale, wrt}: recomputes each row's probabilities p
 * over the allowed keys as eval_attention does, then with dp_j = dy_i . v_j and
 * ds_j = p_j (dp_j - sum_l p_l dp_l):
 *   dq_i = scale sum_j ds_j k_j;  dk_j += scale ds_j q_i;  dv_j += p_j dy_i  (k, v summed over
 *   the query heads sharing a kv head);  wrt 3: dscores[b, h, i, j] = ds_j.
 * Disallowed keys and rows with no allowed key get 0. */
bool eval_attention_grad(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    const ir_tensor *q = in[0], *k = in[1], *v = in[2], *dy = in[3], *mask = n->n_in > 4 ? in[4] : NULL;
    int64_t B = q->shape.dim[0], H = q->shape.dim[1], T = q->shape.dim[2], D = q->shape.dim[3];
    int64_t G = k->shape.dim[1], S = k->shape.dim[2], E = v->shape.dim[3];
    int64_t wrt = ir_attr_int(n, "wrt");
    double scale = ir_attr_float(n, "scale");
    if (scale == 0)
        scale = 1.0 / sqrt((double)D);
    bool causal = ir_attr_int(n, "causal") != 0;
    ir_shape scores = {4, {B, H, T, S}};
    int64_t ms[IR_MAX_RANK] = {0};
    if (mask)
        bcast_strides(&mask->shape, &scores, ms);
    for (int64_t i = 0; i < numel(out); i++)
        out->data[i] = 0;
    double *p = malloc(sizeof(double) * (size_t)(2 * S + 1)), *ds = p + S;
    if (!p)
        ir_unreachable("out of memory");
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / G);
            const double *kh = k->data + (b * G + g) * S * D, *vh = v->data + (b * G + g) * S * E;
            for (int64_t i = 0; i < T; i++) {
                const double *qi = q->data + ((b * H + h) * T + i) * D, *dyi = dy->data + ((b * H + h) * T + i) * E;
                double mx = -INFINITY, sum = 0, pdp = 0;
                for (int64_t j = 0; j < S; j++) {
                    if (causal && j > i + S - T) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    double dot = 0;
                    for (int64_t c = 0; c < D; c++)
                        dot += qi[c] * kh[j * D + c];
                    p[j] = dot * scale;
                    if (mask)
                        p[j] += mask->data[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]];
                    mx = p[j] > mx ? p[j] : mx;
                }
                if (mx == -INFINITY)
                    continue; /* no allowed key: the output row was 0 */
                for (int64_t j = 0; j < S; j++)
                    sum += p[j] = exp(p[j] - mx);
                for (int64_t j = 0; j < S; j++) {
                    p[j] /= sum;
                    double dp = 0;
                    for (int64_t e = 0; e < E; e++)
                        dp += dyi[e] * vh[j * E + e];
                    ds[j] = dp; /* dp for now */
                    pdp += p[j] * dp;
                }
                for (int64_t j = 0; j < S; j++)
                    ds[j] = p[j] * (ds[j] - pdp);
                for (int64_t j = 0; j < S; j++) {
                    if (wrt == 0) {
                        double *dq = out->data + ((b * H + h) * T + i) * D;
                        for (int64_t c = 0; c < D; c++)
                            dq[c] += scale * ds[j] * kh[j * D + c];
                    } else if (wrt == 1) {
                        double *dk = out->data + ((b * G + g) * S + j) * D;
                        for (int64_t c = 0; c < D; c++)
                            dk[c] += scale * ds[j] * qi[c];
                    } else if (wrt == 2) {
                        double *dv = out->data + ((b * G + g) * S + j) * E;
                        for (int64_t e = 0; e < E; e++)
                            dv[e] += p[j] * dyi[e];
                    } else {
                        out->data[((b * H + h) * T + i) * S + j] = ds[j];
                    }
                }
            }
        }
    free(p);
    return true;
}

/* ---- communication ------------------------------------------------------------------------ */

/* A collective over one rank is the identity (allgather and reduce_scatter of one block, an
 * allreduce of one contribution), and a send passes its operand through; anything that needs
 * other ranks is evaluated by the mesh interpreter (passes/mesh_interp.c), not here. */
bool eval_comm(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    bool alone = n->op == OP_send || (n->op != OP_recv && ir_attr_int(n, "ranks") == 1);
    if (!alone) {
        ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col,
                      "%s: needs the other ranks of its mesh (run it with the mesh interpreter or mpirun)",
                      ir_ops[n->op].mnemonic);
        return false;
    }
    memcpy(out->data, in[0]->data, sizeof(double) * (size_t)numel(out));
    return true;
}
