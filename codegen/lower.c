/* lower.c — fused graph → execution plan + kernel IR (lower.h).
 *
 * The heart is elem(n, I): the kernel IR expression for the element at multi-index I of node
 * n. A node with a buffer that this kernel does not compute is a load at its buffer index;
 * anything else is built from its operands' elements, with index remapping for layout ops
 * (reshape through the linear index, transpose by permuting, slice by offset, broadcast by
 * zeroing, concat by a select over clamped operand indices), a data-dependent row index for
 * embedding, and a partner element plus sin/cos (angles in f64) for rope. The kernel IR
 * builder hash-conses, and a memo on (node, index) keeps shared subexpressions from being
 * walked twice.
 *
 * Kernel shapes: an elementwise kernel has grid [rows, last dim] (rank ≥ 2), [n] or [1]; a row
 * kernel grid [rows] and sequential loops over the last axis (softmax: max, sum, store;
 * layernorm: mean, variance, store; rmsnorm: mean square, store; cross_entropy: max, sum, and
 * a second one-point kernel for the mean over rows); a reduction grid [kept elements] and one
 * loop over the reduced ones. Members of a row group other than the row op are stored inside
 * loop 0 at the row op's input index. A GEMM group is a GEMM step; with an activation it gets
 * an epilogue kernel (gemm_epilogue): the members after the matmul, built by elem like any
 * elementwise kernel with the matmul's element loaded from C, stored back into C. The formulas
 * of elementwise ops are the kir_ID functions that ir/unary.def, binary.def and
 * unary_grad.def name: one a formula, used by every kernel and every backend.
 *
 * Training graphs: unary_grad is inlined like a unary op; layernorm_grad / rmsnorm_grad and
 * cross_entropy_grad are row kernels (plus a statistics or scale kernel); embedding_grad is a
 * SCATTER_ADD step, attention_grad one ATTENTION_GRAD step per group of the same operands
 * (with the forward attention's output when the plan stores it), and a sum over leading axes
 * of a buffer view a SUM_ROWS step (docs/backend.md, "Training steps").
 */
#include "codegen/lower.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/library.h"
#include "passes/fuse.h"
#include "ir/shape.h"

typedef struct {
    const ir_graph *g;
    ir_diag *d;
    cg_lowered *out;
    bool *stored;      /* per node: group >= 0 and used outside its group */
    int *buf;          /* per node: plan buffer, -1 */
    bool *checked;     /* per plan buffer: ids already range-checked */
    int cap_checked;
    int cap_kernels;
    bool ok;
} lower_ctx;

/* ---- plan building -------------------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

static int add_buffer(lower_ctx *L, const char *name, ir_dtype dt, int64_t numel, rt_buf_kind kind)
{
    rt_plan *p = &L->out->plan;
    ir_grow((void **)&p->bufs, &p->cap_bufs, p->n_bufs + 1, sizeof *p->bufs);
    p->bufs[p->n_bufs] = (rt_plan_buffer){xstrdup(name), dt, numel, kind, 0};
    ir_grow((void **)&L->checked, &L->cap_checked, p->n_bufs + 1, sizeof *L->checked);
    L->checked[p->n_bufs] = false;
    return p->n_bufs++;
}

static rt_plan_step *add_step(lower_ctx *L, rt_step_kind kind)
{
    rt_plan *p = &L->out->plan;
    ir_grow((void **)&p->steps, &p->cap_steps, p->n_steps + 1, sizeof *p->steps);
    rt_plan_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->gemm.bias.buf = -1;
    s->gemm.b_scales.buf = -1;
    s->attn.mask.buf = -1;
    return s;
}

static bool fail(lower_ctx *L, const ir_node *n, const char *fmt, const char *what)
{
    char msg[400];
    snprintf(msg, sizeof msg, fmt, what);
    ir_diag_error(L->d, n->loc.file, n->loc.line, n->loc.col, "cpu: %s (node %%%d %s)", msg, n->id,
                  ir_ops[n->op].mnemonic);
    L->ok = false;
    return false;
}

static bool is_buffer(const ir_node *n, void *ctx)
{
    const lower_ctx *L = ctx;
    return L->buf[n->id] >= 0;
}

static bool view(lower_ctx *L, const ir_node *n, pass_view *v)
{
    if (pass_view_of(n, is_buffer, L, v))
        return true;
    return fail(L, n, "%s is not a strided view of a buffer (was the fuse pass run?)", "operand");
}

static rt_plan_ref ref_of(lower_ctx *L, const pass_view *v) { return (rt_plan_ref){L->buf[v->base->id], v->offset}; }

/* Range-checks ids buffer b (values in [0, hi), or negative when allow_negative) once. */
static void check_ids(lower_ctx *L, const ir_node *ids, int64_t hi, bool allow_negative, const char *what)
{
    int b = L->buf[ids->id];
    if (b < 0) {
        fail(L, ids, "%s are not in a buffer (was the fuse pass run?)", what);
        return;
    }
    if (L->checked[b])
        return;
    L->checked[b] = true;
    rt_plan_step *s = add_step(L, RT_STEP_CHECK_IDS);
    s->check = (rt_plan_check){{b, 0}, ir_shape_numel(&ids->shape), 0, hi, allow_negative, xstrdup(what)};
}


/* ---- where steps come from (plan.h's rt_plan_origin) ----------------------------------------- */

static char *origin_loc(const lower_ctx *L, ir_loc loc)
{
    if (loc.line <= 0 || loc.file < 0 || loc.file >= L->d->n_src)
        return NULL;
    char buf[600];
    snprintf(buf, sizeof buf, "%s:%d", L->d->src[loc.file].name, loc.line);
    return xstrdup(buf);
}

/* Sets the origin of steps [first, plan.n_steps) that group grp (key: the node that decided its
 * lowering, e.g. the matmul) became: the op and location of key, the group's FLOPs and the bytes
 * of its operands from outside the group and of its stored results. */
static void set_origin(lower_ctx *L, int grp, const ir_node *key, int first)
{
    rt_plan *p = &L->out->plan;
    if (first >= p->n_steps)
        return;
    const ir_graph *g = L->g;
    double flops = 0, bytes = 0;
    bool *seen = calloc((size_t)g->n_nodes + 1, sizeof *seen);
    if (!seen)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->group != grp)
            continue;
        flops += ir_ops[n->op].cost(n);
        if (L->stored[i])
            bytes += (double)ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype);
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            if (x->group == grp || seen[x->id])
                continue;
            seen[x->id] = true;
            bytes += (double)ir_shape_numel(&x->shape) * ir_dtype_size(x->dtype);
        }
    }
    free(seen);
    const ir_node *last = NULL;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->group == grp)
            last = g->nodes[i];
    char type[300];
    int main_step = first; /* the step with the work: not a range check before it */
    while (main_step + 1 < p->n_steps && p->steps[main_step].kind == RT_STEP_CHECK_IDS)
        main_step++;
    for (int s = first; s < p->n_steps; s++) {
        rt_plan_origin *o = &p->steps[s].origin;
        o->op = xstrdup(ir_ops[key->op].mnemonic);
        o->scope = key->scope ? xstrdup(key->scope) : NULL;
        o->loc = origin_loc(L, key->loc);
        o->type = last ? xstrdup(ir_type_str(last->dtype, &last->shape, type, sizeof type)) : NULL;
        /* a group of two steps (cross_entropy: row losses, then their mean): the first has the work */
        o->flops = s == main_step ? flops : 0;
        o->bytes = s == main_step ? bytes : 0;
    }
}

/* ---- kernel building ------------------------------------------------------------------------- */

typedef struct {
    int node, rank;
    cg_val idx[IR_MAX_RANK];
    cg_val val;
} memo_entry;

typedef struct {
    lower_ctx *L;
    cg_kernel *k;
    int group;
    int *arg;                 /* per plan buffer: kernel arg, -1 */
    rt_plan_ref *args;        /* the kernel's args as plan refs */
    int n_args, cap_args;
    memo_entry *memo;
    int memo_cap, memo_n;
    /* a GEMM epilogue kernel: node epi_src (the matmul) is the element of arg epi_arg (C) */
    const ir_node *epi_src;
    int epi_arg;
    /* ids of gathers seen while building, to check before the kernel runs */
    const ir_node *ids[64];
    int64_t ids_hi[64];
    bool ids_neg[64];
    int n_ids;
} kgen;

static cg_type ctype(ir_dtype dt) { return cg_compute_type(dt); }

static int karg(kgen *K, int b, cg_access acc)
{
    if (K->arg[b] >= 0) {
        K->k->args[K->arg[b]].access |= acc;
        return K->arg[b];
    }
    const rt_plan_buffer *pb = &K->L->out->plan.bufs[b];
    char name[32];
    snprintf(name, sizeof name, "b%d", b);
    int a = cg_kernel_buffer(K->k, name, pb->dtype, acc, pb->numel);
    K->arg[b] = a;
    ir_grow((void **)&K->args, &K->cap_args, K->n_args + 1, sizeof *K->args);
    K->args[K->n_args++] = (rt_plan_ref){b, 0};
    return a;
}

