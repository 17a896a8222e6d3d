/* shape.c — the shape rule of every op in ops.def, and the shape helpers of shape.h.
 *
 * A rule reads a node's operands and attributes and sets n->dtype and n->shape, or reports one
 * error at n->loc and returns false. Messages start with the op mnemonic and name the shapes or
 * dtypes involved, e.g. "add: shapes [2, 8] and [3, 8] do not broadcast"; tests match them
 * exactly, so change them only together with docs and tests. Sources (input, param, const, iota)
 * have a declared type: their rules only validate it. Attributes are never rewritten: negative
 * axes and slice bounds are normalized locally (shape.h).
 */
#include "ir/shape.h"

#include "ir/ops_impl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers shared with other files (shape.h) ------------------------------------------ */

int ir_axis_norm(int64_t axis, int rank)
{
    if (axis < 0)
        axis += rank;
    return axis >= 0 && axis < rank ? (int)axis : -1;
}

bool ir_broadcast_shapes(const ir_shape *a, const ir_shape *b, ir_shape *out)
{
    ir_shape r;
    r.rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < r.rank; i++) {
        /* dims aligned on the right; a missing dim acts as 1 */
        int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        r.dim[i] = da == 1 ? db : da;
    }
    *out = r;
    return true;
}

bool ir_broadcasts_to(const ir_shape *x, const ir_shape *to)
{
    if (x->rank > to->rank)
        return false;
    for (int i = 0; i < x->rank; i++) {
        int64_t dx = x->dim[i], dt = to->dim[to->rank - x->rank + i];
        if (dx != dt && dx != 1)
            return false;
    }
    return true;
}

bool ir_slice_range(int64_t start, int64_t end, int64_t dim, int64_t *lo, int64_t *hi)
{
    if (start < 0)
        start += dim;
    if (end < 0)
        end += dim;
    *lo = start;
    *hi = end;
    return 0 <= start && start <= end && end <= dim;
}

int64_t ir_attention_pairs(int64_t T, int64_t S, bool causal)
{
    if (!causal)
        return T * S;
    int64_t pairs = 0;
    for (int64_t i = 0; i < T; i++) {
        int64_t allowed = i + S - T + 1; /* keys j = 0 .. i + S - T */
        pairs += allowed < 0 ? 0 : allowed > S ? S : allowed;
    }
    return pairs;
}

/* ---- message helpers ------------------------------------------------------------------- */

/* Shape text as a value, so a call can use several: sh(&a).s lives to the end of the
 * full expression (C11 6.2.4p8). */
typedef struct {
    char s[256];
} text;

static text sh(const ir_shape *s)
{
    text t;
    ir_shape_str(s, t.s, sizeof t.s);
    return t;
}

/* "[1, 0, 0]" for an int-list attribute. */
static text ints(const ir_attr *a)
{
    text t;
    size_t k = 0;
    k += (size_t)snprintf(t.s, sizeof t.s, "[");
    for (int i = 0; i < a->n && k < sizeof t.s; i++)
        k += (size_t)snprintf(t.s + k, sizeof t.s - k, "%s%" PRId64, i ? ", " : "", a->ints[i]);
    if (k < sizeof t.s)
        snprintf(t.s + k, sizeof t.s - k, "]");
    return t;
}

/* Reports "<mnemonic>: <formatted>" at n's location; returns false. */
static bool fail(const ir_node *n, ir_diag *d, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(const ir_node *n, ir_diag *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: %s", ir_ops[n->op].mnemonic, msg);
    return false;
}

static bool need_float(const ir_node *n, ir_diag *d, ir_dtype dt)
{
    return ir_dtype_is_float(dt) || fail(n, d, "expects a float tensor, got %s", ir_dtype_name(dt));
}

static bool same_dtype(const ir_node *n, ir_diag *d, ir_dtype a, ir_dtype b)
{
    return a == b || fail(n, d, "dtype mismatch: %s and %s", ir_dtype_name(a), ir_dtype_name(b));
}

static bool need_rank(const ir_node *n, ir_diag *d, const ir_shape *s, int min_rank)
{
    return s->rank >= min_rank || fail(n, d, "operand needs rank >= %d, got %s", min_rank, sh(s).s);
}

/* The operand count is within the schema's range and every operand carries a tensor (not an
 * output's void). */
static bool operands_ok(const ir_node *n, ir_diag *d)
{
    int lo = ir_ops[n->op].min_in, hi = ir_ops[n->op].max_in;
    if (n->n_in < lo || (hi >= 0 && n->n_in > hi)) {
        if (hi < 0)
            return fail(n, d, "expects at least %d operand%s, got %d", lo, lo == 1 ? "" : "s", n->n_in);
        if (lo == hi)
            return fail(n, d, "expects %d operand%s, got %d", lo, lo == 1 ? "" : "s", n->n_in);
        return fail(n, d, "expects %d to %d operands, got %d", lo, hi, n->n_in);
    }
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i] || n->in[i]->dtype == DT_VOID || n->in[i]->dtype >= DT_COUNT)
            return fail(n, d, "operand %d is not a tensor", i);
    return true;
}

