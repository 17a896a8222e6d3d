/* run_values.c — the params and inputs given to `loom run` on a program.h target (cli.h):
 * finding one by name, and dropping the graph's optional inputs that were not given, with
 * every node that depends on one (outputs included), as the reference interpreter skips the
 * outputs that need them; finding a node by name and keeping one output (loom train's
 * programs).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/run_values.h"

const ir_tensor *eng_find_value(const ir_named_tensor *vals, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (vals[i].name && strcmp(vals[i].name, name) == 0)
            return vals[i].t;
    return NULL;
}

void eng_drop_absent_if(ir_graph *g, bool (*given)(const void *ctx, const char *name), const void *ctx)
{
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!dead)
        ir_unreachable("out of memory");
    bool any = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input && n->optional && !given(ctx, n->name))
            dead[i] = true;
        for (int k = 0; k < n->n_in; k++)
            dead[i] |= dead[n->in[k]->id];
        any |= dead[i];
    }
    if (any)
        ir_graph_compact(g, dead);
    free(dead);
}

typedef struct {
    const ir_named_tensor *vals;
    int n;
} named_values;

static bool in_values(const void *ctx, const char *name)
{
    const named_values *nv = ctx;
    return eng_find_value(nv->vals, nv->n, name) != NULL;
}

void eng_drop_absent(ir_graph *g, const ir_named_tensor *vals, int n_vals)
{
    named_values nv = {vals, n_vals};
    eng_drop_absent_if(g, in_values, &nv);
}

const ir_node *eng_find_node(const ir_graph *g, ir_opcode op, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == op && g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0)
            return g->nodes[i];
    return NULL;
}

void eng_prune_to(ir_graph *g, const char *keep) { eng_prune_to_outputs(g, &keep, 1); }

void eng_prune_to_outputs(ir_graph *g, const char *const *keep, int n_keep)
{
    bool *live = calloc((size_t)g->n_nodes + 1, sizeof *live), *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!live || !dead)
        ir_unreachable("out of memory");
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        for (int k = 0; n->op == OP_output && k < n_keep; k++)
            live[i] |= strcmp(n->name, keep[k]) == 0;
        for (int k = 0; live[i] && k < n->n_in; k++)
            live[n->in[k]->id] = true;
        dead[i] = !live[i] && n->op != OP_param && !(n->op == OP_input && !n->optional);
    }
    ir_graph_compact(g, dead);
    free(live);
    free(dead);
}
