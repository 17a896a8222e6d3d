/* half_params.c — the `half-params` pass: for inference at a half --precision, a float param that
 * the graph reads only through its cast to the half type becomes a param of that type.
 *
 * After lower-precision every weight feeding GEMMs and half kernels is an f32 param followed by
 * one cast to bf16/f16: a kernel that reads all the weights and writes their half copies in every
 * run (a fifth of GPT-2 small's bf16 forward at 8 × 64). Here the param itself takes the half type
 * and its readers read it directly; the run's binding converts the f32 weights once (rounding to
 * nearest even, as the cast does: the same numbers), and the half weights take half the memory.
 *
 * Only for graphs without gradients: a trained param stays an f32 master (the eval program of
 * `loom train` shares the trainer's f32 params). A param with any other reader (a layernorm's
 * weight read in f32, an output) keeps its type. The dead casts are dropped by dce.
 */
#include "passes/pass.h"

#include <stdlib.h>

bool pass_half_params(ir_graph *g, ir_diag *d)
{
    int n = g->n_nodes;
    for (int i = 0; i < n; i++)
        if (g->nodes[i]->backward)
            return true; /* a training graph: params stay f32 masters */
    ir_dtype *only = calloc((size_t)n + 1, sizeof *only); /* per param: its one half cast type */
    bool *other = calloc((size_t)n + 1, sizeof *other);   /* per param: read some other way */
    if (!only || !other)
        ir_unreachable("out of memory");
    for (int i = 0; i < n; i++) {
        const ir_node *m = g->nodes[i];
        if (ir_ops[m->op].kind == OK_COMM || m->op == OP_output)
            for (int k = 0; k < m->n_in; k++)
                other[m->in[k]->id] = true; /* exchanged or an output: kept */
        for (int k = 0; k < m->n_in; k++) {
            const ir_node *p = m->in[k];
            if (p->op != OP_param)
                continue;
            ir_dtype to = m->op == OP_cast ? ir_attr_dtype(m, "to") : DT_VOID;
            if ((to != DT_BF16 && to != DT_F16) || (only[p->id] != DT_VOID && only[p->id] != to))
                other[p->id] = true;
            else
                only[p->id] = to;
        }
    }
    bool any = false;
    for (int i = 0; i < n; i++) {
        ir_node *m = g->nodes[i];
        if (m->op == OP_param && m->dtype == DT_F32 && only[i] != DT_VOID && !other[i]) {
            m->dtype = only[i];
            any = true;
        }
    }
    /* readers of a retyped param's cast read the param */
    for (int i = 0; any && i < n; i++) {
        ir_node *m = g->nodes[i];
        for (int k = 0; k < m->n_in; k++) {
            ir_node *c = m->in[k];
            if (c->op == OP_cast && c->in[0]->op == OP_param && c->in[0]->dtype == c->dtype)
                m->in[k] = c->in[0];
        }
    }
    free(only);
    free(other);
    return !any || pass_dce(g, d);
}
