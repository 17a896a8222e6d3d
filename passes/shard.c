/* shard.c — the `shard` pass: rewrites a graph into one rank's local graph for a device mesh
 * (docs/cluster.md, "Sharding").
 *
 * Every value gets a layout per mesh axis (pp is the pipeline pass's): replicated (R), sharded
 * along one dim (S: this rank holds block `coord` of it; with K blocks the dim is K equal blocks
 * each split over the axis, as GPT-2's fused QKV columns need), or partial (P: the full value
 * is the sum over the axis). Params start from their @shard annotations (or from the automatic
 * Megatron layout when the model has none), inputs are split along dim 0 over `dp`, the rest
 * propagates op by op: column-parallel matmuls give S outputs, row-parallel ones P, heads stay
 * split through reshapes, transposes, rope and attention. Where an op cannot take an
 * operand's layout, the operand is converted: allgather (S -> R), allreduce (P -> R), a local
 * slice (R -> S), reduce-scatter (P -> S). Under sequence parallelism (pass_mesh.seq_parallel)
 * an elementwise op meeting a partial sum of activations over tp takes it reduce-scattered along
 * the sequence (Megatron-SP): the residual stream, norms and bias adds stay split along the
 * sequence, and a column-parallel GEMM gathers its input. Outputs are made replicated, so every rank ends
 * with the full outputs. The result is a plain graph of local shapes plus communication ops;
 * sharded params and inputs keep their full name with a slice suffix (mesh.h) so a rank loads
 * its part of the full checkpoint.
 *
 * Blocks are found by running the rewrite twice: a slice of a sharded dim that takes whole
 * aligned blocks asks for that many blocks on the params the value came from (classes joined
 * by union-find where sharded values meet), and the second run shards the params so.
 */
#include "passes/mesh.h"
#include "passes/pass.h"
#include "ir/shape.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { L_R, L_S, L_P };

typedef struct {
    int8_t kind;
    int8_t dim;      /* L_S: the sharded dim */
    int16_t blocks;  /* L_S: K */
    int cls;         /* L_S: union-find class of the params it came from, -1 none */
} lay;

/* A value of the rank's graph: the local node and its layout per mesh axis; `full` is the
 * source node (its shape is the full shape). */
typedef struct {
    ir_node *v;
    lay l[IR_MAX_MESH_AXES];
    const ir_node *full;
} val;

/* A partial sum's reduce-scatter (from -> to, over axis along dim), made once for the ops that
 * read it split alike. */
typedef struct {
    ir_node *from, *to;
    int axis, dim;
} scatter_memo;

typedef struct {
    const pass_mesh *m;
    const ir_graph *src;
    ir_graph *dst;
    ir_diag *d;
    val *vals;        /* per source node */
    ir_node **repl;   /* per source node: its fully replicated local value, once made */
    int *parent;      /* union-find over source node ids */
    int *blocks;      /* per class root: blocks asked for */
    bool *table;      /* per source node: the table of an embedding (a vocabulary) */
    bool retry, ok;
    bool seq_axis;    /* the rule's axis is tp under sequence parallelism */
    scatter_memo *scattered; /* per source node: its last reduce-scatter */
    ir_node **regathered;    /* sequence parallel, per forward source node: gathered again for
                                the backward */
    bool note;        /* report notes (on the final run only) */
    int64_t batch;    /* dim 0 of the graph's inputs (split over dp), 0: none */
} shard_ctx;

static int find(shard_ctx *c, int x)
{
    while (c->parent[x] != x)
        x = c->parent[x] = c->parent[c->parent[x]];
    return x;
}

static void unite(shard_ctx *c, int a, int b)
{
    if (a < 0 || b < 0)
        return;
    a = find(c, a);
    b = find(c, b);
    if (a != b) {
        c->parent[b] = a;
        if (c->blocks[b] > c->blocks[a])
            c->blocks[a] = c->blocks[b];
    }
}

static bool sharded_axis(const shard_ctx *c, int a) { return c->m->size[a] > 1 && strcmp(c->m->axis[a], "pp") != 0; }

static int coord(const shard_ctx *c, int a) { return pass_mesh_coord(c->m, c->m->rank, a); }

static lay R(void) { return (lay){L_R, 0, 1, -1}; }
static lay S(int dim, int blocks, int cls) { return (lay){L_S, (int8_t)dim, (int16_t)blocks, cls}; }
static lay P(void) { return (lay){L_P, 0, 1, -1}; }
static bool same(lay a, lay b) { return a.kind == b.kind && (a.kind != L_S || (a.dim == b.dim && a.blocks == b.blocks)); }

/* ---- emitting nodes ---- */

static ir_node *emit(shard_ctx *c, ir_opcode op, int n_in, ir_node **in, const ir_node *like)
{
    ir_node *n = ir_node_add(c->dst, op, n_in, in, like->loc);
    n->stage = like->stage;
    n->backward = like->backward;
    n->scope = like->scope ? ir_graph_strdup(c->dst, like->scope) : NULL;
    return n;
}

static ir_node *finish(shard_ctx *c, ir_node *n)
{
    if (!ir_infer(n, c->d))
        ir_unreachable("shard: a rewritten node does not infer");
    return n;
}

static ir_node *comm(shard_ctx *c, ir_opcode op, ir_node *x, int a, int dim, const ir_node *like)
{
    ir_node *n = emit(c, op, 1, &x, like);
    ir_attr_set_str(c->dst, n, "axis", c->m->axis[a]);
    ir_attr_set_int(n, "ranks", c->m->size[a]);
    if (op != OP_allreduce)
        ir_attr_set_int(n, "dim", dim);
    return finish(c, n);
}

static ir_node *slice(shard_ctx *c, ir_node *x, int axis, int64_t lo, int64_t hi, const ir_node *like)
{
    ir_node *n = emit(c, OP_slice, 1, &x, like);
    ir_attr_set_int(n, "axis", axis);
    ir_attr_set_int(n, "start", lo);
    ir_attr_set_int(n, "end", hi);
    return finish(c, n);
}

static ir_node *reshape(shard_ctx *c, ir_node *x, const ir_shape *s, const ir_node *like)
{
    ir_node *n = emit(c, OP_reshape, 1, &x, like);
    ir_attr_set_ints(c->dst, n, "shape", s->rank, s->dim);
    return finish(c, n);
}

/* ---- layout conversions on one axis ---- */

/* S(d, K) -> R: an allgather along d; with K blocks the gathered dim is ordered (rank, block,
 * part) and is reordered to (block, rank, part). */
static void gather(shard_ctx *c, val *x, int a)
{
    lay l = x->l[a];
    int T = c->m->size[a];
    ir_node *g = comm(c, OP_allgather, x->v, a, l.dim, x->full);
    if (l.blocks > 1) {
        ir_shape s = g->shape, split;
        int64_t part = s.dim[l.dim] / T / l.blocks;
        split.rank = s.rank + 2;
        for (int i = 0, j = 0; i < s.rank; i++) {
            if (i == l.dim) {
                split.dim[j++] = T;
                split.dim[j++] = l.blocks;
                split.dim[j++] = part;
            } else {
                split.dim[j++] = s.dim[i];
            }
        }
        ir_node *r = reshape(c, g, &split, x->full);
        int64_t perm[IR_MAX_RANK];
        for (int i = 0; i < split.rank; i++)
            perm[i] = i;
        perm[l.dim] = l.dim + 1;
        perm[l.dim + 1] = l.dim;
        ir_node *t = emit(c, OP_transpose, 1, &r, x->full);
        ir_attr_set_ints(c->dst, t, "perm", split.rank, perm);
        finish(c, t);
        g = reshape(c, t, &s, x->full);
    }
    x->v = g;
    x->l[a] = R();
}

