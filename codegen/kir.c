/* kir.c — the kernel IR: op table, builder (with hash-consing and integer folding),
 * validator (types, operands, slots, index bounds) and text printer. See kir.h for the
 * semantics; this file implements exactly what its comments promise.
 */
#include "codegen/kir.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const cg_op_info cg_ops[CG_OP_COUNT] = {
#define X(id, name, n_in, cls) [CG_##id] = {name, n_in, CGC_##cls},
    CG_OPS(X)
#undef X
};

/* ---- types ------------------------------------------------------------------------------- */

const char *cg_type_name(cg_type t)
{
    static const char *const names[CG_TYPE_COUNT] = {"void", "bool", "i32", "i64", "f32", "f64"};
    return (unsigned)t < CG_TYPE_COUNT ? names[t] : "?";
}

bool cg_type_is_float(cg_type t) { return t == CG_F32 || t == CG_F64; }
bool cg_type_is_int(cg_type t) { return t == CG_I32 || t == CG_I64; }

cg_type cg_compute_type(ir_dtype dt)
{
    switch (dt) {
    case DT_F32: case DT_F16: case DT_BF16: return CG_F32;
    case DT_F64: return CG_F64;
    case DT_I32: case DT_U8: case DT_I8: return CG_I32;
    case DT_I64: return CG_I64;
    default: return CG_VOID;
    }
}

const char *cg_red_name(cg_red r)
{
    switch (r) {
    case CG_RED_SUM: return "sum";
    case CG_RED_MAX: return "max";
    case CG_RED_MIN: return "min";
    }
    return "?";
}

/* ---- kernels ----------------------------------------------------------------------------- */

cg_kernel *cg_kernel_new(const char *name)
{
    cg_kernel *k = calloc(1, sizeof *k);
    if (!k) {
        fprintf(stderr, "loom: out of memory\n");
        abort();
    }
    k->name = ir_arena_strdup(&k->arena, name);
    return k;
}

void cg_kernel_free(cg_kernel *k)
{
    if (!k)
        return;
    free(k->args);
    free(k->nodes);
    ir_arena_free(&k->arena);
    free(k);
}

static int add_arg(cg_kernel *k, cg_arg a)
{
    ir_grow((void **)&k->args, &k->cap_args, k->n_args + 1, sizeof *k->args);
    k->args[k->n_args] = a;
    return k->n_args++;
}

int cg_kernel_buffer(cg_kernel *k, const char *name, ir_dtype dt, cg_access acc, int64_t numel)
{
    return add_arg(k, (cg_arg){ir_arena_strdup(&k->arena, name), false, dt, acc, numel});
}

int cg_kernel_scalar(cg_kernel *k, const char *name)
{
    return add_arg(k, (cg_arg){ir_arena_strdup(&k->arena, name), true, DT_I64, CG_IN, 0});
}

int cg_kernel_dim(cg_kernel *k, int64_t size)
{
    if (k->n_dims >= CG_MAX_DIMS)
        ir_unreachable("cg_kernel_dim: more than CG_MAX_DIMS grid dims");
    k->dim[k->n_dims] = size;
    return k->n_dims++;
}

int cg_kernel_loop(cg_kernel *k, int64_t extent)
{
    if (k->n_loops >= CG_MAX_LOOPS)
        ir_unreachable("cg_kernel_loop: more than CG_MAX_LOOPS loops");
    if (k->seq)
        ir_unreachable("cg_kernel_loop: a sequential kernel opens its loops with cg_loop_open");
    int j = k->n_loops++;
    k->loop[j] = extent;
    k->loop_parent[j] = -1;
    k->loop_bound[j] = -1;
    k->loop_open[j] = 2 * j;
    k->loop_close[j] = 2 * j + 1;
    return j;
}

/* Event numbers of loop j's open and close (close -1 while a sequential loop is open). */
static int ev_open(const cg_kernel *k, int j) { return k->seq ? k->loop_open[j] : 2 * j; }
static int ev_close(const cg_kernel *k, int j) { return k->seq ? k->loop_close[j] : 2 * j + 1; }

void cg_kernel_set_seq(cg_kernel *k)
{
    if (k->n_loops || k->n_nodes)
        ir_unreachable("cg_kernel_set_seq: the kernel already has loops or nodes");
    k->seq = true;
}

int cg_loop_open(cg_kernel *k, int64_t extent, cg_val bound)
{
    if (!k->seq)
        ir_unreachable("cg_loop_open: not a sequential kernel");
    if (k->n_loops >= CG_MAX_LOOPS)
        ir_unreachable("cg_loop_open: more than CG_MAX_LOOPS loops");
    int j = k->n_loops++;
    k->loop[j] = extent;
    k->loop_parent[j] = k->n_open ? k->open_loops[k->n_open - 1] : -1;
    k->loop_bound[j] = bound;
    k->loop_open[j] = k->n_events++;
    k->loop_close[j] = -1;
    k->open_loops[k->n_open++] = j;
    return j;
}

void cg_loop_close(cg_kernel *k)
{
    if (!k->seq || !k->n_open)
        ir_unreachable("cg_loop_close: no open loop");
    int j = k->open_loops[--k->n_open];
    k->loop_close[j] = k->n_events++;
}

int cg_kernel_slot_loop(const cg_kernel *k, int s)
{
    int best = -1;
    for (int j = 0; j < k->n_loops; j++) {
        int o = ev_open(k, j), c = ev_close(k, j);
        /* slot s is inside loop j when open(j) < s <= close(j); loops nest, so the innermost
         * is the one opened last */
        if (o < s && (c < 0 || s <= c))
            best = j;
    }
    return best;
}

int cg_kernel_event_loop(const cg_kernel *k, int e, bool *opens)
{
    for (int j = 0; j < k->n_loops; j++) {
        if (ev_open(k, j) == e) {
            *opens = true;
            return j;
        }
        if (ev_close(k, j) == e) {
            *opens = false;
            return j;
        }
    }
    return -1;
}

