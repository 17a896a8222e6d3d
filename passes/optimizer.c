/* optimizer.c — builds a training step's parameter update (AdamW or SGD with momentum, global
 * norm clipping, micro-batch averaging) as a graph of ordinary ops over the flat parameter
 * groups; see optimizer.h for the graph's interface, layout and formulas. Being IR, the update
 * is fused, lowered and JIT-compiled like any model, and runs on whatever backend runs the
 * gradients.
 */
#include "passes/optimizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pass_opt_group_name[PASS_OPT_GROUPS] = {"decay", "no_decay"};

pass_opt_config pass_opt_config_default(void)
{
    return (pass_opt_config){PASS_OPT_ADAMW, 0.9, 0.95, 1e-8, 0.0, 0.1, false, 1.0, 1, false, false, 1, 0};
}

int pass_opt_group(const pass_opt_config *c, const ir_node *param)
{
    return c->weight_decay != 0 && (c->decay_rank1 || param->shape.rank >= 2) ? PASS_OPT_DECAY : PASS_OPT_NO_DECAY;
}

void pass_opt_group_sizes(const ir_graph *model, const pass_opt_config *c, int64_t n[PASS_OPT_GROUPS])
{
    n[0] = n[1] = 0;
    for (int i = 0; i < model->n_nodes; i++)
        if (model->nodes[i]->op == OP_param)
            n[pass_opt_group(c, model->nodes[i])] += ir_shape_numel(&model->nodes[i]->shape);
}

int64_t pass_opt_chunk(int64_t n, int shards) { return shards > 1 ? (n + shards - 1) / shards : n; }

int64_t pass_opt_zero2_piece(int shards)
{
    int64_t p = ((int64_t)1 << 20) / (shards > 1 ? shards : 1);
    return p > 0 ? p : 1;
}

bool pass_opt_zero2_hits(int64_t at, int64_t len, int64_t c, int shards, int64_t lo, int64_t hi)
{
    for (int q = 0; q < shards; q++)
        if (q * c + at < hi && lo < q * c + at + len)
            return true;
    return false;
}

int pass_opt_state_names(const pass_opt_config *c, const char *names[2])
{
    if (c->kind == PASS_OPT_ADAMW) {
        names[0] = "adam.m";
        names[1] = "adam.v";
        return 2;
    }
    names[0] = "sgd.buf";
    return c->momentum != 0 ? 1 : 0;
}

/* Node building: every node is made by us, so a failing shape rule is a compiler bug. */
typedef struct {
    ir_graph *g;
    ir_diag *d;
    ir_loc loc;
} builder;

static ir_node *fin(builder *b, ir_node *n)
{
    if (!ir_infer(n, b->d)) {
        ir_diag_print(b->d, stderr);
        ir_unreachable("optimizer: a node fails its shape rule");
    }
    return n;
}

static ir_node *op2(builder *b, ir_opcode op, ir_node *x, ir_node *y)
{
    ir_node *in[2] = {x, y};
    return fin(b, ir_node_add(b->g, op, 2, in, b->loc));
}

static ir_node *op1(builder *b, ir_opcode op, ir_node *x) { return fin(b, ir_node_add(b->g, op, 1, &x, b->loc)); }

static ir_node *scalar(builder *b, double v)
{
    ir_node *n = ir_node_add(b->g, OP_const, 0, NULL, b->loc);
    n->dtype = DT_F32;
    ir_attr_set_float(n, "value", v);
    return fin(b, n);
}

/* A param or input "prefix/group" of n elements (n < 0: a scalar called prefix). */
static ir_node *source(builder *b, ir_opcode op, const char *prefix, int group, int64_t n)
{
    char name[64];
    snprintf(name, sizeof name, "%s/%s", prefix, group >= 0 ? pass_opt_group_name[group] : "");
    ir_node *x = ir_node_add(b->g, op, 0, NULL, b->loc);
    x->name = ir_graph_strdup(b->g, group >= 0 ? name : prefix);
    x->dtype = DT_F32;
    if (n >= 0)
        x->shape = (ir_shape){.rank = 1, .dim = {n}};
    return fin(b, x);
}

static void output(builder *b, const char *name, ir_node *x)
{
    ir_node *o = ir_node_add(b->g, OP_output, 1, &x, b->loc);
    o->name = ir_graph_strdup(b->g, name);
    fin(b, o);
}

static ir_node *sum_axes(builder *b, ir_node *x, int n_axes, const int64_t *axes)
{
    ir_node *s = ir_node_add(b->g, OP_sum, 1, &x, b->loc);
    ir_attr_set_ints(b->g, s, "axes", n_axes, axes);
    return fin(b, s);
}

