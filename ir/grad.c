/* grad.c — the gradient rule of every op (the GRAD column of ops.def) and the accumulation
 * helpers of grad.h; passes/autodiff.c drives them.
 *
 * Each rule is the vector-Jacobian product of its op: given g = dL/d(result) it emits nodes
 * that compute dL/d(operand) for each operand that needs one. Rules compose existing ops where
 * that is short and exact; where it is not (a derivative that needs a comparison or erf, a
 * scatter, a fused row or attention backward) they emit one of the backward ops at the end of
 * ops.def (unary_grad, layernorm_grad, rmsnorm_grad, cross_entropy_grad, embedding_grad,
 * attention_grad), whose reference semantics live in ir/interp.c and docs/ir.md.
 * Conventions (docs/training.md): ties of maximum/minimum go to the first operand; ties of the
 * max reduction split the gradient evenly; abs'(0) = relu'(0) = 0; integer operands (ids,
 * targets, positions) and attention masks built from inputs get no gradient.
 * New nodes are compiler-made: a shape-rule failure on one is a compiler bug (abort).
 */
#include "ir/grad.h"

#include "ir/shape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the context (grad.h) ------------------------------------------------------------------ */

ir_node *ir_grad_of(ir_grad_ctx *c, const ir_node *n) { return n->id < c->n_fwd ? c->grad[n->id] : NULL; }

bool ir_grad_wants(const ir_grad_ctx *c, const ir_node *n, int k)
{
    const ir_node *x = n->in[k];
    return x->id < c->n_fwd && c->wants[x->id];
}

/* Appends node `op` with operands in[0..n_in) with the current forward node's location, scope
 * and pipeline stage;
 * the caller sets attributes and then calls fin. */
static ir_node *emit(ir_grad_ctx *c, ir_opcode op, int n_in, ir_node *const *in)
{
    ir_node *n = ir_node_add(c->g, op, n_in, in, c->cur->loc);
    n->scope = c->cur->scope;
    n->stage = c->cur->stage;
    n->backward = true;
    return n;
}

/* Runs the shape rule of a compiler-made node. */
static ir_node *fin(ir_grad_ctx *c, ir_node *n)
{
    if (!ir_infer(n, c->d)) {
        ir_diag_print(c->d, stderr);
        ir_unreachable("autodiff: a backward node fails its shape rule");
    }
    return n;
}

static ir_node *op1(ir_grad_ctx *c, ir_opcode op, ir_node *x) { return fin(c, emit(c, op, 1, &x)); }

static ir_node *op2(ir_grad_ctx *c, ir_opcode op, ir_node *x, ir_node *y)
{
    ir_node *in[2] = {x, y};
    return fin(c, emit(c, op, 2, in));
}

static ir_node *add(ir_grad_ctx *c, ir_node *x, ir_node *y) { return op2(c, OP_add, x, y); }
static ir_node *sub(ir_grad_ctx *c, ir_node *x, ir_node *y) { return op2(c, OP_sub, x, y); }
static ir_node *mul(ir_grad_ctx *c, ir_node *x, ir_node *y) { return op2(c, OP_mul, x, y); }
static ir_node *divide(ir_grad_ctx *c, ir_node *x, ir_node *y) { return op2(c, OP_div, x, y); }

/* const of dtype dt and shape s, every element v. */
static ir_node *constant(ir_grad_ctx *c, ir_dtype dt, const ir_shape *s, double v)
{
    ir_node *n = emit(c, OP_const, 0, NULL);
    n->dtype = dt;
    n->shape = *s;
    ir_attr_set_float(n, "value", v);
    return fin(c, n);
}

static ir_node *scalar(ir_grad_ctx *c, ir_dtype dt, double v)
{
    ir_shape s = {.rank = 0};
    return constant(c, dt, &s, v);
}

static ir_node *reshape(ir_grad_ctx *c, ir_node *x, const ir_shape *s)
{
    if (ir_shape_eq(&x->shape, s))
        return x;
    ir_node *n = emit(c, OP_reshape, 1, &x);
    ir_attr_set_ints(c->g, n, "shape", s->rank, s->dim);
    return fin(c, n);
}

static ir_node *broadcast(ir_grad_ctx *c, ir_node *x, const ir_shape *s)
{
    if (ir_shape_eq(&x->shape, s))
        return x;
    ir_node *n = emit(c, OP_broadcast, 1, &x);
    ir_attr_set_ints(c->g, n, "shape", s->rank, s->dim);
    return fin(c, n);
}

