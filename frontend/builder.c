/* builder.c — fe_build: the syntax tree of a .loom file to graph IR (docs/language.md).
 *
 * Order of work: parse; check the file's structure (one model, unique blocks, statements only
 * where the grammar's comments allow them, `return` last in a block); then run the model body
 * statement by statement: hyperparameters bound with -D overrides, mesh axes, inputs, params,
 * lets, loops unrolled, blocks inlined per call (their params created per call, recursion
 * refused), outputs. Every node is shape-checked as it is made (eval.c), then the whole graph is
 * verified. Errors are values in the ir_diag; a failed statement binds its names to V_ERR, so the
 * build goes on and reports independent errors, and the same error reported again (a block called
 * once per layer) is dropped. Nodes made inside a block call carry the outermost instance as
 * n->scope ("gpt2_block(l=3)"); @stage(k) marks every node its statement made.
 */
#include "frontend/build.h"
#include "ir/ops_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most iterations one `for` may unroll. */
#define MAX_LOOP_ITERATIONS (1 << 20)
#define MAX_ITERATIONS (1 << 24) /* all loops of a model together (nested loops multiply) */

/* ---- errors --------------------------------------------------------------------------- */

static void vreport(builder *b, ir_diag_level level, ir_loc loc, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (level == DIAG_ERROR)
        ir_diag_error(b->d, loc.file, loc.line, loc.col, "%s", msg);
    else
        ir_diag_note(b->d, loc.file, loc.line, loc.col, "%s", msg);
}

void b_error(builder *b, ir_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(b, DIAG_ERROR, loc, fmt, ap);
    va_end(ap);
}

void b_note(builder *b, ir_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(b, DIAG_NOTE, loc, fmt, ap);
    va_end(ap);
}

static bool same_msg(const ir_diag_msg *a, const ir_diag_msg *b)
{
    return a->level == b->level && a->file == b->file && a->line == b->line && a->col == b->col &&
           strcmp(a->msg, b->msg) == 0;
}

/* Drops errors stored from index `from` on that repeat an earlier error exactly (with the notes
 * that follow them): a mistake in a block called once per layer is reported once. */
static void dedupe_diags(ir_diag *d, int from)
{
    int k = from;
    for (int i = from; i < d->n_msg;) {
        ir_diag_msg *m = &d->msg[i];
        bool dup = false;
        if (m->level == DIAG_ERROR)
            for (int j = 0; j < k && !dup; j++)
                dup = same_msg(&d->msg[j], m);
        if (!dup) {
            d->msg[k++] = d->msg[i++];
            continue;
        }
        d->n_errors--;
        free(m->msg);
        for (i++; i < d->n_msg && d->msg[i].level == DIAG_NOTE; i++)
            free(d->msg[i].msg);
    }
    d->n_msg = k;
}

/* ---- scopes --------------------------------------------------------------------------- */

scope *scope_new(builder *b, scope *parent)
{
    scope *s = ir_arena_alloc(&b->arena, sizeof *s);
    s->parent = parent;
    return s;
}

binding *scope_find(scope *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->b[i].name, name) == 0)
            return &s->b[i];
    return NULL;
}

binding *scope_lookup(scope *s, const char *name)
{
    for (; s; s = s->parent) {
        binding *bd = scope_find(s, name);
        if (bd)
            return bd;
    }
    return NULL;
}

void scope_bind(builder *b, scope *s, const char *name, value v, binding_kind kind, ir_loc loc)
{
    binding *bd = scope_find(s, name);
    if (!bd) {
        if (s->n == s->cap) { /* arena arrays: grow by copying */
            int cap = s->cap ? 2 * s->cap : 8;
            binding *nb = ir_arena_alloc(&b->arena, sizeof *nb * (size_t)cap);
            if (s->n)
                memcpy(nb, s->b, sizeof *nb * (size_t)s->n);
            s->b = nb;
            s->cap = cap;
        }
        bd = &s->b[s->n++];
    }
    *bd = (binding){name, v, kind, loc};
}

/* ---- string sets ---------------------------------------------------------------------- */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds key; returns false (and the first location in *first) if it was there. */
static bool strset_add(strset *set, const char *key, ir_loc loc, ir_loc *first)
{
    if (2 * (set->n + 1) > set->cap) {
        int cap = set->cap ? 2 * set->cap : 64;
        const char **keys = calloc((size_t)cap, sizeof *keys);
        ir_loc *locs = calloc((size_t)cap, sizeof *locs);
        if (!keys || !locs)
            ir_unreachable("out of memory");
        for (int i = 0; i < set->cap; i++)
            if (set->key[i]) {
                size_t j = str_hash(set->key[i]) & (size_t)(cap - 1);
                while (keys[j])
                    j = (j + 1) & (size_t)(cap - 1);
                keys[j] = set->key[i];
                locs[j] = set->loc[i];
            }
        free(set->key);
        free(set->loc);
        set->key = keys;
        set->loc = locs;
        set->cap = cap;
    }
    size_t j = str_hash(key) & (size_t)(set->cap - 1);
    for (; set->key[j]; j = (j + 1) & (size_t)(set->cap - 1))
        if (strcmp(set->key[j], key) == 0) {
            *first = set->loc[j];
            return false;
        }
    set->key[j] = key;
    set->loc[j] = loc;
    set->n++;
    return true;
}

