/* lower_precision.c — the `lower-precision` pass: mixed precision with a half type (bf16 or
 * f16) for activations and GEMM/attention operands, fp32 for reductions and parameters.
 *
 * Every node is put in one of two classes:
 *  - half ops (elementwise, layout, matmul, attention, rope, embedding, unary_grad) whose
 *    declared result is f32: their f32 operands are converted to the half type and they are
 *    re-inferred, so they compute into the half type (a float `cast {to = f32}` becomes a cast
 *    to the half type; casts from integers stay f32). Kernels widen half loads to f32 and round
 *    at the store; GEMMs and attention accumulate in f32 (docs/backend.md, "Precision").
 *  - everything else keeps its declared types: scalar results (a loss and its arithmetic;
 *    fp16's loss · loss_scale, as 2^16 and more are beyond f16), reductions (sum, mean, max),
 *    the row ops (softmax, layernorm, rmsnorm, cross_entropy: statistics and the loss in f32), the
 *    backward kernels, cache_write, collectives, sources (params stay f32 masters, inputs keep
 *    their declared dtype) and outputs (written in their declared dtype). Their operands are
 *    converted back to the declared dtype.
 * A conversion is one `cast` node per (value, dtype), shared by every consumer (a param that
 * feeds several GEMMs is cast once). Casts are placed just before their first consumer; the
 * graph stays in definition order.
 *
 * With f32_library (targets whose GEMM and attention steps take f32 only: the CUDA and OpenCL
 * executors so far) matmul and attention keep f32 operands and results, but compute on the same
 * numbers: each f32 operand is rounded to the half type and widened again (a pair of casts),
 * and consumers see the result rounded to the half type, as if the op had stored it in half.
 */
#include <stdlib.h>

#include "passes/pass.h"

/* GEMMs and attention: the library steps. */
static bool library_op(const ir_node *n) { return ir_ops[n->op].kind == OK_MATMUL || n->op == OP_attention; }

/* Ops that run in the half type when their declared result is f32 (the library ops not when the
 * target's library takes f32 only: they compute in f32 on half values, see widened). */
