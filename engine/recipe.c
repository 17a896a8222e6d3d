/* recipe.c — the training recipe: which graph a rank runs for one training step (train.h:
 * eng_train_graph). `loom train` compiles it, `loom build --mesh --train` compiles it ahead of
 * time for every rank, and `loom check --mesh --train` reports it: one function, so the three
 * cannot disagree.
 */
#include <stdio.h>
#include <string.h>

#include "engine/run_values.h"
#include "engine/train.h"
#include "passes/pass.h"

ir_graph *eng_train_graph(const eng_opts *o, const ir_graph *g, int rows, pass_mesh *m, bool grad, const char *cmd,
                          ir_diag *d)
{
    const ir_node *tok = eng_find_node(g, OP_input, "tokens");
    bool same = rows == 0 || (tok && tok->shape.rank == 2 && tok->shape.dim[0] == rows);
    ir_graph *t = same ? ir_graph_clone(g) : eng_load_batch(o, rows, cmd, d);
    if (!t)
        return NULL;
    eng_prune_to(t, "loss");
    for (int i = 0; i < t->n_nodes; i++) {
        const ir_node *n = t->nodes[i];
        if (n->op == OP_input && strcmp(n->name, "tokens") != 0 && strcmp(n->name, "targets") != 0) {
            ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col,
                          "%s: the loss needs input '%s', but loom train feeds only 'tokens' and 'targets'", cmd,
                          n->name);
            ir_graph_free(t);
            return NULL;
        }
    }
    if (!grad)
        return t;
    bool sharded = m && (pass_mesh_size(m, "tp") > 1 || pass_mesh_size(m, "pp") > 1);
    pass_options po = pass_options_default();
    po.mesh = sharded ? m : NULL;
    if (!pass_run_pipeline(t, sharded ? pass_mesh_gradient_pipeline() : pass_gradient_pipeline(), &po, d)) {
        ir_graph_free(t);
        return NULL;
    }
    return t;
}