/* R -> S(d, K): this rank's part, one slice per block joined by a concat. */
static void local_slice(shard_ctx *c, val *x, int a, lay want)
{
    int T = c->m->size[a], t = coord(c, a);
    int64_t N = x->v->shape.dim[want.dim], block = N / want.blocks, part = block / T;
    ir_node *parts[64];
    int k = want.blocks < 64 ? want.blocks : 64;
    for (int j = 0; j < k; j++)
        parts[j] = slice(c, x->v, want.dim, j * block + t * part, j * block + (t + 1) * part, x->full);
    if (k == 1) {
        x->v = parts[0];
    } else {
        ir_node *cat = emit(c, OP_concat, k, parts, x->full);
        ir_attr_set_int(cat, "axis", want.dim);
        x->v = finish(c, cat);
    }
    x->l[a] = want;
}

/* Converts x's layout on axis a to want. */
static void convert(shard_ctx *c, val *x, int a, lay want)
{
    lay have = x->l[a];
    if (same(have, want))
        return;
    if (have.kind == L_P && want.kind == L_S && want.blocks == 1 && x->v->shape.dim[want.dim] % c->m->size[a] == 0) {
        scatter_memo *s = &c->scattered[x->full->id];
        if (!(s->from == x->v && s->axis == a && s->dim == want.dim))
            *s = (scatter_memo){x->v, comm(c, OP_reduce_scatter, x->v, a, want.dim, x->full), a, want.dim};
        x->v = s->to;
        x->l[a] = want;
        return;
    }
    if (have.kind == L_P) {
        x->v = comm(c, OP_allreduce, x->v, a, 0, x->full);
        x->l[a] = R();
    } else if (have.kind == L_S) {
        gather(c, x, a);
    }
    if (want.kind == L_S)
        local_slice(c, x, a, want);
}

/* Sequence parallel: forward value src, split along the sequence, gathered again for backward
 * node n (Megatron-SP's backward allgather: the forward's gathered copy dies with the forward
 * GEMM that read it, only the split one is kept for the backward); once per value. */
static ir_node *regathered(shard_ctx *c, const ir_node *src, const ir_node *n)
{
    if (c->regathered[src->id])
        return c->regathered[src->id];
    val x = c->vals[src->id];
    x.full = n;
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a))
            convert(c, &x, a, R());
    return c->regathered[src->id] = x.v;
}

/* Whether backward node n reading forward value src replicated gathers it again (above). */
static bool regather(const shard_ctx *c, const ir_node *n, const ir_node *src)
{
    if (!c->m->seq_parallel || !n->backward || src->backward)
        return false;
    const val *x = &c->vals[src->id];
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a) && x->l[a].kind == L_S && strcmp(c->m->axis[a], "tp") == 0 &&
            x->l[a].dim == src->shape.rank - 2)
            return true;
    return false;
}

/* The operand as a fully replicated value (cached per source node). */
static ir_node *replicated(shard_ctx *c, const ir_node *src)
{
    if (c->repl[src->id])
        return c->repl[src->id];
    val x = c->vals[src->id];
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a))
            convert(c, &x, a, R());
    return c->repl[src->id] = x.v;
}

/* ---- per-op rules: given the operands' layouts on one axis, what each operand must be and
 * what the result is ---- */

typedef struct {
    const ir_node *n;
    lay in[8];
    lay want[8];
    lay out;
    int T;
    int64_t slice_lo, slice_hi; /* slice: local bounds when the sliced dim is sharded */
    bool vocab;                 /* embedding: vocabulary-parallel lookup (partial sums) */
    bool rows;                  /* cross_entropy(_grad) on this rank's rows (xent_rows) */
    bool vsplit;                /* cross_entropy(_grad) over this rank's vocabulary (xent_vocab) */
} rule;

static void all_replicated(rule *r)
{
    for (int k = 0; k < r->n->n_in && k < 8; k++)
        r->want[k] = R();
    r->out = R();
}

/* Keeps every operand as it is and gives the result lay l. */
static void keep(rule *r, lay l)
{
    for (int k = 0; k < r->n->n_in && k < 8; k++)
        r->want[k] = r->in[k];
    r->out = l;
}

static bool divisible(int64_t dim, const lay *l, int T) { return dim % ((int64_t)T * l->blocks) == 0; }

/* Elementwise with NumPy broadcasting: operands sharded on the same result dim stay; a
 * replicated operand with that dim full is sliced; a partial sum survives add/sub of partials. */
static void rule_elementwise(shard_ctx *c, rule *r)
{
    const ir_node *n = r->n;
    int rank = n->shape.rank, e = -1;
    lay pick = R();
    bool all_p = true, any_p = false;
    for (int k = 0; k < n->n_in; k++) {
        lay l = r->in[k];
        all_p &= l.kind == L_P;
        any_p |= l.kind == L_P;
        if (l.kind == L_S && e < 0) {
            e = l.dim + rank - n->in[k]->shape.rank;
            pick = l;
        }
    }
    r->out = R();
    if (any_p && all_p && (n->op == OP_add || n->op == OP_sub || n->op == OP_neg)) {
        keep(r, P());
        return;
    }
    /* sequence parallel: the partial sum reduce-scattered along the sequence (rank - 2) */
    if (any_p && e < 0 && c->seq_axis && rank >= 3 && n->shape.dim[rank - 2] % r->T == 0) {
        e = rank - 2;
        pick = S(e, 1, -1);
    }
    for (int k = 0; k < n->n_in; k++) {
        lay l = r->in[k];
        const ir_shape *s = &n->in[k]->shape;
        int mine = e < 0 ? -1 : e - (rank - s->rank);
        if (e < 0) {
            r->want[k] = R();
        } else if (l.kind == L_S && l.dim == mine && l.blocks == pick.blocks) {
            r->want[k] = l;
            unite(c, pick.cls, l.cls);
        } else if (mine >= 0 && s->dim[mine] != 1) {
            r->want[k] = S(mine, pick.blocks, pick.cls);
        } else {
            r->want[k] = R();
        }
    }
    if (e >= 0)
        r->out = S(e, pick.blocks, pick.cls >= 0 ? find(c, pick.cls) : -1);
}

/* reshape: a sharded dim maps to the result dim that starts at the same element stride when
 * one of the two is a multiple of the other (a split keeps the shard on its outermost part, a
 * merge keeps it when the sharded dim is the outermost merged one); a dim that stays as it is
 * (only others merge or split) keeps its blocks. */
static void rule_reshape(rule *r)
{
    lay l = r->in[0];
    if (l.kind != L_S) {
        keep(r, l);
        return;
    }
    const ir_shape *xs = &r->n->in[0]->shape, *os = &r->n->shape;
    int64_t before = 1, nd = xs->dim[l.dim];
    for (int i = 0; i < l.dim; i++)
        before *= xs->dim[i];
    int64_t prefix = 1;
    for (int e = 0; e < os->rank; e++) {
        if (prefix == before && os->dim[e] == nd && nd != 1) { /* the dim itself stays: blocks too */
            keep(r, S(e, l.blocks, l.cls));
            return;
        }
        if (prefix == before && os->dim[e] != 1 && l.blocks == 1 && os->dim[e] % r->T == 0 &&
            (nd % os->dim[e] == 0 || os->dim[e] % nd == 0)) {
            keep(r, S(e, 1, l.cls));
            return;
        }
        prefix *= os->dim[e];
        if (prefix > before)
            break;
    }
    all_replicated(r);
}

