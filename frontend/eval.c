/* eval.c — expressions of the .loom language (docs/language.md, "Values" and "Builtin
 * operations"): build-time arithmetic on numbers, tensor arithmetic as graph nodes (a number
 * next to a tensor becomes a rank-0 const of the tensor's dtype), calls of IR ops through the
 * registry (tensor arguments → operands, other positional arguments → attributes in schema order,
 * keyword arguments → attributes by name, each checked against its kind), the builder functions
 * split/arange/full/dim, and sqrt/exp/log/tanh of numbers.
 *
 * Every node is appended with the location of the expression that made it (a binary operator's
 * position, a call's name) and its shape rule runs at once, so shape errors point at the
 * expression. The left spine of a chain of binary operators is walked iteratively: recursion
 * depth is bounded by the parser's nesting limit, not by the length of an expression.
 */
#include "frontend/build.h"
#include "ir/ops_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- values --------------------------------------------------------------------------- */

value v_err(void) { return (value){.k = V_ERR}; }
value v_int(int64_t i) { return (value){.k = V_INT, .i = i}; }
value v_float(double f) { return (value){.k = V_FLOAT, .f = f}; }
value v_tensor(ir_node *t) { return (value){.k = V_TENSOR, .t = t}; }
bool v_is_num(const value *v) { return v->k == V_INT || v->k == V_FLOAT; }
double v_num(const value *v) { return v->k == V_INT ? (double)v->i : v->f; }

const char *v_describe(const value *v, char *buf, size_t cap)
{
    char type[300];
    switch (v->k) {
    case V_ERR: snprintf(buf, cap, "an erroneous value"); break;
    case V_INT: snprintf(buf, cap, "the integer %" PRId64, v->i); break;
    case V_FLOAT: snprintf(buf, cap, "the float %g", v->f); break;
    case V_TENSOR: snprintf(buf, cap, "a tensor %s", ir_type_str(v->t->dtype, &v->t->shape, type, sizeof type)); break;
    case V_DTYPE: snprintf(buf, cap, "the dtype %s", ir_dtype_name(v->dt)); break;
    case V_LIST: snprintf(buf, cap, "a list"); break;
    case V_TUPLE: snprintf(buf, cap, "a tuple of %d values", v->n); break;
    case V_STR: snprintf(buf, cap, "a string"); break;
    case V_SYM: snprintf(buf, cap, "the name '%s'", v->s); break;
    }
    return buf;
}

/* ---- nodes ---------------------------------------------------------------------------- */

ir_node *node_new(builder *b, ir_opcode op, int n_in, ir_node *const *in, ir_loc loc)
{
    ir_node *n = ir_node_add(b->g, op, n_in, in, loc);
    n->scope = b->cur_scope;
    return n;
}

value node_finish(builder *b, ir_node *n)
{
    if (!ir_infer(n, b->d))
        return v_err();
    return v_tensor(n);
}

/* A rank-0 const of dtype dt holding the number v (made at loc). */
static value scalar_const(builder *b, const value *v, ir_dtype dt, ir_loc loc)
{
    if (v->k == V_FLOAT && ir_dtype_is_int(dt) && v->f != floor(v->f)) {
        b_error(b, loc, "the float %g cannot be used with an %s tensor", v->f, ir_dtype_name(dt));
        return v_err();
    }
    ir_node *n = node_new(b, OP_const, 0, NULL, loc);
    n->dtype = dt;
    n->shape.rank = 0;
    ir_attr_set_float(n, "value", v_num(v));
    return node_finish(b, n);
}

/* Reports the use of an unbound name that was kept as an identifier (V_SYM); false then. */
static bool not_sym(builder *b, const value *v, ir_loc loc)
{
    if (v->k != V_SYM)
        return true;
    b_error(b, loc, "unknown name '%s'", v->s);
    return false;
}

/* ---- numbers -------------------------------------------------------------------------- */

static value num_result(builder *b, double r, ir_loc loc)
{
    if (!isfinite(r)) {
        b_error(b, loc, "the result is not a finite number");
        return v_err();
    }
    return v_float(r);
}

/* Build-time arithmetic: integers stay integers (floor division, modulo with the divisor's
 * sign), anything with a float is a float. */
