/* build.h — private to the builder (builder.c: declarations, statements, blocks; eval.c:
 * expressions, build-time numbers, op and builtin calls): the values an expression evaluates to,
 * scopes of names, and the state of one build.
 *
 * Invariants:
 *  - a value of kind V_ERR stands for an expression whose error has already been reported:
 *    every consumer passes it on silently, so one mistake is reported once.
 *  - scopes, values and lists live in the builder's scratch arena (freed when fe_build returns);
 *    nodes and strings that the graph keeps live in the graph's arena.
 *  - a block's scope has the hyperparameter scope as parent, never its caller's.
 */
#ifndef LOOM_FRONTEND_BUILD_H
#define LOOM_FRONTEND_BUILD_H

#include "frontend/ast.h"
#include "frontend/frontend.h"

typedef enum {
    V_ERR,     /* already reported */
    V_INT,     /* i */
    V_FLOAT,   /* f */
    V_TENSOR,  /* t: a graph node */
    V_DTYPE,   /* dt */
    V_LIST,    /* items (numbers), n */
    V_TUPLE,   /* items, n: from split or a block returning several values */
    V_STR,     /* s: a string literal, only meaningful as an attribute */
    V_SYM,     /* s: a bare name bound to nothing, only meaningful as an identifier attribute */
} value_kind;

typedef struct value {
    value_kind k;
    int64_t i;
    double f;
    ir_node *t;
    ir_dtype dt;
    const char *s;
    int n;
    struct value *items;
} value;

typedef enum { B_HPARAM, B_INPUT, B_PARAM, B_LET, B_LOOP, B_ARG } binding_kind;

typedef struct {
    const char *name;
    value v;
    binding_kind kind;
    ir_loc loc;
} binding;

typedef struct scope {
    struct scope *parent;
    binding *b;
    int n, cap;
} scope;

/* A set of strings with a location each (parameter and input/output names), hashed. */
typedef struct {
    const char **key;
    ir_loc *loc;
    int n, cap;
} strset;

typedef struct {
    ir_diag *d;
    int file;
    ir_arena arena;               /* scratch: scopes, values, lists */
    ir_graph *g;
    const ast_unit *model;
    const ast_unit **blocks;
    int n_blocks;
    const ast_unit **stack;       /* blocks being inlined, outermost first */
    ir_loc *stack_at;             /* where each was called */
    int n_stack;
    const char *cur_scope;        /* n->scope of nodes made now: the outermost block instance */
    ir_loc call_loc;              /* where that instance is called */
    scope *hparams;               /* root scope: hyperparameters */
    const fe_define *defs;
    int n_defs;
    bool *def_used;
    bool mesh_seen;
    ir_loc mesh_loc;
    strset param_names;
    strset io_names;
    int n_outputs;
    int64_t iterations;           /* loop iterations run so far, all loops together */
} builder;

/* Evaluated call argument: the syntax (name, location, expression) and its value. */
typedef struct {
    const ast_arg *a;
    value v;
} argval;

/* ---- values (eval.c) ---- */
value v_err(void);
value v_int(int64_t i);
value v_float(double f);
value v_tensor(ir_node *t);
bool v_is_num(const value *v);
double v_num(const value *v);
/* "an integer", "a float", "a tensor f32[2, 3]", "a list", ... into buf. */
const char *v_describe(const value *v, char *buf, size_t cap);

/* ---- scopes (builder.c) ---- */
scope *scope_new(builder *b, scope *parent);
binding *scope_find(scope *s, const char *name);   /* this scope only */
binding *scope_lookup(scope *s, const char *name); /* this scope and its parents */
void scope_bind(builder *b, scope *s, const char *name, value v, binding_kind kind, ir_loc loc);

/* ---- errors (builder.c) ---- */
void b_error(builder *b, ir_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void b_note(builder *b, ir_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- expressions (eval.c) ---- */
/* Evaluates e in scope s; reports errors and returns V_ERR on failure. */
value eval(builder *b, scope *s, const ast_expr *e);
/* Evaluates e to an integer; what names the use in messages ("loop bound"). */
bool eval_int(builder *b, scope *s, const ast_expr *e, const char *what, int64_t *out);
/* Appends a node made by the current statement (scope set), with loc. */
ir_node *node_new(builder *b, ir_opcode op, int n_in, ir_node *const *in, ir_loc loc);
/* Runs the node's shape rule: the tensor, or V_ERR with the rule's error reported. */
value node_finish(builder *b, ir_node *n);

/* ---- blocks (builder.c) ---- */
const ast_unit *find_block(const builder *b, const char *name);
/* Inlines block blk called at e with evaluated arguments. */
value call_block(builder *b, const ast_expr *e, const ast_unit *blk, argval *args, int n_args);

#endif
