/* ast.c — constructors of syntax-tree nodes (ast.h). Nodes live in the caller's arena; the
 * nesting depth of each expression is computed here, once, as the parser builds it. */
#include "frontend/ast.h"

ast_expr *ast_expr_new(ir_arena *a, ast_expr_kind kind, ir_loc loc)
{
    ast_expr *e = ir_arena_alloc(a, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    e->depth = 1;
    return e;
}

/* The builder walks a binary operator's left operand iteratively, so a long `a + b + c + ...`
 * chain costs no depth; only the right operand nests. */
ast_expr *ast_binary(ir_arena *a, char op, ast_expr *lhs, ast_expr *rhs, ir_loc loc)
{
    ast_expr *e = ast_expr_new(a, AST_BINARY, loc);
    e->op = op;
    e->lhs = lhs;
    e->rhs = rhs;
    int r = rhs->depth + 1;
    e->depth = lhs->depth > r ? lhs->depth : r;
    return e;
}

ast_expr *ast_unary(ir_arena *a, ast_expr *x, ir_loc loc)
{
    ast_expr *e = ast_expr_new(a, AST_NEG, loc);
    e->lhs = x;
    e->depth = x->depth + 1;
    return e;
}

ast_stmt *ast_stmt_new(ir_arena *a, ast_stmt_kind kind, ir_loc loc)
{
    ast_stmt *s = ir_arena_alloc(a, sizeof *s);
    s->kind = kind;
    s->loc = loc;
    return s;
}

int ast_args_count(const ast_arg *a)
{
    int n = 0;
    for (; a; a = a->next)
        n++;
    return n;
}

int ast_names_count(const ast_name *n)
{
    int k = 0;
    for (; n; n = n->next)
        k++;
    return k;
}

const char *ast_binary_op_name(char op)
{
    switch (op) {
    case '+': return "add";
    case '-': return "sub";
    case '*': return "mul";
    case '/': return "div";
    case '%': return "mod";
    case '@': return "matmul";
    }
    return "?";
}