static value num_binary(builder *b, char op, const value *l, const value *r, ir_loc loc)
{
    if (op == '@') {
        b_error(b, loc, "'@' multiplies matrices, not numbers");
        return v_err();
    }
    if (l->k == V_INT && r->k == V_INT) {
        int64_t x = l->i, y = r->i, z = 0;
        bool overflow = false;
        switch (op) {
        case '+': overflow = __builtin_add_overflow(x, y, &z); break;
        case '-': overflow = __builtin_sub_overflow(x, y, &z); break;
        case '*': overflow = __builtin_mul_overflow(x, y, &z); break;
        case '/':
        case '%':
            if (y == 0) {
                b_error(b, loc, "division by zero");
                return v_err();
            }
            if (x == INT64_MIN && y == -1) {
                overflow = true;
                break;
            }
            z = op == '/' ? x / y : x % y;
            if (op == '/' && (x % y != 0) && ((x < 0) != (y < 0)))
                z--; /* floor */
            if (op == '%' && z != 0 && ((z < 0) != (y < 0)))
                z += y;
            break;
        }
        if (overflow) {
            b_error(b, loc, "integer overflow in %" PRId64 " %c %" PRId64, x, op, y);
            return v_err();
        }
        return v_int(z);
    }
    double x = v_num(l), y = v_num(r), z = 0;
    switch (op) {
    case '+': z = x + y; break;
    case '-': z = x - y; break;
    case '*': z = x * y; break;
    case '/':
    case '%':
        if (y == 0) {
            b_error(b, loc, "division by zero");
            return v_err();
        }
        if (op == '/') {
            z = x / y;
        } else {
            z = fmod(x, y);
            if (z != 0 && ((z < 0) != (y < 0)))
                z += y;
        }
        break;
    }
    return num_result(b, z, loc);
}

/* ---- operators ------------------------------------------------------------------------ */

static value apply_binary(builder *b, const ast_expr *e, value l, value r)
{
    if (l.k == V_ERR || r.k == V_ERR)
        return v_err();
    if (!not_sym(b, &l, e->lhs->loc) || !not_sym(b, &r, e->rhs->loc))
        return v_err();
    if (v_is_num(&l) && v_is_num(&r))
        return num_binary(b, e->op, &l, &r, e->loc);
    char ld[320], rd[320];
    bool lt = l.k == V_TENSOR, rt = r.k == V_TENSOR;
    if (!((lt || v_is_num(&l)) && (rt || v_is_num(&r)))) {
        b_error(b, e->loc, "'%c' cannot combine %s and %s", e->op, v_describe(&l, ld, sizeof ld),
                v_describe(&r, rd, sizeof rd));
        return v_err();
    }
    if (e->op == '%') {
        b_error(b, e->loc, "'%%' applies to numbers, not tensors");
        return v_err();
    }
    if (e->op == '@' && !(lt && rt)) {
        b_error(b, e->loc, "'@' needs two tensors, got %s and %s", v_describe(&l, ld, sizeof ld),
                v_describe(&r, rd, sizeof rd));
        return v_err();
    }
    if (!lt)
        l = scalar_const(b, &l, r.t->dtype, e->lhs->loc);
    if (!rt)
        r = scalar_const(b, &r, l.t->dtype, e->rhs->loc);
    if (l.k == V_ERR || r.k == V_ERR)
        return v_err();
    ir_node *in[2] = {l.t, r.t};
    ir_node *n = node_new(b, ir_op_lookup(ast_binary_op_name(e->op)), 2, in, e->loc);
    return node_finish(b, n);
}

/* a op b op c ...: the left spine iteratively, each right operand recursively. */
static value expr_binary(builder *b, scope *s, const ast_expr *e)
{
    const ast_expr *small[32], **spine = small;
    int n = 0;
    for (const ast_expr *x = e; x->kind == AST_BINARY; x = x->lhs)
        n++;
    if (n > 32)
        spine = malloc(sizeof *spine * (size_t)n);
    if (!spine)
        ir_unreachable("out of memory");
    int k = 0;
    const ast_expr *x = e;
    for (; x->kind == AST_BINARY; x = x->lhs)
        spine[k++] = x;
    value acc = eval(b, s, x);
    for (int i = n - 1; i >= 0; i--) {
        value r = eval(b, s, spine[i]->rhs);
        acc = apply_binary(b, spine[i], acc, r);
    }
    if (spine != small)
        free(spine);
    return acc;
}

