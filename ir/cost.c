/* cost.c — forward FLOPs of every op (the COST column of ops.def), for `loom check` and for
 * choosing between plans. A multiply-add counts as 2. Costs read the node's inferred type and
 * its operands' types, so they are valid only after shape inference. Data movement is free. */
#include "ir/ops_impl.h"
#include "ir/shape.h"

static double numel(const ir_node *n) { return (double)ir_shape_numel(&n->shape); }

/* sources, sinks, layout ops, embedding: no arithmetic */
double cost_zero(const ir_node *n) { return 0; }

/* elementwise (unary, binary, cast): one op per output element */
double cost_ew(const ir_node *n) { return numel(n); }

/* sum/mean/max: one op per input element */
double cost_reduce(const ir_node *n) { return numel(n->in[0]); }

/* softmax: max, subtract, exp, sum, divide per element */
double cost_softmax(const ir_node *n) { return 5 * numel(n); }

/* layernorm / rmsnorm: about 8 ops per element of x (statistics, normalize, scale, shift) */
double cost_norm(const ir_node *n) { return 8 * numel(n->in[0]); }

/* cross_entropy: a log-softmax over every logit */
double cost_xent(const ir_node *n) { return 5 * numel(n->in[0]); }

/* rope: two products and a sum per output element, plus the angle (about 6 per element) */
double cost_rope(const ir_node *n) { return 6 * numel(n); }

/* matmul [..., M, K] x [..., K, N]: 2*M*N*K per output batch element */
double cost_matmul(const ir_node *n)
{
    const ir_shape *a = &n->in[0]->shape;
    int64_t K = ir_attr_int(n, "transpose_a") ? a->dim[a->rank - 2] : a->dim[a->rank - 1];
    return 2 * numel(n) * (double)K; /* numel(out) = batch * M * N */
}

/* attention q [B, H, T, D], k [B, G, S, D], v [B, G, S, E]: per (b, h), scores q.k (2*pairs*D)
 * and the weighted sum of v (2*pairs*E), over all T*S pairs or the causal ones. */
double cost_attention(const ir_node *n)
{
    const ir_shape *q = &n->in[0]->shape, *k = &n->in[1]->shape, *v = &n->in[2]->shape;
    double pairs = (double)ir_attention_pairs(q->dim[2], k->dim[2], ir_attr_int(n, "causal") != 0);
    return (double)(q->dim[0] * q->dim[1]) * (2 * pairs * (double)q->dim[3] + 2 * pairs * (double)v->dim[3]);
}

/* ---- backward ops ---- */

/* unary_grad: the derivative (about 10 ops for gelu) times dy per element */
double cost_unary_grad(const ir_node *n) { return 10 * numel(n); }

/* layernorm_grad / rmsnorm_grad: statistics again plus the backward combination, about 12 ops
 * per element of x, whichever gradient it yields */
double cost_norm_grad(const ir_node *n) { return 12 * (double)ir_shape_numel(&n->in[0]->shape); }

/* embedding_grad: one add per element of dy */
double cost_embedding_grad(const ir_node *n) { return (double)ir_shape_numel(&n->in[0]->shape); }

/* attention_grad: recompute the scores (2*pairs*D) and dp = dy.v (2*pairs*E), then one more
 * product for the requested gradient (2*pairs*D for q or k, 2*pairs*E for v, pairs for scores) */
double cost_attention_grad(const ir_node *n)
{
    const ir_shape *q = &n->in[0]->shape, *k = &n->in[1]->shape, *v = &n->in[2]->shape;
    double pairs = (double)ir_attention_pairs(q->dim[2], k->dim[2], ir_attr_int(n, "causal") != 0);
    double D = (double)q->dim[3], E = (double)v->dim[3];
    int64_t wrt = ir_attr_int(n, "wrt");
    double last = wrt == 2 ? 2 * pairs * E : wrt == 3 ? pairs : 2 * pairs * D;
    return (double)(q->dim[0] * q->dim[1]) * (2 * pairs * D + 2 * pairs * E + last);
}
