/* kv_cache.c — rewrites a causal language model into its prefill or one-token decode graph
 * with per-layer K/V caches (kv_cache.h).
 *
 * Positions: the model reads its positions either as slice(TABLE, 0, 0, seq) of a param (GPT-2's
 * wpe) or as arange(seq) (an iota [seq], llama's rope positions). Decode replaces them with the
 * run-time position: embedding(TABLE, position) and the position itself. Prefill keeps them
 * (it starts at position 0, written as a const).
 * Caches: for each attention with causal = 1 and no mask (self-attention, q/k/v of length seq),
 * k and v go through cache_write into the layer's cache inputs; prefill's attention then reads
 * the first seq rows of the written caches, decode's the whole caches under the mask input.
 * New nodes are appended, then the graph is put back in topological order (operands first).
 */
#include "passes/kv_cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"
#include "ir/shape.h"

static ir_node *node_like(ir_graph *g, ir_opcode op, int n_in, ir_node *const *in, const ir_node *like)
{
    ir_node *n = ir_node_add(g, op, n_in, in, like->loc);
    n->stage = like->stage;
    n->scope = like->scope;
    return n;
}

static ir_node *input(ir_graph *g, const char *name, ir_dtype dt, ir_shape s, const ir_node *like)
{
    ir_node *n = node_like(g, OP_input, 0, NULL, like);
    n->name = ir_graph_strdup(g, name);
    n->dtype = dt;
    n->shape = s;
    n->stage = -1;
    n->scope = NULL;
    return n;
}

static void infer(ir_node *n, ir_diag *d)
{
    if (!ir_infer(n, d))
        ir_unreachable("kv_cache: built a node that does not infer");
}

bool pass_kv_drop_optional(ir_graph *g, ir_diag *d)
{
    (void)d;
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead), any = false;
    if (!dead)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        dead[i] = n->op == OP_input && n->optional;
        for (int k = 0; k < n->n_in; k++)
            dead[i] |= dead[n->in[k]->id];
        any |= dead[i];
    }
    if (any)
        ir_graph_compact(g, dead);
    free(dead);
    return true;
}

/* Replaces every use of old by new (but not in new itself). */
static void replace_uses(ir_graph *g, const ir_node *old, ir_node *new)
{
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = g->nodes[i];
        for (int k = 0; n != new && k < n->n_in; k++)
            if (n->in[k] == old)
                n->in[k] = new;
    }
}

/* Puts operands before users, keeping the existing order otherwise; renumbers ids. */
static void visit(ir_node *n, bool *seen, ir_node **order, int *k)
{
    if (seen[n->id])
        return;
    seen[n->id] = true;
    for (int i = 0; i < n->n_in; i++)
        visit(n->in[i], seen, order, k);
    order[(*k)++] = n;
}

static void topo_sort(ir_graph *g)
{
    int nn = g->n_nodes, k = 0;
    bool *seen = calloc((size_t)nn + 1, sizeof *seen);
    ir_node **order = malloc(sizeof *order * ((size_t)nn + 1));
    if (!seen || !order)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        visit(g->nodes[i], seen, order, &k);
    for (int i = 0; i < nn; i++) {
        g->nodes[i] = order[i];
        g->nodes[i]->id = i;
    }
    free(seen);
    free(order);
}

static bool is_self_attention(const ir_node *n)
{
    return n->op == OP_attention && n->n_in == 3 && ir_attr_int(n, "causal") != 0 &&
           n->in[0]->shape.dim[2] == n->in[1]->shape.dim[2];
}

/* slice(param, axis 0, 0, T): a position table read for positions [0, T). */
static bool is_position_slice(const ir_node *n, int64_t T)
{
    if (n->op != OP_slice || n->in[0]->op != OP_param || n->shape.rank != 2)
        return false;
    int64_t lo, hi;
    const ir_shape *xs = &n->in[0]->shape;
    ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), xs->dim[0], &lo, &hi);
    return ir_axis_norm(ir_attr_int(n, "axis"), 2) == 0 && lo == 0 && hi == T;
}

static bool is_position_iota(const ir_node *n, int64_t T)
{
    return n->op == OP_iota && n->shape.rank == 1 && n->shape.dim[0] == T && ir_dtype_is_int(n->dtype);
}

/* Prefill needs the next-token logits of the last position only: an output "logits" that is a
 * matmul over [B, T, C] rows gets its rows cut to the last one first (for GPT-2 small at
 * T = 1000 the LM head over every row would cost about as much as the rest of the model). */
static void last_position_logits(ir_graph *g, int64_t T, ir_diag *d)
{
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *o = g->nodes[i], *mm = o->op == OP_output ? o->in[0] : NULL;
        if (!mm || strcmp(o->name, "logits") != 0 || mm->op != OP_matmul || mm->shape.rank != 3 ||
            mm->shape.dim[1] != T || T == 1 || ir_attr_int(mm, "transpose_a") != 0 || mm->in[0]->shape.rank != 3)
            continue;
        ir_node *rows = node_like(g, OP_slice, 1, &mm->in[0], mm);
        ir_attr_set_int(rows, "axis", 1);
        ir_attr_set_int(rows, "start", T - 1);
        ir_attr_set_int(rows, "end", T);
        infer(rows, d);
        ir_node *ops[2] = {rows, mm->in[1]};
        ir_node *last = node_like(g, OP_matmul, 2, ops, mm);
        ir_attr_set_int(last, "transpose_b", ir_attr_int(mm, "transpose_b"));
        infer(last, d);
        o->in[0] = last;
    }
}