static void strset_free(strset *set)
{
    free(set->key);
    free(set->loc);
}

/* ---- structure ------------------------------------------------------------------------ */

static const char *stmt_keyword(ast_stmt_kind k)
{
    switch (k) {
    case ST_HPARAM: return "hparam";
    case ST_MESH: return "mesh";
    case ST_INPUT: return "input";
    case ST_PARAM: return "param";
    case ST_LET: return "let";
    case ST_ASSIGN: return "assignment";
    case ST_OUTPUT: return "output";
    case ST_FOR: return "for";
    case ST_RETURN: return "return";
    }
    return "?";
}

/* Checks where statements stand: hparam, mesh, input at the top of the model body; output in
 * the model; return only as the last statement of a block body; annotations where they apply. */
static void check_stmts(builder *b, const ast_unit *u, const ast_stmt *st, bool in_loop)
{
    bool model = u->kind == UNIT_MODEL;
    for (; st; st = st->next) {
        const char *kw = stmt_keyword(st->kind);
        switch (st->kind) {
        case ST_HPARAM:
        case ST_MESH:
        case ST_INPUT:
            if (!model)
                b_error(b, st->loc, "'%s' is not allowed in a block (only in the model body)", kw);
            else if (in_loop)
                b_error(b, st->loc, "'%s' is not allowed inside a for loop", kw);
            break;
        case ST_OUTPUT:
            if (!model)
                b_error(b, st->loc, "'output' is not allowed in a block (only in the model body)");
            break;
        case ST_RETURN:
            if (model)
                b_error(b, st->loc, "'return' is only allowed in a block");
            else if (in_loop)
                b_error(b, st->loc, "'return' is not allowed inside a for loop");
            else if (st->next)
                b_error(b, st->next->loc, "statement after 'return' (it must be the last statement of a block)");
            break;
        case ST_FOR: check_stmts(b, u, st->body, true); break;
        default: break;
        }
        bool shard = false, stage = false;
        for (const ast_annot *a = st->annots; a; a = a->next) {
            bool *seen = a->kind == ANNOT_SHARD ? &shard : &stage;
            const char *name = a->kind == ANNOT_SHARD ? "@shard" : "@stage";
            if (*seen)
                b_error(b, a->loc, "%s given twice on one statement", name);
            *seen = true;
            if (a->kind == ANNOT_SHARD && st->kind != ST_PARAM && st->kind != ST_LET)
                b_error(b, a->loc, "@shard applies to 'param' and 'let' statements, not to %s%s",
                        st->kind == ST_ASSIGN ? "an " : "'", st->kind == ST_ASSIGN ? "assignment" : kw);
            if (a->kind == ANNOT_SHARD && st->kind == ST_LET && st->n_names > 1)
                b_error(b, a->loc, "@shard on a 'let' that binds %d names", st->n_names);
        }
    }
}

/* A block body returns at its top level (check_stmts reports a `return` that is not last). */
static bool has_return(const ast_stmt *st)
{
    for (; st; st = st->next)
        if (st->kind == ST_RETURN)
            return true;
    return false;
}

