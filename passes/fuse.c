/* fuse.c — the fusion pass: decides which values get buffers and which plan step computes
 * each, recorded as node->group (see fuse.h for the meaning; lowering reads it).
 *
 * Order of decisions:
 *  1. Buffers by nature: matmul, attention, row ops, reductions, cache_write and its operands;
 *     operands of outputs; gather ids and cross-entropy targets (so that they can be
 *     range-checked); any value with more than one consumer unless it is cheap to recompute
 *     (layout, const, iota, cast, embedding over cheap operands).
 *  2. Epilogues: a matmul's single consumer `add` of a bias vector [N] joins its GEMM, then a
 *     single-consumer activation (relu, gelu, silu: see is_act); an attention's single consumer
 *     transpose that keeps the last dim last joins the attention (which then writes the
 *     transposed layout, so that merging heads afterwards is a free reshape).
 *  3. Library operands: a matmul operand that is not a BLAS-compatible strided view of a
 *     buffer, or an attention q/k/v without a contiguous last dim (or a mask that is no view
 *     at all), becomes a buffer itself — except a matmul's f32 B that is a dequantize of param
 *     codes and scales grouped along the reduction, used by that matmul alone: it joins the
 *     GEMM, which reads the codes (plan.h: rt_plan_gemm's qbits; a target whose GEMM library
 *     takes f32 only runs the step's kernel, codegen/library.c).
 *  4. Row prologue stores: a stored elementwise value of the same shape as a row op's input,
 *     reached from that input through same-shape elementwise ops only, whose other consumers
 *     all come after the row op, joins the row op's kernel (e.g. GPT-2's residual sum, stored
 *     by the next layernorm's kernel).
 *  5. Elementwise siblings: a stored elementwise value whose every consumer is computed by one
 *     later elementwise kernel of its shape (directly or through inlined ops) joins that
 *     kernel, which stores it too: an optimizer's m, v and parameter updates become one pass
 *     over memory (a fused AdamW) instead of one kernel each.
 *  6. Group ids in the order of each group's last node, so steps run in graph order.
 * A value more than FUSE_MAX_DEPTH inlined ops above its nearest buffer gets a buffer too, so
 * that no kernel's expression is deeper than that.
 * Training graphs (autodiff): layernorm_grad, rmsnorm_grad, cross_entropy_grad, embedding_grad
 * and attention_grad get buffers (row kernels, a scatter-add step, a fused attention-backward
 * step); attention_grads of the same operands (wrt q, k, v, mask) join one group so that one
 * step computes them all; unary_grad is elementwise (inlined into its consumers' kernels); the
 * ids of embedding_grad and targets of cross_entropy_grad get buffers (range checks), and
 * embedding_grad's dy must be a view with contiguous rows.
 * f32 only for now: other float dtypes pass through as buffers in the plan, but the CPU
 * target rejects f64 graphs.
 */
#include <stdlib.h>
#include <string.h>

#include "passes/fuse.h"
#include "passes/pass.h"

typedef struct {
    const ir_graph *g;
    int *n_cons;      /* distinct consumers (outputs count) */
    int *cons;        /* the first consumer's id (meaningful when n_cons == 1) */
    bool *buf;        /* owns a buffer */
    int *join;        /* joins the group of this node (id), or -1 */
    bool *lib;        /* member of a GEMM or attention group */
} fuse_state;

static bool is_buf(const ir_node *n, void *ctx)
{
    const fuse_state *F = ctx;
    return n->op == OP_input || n->op == OP_param || F->buf[n->id];
}

static bool is_source(const ir_node *n) { return n->op == OP_input || n->op == OP_param; }

/* Cheap to recompute in every consumer: index remapping, constants, casts and gathers over
 * buffers or other cheap values. */
static bool cheap(const fuse_state *F, const ir_node *n)
{
    if (is_buf(n, (void *)F))
        return true;
    switch (n->op) {
    case OP_const:
    case OP_iota: return true;
    case OP_reshape:
    case OP_transpose:
    case OP_slice:
    case OP_broadcast:
    case OP_concat:
    case OP_cast:
    case OP_embedding:
        for (int k = 0; k < n->n_in; k++)
            if (!cheap(F, n->in[k]))
                return false;
        return true;
    default: return false;
    }
}