static ir_node *sum(ir_grad_ctx *c, ir_node *x, int n_axes, const int64_t *axes, bool keepdim)
{
    ir_node *n = emit(c, OP_sum, 1, &x);
    ir_attr_set_ints(c->g, n, "axes", n_axes, axes);
    ir_attr_set_int(n, "keepdim", keepdim);
    return fin(c, n);
}

static ir_node *matmul(ir_grad_ctx *c, ir_node *a, ir_node *b, bool ta, bool tb)
{
    ir_node *in[2] = {a, b};
    ir_node *n = emit(c, OP_matmul, 2, in);
    ir_attr_set_int(n, "transpose_a", ta);
    ir_attr_set_int(n, "transpose_b", tb);
    return fin(c, n);
}

static ir_node *slice(ir_grad_ctx *c, ir_node *x, int axis, int64_t lo, int64_t hi)
{
    if (lo == 0 && hi == x->shape.dim[axis])
        return x;
    ir_node *n = emit(c, OP_slice, 1, &x);
    ir_attr_set_int(n, "axis", axis);
    ir_attr_set_int(n, "start", lo);
    ir_attr_set_int(n, "end", hi);
    return fin(c, n);
}

/* unary_grad {fn}: dy * fn'(x), fn a derivative of ir/unary_grad.def. */
static ir_node *unary_grad(ir_grad_ctx *c, ir_deriv fn, ir_node *x, ir_node *dy)
{
    ir_node *in[2] = {x, dy};
    ir_node *n = emit(c, OP_unary_grad, 2, in);
    ir_attr_set_str(c->g, n, "fn", ir_deriv_names[fn]);
    return fin(c, n);
}

void ir_grad_acc(ir_grad_ctx *c, const ir_node *n, int k, ir_node *gk)
{
    const ir_node *x = n->in[k];
    if (gk->dtype != x->dtype || !ir_shape_eq(&gk->shape, &x->shape)) {
        char want[300], got[300], msg[700];
        snprintf(msg, sizeof msg, "autodiff: %s gives operand %d a gradient %s, expected %s", ir_ops[n->op].mnemonic,
                 k, ir_type_str(gk->dtype, &gk->shape, got, sizeof got),
                 ir_type_str(x->dtype, &x->shape, want, sizeof want));
        ir_unreachable(msg);
    }
    ir_node **slot = &c->grad[x->id];
    *slot = *slot ? add(c, *slot, gk) : gk;
}

ir_node *ir_grad_reduce_to(ir_grad_ctx *c, ir_node *gr, const ir_shape *to)
{
    int64_t axes[IR_MAX_RANK];
    int n_axes = 0, lead = gr->shape.rank - to->rank;
    for (int i = 0; i < gr->shape.rank; i++)
        if (i < lead || (to->dim[i - lead] == 1 && gr->shape.dim[i] != 1))
            axes[n_axes++] = i;
    if (n_axes)
        gr = sum(c, gr, n_axes, axes, false);
    return reshape(c, gr, to);
}

/* Accumulates gr (the gradient of the broadcast result) into operand k, reduced to its shape. */
static void acc_reduced(ir_grad_ctx *c, const ir_node *n, int k, ir_node *gr)
{
    ir_grad_acc(c, n, k, ir_grad_reduce_to(c, gr, &n->in[k]->shape));
}

/* ---- sources, sinks, backward ops ---------------------------------------------------------- */

/* input, param, const, iota, output: nothing flows further (the driver seeds the loss). */
bool grad_none(ir_grad_ctx *c, const ir_node *n) { return true; }

/* The backward ops themselves: no second derivatives. */
bool grad_unsupported(ir_grad_ctx *c, const ir_node *n)
{
    ir_diag_error(c->d, n->loc.file, n->loc.line, n->loc.col,
                  "autodiff: %s has no gradient rule (no second derivatives)", ir_ops[n->op].mnemonic);
    return false;
}

/* ---- elementwise: the gradient rules of unary.def and binary.def -------------------------- */

#define UNARY(id, epi) static ir_node *grad_##id(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g);
#include "ir/unary.def"
#undef UNARY
#define BINARY(id)                                                                                                 \
    static void grad_##id(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy,   \
                          ir_node **gx, ir_node **gy);