/* One model, blocks with unique names that are not builtin functions, unique block parameters. */
static bool check_file(builder *b, const ast_file *f)
{
    int errors = b->d->n_errors;
    int n_blocks = 0;
    for (const ast_unit *u = f->units; u; u = u->next)
        n_blocks += u->kind == UNIT_BLOCK;
    b->blocks = ir_arena_alloc(&b->arena, sizeof *b->blocks * (size_t)(n_blocks + 1));
    b->stack = ir_arena_alloc(&b->arena, sizeof *b->stack * (size_t)(n_blocks + 1));
    b->stack_at = ir_arena_alloc(&b->arena, sizeof *b->stack_at * (size_t)(n_blocks + 1));
    for (const ast_unit *u = f->units; u; u = u->next) {
        if (u->kind == UNIT_MODEL) {
            if (b->model) {
                b_error(b, u->loc, "second model '%s' in the file (a file holds exactly one model)", u->name);
                b_note(b, b->model->loc, "the first model is '%s'", b->model->name);
            } else {
                b->model = u;
            }
        } else {
            const ast_unit *prev = find_block(b, u->name);
            if (prev) {
                b_error(b, u->loc, "duplicate block '%s'", u->name);
                b_note(b, prev->loc, "'%s' is first defined here", u->name);
            } else if (ir_op_lookup(u->name) != OP_COUNT || strcmp(u->name, "split") == 0 ||
                       strcmp(u->name, "arange") == 0 || strcmp(u->name, "full") == 0 ||
                       strcmp(u->name, "dim") == 0) {
                b_error(b, u->loc, "block '%s' has the name of a builtin function", u->name);
            } else {
                b->blocks[b->n_blocks++] = u;
            }
            for (const ast_name *p = u->params; p; p = p->next)
                for (const ast_name *q = u->params; q != p; q = q->next)
                    if (strcmp(p->name, q->name) == 0) {
                        b_error(b, p->loc, "duplicate parameter '%s' of block '%s'", p->name, u->name);
                        break;
                    }
            if (!has_return(u->body))
                b_error(b, u->loc, "block '%s' has no 'return' statement", u->name);
        }
        check_stmts(b, u, u->body, false);
    }
    if (!b->model)
        b_error(b, (ir_loc){b->file, 0, 0}, "no model in file");
    return b->d->n_errors == errors;
}

const ast_unit *find_block(const builder *b, const char *name)
{
    for (int i = 0; i < b->n_blocks; i++)
        if (strcmp(b->blocks[i]->name, name) == 0)
            return b->blocks[i];
    return NULL;
}

/* ---- declarations --------------------------------------------------------------------- */

/* type := DTYPE '[' dims ']': every dim a positive integer. */
static bool eval_type(builder *b, scope *s, const ast_type *t, ir_shape *shape)
{
    if (t->n_dims > IR_MAX_RANK) {
        b_error(b, t->loc, "rank %d is more than the maximum of %d", t->n_dims, IR_MAX_RANK);
        return false;
    }
    shape->rank = t->n_dims;
    int k = 0;
    bool ok = true;
    for (const ast_arg *a = t->dims; a; a = a->next, k++) {
        int64_t v = 1;
        if (!eval_int(b, s, a->value, "a dimension", &v)) {
            ok = false;
        } else if (v <= 0) {
            b_error(b, a->value->loc, "a dimension must be positive, got %" PRId64, v);
            ok = false;
        }
        shape->dim[k] = v;
    }
    return ok;
}

/* let x: T = v / output y: T = v: the value must be a tensor of type T. */
static bool check_declared(builder *b, scope *s, const ast_type *t, const value *v)
{
    ir_shape shape;
    if (!eval_type(b, s, t, &shape))
        return false;
    char want[300], got[320];
    ir_type_str(t->dtype, &shape, want, sizeof want);
    if (v->k != V_TENSOR) {
        b_error(b, t->loc, "declared %s but the value is %s", want, v_describe(v, got, sizeof got));
        return false;
    }
    if (v->t->dtype != t->dtype || !ir_shape_eq(&v->t->shape, &shape)) {
        b_error(b, t->loc, "declared %s but the value is %s", want,
                ir_type_str(v->t->dtype, &v->t->shape, got, sizeof got));
        return false;
    }
    return true;
}

/* @shard(a0, a1, ...) on node n: one entry per dimension, each a mesh axis or '_'. */
static bool apply_shard(builder *b, const ast_annot *a, ir_node *n)
{
    if (a->n_axes != n->shape.rank) {
        b_error(b, a->loc, "@shard has %d entr%s for a rank-%d value", a->n_axes, a->n_axes == 1 ? "y" : "ies",
                n->shape.rank);
        return false;
    }
    ir_shard sh = {.present = true};
    int k = 0;
    for (const ast_name *x = a->axes; x; x = x->next, k++) {
        if (strcmp(x->name, "_") == 0) {
            sh.axis[k] = IR_REPLICATED;
            continue;
        }
        int axis = ir_graph_axis(b->g, x->name);
        if (axis < 0) {
            char have[128] = "";
            size_t len = 0;
            for (int i = 0; i < b->g->n_axes; i++)
                len += (size_t)snprintf(have + len, len < sizeof have ? sizeof have - len : 0, "%s%s", i ? ", " : "",
                                        b->g->axis_name[i]);
            if (b->g->n_axes)
                b_error(b, x->loc, "unknown mesh axis '%s' (the model's mesh has %s)", x->name, have);
            else
                b_error(b, x->loc, "unknown mesh axis '%s' (the model declares no mesh)", x->name);
            return false;
        }
        for (int j = 0; j < k; j++)
            if (sh.axis[j] == axis) {
                b_error(b, x->loc, "mesh axis '%s' appears twice in @shard", x->name);
                return false;
            }
        sh.axis[k] = (int8_t)axis;
    }
    n->shard = sh;
    return true;
}

