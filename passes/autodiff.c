/* autodiff.c — reverse-mode automatic differentiation: turns a forward graph into a training
 * graph that also computes d loss / d param for every param.
 *
 * The loss is the scalar float output named "loss". A value needs a gradient when it is a float
 * on a path from a param to the loss. Seeded with d loss = 1 (a const), the pass walks the
 * forward nodes backwards and calls each one's gradient rule (ir/grad.c, the GRAD column of
 * ops.def), which appends backward nodes and accumulates into its operands' gradients; a value
 * used several times (GPT-2's wte: embedding and tied LM head) gets the sum. Then it appends one
 * output "grad/<param name>" per param, in param order, with the param's type; a param with no
 * path to the loss gets a zero const, so the optimizer sees every param. Optional inputs the
 * loss depends on become required. Forward nodes and outputs are kept unchanged; backward
 * nodes carry the location, scope and stage of the forward node they differentiate, and are
 * marked `backward` (a pipeline runs them in each micro-batch's backward half).
 */
#include "ir/grad.h"
#include "passes/pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of the output named "loss" when it is a float scalar; NULL otherwise. */
static ir_node *find_loss(const ir_graph *g, const ir_node **out)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_output && n->name && strcmp(n->name, "loss") == 0) {
            *out = n;
            ir_node *v = n->in[0];
            return v->shape.rank == 0 && ir_dtype_is_float(v->dtype) ? v : NULL;
        }
    }
    return NULL;
}

bool pass_autodiff(ir_graph *g, ir_diag *d)
{
    const ir_node *loss_out = NULL;
    ir_node *loss = find_loss(g, &loss_out);
    if (!loss) {
        ir_loc at = loss_out ? loss_out->loc : (ir_loc){-1, 0, 0};
        ir_diag_error(d, at.file, at.line, at.col, "autodiff: the graph has no scalar output 'loss'");
        return false;
    }
    int nf = g->n_nodes;
    bool *to_loss = calloc((size_t)nf + 1, sizeof *to_loss);
    bool *from_param = calloc((size_t)nf + 1, sizeof *from_param);
    bool *wants = calloc((size_t)nf + 1, sizeof *wants);
    ir_node **grad = calloc((size_t)nf + 1, sizeof *grad);
    if (!to_loss || !from_param || !wants || !grad)
        ir_unreachable("out of memory");

    /* what the loss depends on (operands precede users: one backward sweep) */
    to_loss[loss->id] = true;
    for (int i = loss->id; i >= 0; i--)
        for (int k = 0; to_loss[i] && k < g->nodes[i]->n_in; k++)
            to_loss[g->nodes[i]->in[k]->id] = true;
    /* what depends on a param, through float values only (one forward sweep) */
    for (int i = 0; i < nf; i++) {
        ir_node *n = g->nodes[i];
        if (!ir_dtype_is_float(n->dtype))
            continue;
        from_param[i] = n->op == OP_param;
        for (int k = 0; !from_param[i] && k < n->n_in; k++)
            from_param[i] = from_param[n->in[k]->id];
        wants[i] = from_param[i] && to_loss[i];
    }
    for (int i = 0; i < nf; i++)
        if (g->nodes[i]->op == OP_input && to_loss[i])
            g->nodes[i]->optional = false;

    ir_grad_ctx c = {g, d, nf, wants, grad, loss};
    bool ok = true;
    if (wants[loss->id]) {
        ir_node *seed = ir_node_add(g, OP_const, 0, NULL, loss_out->loc);
        seed->dtype = loss->dtype;
        ir_attr_set_float(seed, "value", 1);
        seed->backward = true;
        ok = ir_infer(seed, d);
        grad[loss->id] = seed;
    }
    for (int i = loss->id; ok && i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        if (!wants[i] || !grad[i] || n->op == OP_param)
            continue;
        c.cur = n;
        ok = ir_ops[n->op].grad(&c, n);
    }

    /* one gradient output per param */
    for (int i = 0; ok && i < nf; i++) {
        ir_node *p = g->nodes[i];
        if (p->op != OP_param)
            continue;
        char name[512];
        snprintf(name, sizeof name, "grad/%s", p->name ? p->name : "");
        for (int j = 0; j < g->n_nodes; j++)
            if (g->nodes[j]->op == OP_output && g->nodes[j]->name && strcmp(g->nodes[j]->name, name) == 0) {
                ir_diag_error(d, p->loc.file, p->loc.line, p->loc.col, "autodiff: the graph already has an output '%s'",
                              name);
                ok = false;
            }
        ir_node *gp = grad[i];
        if (ok && !gp) {
            gp = ir_node_add(g, OP_const, 0, NULL, p->loc);
            gp->dtype = p->dtype;
            gp->shape = p->shape;
            gp->scope = p->scope;
            gp->backward = true;
            ok = ir_infer(gp, d);
        }
        if (!ok)
            break;
        ir_node *out = ir_node_add(g, OP_output, 1, &gp, p->loc);
        out->name = ir_graph_strdup(g, name);
        out->scope = p->scope;
        out->backward = true;
        ok = ir_infer(out, d);
    }
    free(to_loss);
    free(from_param);
    free(wants);
    free(grad);
    return ok;
}
