/* ops_impl.h — prototypes of the per-op functions named in ops.def (shape rules in shape.c,
 * reference evaluation in interp.c, costs in cost.c). Generated from the table itself so a
 * new line in ops.def cannot be forgotten here. */
#ifndef LOOM_OPS_IMPL_H
#define LOOM_OPS_IMPL_H

#include "ir/interp.h"
#include "ir/ir.h"

#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad)                  \
    bool infer(ir_node *n, ir_diag *d);                                                         \
    bool eval(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d);                    \
    double cost(const ir_node *n);
#include "ir/ops.def"
#undef OP

/* Default value text of attribute k ("1e-05"), running to ',' or the end; NULL if required. */
const char *ir_op_attr_default(ir_opcode op, int k);

#endif