static const ast_annot *find_annot(const ast_stmt *st, ast_annot_kind kind)
{
    for (const ast_annot *a = st->annots; a; a = a->next)
        if (a->kind == kind)
            return a;
    return NULL;
}

/* Declares a new name in scope s (hparam, input, param, let): an error if the name is visible
 * there already (no shadowing: `x = ...` rebinds). */
static bool declare(builder *b, scope *s, const ast_name *n)
{
    binding *prev = scope_lookup(s, n->name);
    if (prev) {
        b_error(b, n->loc, "'%s' is already defined", n->name);
        b_note(b, prev->loc, "'%s' is first defined here", n->name);
        return false;
    }
    return true;
}

/* Parses the text of -D name=value: an integer, or a float. */
static bool parse_define(const char *text, value *out)
{
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 10);
    if (*text && !*end && errno == 0) {
        *out = v_int(i);
        return true;
    }
    errno = 0;
    double f = strtod(text, &end);
    if (*text && !*end && errno == 0 && f == f && f - f == 0) {
        *out = v_float(f);
        return true;
    }
    return false;
}

/* hparam n = default: the default (or -D override, which must have its type) bound globally. */
static void exec_hparam(builder *b, scope *s, const ast_stmt *st)
{
    for (const ast_name *n = st->names; n; n = n->next) {
        value v = eval(b, b->hparams, n->value);
        if (v.k != V_ERR && !v_is_num(&v)) {
            char desc[320];
            b_error(b, n->value->loc, "hyperparameter '%s' must be a number, not %s", n->name,
                    v_describe(&v, desc, sizeof desc));
            v = v_err();
        }
        for (int i = 0; i < b->n_defs; i++) {
            if (strcmp(b->defs[i].name, n->name) != 0)
                continue;
            b->def_used[i] = true;
            value dv;
            if (!parse_define(b->defs[i].value, &dv)) {
                b_error(b, n->loc, "-D %s=%s: not a number", b->defs[i].name, b->defs[i].value);
                v = v_err();
            } else if (v.k == V_INT && dv.k != V_INT) {
                b_error(b, n->loc, "-D %s=%s: hyperparameter '%s' is an integer", b->defs[i].name,
                        b->defs[i].value, n->name);
                v = v_err();
            } else if (v.k != V_ERR) {
                v = v.k == V_FLOAT ? v_float(v_num(&dv)) : dv;
            }
        }
        if (declare(b, s, n))
            scope_bind(b, b->hparams, n->name, v, B_HPARAM, n->loc);
    }
}

static void exec_mesh(builder *b, const ast_stmt *st)
{
    if (b->mesh_seen) {
        b_error(b, st->loc, "the model declares its mesh twice");
        b_note(b, b->mesh_loc, "the first mesh is declared here");
        return;
    }
    b->mesh_seen = true;
    b->mesh_loc = st->loc;
    if (st->n_names > IR_MAX_MESH_AXES) {
        b_error(b, st->names->loc, "a mesh has at most %d axes, got %d", IR_MAX_MESH_AXES, st->n_names);
        return;
    }
    for (const ast_name *n = st->names; n; n = n->next) {
        if (strcmp(n->name, "_") == 0) {
            b_error(b, n->loc, "'_' cannot name a mesh axis (it means replicated)");
            return;
        }
        if (ir_graph_axis(b->g, n->name) >= 0) {
            b_error(b, n->loc, "duplicate mesh axis '%s'", n->name);
            return;
        }
        b->g->axis_name[b->g->n_axes++] = ir_graph_strdup(b->g, n->name);
    }
}

/* Inputs and outputs share one namespace of external names. */
static bool io_name(builder *b, const char *name, ir_loc loc)
{
    ir_loc first;
    if (strset_add(&b->io_names, name, loc, &first))
        return true;
    b_error(b, loc, "duplicate input or output name '%s'", name);
    b_note(b, first, "'%s' is first declared here", name);
    return false;
}

static void exec_input(builder *b, scope *s, const ast_stmt *st)
{
    const ast_name *n = st->names;
    value v = v_err();
    ir_shape shape;
    if (eval_type(b, s, st->type, &shape) && io_name(b, n->name, n->loc)) {
        ir_node *t = node_new(b, OP_input, 0, NULL, n->loc);
        t->name = ir_graph_strdup(b->g, n->name);
        t->dtype = st->type->dtype;
        t->shape = shape;
        t->optional = st->optional;
        v = node_finish(b, t);
    }
    if (declare(b, s, n))
        scope_bind(b, s, n->name, v, B_INPUT, n->loc);
}

