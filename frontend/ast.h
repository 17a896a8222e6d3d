/* ast.h — the syntax tree of a .loom file (docs/language.md, "Grammar"), as the parser
 * (parser.y) builds it and the builder (builder.c) reads it.
 *
 * Invariants:
 *  - every node, string and list lives in one ir_arena owned by the caller of ast_parse and is
 *    freed with it; nothing points into the lexer's buffers.
 *  - lists (arguments, names, statements, units) are singly linked in source order.
 *  - every node has the location of its first token, except binary operators (the operator)
 *    and calls (the callee name); locations carry the file index of the parsed source.
 *  - an expression's `depth` bounds the recursion needed to walk it when the left spines of
 *    binary operators are walked iteratively: the parser rejects depth > AST_MAX_DEPTH, so the
 *    builder's recursion is bounded however long a `+` chain is.
 */
#ifndef LOOM_AST_H
#define LOOM_AST_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/arena.h"
#include "ir/diag.h"
#include "ir/ir.h"

/* Deepest nesting of parentheses, brackets, braces and unary minus the parser accepts. */
#define AST_MAX_DEPTH 256

/* ---- expressions ------------------------------------------------------------------------ */
typedef enum {
    AST_INT,     /* i */
    AST_FLOAT,   /* f */
    AST_STRING,  /* s (unescaped) */
    AST_NAME,    /* s */
    AST_DTYPE,   /* dtype */
    AST_LIST,    /* args (positional): [a, b, c] */
    AST_CALL,    /* s (callee), args */
    AST_BINARY,  /* op ('+' '-' '*' '/' '%' '@'), lhs, rhs */
    AST_NEG,     /* lhs */
} ast_expr_kind;

typedef struct ast_expr ast_expr;

/* One call argument or list element; `name` is set for `name = value` arguments. */
typedef struct ast_arg {
    const char *name;
    ir_loc loc;
    ast_expr *value;
    struct ast_arg *next;
} ast_arg;

struct ast_expr {
    ast_expr_kind kind;
    ir_loc loc;
    int depth;
    int64_t i;
    double f;
    const char *s;
    ir_dtype dtype;
    char op;
    ast_expr *lhs, *rhs;
    ast_arg *args;
    int n_args;
};

/* ---- declarations and statements -------------------------------------------------------- */
/* A name in a list: `let q, k, v`, `mesh dp, tp`, a block's parameters, `hparam a = 1, b = 2`
 * (value set), `@shard(_, tp)`. */
typedef struct ast_name {
    const char *name;
    ir_loc loc;
    ast_expr *value;
    struct ast_name *next;
} ast_name;

/* DTYPE '[' dims ']' */
typedef struct {
    ir_dtype dtype;
    ir_loc loc;
    ast_arg *dims;
    int n_dims;
} ast_type;

typedef enum { ANNOT_SHARD, ANNOT_STAGE } ast_annot_kind;

typedef struct ast_annot {
    ast_annot_kind kind;
    ir_loc loc;
    ast_name *axes;     /* ANNOT_SHARD */
    int n_axes;
    ast_expr *stage;    /* ANNOT_STAGE */
    struct ast_annot *next;
} ast_annot;

typedef enum {
    ST_HPARAM,  /* names (each with value) */
    ST_MESH,    /* names */
    ST_INPUT,   /* names (one), type, optional */
    ST_PARAM,   /* names (one), type, value (init or NULL), ext_name (or NULL), annots */
    ST_LET,     /* names, type (of the first, or NULL), value, annots */
    ST_ASSIGN,  /* names, value, annots */
    ST_OUTPUT,  /* names (one), type (or NULL), value, annots */
    ST_FOR,     /* names (the loop variable), lo, hi, body */
    ST_RETURN,  /* values, annots */
} ast_stmt_kind;

typedef struct ast_stmt {
    ast_stmt_kind kind;
    ir_loc loc;             /* the statement's first token */
    ast_name *names;
    int n_names;
    ast_type *type;
    bool optional;
    ast_expr *value;
    const char *ext_name;
    ir_loc ext_loc;
    ast_expr *lo, *hi;
    struct ast_stmt *body;
    ast_arg *values;        /* ST_RETURN */
    int n_values;
    ast_annot *annots;
    struct ast_stmt *next;
} ast_stmt;

/* ---- files ------------------------------------------------------------------------------ */
typedef enum { UNIT_MODEL, UNIT_BLOCK } ast_unit_kind;

typedef struct ast_unit {
    ast_unit_kind kind;
    const char *name;
    ir_loc loc;             /* the name */
    ast_name *params;       /* UNIT_BLOCK */
    int n_params;
    ast_stmt *body;
    struct ast_unit *next;
} ast_unit;

typedef struct {
    ast_unit *units;
} ast_file;

/* ---- construction (ast.c; used by parser.y) ------------------------------------------------ */
ast_expr *ast_expr_new(ir_arena *a, ast_expr_kind kind, ir_loc loc);
ast_expr *ast_binary(ir_arena *a, char op, ast_expr *lhs, ast_expr *rhs, ir_loc loc);
ast_expr *ast_unary(ir_arena *a, ast_expr *x, ir_loc loc);
ast_stmt *ast_stmt_new(ir_arena *a, ast_stmt_kind kind, ir_loc loc);
/* Number of elements of a linked list (of ast_arg, ast_name, ...): all have `next` last-ish,
 * so each kind has its own counter. */
int ast_args_count(const ast_arg *a);
int ast_names_count(const ast_name *n);

/* ---- parsing (parser.y) -------------------------------------------------------------------- */
/* Parses source `file` of d into a syntax tree allocated in arena. Every lexical and syntax
 * error is reported through d (the parser recovers at statement boundaries); returns NULL if
 * there was any. */
ast_file *ast_parse(ir_diag *d, int file, ir_arena *arena);

/* Name of a binary operator's IR op: '+' → "add"; '@' → "matmul". */
const char *ast_binary_op_name(char op);

#endif