static void rule_transpose(rule *r)
{
    lay l = r->in[0];
    if (l.kind == L_S) {
        const ir_attr *perm = ir_attr_get(r->n, "perm");
        int from = l.dim;
        for (int i = 0; i < perm->n; i++)
            if (ir_axis_norm(perm->ints[i], perm->n) == from)
                l.dim = (int8_t)i;
    }
    keep(r, l);
}

/* slice: along another dim the shard stays; along the sharded dim only the full range or one
 * whole block (which, the first time, asks the params for blocks: see the file comment). */
static void rule_slice(shard_ctx *c, rule *r)
{
    lay l = r->in[0];
    const ir_node *n = r->n;
    int axis = ir_axis_norm(ir_attr_int(n, "axis"), n->shape.rank);
    if (l.kind != L_S || l.dim != axis) {
        keep(r, l);
        return;
    }
    int64_t N = n->in[0]->shape.dim[axis], lo, hi;
    ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), N, &lo, &hi);
    int64_t len = hi - lo;
    if (lo == 0 && hi == N) {
        keep(r, l);
        r->slice_lo = 0;
        r->slice_hi = N / r->T;
        return;
    }
    if (l.blocks > 1 && len == N / l.blocks && lo % len == 0) {
        int64_t part = len / r->T;
        keep(r, S(axis, 1, -1));
        r->slice_lo = lo / len * part;
        r->slice_hi = r->slice_lo + part;
        return;
    }
    if (l.blocks == 1 && l.cls >= 0 && len > 0 && N % len == 0 && lo % len == 0 && len % r->T == 0) {
        int root = find(c, l.cls);
        if (c->blocks[root] < N / len) {
            c->blocks[root] = (int)(N / len);
            c->retry = true;
        }
    }
    all_replicated(r);
}

/* concat: along another dim the shard stays (replicated parts are sliced to match); along the
 * sharded dim, parts that are whole
 * blocks of one block size b, each split over the axis blockwise (or replicated: sliced
 * locally), make N/b blocks — autodiff's gradient of a slice of GPT-2's fused QKV (the part's
 * gradient between zeros) keeps the heads split. */
static void rule_concat(rule *r)
{
    const ir_node *n = r->n;
    int axis = ir_axis_norm(ir_attr_int(n, "axis"), n->shape.rank);
    lay l = R();
    for (int k = 0; k < n->n_in && l.kind == L_R; k++)
        l = r->in[k].kind == L_S && r->in[k].dim != axis ? r->in[k] : l;
    bool ok = l.kind == L_S && n->n_in <= 8;
    for (int k = 0; ok && k < n->n_in; k++) /* the others split alike, or replicated (sliced) */
        ok = same(r->in[k], l) || r->in[k].kind == L_R;
    all_replicated(r);
    if (ok) {
        for (int k = 0; k < n->n_in; k++)
            r->want[k] = l;
        r->out = l;
        return;
    }
    int64_t b = 0;
    for (int k = 0; k < n->n_in; k++)
        for (int64_t x = n->in[k]->shape.dim[axis], y = b; ; ) { /* b = gcd of the part sizes */
            if (!y) {
                b = x;
                break;
            }
            int64_t t = x % y;
            x = y;
            y = t;
        }
    int64_t N = n->shape.dim[axis];
    bool blocks = n->n_in > 1 && n->n_in <= 8 && b > 0 && b % r->T == 0 && N / b <= 64, any = false;
    for (int k = 0; blocks && k < n->n_in; k++) {
        lay lk = r->in[k];
        int m = (int)(n->in[k]->shape.dim[axis] / b);
        blocks = m > 0 && (lk.kind == L_R || (lk.kind == L_S && lk.dim == axis && lk.blocks == m));
        any |= lk.kind == L_S;
        r->want[k] = S(axis, m, -1);
    }
    if (!blocks || !any) {
        all_replicated(r);
        return;
    }
    r->out = S(axis, (int)(N / b), -1);
}

static void rule_broadcast(rule *r)
{
    lay l = r->in[0];
    const ir_shape *xs = &r->n->in[0]->shape, *os = &r->n->shape;
    if (l.kind == L_S) {
        int e = l.dim + os->rank - xs->rank;
        if (xs->dim[l.dim] == os->dim[e]) {
            l.dim = (int8_t)e;
            keep(r, l);
        } else {
            all_replicated(r);
        }
        return;
    }
    keep(r, l);
}

/* sum/mean/max: a shard on a kept dim stays (renumbered); a sum over the sharded dim is a
 * partial sum (the batch's rows over dp: a bias's gradient); a partial sum survives sum/mean. */
static void rule_reduce(rule *r)
{
    lay l = r->in[0];
    const ir_node *n = r->n;
    bool mask[IR_MAX_RANK];
    if (!ir_reduce_mask(n, n->in[0]->shape.rank, mask)) {
        all_replicated(r);
        return;
    }
    if (l.kind == L_P) {
        if (n->op == OP_max)
            all_replicated(r);
        else
            keep(r, l);
        return;
    }
    if (l.kind == L_S && mask[l.dim] && n->op == OP_sum) { /* each rank sums its part */
        keep(r, P());
        return;
    }
    if (l.kind == L_S && !mask[l.dim]) {
        int dim = l.dim;
        if (!ir_attr_int(n, "keepdim"))
            for (int i = 0; i < l.dim; i++)
                dim -= mask[i];
        l.dim = (int8_t)dim;
        keep(r, l);
        return;
    }
    all_replicated(r);
}

/* cross_entropy and cross_entropy_grad with the logits' rows split over dp (a dim but the
 * last): each rank takes its rows and their targets (the targets split along the same dim), and
 * xent_rows makes the local mean a partial sum of the global one. With the vocabulary (the last
 * dim) split, on any axis: xent_vocab, Megatron's vocabulary-parallel cross entropy, instead of
 * gathering the logits. Other layouts: replicated operands. */
static bool xent_split(shard_ctx *c, rule *r, int a)
{
    lay l = r->in[0];
    const ir_node *n = r->n;
    all_replicated(r);
    if (l.kind != L_S || l.blocks != 1 || (n->op == OP_cross_entropy_grad && r->in[2].kind == L_P))
        return false;
    if (l.dim == n->in[0]->shape.rank - 1) { /* the vocabulary split (tp's head): xent_vocab */
        r->want[0] = l;
        r->out = n->op == OP_cross_entropy ? R() : l;
        r->vsplit = true;
        return true;
    }
    if (strcmp(c->m->axis[a], "dp") != 0)
        return false;
    r->want[0] = l;
    r->want[1] = S(l.dim, 1, -1);
    r->out = n->op == OP_cross_entropy ? P() : l;
    r->rows = true;
    return true;
}

/* softmax, layernorm, rmsnorm: rows stay sharded along any dim but the last; weights replicated.
 * cross_entropy: xent_split. */
