/* mesh_test_util.h — model building and input values shared by the mesh tests. */
#ifndef MESH_TEST_UTIL_H
#define MESH_TEST_UTIL_H

#include "frontend/frontend.h"
#include "io/init.h"
#include "ir/ir.h"

#include <stdint.h>
#include <stdlib.h>

static inline ir_graph *build(const char *path, const fe_define *defs, int n, ir_diag *d)
{
    int file = ir_diag_load_file(d, path);
    return file >= 0 ? fe_build(d, file, defs, n) : NULL;
}

/* Every param normal(0.2) by name, tokens and targets from a fixed LCG. */
static inline ir_named_tensor *values_for(const ir_graph *g, int vocab, int *n_vals)
{
    ir_named_tensor *v = calloc((size_t)g->n_nodes + 1, sizeof *v);
    int k = 0;
    uint64_t s = 12345;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        ir_tensor *t = ir_tensor_new(n->dtype, &n->shape);
        int64_t cnt = ir_shape_numel(&n->shape);
        if (n->op == OP_param) {
            rt_init_fill("normal", 0.2, n->name, 7, 0, (size_t)cnt, t->data);
            for (int64_t e = 0; e < cnt; e++)
                t->data[e] = (double)(float)t->data[e];
        } else {
            for (int64_t e = 0; e < cnt; e++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                t->data[e] = (double)((s >> 33) % (uint64_t)vocab);
            }
        }
        v[k++] = (ir_named_tensor){n->name, t};
    }
    *n_vals = k;
    return v;
}

#endif