static uint64_t memo_hash(int node, int rank, const cg_val *idx)
{
    uint64_t h = (uint64_t)node * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < rank; i++)
        h = (h ^ (uint64_t)(uint32_t)idx[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static memo_entry *memo_find(kgen *K, int node, int rank, const cg_val *idx, bool *found)
{
    if (2 * (K->memo_n + 1) > K->memo_cap) {
        int oc = K->memo_cap, nc = oc ? 2 * oc : 256;
        memo_entry *old = K->memo;
        K->memo = malloc(sizeof *K->memo * (size_t)nc);
        if (!K->memo)
            ir_unreachable("out of memory");
        for (int i = 0; i < nc; i++)
            K->memo[i].node = -1;
        K->memo_cap = nc;
        for (int i = 0; i < oc; i++)
            if (old[i].node >= 0) {
                uint64_t h = memo_hash(old[i].node, old[i].rank, old[i].idx);
                int j = (int)(h & (uint64_t)(nc - 1));
                while (K->memo[j].node >= 0)
                    j = (j + 1) & (nc - 1);
                K->memo[j] = old[i];
            }
        free(old);
    }
    uint64_t h = memo_hash(node, rank, idx);
    int j = (int)(h & (uint64_t)(K->memo_cap - 1));
    for (;; j = (j + 1) & (K->memo_cap - 1)) {
        memo_entry *e = &K->memo[j];
        if (e->node < 0) {
            *found = false;
            e->node = node;
            e->rank = rank;
            if (rank)
                memcpy(e->idx, idx, sizeof(cg_val) * (size_t)rank);
            K->memo_n++;
            return e;
        }
        if (e->node == node && e->rank == rank && (!rank || memcmp(e->idx, idx, sizeof(cg_val) * (size_t)rank) == 0)) {
            *found = true;
            return e;
        }
    }
}

/* Linear index of idx in a contiguous tensor of shape s (constant strides). */
static cg_val linear(cg_kernel *k, const ir_shape *s, const cg_val *idx)
{
    cg_val lin = cg_i64(k, 0);
    int64_t st = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        if (s->dim[d] != 1)
            lin = cg_add(k, lin, cg_mul(k, idx[d], cg_i64(k, st)));
        st *= s->dim[d];
    }
    return lin;
}

/* Splits linear index lin (in [0, numel)) into idx for shape s. */
static void delinear(cg_kernel *k, const ir_shape *s, cg_val lin, cg_val *idx)
{
    int64_t st = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        if (s->dim[d] == 1)
            idx[d] = cg_i64(k, 0);
        else {
            cg_val q = st == 1 ? lin : cg_div(k, lin, cg_i64(k, st));
            idx[d] = d == 0 ? q : cg_mod(k, q, cg_i64(k, s->dim[d]));
        }
        st *= s->dim[d];
    }
}

/* The buffer index of element idx of a view. */
static cg_val view_index(cg_kernel *k, const pass_view *v, const ir_shape *s, const cg_val *idx)
{
    cg_val at = cg_i64(k, v->offset);
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] != 1 && v->stride[d] != 0)
            at = cg_add(k, at, cg_mul(k, idx[d], cg_i64(k, v->stride[d])));
    return at;
}

/* Operand x of a broadcasting op with result shape out: its index from the result's. */
static void bcast_index(cg_kernel *k, const ir_shape *x, const ir_shape *out, const cg_val *idx, cg_val *xi)
{
    for (int d = 0; d < x->rank; d++) {
        int od = d + out->rank - x->rank;
        xi[d] = x->dim[d] == 1 && out->dim[od] != 1 ? cg_i64(k, 0) : idx[od];
    }
}

static cg_val elem(kgen *K, const ir_node *n, const cg_val *idx);

static cg_val const_of(cg_kernel *k, cg_type t, double v)
{
    return cg_type_is_float(t) ? cg_const_float(k, t, v) : cg_const_int(k, t, (int64_t)v);
}

/* ---- the formulas: kernel IR of unary.def, binary.def and unary_grad.def ------------------------ */

#define UNARY(id, epi) static cg_val kir_##id(cg_kernel *k, const ir_node *n, cg_val x);
#include "ir/unary.def"
#undef UNARY
#define BINARY(id) static cg_val kir_##id(cg_kernel *k, const ir_node *n, cg_val a, cg_val b);
#include "ir/binary.def"
#undef BINARY
#define UNARY_GRAD(fn) static cg_val kir_d_##fn(cg_kernel *k, cg_val x);
#include "ir/unary_grad.def"
#undef UNARY_GRAD

static cg_val kir_neg(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_NEG, x); }
static cg_val kir_abs(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_ABS, x); }
static cg_val kir_exp(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_EXP, x); }
static cg_val kir_log(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_LOG, x); }
static cg_val kir_sqrt(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_SQRT, x); }
static cg_val kir_rsqrt(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_RSQRT, x); }
static cg_val kir_recip(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_RECIP, x); }
static cg_val kir_tanh(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_TANH, x); }
static cg_val kir_sigmoid(cg_kernel *k, const ir_node *n, cg_val x) { return cg_unary(k, CG_SIGMOID, x); }
static cg_val kir_relu(cg_kernel *k, const ir_node *n, cg_val x)
{
    return cg_binary(k, CG_MAX, x, const_of(k, ctype(n->dtype), 0));
}
static cg_val kir_silu(cg_kernel *k, const ir_node *n, cg_val x) { return cg_mul(k, x, cg_unary(k, CG_SIGMOID, x)); }
/* A cast to a half type rounds where it is computed (also in a register, when fused: a store is
 * not where it rounds then); other casts convert. */
static cg_val kir_cast(cg_kernel *k, const ir_node *n, cg_val x)
{
    cg_val v = cg_cast(k, ctype(n->dtype), x);
    ir_dtype from = n->in[0]->dtype;
    if ((n->dtype == DT_BF16 || n->dtype == DT_F16) && ir_dtype_is_float(from) && from != n->dtype)
        v = cg_unary(k, n->dtype == DT_BF16 ? CG_RBF16 : CG_RF16, v);
    return v;
}

/* gelu {approx}: ½x(1 + erf(x/√2)) or ½x(1 + tanh(√(2/π)(x + 0.044715x³))) */
static cg_val kir_gelu(cg_kernel *k, const ir_node *n, cg_val x)
{
    cg_val half_x = cg_mul(k, cg_f32(k, 0.5), x), inner;
    if (strcmp(ir_attr_str(n, "approx"), "erf") == 0)
        inner = cg_unary(k, CG_ERF, cg_mul(k, x, cg_f32(k, M_SQRT1_2)));
    else {
        cg_val x3 = cg_mul(k, cg_mul(k, x, x), x);
        cg_val u = cg_mul(k, cg_f32(k, 0.7978845608028654), cg_add(k, x, cg_mul(k, cg_f32(k, 0.044715), x3)));
        inner = cg_unary(k, CG_TANH, u);
    }
    return cg_mul(k, half_x, cg_add(k, cg_f32(k, 1.0), inner));
}

static cg_val kir_add(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_add(k, a, b); }
static cg_val kir_sub(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_sub(k, a, b); }
static cg_val kir_mul(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_mul(k, a, b); }
static cg_val kir_pow(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_binary(k, CG_POW, a, b); }
static cg_val kir_maximum(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_binary(k, CG_MAX, a, b); }
static cg_val kir_minimum(cg_kernel *k, const ir_node *n, cg_val a, cg_val b) { return cg_binary(k, CG_MIN, a, b); }

static cg_val kir_div(cg_kernel *k, const ir_node *n, cg_val a, cg_val b)
{
    cg_type t = ctype(n->dtype);
    if (cg_type_is_int(t)) /* the reference reports division by zero; never trap here */
        b = cg_select(k, cg_binary(k, CG_EQ, b, const_of(k, t, 0)), const_of(k, t, 1), b);
    return cg_div(k, a, b);
}

/* f'(x) of unary_grad {fn}, as ir/interp.c's ref_d_fn */
static cg_val kir_d_abs(cg_kernel *k, cg_val x)
{
    cg_val zero = cg_f32(k, 0), one = cg_f32(k, 1);
    cg_val neg = cg_select(k, cg_binary(k, CG_LT, x, zero), cg_f32(k, -1), zero);
    return cg_select(k, cg_binary(k, CG_GT, x, zero), one, neg);
}

static cg_val kir_d_relu(cg_kernel *k, cg_val x)
{
    cg_val zero = cg_f32(k, 0), one = cg_f32(k, 1);
    return cg_select(k, cg_binary(k, CG_GT, x, zero), one, zero);
}

/* Φ(x) + x φ(x) */
static cg_val kir_d_gelu_erf(cg_kernel *k, cg_val x)
{
    cg_val one = cg_f32(k, 1);
    cg_val cdf = cg_mul(k, cg_f32(k, 0.5), cg_add(k, one, cg_unary(k, CG_ERF, cg_mul(k, x, cg_f32(k, M_SQRT1_2)))));
    cg_val e = cg_unary(k, CG_EXP, cg_mul(k, cg_f32(k, -0.5), cg_mul(k, x, x)));
    cg_val pdf = cg_mul(k, cg_f32(k, 0.3989422804014327), e);
    return cg_add(k, cdf, cg_mul(k, x, pdf));
}

/* ½(1 + t) + ½x(1 − t²)·c(1 + 3·0.044715x²), t = tanh(c(x + 0.044715x³)), c = √(2/π) */
static cg_val kir_d_gelu_tanh(cg_kernel *k, cg_val x)
{
    cg_val one = cg_f32(k, 1), c = cg_f32(k, 0.7978845608028654), x2 = cg_mul(k, x, x);
    cg_val t = cg_unary(k, CG_TANH, cg_mul(k, c, cg_add(k, x, cg_mul(k, cg_f32(k, 0.044715), cg_mul(k, x2, x)))));
    cg_val du = cg_mul(k, c, cg_add(k, one, cg_mul(k, cg_f32(k, 3 * 0.044715), x2)));
    cg_val half = cg_f32(k, 0.5);
    cg_val first = cg_mul(k, half, cg_add(k, one, t));
    return cg_add(k, first, cg_mul(k, cg_mul(k, cg_mul(k, half, x), cg_sub(k, one, cg_mul(k, t, t))), du));
}

/* y = f(x) for unary node n */
static cg_val unary(cg_kernel *k, const ir_node *n, cg_val x)
{
    switch (n->op) {
#define UNARY(id, epi) case OP_##id: return kir_##id(k, n, x);
#include "ir/unary.def"
#undef UNARY
    default: ir_unreachable("lower: not an OK_UNARY op");
    }
}

static cg_val binary(cg_kernel *k, const ir_node *n, cg_val a, cg_val b)
{
    switch (n->op) {
#define BINARY(id) case OP_##id: return kir_##id(k, n, a, b);
#include "ir/binary.def"
#undef BINARY
    default: ir_unreachable("lower: not an OK_BINARY op");
    }
}