bool pass_kv_cache(ir_graph *g, pass_kv_mode mode, int64_t ctx, ir_diag *d)
{
    pass_kv_drop_optional(g, d);
    int nn = g->n_nodes;
    ir_node *first = NULL;
    int64_t T = -1;
    for (int i = 0; i < nn; i++)
        if (is_self_attention(g->nodes[i])) {
            first = first ? first : g->nodes[i];
            if (T < 0)
                T = g->nodes[i]->in[0]->shape.dim[2];
        }
    if (!first) {
        ir_diag_error(d, -1, 0, 0, "kv_cache: graph '%s' has no causal self-attention to cache", g->name);
        return false;
    }
    if (mode == PASS_KV_DECODE && T != 1) {
        ir_diag_error(d, -1, 0, 0, "kv_cache: the decode graph must be built with seq = 1, got %" PRId64, T);
        return false;
    }
    /* positions: tables sliced [0, T), or arange(T) */
    ir_node *pos = NULL;
    int n_pos = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *n = g->nodes[i];
        bool table = is_position_slice(n, T), iota = is_position_iota(n, T);
        if (!table && !iota)
            continue;
        n_pos++;
        if (table && ctx == 0)
            ctx = n->in[0]->shape.dim[0];
    }
    if (ctx <= 0) {
        ir_diag_error(d, -1, 0, 0,
                      "kv_cache: cannot tell the context size: graph '%s' reads no position table "
                      "(a slice [0, seq) of a param along axis 0)",
                      g->name);
        return false;
    }
    if (n_pos == 0 && mode == PASS_KV_DECODE) {
        ir_diag_error(d, -1, 0, 0, "kv_cache: graph '%s' has no positions to advance (no position table or arange(seq))",
                      g->name);
        return false;
    }
    if (T > ctx) {
        ir_diag_error(d, -1, 0, 0, "kv_cache: %" PRId64 " positions exceed the context of %" PRId64, T, ctx);
        return false;
    }
    if (mode == PASS_KV_DECODE) {
        pos = input(g, "cache.position", DT_I32, (ir_shape){1, {1}}, first);
        for (int i = 0; i < nn; i++) {
            ir_node *n = g->nodes[i], *r;
            if (is_position_slice(n, T)) {
                ir_node *ops[2] = {n->in[0], pos};
                r = node_like(g, OP_embedding, 2, ops, n);
            } else if (is_position_iota(n, T)) {
                r = node_like(g, OP_cast, 1, &pos, n);
                ir_attr_set_dtype(r, "to", n->dtype);
            } else
                continue;
            infer(r, d);
            replace_uses(g, n, r);
        }
    } else {
        pos = node_like(g, OP_const, 0, NULL, first);
        pos->dtype = DT_I32;
        pos->shape = (ir_shape){1, {1}};
        pos->stage = -1;
    }
    ir_node *mask = NULL;
    if (mode == PASS_KV_DECODE)
        mask = input(g, "cache.mask", first->dtype, (ir_shape){2, {1, ctx}}, first);
    int layer = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *a = g->nodes[i];
        if (!is_self_attention(a))
            continue;
        ir_node *kv[2];
        for (int j = 0; j < 2; j++) {
            ir_node *x = a->in[1 + j];
            ir_shape cs = x->shape;
            cs.dim[2] = ctx;
            char name[64];
            snprintf(name, sizeof name, "cache.%c.%d", j ? 'v' : 'k', layer);
            ir_node *ops[3] = {input(g, name, x->dtype, cs, a), x, pos};
            kv[j] = node_like(g, OP_cache_write, 3, ops, a);
            infer(kv[j], d);
        }
        layer++;
        if (mode == PASS_KV_PREFILL) {
            for (int j = 0; j < 2; j++) {
                ir_node *s = node_like(g, OP_slice, 1, &kv[j], a);
                ir_attr_set_int(s, "axis", 2);
                ir_attr_set_int(s, "start", 0);
                ir_attr_set_int(s, "end", T);
                infer(s, d);
                a->in[1 + j] = s;
            }
        } else {
            ir_node *ops[4] = {a->in[0], kv[0], kv[1], mask};
            ir_node *r = node_like(g, OP_attention, 4, ops, a);
            ir_attr_set_int(r, "causal", 0);
            ir_attr_set_float(r, "scale", ir_attr_float(a, "scale"));
            infer(r, d);
            replace_uses(g, a, r);
        }
    }
    if (mode == PASS_KV_PREFILL)
        last_position_logits(g, T, d);
    topo_sort(g);
    return pass_dce(g, d); /* the replaced attentions and positions */
}

bool pass_kv_prefill(ir_graph *g, ir_diag *d) { return pass_kv_cache(g, PASS_KV_PREFILL, 0, d); }
bool pass_kv_decode(ir_graph *g, ir_diag *d) { return pass_kv_cache(g, PASS_KV_DECODE, 0, d); }

int64_t pass_kv_context(const ir_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input && n->name && strcmp(n->name, "cache.k.0") == 0)
            return n->shape.dim[2];
    }
    return 0;
}

int pass_kv_layers(const ir_graph *g)
{
    int layers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        layers += n->op == OP_input && n->name && strncmp(n->name, "cache.k.", 8) == 0;
    }
    return layers;
}