#include "ir/binary.def"
#undef BINARY

/* y = f(x), g = dL/dy: dL/dx = g * f'(x), from y itself where that is cheaper. */
static ir_node *grad_neg(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return op1(c, OP_neg, g);
}
static ir_node *grad_exp(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g) { return mul(c, g, y); }
static ir_node *grad_log(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return divide(c, g, x);
}

/* 1/(2 sqrt x) */
static ir_node *grad_sqrt(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return divide(c, g, add(c, y, y));
}

/* -x^(-3/2)/2 = -y^3/2 */
static ir_node *grad_rsqrt(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return mul(c, mul(c, g, mul(c, mul(c, y, y), y)), scalar(c, n->dtype, -0.5));
}

/* -1/x^2 = -y^2 */
static ir_node *grad_recip(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return op1(c, OP_neg, mul(c, g, mul(c, y, y)));
}

/* 1 - y^2 */
static ir_node *grad_tanh(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return sub(c, g, mul(c, g, mul(c, y, y)));
}

/* y (1 - y) */
static ir_node *grad_sigmoid(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return mul(c, g, sub(c, y, mul(c, y, y)));
}

/* s + x s (1 - s), s = sigmoid(x) */
static ir_node *grad_silu(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    ir_node *s = op1(c, OP_sigmoid, x);
    return mul(c, g, add(c, s, mul(c, x, sub(c, s, mul(c, s, s)))));
}

static ir_node *grad_abs(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return unary_grad(c, IR_DERIV_abs, x, g);
}
static ir_node *grad_relu(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return unary_grad(c, IR_DERIV_relu, x, g);
}

static ir_node *grad_gelu(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    return unary_grad(c, strcmp(ir_attr_str(n, "approx"), "erf") == 0 ? IR_DERIV_gelu_erf : IR_DERIV_gelu_tanh, x, g);
}

/* back to the operand's dtype */
static ir_node *grad_cast(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g)
{
    if (g->dtype == x->dtype)
        return g;
    ir_node *dx = emit(c, OP_cast, 1, &g);
    ir_attr_set_dtype(dx, "to", x->dtype);
    return fin(c, dx);
}

bool grad_unary(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    ir_node *g = ir_grad_of(c, n), *x = n->in[0], *y = (ir_node *)n, *dx = NULL;
    switch (n->op) {
#define UNARY(id, epi) case OP_##id: dx = grad_##id(c, n, x, y, g); break;
#include "ir/unary.def"
#undef UNARY
    default: ir_unreachable("grad_unary: not an OK_UNARY op"); /* ops.def names grad_unary for those only */
    }
    ir_grad_acc(c, n, 0, dx);
    return true;
}

/* z = x op y, g = dL/dz: the partials at z's shape. */
static void grad_add(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy, ir_node **gx,
                     ir_node **gy)
{
    *gx = g, *gy = g;
}

static void grad_sub(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy, ir_node **gx,
                     ir_node **gy)
{
    *gx = g, *gy = wy ? op1(c, OP_neg, g) : NULL;
}

static void grad_mul(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy, ir_node **gx,
                     ir_node **gy)
{
    *gx = wx ? mul(c, g, y) : NULL, *gy = wy ? mul(c, g, x) : NULL;
}

/* d/dx = 1/y, d/dy = -x/y^2 = -z/y */
static void grad_div(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy, ir_node **gx,
                     ir_node **gy)
{
    *gx = wx ? divide(c, g, y) : NULL;
    *gy = wy ? op1(c, OP_neg, divide(c, mul(c, g, (ir_node *)n), y)) : NULL;
}

/* d/dx = y x^(y-1), d/dy = z log x */
static void grad_pow(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy, ir_node **gx,
                     ir_node **gy)
{
    *gx = wx ? mul(c, g, mul(c, y, op2(c, OP_pow, x, sub(c, y, scalar(c, y->dtype, 1))))) : NULL;
    *gy = wy ? mul(c, g, mul(c, (ir_node *)n, op1(c, OP_log, x))) : NULL;
}

/* The larger operand, strictly, gets g: `d` = (other - first), [d > 0] = relu'(d) goes to the
 * second operand and the rest (ties included) to the first. */
static void grad_extremum(ir_grad_ctx *c, ir_node *d, ir_node *g, bool wx, ir_node **gx, ir_node **gy)
{
    *gy = unary_grad(c, IR_DERIV_relu, broadcast(c, d, &g->shape), g);
    *gx = wx ? sub(c, g, *gy) : NULL;
}