/* unary_grad: dy · fn'(x), as ir/interp.c's eval_unary_grad. */
static cg_val unary_grad(cg_kernel *k, const ir_node *n, cg_val x, cg_val dy)
{
    switch (ir_deriv_lookup(ir_attr_str(n, "fn"))) {
#define UNARY_GRAD(fn) case IR_DERIV_##fn: return cg_mul(k, dy, kir_d_##fn(k, x));
#include "ir/unary_grad.def"
#undef UNARY_GRAD
    case IR_DERIV_COUNT: break;
    }
    ir_unreachable("lower: unary_grad with an unknown fn (the shape rule rejects it)");
}

static cg_val elem_uncached(kgen *K, const ir_node *n, const cg_val *idx)
{
    lower_ctx *L = K->L;
    cg_kernel *k = K->k;
    cg_type t = ctype(n->dtype);
    const ir_shape *s = &n->shape;
    cg_val xi[IR_MAX_RANK], yi[IR_MAX_RANK];
    if (n == K->epi_src) {
        pass_view v;
        pass_view_contiguous(n, &v);
        return cg_load(k, K->epi_arg, view_index(k, &v, s, idx));
    }
    if (L->buf[n->id] >= 0 && n->group != K->group) {
        pass_view v;
        pass_view_contiguous(n, &v);
        return cg_load(k, karg(K, L->buf[n->id], CG_IN), view_index(k, &v, s, idx));
    }
    switch (ir_ops[n->op].kind) {
    case OK_UNARY: return unary(k, n, elem(K, n->in[0], idx));
    case OK_BINARY:
        bcast_index(k, &n->in[0]->shape, s, idx, xi);
        bcast_index(k, &n->in[1]->shape, s, idx, yi);
        return binary(k, n, elem(K, n->in[0], xi), elem(K, n->in[1], yi));
    default: break;
    }
    const ir_shape *xs = n->n_in ? &n->in[0]->shape : NULL;
    switch (n->op) {
    case OP_const: return const_of(k, t, ir_attr_float(n, "value"));
    case OP_iota: return cg_cast(k, t, idx[ir_axis_norm(ir_attr_int(n, "axis"), s->rank)]);
    case OP_reshape: delinear(k, xs, linear(k, s, idx), xi); return elem(K, n->in[0], xi);
    case OP_transpose: {
        const ir_attr *perm = ir_attr_get(n, "perm");
        for (int i = 0; i < s->rank; i++)
            xi[ir_axis_norm(perm->ints[i], s->rank)] = idx[i];
        return elem(K, n->in[0], xi);
    }
    case OP_slice: {
        int ax = ir_axis_norm(ir_attr_int(n, "axis"), s->rank);
        int64_t lo, hi;
        ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), xs->dim[ax], &lo, &hi);
        memcpy(xi, idx, sizeof(cg_val) * (size_t)s->rank);
        xi[ax] = cg_add(k, idx[ax], cg_i64(k, lo));
        return elem(K, n->in[0], xi);
    }
    case OP_broadcast: bcast_index(k, xs, s, idx, xi); return elem(K, n->in[0], xi);
    case OP_concat: {
        int ax = ir_axis_norm(ir_attr_int(n, "axis"), s->rank);
        cg_val result = -1;
        int64_t off = 0;
        for (int i = 0; i < n->n_in; i++) {
            int64_t size = n->in[i]->shape.dim[ax];
            if (size == 0)
                continue;
            memcpy(xi, idx, sizeof(cg_val) * (size_t)s->rank);
            cg_val rel = cg_sub(k, idx[ax], cg_i64(k, off));
            xi[ax] = cg_binary(k, CG_MIN, cg_binary(k, CG_MAX, rel, cg_i64(k, 0)), cg_i64(k, size - 1));
            cg_val v = elem(K, n->in[i], xi);
            result = result < 0 ? v : cg_select(k, cg_binary(k, CG_LT, idx[ax], cg_i64(k, off)), result, v);
            off += size;
        }
        return result;
    }
    case OP_embedding: {
        const ir_node *table = n->in[0], *ids = n->in[1];
        int64_t V = table->shape.dim[0];
        cg_val id = cg_cast(k, CG_I64, elem(K, ids, idx));
        if (K->n_ids < 64) {
            K->ids[K->n_ids] = ids;
            K->ids_hi[K->n_ids] = V;
            K->ids_neg[K->n_ids++] = false;
        }
        xi[0] = cg_binary(k, CG_MIN, cg_binary(k, CG_MAX, id, cg_i64(k, 0)), cg_i64(k, V - 1));
        xi[1] = idx[s->rank - 1];
        return elem(K, table, xi);
    }
    case OP_rope: {
        int r = s->rank;
        int64_t D = s->dim[r - 1], half = D / 2;
        cg_val i = idx[r - 1], lt = cg_binary(k, CG_LT, i, cg_i64(k, half));
        /* frequency index i mod half and partner (i + half) mod D: index arithmetic whose
         * range the validator can bound (a select of i - half could not be) */
        cg_val j = cg_mod(k, i, cg_i64(k, half));
        memcpy(xi, idx, sizeof(cg_val) * (size_t)r);
        xi[r - 1] = cg_mod(k, cg_add(k, i, cg_i64(k, half)), cg_i64(k, D));
        cg_val x = elem(K, n->in[0], idx), partner = elem(K, n->in[0], xi);
        cg_val pos = cg_cast(k, CG_F64, elem(K, n->in[1], &idx[r - 2]));
        cg_val expo = cg_mul(k, cg_cast(k, CG_F64, j), cg_const_float(k, CG_F64, -2.0 / (double)D));
        cg_val f = cg_binary(k, CG_POW, cg_const_float(k, CG_F64, ir_attr_float(n, "theta")), expo);
        cg_val a = cg_mul(k, pos, f);
        cg_val c = cg_cast(k, CG_F32, cg_unary(k, CG_COS, a)), sn = cg_cast(k, CG_F32, cg_unary(k, CG_SIN, a));
        cg_val sign = cg_select(k, lt, cg_f32(k, -1.0), cg_f32(k, 1.0));
        return cg_add(k, cg_mul(k, x, c), cg_mul(k, cg_mul(k, sign, partner), sn));
    }
    case OP_unary_grad: return unary_grad(k, n, elem(K, n->in[0], idx), elem(K, n->in[1], idx));
    case OP_dequantize: {
        /* ir/interp.c's eval_dequantize: code (an i8, or a nibble less 8) times its group's scale */
        const ir_node *q = n->in[0], *sc = n->in[1];
        int axis = (int)ir_attr_int(n, "axis");
        int64_t g = s->dim[axis] / sc->shape.dim[axis];
        cg_val code;
        if (ir_attr_int(n, "bits") == 8)
            code = elem(K, q, idx);
        else {
            xi[0] = idx[0];
            xi[1] = cg_binary(k, CG_DIV, idx[1], cg_i64(k, 2));
            cg_val byte = elem(K, q, xi);
            cg_val odd = cg_binary(k, CG_EQ, cg_mod(k, idx[1], cg_i64(k, 2)), cg_i64(k, 1));
            cg_val nib = cg_select(k, odd, cg_binary(k, CG_DIV, byte, cg_const_int(k, CG_I32, 16)),
                                   cg_mod(k, byte, cg_const_int(k, CG_I32, 16)));
            code = cg_sub(k, nib, cg_const_int(k, CG_I32, 8));
        }
        yi[0] = axis == 0 ? cg_binary(k, CG_DIV, idx[0], cg_i64(k, g)) : idx[0];
        yi[1] = axis == 1 ? cg_binary(k, CG_DIV, idx[1], cg_i64(k, g)) : idx[1];
        return cg_mul(k, cg_cast(k, CG_F32, code), elem(K, sc, yi));
    }
    default:
        fail(L, n, "%s has no buffer here and cannot be inlined (was the fuse pass run?)", "value");
        return cg_const_float(k, CG_F32, 0);
    }
}

static cg_val elem(kgen *K, const ir_node *n, const cg_val *idx)
{
    bool found;
    memo_entry *e = memo_find(K, n->id, n->shape.rank, idx, &found);
    if (found)
        return e->val;
    e->val = -1;
    cg_val v = elem_uncached(K, n, idx);
    /* the table may have grown meanwhile: look the entry up again */
    e = memo_find(K, n->id, n->shape.rank, idx, &found);
    e->val = v;
    return v;
}

/* Stores value v as element idx of stored node n (contiguous buffer). */
static void store(kgen *K, const ir_node *n, const cg_val *idx, cg_val v)
{
    pass_view cv;
    pass_view_contiguous(n, &cv);
    int a = karg(K, K->L->buf[n->id], CG_OUT);
    cg_store(K->k, a, view_index(K->k, &cv, &n->shape, idx), cg_cast(K->k, ctype(n->dtype), v));
}

/* A kernel for group `group` called `name`. */
static void kgen_init_named(kgen *K, lower_ctx *L, int group, const char *name)
{
    memset(K, 0, sizeof *K);
    K->L = L;
    K->group = group;
    K->epi_arg = -1;
    K->k = cg_kernel_new(name);
    K->arg = malloc(sizeof(int) * ((size_t)L->out->plan.n_bufs + 1));
    if (!K->arg)
        ir_unreachable("out of memory");
    for (int i = 0; i < L->out->plan.n_bufs; i++)
        K->arg[i] = -1;
}

/* A kernel for group `group` named "k<step>_<what>", <step> the index of the next step. */
static void kgen_init(kgen *K, lower_ctx *L, int group, const char *what)
{
    char name[80];
    snprintf(name, sizeof name, "k%d_%s", L->out->plan.n_steps, what);
    kgen_init_named(K, L, group, name);
}

/* Validates the kernel, adds the id checks it needs and the kernel to the lowered ones; returns
 * its plan form (the caller makes it a step or a GEMM's epilogue). */