static value expr_neg(builder *b, scope *s, const ast_expr *e)
{
    value x = eval(b, s, e->lhs);
    char desc[320];
    switch (x.k) {
    case V_ERR: return x;
    case V_INT:
        if (x.i == INT64_MIN) {
            b_error(b, e->loc, "integer overflow in -(%" PRId64 ")", x.i);
            return v_err();
        }
        return v_int(-x.i);
    case V_FLOAT: return v_float(-x.f);
    case V_TENSOR: return node_finish(b, node_new(b, OP_neg, 1, &x.t, e->loc));
    default:
        b_error(b, e->loc, "unary '-' cannot apply to %s", v_describe(&x, desc, sizeof desc));
        return v_err();
    }
}

/* [a, b, c]: a list of numbers. */
static value expr_list(builder *b, scope *s, const ast_expr *e)
{
    value v = {.k = V_LIST, .n = e->n_args};
    v.items = ir_arena_alloc(&b->arena, sizeof *v.items * (size_t)(e->n_args ? e->n_args : 1));
    bool ok = true;
    int k = 0;
    for (const ast_arg *a = e->args; a; a = a->next, k++) {
        value x = eval(b, s, a->value);
        char desc[320];
        if (x.k == V_ERR) {
            ok = false;
        } else if (!v_is_num(&x)) {
            b_error(b, a->value->loc, "a list holds numbers, not %s", v_describe(&x, desc, sizeof desc));
            ok = false;
        }
        v.items[k] = x;
    }
    return ok ? v : v_err();
}

bool eval_int(builder *b, scope *s, const ast_expr *e, const char *what, int64_t *out)
{
    value v = eval(b, s, e);
    if (v.k == V_ERR)
        return false;
    if (v.k != V_INT) {
        char desc[320];
        b_error(b, e->loc, "%s must be an integer, got %s", what, v_describe(&v, desc, sizeof desc));
        return false;
    }
    *out = v.i;
    return true;
}

/* ---- calls ---------------------------------------------------------------------------- */

/* Binds call arguments to the parameter list names[0..n) of builtin `fn`: positional in order,
 * keyword by name. out[k] is NULL when not given. */
static bool bind_args(builder *b, const ast_expr *e, const char *fn, const char *const *names, int n,
                      int required, argval *args, int n_args, argval **out)
{
    for (int k = 0; k < n; k++)
        out[k] = NULL;
    int pos = 0;
    bool ok = true;
    for (int i = 0; i < n_args; i++) {
        const ast_arg *a = args[i].a;
        int k;
        if (a->name) {
            for (k = 0; k < n && strcmp(names[k], a->name) != 0; k++)
                ;
            if (k == n) {
                b_error(b, a->loc, "%s has no argument '%s'", fn, a->name);
                ok = false;
                continue;
            }
        } else {
            k = pos++;
            if (k >= n) {
                b_error(b, a->loc, "%s takes at most %d arguments, got %d", fn, n, n_args);
                return false;
            }
        }
        if (out[k]) {
            b_error(b, a->loc, "argument '%s' of %s given twice", names[k], fn);
            ok = false;
            continue;
        }
        out[k] = &args[i];
    }
    for (int k = 0; ok && k < required; k++)
        if (!out[k]) {
            b_error(b, e->loc, "%s: missing argument '%s'", fn, names[k]);
            ok = false;
        }
    for (int k = 0; ok && k < n; k++)
        if (out[k] && (out[k]->v.k == V_ERR || !not_sym(b, &out[k]->v, out[k]->a->value->loc)))
            ok = false;
    return ok;
}

static bool arg_int(builder *b, const argval *a, const char *fn, const char *what, int64_t *out)
{
    if (a->v.k != V_INT) {
        char desc[320];
        b_error(b, a->a->value->loc, "%s: %s must be an integer, got %s", fn, what,
                v_describe(&a->v, desc, sizeof desc));
        return false;
    }
    *out = a->v.i;
    return true;
}