static void rule_row(shard_ctx *c, rule *r, int a)
{
    lay l = r->in[0];
    const ir_node *n = r->n;
    if (n->op == OP_cross_entropy) {
        xent_split(c, r, a);
        return;
    }
    int rank = n->in[0]->shape.rank;
    if (l.kind == L_P && c->seq_axis && rank >= 3 && n->in[0]->shape.dim[rank - 2] % r->T == 0)
        l = S(rank - 2, 1, -1); /* sequence parallel: a partial sum's rows reduce-scattered */
    if (l.kind == L_S && l.dim != rank - 1) {
        all_replicated(r);
        r->want[0] = l;
        r->out = l;
        return;
    }
    all_replicated(r);
}

/* layernorm_grad, rmsnorm_grad (x, weight, dy): with rows split along a dim but the last (the
 * batch over dp, the sequence over tp), the input gradient is split the same way and the
 * weight's gradient, a sum over the rows, is a partial sum. Under sequence parallelism a
 * partial dy is reduce-scattered to x's rows. */
static void rule_norm_grad(shard_ctx *c, rule *r)
{
    lay l = r->in[0];
    const ir_node *n = r->n;
    int rank = n->in[0]->shape.rank;
    if (l.kind == L_P && c->seq_axis && rank >= 3 && n->in[0]->shape.dim[rank - 2] % r->T == 0)
        l = S(rank - 2, 1, -1); /* the forward's reduce-scatter of x, made once (scatter_memo) */
    all_replicated(r);
    if (l.kind != L_S || l.dim == n->in[0]->shape.rank - 1 || (r->in[2].kind == L_P && !c->seq_axis))
        return;
    r->want[0] = l;
    r->want[2] = l;
    r->out = ir_attr_int(n, "wrt") == 0 ? l : P();
}

/* embedding_grad (dy, ids): with the rows split (the batch over dp), each rank scatters its
 * rows: a partial sum of the table's gradient. Not the sequence over tp: the table's gradient
 * (a vocabulary) would be reduce-scattered whole; dy is gathered instead (Megatron-SP). */
static void rule_embedding_grad(shard_ctx *c, rule *r)
{
    lay ld = r->in[0], li = r->in[1];
    all_replicated(r);
    if (!c->seq_axis && ld.kind == L_S && ld.dim < r->n->in[0]->shape.rank - 1 && ld.blocks == 1 &&
        (li.kind == L_R || (li.kind == L_S && li.dim == ld.dim && li.blocks == 1))) {
        r->want[0] = ld;
        r->want[1] = ld;
        r->out = P();
    }
}

/* matmul: column-parallel (b sharded along N), row-parallel (both along K: partial sums),
 * batch/row split of a (data parallel), partial sums times a replicated operand. */
static void rule_matmul(shard_ctx *c, rule *r)
{
    const ir_node *n = r->n;
    const ir_node *A = n->in[0], *B = n->in[1];
    int ra = A->shape.rank, rb = B->shape.rank, ro = n->shape.rank;
    bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
    int aM = ta ? ra - 1 : ra - 2, aK = ta ? ra - 2 : ra - 1;
    int bK = tb ? rb - 1 : rb - 2, bN = tb ? rb - 2 : rb - 1;
    lay la = r->in[0], lb = r->in[1];
    all_replicated(r);
    if (la.kind == L_P && lb.kind == L_R) {
        keep(r, P());
        return;
    }
    if (lb.kind == L_P && la.kind == L_R) {
        keep(r, P());
        return;
    }
    if (la.kind == L_P || lb.kind == L_P)
        return;
    bool aS = la.kind == L_S, bS = lb.kind == L_S;
    /* both split along K the same way (K blocks each: the same indices pair up) */
    if (aS && la.dim == aK && (!bS || (lb.dim == bK && lb.blocks == la.blocks))) {
        r->want[0] = la;
        r->want[1] = S(bK, la.blocks, la.cls);
        unite(c, la.cls, lb.cls);
        r->out = P();
        return;
    }
    if (bS && lb.dim == bK && !aS) {
        r->want[0] = S(aK, lb.blocks, lb.cls);
        r->want[1] = lb;
        r->out = P();
        return;
    }
    if (bS && lb.dim == bN && (!aS || la.dim != aK)) { /* a split of a's rows (sequence parallel): gathered */
        r->want[1] = lb;
        r->out = S(ro - 1, lb.blocks, lb.cls);
        return;
    }
    if (aS && la.dim == aM && !bS) {
        r->want[0] = la;
        r->out = S(ro - 2, la.blocks, la.cls);
        return;
    }
    if (aS && la.dim < ra - 2) {
        /* a batch dim: b follows where it has that dim (not broadcast) */
        int e = la.dim + ro - ra, mine = e - (ro - rb);
        r->want[0] = la;
        r->want[1] = mine >= 0 && mine < rb - 2 && B->shape.dim[mine] != 1 ? S(mine, la.blocks, la.cls) : R();
        r->out = S(e, la.blocks, la.cls);
        return;
    }
}

/* embedding: a table split by columns gives split rows; split ids give split positions; a
 * table split by vocabulary rows looks up the ids it holds and gives partial sums (zero rows
 * for the others: vocab_lookup). */
static void rule_embedding(rule *r)
{
    lay lt = r->in[0], li = r->in[1];
    all_replicated(r);
    int ro = r->n->shape.rank;
    if (lt.kind == L_S && lt.dim == 0 && lt.blocks == 1 && li.kind == L_R) {
        keep(r, P());
        r->vocab = true;
        return;
    }
    if (li.kind == L_S && lt.kind != L_P && !(lt.kind == L_S && lt.dim == 0)) {
        r->want[1] = li;
        r->want[0] = R();
        r->out = li;
        return;
    }
    if (lt.kind == L_S && lt.dim == 1 && li.kind == L_R) {
        r->want[0] = lt;
        r->out = S(ro - 1, lt.blocks, lt.cls);
    }
}

/* rope: x split along a dim other than the last two (heads, batch) stays; positions replicated. */
static void rule_rope(rule *r)
{
    lay l = r->in[0];
    all_replicated(r);
    if (l.kind == L_S && l.dim < r->n->shape.rank - 2) {
        r->want[0] = l;
        r->out = l;
    }
}

/* attention (q, k, v, mask?) and attention_grad (q, k, v, dy, mask?): split along batch (dim 0)
 * or heads (dim 1) when the first n_split operands all can be; a mask follows where it has
 * that dim; the result (output, or a gradient) is split the same way. */
static void rule_heads(rule *r, int n_split)
{
    const ir_node *n = r->n;
    lay l = r->in[0];
    all_replicated(r);
    if (l.kind != L_S || l.dim > 1 || l.blocks != 1)
        return;
    for (int k = 1; k < n_split; k++)
        if (!divisible(n->in[k]->shape.dim[l.dim], &l, r->T) || r->in[k].kind == L_P ||
            (r->in[k].kind == L_S && r->in[k].dim != l.dim))
            return;
    for (int k = 0; k < n_split; k++)
        r->want[k] = S(l.dim, 1, -1);
    if (n->n_in > n_split) {
        const ir_shape *ms = &n->in[n_split]->shape;
        int mine = l.dim - (4 - ms->rank);
        r->want[n_split] = mine >= 0 && ms->dim[mine] != 1 ? S(mine, 1, -1) : R();
    }
    r->out = S(l.dim, 1, -1);
}

