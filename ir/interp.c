/* interp.c — reference interpreter (STUB). */
#include "ops_impl.h"

#include <stdlib.h>

bool eval_attention(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_binary(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_broadcast(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_concat(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_const(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_embedding(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_iota(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_layernorm(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_matmul(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_output(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_reduce(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_reshape(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_rmsnorm(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_rope(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_slice(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_softmax(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_source(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_transpose(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_unary(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

bool eval_xent(const ir_node *n, ir_tensor **in, ir_tensor *out, ir_diag *d)
{
    (void)in; (void)out;
    ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "not written");
    return false;
}

ir_tensor *ir_tensor_new(ir_dtype dt, const ir_shape *shape)
{
    ir_tensor *t = calloc(1, sizeof *t);
    t->dtype = dt;
    t->shape = *shape;
    t->data = calloc((size_t)ir_shape_numel(shape) + 1, sizeof(double));
    return t;
}

void ir_tensor_free(ir_tensor *t)
{
    if (t)
        free(t->data);
    free(t);
}

double ir_round_to(ir_dtype dt, double v) { (void)dt; return v; }

bool ir_interp_run(const ir_graph *g, ir_precision prec, const ir_named_tensor *values, int n_values,
                   ir_named_tensor **outputs, int *n_outputs, ir_diag *d)
{
    (void)g; (void)prec; (void)values; (void)n_values; (void)outputs; (void)n_outputs;
    ir_diag_error(d, -1, 0, 0, "interpreter not written");
    return false;
}

void ir_named_tensors_free(ir_named_tensor *ts, int n) { (void)ts; (void)n; }