static bool arg_tensor(builder *b, const argval *a, const char *fn, ir_node **out)
{
    if (a->v.k != V_TENSOR) {
        char desc[320];
        b_error(b, a->a->value->loc, "%s: expected a tensor, got %s", fn, v_describe(&a->v, desc, sizeof desc));
        return false;
    }
    *out = a->v.t;
    return true;
}

static bool arg_dtype(builder *b, const argval *a, const char *fn, ir_dtype *out)
{
    if (a->v.k != V_DTYPE) {
        char desc[320];
        b_error(b, a->a->value->loc, "%s: expected a dtype, got %s", fn, v_describe(&a->v, desc, sizeof desc));
        return false;
    }
    *out = a->v.dt;
    return true;
}

/* Normalizes axis (negative counts from the end) for a rank-r tensor. */
static bool norm_axis(builder *b, ir_loc loc, const char *fn, int64_t axis, int rank, int64_t *out)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
        b_error(b, loc, "%s: axis %" PRId64 " is out of range for a rank-%d tensor", fn, axis, rank);
        return false;
    }
    *out = a;
    return true;
}

/* split(x, n, axis=-1): a tuple of n equal slices along axis. */
static value call_split(builder *b, const ast_expr *e, argval *args, int n_args)
{
    static const char *const names[] = {"x", "n", "axis"};
    argval *a[3];
    ir_node *x;
    int64_t n, axis = -1;
    if (!bind_args(b, e, "split", names, 3, 2, args, n_args, a) || !arg_tensor(b, a[0], "split", &x) ||
        !arg_int(b, a[1], "split", "the count", &n) || (a[2] && !arg_int(b, a[2], "split", "the axis", &axis)))
        return v_err();
    if (!norm_axis(b, a[2] ? a[2]->a->value->loc : e->loc, "split", axis, x->shape.rank, &axis))
        return v_err();
    int64_t size = x->shape.dim[axis];
    if (n <= 0 || n > 4096 || size % n != 0) {
        b_error(b, a[1]->a->value->loc, "split: dimension %" PRId64 " of size %" PRId64 " cannot be split in %" PRId64 " equal parts",
                axis, size, n);
        return v_err();
    }
    value t = {.k = V_TUPLE, .n = (int)n};
    t.items = ir_arena_alloc(&b->arena, sizeof *t.items * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        ir_node *sl = node_new(b, OP_slice, 1, &x, e->loc);
        ir_attr_set_int(sl, "axis", axis);
        ir_attr_set_int(sl, "start", i * (size / n));
        ir_attr_set_int(sl, "end", (i + 1) * (size / n));
        t.items[i] = node_finish(b, sl);
        if (t.items[i].k == V_ERR)
            return v_err();
    }
    return t;
}

/* arange(n, dtype=i32): 0, 1, ..., n-1 as an iota. */
static value call_arange(builder *b, const ast_expr *e, argval *args, int n_args)
{
    static const char *const names[] = {"n", "dtype"};
    argval *a[2];
    int64_t n;
    ir_dtype dt = DT_I32;
    if (!bind_args(b, e, "arange", names, 2, 1, args, n_args, a) || !arg_int(b, a[0], "arange", "the length", &n) ||
        (a[1] && !arg_dtype(b, a[1], "arange", &dt)))
        return v_err();
    if (n <= 0) {
        b_error(b, a[0]->a->value->loc, "arange: the length must be positive, got %" PRId64, n);
        return v_err();
    }
    ir_node *t = node_new(b, OP_iota, 0, NULL, e->loc);
    t->dtype = dt;
    t->shape.rank = 1;
    t->shape.dim[0] = n;
    ir_attr_set_int(t, "axis", 0);
    return node_finish(b, t);
}