static void apply_rule(shard_ctx *c, rule *r, int a)
{
    const ir_node *n = r->n;
    c->seq_axis = c->m->seq_parallel && strcmp(c->m->axis[a], "tp") == 0;
    switch (n->op) {
    case OP_cross_entropy_grad: xent_split(c, r, a); return;
    case OP_reshape: rule_reshape(r); return;
    case OP_transpose: rule_transpose(r); return;
    case OP_slice: rule_slice(c, r); return;
    case OP_concat: rule_concat(r); return;
    case OP_broadcast: rule_broadcast(r); return;
    case OP_matmul: rule_matmul(c, r); return;
    case OP_embedding: rule_embedding(r); return;
    case OP_rope: rule_rope(r); return;
    case OP_attention: rule_heads(r, 3); return;
    case OP_attention_grad: rule_heads(r, 4); return;
    case OP_unary_grad: rule_elementwise(c, r); return; /* f'(x) · dy, elementwise */
    case OP_layernorm_grad:
    case OP_rmsnorm_grad: rule_norm_grad(c, r); return;
    case OP_embedding_grad: rule_embedding_grad(c, r); return;
    default: break;
    }
    switch (ir_ops[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY: rule_elementwise(c, r); return;
    case OK_REDUCE: rule_reduce(r); return;
    case OK_ROW: rule_row(c, r, a); return;
    default: all_replicated(r); return;
    }
}

/* ---- sources ---- */

/* The local shape of full shape s under layouts l. */
static ir_shape local_shape(const shard_ctx *c, const ir_shape *s, const lay *l)
{
    ir_shape r = *s;
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a) && l[a].kind == L_S)
            r.dim[l[a].dim] /= c->m->size[a];
    return r;
}

/* A param or input: its layouts, local type and sliced name. */
static bool source(shard_ctx *c, const ir_node *n, val *x)
{
    char name[512];
    snprintf(name, sizeof name, "%s", n->name ? n->name : "");
    char ty[300];
    ir_type_str(n->dtype, &n->shape, ty, sizeof ty);
    for (int a = 0; a < c->m->n_axes; a++) {
        x->l[a] = R();
        if (!sharded_axis(c, a))
            continue;
        int dim = -1;
        if (n->op == OP_param && n->shard.present)
            for (int i = 0; i < n->shape.rank; i++)
                if (n->shard.axis[i] == a)
                    dim = dim < 0 ? i : dim;
        if (n->op == OP_input && strcmp(c->m->axis[a], "dp") == 0 && n->shape.rank >= 1)
            dim = 0;
        if (dim >= 0 && n->op == OP_param && n->shape.rank == 2 && c->m->rank == c->m->break_rank &&
            strcmp(n->name, c->m->break_param) == 0)
            dim = 1 - dim; /* the test-only hook of mesh.h: a broken layout on one rank */
        if (dim < 0)
            continue;
        int blocks = n->op == OP_param ? c->blocks[find(c, n->id)] : 1;
        lay l = S(dim, blocks, n->op == OP_param ? n->id : -1);
        int64_t len = n->shape.dim[dim];
        if (!divisible(len, &l, c->m->size[a]) && n->op == OP_param && dim == 0 && blocks == 1) {
            /* an odd vocabulary (GPT-2's 50257): the table stays whole, the rest is sharded —
             * also on a pipeline stage where it is only the tied LM head (not a table there:
             * the decision must not depend on the stage) */
            if (c->note)
                ir_diag_note(c->d, n->loc.file, n->loc.line, n->loc.col,
                             "param '%s' %s: dim 0 (%" PRId64 ") does not divide by mesh axis %s=%d; it stays "
                             "replicated (pad it to shard it, e.g. -D vocab=50304 for GPT-2)",
                             n->name, ty, len, c->m->axis[a], c->m->size[a]);
            continue;
        }
        if (!divisible(len, &l, c->m->size[a])) {
            if (blocks > 1)
                ir_diag_error(c->d, n->loc.file, n->loc.line, n->loc.col,
                              "%s '%s' %s: dim %d (%" PRId64 ", %d blocks of %" PRId64
                              ") does not divide by mesh axis %s=%d",
                              ir_ops[n->op].mnemonic, n->name, ty, dim, len, blocks, len / blocks, c->m->axis[a],
                              c->m->size[a]);
            else
                ir_diag_error(c->d, n->loc.file, n->loc.line, n->loc.col,
                              "%s '%s' %s: dim %d (%" PRId64 ") does not divide by mesh axis %s=%d",
                              ir_ops[n->op].mnemonic, n->name, ty, dim, len, c->m->axis[a], c->m->size[a]);
            c->ok = false;
            continue;
        }
        x->l[a] = l;
        mesh_slice s = {dim, coord(c, a), c->m->size[a], blocks};
        mesh_slice_append(name, sizeof name, &s);
    }
    ir_node *v = emit(c, n->op, 0, NULL, n);
    for (int k = 0; k < ir_op_nattrs(n->op); k++) {
        v->attr[k] = n->attr[k];
        if (n->attr[k].kind == AK_STR && n->attr[k].s)
            v->attr[k].s = ir_graph_strdup(c->dst, n->attr[k].s);
        if (n->attr[k].kind == AK_INTS)
            ir_attr_set_ints(c->dst, v, ir_op_attr_name(n->op, k, (char[64]){0}, 64), n->attr[k].n, n->attr[k].ints);
    }
    v->dtype = n->dtype;
    v->shape = local_shape(c, &n->shape, x->l);
    /* the spec as it holds on this rank (a dim left whole is not sharded) */
    v->shard = n->shard;
    v->shard.present = false;
    for (int i = 0; i < n->shape.rank; i++) {
        bool split = false;
        for (int a = 0; a < c->m->n_axes; a++)
            split |= x->l[a].kind == L_S && x->l[a].dim == i && n->shard.axis[i] == a;
        if (!split)
            v->shard.axis[i] = IR_REPLICATED;
        v->shard.present |= split;
    }
    if (!v->shard.present)
        memset(&v->shard, 0, sizeof v->shard);
    v->optional = n->optional;
    v->name = n->name ? ir_graph_strdup(c->dst, name) : NULL;
    x->v = finish(c, v);
    return true;
}

/* ---- the rewrite ---- */

static ir_node *constant(shard_ctx *c, double v, const ir_node *like)
{
    ir_node *n = emit(c, OP_const, 0, NULL, like);
    n->dtype = DT_F32;
    n->shape.rank = 0;
    ir_attr_set_float(n, "value", v);
    return finish(c, n);
}

static ir_node *op2(shard_ctx *c, ir_opcode op, ir_node *x, ir_node *y, const ir_node *like)
{
    ir_node *in[2] = {x, y};
    return finish(c, emit(c, op, 2, in, like));
}

static ir_node *op1(shard_ctx *c, ir_opcode op, ir_node *x, const ir_node *like)
{
    return finish(c, emit(c, op, 1, &x, like));
}

/* x as f32 (integer ids or targets: exact below 2^24). */
static ir_node *to_f32(shard_ctx *c, ir_node *x, const ir_node *like)
{
    ir_node *f = emit(c, OP_cast, 1, &x, like);
    ir_attr_set_dtype(f, "to", DT_F32);
    return finish(c, f);
}