/* Checks a declared or attribute-given shape: rank within [0, IR_MAX_RANK], dims >= 0. */
static bool check_shape(const ir_node *n, ir_diag *d, const ir_shape *s)
{
    if (s->rank < 0 || s->rank > IR_MAX_RANK)
        return fail(n, d, "rank %d exceeds the maximum of %d", s->rank, IR_MAX_RANK);
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] < 0)
            return fail(n, d, "negative dimension in %s", sh(s).s);
    if (!ir_shape_fits(s))
        return fail(n, d, "%s has more than 2^56 elements", sh(s).s);
    return true;
}

/* Shape from an int-list attribute; false (with a message) when its rank is too large. */
static bool attr_shape(const ir_node *n, ir_diag *d, const ir_attr *a, ir_shape *out)
{
    if (a->n > IR_MAX_RANK)
        return fail(n, d, "rank %d exceeds the maximum of %d", a->n, IR_MAX_RANK);
    out->rank = a->n;
    for (int i = 0; i < a->n; i++)
        out->dim[i] = a->ints[i];
    return true;
}

/* ---- sources and sinks ------------------------------------------------------------------ */

/* input, param, const: the declared type must be a tensor type; params are floats with a known
 * initializer. */
bool infer_source(ir_node *n, ir_diag *d)
{
    if (n->dtype == DT_VOID || n->dtype >= DT_COUNT)
        return fail(n, d, "dtype void is not a tensor type");
    if (!check_shape(n, d, &n->shape))
        return false;
    if (n->op == OP_param) {
        static const char *const inits[] = {"zeros", "ones", "normal", "uniform", "const"};
        const char *init = ir_attr_str(n, "init");
        bool known = false;
        for (size_t i = 0; init && i < sizeof inits / sizeof *inits; i++)
            known |= strcmp(init, inits[i]) == 0;
        if (!known)
            return fail(n, d, "unknown initializer '%s'", init ? init : "");
        /* i8 and u8: the codes of quantized weights (passes/quantize.c), never trained */
        if (n->dtype != DT_I8 && n->dtype != DT_U8 && !need_float(n, d, n->dtype))
            return false;
    }
    return true;
}

/* iota: declared type; `axis` must name one of its axes. */
bool infer_iota(ir_node *n, ir_diag *d)
{
    if (!infer_source(n, d))
        return false;
    int64_t axis = ir_attr_int(n, "axis");
    if (ir_axis_norm(axis, n->shape.rank) < 0)
        return fail(n, d, "axis %" PRId64 " is out of range for %s", axis, sh(&n->shape).s);
    return true;
}

/* output x: no result (void, rank 0). */
bool infer_output(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    n->dtype = DT_VOID;
    n->shape.rank = 0;
    return true;
}

/* ---- elementwise ------------------------------------------------------------------------- */

/* Unary elementwise ops and softmax: same type out. neg and abs also take integers; softmax
 * needs rank >= 1 (it works on the last axis). */
bool infer_unary(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *x = n->in[0];
    if (n->op != OP_neg && n->op != OP_abs && !need_float(n, d, x->dtype))
        return false;
    if (n->op == OP_softmax && !need_rank(n, d, &x->shape, 1))
        return false;
    n->dtype = x->dtype;
    n->shape = x->shape;
    return true;
}

bool infer_gelu(ir_node *n, ir_diag *d)
{
    const char *approx = ir_attr_str(n, "approx");
    if (!approx || (strcmp(approx, "tanh") != 0 && strcmp(approx, "erf") != 0))
        return fail(n, d, "approx must be tanh or erf, got '%s'", approx ? approx : "");
    return infer_unary(n, d);
}

/* cast x {to}: same shape, dtype `to`. */
bool infer_cast(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    ir_dtype to = ir_attr_dtype(n, "to");
    if (to == DT_VOID || to >= DT_COUNT)
        return fail(n, d, "cannot cast %s to void", ir_dtype_name(n->in[0]->dtype));
    n->dtype = to;
    n->shape = n->in[0]->shape;
    return true;
}

