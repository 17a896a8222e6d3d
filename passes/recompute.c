/* recompute.c — activation recomputation (`loom train --recompute full|selective`): the
 * backward reads block activations recomputed from the block's saved values instead of the
 * forward's, so the forward's die as soon as the forward is done with them.
 *
 * Runs after autodiff (and its dce,cse), on the training graph. A forward value is *saved* —
 * kept from the forward until the backward reads it — when it is a param, an input, a const or
 * iota, a communication result, at the top level (no block scope), or read by the forward of
 * another block instance (a block's output is the next block's input: Megatron's saved block
 * inputs). Under `selective` the results of GEMMs and attention are saved too (PyTorch's
 * selective checkpointing policy: the costly ops are not run twice; layernorms, GELUs, bias
 * adds and layout ops are). Every other forward value a backward node reads is replaced there by
 * its recomputation: a copy of the op (ir_node_copy, marked backward and `recomputed`) over the
 * recomputations of its operands, down to saved values. Each copy is placed just before its
 * first reader, so it is computed when the backward reaches its block and dies there.
 *
 * CSE never merges a recomputed node with one that is not (cse.c), so later passes keep them
 * apart. The numbers are unchanged: the same ops on the same operands in the same order.
 */
#include "passes/pass.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    ir_graph *g;
    bool selective;
    bool *saved;     /* by original id */
    ir_node **copy;  /* by original id: its recomputation, or NULL */
    int n_orig;
} rc;

static bool same_scope(const ir_node *a, const ir_node *b)
{
    return a->scope && b->scope && strcmp(a->scope, b->scope) == 0;
}

/* Which forward values stay saved (above); the others may be recomputed. */
static void find_saved(rc *c)
{
    ir_graph *g = c->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        ir_op_kind k = ir_ops[n->op].kind;
        c->saved[i] = n->backward || k == OK_SOURCE || k == OK_SINK || k == OK_COMM || !n->scope ||
                      (c->selective && (k == OK_MATMUL || n->op == OP_attention));
    }
    for (int i = 0; i < g->n_nodes; i++) { /* read by another block's forward */
        const ir_node *n = g->nodes[i];
        for (int j = 0; !n->backward && j < n->n_in; j++)
            if (!same_scope(n, n->in[j]))
                c->saved[n->in[j]->id] = true;
    }
}

/* The recomputation of forward value x (x itself when saved). */
static ir_node *recompute(rc *c, ir_node *x)
{
    if (x->id >= c->n_orig || c->saved[x->id])
        return x;
    if (c->copy[x->id])
        return c->copy[x->id];
    ir_node **in = calloc((size_t)x->n_in + 1, sizeof *in);
    if (!in)
        ir_unreachable("out of memory");
    for (int j = 0; j < x->n_in; j++)
        in[j] = recompute(c, x->in[j]);
    ir_node *y = ir_node_copy(c->g, x, in);
    free(in);
    y->backward = true;
    y->recomputed = true;
    y->group = -1;
    return c->copy[x->id] = y;
}

/* Appends n to order after its not yet placed recomputed operands (recursively). */
static void place(ir_node *n, ir_node **order, int *k, bool *placed)
{
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j]->recomputed && !placed[n->in[j]->id])
            place(n->in[j], order, k, placed);
    placed[n->id] = true;
    order[(*k)++] = n;
}

static bool run(ir_graph *g, bool selective)
{
    int n = g->n_nodes;
    rc c = {g, selective, calloc((size_t)n + 1, sizeof(bool)), calloc((size_t)n + 1, sizeof(ir_node *)), n};
    if (!c.saved || !c.copy)
        ir_unreachable("out of memory");
    find_saved(&c);
    for (int i = 0; i < n; i++) {
        ir_node *b = g->nodes[i];
        for (int j = 0; b->backward && j < b->n_in; j++)
            b->in[j] = recompute(&c, b->in[j]);
    }
    /* the copies were appended: each goes just before its first reader */
    ir_node **order = malloc(sizeof *order * (size_t)(g->n_nodes + 1));
    bool *placed = calloc((size_t)g->n_nodes + 1, sizeof *placed);
    if (!order || !placed)
        ir_unreachable("out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        place(g->nodes[i], order, &k, placed);
    for (int i = 0; i < k; i++) {
        g->nodes[i] = order[i];
        g->nodes[i]->id = i;
    }
    if (k != g->n_nodes)
        ir_unreachable("recompute: a recomputation nobody reads");
    free(order);
    free(placed);
    free(c.saved);
    free(c.copy);
    return true;
}

bool pass_recompute(ir_graph *g, ir_diag *d)
{
    (void)d;
    return run(g, false);
}

bool pass_recompute_selective(ir_graph *g, ir_diag *d)
{
    (void)d;
    return run(g, true);
}