/* x[start, end) of a flat x. */
static ir_node *part(builder *b, ir_node *x, int64_t start, int64_t end)
{
    ir_node *s = ir_node_add(b->g, OP_slice, 1, &x, b->loc);
    ir_attr_set_int(s, "axis", 0);
    ir_attr_set_int(s, "start", start);
    ir_attr_set_int(s, "end", end);
    return fin(b, s);
}

/* Σ x² over the elements of a flat group x[n]: a scalar. Summed in two levels — rows of
 * SUMSQ_ROW, the last one shorter, then the row sums — because one f32 sum of a whole group
 * drifts with its length: GPT-2 small's 124M squares came out 3e-4 off. The whole rows are one
 * row kernel over a contiguous view (vectorized loads); the short row is its own sum, so no
 * load of the rows' kernel needs a bound check (padding the group with zeros made every load a
 * clamped gather: 2.3x slower). */
#define SUMSQ_ROW 4096
static ir_node *sum_squares(builder *b, ir_node *x)
{
    int64_t n = x->shape.dim[0], full = n / SUMSQ_ROW, rest = n - full * SUMSQ_ROW;
    if (full == 0 || n == SUMSQ_ROW)
        return sum_axes(b, op2(b, OP_mul, x, x), 0, NULL);
    ir_node *rows = full * SUMSQ_ROW == n ? x : part(b, x, 0, full * SUMSQ_ROW); /* squared in each consumer */
    ir_node *grid = ir_node_add(b->g, OP_reshape, 1, (ir_node *[]){op2(b, OP_mul, rows, rows)}, b->loc);
    ir_attr_set_ints(b->g, grid, "shape", 2, (int64_t[]){full, SUMSQ_ROW});
    ir_node *sums = sum_axes(b, fin(b, grid), 1, (int64_t[]){1});
    if (rest) {
        ir_node *tail = part(b, x, full * SUMSQ_ROW, n);
        ir_node *last = ir_node_add(b->g, OP_sum, 1, (ir_node *[]){op2(b, OP_mul, tail, tail)}, b->loc);
        ir_attr_set_ints(b->g, last, "axes", 1, (int64_t[]){0});
        ir_attr_set_int(last, "keepdim", 1);
        ir_node *cat = ir_node_add(b->g, OP_concat, 2, (ir_node *[]){sums, fin(b, last)}, b->loc);
        ir_attr_set_int(cat, "axis", 0);
        sums = fin(b, cat);
    }
    return sum_axes(b, sums, 0, NULL);
}