/* Is loop a the loop b or one enclosing it (-1, the top level, encloses everything)? */
static bool encloses(const cg_kernel *k, int a, int b)
{
    for (int x = b; x >= 0 && x < k->n_loops; x = k->loop_parent[x])
        if (x == a)
            return true;
    return a < 0;
}

/* ---- builder ----------------------------------------------------------------------------- */

static bool valid_ref(const cg_kernel *k, int v) { return v >= 0 && v < k->n_nodes; }

static const cg_node *node_at(const cg_kernel *k, int v) { return valid_ref(k, v) ? &k->nodes[v] : NULL; }

static cg_type type_of(const cg_kernel *k, int v)
{
    const cg_node *n = node_at(k, v);
    return n ? n->type : CG_VOID;
}

static bool valid_loop(const cg_kernel *k, int j) { return j >= 0 && j < k->n_loops; }

/* Slot of a node built from n's fields (see kir.h): leaves 0, lidx k and carry over k
 * open(k) + 1 (2k+1 without nesting), reduce and last over k close(k) + 1 (2k+2), everything
 * else the max of its operands (in sequential kernels, memory ops at least where the builder
 * is: see place). */
static int derive_slot(const cg_kernel *k, const cg_node *n)
{
    switch (n->op) {
    case CG_LIDX:
    case CG_CARRY: return valid_loop(k, n->a) ? ev_open(k, n->a) + 1 : 0;
    case CG_REDUCE:
    case CG_LAST: return valid_loop(k, n->a) ? ev_close(k, n->a) + 1 : 0;
    default: break;
    }
    int s = 0;
    for (int j = 0; j < cg_ops[n->op].n_in; j++)
        if (valid_ref(k, n->in[j]) && k->nodes[n->in[j]].slot > s)
            s = k->nodes[n->in[j]].slot;
    return s;
}

/* A node whose place is the builder's position in a sequential kernel: a store, or a load of
 * a buffer the kernel writes. */
static bool is_ordered(const cg_kernel *k, const cg_node *n)
{
    if (!k->seq)
        return false;
    if (n->op == CG_STORE)
        return true;
    return n->op == CG_LOAD && n->a >= 0 && n->a < k->n_args && (k->args[n->a].access & CG_OUT);
}

static bool same_node(const cg_node *x, const cg_node *y)
{
    return x->op == y->op && x->type == y->type && x->in[0] == y->in[0] && x->in[1] == y->in[1] &&
           x->in[2] == y->in[2] && x->a == y->a && x->red == y->red && x->ival == y->ival &&
           memcmp(&x->fval, &y->fval, sizeof x->fval) == 0;
}

/* Appends n, or returns an identical earlier node (stores, carries and ordered loads are never
 * shared). */
static cg_val emit(cg_kernel *k, cg_node n)
{
    bool ordered = is_ordered(k, &n);
    if (n.op != CG_STORE && n.op != CG_CARRY && !ordered)
        for (int i = k->n_nodes - 1; i >= 0; i--)
            if (same_node(&k->nodes[i], &n))
                return i;
    n.slot = derive_slot(k, &n);
    if (ordered && k->n_events > n.slot)
        n.slot = k->n_events; /* the slot after the last event: where the builder is */
    ir_grow((void **)&k->nodes, &k->cap_nodes, k->n_nodes + 1, sizeof *k->nodes);
    k->nodes[k->n_nodes] = n;
    return k->n_nodes++;
}

static cg_node mk(cg_op op, cg_type t, int a0, int a1, int a2)
{
    return (cg_node){.op = op, .type = t, .in = {a0, a1, a2}, .a = -1};
}

cg_val cg_const_int(cg_kernel *k, cg_type t, int64_t v)
{
    cg_node n = mk(CG_CONST, t, -1, -1, -1);
    n.ival = t == CG_BOOL ? (v != 0) : t == CG_I32 ? (int32_t)v : v;
    return emit(k, n);
}

cg_val cg_const_float(cg_kernel *k, cg_type t, double v)
{
    cg_node n = mk(CG_CONST, t, -1, -1, -1);
    n.fval = t == CG_F32 ? (double)(float)v : v;
    return emit(k, n);
}

static cg_val leaf(cg_kernel *k, cg_op op, int a)
{
    cg_node n = mk(op, CG_I64, -1, -1, -1);
    n.a = a;
    return emit(k, n);
}

cg_val cg_pidx(cg_kernel *k, int dim) { return leaf(k, CG_PIDX, dim); }
cg_val cg_lidx(cg_kernel *k, int loop) { return leaf(k, CG_LIDX, loop); }
cg_val cg_scalar(cg_kernel *k, int arg) { return leaf(k, CG_SCALAR, arg); }

cg_val cg_load(cg_kernel *k, int arg, cg_val index)
{
    cg_type t = arg >= 0 && arg < k->n_args ? cg_compute_type(k->args[arg].dtype) : CG_VOID;
    cg_node n = mk(CG_LOAD, t, index, -1, -1);
    n.a = arg;
    return emit(k, n);
}

cg_val cg_store(cg_kernel *k, int arg, cg_val index, cg_val value)
{
    /* a store to a half buffer rounds: a value just rounded to that type is stored unrounded */
    const cg_node *v = value >= 0 && value < k->n_nodes ? &k->nodes[value] : NULL;
    ir_dtype dt = arg >= 0 && arg < k->n_args ? k->args[arg].dtype : DT_VOID;
    if (v && ((v->op == CG_RBF16 && dt == DT_BF16) || (v->op == CG_RF16 && dt == DT_F16)))
        value = v->in[0];
    cg_node n = mk(CG_STORE, CG_VOID, index, value, -1);
    n.a = arg;
    return emit(k, n);
}

cg_val cg_reduce(cg_kernel *k, cg_red red, int loop, cg_val value)
{
    cg_node n = mk(CG_REDUCE, type_of(k, value), value, -1, -1);
    n.a = loop;
    n.red = red;
    return emit(k, n);
}

