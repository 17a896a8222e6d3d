/* grad.h — the gradient rules' interface: the state reverse-mode autodiff (passes/autodiff.c)
 * keeps while it walks a forward graph backwards, and what a rule (the GRAD column of ops.def,
 * defined in ir/grad.c) may do with it.
 *
 * A rule for node n reads the gradient of n's result (ir_grad_of, same dtype and shape as n),
 * emits backward nodes (appended to the graph, so they follow everything they use; they take
 * n's location, scope and pipeline stage) and hands each operand k that needs a gradient
 * (ir_grad_wants) a tensor of exactly that operand's dtype and shape (ir_grad_acc);
 * contributions from several uses of one value are summed. Broadcasting is undone with ir_grad_reduce_to.
 */
#ifndef LOOM_GRAD_H
#define LOOM_GRAD_H

#include "ir/ir.h"

typedef struct ir_grad_ctx {
    ir_graph *g;
    ir_diag *d;
    int n_fwd;           /* forward nodes: ids [0, n_fwd) */
    const bool *wants;   /* per forward node: float and on a path from a param to the loss */
    ir_node **grad;      /* per forward node: accumulated gradient of its result, or NULL */
    const ir_node *cur;  /* the forward node whose rule runs (location and scope of new nodes) */
} ir_grad_ctx;

/* Gradient of n's result; NULL when nothing flows into it. */
ir_node *ir_grad_of(ir_grad_ctx *c, const ir_node *n);
/* True when operand k of n needs a gradient. */
bool ir_grad_wants(const ir_grad_ctx *c, const ir_node *n, int k);
/* Adds gk (operand k's dtype and shape, else a compiler bug) to operand k's gradient. */
void ir_grad_acc(ir_grad_ctx *c, const ir_node *n, int k, ir_node *gk);
/* Sums gradient gr (of a broadcast result) back to shape `to` (which broadcasts to gr's shape):
 * over leading axes `to` lacks and axes where `to` has 1, then reshaped to `to`. */
ir_node *ir_grad_reduce_to(ir_grad_ctx *c, ir_node *gr, const ir_shape *to);

#endif