static rt_plan_kernel kgen_kernel(kgen *K)
{
    lower_ctx *L = K->L;
    cg_kernel *k = K->k;
    free(K->arg);
    free(K->memo);
    for (int i = 0; i < K->n_ids; i++)
        check_ids(L, K->ids[i], K->ids_hi[i], K->ids_neg[i], K->ids_neg[i] ? "cross_entropy: target" : "embedding");
    cg_kernel_dce(k);
    if (!cg_kernel_validate(k, L->d)) {
        cg_kernel_print(k, stderr);
        ir_diag_print(L->d, stderr);
        ir_unreachable("lower: built an invalid kernel");
    }
    if (L->out->n_kernels == L->cap_kernels) {
        L->cap_kernels = L->cap_kernels ? 2 * L->cap_kernels : 16;
        L->out->kernels = realloc(L->out->kernels, sizeof *L->out->kernels * (size_t)L->cap_kernels);
        if (!L->out->kernels)
            ir_unreachable("out of memory");
    }
    L->out->kernels[L->out->n_kernels++] = k;
    rt_plan_kernel pk = {xstrdup(k->name), K->n_args, K->args, k->dim[0], 0, false};
    int64_t work = 1;
    for (int d = 1; d < k->n_dims; d++)
        work *= k->dim[d];
    int64_t loops = 0;
    for (int l = 0; l < k->n_loops; l++)
        loops += k->loop[l];
    pk.work = work * (loops ? loops : 1);
    pk.loops = k->n_loops > 0;
    return pk;
}

/* The kernel IR of the library step just added (codegen/library.c), after its kernels. */
static void library_step(lower_ctx *L)
{
    cg_library_kernels(&L->out->plan, L->out->plan.n_steps - 1, &L->out->kernels, &L->out->n_kernels, &L->cap_kernels);
}

/* kgen_kernel, as a kernel step. */
static void kgen_finish(kgen *K)
{
    rt_plan_kernel pk = kgen_kernel(K);
    add_step(K->L, RT_STEP_KERNEL)->kernel = pk;
}

/* ---- the group kinds ------------------------------------------------------------------------- */

/* Stored members of group g in node order. */
static int stored_members(lower_ctx *L, int g, const ir_node **m, int cap)
{
    int n = 0;
    for (int i = 0; i < L->g->n_nodes; i++)
        if (L->g->nodes[i]->group == g && L->stored[i] && n < cap)
            m[n++] = L->g->nodes[i];
    return n;
}

/* The grid of an elementwise kernel over shape s — [rows, last dim] (rank >= 2), [n] or [1] —
 * and the element index of its grid point in idx. */
static void elementwise_grid(cg_kernel *k, const ir_shape *s, cg_val *idx)
{
    int r = s->rank;
    if (r == 0)
        cg_kernel_dim(k, 1);
    else if (r == 1) {
        cg_kernel_dim(k, s->dim[0]);
        idx[0] = cg_pidx(k, 0);
    } else {
        ir_shape rows = *s;
        rows.rank = r - 1;
        cg_kernel_dim(k, ir_shape_numel(&rows));
        cg_kernel_dim(k, s->dim[r - 1]);
        delinear(k, &rows, cg_pidx(k, 0), idx);
        idx[r - 1] = cg_pidx(k, 1);
    }
}

/* Elementwise kernel: every stored member (all of the anchor's shape) at each index. */
static void lower_elementwise(lower_ctx *L, int g, const ir_node *anchor)
{
    const ir_shape *s = &anchor->shape;
    if (ir_shape_numel(s) == 0)
        return;
    kgen K;
    kgen_init(&K, L, g, ir_ops[anchor->op].mnemonic);
    cg_val idx[IR_MAX_RANK];
    elementwise_grid(K.k, s, idx);
    const ir_node *m[16];
    int nm = stored_members(L, g, m, 16);
    for (int i = 0; i < nm; i++) {
        if (!ir_shape_eq(&m[i]->shape, s))
            fail(L, m[i], "%s of another shape in an elementwise group", "member");
        else
            store(&K, m[i], idx, elem(&K, m[i], idx));
    }
    kgen_finish(&K);
}

/* Row kernel for row op R; other stored members are stored in loop 0. */
static void lower_row(lower_ctx *L, int g, const ir_node *R)
{
    const ir_node *x = R->in[0];
    const ir_shape *xs = &x->shape;
    int r = xs->rank;
    int64_t C = xs->dim[r - 1], rows = C ? ir_shape_numel(xs) / C : 0;
    if (rows == 0 || C == 0) {
        if (R->op != OP_cross_entropy)
            return;
        fail(L, R, "%s over an empty tensor is not supported", "cross_entropy");
        return;
    }
    kgen K;
    kgen_init(&K, L, g, ir_ops[R->op].mnemonic);
    cg_kernel *k = K.k;
    cg_kernel_dim(k, rows);
    ir_shape rs = *xs;
    rs.rank = r - 1;
    cg_val ri[IR_MAX_RANK], id[4][IR_MAX_RANK];
    delinear(k, &rs, cg_pidx(k, 0), ri);
    int nloops = R->op == OP_rmsnorm || R->op == OP_cross_entropy ? 2 : 3;
    for (int l = 0; l < nloops; l++) {
        cg_kernel_loop(k, C);
        memcpy(id[l], ri, sizeof(cg_val) * (size_t)(r - 1));
        id[l][r - 1] = cg_lidx(k, l);
    }
    /* members stored alongside */
    const ir_node *m[16];
    int nm = stored_members(L, g, m, 16);
    for (int i = 0; i < nm; i++)
        if (m[i] != R) {
            if (!ir_shape_eq(&m[i]->shape, xs))
                fail(L, m[i], "%s of another shape in a row group", "member");
            else
                store(&K, m[i], id[0], elem(&K, m[i], id[0]));
        }
    cg_val inv_c = cg_f32(k, 1.0 / (double)C);
    switch (R->op) {
    case OP_softmax: {
        cg_val mx = cg_reduce(k, CG_RED_MAX, 0, elem(&K, x, id[0]));
        cg_val sum = cg_reduce(k, CG_RED_SUM, 1, cg_unary(k, CG_EXP, cg_sub(k, elem(&K, x, id[1]), mx)));
        cg_val y = cg_div(k, cg_unary(k, CG_EXP, cg_sub(k, elem(&K, x, id[2]), mx)), sum);
        store(&K, R, id[2], y);
        break;
    }
    case OP_layernorm: {
        cg_val mean = cg_mul(k, cg_reduce(k, CG_RED_SUM, 0, elem(&K, x, id[0])), inv_c);
        cg_val d1 = cg_sub(k, elem(&K, x, id[1]), mean);
        cg_val var = cg_mul(k, cg_reduce(k, CG_RED_SUM, 1, cg_mul(k, d1, d1)), inv_c);
        cg_val rstd = cg_unary(k, CG_RSQRT, cg_add(k, var, cg_f32(k, ir_attr_float(R, "eps"))));
        cg_val c2 = id[2][r - 1];
        cg_val y = cg_mul(k, cg_sub(k, elem(&K, x, id[2]), mean), rstd);
        y = cg_add(k, cg_mul(k, y, elem(&K, R->in[1], &c2)), elem(&K, R->in[2], &c2));
        store(&K, R, id[2], y);
        break;
    }
    case OP_rmsnorm: {
        cg_val x0 = elem(&K, x, id[0]);
        cg_val ms = cg_mul(k, cg_reduce(k, CG_RED_SUM, 0, cg_mul(k, x0, x0)), inv_c);
        cg_val rr = cg_unary(k, CG_RSQRT, cg_add(k, ms, cg_f32(k, ir_attr_float(R, "eps"))));
        cg_val c1 = id[1][r - 1];
        store(&K, R, id[1], cg_mul(k, cg_mul(k, elem(&K, x, id[1]), rr), elem(&K, R->in[1], &c1)));
        break;
    }
    case OP_cross_entropy: {
        const ir_node *tg = R->in[1];
        int lossb = add_buffer(L, "cross_entropy row losses", DT_F32, rows, RT_BUF_ACTIVATION);
        int validb = add_buffer(L, "cross_entropy row counts", DT_F32, rows, RT_BUF_ACTIVATION);
        K.arg = realloc(K.arg, sizeof(int) * (size_t)L->out->plan.n_bufs);
        if (!K.arg)
            ir_unreachable("out of memory");
        K.arg[lossb] = K.arg[validb] = -1;
        cg_val mx = cg_reduce(k, CG_RED_MAX, 0, elem(&K, x, id[0]));
        cg_val sum = cg_reduce(k, CG_RED_SUM, 1, cg_unary(k, CG_EXP, cg_sub(k, elem(&K, x, id[1]), mx)));
        cg_val lse = cg_add(k, mx, cg_unary(k, CG_LOG, sum));
        cg_val t = cg_cast(k, CG_I64, elem(&K, tg, ri));
        if (K.n_ids < 64) {
            K.ids[K.n_ids] = tg;
            K.ids_hi[K.n_ids] = C;
            K.ids_neg[K.n_ids++] = true;
        }
        cg_val valid = cg_binary(k, CG_GE, t, cg_i64(k, 0));
        cg_val ti[IR_MAX_RANK];
        memcpy(ti, ri, sizeof(cg_val) * (size_t)(r - 1));
        ti[r - 1] = cg_binary(k, CG_MIN, cg_binary(k, CG_MAX, t, cg_i64(k, 0)), cg_i64(k, C - 1));
        cg_val loss = cg_select(k, valid, cg_sub(k, lse, elem(&K, x, ti)), cg_f32(k, 0));
        cg_val row = cg_pidx(k, 0);
        cg_store(k, karg(&K, lossb, CG_OUT), row, loss);
        cg_store(k, karg(&K, validb, CG_OUT), row, cg_select(k, valid, cg_f32(k, 1), cg_f32(k, 0)));
        kgen_finish(&K);
        /* the mean over rows with a target, in one grid point */
        kgen_init(&K, L, g, "cross_entropy_mean");
        k = K.k;
        cg_kernel_dim(k, 1);
        cg_kernel_loop(k, rows);
        cg_val j = cg_lidx(k, 0);
        cg_val tot = cg_reduce(k, CG_RED_SUM, 0, cg_load(k, karg(&K, lossb, CG_IN), j));
        cg_val cnt = cg_reduce(k, CG_RED_SUM, 0, cg_load(k, karg(&K, validb, CG_IN), j));
        store(&K, R, NULL, cg_div(k, tot, cg_binary(k, CG_MAX, cnt, cg_f32(k, 1))));
        break;
    }
    default: ir_unreachable("lower_row: not a row op");
    }
    kgen_finish(&K);
}

