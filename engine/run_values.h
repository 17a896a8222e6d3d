/* run_values.h — the params and inputs given to a run: finding one by name, and dropping what
 * needs an optional input that was not given (engine/run_values.c). */
#ifndef LOOM_ENGINE_RUN_VALUES_H
#define LOOM_ENGINE_RUN_VALUES_H

#include <stdbool.h>

#include "ir/interp.h"
#include "ir/ir.h"

/* the value called name in vals[0..n), or NULL. */
const ir_tensor *eng_find_value(const ir_named_tensor *vals, int n, const char *name);
/* drops g's optional inputs that have no value in vals and every node depending
 * on one (outputs included), as the reference interpreter skips the outputs that need them. */
void eng_drop_absent(ir_graph *g, const ir_named_tensor *vals, int n_vals);
/* the same, with given(ctx, name) telling whether input name has a value. */
void eng_drop_absent_if(ir_graph *g, bool (*given)(const void *ctx, const char *name), const void *ctx);
/* the node of g with this op and name, or NULL. */
const ir_node *eng_find_node(const ir_graph *g, ir_opcode op, const char *name);
/* keeps only the output called keep and what it needs (params and required
 * inputs stay). */
void eng_prune_to(ir_graph *g, const char *keep);
/* The same keeping the outputs keep[0..n_keep). */
void eng_prune_to_outputs(ir_graph *g, const char *const *keep, int n_keep);
#endif