/* Vocabulary-parallel lookup on axis a: this rank holds table rows [lo, lo + V), so ids
 * outside them read row 0 and are zeroed by a 0/1 mask (computed in f32 from integer-valued
 * floats: min(relu(s + 1), 1) is 1 exactly when s >= 0, min(relu(V - s), 1) when s < V). The
 * caller's allreduce then sums the one rank's row. *ids becomes the local ids; returns the mask
 * shaped [..., 1] to multiply the lookup by. */
static ir_node *vocab_lookup(shard_ctx *c, int a, ir_node **ids, ir_node *table, const ir_node *like)
{
    int64_t V = table->shape.dim[0], lo = coord(c, a) * V;
    ir_node *s = op2(c, OP_sub, to_f32(c, *ids, like), constant(c, (double)lo, like), like);
    ir_node *local = op2(c, OP_minimum, op1(c, OP_relu, s, like), constant(c, (double)(V - 1), like), like);
    ir_node *cast = emit(c, OP_cast, 1, &local, like);
    ir_attr_set_dtype(cast, "to", (*ids)->dtype);
    ir_node *one = constant(c, 1, like);
    ir_node *ge = op2(c, OP_minimum, op1(c, OP_relu, op2(c, OP_add, s, one, like), like), one, like);
    ir_node *lt = op2(c, OP_minimum, op1(c, OP_relu, op2(c, OP_sub, constant(c, (double)V, like), s, like), like),
                      one, like);
    ir_node *mask = op2(c, OP_mul, ge, lt, like);
    *ids = finish(c, cast);
    ir_shape ms = mask->shape;
    ms.dim[ms.rank++] = 1;
    return reshape(c, mask, &ms, like);
}

/* 1 where the target (as f32, integer-valued) is >= 0, else 0: min(relu(t + 1), 1). */
static ir_node *valid_targets(shard_ctx *c, ir_node *tf, const ir_node *like)
{
    ir_node *one = constant(c, 1, like);
    return op2(c, OP_minimum, op1(c, OP_relu, op2(c, OP_add, tf, one, like), like), one, like);
}

static ir_node *reduce_to(shard_ctx *c, ir_opcode op, ir_node *x, bool last, const ir_node *like)
{
    int64_t axes[IR_MAX_RANK];
    int k = 0;
    for (int i = last ? x->shape.rank - 1 : 0; i < x->shape.rank; i++)
        axes[k++] = i;
    ir_node *n = emit(c, op, 1, &x, like);
    ir_attr_set_ints(c->dst, n, "axes", k, axes);
    ir_attr_set_int(n, "keepdim", last);
    return finish(c, n);
}

/* cross_entropy(_grad) v over this rank's rows on axis a (xent_split): the mean (or its
 * gradient) over the local rows with a target >= 0 times n_local / max(n_all, 1), n_all the
 * count over the axis (a scalar allreduce), is this rank's part of the global mean (a partial
 * sum) or the gradient of the global mean on its rows — also when the ranks hold different
 * numbers of ignored targets. */
static ir_node *xent_rows(shard_ctx *c, int a, ir_node *v, ir_node *targets, const ir_node *like)
{
    ir_node *cnt = reduce_to(c, OP_sum, valid_targets(c, to_f32(c, targets, like), like), false, like);
    ir_node *all = comm(c, OP_allreduce, cnt, a, 0, like);
    ir_node *scale = op2(c, OP_div, cnt, op2(c, OP_maximum, all, constant(c, 1, like), like), like);
    return op2(c, OP_mul, v, scale, like);
}

/* Megatron's vocabulary-parallel cross entropy (or its gradient, dy given) on axis a, over this
 * rank's logits z [..., Vl] for vocabulary entries [lo, lo + Vl) and the full targets t [...]:
 *   m = allreduce_max(max z), s = allreduce(Σ e^(z - m)), z_t = allreduce(Σ z·[lo + j == t])
 *   loss = Σ_rows valid · (log s + m − z_t) / max(n, 1),  valid = [t >= 0], n = Σ valid
 *   grad = dy · (e^(z - m) / s − [lo + j == t]) · valid / max(n, 1)
 * (three [rows, 1] allreduces instead of gathering [rows, V] logits). Where the rows are split
 * over dp too (axis rows >= 0), n is counted over it and the loss is a partial sum over it.
 * The target's one-hot is 1 − min(|lo + j − t|, 1) on integer-valued floats (exact below 2^24);
 * logits are clamped to ±FLT_MAX before it, so a -inf logit contributes 0, not NaN. */
static ir_node *xent_vocab(shard_ctx *c, int a, int rows, ir_node *z, ir_node *t, ir_node *dy, const ir_node *like)
{
    int r = z->shape.rank;
    int64_t Vl = z->shape.dim[r - 1], lo = coord(c, a) * Vl;
    ir_node *one = constant(c, 1, like), *m = comm(c, OP_allreduce, reduce_to(c, OP_max, z, true, like), a, 0, like);
    ir_attr_set_str(c->dst, m, "op", "max");
    ir_node *e = op1(c, OP_exp, op2(c, OP_sub, z, m, like), like);
    ir_node *sum = comm(c, OP_allreduce, reduce_to(c, OP_sum, e, true, like), a, 0, like);
    ir_node *f = to_f32(c, t, like);
    ir_shape ts = f->shape;
    ts.dim[ts.rank++] = 1;
    ir_node *tf = reshape(c, f, &ts, like); /* [..., 1] */
    ir_node *j = emit(c, OP_iota, 0, NULL, like);
    j->dtype = DT_F32;
    j->shape.rank = 1;
    j->shape.dim[0] = Vl;
    ir_attr_set_int(j, "axis", 0);
    finish(c, j);
    ir_node *d = op2(c, OP_sub, op2(c, OP_add, j, constant(c, (double)lo, like), like), tf, like);
    ir_node *eq = op2(c, OP_sub, one, op2(c, OP_minimum, op1(c, OP_abs, d, like), one, like), like);
    ir_node *valid = valid_targets(c, tf, like);
    ir_node *cnt = reduce_to(c, OP_sum, valid, false, like);
    if (rows >= 0)
        cnt = comm(c, OP_allreduce, cnt, rows, 0, like);
    ir_node *norm = op2(c, OP_maximum, cnt, one, like);
    if (dy) {
        ir_node *p = op2(c, OP_div, e, sum, like);
        ir_node *g = op2(c, OP_mul, op2(c, OP_sub, p, eq, like), valid, like);
        return op2(c, OP_mul, g, op2(c, OP_div, dy, norm, like), like);
    }
    ir_node *zc = op2(c, OP_maximum, z, constant(c, -3.4028234663852886e38, like), like);
    ir_node *zt = comm(c, OP_allreduce, reduce_to(c, OP_sum, op2(c, OP_mul, zc, eq, like), true, like), a, 0, like);
    ir_node *row = op2(c, OP_sub, op2(c, OP_add, op1(c, OP_log, sum, like), m, like), zt, like);
    ir_node *total = reduce_to(c, OP_sum, op2(c, OP_mul, row, valid, like), false, like);
    return op2(c, OP_div, total, norm, like);
}