/* x, y -> broadcast(x.shape, y.shape); equal dtypes; pow needs floats. */
bool infer_binary(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *x = n->in[0], *y = n->in[1];
    if (!same_dtype(n, d, x->dtype, y->dtype))
        return false;
    if (n->op == OP_pow && !need_float(n, d, x->dtype))
        return false;
    ir_shape out;
    if (!ir_broadcast_shapes(&x->shape, &y->shape, &out))
        return fail(n, d, "shapes %s and %s do not broadcast", sh(&x->shape).s, sh(&y->shape).s);
    n->dtype = x->dtype;
    n->shape = out;
    return true;
}

/* ---- layout -------------------------------------------------------------------------------- */

/* reshape x {shape}: one entry may be -1 (inferred); the element count is unchanged. */
bool infer_reshape(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    const ir_attr *a = ir_attr_get(n, "shape");
    ir_shape out;
    if (!attr_shape(n, d, a, &out))
        return false;
    int infer_at = -1;
    int64_t known = 1;
    for (int i = 0; i < out.rank; i++) {
        if (out.dim[i] == -1) {
            if (infer_at >= 0)
                return fail(n, d, "more than one -1 in %s", ints(a).s);
            infer_at = i;
        } else if (out.dim[i] < 0) {
            return fail(n, d, "invalid dimension %" PRId64 " in %s", out.dim[i], ints(a).s);
        } else if (out.dim[i] > 0 && known > IR_MAX_NUMEL / out.dim[i]) {
            return fail(n, d, "%s has more than 2^56 elements", ints(a).s);
        } else {
            known *= out.dim[i];
        }
    }
    int64_t numel = ir_shape_numel(xs);
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0)
            return fail(n, d, "cannot reshape %s (%" PRId64 " elements) to %s", sh(xs).s, numel, ints(a).s);
        out.dim[infer_at] = numel / known;
    } else if (known != numel) {
        return fail(n, d, "cannot reshape %s (%" PRId64 " elements) to %s (%" PRId64 " elements)", sh(xs).s,
                    numel, ints(a).s, known);
    }
    n->dtype = n->in[0]->dtype;
    n->shape = out;
    return true;
}

/* transpose x {perm}: out.dim[i] = x.dim[perm[i]]; perm entries may be negative. */
bool infer_transpose(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    const ir_attr *perm = ir_attr_get(n, "perm");
    bool seen[IR_MAX_RANK] = {false};
    bool ok = perm->n == xs->rank;
    ir_shape out = {.rank = xs->rank};
    for (int i = 0; ok && i < perm->n; i++) {
        int p = ir_axis_norm(perm->ints[i], xs->rank);
        ok = p >= 0 && !seen[p];
        if (ok) {
            seen[p] = true;
            out.dim[i] = xs->dim[p];
        }
    }
    if (!ok)
        return fail(n, d, "%s is not a permutation of %d axes", ints(perm).s, xs->rank);
    n->dtype = n->in[0]->dtype;
    n->shape = out;
    return true;
}

/* slice x {axis, start, end}: dim `axis` becomes end - start (after normalization). */
bool infer_slice(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    int64_t axis = ir_attr_int(n, "axis"), start = ir_attr_int(n, "start"), end = ir_attr_int(n, "end");
    int ax = ir_axis_norm(axis, xs->rank);
    if (ax < 0)
        return fail(n, d, "axis %" PRId64 " is out of range for %s", axis, sh(xs).s);
    int64_t lo, hi;
    if (!ir_slice_range(start, end, xs->dim[ax], &lo, &hi))
        return fail(n, d, "[%" PRId64 ", %" PRId64 ") is out of range for axis %" PRId64 " of %s", start, end, axis,
                    sh(xs).s);
    n->dtype = n->in[0]->dtype;
    n->shape = *xs;
    n->shape.dim[ax] = hi - lo;
    return true;
}

/* concat x, y, ... {axis}: equal dtypes and ranks, dims equal except along `axis` (summed). */
bool infer_concat(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *x = n->in[0];
    int64_t axis = ir_attr_int(n, "axis");
    int ax = ir_axis_norm(axis, x->shape.rank);
    if (ax < 0)
        return fail(n, d, "axis %" PRId64 " is out of range for %s", axis, sh(&x->shape).s);
    ir_shape out = x->shape;
    for (int k = 1; k < n->n_in; k++) {
        const ir_node *y = n->in[k];
        if (!same_dtype(n, d, x->dtype, y->dtype))
            return false;
        if (y->shape.rank != x->shape.rank)
            return fail(n, d, "shapes %s and %s differ in rank", sh(&x->shape).s, sh(&y->shape).s);
        for (int i = 0; i < x->shape.rank; i++)
            if (i != ax && y->shape.dim[i] != x->shape.dim[i])
                return fail(n, d, "shapes %s and %s differ outside axis %" PRId64, sh(&x->shape).s,
                            sh(&y->shape).s, axis);
        out.dim[ax] += y->shape.dim[ax];
    }
    n->dtype = x->dtype;
    n->shape = out;
    return true;
}