static bool is_const(const cg_kernel *k, cg_val v)
{
    const cg_node *n = node_at(k, v);
    return n && n->op == CG_CONST;
}

static bool is_int_const(const cg_kernel *k, cg_val v, int64_t c)
{
    const cg_node *n = node_at(k, v);
    return n && n->op == CG_CONST && cg_type_is_int(n->type) && n->ival == c;
}

cg_val cg_cast(cg_kernel *k, cg_type to, cg_val x)
{
    cg_type from = type_of(k, x);
    if (from == to)
        return x;
    if (is_const(k, x) && from != CG_VOID && to != CG_VOID) {
        const cg_node *c = &k->nodes[x];
        if (cg_type_is_float(from) && cg_type_is_float(to))
            return cg_const_float(k, to, c->fval);
        if (!cg_type_is_float(from) && cg_type_is_float(to))
            return cg_const_float(k, to, (double)c->ival);
        if (!cg_type_is_float(from) && !cg_type_is_float(to))
            return cg_const_int(k, to, c->ival);
    }
    return emit(k, mk(CG_CAST, to, x, -1, -1));
}

cg_val cg_unary(cg_kernel *k, cg_op op, cg_val x)
{
    return emit(k, mk(op, type_of(k, x), x, -1, -1));
}

/* Folds integer arithmetic on two constants; false when it would overflow or divide by 0. */
static bool fold_int(cg_op op, cg_type t, int64_t x, int64_t y, int64_t *r)
{
    switch (op) {
    case CG_ADD: if (__builtin_add_overflow(x, y, r)) return false; break;
    case CG_SUB: if (__builtin_sub_overflow(x, y, r)) return false; break;
    case CG_MUL: if (__builtin_mul_overflow(x, y, r)) return false; break;
    case CG_DIV: if (y == 0 || (x == INT64_MIN && y == -1)) return false; *r = x / y; break;
    case CG_MOD: if (y == 0 || (x == INT64_MIN && y == -1)) return false; *r = x % y; break;
    case CG_MAX: *r = x > y ? x : y; break;
    case CG_MIN: *r = x < y ? x : y; break;
    default: return false;
    }
    return t == CG_I64 || (*r >= INT32_MIN && *r <= INT32_MAX);
}

cg_val cg_binary(cg_kernel *k, cg_op op, cg_val x, cg_val y)
{
    cg_type t = type_of(k, x);
    if (cg_type_is_int(t) && t == type_of(k, y)) {
        int64_t r;
        if (is_const(k, x) && is_const(k, y) && fold_int(op, t, k->nodes[x].ival, k->nodes[y].ival, &r))
            return cg_const_int(k, t, r);
        switch (op) {
        case CG_ADD:
            if (is_int_const(k, y, 0)) return x;
            if (is_int_const(k, x, 0)) return y;
            break;
        case CG_SUB:
            if (is_int_const(k, y, 0)) return x;
            break;
        case CG_MUL:
            if (is_int_const(k, y, 1)) return x;
            if (is_int_const(k, x, 1)) return y;
            if (is_int_const(k, x, 0) || is_int_const(k, y, 0)) return cg_const_int(k, t, 0);
            break;
        case CG_DIV:
            if (is_int_const(k, y, 1)) return x;
            break;
        case CG_MOD:
            if (is_int_const(k, y, 1)) return cg_const_int(k, t, 0);
            break;
        default: break;
        }
    }
    cg_op_class cls = op < CG_OP_COUNT ? cg_ops[op].cls : CGC_LEAF;
    cg_type rt = cls == CGC_CMP ? CG_BOOL : t;
    return emit(k, mk(op, rt, x, y, -1));
}

cg_val cg_select(cg_kernel *k, cg_val cond, cg_val a, cg_val b)
{
    if (a == b)
        return a;
    return emit(k, mk(CG_SELECT, type_of(k, a), cond, a, b));
}

cg_val cg_carry(cg_kernel *k, int loop, cg_val init)
{
    if (!k->seq || !valid_loop(k, loop) || k->loop_close[loop] >= 0)
        ir_unreachable("cg_carry: not an open loop of a sequential kernel");
    cg_node n = mk(CG_CARRY, type_of(k, init), init, -1, -1);
    n.a = loop;
    return emit(k, n);
}

void cg_carry_next(cg_kernel *k, cg_val carry, cg_val next)
{
    if (!valid_ref(k, carry) || k->nodes[carry].op != CG_CARRY)
        ir_unreachable("cg_carry_next: not a carry");
    k->nodes[carry].in[1] = next;
}

cg_val cg_last(cg_kernel *k, cg_val carry)
{
    if (!valid_ref(k, carry) || k->nodes[carry].op != CG_CARRY || k->loop_close[k->nodes[carry].a] < 0)
        ir_unreachable("cg_last: not a carry of a closed loop");
    cg_node n = mk(CG_LAST, k->nodes[carry].type, carry, -1, -1);
    n.a = k->nodes[carry].a;
    return emit(k, n);
}