/* A sum of f32 x over leading axes whose input is a buffer view of evenly spaced rows of
 * the kept elements (contiguous): a SUM_ROWS step (column sums vectorized along the rows,
 * e.g. bias gradients) rather than a kernel reading one column per grid point. */
static bool lower_sum_rows(lower_ctx *L, const ir_node *R, const bool *mask)
{
    const ir_node *x = R->in[0];
    const ir_shape *xs = &x->shape;
    pass_view v;
    if (R->op != OP_sum || R->dtype != DT_F32 || !pass_view_of(x, is_buffer, L, &v))
        return false;
    int64_t width = 1, rows = 1, expect = 1, row_stride = -1;
    bool seen_reduced = false;
    for (int d = xs->rank - 1; d >= 0; d--) { /* innermost first: kept dims, then reduced */
        if (xs->dim[d] == 1)
            continue;
        if (!mask[d]) {
            if (seen_reduced)
                return false;
            if (v.stride[d] != expect)
                return false;
            expect *= xs->dim[d];
            width *= xs->dim[d];
            continue;
        }
        seen_reduced = true; /* from here on, reduced dims only */
        if (row_stride < 0) {
            row_stride = v.stride[d];
            if (row_stride < width)
                return false;
            expect = row_stride;
        } else if (v.stride[d] != expect)
            return false;
        expect *= xs->dim[d];
        rows *= xs->dim[d];
    }
    rt_plan_step *s = add_step(L, RT_STEP_SUM_ROWS);
    s->sum_rows = (rt_plan_sum_rows){ref_of(L, &v), {L->buf[R->id], 0}, rows, width, row_stride < 0 ? width : row_stride};
    library_step(L);
    return true;
}

/* sum/mean/max: grid over the kept elements, one loop over the reduced ones. */
static void lower_reduce(lower_ctx *L, int g, const ir_node *R)
{
    const ir_node *x = R->in[0];
    const ir_shape *xs = &x->shape;
    bool mask[IR_MAX_RANK];
    ir_reduce_mask(R, xs->rank, mask);
    ir_shape kept = {0}, red = {0};
    for (int d = 0; d < xs->rank; d++) {
        ir_shape *s = mask[d] ? &red : &kept;
        s->dim[s->rank++] = xs->dim[d];
    }
    int64_t nk = ir_shape_numel(&kept), nr = ir_shape_numel(&red);
    if (nk == 0)
        return;
    if (nr == 0) {
        fail(L, R, "%s over zero elements is not supported", ir_ops[R->op].mnemonic);
        return;
    }
    if (lower_sum_rows(L, R, mask))
        return;
    kgen K;
    kgen_init(&K, L, g, ir_ops[R->op].mnemonic);
    cg_kernel *k = K.k;
    cg_kernel_dim(k, nk);
    cg_kernel_loop(k, nr);
    cg_val ki[IR_MAX_RANK], rj[IR_MAX_RANK], idx[IR_MAX_RANK];
    delinear(k, &kept, cg_pidx(k, 0), ki);
    delinear(k, &red, cg_lidx(k, 0), rj);
    int a = 0, b = 0;
    for (int d = 0; d < xs->rank; d++)
        idx[d] = mask[d] ? rj[b++] : ki[a++];
    cg_red fold = CG_RED_SUM;
    bool mean = false;
    switch (R->op) { /* the fold of ir/reduce.def */
#define REDUCE(id, f, is_mean)                                                                                     \
    case OP_##id:                                                                                                  \
        fold = CG_RED_##f;                                                                                         \
        mean = is_mean;                                                                                            \
        break;
#include "ir/reduce.def"
#undef REDUCE
    default: ir_unreachable("lower_reduce: not an OK_REDUCE op");
    }
    cg_val v = cg_reduce(k, fold, 0, elem(&K, x, idx));
    if (mean)
        v = cg_div(k, v, const_of(k, ctype(R->dtype), (double)nr));
    int ob = karg(&K, L->buf[R->id], CG_OUT);
    cg_store(k, ob, cg_pidx(k, 0), cg_cast(k, ctype(R->dtype), v));
    kgen_finish(&K);
}

/* The name of a GEMM epilogue's activation, for libraries that have it built in (plan.h);
 * RT_ACT_NONE for one that no library has: the epilogue kernel is the formula either way. */
static rt_act act_of(const ir_node *n)
{
    switch (n->op) {
    case OP_relu: return RT_ACT_RELU;
    case OP_silu: return RT_ACT_SILU;
    case OP_gelu: return strcmp(ir_attr_str(n, "approx"), "erf") == 0 ? RT_ACT_GELU_ERF : RT_ACT_GELU_TANH;
    default: return RT_ACT_NONE;
    }
}

/* The epilogue kernel of GEMM step `step` (group g, matmul mm, stored member last): the
 * group's members after the matmul — bias add, activation, as kir_add and kir_ID build them for
 * any elementwise kernel — over C in place, with mm's element read from C as the GEMM left it.
 * An elementwise grid over C's shape: dim 0 runs over its batch·M rows. */
static rt_plan_kernel gemm_epilogue(lower_ctx *L, int g, const ir_node *mm, const ir_node *last, int step)
{
    char name[80];
    snprintf(name, sizeof name, "k%d_%s_epilogue", step, ir_ops[last->op].mnemonic); /* after its GEMM step */
    kgen K;
    kgen_init_named(&K, L, g, name);
    K.epi_src = mm;
    K.epi_arg = karg(&K, L->buf[last->id], CG_INOUT);
    cg_val idx[IR_MAX_RANK];
    elementwise_grid(K.k, &last->shape, idx);
    store(&K, last, idx, elem(&K, last, idx));
    return kgen_kernel(&K);
}

/* GEMM group: maybe B's dequantize (fuse.c), the matmul, then maybe a bias add and an
 * activation; the last member is stored. */
static void lower_gemm(lower_ctx *L, int g, const ir_node *mm, const ir_node *last)
{
    if (mm->dtype != DT_F32 && mm->dtype != DT_F16 && mm->dtype != DT_BF16) { /* half: f32 accumulation */
        fail(L, mm, "%s on a non-f32 type is not supported", "matmul");
        return;
    }
    const ir_node *a = mm->in[0], *b = mm->in[1];
    const ir_node *deq = b->op == OP_dequantize && b->group == g ? b : NULL; /* B as codes and scales */
    pass_view va, vb;
    if (!view(L, a, &va) || !view(L, deq ? deq->in[0] : b, &vb))
        return;
    int ta = ir_attr_int(mm, "transpose_a") != 0, tb = ir_attr_int(mm, "transpose_b") != 0;
    rt_plan_step *s = add_step(L, RT_STEP_GEMM);
    rt_plan_gemm *G = &s->gemm;
    const ir_shape *os = &mm->shape;
    int r = os->rank;
    G->M = os->dim[r - 2];
    G->N = os->dim[r - 1];
    G->K = a->shape.dim[a->shape.rank - (ta ? 2 : 1)];
    if (deq) { /* packed codes (fuse.c checked): one scale per group of codes along K */
        const ir_node *sc = deq->in[1];
        int kaxis = tb ? 1 : 0;
        G->trans_b = tb;
        G->ldb = b->shape.dim[1];
        G->qbits = (int)ir_attr_int(deq, "bits");
        G->qgroup = b->shape.dim[kaxis] / sc->shape.dim[kaxis];
        G->b_scales = (rt_plan_ref){L->buf[sc->id], 0};
    }
    if (!pass_matmul_operand(a, &va, ta, &G->trans_a, &G->lda) ||
        (!deq && !pass_matmul_operand(b, &vb, tb, &G->trans_b, &G->ldb))) {
        fail(L, mm, "%s operand layout is not one BLAS takes (was the fuse pass run?)", "matmul");
        return;
    }
    G->ldc = G->N;
    G->alpha = 1;
    G->beta = 0;
    /* batch dims, outermost first; size-1 dims dropped */
    int64_t sc = G->M * G->N;
    int nb = 0;
    int64_t bd[IR_MAX_RANK], sa[IR_MAX_RANK], sb[IR_MAX_RANK], scs[IR_MAX_RANK];
    for (int d = r - 3; d >= 0; d--) {
        int da = d - (r - a->shape.rank), db = d - (r - b->shape.rank);
        if (os->dim[d] != 1) {
            bd[nb] = os->dim[d];
            sa[nb] = da >= 0 && a->shape.dim[da] != 1 ? va.stride[da] : 0;
            sb[nb] = db >= 0 && b->shape.dim[db] != 1 ? vb.stride[db] : 0;
            scs[nb] = sc;
            nb++;
        }
        sc *= os->dim[d];
    }
    /* fold trailing batch dims into M when B is shared and A's rows continue evenly */
    int first = 0; /* bd[0] is the innermost batch dim */
    while (first < nb && sb[first] == 0 && !G->trans_a && sa[first] == G->M * G->lda && scs[first] == G->M * G->N) {
        G->M *= bd[first];
        first++;
    }
    if (nb - first > RT_PLAN_MAX_BATCH) {
        fail(L, mm, "%s has too many batch dims", "matmul");
        return;
    }
    G->nbatch = nb - first;
    for (int i = 0; i < G->nbatch; i++) { /* outermost first */
        int j = nb - 1 - i;
        G->batch[i] = bd[j];
        G->stride_a[i] = sa[j];
        G->stride_b[i] = sb[j];
        G->stride_c[i] = scs[j];
    }
    G->a = ref_of(L, &va);
    G->b = ref_of(L, &vb);
    G->c = (rt_plan_ref){L->buf[last->id], 0};
    /* epilogue: the members after the matmul, in order: a bias add, an activation (fuse.c) */
    const ir_node *prev = mm, *act = NULL;
    for (int i = mm->id + 1; i <= last->id; i++) {
        const ir_node *n = L->g->nodes[i];
        if (n->group != g)
            continue;
        if (n->op == OP_add) {
            const ir_node *bias = n->in[0] == prev ? n->in[1] : n->in[0];
            pass_view vbias;
            if (!view(L, bias, &vbias))
                return;
            G->bias = ref_of(L, &vbias);
        } else {
            act = n;
        }
        prev = n;
    }
    if (act) {
        int step = (int)(s - L->out->plan.steps);
        rt_plan_kernel epi = gemm_epilogue(L, g, mm, last, step);
        G = &L->out->plan.steps[step].gemm;
        G->epi = epi;
        G->act = (int)act_of(act);
    }
    if (deq) /* its kernel, for targets whose GEMM takes f32 only */
        library_step(L);
}

