/* lower_precision.c — the `lower-precision` pass: mixed precision with a half type (bf16 or
 * f16) for activations and GEMM/attention operands, fp32 for reductions and parameters.
 *
 * Every node is put in one of two classes:
 *  - half ops (elementwise, layout, matmul, attention, rope, embedding, unary_grad) whose
 *    declared result is f32: their f32 operands are converted to the half type and they are
 *    re-inferred, so they compute into the half type (a float `cast {to = f32}` becomes a cast
 *    to the half type; casts from integers stay f32). Kernels widen half loads to f32 and round
 *    at the store; GEMMs and attention accumulate in f32 (docs/backend.md, "Precision").
 *  - everything else keeps its declared types: reductions (sum, mean, max), the row ops
 *    (softmax, layernorm, rmsnorm, cross_entropy: statistics and the loss in f32), the
 *    backward kernels, cache_write, collectives, sources (params stay f32 masters, inputs keep
 *    their declared dtype) and outputs (written in their declared dtype). Their operands are
 *    converted back to the declared dtype.
 * A conversion is one `cast` node per (value, dtype), shared by every consumer (a param that
 * feeds several GEMMs is cast once). Casts are placed just before their first consumer; the
 * graph stays in definition order.
 */
#include <stdlib.h>

#include "passes/pass.h"

/* Ops that run in the half type when their declared result is f32. */
static bool half_op(const ir_node *n)
{
    switch (ir_ops[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY:
    case OK_LAYOUT:
    case OK_MATMUL: return true;
    default: break;
    }
    switch (n->op) {
    case OP_attention:
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
    ir_node **order;     /* the rewritten graph's nodes, in definition order */
    int n_order, cap_order;
} lp_state;

static void emit(lp_state *S, ir_node *n)
{
    ir_grow((void **)&S->order, &S->cap_order, S->n_order + 1, sizeof *S->order);
    S->order[S->n_order++] = n;
}

/* x (an original node, already rewritten) as a value of dtype dt: x itself, or its cast. */
static ir_node *convert(lp_state *S, ir_node *x, ir_dtype dt)
{
    if (x->dtype == dt)
        return x;
    ir_node **memo = dt == S->half ? &S->to_half[x->id] : dt == DT_F32 ? &S->to_f32[x->id] : NULL;
    if (memo && *memo)
        return *memo;
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
    if (memo)
        *memo = c;
    return c;
}

bool pass_lower_precision(ir_graph *g, ir_dtype half, ir_diag *d)
{
    if (half != DT_BF16 && half != DT_F16)
        ir_unreachable("lower-precision: the half type must be bf16 or f16");
    int n0 = g->n_nodes;
    lp_state S = {g, half, malloc(sizeof(ir_dtype) * ((size_t)n0 + 1)), calloc((size_t)n0 + 1, sizeof(ir_node *)),
                  calloc((size_t)n0 + 1, sizeof(ir_node *)), NULL, 0, 0};
    ir_node **orig = malloc(sizeof(ir_node *) * ((size_t)n0 + 1));
    if (!S.declared || !S.to_half || !S.to_f32 || !orig)
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
        bool to_half = half_op(n) && S.declared[i] == DT_F32 &&
                       !(n->op == OP_cast && (S.declared[n->in[0]->id] == half ||
                                              !ir_dtype_is_float(S.declared[n->in[0]->id])));
        for (int k = 0; k < n->n_in; k++) {
            ir_node *x = n->in[k];
            ir_dtype want = S.declared[x->id];
            if (to_half && want == DT_F32)
                want = half;
            n->in[k] = convert(&S, x, want);
        }
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
    free(S.order);
    free(orig);
    return ok;
}