/* Backward ops with a kernel or library step of their own (unary_grad is elementwise). */
static bool backward_kernel(const ir_node *n)
{
    switch (n->op) {
    case OP_layernorm_grad:
    case OP_rmsnorm_grad:
    case OP_cross_entropy_grad:
    case OP_embedding_grad:
    case OP_attention_grad: return true;
    default: return false;
    }
}

static void make_buf(fuse_state *F, const ir_node *n)
{
    if (!is_source(n))
        F->buf[n->id] = true;
}

static ir_node *only_consumer(const fuse_state *F, const ir_node *n)
{
    return F->n_cons[n->id] == 1 && F->cons[n->id] >= 0 ? F->g->nodes[F->cons[n->id]] : NULL;
}

/* B of matmul mm read as codes by its GEMM (see 3. above). */
static bool quantized_b(const fuse_state *F, const ir_node *mm)
{
    const ir_node *x = mm->in[1];
    int kaxis = ir_attr_int(mm, "transpose_b") ? 1 : 0;
    return x->op == OP_dequantize && mm->dtype == DT_F32 && x->shape.rank == 2 &&
           only_consumer(F, x) == mm && !F->buf[x->id] && is_source(x->in[0]) && is_source(x->in[1]) &&
           ir_attr_int(x, "axis") == kaxis;
}

static void library_operands(fuse_state *F, const ir_node *n)
{
    pass_view v;
    if (n->op == OP_matmul) {
        if (quantized_b(F, n)) {
            F->join[n->in[1]->id] = n->id;
            F->lib[n->in[1]->id] = true;
        }
        for (int k = 0; k < 2; k++) {
            const ir_node *x = n->in[k];
            int trans;
            int64_t ld;
            bool t = ir_attr_int(n, k == 0 ? "transpose_a" : "transpose_b") != 0;
            if (k == 1 && F->join[x->id] == n->id)
                continue;
            if (!pass_view_of(x, is_buf, F, &v) || !pass_matmul_operand(x, &v, t, &trans, &ld))
                make_buf(F, x);
        }
    } else if (n->op == OP_attention || n->op == OP_attention_grad) {
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            int r = x->shape.rank;
            bool ok = pass_view_of(x, is_buf, F, &v);
            bool is_mask = n->op == OP_attention ? k == 3 : k == 4;
            if (ok && !is_mask)
                ok = x->shape.dim[r - 1] == 1 || v.stride[r - 1] == 1;
            if (!ok)
                make_buf(F, x);
        }
    } else if (n->op == OP_embedding_grad) {
        /* the scatter reads dy as rows: a view whose rows are contiguous and evenly spaced */
        const ir_node *x = n->in[0];
        if (!pass_view_of(x, is_buf, F, &v) || !pass_rows_view(x, &v, NULL))
            make_buf(F, x);
    }
}

/* Activations fused into the GEMM epilogue: the unary ops marked EPI in ir/unary.def (relu,
 * gelu, silu). Every backend has them: lowering builds the step's epilogue kernel from the op's
 * kernel IR (codegen/lower.c), which the host (LLVM: vectorized tanh/exp/erf approximations),
 * OpenCL and NVPTX renderers render like any kernel; cuBLASLt uses its own relu and tanh-gelu
 * epilogues instead (runtime/cuda/cublaslt.c). */
static bool is_act(const ir_node *n)
{
    switch (n->op) {
#define UNARY(id, epi) case OP_##id: return epi;
#include "ir/unary.def"
#undef UNARY
    default: return false;
    }
}