/* [y > x] goes to y */
static void grad_maximum(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy,
                         ir_node **gx, ir_node **gy)
{
    grad_extremum(c, sub(c, y, x), g, wx, gx, gy);
}

/* [x > y] = [y < x] goes to y */
static void grad_minimum(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *y, ir_node *g, bool wx, bool wy,
                         ir_node **gx, ir_node **gy)
{
    grad_extremum(c, sub(c, x, y), g, wx, gx, gy);
}

/* z = x op y with NumPy broadcasting: each partial is computed at z's shape and summed back
 * over the operand's broadcast axes. */
bool grad_binary(ir_grad_ctx *c, const ir_node *n)
{
    bool wx = ir_grad_wants(c, n, 0), wy = ir_grad_wants(c, n, 1);
    ir_node *g = ir_grad_of(c, n), *x = n->in[0], *y = n->in[1], *gx = NULL, *gy = NULL;
    switch (n->op) {
#define BINARY(id) case OP_##id: grad_##id(c, n, x, y, g, wx, wy, &gx, &gy); break;
#include "ir/binary.def"
#undef BINARY
    default: ir_unreachable("grad_binary: not an OK_BINARY op");
    }
    if (wx)
        acc_reduced(c, n, 0, gx);
    if (wy)
        acc_reduced(c, n, 1, gy);
    return true;
}

/* ---- layout ---------------------------------------------------------------------------------- */

bool grad_reshape(ir_grad_ctx *c, const ir_node *n)
{
    if (ir_grad_wants(c, n, 0))
        ir_grad_acc(c, n, 0, reshape(c, ir_grad_of(c, n), &n->in[0]->shape));
    return true;
}

/* out axis i is x's axis perm[i]: the inverse permutation maps the gradient back. */
bool grad_transpose(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    const ir_attr *perm = ir_attr_get(n, "perm");
    int r = n->shape.rank;
    int64_t inv[IR_MAX_RANK];
    for (int i = 0; i < r; i++)
        inv[ir_axis_norm(perm->ints[i], r)] = i;
    ir_node *g = ir_grad_of(c, n);
    ir_node *t = emit(c, OP_transpose, 1, &g);
    ir_attr_set_ints(c->g, t, "perm", r, inv);
    ir_grad_acc(c, n, 0, fin(c, t));
    return true;
}

/* The gradient lands in [lo, hi) of the axis; zeros (consts) pad it on either side. */
bool grad_slice(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    const ir_node *x = n->in[0];
    int ax = ir_axis_norm(ir_attr_int(n, "axis"), x->shape.rank);
    int64_t lo, hi;
    ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), x->shape.dim[ax], &lo, &hi);
    ir_node *parts[3];
    int np = 0;
    ir_shape pad = x->shape;
    if (lo > 0) {
        pad.dim[ax] = lo;
        parts[np++] = constant(c, x->dtype, &pad, 0);
    }
    parts[np++] = ir_grad_of(c, n);
    if (hi < x->shape.dim[ax]) {
        pad.dim[ax] = x->shape.dim[ax] - hi;
        parts[np++] = constant(c, x->dtype, &pad, 0);
    }
    ir_node *gx = parts[0];
    if (np > 1) {
        gx = emit(c, OP_concat, np, parts);
        ir_attr_set_int(gx, "axis", ax);
        fin(c, gx);
    }
    ir_grad_acc(c, n, 0, gx);
    return true;
}

/* Operand k gets its own stretch of the axis. */
bool grad_concat(ir_grad_ctx *c, const ir_node *n)
{
    int ax = ir_axis_norm(ir_attr_int(n, "axis"), n->shape.rank);
    int64_t off = 0;
    for (int k = 0; k < n->n_in; k++) {
        int64_t size = n->in[k]->shape.dim[ax];
        if (ir_grad_wants(c, n, k))
            ir_grad_acc(c, n, k, slice(c, ir_grad_of(c, n), ax, off, off + size));
        off += size;
    }
    return true;
}

bool grad_broadcast(ir_grad_ctx *c, const ir_node *n)
{
    if (ir_grad_wants(c, n, 0))
        acc_reduced(c, n, 0, ir_grad_of(c, n));
    return true;
}

/* ---- reductions: the gradient rules of reduce.def --------------------------------------------- */

