/* distill.c — knowledge distillation as a graph rewrite (docs/compression.md, "Distillation").
 *
 * pass_distill(g, teacher, alpha, T) takes a student's loss graph g — an output "loss" that is
 * cross_entropy(zs, targets) — and a teacher graph with an output "logits" of zs's shape, and
 * makes g's "loss"
 *     alpha · CE + (1 − alpha) · T² · KL(pt ‖ ps),   pt = softmax(zt / T), ps = softmax(zs / T)
 * with KL the mean over positions of Σ_v pt (log pt − log ps). The teacher's forward (the nodes
 * its logits need) is copied into g, reading g's "tokens"; each teacher param becomes an input
 * "teacher/NAME": autodiff gives inputs no gradient, so the teacher stays fixed and only the
 * student trains, in one program and one step. Per position, with a = zs / T, b = zt / T and
 * lse(x) = m + log Σ exp(x − m), m = max x (stable for any logits):
 *     KL = Σ_v pt (b − lse(b) − a) + lse(a)       (Σ_v pt = 1)
 * whose gradient in zs is (ps − pt) / T, so T² · KL's is T · (ps − pt), the usual scaling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"

static ir_node *find(const ir_graph *g, ir_opcode op, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == op && g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0)
            return g->nodes[i];
    return NULL;
}

typedef struct {
    ir_graph *g;
    ir_loc loc;
    ir_diag *d;
    bool ok;
} builder;

static ir_node *fin(builder *b, ir_node *n)
{
    if (!ir_infer(n, b->d))
        b->ok = false;
    return n;
}

static ir_node *op1(builder *b, ir_opcode op, ir_node *x) { return fin(b, ir_node_add(b->g, op, 1, &x, b->loc)); }
static ir_node *op2(builder *b, ir_opcode op, ir_node *x, ir_node *y)
{
    return fin(b, ir_node_add(b->g, op, 2, (ir_node *[]){x, y}, b->loc));
}

static ir_node *scalar(builder *b, double v)
{
    ir_node *c = ir_node_add(b->g, OP_const, 0, NULL, b->loc);
    c->dtype = DT_F32;
    c->shape.rank = 0;
    ir_attr_set_float(c, "value", v);
    return fin(b, c);
}

/* A reduction over the last axis (keepdim) or, with all, over every axis. */
static ir_node *reduce(builder *b, ir_opcode op, ir_node *x, bool all)
{
    ir_node *n = ir_node_add(b->g, op, 1, &x, b->loc);
    int64_t axes[IR_MAX_RANK];
    int r = x->shape.rank;
    for (int i = 0; i < r; i++)
        axes[i] = i;
    if (all)
        ir_attr_set_ints(b->g, n, "axes", r, axes);
    else
        ir_attr_set_ints(b->g, n, "axes", 1, (int64_t[]){-1});
    ir_attr_set_int(n, "keepdim", all ? 0 : 1);
    return fin(b, n);
}

/* log Σ exp over the last axis, kept: [..., 1]. */
static ir_node *logsumexp(builder *b, ir_node *x)
{
    ir_node *m = reduce(b, OP_max, x, false);
    return op2(b, OP_add, m, op1(b, OP_log, reduce(b, OP_sum, op1(b, OP_exp, op2(b, OP_sub, x, m)), false)));
}