/* The external name of a param: `{l}` replaced by the integer l in scope. */
static const char *expand_name(builder *b, scope *s, const char *tmpl, ir_loc loc)
{
    size_t cap = strlen(tmpl) + 64, len = 0;
    char *out = ir_arena_alloc(&b->arena, cap);
    for (const char *p = tmpl; *p;) {
        if (*p == '}') {
            b_error(b, loc, "unmatched '}' in parameter name \"%s\"", tmpl);
            return NULL;
        }
        if (*p != '{') {
            if (len + 2 > cap) {
                char *bigger = ir_arena_alloc(&b->arena, cap *= 2);
                memcpy(bigger, out, len);
                out = bigger;
            }
            out[len++] = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close) {
            b_error(b, loc, "unterminated '{' in parameter name \"%s\"", tmpl);
            return NULL;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(close - p - 1), p + 1);
        binding *bd = scope_lookup(s, name);
        if (!bd) {
            b_error(b, loc, "unknown name '%s' in parameter name \"%s\"", name, tmpl);
            return NULL;
        }
        if (bd->v.k == V_ERR)
            return NULL;
        if (bd->v.k != V_INT) {
            char desc[320];
            b_error(b, loc, "'{%s}' in a parameter name must be an integer, got %s", name,
                    v_describe(&bd->v, desc, sizeof desc));
            return NULL;
        }
        char num[32];
        int k = snprintf(num, sizeof num, "%" PRId64, bd->v.i);
        while (len + (size_t)k + 2 > cap) {
            char *bigger = ir_arena_alloc(&b->arena, cap *= 2);
            memcpy(bigger, out, len);
            out = bigger;
        }
        memcpy(out + len, num, (size_t)k);
        len += (size_t)k;
        p = close + 1;
    }
    out[len] = 0;
    return out;
}

/* init := zeros | ones | normal(e) | uniform(e) | const(e) → the param's init/scale attributes */
static bool eval_init(builder *b, scope *s, const ast_expr *e, const char **init, double *scale)
{
    *init = "zeros";
    *scale = 0;
    if (!e)
        return true;
    if (e->kind == AST_NAME && (strcmp(e->s, "zeros") == 0 || strcmp(e->s, "ones") == 0)) {
        *init = e->s;
        return true;
    }
    if (e->kind == AST_CALL && e->n_args == 1 && !e->args->name &&
        (strcmp(e->s, "normal") == 0 || strcmp(e->s, "uniform") == 0 || strcmp(e->s, "const") == 0)) {
        value v = eval(b, s, e->args->value);
        if (v.k == V_ERR)
            return false;
        if (!v_is_num(&v)) {
            char desc[320];
            b_error(b, e->args->value->loc, "%s(...) takes a number, got %s", e->s, v_describe(&v, desc, sizeof desc));
            return false;
        }
        if (strcmp(e->s, "const") != 0 && v_num(&v) < 0) {
            b_error(b, e->args->value->loc, "%s(...) takes a non-negative number, got %g", e->s, v_num(&v));
            return false;
        }
        *init = e->s;
        *scale = v_num(&v);
        return true;
    }
    b_error(b, e->loc, "bad initializer: expected zeros, ones, normal(std), uniform(a) or const(v)");
    return false;
}

static void exec_param(builder *b, scope *s, const ast_stmt *st)
{
    const ast_name *n = st->names;
    value v = v_err();
    ir_shape shape;
    const char *init;
    double scale;
    bool ok = eval_type(b, s, st->type, &shape);
    ok &= eval_init(b, s, st->value, &init, &scale);
    const char *ext = st->ext_name ? expand_name(b, s, st->ext_name, st->ext_loc) : n->name;
    if (ok && ext) {
        ir_loc first;
        ext = ir_graph_strdup(b->g, ext);
        /* a block's param is declared at one place for every call: then the calls differ */
        ir_loc at = b->cur_scope ? b->call_loc : n->loc;
        if (!strset_add(&b->param_names, ext, at, &first)) {
            b_error(b, n->loc, "duplicate parameter name '%s'", ext);
            if (b->cur_scope)
                b_note(b, b->call_loc, "in this call of block '%s'", b->stack[0]->name);
            b_note(b, first, "'%s' is first declared %s", ext, b->cur_scope ? "in this call" : "here");
        } else {
            ir_node *t = node_new(b, OP_param, 0, NULL, n->loc);
            t->name = ext;
            t->dtype = st->type->dtype;
            t->shape = shape;
            ir_attr_set_str(b->g, t, "init", init);
            ir_attr_set_float(t, "scale", scale);
            const ast_annot *sh = find_annot(st, ANNOT_SHARD);
            if (!sh || apply_shard(b, sh, t))
                v = node_finish(b, t);
        }
    }
    if (declare(b, s, n))
        scope_bind(b, s, n->name, v, B_PARAM, n->loc);
}

