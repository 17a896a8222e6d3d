/* frontend.h — the .loom language front end: lexer (lexer.l), parser (parser.y) to an AST,
 * and the builder that turns the AST into graph IR (binding hyperparameters, unrolling loops,
 * inlining blocks). */
#ifndef LOOM_FRONTEND_H
#define LOOM_FRONTEND_H

#include "ir/ir.h"

typedef struct {
    const char *name;   /* hyperparameter name */
    const char *value;  /* its text as given: "2", "1e-6" */
} fe_define;

/* Builds the model in source `file` (registered in d) into a verified graph, with
 * hyperparameter overrides from -D. Returns NULL after reporting every error through d. */
ir_graph *fe_build(ir_diag *d, int file, const fe_define *defs, int n_defs);

#endif