/* ---- identical kernels ---------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0x100000001b3ull;
}

static uint64_t node_bits(const cg_node *n, int part)
{
    uint64_t f;
    memcpy(&f, &n->fval, sizeof f);
    switch (part) {
    case 0: return (uint64_t)n->op | (uint64_t)n->type << 8 | (uint64_t)n->red << 16 | (uint64_t)(uint32_t)n->slot << 32;
    case 1: return (uint64_t)(uint32_t)n->in[0] | (uint64_t)(uint32_t)n->in[1] << 32;
    case 2: return (uint64_t)(uint32_t)n->in[2] | (uint64_t)(uint32_t)n->a << 32;
    case 3: return (uint64_t)n->ival;
    default: return f;
    }
}

uint64_t cg_kernel_body_hash(const cg_kernel *k)
{
    uint64_t h = mix(mix(mix((uint64_t)k->n_args, (uint64_t)k->n_dims), (uint64_t)k->n_loops), (uint64_t)k->n_nodes);
    h = mix(h, (uint64_t)k->seq);
    for (int i = 0; i < k->n_args; i++)
        h = mix(mix(h, (uint64_t)k->args[i].scalar | (uint64_t)k->args[i].dtype << 8 | (uint64_t)k->args[i].access << 16),
                (uint64_t)k->args[i].numel);
    for (int i = 0; i < k->n_dims; i++)
        h = mix(h, (uint64_t)k->dim[i]);
    for (int i = 0; i < k->n_loops; i++)
        h = mix(mix(mix(h, (uint64_t)k->loop[i]), (uint64_t)(uint32_t)k->loop_parent[i]),
                (uint64_t)(uint32_t)k->loop_bound[i] | (uint64_t)(uint32_t)k->loop_open[i] << 32);
    for (int i = 0; i < k->n_nodes; i++)
        for (int part = 0; part < 5; part++)
            h = mix(h, node_bits(&k->nodes[i], part));
    return h;
}

bool cg_kernel_same_body(const cg_kernel *a, const cg_kernel *b)
{
    if (a->n_args != b->n_args || a->n_dims != b->n_dims || a->n_loops != b->n_loops || a->n_nodes != b->n_nodes ||
        a->seq != b->seq || a->n_events != b->n_events)
        return false;
    for (int i = 0; i < a->n_args; i++)
        if (a->args[i].scalar != b->args[i].scalar || a->args[i].dtype != b->args[i].dtype ||
            a->args[i].access != b->args[i].access || a->args[i].numel != b->args[i].numel)
            return false;
    for (int i = 0; i < a->n_dims; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    for (int i = 0; i < a->n_loops; i++)
        if (a->loop[i] != b->loop[i] || a->loop_parent[i] != b->loop_parent[i] || a->loop_bound[i] != b->loop_bound[i] ||
            a->loop_open[i] != b->loop_open[i] || a->loop_close[i] != b->loop_close[i])
            return false;
    for (int i = 0; i < a->n_nodes; i++)
        for (int part = 0; part < 5; part++)
            if (node_bits(&a->nodes[i], part) != node_bits(&b->nodes[i], part))
                return false;
    return true;
}

int cg_kernel_dce(cg_kernel *k)
{
    int *map = malloc(((size_t)k->n_nodes + 1) * sizeof *map);
    if (!map)
        ir_unreachable("out of memory");
    for (int i = 0; i < k->n_nodes; i++)
        map[i] = k->nodes[i].op == CG_STORE;
    for (int l = 0; l < k->n_loops; l++)
        if (valid_ref(k, k->loop_bound[l]))
            map[k->loop_bound[l]] = 1;
    /* a carry's next value comes after it: repeat until nothing changes */
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = k->n_nodes - 1; i >= 0; i--) {
            if (!map[i])
                continue;
            int n_in = k->nodes[i].op == CG_CARRY ? 2 : cg_ops[k->nodes[i].op].n_in;
            for (int j = 0; j < n_in; j++) {
                int x = k->nodes[i].in[j];
                if (valid_ref(k, x) && !map[x]) {
                    map[x] = 1;
                    changed |= x > i;
                }
            }
        }
    }
    int n = 0;
    for (int i = 0; i < k->n_nodes; i++)
        map[i] = map[i] ? n++ : -1;
    for (int i = 0; i < k->n_nodes; i++) {
        if (map[i] < 0)
            continue;
        cg_node nd = k->nodes[i];
        for (int j = 0; j < 3; j++)
            if (valid_ref(k, nd.in[j]))
                nd.in[j] = map[nd.in[j]];
        k->nodes[map[i]] = nd;
    }
    for (int l = 0; l < k->n_loops; l++)
        if (valid_ref(k, k->loop_bound[l]))
            k->loop_bound[l] = map[k->loop_bound[l]];
    int removed = k->n_nodes - n;
    k->n_nodes = n;
    free(map);
    return removed;
}

/* ---- validator --------------------------------------------------------------------------- */