/* Bias add following matmul mm: returns the bias operand index (0 or 1) or -1. */
static int bias_operand(fuse_state *F, const ir_node *mm, const ir_node *add)
{
    if (add->op != OP_add || !ir_shape_eq(&add->shape, &mm->shape) || add->in[0] == add->in[1])
        return -1;
    int k = add->in[0] == mm ? 1 : 0;
    const ir_node *b = add->in[k];
    pass_view v;
    int r = mm->shape.rank;
    if (b->shape.rank < 1 || b->shape.dim[b->shape.rank - 1] != mm->shape.dim[r - 1])
        return -1;
    if (!pass_view_of(b, is_buf, F, &v) || !pass_bias_view(b, &v))
        return -1;
    return k;
}

/* The single consumer of n, or NULL. */
static void epilogues(fuse_state *F)
{
    const ir_graph *g = F->g;
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = g->nodes[i];
        if (n->op == OP_matmul || n->op == OP_attention)
            F->lib[n->id] = true;
        if (n->op == OP_matmul && n->dtype == DT_F32) {
            ir_node *last = n, *c = only_consumer(F, n);
            if (c && bias_operand(F, n, c) >= 0) {
                F->join[n->id] = c->id;
                F->buf[n->id] = false;
                F->buf[c->id] = true;
                F->lib[c->id] = true;
                last = c;
                c = only_consumer(F, c);
            }
            if (c && is_act(c) && c->in[0] == last) {
                F->join[last->id] = c->id;
                F->buf[last->id] = false;
                F->buf[c->id] = true;
                F->lib[c->id] = true;
            }
        } else if (n->op == OP_attention) {
            ir_node *c = only_consumer(F, n);
            if (c && c->op == OP_transpose) {
                const ir_attr *perm = ir_attr_get(c, "perm");
                if (ir_axis_norm(perm->ints[3], 4) == 3) {
                    F->join[n->id] = c->id;
                    F->buf[n->id] = false;
                    F->buf[c->id] = true;
                    F->lib[c->id] = true;
                }
            }
        }
    }
}

static bool elementwise(const ir_node *n)
{
    ir_op_kind k = ir_ops[n->op].kind;
    return k == OK_UNARY || k == OK_BINARY || n->op == OP_unary_grad;
}

/* attention_grad nodes with the same operands and attributes but wrt: one step computes them. */
static bool same_attention_grad(const ir_node *a, const ir_node *b)
{
    if (a->op != OP_attention_grad || b->op != OP_attention_grad || a->n_in != b->n_in ||
        ir_attr_int(a, "causal") != ir_attr_int(b, "causal") || ir_attr_float(a, "scale") != ir_attr_float(b, "scale"))
        return false;
    for (int k = 0; k < a->n_in; k++)
        if (a->in[k] != b->in[k])
            return false;
    return true;
}

/* Joins each attention_grad to the last later one of the same operands, when none of its
 * consumers comes before that one (the step runs at the last member). */
static void attention_grads(fuse_state *F)
{
    const ir_graph *g = F->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_attention_grad || F->join[i] >= 0)
            continue;
        int last = -1;
        for (int j = i + 1; j < g->n_nodes; j++)
            if (same_attention_grad(n, g->nodes[j]))
                last = j;
        if (last < 0)
            continue;
        bool early = false;
        for (int j = i + 1; j < last && !early; j++)
            for (int k = 0; k < g->nodes[j]->n_in; k++)
                early |= g->nodes[j]->in[k] == n && g->nodes[j]->op != OP_attention_grad && g->nodes[j]->op != OP_output;
        for (int j = i + 1; j < last && !early; j++)
            if (same_attention_grad(n, g->nodes[j]))
                early |= F->join[j] >= 0 && F->join[j] != last;
        if (!early)
            F->join[i] = last;
    }
}

/* Step 4: stored elementwise values reached from row op r's input x by same-shape
 * elementwise ops join r's group. */