/* Checks a list of numbers as a shape (positive integers, rank at most IR_MAX_RANK). */
static bool list_shape(builder *b, const argval *a, const char *fn, ir_shape *out)
{
    if (a->v.k != V_LIST) {
        char desc[320];
        b_error(b, a->a->value->loc, "%s: the shape must be a list of integers, got %s", fn,
                v_describe(&a->v, desc, sizeof desc));
        return false;
    }
    if (a->v.n > IR_MAX_RANK) {
        b_error(b, a->a->value->loc, "%s: rank %d is more than the maximum of %d", fn, a->v.n, IR_MAX_RANK);
        return false;
    }
    out->rank = a->v.n;
    for (int i = 0; i < a->v.n; i++) {
        const value *d = &a->v.items[i];
        if (d->k != V_INT || d->i <= 0) {
            char desc[320];
            b_error(b, a->a->value->loc, "%s: dimension %d must be a positive integer, got %s", fn, i,
                    v_describe(d, desc, sizeof desc));
            return false;
        }
        out->dim[i] = d->i;
    }
    return true;
}

/* full([shape], value, dtype=f32): a constant tensor. */
static value call_full(builder *b, const ast_expr *e, argval *args, int n_args)
{
    static const char *const names[] = {"shape", "value", "dtype"};
    argval *a[3];
    ir_shape shape;
    ir_dtype dt = DT_F32;
    if (!bind_args(b, e, "full", names, 3, 2, args, n_args, a) || !list_shape(b, a[0], "full", &shape) ||
        (a[2] && !arg_dtype(b, a[2], "full", &dt)))
        return v_err();
    if (!v_is_num(&a[1]->v)) {
        char desc[320];
        b_error(b, a[1]->a->value->loc, "full: the value must be a number, got %s",
                v_describe(&a[1]->v, desc, sizeof desc));
        return v_err();
    }
    ir_node *t = node_new(b, OP_const, 0, NULL, e->loc);
    t->dtype = dt;
    t->shape = shape;
    ir_attr_set_float(t, "value", v_num(&a[1]->v));
    return node_finish(b, t);
}

/* dim(x, axis): the number x.shape[axis]. */
static value call_dim(builder *b, const ast_expr *e, argval *args, int n_args)
{
    static const char *const names[] = {"x", "axis"};
    argval *a[2];
    ir_node *x;
    int64_t axis;
    if (!bind_args(b, e, "dim", names, 2, 2, args, n_args, a) || !arg_tensor(b, a[0], "dim", &x) ||
        !arg_int(b, a[1], "dim", "the axis", &axis) ||
        !norm_axis(b, a[1]->a->value->loc, "dim", axis, x->shape.rank, &axis))
        return v_err();
    return v_int(x->shape.dim[axis]);
}

/* sqrt exp log tanh of a number. */
static value call_math(builder *b, const ast_expr *e, const value *x)
{
    double v = v_num(x), r = 0;
    if (strcmp(e->s, "sqrt") == 0) {
        if (v < 0) {
            b_error(b, e->loc, "sqrt of the negative number %g", v);
            return v_err();
        }
        r = sqrt(v);
    } else if (strcmp(e->s, "exp") == 0) {
        r = exp(v);
    } else if (strcmp(e->s, "log") == 0) {
        if (v <= 0) {
            b_error(b, e->loc, "log of the non-positive number %g", v);
            return v_err();
        }
        r = log(v);
    } else {
        r = tanh(v);
    }
    return num_result(b, r, e->loc);
}