static bool is_ident(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* A closed integer interval; known false means "any value". */
typedef struct {
    bool known;
    int64_t lo, hi;
} range;

static range range_of(const cg_kernel *k, const range *r, const cg_node *n)
{
    range u = {false, 0, 0};
    if (!cg_type_is_int(n->type))
        return u;
    const range *x = valid_ref(k, n->in[0]) ? &r[n->in[0]] : &u;
    const range *y = valid_ref(k, n->in[1]) ? &r[n->in[1]] : &u;
    range out = {true, 0, 0};
    switch (n->op) {
    case CG_CARRY:
    case CG_LAST: return u;
    case CG_CONST: return (range){true, n->ival, n->ival};
    case CG_PIDX: return (range){true, 0, k->dim[n->a] - 1};
    case CG_LIDX: return (range){true, 0, k->loop[n->a] - 1};
    case CG_CAST:
        return valid_ref(k, n->in[0]) && cg_type_is_int(k->nodes[n->in[0]].type) ? *x : u;
    default: break;
    }
    if (n->op == CG_SELECT) {
        const range *b = valid_ref(k, n->in[2]) ? &r[n->in[2]] : &u;
        if (!y->known || !b->known)
            return u;
        return (range){true, y->lo < b->lo ? y->lo : b->lo, y->hi > b->hi ? y->hi : b->hi};
    }
    if (!x->known || !y->known)
        return u;
    switch (n->op) {
    case CG_ADD:
        if (__builtin_add_overflow(x->lo, y->lo, &out.lo) || __builtin_add_overflow(x->hi, y->hi, &out.hi))
            return u;
        return out;
    case CG_SUB:
        if (__builtin_sub_overflow(x->lo, y->hi, &out.lo) || __builtin_sub_overflow(x->hi, y->lo, &out.hi))
            return u;
        return out;
    case CG_MUL: {
        int64_t c[4];
        if (__builtin_mul_overflow(x->lo, y->lo, &c[0]) || __builtin_mul_overflow(x->lo, y->hi, &c[1]) ||
            __builtin_mul_overflow(x->hi, y->lo, &c[2]) || __builtin_mul_overflow(x->hi, y->hi, &c[3]))
            return u;
        out.lo = out.hi = c[0];
        for (int i = 1; i < 4; i++) {
            out.lo = c[i] < out.lo ? c[i] : out.lo;
            out.hi = c[i] > out.hi ? c[i] : out.hi;
        }
        return out;
    }
    case CG_DIV:
        if (x->lo < 0 || y->lo <= 0)
            return u;
        return (range){true, x->lo / y->hi, x->hi / y->lo};
    case CG_MOD:
        if (x->lo < 0 || y->lo <= 0)
            return u;
        return (range){true, 0, x->hi < y->hi - 1 ? x->hi : y->hi - 1};
    case CG_MAX:
        return (range){true, x->lo > y->lo ? x->lo : y->lo, x->hi > y->hi ? x->hi : y->hi};
    case CG_MIN:
        return (range){true, x->lo < y->lo ? x->lo : y->lo, x->hi < y->hi ? x->hi : y->hi};
    default: return u;
    }
}

#define VERR(...)                                                                            \
    do {                                                                                     \
        char msg_[256];                                                                      \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                            \
        ir_diag_error(d, -1, 0, 0, "kernel %s: %s", k->name ? k->name : "?", msg_);          \
        ok = false;                                                                          \
    } while (0)

/* Checks node i's operands and type rule; returns false (after reporting) on failure. */
static bool check_node(const cg_kernel *k, int i, ir_diag *d)
{
    bool ok = true;
    const cg_node *n = &k->nodes[i];
    if ((unsigned)n->op >= CG_OP_COUNT) {
        VERR("%%%d: bad opcode %d", i, (int)n->op);
        return false;
    }
    const cg_op_info *info = &cg_ops[n->op];
    if (info->cls == CGC_LOOP && !k->seq) {
        VERR("%%%d: %s in a kernel that is not sequential", i, info->name);
        return false;
    }
    if (n->op == CG_REDUCE && k->seq) {
        VERR("%%%d: reduce in a sequential kernel (a carry folds in order)", i);
        return false;
    }
    if (n->op == CG_CARRY && (n->in[1] < 0 || n->in[1] >= k->n_nodes || n->in[1] == i)) {
        VERR("%%%d: carry without a next value (cg_carry_next)", i);
        return false;
    }
    for (int j = 0; j < info->n_in; j++) {
        if (n->op == CG_CARRY && j == 1) { /* the next value: any node of the loop body */
            if (k->nodes[n->in[1]].type == CG_VOID) {
                VERR("%%%d: carry: its next value (%%%d) has no value", i, n->in[1]);
                return false;
            }
            continue;
        }
        if (n->in[j] < 0 || n->in[j] >= i) {
            VERR("%%%d: %s: operand %d (%%%d) is not an earlier node", i, info->name, j, n->in[j]);
            return false;
        }
        if (k->nodes[n->in[j]].type == CG_VOID) {
            VERR("%%%d: %s: operand %d (%%%d) has no value", i, info->name, j, n->in[j]);
            return false;
        }
    }
    cg_type t = n->type, x = info->n_in > 0 ? k->nodes[n->in[0]].type : CG_VOID;
    cg_type y = info->n_in > 1 ? k->nodes[n->in[1]].type : CG_VOID;
    const char *nm = info->name;
    switch (info->cls) {
    case CGC_LEAF:
        if (n->op == CG_CONST) {
            if (t == CG_VOID || (unsigned)t >= CG_TYPE_COUNT)
                VERR("%%%d: const of type %s", i, cg_type_name(t));
        } else if (t != CG_I64) {
            VERR("%%%d: %s must be i64, not %s", i, nm, cg_type_name(t));
        } else if (n->op == CG_PIDX && (n->a < 0 || n->a >= k->n_dims)) {
            VERR("%%%d: pidx %d: the grid has %d dims", i, n->a, k->n_dims);
        } else if (n->op == CG_LIDX && (n->a < 0 || n->a >= k->n_loops)) {
            VERR("%%%d: lidx %d: the kernel has %d loops", i, n->a, k->n_loops);
        } else if (n->op == CG_SCALAR && (n->a < 0 || n->a >= k->n_args || !k->args[n->a].scalar)) {
            VERR("%%%d: scalar: arg %d is not a scalar argument", i, n->a);
        }
        break;
    case CGC_MEM: {
        if (n->a < 0 || n->a >= k->n_args || k->args[n->a].scalar) {
            VERR("%%%d: %s: arg %d is not a buffer argument", i, nm, n->a);
            break;
        }
        const cg_arg *a = &k->args[n->a];
        if (x != CG_I64)
            VERR("%%%d: %s %s: index must be i64, not %s", i, nm, a->name, cg_type_name(x));
        cg_type ct = cg_compute_type(a->dtype);
        if (n->op == CG_LOAD) {
            if (!(a->access & CG_IN))
                VERR("%%%d: load from %s, which is not readable (out)", i, a->name);
            if (t != ct)
                VERR("%%%d: load %s: type %s, expected %s", i, a->name, cg_type_name(t), cg_type_name(ct));
        } else {
            if (!(a->access & CG_OUT))
                VERR("%%%d: store to %s, which is not writable (in)", i, a->name);
            if (y != ct)
                VERR("%%%d: store %s: value is %s, expected %s (buffer of %s)", i, a->name,
                     cg_type_name(y), cg_type_name(ct), ir_dtype_name(a->dtype));
            if (t != CG_VOID)
                VERR("%%%d: store must have type void", i);
        }
        break;
    }
    case CGC_RED:
        if (n->a < 0 || n->a >= k->n_loops)
            VERR("%%%d: reduce over loop %d: the kernel has %d loops", i, n->a, k->n_loops);
        if ((unsigned)n->red > CG_RED_MIN)
            VERR("%%%d: reduce: bad combiner %d", i, (int)n->red);
        if (t != x || !(cg_type_is_int(t) || cg_type_is_float(t)))
            VERR("%%%d: reduce of %s must have the value's numeric type, not %s", i,
                 cg_type_name(x), cg_type_name(t));
        break;
    case CGC_CAST:
        if (t == CG_VOID || (unsigned)t >= CG_TYPE_COUNT)
            VERR("%%%d: cast to %s", i, cg_type_name(t));
        break;
    case CGC_UNUM:
    case CGC_UFLT:
        if (info->cls == CGC_UFLT ? !cg_type_is_float(x) : !(cg_type_is_float(x) || cg_type_is_int(x)))
            VERR("%%%d: %s of %s", i, nm, cg_type_name(x));
        else if ((n->op == CG_RBF16 || n->op == CG_RF16) && x != CG_F32)
            VERR("%%%d: %s of %s (f32 only)", i, nm, cg_type_name(x));
        else if (t != x)
            VERR("%%%d: %s of %s has type %s", i, nm, cg_type_name(x), cg_type_name(t));
        break;
    case CGC_BNUM:
    case CGC_BINT:
    case CGC_BFLT:
    case CGC_CMP:
    case CGC_BBOOL: {
        bool operand_ok = info->cls == CGC_BINT    ? cg_type_is_int(x)
                          : info->cls == CGC_BFLT  ? cg_type_is_float(x)
                          : info->cls == CGC_BBOOL ? x == CG_BOOL
                                                   : cg_type_is_int(x) || cg_type_is_float(x);
        cg_type want = info->cls == CGC_CMP ? CG_BOOL : x;
        if (x != y)
            VERR("%%%d: %s of %s and %s", i, nm, cg_type_name(x), cg_type_name(y));
        else if (!operand_ok)
            VERR("%%%d: %s of %s", i, nm, cg_type_name(x));
        else if (t != want)
            VERR("%%%d: %s of %s has type %s, expected %s", i, nm, cg_type_name(x), cg_type_name(t),
                 cg_type_name(want));
        break;
    }
    case CGC_SEL: {
        cg_type z = k->nodes[n->in[2]].type;
        if (x != CG_BOOL)
            VERR("%%%d: select condition is %s, not bool", i, cg_type_name(x));
        if (y != z || t != y)
            VERR("%%%d: select of %s and %s has type %s", i, cg_type_name(y), cg_type_name(z),
                 cg_type_name(t));
        break;
    }
    case CGC_LOOP:
        if (n->a < 0 || n->a >= k->n_loops) {
            VERR("%%%d: %s over loop %d: the kernel has %d loops", i, nm, n->a, k->n_loops);
            break;
        }
        if (n->op == CG_CARRY) {
            if (t != x || t != y || t == CG_VOID)
                VERR("%%%d: carry of %s with next value %s has type %s", i, cg_type_name(x), cg_type_name(y),
                     cg_type_name(t));
        } else if (k->nodes[n->in[0]].op != CG_CARRY || k->nodes[n->in[0]].a != n->a || t != x) {
            VERR("%%%d: last of %%%d, which is not a carry of loop %d of type %s", i, n->in[0], n->a,
                 cg_type_name(t));
        }
        break;
    }
    return ok;
}

/* Sequential kernels: each node's slot against its operands' (kir.h, "Sequential kernels"). */
static bool check_slot_seq(const cg_kernel *k, int i, ir_diag *d)
{
    bool ok = true;
    const cg_node *n = &k->nodes[i];
    int ns = 2 * k->n_loops + 1;
    if (n->slot < 0 || n->slot >= ns) {
        VERR("%%%d: slot %d, outside [0, %d)", i, n->slot, ns);
        return false;
    }
    int want = derive_slot(k, n), scope = cg_kernel_slot_loop(k, n->slot);
    if (is_ordered(k, n) ? n->slot < want : n->slot != want) {
        VERR("%%%d: slot %d, but its operands place it in slot %d", i, n->slot, want);
        return false;
    }
    int n_in = cg_ops[n->op].n_in;
    for (int j = 0; j < n_in; j++) {
        const cg_node *o = &k->nodes[n->in[j]];
        int os = cg_kernel_slot_loop(k, o->slot);
        if (n->op == CG_CARRY) {
            int l = n->a, at = j == 0 ? k->loop_parent[l] : l;
            if (j == 0 ? o->slot > k->loop_open[l] : o->slot > k->loop_close[l])
                VERR("%%%d: carry over loop %d: its %s %%%d comes after the loop %s", i, l, j ? "next value" : "init",
                     n->in[j], j ? "closes" : "opens");
            else if (!encloses(k, os, at))
                VERR("%%%d: carry over loop %d: its %s %%%d is a value of loop %d", i, l, j ? "next value" : "init",
                     n->in[j], os);
            continue;
        }
        if (n->op == CG_LAST)
            continue; /* its carry is of the loop that closed just before it */
        if (o->slot > n->slot || !encloses(k, os, scope)) {
            VERR("%%%d: uses %%%d, a value of loop %d, outside that loop", i, n->in[j], os);
            break;
        }
    }
    return ok;
}

/* Sequential kernels: loops open and close in a nest, numbered in order of opening; bounds
 * are i64 values available where their loop opens. */
static bool check_loops_seq(const cg_kernel *k, ir_diag *d)
{
    bool ok = true;
    for (int j = 0; j < k->n_loops; j++) {
        int o = k->loop_open[j], c = k->loop_close[j], p = k->loop_parent[j];
        if (c < 0) {
            VERR("loop %d is never closed", j);
            continue;
        }
        if (o < 0 || o >= c || c >= 2 * k->n_loops || (j > 0 && o <= k->loop_open[j - 1]))
            VERR("loop %d: events %d..%d out of order", j, o, c);
        if (p >= j || (p >= 0 && !(k->loop_open[p] < o && c < k->loop_close[p])))
            VERR("loop %d: not inside its parent loop %d", j, p);
        for (int q = 0; q < j; q++)
            if (k->loop_close[q] > o && !encloses(k, q, j))
                VERR("loop %d opens inside loop %d, which is not its ancestor", j, q);
        int b = k->loop_bound[j];
        if (b >= 0) {
            if (b >= k->n_nodes || k->nodes[b].type != CG_I64)
                VERR("loop %d: bound %%%d is not an i64 node", j, b);
            else if (k->nodes[b].slot > o || !encloses(k, cg_kernel_slot_loop(k, k->nodes[b].slot), p))
                VERR("loop %d: bound %%%d is not available where the loop opens", j, b);
        }
    }
    return ok;
}

/* Checks node i's slot against its operands (rules at the top of kir.h). */
static bool check_slot(const cg_kernel *k, int i, ir_diag *d)
{
    bool ok = true;
    const cg_node *n = &k->nodes[i];
    int want = derive_slot(k, n);
    if (n->slot != want)
        VERR("%%%d: slot %d, but its operands place it in slot %d", i, n->slot, want);
    if (n->op == CG_REDUCE) {
        int vs = k->nodes[n->in[0]].slot;
        if (vs > 2 * n->a + 1)
            VERR("%%%d: reduce over loop %d of %%%d, which is only available after loop %d", i, n->a,
                 n->in[0], (vs - 1) / 2);
        else if (vs % 2 == 1 && vs != 2 * n->a + 1)
            VERR("%%%d: reduce over loop %d of %%%d, a value of loop %d", i, n->a, n->in[0], vs / 2);
        return ok;
    }
    for (int j = 0; j < cg_ops[n->op].n_in; j++) {
        int os = k->nodes[n->in[j]].slot;
        if (os % 2 == 1 && os != want) {
            VERR("%%%d: uses %%%d, a value of loop %d, outside that loop", i, n->in[j], os / 2);
            break;
        }
    }
    return ok;
}

bool cg_kernel_validate(const cg_kernel *k, ir_diag *d)
{
    bool ok = true;
    if (!is_ident(k->name))
        VERR("kernel name is not a C identifier");
    for (int a = 0; a < k->n_args; a++) {
        const cg_arg *arg = &k->args[a];
        if (!is_ident(arg->name))
            VERR("arg %d: name '%s' is not a C identifier", a, arg->name ? arg->name : "");
        for (int b = 0; b < a; b++)
            if (arg->name && k->args[b].name && strcmp(arg->name, k->args[b].name) == 0)
                VERR("arg %d: duplicate name '%s'", a, arg->name);
        if (arg->scalar)
            continue;
        if (cg_compute_type(arg->dtype) == CG_VOID)
            VERR("arg %s: %s is not a buffer dtype", arg->name, ir_dtype_name(arg->dtype));
        if (arg->access < CG_IN || arg->access > CG_INOUT)
            VERR("arg %s: bad access %d", arg->name, (int)arg->access);
        if (arg->numel < 0)
            VERR("arg %s: negative element count", arg->name);
    }
    if (k->n_dims < 1 || k->n_dims > CG_MAX_DIMS)
        VERR("the grid has %d dims (1 to %d allowed)", k->n_dims, CG_MAX_DIMS);
    for (int i = 0; i < k->n_dims && i < CG_MAX_DIMS; i++)
        if (k->dim[i] < 1)
            VERR("grid dim %d has size %" PRId64, i, k->dim[i]);
    if (k->n_loops < 0 || k->n_loops > CG_MAX_LOOPS)
        VERR("%d loops (at most %d allowed)", k->n_loops, CG_MAX_LOOPS);
    for (int i = 0; i < k->n_loops && i < CG_MAX_LOOPS; i++)
        if (k->loop[i] < 1)
            VERR("loop %d has extent %" PRId64, i, k->loop[i]);
    if (!ok)
        return false;
    if (k->seq && !check_loops_seq(k, d))
        return false;

    range *r = calloc((size_t)k->n_nodes + 1, sizeof *r);
    if (!r)
        ir_unreachable("out of memory");
    for (int i = 0; i < k->n_nodes; i++) {
        if (!check_node(k, i, d)) {
            ok = false;
            continue;
        }
        if (!(k->seq ? check_slot_seq(k, i, d) : check_slot(k, i, d)))
            ok = false;
        const cg_node *n = &k->nodes[i];
        r[i] = range_of(k, r, n);
        if (n->op == CG_LOAD || n->op == CG_STORE) {
            const cg_arg *a = &k->args[n->a];
            const range *ix = &r[n->in[0]];
            if (ix->known && (ix->lo < 0 || (a->numel > 0 && ix->hi >= a->numel)))
                VERR("%%%d: %s %s: index range [%" PRId64 ", %" PRId64 "] is outside [0, %" PRId64 ")",
                     i, cg_ops[n->op].name, a->name, ix->lo, ix->hi, a->numel);
        }
    }
    free(r);
    return ok;
}

/* ---- printer ----------------------------------------------------------------------------- */

/* Shortest %g text that reads back to exactly v as a double, or as a float if f32 (same rule
 * as ir/print.c). */
static void format_float(double v, bool f32, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v < 0 ? "-inf" : "inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(buf, cap, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (f32 ? (double)strtof(buf, NULL) == v : strtod(buf, NULL) == v)
            return;
    }
}

