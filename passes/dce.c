/* dce.c — dead code elimination: drops every node whose result reaches no output.
 *
 * Roots: outputs, inputs and params (they are the graph's interface: run-time values and
 * checkpoint entries stay even when unused) and communication ops (they pair across ranks).
 * One backward sweep marks the operands of live nodes live, which suffices because operands
 * precede their users; ir_graph_compact then drops the rest.
 */
#include "passes/pass.h"

#include <stdlib.h>

static bool is_root(const ir_node *n)
{
    return n->op == OP_output || n->op == OP_input || n->op == OP_param || ir_ops[n->op].kind == OK_COMM;
}

bool pass_dce(ir_graph *g, ir_diag *d)
{
    (void)d;
    bool *live = calloc((size_t)g->n_nodes + 1, sizeof *live);
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!live || !dead)
        ir_unreachable("out of memory");
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        live[i] = live[i] || is_root(n);
        if (!live[i])
            continue;
        for (int j = 0; j < n->n_in; j++)
            live[n->in[j]->id] = true;
    }
    bool any = false;
    for (int i = 0; i < g->n_nodes; i++) {
        dead[i] = !live[i];
        any |= dead[i];
    }
    if (any)
        ir_graph_compact(g, dead);
    free(live);
    free(dead);
    return true;
}