/* Converts argument a to attribute k of node n, checking its kind. */
static bool set_attr(builder *b, ir_node *n, int k, const argval *a)
{
    char name[64], desc[320];
    const char *op = ir_ops[n->op].mnemonic;
    ir_op_attr_name(n->op, k, name, sizeof name);
    ir_attr *at = &n->attr[k];
    const value *v = &a->v;
    ir_loc loc = a->a->value->loc;
    switch (at->kind) {
    case AK_INT:
        if (v->k == V_INT) {
            at->i = v->i;
            return true;
        }
        b_error(b, loc, "%s: attribute '%s' must be an integer, got %s", op, name, v_describe(v, desc, sizeof desc));
        return false;
    case AK_FLOAT:
        if (v_is_num(v)) {
            at->f = v_num(v);
            return true;
        }
        b_error(b, loc, "%s: attribute '%s' must be a number, got %s", op, name, v_describe(v, desc, sizeof desc));
        return false;
    case AK_STR:
        /* a bare name is the identifier itself, even where a variable of that name exists */
        if (a->a->value->kind == AST_NAME) {
            at->s = ir_graph_strdup(b->g, a->a->value->s);
            return true;
        }
        if (v->k == V_STR) {
            at->s = ir_graph_strdup(b->g, v->s);
            return true;
        }
        b_error(b, loc, "%s: attribute '%s' must be a name, got %s", op, name, v_describe(v, desc, sizeof desc));
        return false;
    case AK_DTYPE:
        if (v->k == V_DTYPE) {
            at->d = v->dt;
            return true;
        }
        b_error(b, loc, "%s: attribute '%s' must be a dtype, got %s", op, name, v_describe(v, desc, sizeof desc));
        return false;
    case AK_INTS:
        if (v->k == V_LIST) {
            bool ints = true;
            for (int i = 0; i < v->n; i++)
                ints &= v->items[i].k == V_INT;
            if (ints) {
                at->n = v->n;
                at->ints = v->n ? ir_arena_alloc(&b->g->arena, sizeof *at->ints * (size_t)v->n) : NULL;
                for (int i = 0; i < v->n; i++)
                    at->ints[i] = v->items[i].i;
                return true;
            }
        }
        b_error(b, loc, "%s: attribute '%s' must be a list of integers, got %s", op, name,
                v_describe(v, desc, sizeof desc));
        return false;
    }
    ir_unreachable("bad attribute kind");
}

/* An IR op: tensors bind operands in order, other positional arguments the attributes in schema
 * order, keyword arguments attributes by name. */
static value call_op(builder *b, const ast_expr *e, ir_opcode op, argval *args, int n_args)
{
    const ir_op_info *info = &ir_ops[op];
    int n_attrs = ir_op_nattrs(op);
    const argval *attr[IR_MAX_ATTRS] = {0};
    ir_node *small[8], **ins = small;
    if (n_args > 8)
        ins = ir_arena_alloc(&b->arena, sizeof *ins * (size_t)n_args);
    int n_in = 0, next_attr = 0;
    bool ok = true;
    char name[64];
    for (int i = 0; i < n_args; i++) {
        const argval *a = &args[i];
        if (a->v.k == V_ERR) {
            ok = false;
            continue;
        }
        int k;
        if (a->a->name) {
            k = ir_op_attr_index(op, a->a->name);
            if (k < 0) {
                b_error(b, a->a->loc, "%s has no attribute '%s'", info->mnemonic, a->a->name);
                ok = false;
                continue;
            }
            if (ir_op_attr_kind(op, k) != AK_STR && !not_sym(b, &a->v, a->a->value->loc)) {
                ok = false;
                continue;
            }
        } else if (a->v.k == V_TENSOR) {
            ins[n_in++] = a->v.t;
            continue;
        } else {
            k = next_attr++;
            if (k >= n_attrs || (a->v.k == V_SYM && ir_op_attr_kind(op, k) != AK_STR)) {
                if (!not_sym(b, &a->v, a->a->value->loc)) {
                    ok = false;
                    continue;
                }
                char desc[320];
                if (n_attrs == 0)
                    b_error(b, a->a->value->loc, "%s takes tensors only, got %s", info->mnemonic,
                            v_describe(&a->v, desc, sizeof desc));
                else
                    b_error(b, a->a->value->loc, "%s takes %d attribute%s, got more", info->mnemonic,
                            n_attrs, n_attrs == 1 ? "" : "s");
                ok = false;
                continue;
            }
        }
        if (attr[k]) {
            b_error(b, a->a->loc, "attribute '%s' of %s given twice", ir_op_attr_name(op, k, name, sizeof name),
                    info->mnemonic);
            ok = false;
            continue;
        }
        attr[k] = a;
    }
    if (!ok)
        return v_err();
    if (n_in < info->min_in || (info->max_in >= 0 && n_in > info->max_in)) {
        if (info->max_in < 0)
            b_error(b, e->loc, "%s expects at least %d tensor operand%s, got %d", info->mnemonic, info->min_in,
                    info->min_in == 1 ? "" : "s", n_in);
        else if (info->min_in == info->max_in)
            b_error(b, e->loc, "%s expects %d tensor operand%s, got %d", info->mnemonic, info->min_in,
                    info->min_in == 1 ? "" : "s", n_in);
        else
            b_error(b, e->loc, "%s expects %d to %d tensor operands, got %d", info->mnemonic, info->min_in,
                    info->max_in, n_in);
        return v_err();
    }
    for (int k = 0; k < n_attrs; k++)
        if (!attr[k] && !ir_op_attr_default(op, k)) {
            b_error(b, e->loc, "%s: missing attribute '%s'", info->mnemonic, ir_op_attr_name(op, k, name, sizeof name));
            return v_err();
        }
    ir_node *n = node_new(b, op, n_in, ins, e->loc);
    for (int k = 0; k < n_attrs; k++)
        if (attr[k] && !set_attr(b, n, k, attr[k]))
            ok = false;
    if (!ok)
        return v_err();
    return node_finish(b, n);
}