/* broadcast x {shape}: x stretched (NumPy rules, one way) to `shape`. */
bool infer_broadcast(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    const ir_attr *a = ir_attr_get(n, "shape");
    ir_shape out;
    if (!attr_shape(n, d, a, &out))
        return false;
    for (int i = 0; i < out.rank; i++)
        if (out.dim[i] < 0)
            return fail(n, d, "invalid dimension %" PRId64 " in %s", out.dim[i], ints(a).s);
    if (!ir_broadcasts_to(xs, &out))
        return fail(n, d, "cannot broadcast %s to %s", sh(xs).s, sh(&out).s);
    n->dtype = n->in[0]->dtype;
    n->shape = out;
    return true;
}

/* ---- reductions ---------------------------------------------------------------------------- */

/* Fills mask from the node's `axes` over input rank `rank`; reports through d when d is set. */
static bool reduce_mask(const ir_node *n, int rank, bool mask[IR_MAX_RANK], ir_diag *d)
{
    const ir_attr *axes = ir_attr_get(n, "axes");
    for (int i = 0; i < IR_MAX_RANK; i++)
        mask[i] = axes->n == 0 && i < rank;
    for (int i = 0; i < axes->n; i++) {
        int a = ir_axis_norm(axes->ints[i], rank);
        if (a < 0)
            return d && fail(n, d, "axis %" PRId64 " is out of range for %s", axes->ints[i], sh(&n->in[0]->shape).s);
        if (mask[a])
            return d && fail(n, d, "axis %d is repeated in %s", a, ints(axes).s);
        mask[a] = true;
    }
    return true;
}

bool ir_reduce_mask(const ir_node *n, int rank, bool mask[IR_MAX_RANK]) { return reduce_mask(n, rank, mask, NULL); }

/* sum/mean/max x {axes, keepdim}: reduced axes dropped, or kept as 1 with keepdim.
 * sum and max also take integers; mean needs floats. */
bool infer_reduce(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *x = n->in[0];
    if (n->op == OP_mean && !need_float(n, d, x->dtype))
        return false;
    bool mask[IR_MAX_RANK];
    if (!reduce_mask(n, x->shape.rank, mask, d))
        return false;
    bool keep = ir_attr_int(n, "keepdim") != 0;
    ir_shape out = {.rank = 0};
    for (int i = 0; i < x->shape.rank; i++)
        if (!mask[i])
            out.dim[out.rank++] = x->shape.dim[i];
        else if (keep)
            out.dim[out.rank++] = 1;
    n->dtype = x->dtype;
    n->shape = out;
    return true;
}

/* ---- row ops ------------------------------------------------------------------------------- */

/* Checks that a norm's weight/bias (operand k, called `what`) has shape [C] and x's dtype. */
static bool check_row_param(const ir_node *n, ir_diag *d, int k, const char *what)
{
    const ir_node *x = n->in[0], *w = n->in[k];
    if (!same_dtype(n, d, x->dtype, w->dtype))
        return false;
    if (w->shape.rank != 1 || w->shape.dim[0] != x->shape.dim[x->shape.rank - 1])
        return fail(n, d, "%s shape %s does not match the last axis of %s", what, sh(&w->shape).s,
                    sh(&x->shape).s);
    return true;
}

/* layernorm x [..., C], w [C], b [C] {eps} -> like x. */
bool infer_layernorm(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !need_float(n, d, n->in[0]->dtype) || !need_rank(n, d, &n->in[0]->shape, 1) ||
        !check_row_param(n, d, 1, "weight") || !check_row_param(n, d, 2, "bias"))
        return false;
    n->dtype = n->in[0]->dtype;
    n->shape = n->in[0]->shape;
    return true;
}

/* rmsnorm x [..., C], w [C] {eps} -> like x. */
bool infer_rmsnorm(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !need_float(n, d, n->in[0]->dtype) || !need_rank(n, d, &n->in[0]->shape, 1) ||
        !check_row_param(n, d, 1, "weight"))
        return false;
    n->dtype = n->in[0]->dtype;
    n->shape = n->in[0]->shape;
    return true;
}

/* Operand `ids` (integer) indexes the rows of `x` [..., C]: its shape is x's without the last
 * axis. Error messages name them as ids_name and x_name. */
static bool check_row_ids(ir_node *n, ir_diag *d, const ir_node *ids, const char *ids_name, const ir_node *x,
                          const char *x_name)
{
    if (!ir_dtype_is_int(ids->dtype))
        return fail(n, d, "%s must be integers, got %s", ids_name, ir_dtype_name(ids->dtype));
    bool match = ids->shape.rank == x->shape.rank - 1;
    for (int i = 0; match && i < ids->shape.rank; i++)
        match = ids->shape.dim[i] == x->shape.dim[i];
    if (!match)
        return fail(n, d, "%s %s do not match %s %s without the last axis", ids_name, sh(&ids->shape).s, x_name,
                    sh(&x->shape).s);
    return true;
}