/* attention's operands (q, k, v, mask: views with a contiguous last dim) into A. */
static bool attention_operands(lower_ctx *L, const ir_node *at, int mask_in, rt_plan_attention *A)
{
    pass_view vq, vk, vv, vm = {0};
    if (!view(L, at->in[0], &vq) || !view(L, at->in[1], &vk) || !view(L, at->in[2], &vv))
        return false;
    const ir_shape *q = &at->in[0]->shape, *k = &at->in[1]->shape, *v = &at->in[2]->shape;
    A->B = q->dim[0], A->H = q->dim[1], A->T = q->dim[2], A->D = q->dim[3];
    A->G = k->dim[1], A->S = k->dim[2], A->E = v->dim[3];
    A->causal = ir_attr_int(at, "causal") != 0;
    A->scale = ir_attr_float(at, "scale");
    if (A->scale == 0)
        A->scale = 1.0 / sqrt((double)A->D);
    for (int i = 0; i < 3; i++) {
        A->q_stride[i] = vq.stride[i];
        A->k_stride[i] = vk.stride[i];
        A->v_stride[i] = vv.stride[i];
    }
    if ((A->D > 1 && (vq.stride[3] != 1 || vk.stride[3] != 1)) || (A->E > 1 && vv.stride[3] != 1))
        return fail(L, at, "%s operands need a contiguous last dim (was the fuse pass run?)", ir_ops[at->op].mnemonic);
    A->q = ref_of(L, &vq);
    A->k = ref_of(L, &vk);
    A->v = ref_of(L, &vv);
    A->mask.buf = -1;
    A->out.buf = -1;
    A->lse.buf = -1;
    if (at->n_in > mask_in) {
        const ir_node *m = at->in[mask_in];
        if (!view(L, m, &vm))
            return false;
        for (int d = 0; d < 4; d++) {
            int md = d - (4 - m->shape.rank);
            A->mask_stride[d] = md >= 0 && m->shape.dim[md] != 1 ? vm.stride[md] : 0;
        }
        A->mask = ref_of(L, &vm);
    }
    return true;
}

/* The strides of the attention at's output as stored by last: at itself or a transpose of it. */
static void stored_strides(const ir_node *at, const ir_node *last, int64_t st[4])
{
    pass_view vo;
    pass_view_contiguous(last, &vo);
    if (last == at)
        memcpy(st, vo.stride, 4 * sizeof *st);
    else {
        const ir_attr *perm = ir_attr_get(last, "perm");
        for (int i = 0; i < 4; i++)
            st[ir_axis_norm(perm->ints[i], 4)] = vo.stride[i];
    }
}

/* Does attention_grad ag differentiate attention fw (the same operands and attributes)? */
static bool differentiates(const ir_node *ag, const ir_node *fw)
{
    bool same = fw->op == OP_attention && ag->op == OP_attention_grad && fw->n_in == ag->n_in - 1 &&
                ir_attr_int(fw, "causal") == ir_attr_int(ag, "causal") &&
                ir_attr_float(fw, "scale") == ir_attr_float(ag, "scale");
    for (int k = 0; same && k < fw->n_in; k++)
        same = fw->in[k] == ag->in[k < 3 ? k : 4];
    return same;
}

static void lower_attention(lower_ctx *L, int g, const ir_node *at, const ir_node *last)
{
    rt_plan_attention *A = &add_step(L, RT_STEP_ATTENTION)->attn;
    if (!attention_operands(L, at, 3, A))
        return;
    /* output: the stored node's buffer; through a transpose when one joined */
    int64_t st[4];
    stored_strides(at, last, st);
    for (int i = 0; i < 3; i++)
        A->out_stride[i] = st[i];
    A->out = (rt_plan_ref){L->buf[last->id], 0};
    /* differentiated in this plan: the kernel keeps each row's log-sum-exp for the backward */
    bool grad = false;
    for (int i = at->id + 1; i < L->g->n_nodes && !grad; i++)
        grad = differentiates(L->g->nodes[i], at);
    if (grad) {
        int b = add_buffer(L, "attention row log-sum-exps", DT_F32, A->B * A->H * A->T, RT_BUF_ACTIVATION);
        L->out->plan.steps[L->out->plan.n_steps - 1].attn.lse = (rt_plan_ref){b, 0};
    }
    library_step(L);
}

/* Is cache_write n's cache an input that nothing else reads? Then n writes it in place. */
static bool cache_in_place(const ir_graph *g, const ir_node *n)
{
    const ir_node *c = n->in[0];
    if (c->op != OP_input)
        return false;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            if (g->nodes[i]->in[k] == c && g->nodes[i] != n)
                return false;
    return true;
}

/* cache_write: a WRITE_ROWS step into the cache (in place) or into a copy of it. */
static void lower_cache_write(lower_ctx *L, const ir_node *n)
{
    const ir_node *c = n->in[0], *x = n->in[1], *pos = n->in[2];
    int bc = L->buf[c->id], bx = L->buf[x->id], bp = L->buf[pos->id], bn = L->buf[n->id];
    if (bc < 0 || bx < 0 || bp < 0 || bn < 0) {
        fail(L, n, "%s operands are not in buffers (was the fuse pass run?)", "cache_write");
        return;
    }
    if (bn != bc) {
        rt_plan_step *s = add_step(L, RT_STEP_COPY);
        s->copy = (rt_plan_copy){{bc, 0}, {bn, 0}, ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype)};
    }
    int r = n->shape.rank;
    int64_t S = n->shape.dim[r - 2], D = n->shape.dim[r - 1];
    int64_t outer = S * D != 0 ? ir_shape_numel(&n->shape) / (S * D) : 0;
    rt_plan_step *s = add_step(L, RT_STEP_WRITE_ROWS);
    s->rows = (rt_plan_write_rows){{bn, 0}, {bx, 0}, {bp, 0}, pos->dtype, outer, S, x->shape.dim[r - 2],
                                   D * ir_dtype_size(n->dtype)};
    library_step(L);
}

/* ---- backward ops (training graphs) ------------------------------------------------------ */

/* A kernel with grid [rows] over the rows of x ([..., C]) and nloops loops of C; ri gets the
 * row's index (rank r - 1) and id[l] the full index in loop l. */
static void row_kernel(kgen *K, const ir_shape *xs, int nloops, cg_val *ri, cg_val id[][IR_MAX_RANK])
{
    cg_kernel *k = K->k;
    int r = xs->rank;
    int64_t C = xs->dim[r - 1];
    ir_shape rs = *xs;
    rs.rank = r - 1;
    cg_kernel_dim(k, ir_shape_numel(&rs));
    delinear(k, &rs, cg_pidx(k, 0), ri);
    for (int l = 0; l < nloops; l++) {
        cg_kernel_loop(k, C);
        memcpy(id[l], ri, sizeof(cg_val) * (size_t)(r - 1));
        id[l][r - 1] = cg_lidx(k, l);
    }
}

/* The row statistics of a norm: layernorm's mean (else 0) over loop 0 and, over loop `l` (0
 * for rmsnorm, 1 for layernorm), 1/√(var + eps) (or mean square). */
static void norm_stats(kgen *K, const ir_node *R, const ir_node *x, cg_val id[][IR_MAX_RANK], int64_t C, cg_val *mean,
                       cg_val *rstd)
{
    cg_kernel *k = K->k;
    bool ln = R->op == OP_layernorm_grad;
    cg_val inv_c = cg_f32(k, 1.0 / (double)C);
    *mean = ln ? cg_mul(k, cg_reduce(k, CG_RED_SUM, 0, elem(K, x, id[0])), inv_c) : cg_f32(k, 0);
    cg_val d = cg_sub(k, elem(K, x, id[ln ? 1 : 0]), *mean);
    cg_val var = cg_mul(k, cg_reduce(k, CG_RED_SUM, ln ? 1 : 0, cg_mul(k, d, d)), inv_c);
    *rstd = cg_unary(k, CG_RSQRT, cg_add(k, var, cg_f32(k, ir_attr_float(R, "eps"))));
}

/* layernorm_grad / rmsnorm_grad (ir.md). wrt 0: one row kernel (statistics, then mean(e) and
 * mean(e·x̂), then the store). wrt 1: a row kernel storing each row's mean and 1/σ, then a
 * column kernel (grid [C], one loop over the rows in order) summing dy·x̂. */