static const char *arg_name(const cg_kernel *k, int a)
{
    return a >= 0 && a < k->n_args && k->args[a].name ? k->args[a].name : "?";
}

/* One node's line (without indentation). */
static void print_node(const cg_kernel *k, int i, FILE *out)
{
    const cg_node *n = &k->nodes[i];
    const char *nm = (unsigned)n->op < CG_OP_COUNT ? cg_ops[n->op].name : "?";
    if (n->op == CG_STORE) {
        fprintf(out, "store %s[%%%d], %%%d\n", arg_name(k, n->a), n->in[0], n->in[1]);
        return;
    }
    fprintf(out, "%%%d = ", i);
    switch (n->op) {
    case CG_CONST:
        if (cg_type_is_float(n->type)) {
            char buf[40];
            format_float(n->fval, n->type == CG_F32, buf, sizeof buf);
            fprintf(out, "const %s", buf);
        } else {
            fprintf(out, "const %" PRId64, n->ival);
        }
        break;
    case CG_PIDX:
    case CG_LIDX: fprintf(out, "%s %d", nm, n->a); break;
    case CG_SCALAR: fprintf(out, "scalar %s", arg_name(k, n->a)); break;
    case CG_LOAD: fprintf(out, "load %s[%%%d]", arg_name(k, n->a), n->in[0]); break;
    case CG_REDUCE: fprintf(out, "reduce.%s %%%d loop %d", cg_red_name(n->red), n->in[0], n->a); break;
    default: {
        fputs(nm, out);
        int n_in = (unsigned)n->op < CG_OP_COUNT ? cg_ops[n->op].n_in : 0;
        for (int j = 0; j < n_in; j++)
            fprintf(out, "%s%%%d", j ? ", " : " ", n->in[j]);
    }
    }
    fprintf(out, " : %s\n", cg_type_name(n->type));
}