/* Copies n's attributes onto v, with shapes made local. */
static void copy_attrs(shard_ctx *c, const ir_node *n, ir_node *v, const rule *r, const lay *out)
{
    for (int k = 0; k < ir_op_nattrs(n->op); k++) {
        char aname[64];
        ir_op_attr_name(n->op, k, aname, sizeof aname);
        v->attr[k] = n->attr[k];
        if (n->attr[k].kind == AK_STR && n->attr[k].s)
            v->attr[k].s = ir_graph_strdup(c->dst, n->attr[k].s);
        if (n->attr[k].kind == AK_INTS)
            ir_attr_set_ints(c->dst, v, aname, n->attr[k].n, n->attr[k].ints);
    }
    if (n->op == OP_reshape || n->op == OP_broadcast || n->op == OP_recv) {
        ir_shape s = local_shape(c, &n->shape, out);
        ir_attr_set_ints(c->dst, v, "shape", s.rank, s.dim);
    }
    if (n->op == OP_slice && r->slice_hi > r->slice_lo) {
        ir_attr_set_int(v, "start", r->slice_lo);
        ir_attr_set_int(v, "end", r->slice_hi);
    }
}

/* With local outputs (training): the param whose gradient output "grad/<name>" n is, when
 * the param is in this graph, else NULL. */
static const ir_node *grad_param(const shard_ctx *c, const ir_node *n)
{
    if (!n->name || strncmp(n->name, "grad/", 5) != 0)
        return NULL;
    for (int i = 0; i < c->src->n_nodes; i++) {
        const ir_node *p = c->src->nodes[i];
        if (p->op == OP_param && p->name && strcmp(p->name, n->name + 5) == 0 && c->vals[i].v)
            return p;
    }
    return NULL;
}

/* Whether pipeline message n (a send or a recv) is sent split over mesh axis a, dp, along dim
 * 0: a value whose dim 0 is the batch's (the inputs are split so; every stage's graph keeps
 * them, so the two ends decide alike from the full shape) and divides by the axis size. */
static bool dp_message(const shard_ctx *c, const ir_node *n, int a)
{
    if ((n->op != OP_send && n->op != OP_recv) || strcmp(c->m->axis[a], "dp") != 0 || c->batch <= 0)
        return false;
    const ir_shape *s = n->op == OP_send ? &n->in[0]->shape : &n->shape;
    return s->rank >= 1 && s->dim[0] == c->batch && s->dim[0] % c->m->size[a] == 0;
}

static bool rewrite_node(shard_ctx *c, const ir_node *n)
{
    val *x = &c->vals[n->id];
    x->full = n;
    if (n->op == OP_param || n->op == OP_input)
        return source(c, n, x);
    if (n->op == OP_output) {
        const ir_node *p = c->m->local_outputs ? grad_param(c, n) : NULL;
        ir_node *in;
        char name[600];
        if (p) {
            /* a gradient in its param's layout, named after the param's slice — but over dp
             * this rank's partial sum (a replicated one divided by dp): the trainer sums the
             * gradients over dp once a step, not once a micro-batch */
            val g = c->vals[n->in[0]->id];
            for (int a = 0; a < c->m->n_axes; a++) {
                if (!sharded_axis(c, a))
                    continue;
                if (strcmp(c->m->axis[a], "dp") == 0 && g.l[a].kind != L_S) {
                    if (g.l[a].kind == L_R)
                        g.v = op2(c, OP_mul, g.v, constant(c, 1.0 / c->m->size[a], n), n);
                    continue;
                }
                convert(c, &g, a, c->vals[p->id].l[a]);
            }
            in = g.v;
            snprintf(name, sizeof name, "grad/%s", c->vals[p->id].v->name);
        } else {
            in = replicated(c, n->in[0]);
            snprintf(name, sizeof name, "%s", n->name);
        }
        ir_node *o = emit(c, OP_output, 1, &in, n);
        o->name = ir_graph_strdup(c->dst, name);
        x->v = finish(c, o);
        return true;
    }
    if (n->n_in > 8) {
        ir_node *ins[256];
        for (int k = 0; k < n->n_in && k < 256; k++)
            ins[k] = replicated(c, n->in[k]);
        ir_node *v = emit(c, n->op, n->n_in, ins, n);
        copy_attrs(c, n, v, &(rule){0}, (lay[IR_MAX_MESH_AXES]){{0}});
        x->v = finish(c, v);
        for (int a = 0; a < c->m->n_axes; a++)
            x->l[a] = R();
        return true;
    }
    /* operands as values, converted axis by axis as the rules want */
    val ops[8];
    for (int k = 0; k < n->n_in; k++)
        ops[k] = c->vals[n->in[k]->id];
    rule rules[IR_MAX_MESH_AXES];
    for (int a = 0; a < c->m->n_axes; a++) {
        rule *r = &rules[a];
        memset(r, 0, sizeof *r);
        r->n = n;
        r->T = c->m->size[a];
        if (!sharded_axis(c, a)) {
            x->l[a] = R();
            continue;
        }
        for (int k = 0; k < n->n_in; k++)
            r->in[k] = ops[k].l[a];
        if (dp_message(c, n, a)) {
            /* a pipeline message of the batch goes as this dp rank's rows: the sender keeps
             * (or slices to) them, the receiver computes only them */
            if (n->op == OP_send)
                r->want[0] = r->out = S(0, 1, -1);
            else
                r->out = S(0, 1, -1);
        } else if (ir_ops[n->op].kind == OK_SOURCE || ir_ops[n->op].kind == OK_COMM)
            all_replicated(r);
        else
            apply_rule(c, r, a);
        x->l[a] = r->out;
    }
    /* conversions: an operand wanted replicated on every axis comes from the shared cache */
    for (int k = 0; k < n->n_in; k++) {
        bool all_r = true;
        for (int a = 0; a < c->m->n_axes; a++)
            all_r &= !sharded_axis(c, a) || rules[a].want[k].kind == L_R;
        if (all_r) {
            ops[k].v = regather(c, n, n->in[k]) ? regathered(c, n->in[k], n) : replicated(c, n->in[k]);
            for (int a = 0; a < c->m->n_axes; a++)
                ops[k].l[a] = R();
            continue;
        }
        for (int a = 0; a < c->m->n_axes; a++)
            if (sharded_axis(c, a))
                convert(c, &ops[k], a, rules[a].want[k]);
    }
    ir_node *ins[8];
    for (int k = 0; k < n->n_in; k++)
        ins[k] = ops[k].v;
    int vaxis = -1, raxis = -1;
    for (int a = 0; a < c->m->n_axes; a++) {
        vaxis = sharded_axis(c, a) && rules[a].vsplit ? a : vaxis;
        raxis = sharded_axis(c, a) && rules[a].rows ? a : raxis;
    }
    if (vaxis >= 0) { /* a vocabulary-parallel cross entropy; its dp rows too */
        x->v = xent_vocab(c, vaxis, raxis, ins[0], ins[1], n->op == OP_cross_entropy_grad ? ins[2] : NULL, n);
        if (n->op == OP_cross_entropy && raxis >= 0)
            x->l[raxis] = P();
        return true;
    }
    ir_node *mask = NULL;
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a) && rules[a].vocab)
            mask = vocab_lookup(c, a, &ins[1], ins[0], n);
    ir_node *v = emit(c, n->op, n->n_in, ins, n);
    rule merged = {0};
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a) && rules[a].slice_hi > rules[a].slice_lo)
            merged = rules[a];
    copy_attrs(c, n, v, &merged, x->l);
    v->name = n->name ? ir_graph_strdup(c->dst, n->name) : NULL;
    if (ir_ops[n->op].kind == OK_SOURCE)
        v->dtype = n->dtype, v->shape = n->shape;
    if (!ir_infer(v, c->d))
        ir_unreachable("shard: a rewritten node does not infer");
    if (mask)
        v = op2(c, OP_mul, v, mask, n);
    for (int a = 0; a < c->m->n_axes; a++)
        if (sharded_axis(c, a) && rules[a].rows)
            v = xent_rows(c, a, v, ins[1], n);
    ir_shape want = local_shape(c, &n->shape, x->l);
    if (!ir_shape_eq(&want, &v->shape)) {
        char a[128], b[128];
        fprintf(stderr, "shard: %%%d %s: local %s, layout says %s\n", n->id, ir_ops[n->op].mnemonic,
                ir_shape_str(&v->shape, a, sizeof a), ir_shape_str(&want, b, sizeof b));
        ir_unreachable("shard: local shape differs from the layout's");
    }
    x->v = v;
    return true;
}

