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

const char *eng_recompute_pipeline(const eng_opts *o, const char *pipeline, const char *cmd, char *buf, size_t cap,
                                   ir_diag *d)
{
    const char *rc = eng_named(o, "--recompute");
    if (!rc || strcmp(rc, "none") == 0)
        return pipeline;
    if (strcmp(rc, "full") != 0 && strcmp(rc, "selective") != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: --recompute expects none, selective or full, got '%s'", cmd, rc);
        return NULL;
    }
    /* after the first cse that follows autodiff: the backward is there, nothing fused yet */
    const char *ad = strstr(pipeline, "autodiff"), *cse = ad ? strstr(ad, "cse") : NULL;
    if (!cse)
        ir_unreachable("recipe: a training pipeline without autodiff,...,cse");
    size_t at = (size_t)(cse - pipeline) + 3;
    snprintf(buf, cap, "%.*s,%s%s", (int)at, pipeline, strcmp(rc, "full") == 0 ? "recompute" : "recompute-selective",
             pipeline + at);
    return buf;
}

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
    char buf[256];
    const char *pipeline =
        eng_recompute_pipeline(o, sharded ? pass_mesh_gradient_pipeline() : pass_gradient_pipeline(), cmd, buf, sizeof buf, d);
    if (!pipeline || !pass_run_pipeline(t, pipeline, &po, d)) {
        ir_graph_free(t);
        return NULL;
    }
    return t;
}