/* Binds names to v (several names unpack a tuple). */
static void bind_names(builder *b, scope *s, const ast_stmt *st, value v, bool is_let)
{
    int n = st->n_names;
    if (n > 1 && v.k != V_ERR && (v.k != V_TUPLE || v.n != n)) {
        char desc[320];
        b_error(b, st->names->next->loc, "cannot unpack %s into %d names", v_describe(&v, desc, sizeof desc), n);
        v = v_err();
    }
    int k = 0;
    for (const ast_name *x = st->names; x; x = x->next, k++) {
        value item = n > 1 && v.k == V_TUPLE ? v.items[k] : v;
        if (is_let) {
            if (declare(b, s, x))
                scope_bind(b, s, x->name, item, B_LET, x->loc);
            continue;
        }
        /* assignment: rebind where the name lives (not a hyperparameter or loop variable) */
        scope *where = s;
        binding *bd = NULL;
        for (; where && where != b->hparams && !(bd = scope_find(where, x->name)); where = where->parent)
            ;
        if (!bd) {
            if (scope_find(b->hparams, x->name))
                b_error(b, x->loc, "cannot assign to hyperparameter '%s'", x->name);
            else
                b_error(b, x->loc, "unknown name '%s' (use 'let' to define a new name)", x->name);
        } else if (bd->kind == B_LOOP) {
            b_error(b, x->loc, "cannot assign to loop variable '%s'", x->name);
        } else {
            bd->v = item;
        }
    }
}

static void exec_let(builder *b, scope *s, const ast_stmt *st)
{
    value v = eval(b, s, st->value);
    if (v.k != V_ERR && st->type && !check_declared(b, s, st->type, &v))
        v = v_err();
    const ast_annot *sh = find_annot(st, ANNOT_SHARD);
    if (sh && v.k != V_ERR) {
        char desc[320];
        if (v.k != V_TENSOR) {
            b_error(b, sh->loc, "@shard needs a tensor, got %s", v_describe(&v, desc, sizeof desc));
            v = v_err();
        } else if (!apply_shard(b, sh, v.t)) {
            v = v_err();
        }
    }
    bind_names(b, s, st, v, st->kind == ST_LET);
}

static void exec_output(builder *b, scope *s, const ast_stmt *st)
{
    const ast_name *n = st->names;
    value v = eval(b, s, st->value);
    bool ok = v.k != V_ERR && (!st->type || check_declared(b, s, st->type, &v));
    if (ok && v.k != V_TENSOR) {
        char desc[320];
        b_error(b, st->value->loc, "output '%s' must be a tensor, got %s", n->name, v_describe(&v, desc, sizeof desc));
        ok = false;
    }
    ok = ok && io_name(b, n->name, n->loc);
    if (!ok) {
        /* later uses of the name are not errors of their own (the error was said here) */
        if (!scope_lookup(s, n->name))
            scope_bind(b, s, n->name, v_err(), B_LET, n->loc);
        return;
    }
    ir_node *t = node_new(b, OP_output, 1, &v.t, n->loc);
    t->name = ir_graph_strdup(b->g, n->name);
    node_finish(b, t);
    b->n_outputs++;
    /* the output's name also names its value from here on (GPT-2's loss uses logits), unless
     * the name is taken: `output h = h` */
    if (!scope_lookup(s, n->name))
        scope_bind(b, s, n->name, v, B_LET, n->loc);
}

/* The body being run: a block's return value lands here. */
typedef struct {
    bool returned;
    value ret;
} frame;

static void exec_stmts(builder *b, frame *f, scope *s, const ast_stmt *st);

static void exec_for(builder *b, frame *f, scope *s, const ast_stmt *st)
{
    int64_t lo, hi;
    bool ok = eval_int(b, s, st->lo, "a loop bound", &lo);
    ok &= eval_int(b, s, st->hi, "a loop bound", &hi);
    if (!ok)
        return;
    if (hi > lo && hi - lo > MAX_LOOP_ITERATIONS) {
        b_error(b, st->loc, "the loop has %" PRId64 " iterations, more than the limit of %d", hi - lo,
                MAX_LOOP_ITERATIONS);
        return;
    }
    /* one scope for every iteration, emptied before each: nothing outlives an iteration but
     * values assigned to outer names, which are copied there */
    scope *body = scope_new(b, s);
    for (int64_t i = lo; i < hi; i++) {
        if (++b->iterations > MAX_ITERATIONS) {
            b_error(b, st->loc, "the model's loops run more than %d iterations in all (nested loops multiply)",
                    MAX_ITERATIONS);
            return;
        }
        int errors = b->d->n_errors;
        body->n = 0;
        scope_bind(b, body, st->names->name, v_int(i), B_LOOP, st->names->loc);
        exec_stmts(b, f, body, st->body);
        if (b->d->n_errors > errors) /* the next iteration would say it again */
            break;
    }
}