/* cross_entropy logits [..., V], targets [...] (integer) -> scalar of logits' dtype. */
bool infer_xent(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *lg = n->in[0], *tg = n->in[1];
    if (!need_float(n, d, lg->dtype) || !need_rank(n, d, &lg->shape, 1))
        return false;
    if (!check_row_ids(n, d, tg, "targets", lg, "logits"))
        return false;
    n->dtype = lg->dtype;
    n->shape.rank = 0;
    return true;
}

/* ---- matmul ------------------------------------------------------------------------------ */

/* matmul a [..., M, K], b [..., K, N] {transpose_a, transpose_b} -> [..., M, N];
 * batch dims broadcast. */
bool infer_matmul(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_shape *as = &n->in[0]->shape, *bs = &n->in[1]->shape;
    if (as->rank < 2 || bs->rank < 2)
        return fail(n, d, "operands need rank >= 2, got %s", sh(as->rank < 2 ? as : bs).s);
    if (!same_dtype(n, d, n->in[0]->dtype, n->in[1]->dtype) || !need_float(n, d, n->in[0]->dtype))
        return false;
    bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
    int ra = as->rank, rb = bs->rank;
    int64_t M = ta ? as->dim[ra - 1] : as->dim[ra - 2], Ka = ta ? as->dim[ra - 2] : as->dim[ra - 1];
    int64_t N = tb ? bs->dim[rb - 2] : bs->dim[rb - 1], Kb = tb ? bs->dim[rb - 1] : bs->dim[rb - 2];
    if (Ka != Kb)
        return fail(n, d, "inner dimensions differ: %s x %s (%" PRId64 " vs %" PRId64 ")", sh(as).s, sh(bs).s, Ka,
                    Kb);
    ir_shape ba = *as, bb = *bs, out;
    ba.rank -= 2;
    bb.rank -= 2;
    if (!ir_broadcast_shapes(&ba, &bb, &out))
        return fail(n, d, "batch dimensions of %s and %s do not broadcast", sh(as).s, sh(bs).s);
    out.dim[out.rank++] = M;
    out.dim[out.rank++] = N;
    n->dtype = n->in[0]->dtype;
    n->shape = out;
    return true;
}

/* ---- neural-network ops --------------------------------------------------------------------- */

/* embedding table [V, C], ids [...] (integer) -> [..., C]. */
bool infer_embedding(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *tab = n->in[0], *ids = n->in[1];
    if (!need_float(n, d, tab->dtype))
        return false;
    if (tab->shape.rank != 2)
        return fail(n, d, "table must have rank 2 [V, C], got %s", sh(&tab->shape).s);
    if (!ir_dtype_is_int(ids->dtype))
        return fail(n, d, "ids must be integers, got %s", ir_dtype_name(ids->dtype));
    if (ids->shape.rank + 1 > IR_MAX_RANK)
        return fail(n, d, "rank %d exceeds the maximum of %d", ids->shape.rank + 1, IR_MAX_RANK);
    n->dtype = tab->dtype;
    n->shape = ids->shape;
    n->shape.dim[n->shape.rank++] = tab->shape.dim[1];
    return true;
}

/* dequantize q [R, C] i8 (bits 8) or [R, C/2] u8 (bits 4), scale [R/g, C] (axis 0) or [R, C/g]
 * (axis 1) f16|f32 {bits, axis} -> f32 [R, C]; g >= 1 divides the quantized axis. */
bool infer_dequantize(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *q = n->in[0], *s = n->in[1];
    int64_t bits = ir_attr_int(n, "bits"), axis = ir_attr_int(n, "axis");
    if (bits != 8 && bits != 4)
        return fail(n, d, "bits must be 8 or 4, got %" PRId64, bits);
    if (axis != 0 && axis != 1)
        return fail(n, d, "axis must be 0 or 1, got %" PRId64, axis);
    ir_dtype want = bits == 8 ? DT_I8 : DT_U8;
    if (q->dtype != want)
        return fail(n, d, "codes of %" PRId64 " bits must be %s, got %s", bits, ir_dtype_name(want),
                    ir_dtype_name(q->dtype));
    if (s->dtype != DT_F32 && s->dtype != DT_F16)
        return fail(n, d, "scales must be f32 or f16, got %s", ir_dtype_name(s->dtype));
    if (q->shape.rank != 2 || s->shape.rank != 2)
        return fail(n, d, "codes and scales must have rank 2, got %s and %s", sh(&q->shape).s, sh(&s->shape).s);
    ir_shape out = q->shape;
    if (bits == 4)
        out.dim[1] *= 2;
    int other = 1 - (int)axis;
    int64_t groups = s->shape.dim[axis];
    if (s->shape.dim[other] != out.dim[other] || groups < 1 || out.dim[axis] % groups != 0)
        return fail(n, d, "scales %s do not fit weights %s quantized along axis %" PRId64, sh(&s->shape).s,
                    sh(&out).s, axis);
    n->dtype = DT_F32;
    n->shape = out;
    return true;
}

