/* shape.c — shape rules of every op (STUB: being written). */
#include "ops_impl.h"

bool infer_attention(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_binary(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_broadcast(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_cast(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_concat(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_embedding(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_gelu(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_iota(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_layernorm(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_matmul(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_output(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_reduce(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_reshape(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_rmsnorm(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_rope(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_slice(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_source(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_transpose(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_unary(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

bool infer_xent(ir_node *n, ir_diag *d)
{
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: shape rule not written", ir_ops[n->op].mnemonic);
    return false;
}