static void absorb(fuse_state *F, const ir_node *r, const ir_node *x)
{
    if (!ir_shape_eq(&x->shape, &r->in[0]->shape) || is_source(x) || F->lib[x->id])
        return;
    if (F->buf[x->id]) {
        if (!elementwise(x) || F->join[x->id] >= 0)
            return;
        for (int i = x->id + 1; i < r->id; i++) /* other consumers must come after r */
            for (int k = 0; k < F->g->nodes[i]->n_in; k++)
                if (F->g->nodes[i]->in[k] == x && i != r->id)
                    return;
        F->join[x->id] = r->id;
        return;
    }
    if (!elementwise(x))
        return;
    for (int k = 0; k < x->n_in; k++)
        absorb(F, r, x->in[k]);
}

/* The node whose group n's group is (join chains followed), or n itself. */
static int root_of(const fuse_state *F, int n)
{
    while (F->join[n] >= 0)
        n = F->join[n];
    return n;
}

/* Step 5: where does each node get computed? home[i]: the root of the one group whose kernel
 * computes node i (a stored node: its own group's; an inlined one: that of every consumer), -1
 * none (no consumer but outputs), -2 several. Visiting the nodes last to first, a node's
 * consumers are settled before it; a stored elementwise value whose home is one elementwise
 * kernel of its shape joins it. */
static void siblings(fuse_state *F)
{
    const ir_graph *g = F->g;
    int nn = g->n_nodes;
    int *home = malloc(((size_t)nn + 1) * sizeof *home), *start = calloc((size_t)nn + 2, sizeof *start),
        *list = NULL, n_edges = 0;
    bool *joined = calloc((size_t)nn + 1, sizeof *joined);
    if (!home || !start || !joined)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            start[g->nodes[i]->in[k]->id + 1]++, n_edges++;
    for (int i = 0; i < nn; i++)
        start[i + 1] += start[i];
    list = malloc(((size_t)n_edges + 1) * sizeof *list);
    int *fill = malloc(((size_t)nn + 1) * sizeof *fill);
    if (!list || !fill)
        ir_unreachable("out of memory");
    memcpy(fill, start, (size_t)nn * sizeof *fill);
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            list[fill[g->nodes[i]->in[k]->id]++] = i;
    for (int i = nn - 1; i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        int h = -1;
        for (int e = start[i]; e < start[i + 1]; e++) {
            const ir_node *c = g->nodes[list[e]];
            if (c->op == OP_output || ir_ops[c->op].kind == OK_SINK)
                continue;
            h = h == -1 ? home[c->id] : h == home[c->id] ? h : -2;
        }
        if (is_source(n) || ir_ops[n->op].kind == OK_SINK) {
            home[i] = -2;
            continue;
        }
        if (!F->buf[i]) {
            home[i] = h;
            continue;
        }
        const ir_node *r = h >= 0 ? g->nodes[h] : NULL;
        if (r && elementwise(n) && !F->lib[i] && F->join[i] < 0 && n->dtype == DT_F32 && elementwise(r) &&
            F->buf[r->id] && !F->lib[r->id] && F->join[r->id] < 0 && r->dtype == DT_F32 && ir_shape_eq(&n->shape, &r->shape)) {
            F->join[i] = r->id;
            joined[i] = true;
        }
        home[i] = root_of(F, i);
    }
    /* a joined value inlines its expression into its group's kernel: where that makes one
     * deeper than FUSE_MAX_DEPTH, the group's joins are undone */
    int *depth = calloc((size_t)nn + 1, sizeof *depth);
    bool *undo = calloc((size_t)nn + 1, sizeof *undo);
    if (!depth || !undo)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (is_source(n) || ir_ops[n->op].kind == OK_SINK)
            continue;
        int ri = home[i]; /* a stored node: its root; an inlined one: its consumers' (one,
                             when an operand joined a group: the operand's every consumer is
                             computed by that group) */
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            bool leaf = is_source(x) || (F->buf[x->id] && root_of(F, x->id) != ri);
            if (!leaf && depth[x->id] + 1 > depth[i])
                depth[i] = depth[x->id] + 1;
        }
        if (depth[i] > FUSE_MAX_DEPTH && ri >= 0)
            undo[ri] = true;
    }
    for (int i = 0; i < nn; i++) /* a join is to a root (a node joined to none) */
        if (joined[i] && undo[F->join[i]])
            F->join[i] = -1;
    free(depth);
    free(undo);
    free(home);
    free(start);
    free(list);
    free(fill);
    free(joined);
}

