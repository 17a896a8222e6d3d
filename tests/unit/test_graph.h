/* test_graph.h — what the C unit tests that build small graphs by hand share: shp() for a
 * shape, and a test case (a graph plus the values of its inputs and params, named as their
 * nodes) that tc_begin starts and tc_end frees. */
#ifndef LOOM_TEST_GRAPH_H
#define LOOM_TEST_GRAPH_H

#include "ir/interp.h"
#include "ir/ir.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A graph from its text form (named test.lir in messages); prints the errors and exits when it
 * does not parse. */
static inline ir_graph *tg_parse(const char *text, ir_diag *d)
{
    int f = ir_diag_add_source(d, "test.lir", text, strlen(text));
    ir_graph *g = ir_parse(d, f);
    if (!g) {
        ir_diag_print(d, stderr);
        exit(1);
    }
    return g;
}

/* shp(2, 3, 4): the shape [3, 4]. */
static inline ir_shape shp(int rank, ...)
{
    ir_shape s = {.rank = rank};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        s.dim[i] = va_arg(ap, int);
    va_end(ap);
    return s;
}

/* One test graph and the values of its inputs and params (names and tensors owned here). */
typedef struct {
    ir_graph *g;
    ir_named_tensor vals[64];
    bool is_param[64];
    int n_vals;
} tcase;

static inline void tc_begin(tcase *t)
{
    memset(t, 0, sizeof *t);
    t->g = ir_graph_new("t");
}

static inline void tc_end(tcase *t)
{
    for (int i = 0; i < t->n_vals; i++) {
        free((void *)t->vals[i].name);
        ir_tensor_free(t->vals[i].t);
    }
    ir_graph_free(t->g);
}

#endif