static void lower_norm_grad(lower_ctx *L, int g, const ir_node *R)
{
    const ir_node *x = R->in[0], *w = R->in[1], *dy = R->in[2];
    const ir_shape *xs = &x->shape;
    int r = xs->rank;
    bool ln = R->op == OP_layernorm_grad;
    int64_t C = xs->dim[r - 1], rows = C ? ir_shape_numel(xs) / C : 0;
    if (rows == 0 || C == 0 || R->dtype != DT_F32) {
        if (R->dtype != DT_F32)
            fail(L, R, "%s on a non-f32 type is not supported", ir_ops[R->op].mnemonic);
        else if (ir_attr_int(R, "wrt") == 1 && C > 0) { /* no rows: dw is 0 */
            kgen K;
            kgen_init(&K, L, g, "norm_grad_zero");
            cg_kernel_dim(K.k, C);
            store(&K, R, (cg_val[]){cg_pidx(K.k, 0)}, cg_f32(K.k, 0));
            kgen_finish(&K);
        }
        return;
    }
    cg_val ri[IR_MAX_RANK], id[4][IR_MAX_RANK], mean, rstd;
    if (ir_attr_int(R, "wrt") == 0) {
        kgen K;
        kgen_init(&K, L, g, ir_ops[R->op].mnemonic);
        cg_kernel *k = K.k;
        int ls = ln ? 2 : 1; /* the loop of the sums of e and e·x̂ */
        row_kernel(&K, xs, ls + 2, ri, id);
        norm_stats(&K, R, x, id, C, &mean, &rstd);
        cg_val inv_c = cg_f32(k, 1.0 / (double)C);
        cg_val e = cg_mul(k, elem(&K, dy, id[ls]), elem(&K, w, &id[ls][r - 1]));
        cg_val xh = cg_mul(k, cg_sub(k, elem(&K, x, id[ls]), mean), rstd);
        cg_val me = ln ? cg_mul(k, cg_reduce(k, CG_RED_SUM, ls, e), inv_c) : cg_f32(k, 0);
        cg_val mex = cg_mul(k, cg_reduce(k, CG_RED_SUM, ls, cg_mul(k, e, xh)), inv_c);
        int lo = ls + 1;
        cg_val e2 = cg_mul(k, elem(&K, dy, id[lo]), elem(&K, w, &id[lo][r - 1]));
        cg_val xh2 = cg_mul(k, cg_sub(k, elem(&K, x, id[lo]), mean), rstd);
        store(&K, R, id[lo], cg_mul(k, rstd, cg_sub(k, cg_sub(k, e2, me), cg_mul(k, xh2, mex))));
        kgen_finish(&K);
        return;
    }
    /* wrt 1: statistics per row, then the column sums */
    int meanb = add_buffer(L, "norm_grad row means", DT_F32, rows, RT_BUF_ACTIVATION);
    int rstdb = add_buffer(L, "norm_grad row 1/sigma", DT_F32, rows, RT_BUF_ACTIVATION);
    kgen K;
    kgen_init(&K, L, g, "norm_grad_stats");
    cg_kernel *k = K.k;
    row_kernel(&K, xs, ln ? 2 : 1, ri, id);
    norm_stats(&K, R, x, id, C, &mean, &rstd);
    cg_store(k, karg(&K, meanb, CG_OUT), cg_pidx(k, 0), mean);
    cg_store(k, karg(&K, rstdb, CG_OUT), cg_pidx(k, 0), rstd);
    kgen_finish(&K);
    kgen_init(&K, L, g, ir_ops[R->op].mnemonic);
    k = K.k;
    ir_shape rs = *xs;
    rs.rank = r - 1;
    cg_kernel_dim(k, C);
    cg_kernel_loop(k, rows);
    cg_val j = cg_lidx(k, 0), idx[IR_MAX_RANK];
    delinear(k, &rs, j, idx);
    idx[r - 1] = cg_pidx(k, 0);
    cg_val xh = cg_mul(k, cg_sub(k, elem(&K, x, idx), cg_load(k, karg(&K, meanb, CG_IN), j)),
                       cg_load(k, karg(&K, rstdb, CG_IN), j));
    cg_val sum = cg_reduce(k, CG_RED_SUM, 0, cg_mul(k, elem(&K, dy, idx), xh));
    store(&K, R, (cg_val[]){cg_pidx(k, 0)}, sum);
    kgen_finish(&K);
}

/* cross_entropy_grad: a one-point kernel for dloss / (number of rows with a target), then a
 * row kernel: max, sum of exp, store scale · (softmax − onehot) (0 on ignored rows). */
static void lower_xent_grad(lower_ctx *L, int g, const ir_node *R)
{
    const ir_node *x = R->in[0], *tg = R->in[1], *dl = R->in[2];
    const ir_shape *xs = &x->shape;
    int r = xs->rank;
    int64_t V = xs->dim[r - 1], rows = V ? ir_shape_numel(xs) / V : 0;
    if (R->dtype != DT_F32) {
        fail(L, R, "%s on a non-f32 type is not supported", "cross_entropy_grad");
        return;
    }
    if (rows == 0 || V == 0)
        return;
    int scaleb = add_buffer(L, "cross_entropy_grad scale", DT_F32, 1, RT_BUF_ACTIVATION);
    ir_shape rs = *xs;
    rs.rank = r - 1;
    kgen K;
    kgen_init(&K, L, g, "cross_entropy_grad_scale");
    cg_kernel *k = K.k;
    cg_kernel_dim(k, 1);
    cg_kernel_loop(k, rows);
    cg_val ti[IR_MAX_RANK], none[1] = {0};
    delinear(k, &rs, cg_lidx(k, 0), ti);
    cg_val valid = cg_binary(k, CG_GE, cg_cast(k, CG_I64, elem(&K, tg, ti)), cg_i64(k, 0));
    cg_val cnt = cg_reduce(k, CG_RED_SUM, 0, cg_select(k, valid, cg_f32(k, 1), cg_f32(k, 0)));
    cg_val scale = cg_div(k, elem(&K, dl, none), cg_binary(k, CG_MAX, cnt, cg_f32(k, 1)));
    cg_store(k, karg(&K, scaleb, CG_OUT), cg_i64(k, 0), scale);
    kgen_finish(&K);

    cg_val ri[IR_MAX_RANK], id[3][IR_MAX_RANK];
    kgen_init(&K, L, g, "cross_entropy_grad");
    k = K.k;
    row_kernel(&K, xs, 3, ri, id);
    cg_val t = cg_cast(k, CG_I64, elem(&K, tg, ri));
    if (K.n_ids < 64) {
        K.ids[K.n_ids] = tg;
        K.ids_hi[K.n_ids] = V;
        K.ids_neg[K.n_ids++] = true;
    }
    cg_val ok = cg_binary(k, CG_GE, t, cg_i64(k, 0));
    cg_val mx = cg_reduce(k, CG_RED_MAX, 0, elem(&K, x, id[0]));
    cg_val sum = cg_reduce(k, CG_RED_SUM, 1, cg_unary(k, CG_EXP, cg_sub(k, elem(&K, x, id[1]), mx)));
    cg_val p = cg_div(k, cg_unary(k, CG_EXP, cg_sub(k, elem(&K, x, id[2]), mx)), sum);
    cg_val hot = cg_select(k, cg_binary(k, CG_EQ, id[2][r - 1], t), cg_f32(k, 1), cg_f32(k, 0));
    cg_val sc = cg_load(k, karg(&K, scaleb, CG_IN), cg_i64(k, 0));
    store(&K, R, id[2], cg_select(k, ok, cg_mul(k, sc, cg_sub(k, p, hot)), cg_f32(k, 0)));
    kgen_finish(&K);
}

/* embedding_grad: a SCATTER_ADD step (deterministic, no atomics) after an id check. */
static void lower_embedding_grad(lower_ctx *L, const ir_node *R)
{
    const ir_node *dy = R->in[0], *ids = R->in[1];
    pass_view v;
    int64_t rstride;
    if (R->dtype != DT_F32) {
        fail(L, R, "%s on a non-f32 type is not supported", "embedding_grad");
        return;
    }
    if (!view(L, dy, &v))
        return;
    if (!pass_rows_view(dy, &v, &rstride)) {
        fail(L, R, "%s operand is not a view with contiguous rows (was the fuse pass run?)", "embedding_grad");
        return;
    }
    int64_t V = R->shape.dim[0], C = R->shape.dim[1];
    check_ids(L, ids, V, false, "embedding_grad");
    if (!L->ok)
        return;
    rt_plan_step *s = add_step(L, RT_STEP_SCATTER_ADD);
    s->scatter = (rt_plan_scatter){{L->buf[ids->id], 0}, ref_of(L, &v), {L->buf[R->id], 0}, ids->dtype,
                                   ir_shape_numel(&ids->shape), C, V, rstride};
    library_step(L);
}

/* The output buffer (and its strides) of the forward attention that attention_grad ag
 * differentiates, when the plan stores it: the backward then takes D = dy·out from it. */
static void forward_output(lower_ctx *L, const ir_node *ag, rt_plan_attention *A)
{
    const ir_node *fw = NULL;
    for (int i = 0; i < ag->id && !fw; i++) {
        const ir_node *n = L->g->nodes[i];
        if (differentiates(ag, n) && n->group >= 0)
            fw = n;
    }
    if (!fw)
        return;
    const ir_node *last = NULL; /* the group's stored member: the attention or its transpose */
    for (int i = fw->id; i < L->g->n_nodes; i++)
        if (L->g->nodes[i]->group == fw->group && L->buf[i] >= 0)
            last = L->g->nodes[i];
    if (!last || (last != fw && last->op != OP_transpose))
        return;
    int64_t st[4];
    stored_strides(fw, last, st);
    if (st[3] != 1 && A->E > 1)
        return;
    for (int i = 0; i < 3; i++)
        A->out_stride[i] = st[i];
    A->out = (rt_plan_ref){L->buf[last->id], 0};
}