/* rope x [..., T, D], positions [T] (integer) {theta} -> like x; D even. */
bool infer_rope(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *x = n->in[0], *pos = n->in[1];
    const ir_shape *xs = &x->shape;
    if (!need_float(n, d, x->dtype) || !need_rank(n, d, xs, 2))
        return false;
    if (!ir_dtype_is_int(pos->dtype))
        return fail(n, d, "positions must be integers, got %s", ir_dtype_name(pos->dtype));
    if (pos->shape.rank != 1 || pos->shape.dim[0] != xs->dim[xs->rank - 2])
        return fail(n, d, "positions %s do not match axis -2 of %s", sh(&pos->shape).s, sh(xs).s);
    if (xs->dim[xs->rank - 1] % 2 != 0)
        return fail(n, d, "last axis of %s is odd", sh(xs).s);
    double theta = ir_attr_float(n, "theta");
    if (!(theta > 0))
        return fail(n, d, "theta must be positive, got %g", theta);
    n->dtype = x->dtype;
    n->shape = *xs;
    return true;
}

/* attention q [B, H, T, D], k [B, G, S, D], v [B, G, S, E], mask? (broadcasts to [B, H, T, S])
 * {causal, scale} -> [B, H, T, E]; G divides H. */
bool infer_attention(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    static const char *const names[] = {"q", "k", "v"};
    static const char *const layouts[] = {"[B, H, T, D]", "[B, G, S, D]", "[B, G, S, E]"};
    for (int i = 0; i < 3; i++)
        if (n->in[i]->shape.rank != 4)
            return fail(n, d, "%s must have rank 4 %s, got %s", names[i], layouts[i], sh(&n->in[i]->shape).s);
    ir_dtype dt = n->in[0]->dtype;
    if (!need_float(n, d, dt))
        return false;
    for (int i = 1; i < n->n_in; i++)
        if (!same_dtype(n, d, dt, n->in[i]->dtype))
            return false;
    const ir_shape *q = &n->in[0]->shape, *k = &n->in[1]->shape, *v = &n->in[2]->shape;
    if (q->dim[0] != k->dim[0])
        return fail(n, d, "batch sizes differ: q %s and k %s", sh(q).s, sh(k).s);
    if (q->dim[3] != k->dim[3])
        return fail(n, d, "head dimensions differ: q %s and k %s (%" PRId64 " vs %" PRId64 ")", sh(q).s, sh(k).s,
                    q->dim[3], k->dim[3]);
    if (k->dim[1] == 0 || q->dim[1] % k->dim[1] != 0)
        return fail(n, d, "%" PRId64 " query heads are not a multiple of %" PRId64 " key/value heads (q %s, k %s)",
                    q->dim[1], k->dim[1], sh(q).s, sh(k).s);
    if (v->dim[0] != k->dim[0] || v->dim[1] != k->dim[1] || v->dim[2] != k->dim[2])
        return fail(n, d, "k %s and v %s differ in [B, G, S]", sh(k).s, sh(v).s);
    ir_shape scores = {4, {q->dim[0], q->dim[1], q->dim[2], k->dim[2]}};
    if (n->n_in == 4 && !ir_broadcasts_to(&n->in[3]->shape, &scores))
        return fail(n, d, "mask %s does not broadcast to %s", sh(&n->in[3]->shape).s, sh(&scores).s);
    n->dtype = dt;
    n->shape = (ir_shape){4, {q->dim[0], q->dim[1], q->dim[2], v->dim[3]}};
    return true;
}

/* cache_write cache [..., S, D], x [..., T, D] (same dtype, same leading dims, T <= S), pos [1]
 * (integer) -> like cache. Whether pos + T <= S is known only at run time. */