/* One rewrite of src into a fresh graph; NULL after an error. */
static ir_graph *rewrite(shard_ctx *c, const ir_graph *src)
{
    c->src = src;
    c->dst = ir_graph_new(src->name);
    c->dst->n_axes = src->n_axes;
    for (int i = 0; i < src->n_axes; i++)
        c->dst->axis_name[i] = ir_graph_strdup(c->dst, src->axis_name[i]);
    memset(c->vals, 0, sizeof *c->vals * (size_t)(src->n_nodes + 1));
    memset(c->repl, 0, sizeof *c->repl * (size_t)(src->n_nodes + 1));
    memset(c->scattered, 0, sizeof *c->scattered * (size_t)(src->n_nodes + 1));
    memset(c->regathered, 0, sizeof *c->regathered * (size_t)(src->n_nodes + 1));
    c->retry = false;
    c->ok = true;
    c->batch = 0;
    for (int i = 0; i < src->n_nodes && !c->batch; i++)
        if (src->nodes[i]->op == OP_input && src->nodes[i]->shape.rank >= 1)
            c->batch = src->nodes[i]->shape.dim[0];
    for (int i = 0; i < src->n_nodes && c->ok; i++)
        rewrite_node(c, src->nodes[i]);
    if (!c->ok) {
        ir_graph_free(c->dst);
        return NULL;
    }
    return c->dst;
}

/* ---- the automatic mode: Megatron's layout for a model without @shard annotations ---- */

/* Walks matmuls with a 2-d param as b: the first of a pair is column-parallel (b split along
 * N), a matmul whose a derives from a column-parallel output is row-parallel (b split along K);
 * a param added to a column-parallel output (a bias) follows it; an embedding table is split by
 * vocabulary. Dims that do not divide by the axis size stay replicated. */
static void automatic(ir_graph *g, int axis, int T)
{
    bool *col = calloc((size_t)g->n_nodes + 1, sizeof *col);
    if (!col)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            col[i] |= col[n->in[k]->id];
        if (n->op == OP_embedding && n->in[0]->op == OP_param && !n->in[0]->shard.present &&
            n->in[0]->shape.dim[0] % T == 0) {
            ir_node *t = n->in[0];
            t->shard.present = true;
            for (int d = 0; d < t->shape.rank; d++)
                t->shard.axis[d] = d == 0 ? (int8_t)axis : IR_REPLICATED;
        }
        if (n->op != OP_matmul || n->in[1]->op != OP_param || n->in[1]->shape.rank != 2)
            continue;
        ir_node *w = n->in[1];
        bool tb = ir_attr_int(n, "transpose_b") != 0;
        bool row = col[n->in[0]->id];
        int dim = row ? (tb ? 1 : 0) : (tb ? 0 : 1);
        col[i] = !row;
        if (w->shape.dim[dim] % T || (w->shard.present && w->shard.axis[dim] != axis))
            continue;
        w->shard.present = true;
        for (int d = 0; d < 2; d++)
            w->shard.axis[d] = d == dim ? (int8_t)axis : IR_REPLICATED;
        if (row)
            continue;
        for (int j = i + 1; j < g->n_nodes; j++) {
            ir_node *u = g->nodes[j];
            if (u->op != OP_add || u->n_in != 2 || (u->in[0] != n && u->in[1] != n))
                continue;
            ir_node *b = u->in[0] == n ? u->in[1] : u->in[0];
            if (b->op == OP_param && b->shape.rank == 1 && !b->shard.present && b->shape.dim[0] % T == 0) {
                b->shard.present = true;
                b->shard.axis[0] = (int8_t)axis;
            }
        }
    }
    free(col);
}

bool pass_shard(ir_graph *g, const pass_mesh *m, ir_diag *d)
{
    for (int i = 0; i < g->n_nodes; i++) {
        ir_opcode op = g->nodes[i]->op;
        if (op == OP_allreduce || op == OP_allgather || op == OP_reduce_scatter) {
            ir_diag_error(d, -1, 0, 0, "shard: the graph already has collectives (was it sharded before?)");
            return false;
        }
    }
    int tp = pass_mesh_axis(m, "tp");
    bool annotated = false;
    for (int i = 0; i < g->n_nodes; i++)
        annotated |= g->nodes[i]->op == OP_param && g->nodes[i]->shard.present;
    if (!g->n_axes) {
        /* the automatic mode declares the mesh it used */
        g->n_axes = m->n_axes;
        for (int a = 0; a < m->n_axes; a++)
            g->axis_name[a] = ir_graph_strdup(g, m->axis[a]);
    }
    if (!annotated && tp >= 0 && m->size[tp] > 1)
        automatic(g, tp, m->size[tp]);
    bool any = false;
    for (int a = 0; a < m->n_axes; a++)
        any |= m->size[a] > 1 && strcmp(m->axis[a], "pp") != 0;
    if (!any)
        return true;
    shard_ctx c = {m, NULL, NULL, d, calloc((size_t)g->n_nodes + 1, sizeof(val)),
                   calloc((size_t)g->n_nodes + 1, sizeof(ir_node *)), malloc(sizeof(int) * ((size_t)g->n_nodes + 1)),
                   malloc(sizeof(int) * ((size_t)g->n_nodes + 1)), calloc((size_t)g->n_nodes + 1, sizeof(bool)),
                   false, true, false, NULL, NULL, false, 0};
    c.scattered = calloc((size_t)g->n_nodes + 1, sizeof *c.scattered);
    c.regathered = calloc((size_t)g->n_nodes + 1, sizeof *c.regathered);
    if (!c.vals || !c.repl || !c.parent || !c.blocks || !c.table || !c.scattered || !c.regathered)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_embedding)
            c.table[g->nodes[i]->in[0]->id] = true;
    for (int i = 0; i < g->n_nodes; i++) {
        c.parent[i] = i;
        c.blocks[i] = 1;
    }
    ir_graph *out = rewrite(&c, g);
    for (int pass = 0; out && c.retry && pass < 3; pass++) {
        ir_graph_free(out);
        out = rewrite(&c, g);
    }
    if (out) {
        /* once more with notes: the blocks are settled, so this run is the last */
        ir_graph_free(out);
        c.note = true;
        out = rewrite(&c, g);
    }
    free(c.vals);
    free(c.repl);
    free(c.parent);
    free(c.blocks);
    free(c.table);
    free(c.scattered);
    free(c.regathered);
    if (!out)
        return false;
    ir_graph tmp = *g;
    *g = *out;
    *out = tmp;
    ir_graph_free(out);
    return true;
}