#define REDUCE(id, fold, mean)                                                                                     \
    static ir_node *grad_##id(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *gk, const bool *mask,         \
                              const ir_shape *kept, int64_t count);
#include "ir/reduce.def"
#undef REDUCE

/* sum: g spread back over the reduced axes */
static ir_node *grad_sum(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *gk, const bool *mask, const ir_shape *kept,
                         int64_t count)
{
    return broadcast(c, gk, &x->shape);
}

/* mean: the same, divided by the count */
static ir_node *grad_mean(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *gk, const bool *mask, const ir_shape *kept,
                          int64_t count)
{
    ir_node *gx = broadcast(c, gk, &x->shape);
    return mul(c, gx, scalar(c, x->dtype, count ? 1.0 / (double)count : 0));
}

/* max: to the maximal elements, split evenly among ties */
static ir_node *grad_max(ir_grad_ctx *c, const ir_node *n, ir_node *x, ir_node *gk, const bool *mask, const ir_shape *kept,
                         int64_t count)
{
    ir_node *ones = constant(c, x->dtype, &x->shape, 1);
    /* 1 - relu'(max - x) = [x == max] */
    ir_node *hit = sub(c, ones, unary_grad(c, IR_DERIV_relu, sub(c, reshape(c, (ir_node *)n, kept), x), ones));
    int64_t axes[IR_MAX_RANK];
    int n_axes = 0;
    for (int i = 0; i < x->shape.rank; i++)
        if (mask[i])
            axes[n_axes++] = i;
    ir_node *ties = n_axes ? sum(c, hit, n_axes, axes, true) : hit;
    return mul(c, hit, divide(c, gk, ties));
}

bool grad_reduce(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    ir_node *x = n->in[0];
    bool mask[IR_MAX_RANK];
    ir_reduce_mask(n, x->shape.rank, mask);
    ir_shape kept = x->shape;
    int64_t count = 1;
    for (int i = 0; i < x->shape.rank; i++)
        if (mask[i]) {
            count *= kept.dim[i];
            kept.dim[i] = 1;
        }
    ir_node *gk = reshape(c, ir_grad_of(c, n), &kept), *gx = NULL;
    switch (n->op) {
#define REDUCE(id, fold, mean) case OP_##id: gx = grad_##id(c, n, x, gk, mask, &kept, count); break;
#include "ir/reduce.def"
#undef REDUCE
    default: ir_unreachable("grad_reduce: not an OK_REDUCE op");
    }
    ir_grad_acc(c, n, 0, gx);
    return true;
}

/* ---- row ops --------------------------------------------------------------------------------- */

/* y = softmax(x): dx = y * (g - sum(g * y)) over the last axis. */
bool grad_softmax(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    ir_node *y = (ir_node *)n, *gy = mul(c, ir_grad_of(c, n), y);
    int64_t last = -1;
    ir_grad_acc(c, n, 0, sub(c, gy, mul(c, y, sum(c, gy, 1, &last, true))));
    return true;
}

/* layernorm_grad / rmsnorm_grad {eps, wrt} for x and w; the bias gets g summed over rows. */
static void norm_grads(ir_grad_ctx *c, const ir_node *n, ir_opcode op)
{
    ir_node *in[3] = {n->in[0], n->in[1], ir_grad_of(c, n)};
    for (int k = 0; k < 2; k++) {
        if (!ir_grad_wants(c, n, k))
            continue;
        ir_node *gk = emit(c, op, 3, in);
        ir_attr_set_float(gk, "eps", ir_attr_float(n, "eps"));
        ir_attr_set_int(gk, "wrt", k);
        ir_grad_acc(c, n, k, fin(c, gk));
    }
    if (n->n_in > 2 && ir_grad_wants(c, n, 2))
        acc_reduced(c, n, 2, in[2]);
}

bool grad_layernorm(ir_grad_ctx *c, const ir_node *n)
{
    norm_grads(c, n, OP_layernorm_grad);
    return true;
}

bool grad_rmsnorm(ir_grad_ctx *c, const ir_node *n)
{
    norm_grads(c, n, OP_rmsnorm_grad);
    return true;
}

