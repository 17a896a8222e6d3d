/* frontend.h — the .loom language front end: lexer (lexer.l), parser (parser.y) to an AST,
 * and the builder that turns the AST into graph IR (binding hyperparameters, unrolling loops,
 * inlining blocks). */
#ifndef LOOM_FRONTEND_H
#define LOOM_FRONTEND_H

#include <stdbool.h>

#include "ir/ir.h"

typedef struct {
    const char *name;   /* hyperparameter name */
    const char *value;  /* its text as given: "2", "1e-6" */
} fe_define;

/* Builds the model in source `file` (registered in d) into a verified graph, with
 * hyperparameter overrides from -D. Returns NULL after reporting every error through d. */
ir_graph *fe_build(ir_diag *d, int file, const fe_define *defs, int n_defs);

/* One hyperparameter of a model as built: its name and value (-D applied). */
typedef struct {
    const char *name;   /* points into the model's source text's arena: valid until fe_hparams_free */
    double value;
    bool is_int;
} fe_hparam;

typedef struct {
    fe_hparam *h;
    int n;
    void *arena_;       /* owns the names */
} fe_hparam_list;

/* The hyperparameters the model in `file` declares, in order, with -D overrides applied (a -D
 * naming no hyperparameter is ignored here; fe_build reports it). False after reporting a
 * parse error or a bad -D value; free the list with fe_hparams_free either way. */
bool fe_hparams(ir_diag *d, int file, const fe_define *defs, int n_defs, fe_hparam_list *out);
void fe_hparams_free(fe_hparam_list *l);
/* The value of hyperparameter name in l, or NULL. */
const fe_hparam *fe_hparam_find(const fe_hparam_list *l, const char *name);

#endif