bool pass_fuse(ir_graph *g, ir_diag *d)
{
    int nn = g->n_nodes;
    fuse_state F = {g, calloc((size_t)nn + 1, sizeof(int)), calloc((size_t)nn + 1, sizeof(int)),
                    calloc((size_t)nn + 1, sizeof(bool)), malloc(((size_t)nn + 1) * sizeof(int)),
                    calloc((size_t)nn + 1, sizeof(bool))};
    if (!F.n_cons || !F.cons || !F.buf || !F.join || !F.lib)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++) {
        F.cons[i] = -1;
        F.join[i] = -1;
        g->nodes[i]->group = -1;
    }
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int j = n->in[k]->id;
            bool seen = false;
            for (int m = 0; m < k; m++)
                seen |= n->in[m] == n->in[k];
            if (!seen) {
                F.n_cons[j]++;
                F.cons[j] = F.cons[j] < 0 ? i : F.cons[j];
            }
        }
    }
    /* 1. buffers by nature */
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        ir_op_kind k = ir_ops[n->op].kind;
        if (k == OK_MATMUL || k == OK_ROW || k == OK_REDUCE || n->op == OP_attention || backward_kernel(n))
            make_buf(&F, n);
        if (n->op == OP_output)
            make_buf(&F, n->in[0]);
        if (n->op == OP_embedding || n->op == OP_cross_entropy || n->op == OP_cross_entropy_grad ||
            n->op == OP_embedding_grad)
            make_buf(&F, n->in[1]);
        if (n->op == OP_cache_write) /* a WRITE_ROWS step: contiguous operands and result */
            for (int k = 0; k < 3; k++)
                make_buf(&F, n->in[k]);
        if (n->op == OP_cache_write)
            make_buf(&F, n);
    }
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (F.n_cons[i] > 1 && ir_ops[n->op].kind != OK_SINK && !cheap(&F, n))
            make_buf(&F, n);
    }
    /* a value computed inline more than FUSE_MAX_DEPTH ops above its nearest buffer gets one:
     * a kernel's expression stays bounded (lowering recurses over it; LLVM compiles it), however
     * long an elementwise chain the model writes (a loop of 20,000 `x = x + x` once overflowed
     * lowering's stack) */
    int *depth = calloc((size_t)nn + 1, sizeof *depth);
    if (!depth)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (is_buf(n, &F) || ir_ops[n->op].kind == OK_SINK)
            continue;
        for (int k = 0; k < n->n_in; k++)
            if (!is_buf(n->in[k], &F) && depth[n->in[k]->id] + 1 > depth[i])
                depth[i] = depth[n->in[k]->id] + 1;
        if (depth[i] >= FUSE_MAX_DEPTH) {
            make_buf(&F, n);
            depth[i] = 0;
        }
    }
    free(depth);
    /* 2. epilogues (first: an attention writing a transposed layout makes its consumers'
     * reshapes free views), 3. library operands */
    epilogues(&F);
    attention_grads(&F);
    for (int i = 0; i < nn; i++)
        library_operands(&F, g->nodes[i]);
    /* 4. row prologue stores */
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (ir_ops[n->op].kind == OK_ROW && n->dtype == DT_F32)
            absorb(&F, n, n->in[0]);
    }
    /* 5. elementwise siblings */
    siblings(&F);
    /* 6. group ids, numbered in the order of each group's last node */
    int next = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *n = g->nodes[i];
        if (!F.buf[i] || F.join[i] >= 0)
            continue;
        n->group = next++;
    }
    /* members joined to a later node take that node's group (follow chains backwards) */
    for (int i = nn - 1; i >= 0; i--)
        if (F.join[i] >= 0)
            g->nodes[i]->group = g->nodes[F.join[i]]->group;
    free(F.n_cons);
    free(F.cons);
    free(F.buf);
    free(F.join);
    free(F.lib);
    (void)d;
    return true;
}