static bool half_op(const ir_node *n, bool f32_library)
{
    if (ir_shape_numel(&n->shape) == 1)
        return false; /* a scalar (a loss, fp16's scaled loss and its gradient seed) stays f32 */
    if (library_op(n))
        return !f32_library;
    switch (ir_ops[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY:
    case OK_LAYOUT: return true;
    default: break;
    }
    switch (n->op) {
    case OP_rope:
    case OP_embedding:
    case OP_unary_grad: return true;
    default: return false;
    }
}

typedef struct {
    ir_graph *g;
    ir_dtype half;
    ir_dtype *declared;  /* per original node: its dtype before the pass */
    ir_node **to_half;   /* per original node: its cast to the half type, once made */
    ir_node **to_f32;    /* per original node: its cast to f32, once made */
    ir_node **widened;   /* per original node: rounded to half and back to f32 (f32 library) */
    bool *rounds;        /* per original node: an f32 library op (its value: rounded to half) */
    ir_node **order;     /* the rewritten graph's nodes, in definition order */
    int n_order, cap_order;
} lp_state;

static void emit(lp_state *S, ir_node *n)
{
    ir_grow((void **)&S->order, &S->cap_order, S->n_order + 1, sizeof *S->order);
    S->order[S->n_order++] = n;
}

/* A new cast of x to dt, emitted. */
static ir_node *cast_to(lp_state *S, ir_node *x, ir_dtype dt)
{
    ir_node *c = ir_node_add(S->g, OP_cast, 1, &x, x->loc);
    c->stage = x->stage;
    c->scope = x->scope;
    ir_attr_set_dtype(c, "to", dt);
    ir_diag scratch;
    ir_diag_init(&scratch);
    if (!ir_infer(c, &scratch))
        ir_unreachable("lower-precision: a cast that does not infer");
    ir_diag_free(&scratch);
    emit(S, c);
    return c;
}

/* x (an original node, already rewritten) as a value of dtype dt: x itself, or its cast. The
 * value of an f32 library op is its result rounded to the half type, as the half op's. */
static ir_node *convert(lp_state *S, ir_node *x, ir_dtype dt)
{
    ir_node **memo = dt == S->half ? &S->to_half[x->id] : dt == DT_F32 ? &S->to_f32[x->id] : NULL;
    if (memo && *memo)
        return *memo;
    if (S->rounds[x->id]) {
        if (!S->to_half[x->id])
            S->to_half[x->id] = cast_to(S, x, S->half);
        if (dt == S->half)
            return S->to_half[x->id];
        ir_node *c = cast_to(S, S->to_half[x->id], dt);
        if (memo)
            *memo = c;
        return c;
    }
    if (x->dtype == dt)
        return x;
    ir_node *c = cast_to(S, x, dt);
    if (memo)
        *memo = c;
    return c;
}

/* An f32 operand of an f32 library op: rounded to the half type and widened again, so that the
 * op computes on the values the half op would (once per value). */
static ir_node *widened(lp_state *S, ir_node *x)
{
    if (!S->widened[x->id]) {
        ir_node *h = convert(S, x, S->half);
        S->widened[x->id] = h == x || S->rounds[x->id] ? convert(S, x, DT_F32) : cast_to(S, h, DT_F32);
    }
    return S->widened[x->id];
}

bool pass_lower_precision(ir_graph *g, ir_dtype half, bool f32_library, ir_diag *d)
{
    if (half != DT_BF16 && half != DT_F16)
        ir_unreachable("lower-precision: the half type must be bf16 or f16");
    int n0 = g->n_nodes;
    size_t n1 = (size_t)n0 + 1;
    lp_state S = {g, half, malloc(sizeof(ir_dtype) * n1), calloc(n1, sizeof(ir_node *)), calloc(n1, sizeof(ir_node *)),
                  calloc(n1, sizeof(ir_node *)), calloc(n1, sizeof(bool)), NULL, 0, 0};
    ir_node **orig = malloc(sizeof(ir_node *) * n1);
    if (!S.declared || !S.to_half || !S.to_f32 || !S.widened || !S.rounds || !orig)
        ir_unreachable("out of memory");
    for (int i = 0; i < n0; i++) {
        orig[i] = g->nodes[i];
        S.declared[i] = g->nodes[i]->dtype;
    }
    bool ok = true;
    for (int i = 0; i < n0 && ok; i++) {
        ir_node *n = orig[i];
        /* casts that stay: from the half type back to f32 (one this pass made: idempotence), and
         * from integers (ids, positions: exact in f32, not in the half type) */
        bool to_half = half_op(n, f32_library) && S.declared[i] == DT_F32 &&
                       !(n->op == OP_cast && (S.declared[n->in[0]->id] == half ||
                                              !ir_dtype_is_float(S.declared[n->in[0]->id])));
        bool lib = f32_library && library_op(n) && S.declared[i] == DT_F32;
        for (int k = 0; k < n->n_in; k++) {
            ir_node *x = n->in[k];
            ir_dtype want = S.declared[x->id];
            if (to_half && want == DT_F32)
                want = half;
            n->in[k] = lib && want == DT_F32 ? widened(&S, x) : convert(&S, x, want);
        }
        S.rounds[i] = lib;
        if (to_half && n->op == OP_cast && ir_attr_dtype(n, "to") == DT_F32)
            ir_attr_set_dtype(n, "to", half);
        if (ir_ops[n->op].kind != OK_SOURCE)
            ok = ir_infer(n, d); /* operands of the declared types infer as before */
        emit(&S, n);
    }
    if (ok) {
        /* every node, casts included, was added to g->nodes: reorder in place */
        if (S.n_order != g->n_nodes)
            ir_unreachable("lower-precision: lost a node");
        for (int i = 0; i < S.n_order; i++) {
            g->nodes[i] = S.order[i];
            g->nodes[i]->id = i;
        }
    }
    free(S.declared);
    free(S.to_half);
    free(S.to_f32);
    free(S.widened);
    free(S.rounds);
    free(S.order);
    free(orig);
    return ok;
}