static bool is_math_fn(const char *s)
{
    return strcmp(s, "sqrt") == 0 || strcmp(s, "exp") == 0 || strcmp(s, "log") == 0 || strcmp(s, "tanh") == 0;
}

static value expr_call(builder *b, scope *s, const ast_expr *e)
{
    const ast_unit *blk = find_block(b, e->s);
    ir_opcode op = ir_op_lookup(e->s);
    bool builtin = strcmp(e->s, "split") == 0 || strcmp(e->s, "arange") == 0 || strcmp(e->s, "full") == 0 ||
                   strcmp(e->s, "dim") == 0;
    if (!blk && !builtin && op == OP_COUNT) {
        b_error(b, e->loc, "unknown function '%s'", e->s);
        return v_err();
    }
    if (!blk && !builtin && (ir_ops[op].kind == OK_SOURCE || ir_ops[op].kind == OK_SINK)) {
        b_error(b, e->loc, "'%s' is an IR op that the language does not call (use a declaration, arange or full)",
                e->s);
        return v_err();
    }
    /* Evaluate the arguments once, left to right. Op arguments may be bare identifiers
     * (approx=tanh), so unbound names become V_SYM there and are checked where they bind. */
    argval small[8], *args = small;
    if (e->n_args > 8)
        args = ir_arena_alloc(&b->arena, sizeof *args * (size_t)e->n_args);
    int k = 0;
    bool ok = true;
    for (const ast_arg *a = e->args; a; a = a->next, k++) {
        args[k].a = a;
        if (!blk && !builtin && a->value->kind == AST_NAME && !scope_lookup(s, a->value->s))
            args[k].v = (value){.k = V_SYM, .s = a->value->s};
        else
            args[k].v = eval(b, s, a->value);
        ok &= args[k].v.k != V_ERR;
    }
    if (!ok)
        return v_err();
    if (blk)
        return call_block(b, e, blk, args, e->n_args);
    if (builtin) {
        if (strcmp(e->s, "split") == 0)
            return call_split(b, e, args, e->n_args);
        if (strcmp(e->s, "arange") == 0)
            return call_arange(b, e, args, e->n_args);
        if (strcmp(e->s, "full") == 0)
            return call_full(b, e, args, e->n_args);
        return call_dim(b, e, args, e->n_args);
    }
    if (is_math_fn(e->s) && e->n_args == 1 && !args[0].a->name && v_is_num(&args[0].v))
        return call_math(b, e, &args[0].v);
    return call_op(b, e, op, args, e->n_args);
}

/* ---- entry ---------------------------------------------------------------------------- */

value eval(builder *b, scope *s, const ast_expr *e)
{
    switch (e->kind) {
    case AST_INT: return v_int(e->i);
    case AST_FLOAT: return v_float(e->f);
    case AST_STRING: return (value){.k = V_STR, .s = e->s};
    case AST_DTYPE: return (value){.k = V_DTYPE, .dt = e->dtype};
    case AST_NAME: {
        binding *bd = scope_lookup(s, e->s);
        if (!bd) {
            b_error(b, e->loc, "unknown name '%s'", e->s);
            return v_err();
        }
        return bd->v;
    }
    case AST_LIST: return expr_list(b, s, e);
    case AST_CALL: return expr_call(b, s, e);
    case AST_BINARY: return expr_binary(b, s, e);
    case AST_NEG: return expr_neg(b, s, e);
    }
    ir_unreachable("bad expression kind");
}