/* A sequential kernel's body: the nodes slot by slot, each loop as a block at its events. */
static void print_seq_body(const cg_kernel *k, FILE *out)
{
    int depth = 1;
    for (int g = 0; g <= 2 * k->n_loops; g++) {
        for (int i = 0; i < k->n_nodes; i++)
            if (k->nodes[i].slot == g) {
                for (int x = 0; x < depth; x++)
                    fputs("  ", out);
                print_node(k, i, out);
            }
        bool opens = false;
        int j = g < 2 * k->n_loops ? cg_kernel_event_loop(k, g, &opens) : -1;
        if (j < 0)
            continue;
        if (!opens)
            depth--;
        for (int x = 0; x < depth; x++)
            fputs("  ", out);
        if (!opens) {
            fputs("}\n", out);
            continue;
        }
        fprintf(out, "loop %d [%" PRId64 "]", j, k->loop[j]);
        if (k->loop_bound[j] >= 0)
            fprintf(out, " bound %%%d", k->loop_bound[j]);
        fputs(" {\n", out);
        depth++;
    }
}

void cg_kernel_print(const cg_kernel *k, FILE *out)
{
    static const char *const access[] = {"?", "in", "out", "inout"};
    fprintf(out, "kernel %s(", k->name ? k->name : "?");
    for (int a = 0; a < k->n_args; a++) {
        const cg_arg *arg = &k->args[a];
        if (a)
            fputs(", ", out);
        if (arg->scalar)
            fprintf(out, "i64 %s", arg_name(k, a));
        else if (arg->numel > 0)
            fprintf(out, "%s %s %s[%" PRId64 "]", access[arg->access & 3], ir_dtype_name(arg->dtype),
                    arg_name(k, a), arg->numel);
        else
            fprintf(out, "%s %s %s[]", access[arg->access & 3], ir_dtype_name(arg->dtype), arg_name(k, a));
    }
    fputs(") grid [", out);
    for (int i = 0; i < k->n_dims && i < CG_MAX_DIMS; i++)
        fprintf(out, "%s%" PRId64, i ? ", " : "", k->dim[i]);
    fputs("]", out);
    if (k->seq) {
        fputs(" seq {\n", out);
        print_seq_body(k, out);
        fputs("}\n", out);
        return;
    }
    if (k->n_loops > 0) {
        fputs(" loops [", out);
        for (int i = 0; i < k->n_loops && i < CG_MAX_LOOPS; i++)
            fprintf(out, "%s%" PRId64, i ? ", " : "", k->loop[i]);
        fputs("]", out);
    }
    fputs(" {\n", out);
    for (int i = 0; i < k->n_nodes; i++) {
        fputs(k->nodes[i].slot % 2 ? "    " : "  ", out);
        print_node(k, i, out);
    }
    fputs("}\n", out);
}