/* cross_entropy_grad(logits, targets, g); the integer targets get nothing. */
bool grad_xent(ir_grad_ctx *c, const ir_node *n)
{
    if (ir_grad_wants(c, n, 0)) {
        ir_node *in[3] = {n->in[0], n->in[1], ir_grad_of(c, n)};
        ir_grad_acc(c, n, 0, fin(c, emit(c, OP_cross_entropy_grad, 3, in)));
    }
    return true;
}

/* ---- matmul ---------------------------------------------------------------------------------- */

/* Product of dims [0, rank - 2) of s. */
static int64_t batch_numel(const ir_shape *s)
{
    int64_t b = 1;
    for (int i = 0; i < s->rank - 2; i++)
        b *= s->dim[i];
    return b;
}

/* With A, B the logical [.., M, K] and [.., K, N] matrices (a stored transposed when ta):
 * dA = g B^T and dB = A^T g, each written with transpose flags so that it comes out in the
 * operand's stored layout; batch axes that were broadcast are summed. A batched a against a
 * plain matrix b (x @ w) gives dB as one matmul over the flattened rows. */
bool grad_matmul(ir_grad_ctx *c, const ir_node *n)
{
    ir_node *a = n->in[0], *b = n->in[1], *g = ir_grad_of(c, n);
    bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
    if (ir_grad_wants(c, n, 0)) {
        ir_node *da = ta ? matmul(c, b, g, tb, true)   /* [K, M] = B g^T */
                         : matmul(c, g, b, false, !tb); /* [M, K] = g B^T */
        acc_reduced(c, n, 0, da);
    }
    if (ir_grad_wants(c, n, 1)) {
        ir_node *db;
        if (!ta && b->shape.rank == 2 && a->shape.rank > 2) {
            int ra = a->shape.rank;
            int64_t rows = batch_numel(&a->shape) * a->shape.dim[ra - 2];
            ir_shape a2 = {2, {rows, a->shape.dim[ra - 1]}}, g2 = {2, {rows, g->shape.dim[g->shape.rank - 1]}};
            ir_node *af = reshape(c, a, &a2), *gf = reshape(c, g, &g2);
            db = tb ? matmul(c, gf, af, true, false) : matmul(c, af, gf, true, false);
        } else {
            db = tb ? matmul(c, g, a, true, ta)   /* [N, K] = g^T A */
                    : matmul(c, a, g, !ta, false); /* [K, N] = A^T g */
        }
        acc_reduced(c, n, 1, db);
    }
    return true;
}

/* ---- neural-network ops ---------------------------------------------------------------------- */

/* The table gets g scattered into the rows of the ids (embedding_grad); ids get nothing. */
bool grad_embedding(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    ir_node *in[2] = {ir_grad_of(c, n), n->in[1]};
    ir_node *gt = emit(c, OP_embedding_grad, 2, in);
    ir_attr_set_int(gt, "vocab", n->in[0]->shape.dim[0]);
    ir_grad_acc(c, n, 0, fin(c, gt));
    return true;
}

/* rope is a rotation per (position, frequency) pair; its transpose is the rotation by the
 * negative angle: rope(g, -positions). */
bool grad_rope(ir_grad_ctx *c, const ir_node *n)
{
    if (!ir_grad_wants(c, n, 0))
        return true;
    ir_node *in[2] = {ir_grad_of(c, n), op1(c, OP_neg, n->in[1])};
    ir_node *gx = emit(c, OP_rope, 2, in);
    ir_attr_set_float(gx, "theta", ir_attr_float(n, "theta"));
    ir_grad_acc(c, n, 0, fin(c, gx));
    return true;
}

/* attention_grad {wrt = 0 q, 1 k, 2 v, 3 scores (for a differentiable mask)}, which recomputes
 * the probabilities; GQA sums over the query heads of a kv head inside the op. */
bool grad_attention(ir_grad_ctx *c, const ir_node *n)
{
    ir_node *in[5] = {n->in[0], n->in[1], n->in[2], ir_grad_of(c, n), n->n_in > 3 ? n->in[3] : NULL};
    for (int k = 0; k < n->n_in; k++) {
        if (!ir_grad_wants(c, n, k))
            continue;
        ir_node *gk = emit(c, OP_attention_grad, n->n_in + 1, in);
        ir_attr_set_int(gk, "causal", ir_attr_int(n, "causal"));
        ir_attr_set_float(gk, "scale", ir_attr_float(n, "scale"));
        ir_attr_set_int(gk, "wrt", k);
        acc_reduced(c, n, k, fin(c, gk));
    }
    return true;
}