static void exec_return(builder *b, frame *f, scope *s, const ast_stmt *st)
{
    value v;
    if (st->n_values == 1) {
        v = eval(b, s, st->values->value);
    } else {
        v = (value){.k = V_TUPLE, .n = st->n_values};
        v.items = ir_arena_alloc(&b->arena, sizeof *v.items * (size_t)st->n_values);
        int k = 0;
        for (const ast_arg *a = st->values; a; a = a->next, k++) {
            v.items[k] = eval(b, s, a->value);
            if (v.items[k].k == V_ERR)
                v = v_err();
            if (v.k == V_ERR)
                break;
        }
    }
    f->returned = true;
    f->ret = v;
}

static void exec_stmt(builder *b, frame *f, scope *s, const ast_stmt *st)
{
    switch (st->kind) {
    case ST_HPARAM: exec_hparam(b, s, st); break;
    case ST_MESH: exec_mesh(b, st); break;
    case ST_INPUT: exec_input(b, s, st); break;
    case ST_PARAM: exec_param(b, s, st); break;
    case ST_LET:
    case ST_ASSIGN: exec_let(b, s, st); break;
    case ST_OUTPUT: exec_output(b, s, st); break;
    case ST_FOR: exec_for(b, f, s, st); break;
    case ST_RETURN: exec_return(b, f, s, st); break;
    }
}

/* Runs statements in order; @stage(k) marks every node a statement made. */
static void exec_stmts(builder *b, frame *f, scope *s, const ast_stmt *st)
{
    for (; st; st = st->next) {
        int first_node = b->g->n_nodes, first_msg = b->d->n_msg;
        const ast_annot *stage = find_annot(st, ANNOT_STAGE);
        int64_t k = -1;
        if (stage && eval_int(b, s, stage->stage, "a pipeline stage", &k) && (k < 0 || k > INT32_MAX)) {
            b_error(b, stage->stage->loc, "a pipeline stage must be a non-negative integer, got %" PRId64, k);
            k = -1;
        }
        exec_stmt(b, f, s, st);
        if (k >= 0)
            for (int i = first_node; i < b->g->n_nodes; i++)
                b->g->nodes[i]->stage = (int)k;
        dedupe_diags(b->d, first_msg);
    }
}

/* ---- blocks --------------------------------------------------------------------------- */

/* "gpt2_block(l=3)": the block and its number arguments. */
static const char *instance_name(builder *b, const ast_unit *blk, scope *fs)
{
    char buf[256];
    size_t len = (size_t)snprintf(buf, sizeof buf, "%s", blk->name);
    int k = 0;
    for (const ast_name *p = blk->params; p; p = p->next) {
        const value *v = &scope_find(fs, p->name)->v;
        if (!v_is_num(v) || len >= sizeof buf)
            continue;
        const char *sep = k++ ? ", " : "(";
        if (v->k == V_INT)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s=%" PRId64, sep, p->name, v->i);
        else
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s=%g", sep, p->name, v->f);
    }
    if (k && len < sizeof buf)
        snprintf(buf + len, sizeof buf - len, ")");
    return ir_graph_strdup(b->g, buf);
}