void cg_kernel_group_barriers(const cg_kernel *k, bool *bar)
{
    memset(bar, 0, (size_t)(k->n_nodes + k->n_loops) * sizeof *bar);
    if (k->n_loops == 0 || k->seq)
        return;
    /* per arg: an inout buffer loaded since the last group barrier */
    bool *pending = calloc((size_t)k->n_args + 1, sizeof *pending);
    if (!pending)
        ir_unreachable("out of memory");
    for (int s = 0; s < cg_kernel_nslots(k); s++) {
        bool loop = s % 2 == 1, reduces = false;
        for (int i = 0; loop && i < k->n_nodes; i++) {
            const cg_node *n = &k->nodes[i];
            if (n->slot == s && n->op == CG_STORE && pending[n->a])
                bar[k->n_nodes + s / 2] = true;
            reduces |= n->op == CG_REDUCE && n->a == s / 2;
        }
        if (loop && bar[k->n_nodes + s / 2])
            memset(pending, 0, (size_t)k->n_args * sizeof *pending);
        for (int i = 0; i < k->n_nodes; i++) {
            const cg_node *n = &k->nodes[i];
            if (n->slot != s)
                continue;
            if (n->op == CG_LOAD && k->args[n->a].access == CG_INOUT)
                pending[n->a] = true;
            if (!loop && n->op == CG_STORE && pending[n->a]) {
                bar[i] = true;
                memset(pending, 0, (size_t)k->n_args * sizeof *pending);
            }
        }
        if (reduces) /* the group reduction after the loop: its barriers order all before */
            memset(pending, 0, (size_t)k->n_args * sizeof *pending);
    }
    free(pending);
}