/* Copies the teacher nodes that `logits` needs into b->g; returns the copy of logits. */
static ir_node *copy_teacher(builder *b, const ir_graph *t, const ir_node *logits, ir_node *tokens)
{
    int nn = t->n_nodes;
    bool *need = calloc((size_t)nn + 1, sizeof *need);
    ir_node **map = calloc((size_t)nn + 1, sizeof *map);
    if (!need || !map)
        ir_unreachable("out of memory");
    need[logits->id] = true;
    for (int i = nn - 1; i >= 0; i--)
        for (int k = 0; need[i] && k < t->nodes[i]->n_in; k++)
            need[t->nodes[i]->in[k]->id] = true;
    ir_node *in[64];
    for (int i = 0; i < nn && b->ok; i++) {
        const ir_node *s = t->nodes[i];
        if (!need[i])
            continue;
        if (s->op == OP_input) {
            if (strcmp(s->name, "tokens") != 0 || !ir_shape_eq(&s->shape, &tokens->shape) ||
                s->dtype != tokens->dtype) {
                char a[64], c[64];
                ir_diag_error(b->d, s->loc.file, s->loc.line, s->loc.col,
                              "distill: the teacher's input '%s' %s: the student feeds only 'tokens' %s", s->name,
                              ir_type_str(s->dtype, &s->shape, a, sizeof a),
                              ir_type_str(tokens->dtype, &tokens->shape, c, sizeof c));
                b->ok = false;
                break;
            }
            map[i] = tokens;
            continue;
        }
        if (s->n_in > 64)
            ir_unreachable("distill: an op with more than 64 operands");
        for (int k = 0; k < s->n_in; k++)
            in[k] = map[s->in[k]->id];
        ir_node *n;
        if (s->op == OP_param) { /* a fixed value the trainer binds: no gradient */
            char name[600];
            snprintf(name, sizeof name, "teacher/%s", s->name);
            n = ir_node_add(b->g, OP_input, 0, NULL, s->loc);
            n->dtype = s->dtype;
            n->shape = s->shape;
            n->name = ir_graph_strdup(b->g, name);
            fin(b, n);
        } else
            n = ir_node_copy(b->g, s, in);
        n->stage = -1;
        n->shard.present = false;
        map[i] = n;
    }
    ir_node *out = map[logits->id];
    free(need);
    free(map);
    return out;
}

bool pass_distill(ir_graph *g, const ir_graph *teacher, double alpha, double temperature, ir_diag *d)
{
    ir_node *loss = find(g, OP_output, "loss"), *tokens = find(g, OP_input, "tokens");
    const ir_node *tlog = find(teacher, OP_output, "logits");
    if (!loss || loss->in[0]->op != OP_cross_entropy || !tokens) {
        ir_diag_error(d, -1, 0, 0, "distill: the student needs an input 'tokens' and an output 'loss' = "
                      "cross_entropy(logits, targets)");
        return false;
    }
    if (!tlog) {
        ir_diag_error(d, -1, 0, 0, "distill: the teacher has no output 'logits'");
        return false;
    }
    if (!(alpha >= 0 && alpha <= 1) || !(temperature > 0)) {
        ir_diag_error(d, -1, 0, 0, "distill: alpha must be in [0, 1] and the temperature positive, got %g and %g",
                      alpha, temperature);
        return false;
    }
    ir_node *ce = loss->in[0], *zs = ce->in[0];
    const ir_node *zt0 = tlog->in[0];
    if (!ir_shape_eq(&zs->shape, &zt0->shape) || zs->dtype != zt0->dtype) {
        char a[64], c[64];
        ir_diag_error(d, -1, 0, 0, "distill: the teacher's logits are %s, the student's %s",
                      ir_type_str(zt0->dtype, &zt0->shape, a, sizeof a), ir_type_str(zs->dtype, &zs->shape, c, sizeof c));
        return false;
    }
    builder b = {g, loss->loc, d, true};
    /* the new nodes go after the student's; the output "loss" moves to the end */
    ir_node *zt = copy_teacher(&b, teacher, zt0, tokens);
    if (!b.ok)
        return false;
    ir_node *inv_t = scalar(&b, 1.0 / temperature);
    ir_node *a = op2(&b, OP_mul, zs, inv_t), *bt = op2(&b, OP_mul, zt, inv_t);
    ir_node *pt = op1(&b, OP_softmax, bt);
    ir_node *lpt = op2(&b, OP_sub, bt, logsumexp(&b, bt));
    ir_node *kl_pos = op2(&b, OP_add, reduce(&b, OP_sum, op2(&b, OP_mul, pt, op2(&b, OP_sub, lpt, a)), false),
                          logsumexp(&b, a));
    ir_node *kl = reduce(&b, OP_mean, kl_pos, true);
    ir_node *total = op2(&b, OP_add, op2(&b, OP_mul, scalar(&b, alpha), ce),
                         op2(&b, OP_mul, scalar(&b, (1 - alpha) * temperature * temperature), kl));
    if (!b.ok)
        return false;
    /* the output "loss" now reads the total; it moves after it (definition order) */
    loss->in[0] = total;
    int at = loss->id;
    for (int i = at; i + 1 < g->n_nodes; i++) {
        g->nodes[i] = g->nodes[i + 1];
        g->nodes[i]->id = i;
    }
    g->nodes[g->n_nodes - 1] = loss;
    loss->id = g->n_nodes - 1;
    return true;
}