value call_block(builder *b, const ast_expr *e, const ast_unit *blk, argval *args, int n_args)
{
    for (int i = 0; i < b->n_stack; i++)
        if (b->stack[i] == blk) {
            b_error(b, e->loc, "recursive call to block '%s'", blk->name);
            for (int j = b->n_stack - 1; j > i; j--)
                b_note(b, b->stack_at[j], "'%s' is called from block '%s' here", b->stack[j]->name,
                       b->stack[j - 1]->name);
            return v_err();
        }
    if (n_args != blk->n_params) {
        b_error(b, e->loc, "block '%s' takes %d argument%s, got %d", blk->name, blk->n_params,
                blk->n_params == 1 ? "" : "s", n_args);
        return v_err();
    }
    scope *fs = scope_new(b, b->hparams);
    const ast_name *p = blk->params;
    for (int i = 0; i < n_args; i++) {
        const ast_arg *a = args[i].a;
        const ast_name *to = NULL;
        if (a->name) {
            for (to = blk->params; to && strcmp(to->name, a->name) != 0; to = to->next)
                ;
            if (!to) {
                b_error(b, a->loc, "block '%s' has no parameter '%s'", blk->name, a->name);
                return v_err();
            }
        } else {
            to = p;
            p = p ? p->next : NULL;
        }
        if (scope_find(fs, to->name)) {
            b_error(b, a->loc, "argument '%s' of block '%s' given twice", to->name, blk->name);
            return v_err();
        }
        scope_bind(b, fs, to->name, args[i].v, B_ARG, to->loc);
    }
    const char *outer = b->cur_scope;
    ir_loc outer_call = b->call_loc;
    if (!outer) {
        b->cur_scope = instance_name(b, blk, fs);
        b->call_loc = e->loc;
    }
    b->stack_at[b->n_stack] = e->loc;
    b->stack[b->n_stack++] = blk;
    frame f = {0};
    exec_stmts(b, &f, fs, blk->body);
    b->n_stack--;
    b->cur_scope = outer;
    b->call_loc = outer_call;
    return f.returned ? f.ret : v_err();
}

/* ---- entry ---------------------------------------------------------------------------- */

ir_graph *fe_build(ir_diag *d, int file, const fe_define *defs, int n_defs)
{
    builder b = {.d = d, .file = file, .defs = defs, .n_defs = n_defs};
    int errors = d->n_errors;
    ast_file *ast = ast_parse(d, file, &b.arena);
    if (!ast || !check_file(&b, ast)) {
        ir_arena_free(&b.arena);
        return NULL;
    }
    b.g = ir_graph_new(b.model->name);
    b.hparams = scope_new(&b, NULL);
    b.def_used = ir_arena_alloc(&b.arena, sizeof *b.def_used * (size_t)(n_defs + 1));
    frame f = {0};
    exec_stmts(&b, &f, scope_new(&b, b.hparams), b.model->body);
    for (int i = 0; i < n_defs; i++)
        if (!b.def_used[i])
            ir_diag_error(d, -1, 0, 0, "-D %s=%s: the model has no hyperparameter '%s'", defs[i].name,
                          defs[i].value, defs[i].name);
    if (d->n_errors == errors && b.n_outputs == 0)
        b_error(&b, b.model->loc, "model '%s' has no outputs", b.model->name);
    if (d->n_errors == errors)
        ir_verify(b.g, d);
    strset_free(&b.param_names);
    strset_free(&b.io_names);
    ir_arena_free(&b.arena);
    if (d->n_errors > errors) {
        ir_graph_free(b.g);
        return NULL;
    }
    return b.g;
}

bool fe_hparams(ir_diag *d, int file, const fe_define *defs, int n_defs, fe_hparam_list *out)
{
    memset(out, 0, sizeof *out);
    builder b = {.d = d, .file = file, .defs = defs, .n_defs = n_defs};
    int errors = d->n_errors;
    ir_arena *arena = malloc(sizeof *arena);
    if (!arena)
        ir_unreachable("out of memory");
    ast_file *ast = ast_parse(d, file, &b.arena);
    bool ok = ast && check_file(&b, ast);
    if (ok) {
        b.g = ir_graph_new(b.model->name);
        b.hparams = scope_new(&b, NULL);
        b.def_used = ir_arena_alloc(&b.arena, sizeof *b.def_used * (size_t)(n_defs + 1));
        for (const ast_stmt *st = b.model->body; st; st = st->next)
            if (st->kind == ST_HPARAM)
                exec_hparam(&b, b.hparams, st);
        ok = d->n_errors == errors;
        out->h = calloc((size_t)b.hparams->n + 1, sizeof *out->h);
        *arena = b.arena; /* the names live in the builder's arena: the list keeps it */
        b.arena = (ir_arena){0};
        out->arena_ = arena;
        arena = NULL;
        for (int i = 0; i < b.hparams->n; i++) {
            const binding *h = &b.hparams->b[i];
            if (h->v.k == V_INT || h->v.k == V_FLOAT)
                out->h[out->n++] = (fe_hparam){h->name, h->v.k == V_INT ? (double)h->v.i : h->v.f, h->v.k == V_INT};
        }
        ir_graph_free(b.g);
    }
    strset_free(&b.param_names);
    strset_free(&b.io_names);
    ir_arena_free(&b.arena);
    free(arena);
    return ok;
}

void fe_hparams_free(fe_hparam_list *l)
{
    if (l->arena_)
        ir_arena_free(l->arena_);
    free(l->arena_);
    free(l->h);
    memset(l, 0, sizeof *l);
}

const fe_hparam *fe_hparam_find(const fe_hparam_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->h[i].name, name) == 0)
            return &l->h[i];
    return NULL;
}