/* attention_grad group: one ATTENTION_GRAD step for every member (wrt 0..3). */
static void lower_attention_grad(lower_ctx *L, int g, const ir_node *ag)
{
    if (ag->dtype != DT_F32) {
        fail(L, ag, "%s on a non-f32 type is not supported", "attention_grad");
        return;
    }
    rt_plan_attention_grad A;
    memset(&A, 0, sizeof A);
    if (!attention_operands(L, ag, 4, &A.fwd))
        return;
    const ir_node *dy = ag->in[3];
    pass_view vd;
    if (!view(L, dy, &vd))
        return;
    if (A.fwd.E > 1 && vd.stride[3] != 1) {
        fail(L, ag, "%s operands need a contiguous last dim (was the fuse pass run?)", "attention_grad");
        return;
    }
    for (int i = 0; i < 3; i++)
        A.dy_stride[i] = vd.stride[i];
    A.dy = ref_of(L, &vd);
    rt_plan_ref *outs[4] = {&A.dq, &A.dk, &A.dv, &A.dmask};
    for (int i = 0; i < 4; i++)
        *outs[i] = (rt_plan_ref){-1, 0};
    for (int i = 0; i <= ag->id; i++) {
        const ir_node *n = L->g->nodes[i];
        if (n->group == g && n->op == OP_attention_grad && L->buf[n->id] >= 0)
            *outs[ir_attr_int(n, "wrt")] = (rt_plan_ref){L->buf[n->id], 0};
    }
    forward_output(L, ag, &A.fwd);
    /* the forward step's row log-sum-exps (the same operands), else this step computes them */
    const rt_plan *p = &L->out->plan;
    for (int s = 0; s < p->n_steps && A.fwd.lse.buf < 0; s++) {
        const rt_plan_attention *f = &p->steps[s].attn;
        if (p->steps[s].kind == RT_STEP_ATTENTION && f->lse.buf >= 0 && f->q.buf == A.fwd.q.buf &&
            f->q.offset == A.fwd.q.offset && f->k.buf == A.fwd.k.buf && f->k.offset == A.fwd.k.offset &&
            f->v.buf == A.fwd.v.buf && f->v.offset == A.fwd.v.offset && f->mask.buf == A.fwd.mask.buf &&
            f->mask.offset == A.fwd.mask.offset && f->causal == A.fwd.causal && f->scale == A.fwd.scale &&
            f->B == A.fwd.B && f->H == A.fwd.H && f->G == A.fwd.G && f->T == A.fwd.T && f->S == A.fwd.S &&
            f->D == A.fwd.D && f->E == A.fwd.E && memcmp(f->q_stride, A.fwd.q_stride, sizeof f->q_stride) == 0 &&
            memcmp(f->k_stride, A.fwd.k_stride, sizeof f->k_stride) == 0 &&
            memcmp(f->v_stride, A.fwd.v_stride, sizeof f->v_stride) == 0 &&
            memcmp(f->mask_stride, A.fwd.mask_stride, sizeof f->mask_stride) == 0)
            A.fwd.lse = f->lse;
    }
    int64_t rows = A.fwd.B * A.fwd.H * A.fwd.T;
    if (A.fwd.lse.buf < 0) {
        A.fwd.lse = (rt_plan_ref){add_buffer(L, "attention_grad row log-sum-exps", DT_F32, rows, RT_BUF_ACTIVATION), 0};
        A.lse_own = true;
    }
    A.delta = (rt_plan_ref){add_buffer(L, "attention_grad row deltas", DT_F32, rows, RT_BUF_ACTIVATION), 0};
    rt_plan_step *s = add_step(L, RT_STEP_ATTENTION_GRAD);
    s->agrad = A;
    library_step(L);
}

/* ---- the driver -------------------------------------------------------------------------------- */

void cg_lowered_free(cg_lowered *l)
{
    for (int i = 0; i < l->n_kernels; i++)
        cg_kernel_free(l->kernels[i]);
    free(l->kernels);
    rt_plan_clear(&l->plan);
    memset(l, 0, sizeof *l);
}

bool cg_lower(const ir_graph *g, cg_lowered *out, ir_diag *d)
{
    memset(out, 0, sizeof *out);
    int nn = g->n_nodes;
    lower_ctx L = {g, d, out, calloc((size_t)nn + 1, sizeof(bool)), malloc(sizeof(int) * ((size_t)nn + 1)), NULL, 0, 0, true};
    if (!L.stored || !L.buf)
        ir_unreachable("out of memory");
    int n_groups = 0;
    for (int i = 0; i < nn; i++) /* every group id, also when a node below makes lowering stop */
        if (g->nodes[i]->group >= n_groups)
            n_groups = g->nodes[i]->group + 1;
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        L.buf[i] = -1;
        if (n->id != i)
            ir_unreachable("cg_lower: node ids out of order");
        if (n->dtype == DT_F64) {
            fail(&L, n, "%s values are not supported by the cpu target yet (use --target ref)", "f64");
            break;
        }
        if (ir_ops[n->op].kind == OK_COMM) {
            /* a rank's program runs its communication between programs (engine/run_mesh.c) */
            fail(&L, n, "%s runs only under a mesh (loom run --mesh ..., one process per rank)", ir_ops[n->op].mnemonic);
            break;
        }
    }
    /* a member of group g is stored when a consumer is computed elsewhere: an output, another
     * group, or an inlined op some other group's kernel computes. An inlined op's home (home[i]:
     * the one group whose kernel computes it, -2 several or none) follows its consumers; an
     * elementwise member whose inlined consumers all live in g (fuse.c's elementwise siblings:
     * an AdamW's clipped gradient) is computed in g's kernel and needs no buffer */
    int *home = malloc(sizeof(int) * ((size_t)nn + 1));
    if (!home)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        home[i] = -1;
    for (int i = nn - 1; i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        int h = n->op == OP_output ? -2 : n->group >= 0 ? n->group : home[i];
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            if (x->group < 0)
                home[x->id] = home[x->id] == -1 ? h : home[x->id] == h ? h : -2;
        }
    }
    for (int i = 0; L.ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            ir_op_kind xk = ir_ops[x->op].kind;
            bool ew = xk == OK_UNARY || xk == OK_BINARY || x->op == OP_unary_grad;
            int where = n->op == OP_output ? -2 : n->group >= 0 ? n->group : ew ? home[i] : -2;
            if (x->group >= 0 && where != x->group)
                L.stored[x->id] = true;
        }
    }
    free(home);
    /* buffers: params and inputs, then stored values (outputs where an output names them) */
    for (int i = 0; L.ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_param || n->op == OP_input)
            L.buf[i] = add_buffer(&L, n->name, n->dtype, ir_shape_numel(&n->shape),
                                  n->op == OP_param ? RT_BUF_PARAM : RT_BUF_INPUT);
    }
    for (int i = 0; L.ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (!L.stored[i])
            continue;
        const char *oname = NULL;
        for (int j = i + 1; j < nn && !oname; j++)
            if (g->nodes[j]->op == OP_output && g->nodes[j]->in[0] == n)
                oname = g->nodes[j]->name;
        if (n->op == OP_cache_write && cache_in_place(g, n)) {
            L.buf[i] = L.buf[n->in[0]->id];
            continue;
        }
        char desc[64];
        snprintf(desc, sizeof desc, "%%%d %s", i, ir_ops[n->op].mnemonic);
        L.buf[i] = add_buffer(&L, oname ? oname : desc, n->dtype, ir_shape_numel(&n->shape),
                              oname ? RT_BUF_OUTPUT : RT_BUF_ACTIVATION);
    }
    /* outputs of params/inputs: copies up front (those never change) */
    for (int i = 0; L.ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_output || n->in[0]->group >= 0)
            continue;
        const ir_node *x = n->in[0];
        if (L.buf[x->id] < 0) {
            fail(&L, n, "%s of a value without a buffer (was the fuse pass run?)", "output");
            break;
        }
        int b = add_buffer(&L, n->name, x->dtype, ir_shape_numel(&x->shape), RT_BUF_OUTPUT);
        rt_plan_step *s = add_step(&L, RT_STEP_COPY);
        s->copy = (rt_plan_copy){{L.buf[x->id], 0}, {b, 0}, ir_shape_numel(&x->shape) * ir_dtype_size(x->dtype)};
    }
    /* one step (or two) per group, in group order */
    int *anchor = malloc(sizeof(int) * ((size_t)n_groups + 1));
    if (!anchor)
        ir_unreachable("out of memory");
    for (int k = 0; k < n_groups; k++)
        anchor[k] = -1;
    for (int i = 0; i < nn; i++)
        if (g->nodes[i]->group >= 0)
            anchor[g->nodes[i]->group] = i; /* the last member */
    for (int grp = 0; L.ok && grp < n_groups; grp++) {
        if (anchor[grp] < 0)
            continue;
        const ir_node *last = g->nodes[anchor[grp]], *mm = NULL, *at = NULL, *ag = NULL;
        for (int i = 0; i <= anchor[grp]; i++) {
            const ir_node *n = g->nodes[i];
            if (n->group == grp && n->op == OP_matmul)
                mm = n;
            if (n->group == grp && n->op == OP_attention)
                at = n;
            if (n->group == grp && n->op == OP_attention_grad)
                ag = n;
        }
        int first_step = out->plan.n_steps;
        if (last->op == OP_cache_write)
            lower_cache_write(&L, last);
        else if (mm)
            lower_gemm(&L, grp, mm, last);
        else if (at)
            lower_attention(&L, grp, at, last);
        else if (ag)
            lower_attention_grad(&L, grp, ag);
        else if (last->op == OP_layernorm_grad || last->op == OP_rmsnorm_grad)
            lower_norm_grad(&L, grp, last);
        else if (last->op == OP_cross_entropy_grad)
            lower_xent_grad(&L, grp, last);
        else if (last->op == OP_embedding_grad)
            lower_embedding_grad(&L, last);
        else if (ir_ops[last->op].kind == OK_ROW)
            lower_row(&L, grp, last);
        else if (ir_ops[last->op].kind == OK_REDUCE)
            lower_reduce(&L, grp, last);
        else
            lower_elementwise(&L, grp, last);
        if (L.ok)
            set_origin(&L, grp, mm ? mm : at ? at : ag ? ag : last, first_step);
    }
    free(anchor);
    /* an output naming a value already output under another name: a copy at the end */
    for (int i = 0; L.ok && i < nn; i++) {
        const ir_node *n = g->nodes[i], *x = n->n_in ? n->in[0] : NULL;
        if (n->op != OP_output || x->group < 0 || strcmp(out->plan.bufs[L.buf[x->id]].name, n->name) == 0)
            continue;
        int b = add_buffer(&L, n->name, x->dtype, ir_shape_numel(&x->shape), RT_BUF_OUTPUT);
        rt_plan_step *s = add_step(&L, RT_STEP_COPY);
        s->copy = (rt_plan_copy){{L.buf[x->id], 0}, {b, 0}, ir_shape_numel(&x->shape) * ir_dtype_size(x->dtype)};
    }
    free(L.stored);
    free(L.buf);
    free(L.checked);
    if (!L.ok)
        cg_lowered_free(out);
    return L.ok;
}