ir_graph *pass_optimizer_graph(const ir_graph *model, const pass_opt_config *c, ir_diag *d)
{
    for (int i = 0; i < model->n_nodes; i++) {
        const ir_node *p = model->nodes[i];
        if (p->op == OP_param && p->dtype != DT_F32) {
            ir_diag_error(d, p->loc.file, p->loc.line, p->loc.col,
                          "optimizer: param '%s' is %s; training updates f32 params only", p->name,
                          ir_dtype_name(p->dtype));
            return NULL;
        }
    }
    int64_t n[PASS_OPT_GROUPS];
    pass_opt_group_sizes(model, c, n);
    if (n[0] + n[1] == 0) {
        ir_diag_error(d, -1, 0, 0, "optimizer: the model has no params to train");
        return NULL;
    }
    if (c->shards > 1 && !c->sumsq_input)
        ir_unreachable("optimizer: a chunk of the groups needs the norm as input (sumsq_input)");
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        n[k] = pass_opt_chunk(n[k], c->shards);
    ir_graph *g = ir_graph_new("update");
    builder b = {g, d, {-1, 0, 0}};
    const char *state[2];
    int n_state = pass_opt_state_names(c, state);
    ir_node *p[PASS_OPT_GROUPS] = {0}, *s[PASS_OPT_GROUPS][2] = {{0}}, *gr[PASS_OPT_GROUPS] = {0};
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        if (n[k])
            p[k] = source(&b, OP_param, "params", k, n[k]);
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        for (int j = 0; n[k] && j < n_state; j++)
            s[k][j] = source(&b, OP_param, state[j], k, n[k]);
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        if (n[k])
            gr[k] = source(&b, OP_input, "grads", k, n[k]);
    ir_node *lr = source(&b, OP_input, "lr", -1, -1), *step = source(&b, OP_input, "step", -1, -1);
    ir_node *gscale = c->grad_scale_input ? source(&b, OP_input, "grad_scale", -1, -1) : NULL;

    /* average over micro-batches, global norm, clipping */
    ir_node *total = NULL;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!n[k])
            continue;
        if (gscale)
            gr[k] = op2(&b, OP_mul, gr[k], gscale);
        if (c->accum > 1)
            gr[k] = op2(&b, OP_mul, gr[k], scalar(&b, 1.0 / c->accum));
        ir_node *sq = c->sumsq_input ? NULL : sum_squares(&b, gr[k]);
        total = !sq ? total : total ? op2(&b, OP_add, total, sq) : sq;
    }
    if (c->sumsq_input)
        total = source(&b, OP_input, "grad_sumsq", -1, -1);
    ir_node *norm = op1(&b, OP_sqrt, total);
    output(&b, "grad_norm", norm);
    if (c->clip > 0) {
        ir_node *coef = op2(&b, OP_div, scalar(&b, c->clip), op2(&b, OP_add, norm, scalar(&b, 1e-6)));
        coef = op2(&b, OP_minimum, coef, scalar(&b, 1.0));
        for (int k = 0; k < PASS_OPT_GROUPS; k++)
            if (n[k])
                gr[k] = op2(&b, OP_mul, gr[k], coef);
    }

    char name[64];
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!n[k])
            continue;
        double wd = k == PASS_OPT_DECAY ? c->weight_decay : 0;
        ir_node *np = NULL;
        if (c->kind == PASS_OPT_ADAMW) {
            ir_node *one = scalar(&b, 1.0);
            ir_node *bc1 = op2(&b, OP_sub, one, op2(&b, OP_pow, scalar(&b, c->beta1), step));
            ir_node *bc2 = op2(&b, OP_sub, one, op2(&b, OP_pow, scalar(&b, c->beta2), step));
            ir_node *step_size = op2(&b, OP_div, lr, bc1), *sqrt_bc2 = op1(&b, OP_sqrt, bc2);
            ir_node *m = op2(&b, OP_add, op2(&b, OP_mul, scalar(&b, c->beta1), s[k][0]),
                             op2(&b, OP_mul, scalar(&b, 1 - c->beta1), gr[k]));
            ir_node *v = op2(&b, OP_add, op2(&b, OP_mul, scalar(&b, c->beta2), s[k][1]),
                             op2(&b, OP_mul, scalar(&b, 1 - c->beta2), op2(&b, OP_mul, gr[k], gr[k])));
            ir_node *denom = op2(&b, OP_add, op2(&b, OP_div, op1(&b, OP_sqrt, v), sqrt_bc2), scalar(&b, c->eps));
            np = p[k];
            if (wd != 0)
                np = op2(&b, OP_mul, np, op2(&b, OP_sub, one, op2(&b, OP_mul, lr, scalar(&b, wd))));
            np = op2(&b, OP_sub, np, op2(&b, OP_mul, step_size, op2(&b, OP_div, m, denom)));
            snprintf(name, sizeof name, "adam.m/%s", pass_opt_group_name[k]);
            output(&b, name, m);
            snprintf(name, sizeof name, "adam.v/%s", pass_opt_group_name[k]);
            output(&b, name, v);
        } else {
            ir_node *gk = gr[k];
            if (wd != 0)
                gk = op2(&b, OP_add, gk, op2(&b, OP_mul, scalar(&b, wd), p[k]));
            if (n_state) {
                gk = op2(&b, OP_add, op2(&b, OP_mul, scalar(&b, c->momentum), s[k][0]), gk);
                snprintf(name, sizeof name, "sgd.buf/%s", pass_opt_group_name[k]);
                output(&b, name, gk);
            }
            np = op2(&b, OP_sub, p[k], op2(&b, OP_mul, lr, gk));
        }
        snprintf(name, sizeof name, "params/%s", pass_opt_group_name[k]);
        output(&b, name, np);
    }
    return g;
}

ir_graph *pass_accum_graph(const int64_t n[PASS_OPT_GROUPS])
{
    ir_graph *g = ir_graph_new("accumulate");
    ir_diag d;
    ir_diag_init(&d);
    builder b = {g, &d, {-1, 0, 0}};
    char name[64];
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!n[k])
            continue;
        ir_node *acc = source(&b, OP_param, "acc", k, n[k]), *add = source(&b, OP_input, "add", k, n[k]);
        snprintf(name, sizeof name, "acc/%s", pass_opt_group_name[k]);
        output(&b, name, op2(&b, OP_add, acc, add));
    }
    ir_node *acc = source(&b, OP_param, "acc/loss", -1, -1), *add = source(&b, OP_input, "add/loss", -1, -1);
    output(&b, "acc/loss", op2(&b, OP_add, acc, add));
    ir_diag_free(&d);
    return g;
}