bool infer_cache_write(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *c = n->in[0], *x = n->in[1], *pos = n->in[2];
    const ir_shape *cs = &c->shape, *xs = &x->shape;
    if (!need_rank(n, d, cs, 2) || !same_dtype(n, d, c->dtype, x->dtype))
        return false;
    bool match = cs->rank == xs->rank && xs->dim[xs->rank - 2] <= cs->dim[cs->rank - 2];
    for (int i = 0; match && i < cs->rank; i++)
        match = i == cs->rank - 2 || cs->dim[i] == xs->dim[i];
    if (!match)
        return fail(n, d, "rows %s do not fit cache %s (all dims equal but the second last, which must not exceed the cache's)",
                    sh(xs).s, sh(cs).s);
    if (!ir_dtype_is_int(pos->dtype) || pos->shape.rank != 1 || pos->shape.dim[0] != 1)
        return fail(n, d, "position must be an integer [1], got %s%s", ir_dtype_name(pos->dtype), sh(&pos->shape).s);
    n->dtype = c->dtype;
    n->shape = *cs;
    return true;
}

/* ---- backward ops (emitted by autodiff, ir/grad.c) --------------------------------------- */

/* Checks that operand k has exactly the type of operand 0 (`what` names it in the message). */
static bool same_type_as_x(const ir_node *n, ir_diag *d, int k, const char *what)
{
    const ir_node *x = n->in[0], *y = n->in[k];
    if (!same_dtype(n, d, x->dtype, y->dtype))
        return false;
    if (!ir_shape_eq(&x->shape, &y->shape))
        return fail(n, d, "%s shape %s differs from %s", what, sh(&y->shape).s, sh(&x->shape).s);
    return true;
}

/* unary_grad x, dy {fn} -> like x; fn one of ir/unary_grad.def's names. */
bool infer_unary_grad(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !need_float(n, d, n->in[0]->dtype) || !same_type_as_x(n, d, 1, "gradient"))
        return false;
    const char *fn = ir_attr_str(n, "fn");
    if (ir_deriv_lookup(fn) == IR_DERIV_COUNT) {
        char names[200] = "";
        for (int i = 0; i < IR_DERIV_COUNT; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i == 0 ? "" : i + 1 < IR_DERIV_COUNT ? ", " : " or ",
                     ir_deriv_names[i]);
        return fail(n, d, "fn must be %s, got '%s'", names, fn ? fn : "");
    }
    n->dtype = n->in[0]->dtype;
    n->shape = n->in[0]->shape;
    return true;
}

/* layernorm_grad / rmsnorm_grad x [..., C], w [C], dy like x {eps, wrt} -> wrt 0: like x (dx);
 * wrt 1: [C] (dw). */
bool infer_norm_grad(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !need_float(n, d, n->in[0]->dtype) || !need_rank(n, d, &n->in[0]->shape, 1) ||
        !check_row_param(n, d, 1, "weight") || !same_type_as_x(n, d, 2, "gradient"))
        return false;
    int64_t wrt = ir_attr_int(n, "wrt");
    if (wrt != 0 && wrt != 1)
        return fail(n, d, "wrt must be 0 (x) or 1 (weight), got %" PRId64, wrt);
    n->dtype = n->in[0]->dtype;
    n->shape = n->in[wrt]->shape;
    return true;
}

/* cross_entropy_grad logits [..., V], targets [...] (integer), dloss [] -> like logits. */
bool infer_xent_grad(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !infer_xent(n, d))
        return false;
    const ir_node *lg = n->in[0], *dl = n->in[2];
    if (!same_dtype(n, d, lg->dtype, dl->dtype))
        return false;
    if (dl->shape.rank != 0)
        return fail(n, d, "loss gradient must be a scalar, got %s", sh(&dl->shape).s);
    n->dtype = lg->dtype;
    n->shape = lg->shape;
    return true;
}

/* embedding_grad dy [..., C], ids [...] (integer) {vocab} -> [vocab, C]. */
bool infer_embedding_grad(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    const ir_node *dy = n->in[0], *ids = n->in[1];
    if (!need_float(n, d, dy->dtype) || !need_rank(n, d, &dy->shape, 1))
        return false;
    if (!check_row_ids(n, d, ids, "ids", dy, "gradient"))
        return false;
    int64_t vocab = ir_attr_int(n, "vocab");
    if (vocab <= 0)
        return fail(n, d, "vocab must be positive, got %" PRId64, vocab);
    n->dtype = dy->dtype;
    n->shape = (ir_shape){2, {vocab, dy->shape.dim[dy->shape.rank - 1]}};
    return true;
}

/* attention_grad q, k, v, dy [B, H, T, E], mask? {causal, scale, wrt} -> wrt 0: like q, 1: like
 * k, 2: like v, 3: [B, H, T, S] (the gradient of the scores, for a mask). Operands as attention. */
bool infer_attention_grad(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    /* check q, k, v, mask with attention's own rule on a stand-in node */
    ir_node fwd = *n;
    ir_node *in[4] = {n->in[0], n->in[1], n->in[2], n->n_in > 4 ? n->in[4] : NULL};
    fwd.op = OP_attention;
    fwd.in = in;
    fwd.n_in = n->n_in - 1;
    if (!infer_attention(&fwd, d))
        return false;
    const ir_node *dy = n->in[3];
    if (!same_dtype(n, d, fwd.dtype, dy->dtype))
        return false;
    if (!ir_shape_eq(&dy->shape, &fwd.shape))
        return fail(n, d, "gradient shape %s differs from the output %s", sh(&dy->shape).s, sh(&fwd.shape).s);
    int64_t wrt = ir_attr_int(n, "wrt");
    if (wrt < 0 || wrt > 3 || (wrt == 3 && n->n_in < 5))
        return fail(n, d, "wrt must be 0 (q), 1 (k), 2 (v) or 3 (scores, with a mask), got %" PRId64, wrt);
    n->dtype = fwd.dtype;
    if (wrt < 3)
        n->shape = n->in[wrt]->shape;
    else
        n->shape = (ir_shape){4, {in[0]->shape.dim[0], in[0]->shape.dim[1], in[0]->shape.dim[2], in[1]->shape.dim[2]}};
    return true;
}

/* ---- communication ------------------------------------------------------------------------ */

/* The mesh-axis attributes every collective carries: `ranks` >= 1 and `axis` a mesh axis name. */
static bool comm_axis_ok(ir_node *n, ir_diag *d)
{
    int64_t ranks = ir_attr_int(n, "ranks");
    if (ranks < 1)
        return fail(n, d, "ranks must be at least 1, got %" PRId64, ranks);
    const char *axis = ir_attr_str(n, "axis");
    if (!axis || !*axis)
        return fail(n, d, "needs a mesh axis");
    return true;
}

/* allreduce x {axis, ranks, op}, send x {peer, tag}: same type out (send passes x through, so a
 * pipeline stage's graph keeps it live). */
bool infer_comm_same(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    if (n->op == OP_allreduce) {
        if (!comm_axis_ok(n, d))
            return false;
        const char *op = ir_attr_str(n, "op");
        if (!op || (strcmp(op, "sum") && strcmp(op, "max") && strcmp(op, "min")))
            return fail(n, d, "unknown reduction '%s' (known: sum, max, min)", op ? op : "");
    } else if (ir_attr_int(n, "peer") < 0 || ir_attr_int(n, "tag") < 0) {
        return fail(n, d, "peer and tag must be non-negative");
    }
    n->dtype = n->in[0]->dtype;
    n->shape = n->in[0]->shape;
    return true;
}

/* allgather x {axis, ranks, dim}: x with dim `dim` times `ranks` (blocks in rank order). */
bool infer_allgather(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !comm_axis_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    int64_t dim = ir_attr_int(n, "dim");
    int a = ir_axis_norm(dim, xs->rank);
    if (a < 0)
        return fail(n, d, "dim %" PRId64 " is out of range for %s", dim, sh(xs).s);
    n->dtype = n->in[0]->dtype;
    n->shape = *xs;
    n->shape.dim[a] *= ir_attr_int(n, "ranks");
    return true;
}

/* reduce_scatter x {axis, ranks, dim}: the sum over ranks, of which each keeps block `rank` of
 * dim `dim`; the dim must divide by `ranks`. */
bool infer_reduce_scatter(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d) || !comm_axis_ok(n, d))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    int64_t dim = ir_attr_int(n, "dim"), ranks = ir_attr_int(n, "ranks");
    int a = ir_axis_norm(dim, xs->rank);
    if (a < 0)
        return fail(n, d, "dim %" PRId64 " is out of range for %s", dim, sh(xs).s);
    if (xs->dim[a] % ranks)
        return fail(n, d, "dim %d of %s does not divide by %" PRId64 " ranks", a, sh(xs).s, ranks);
    n->dtype = n->in[0]->dtype;
    n->shape = *xs;
    n->shape.dim[a] /= ranks;
    return true;
}

/* recv {peer, tag, dtype, shape}: the type is in the attributes (no operand to infer from). */
bool infer_recv(ir_node *n, ir_diag *d)
{
    if (!operands_ok(n, d))
        return false;
    if (ir_attr_int(n, "peer") < 0 || ir_attr_int(n, "tag") < 0)
        return fail(n, d, "peer and tag must be non-negative");
    ir_shape s;
    if (!attr_shape(n, d, ir_attr_get(n, "shape"), &s) || !check_shape(n, d, &s))
        return false;
    ir_dtype dt = ir_attr_dtype(n, "dtype");
    if (dt == DT_VOID || dt >= DT_COUNT)
        return fail(n, d, "dtype void is not a tensor type");
    n->dtype = dt;
    n->shape = s;
    return true;
}
