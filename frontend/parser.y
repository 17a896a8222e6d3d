/* parser.y — the grammar of the .loom language (docs/language.md, "Grammar") and the syntax
 * tree it builds (ast.h).
 *
 * Pure (api.pure full) and reentrant with lexer.l: all state is in an fe_parser on the stack of
 * ast_parse. Errors are bison's detailed messages ("syntax error, unexpected '=', expecting
 * identifier", with LAC so the expected tokens are exact) reported through ir_diag at the
 * offending token. Recovery is at statement level (`stmt: error`), at top level between models
 * and blocks (`file: file error`), so one run reports several errors. Nesting is bounded: the
 * lexer stops past AST_MAX_DEPTH brackets, expression depth is checked as nodes are built, and
 * bison's stack limit (YYMAXDEPTH) turns into the same "nested too deeply" error, never a crash.
 * Semantic values live in the caller's arena, so nothing needs a %destructor.
 */

%code requires {
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/ast.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

typedef struct {
    int first_line, first_column, last_line, last_column;
} fe_yyloc;

/* The state of one parse, shared by the parser and the lexer (the scanner's extra data). */
typedef struct fe_parser {
    ir_diag *d;
    int file;
    ir_arena *arena;
    ast_file *out;
    ast_unit *last_unit;
    int line, col;                /* position of the next byte */
    size_t offset;
    int tok_line, tok_col;        /* start of the current token */
    size_t tok_offset;
    size_t bad_end;               /* end offset of the last bad-character run */
    fe_yyloc comment_loc;         /* where the open comment started */
    int depth;                    /* open ( [ { */
    bool depth_reported;
    bool stop;                    /* give up: nesting limit or too many errors */
} fe_parser;

/* Linked lists under construction: head and tail, so appending is O(1). */
typedef struct { ast_arg *head, *tail; int n; } fe_args;
typedef struct { ast_name *head, *tail; int n; } fe_names;
typedef struct { ast_stmt *head, *tail; } fe_stmts;
typedef struct { ast_annot *head, *tail; } fe_annots;

/* Reports an error at l through the parser's diag (nothing once the parse has stopped). */
void fe_parser_error(fe_parser *p, const fe_yyloc *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
}

%code provides {
int fe_yylex(FE_YYSTYPE *lval, FE_YYLTYPE *lloc, yyscan_t scanner);
}

%code {
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void fe_yyerror(FE_YYLTYPE *l, yyscan_t scanner, fe_parser *p, const char *msg);

static ir_loc L(const fe_parser *p, FE_YYLTYPE l)
{
    return (ir_loc){p->file, l.first_line, l.first_column};
}

/* Reports "expression nested too deeply" once when e passes the limit. */
static ast_expr *check_depth(fe_parser *p, ast_expr *e)
{
    if (e->depth > AST_MAX_DEPTH && !p->depth_reported) {
        p->depth_reported = true;
        fe_yyloc l = {e->loc.line, e->loc.col, e->loc.line, e->loc.col};
        fe_parser_error(p, &l, "expression nested too deeply (more than %d levels)", AST_MAX_DEPTH);
    }
    return e;
}

static ast_arg *new_arg(fe_parser *p, const char *name, ast_expr *value, ir_loc loc)
{
    ast_arg *a = ir_arena_alloc(p->arena, sizeof *a);
    a->name = name;
    a->value = value;
    a->loc = loc;
    return a;
}

static fe_args args_append(fe_args l, ast_arg *a)
{
    if (l.tail)
        l.tail->next = a;
    else
        l.head = a;
    l.tail = a;
    l.n++;
    return l;
}

static ast_name *new_name(fe_parser *p, const char *name, ir_loc loc, ast_expr *value)
{
    ast_name *n = ir_arena_alloc(p->arena, sizeof *n);
    n->name = name;
    n->loc = loc;
    n->value = value;
    return n;
}

static fe_names names_append(fe_names l, ast_name *n)
{
    if (l.tail)
        l.tail->next = n;
    else
        l.head = n;
    l.tail = n;
    l.n++;
    return l;
}

/* A call or list: depth one more than its deepest element. */
static ast_expr *with_args(fe_parser *p, ast_expr *e, fe_args args)
{
    e->args = args.head;
    e->n_args = args.n;
    int deepest = 0;
    for (ast_arg *a = args.head; a; a = a->next)
        if (a->value->depth > deepest)
            deepest = a->value->depth;
    e->depth = deepest + 1;
    return check_depth(p, e);
}

static ast_expr *binary(fe_parser *p, char op, ast_expr *l, ast_expr *r, FE_YYLTYPE at)
{
    return check_depth(p, ast_binary(p->arena, op, l, r, L(p, at)));
}
}

%define api.pure full
%define api.prefix {fe_yy}
%define api.location.type {fe_yyloc}
%define parse.error detailed
%define parse.lac full
%locations
%param {yyscan_t scanner}
%parse-param {fe_parser *p}

%union {
    int64_t i;
    double f;
    const char *str;
    ir_dtype dtype;
    ast_expr *expr;
    ast_type *type;
    ast_stmt *stmt;
    ast_unit *unit;
    ast_arg *arg;
    ast_annot *annot;
    fe_args args;
    fe_names names;
    fe_stmts stmts;
    fe_annots annots;
    bool flag;
}

%token TK_MODEL "'model'" TK_BLOCK "'block'" TK_HPARAM "'hparam'" TK_MESH "'mesh'"
%token TK_INPUT "'input'" TK_PARAM "'param'" TK_LET "'let'" TK_OUTPUT "'output'"
%token TK_FOR "'for'" TK_IN "'in'" TK_RETURN "'return'" TK_OPTIONAL "'optional'" TK_AS "'as'"
%token TK_SHARD "'@shard'" TK_STAGE "'@stage'" TK_DOTDOT "'..'"
%token <str> TK_NAME "identifier"
%token <i> TK_INT "integer"
%token <f> TK_FLOAT "number"
%token <str> TK_STRING "string"
%token <dtype> TK_DTYPE "dtype"

%type <unit> unit
%type <stmts> stmts
%type <stmt> stmt
%type <names> names opt_names more_names hparams
%type <type> type opt_type
%type <args> exprs opt_exprs args opt_args
%type <arg> arg
%type <expr> expr primary opt_init
%type <annots> annots
%type <annot> annot
%type <str> opt_as
%type <flag> opt_optional

%left '+' '-'
%left '*' '/' '%' '@'
%precedence NEG

%%

/* file := (model | block)* */
file
    : %empty
    | file unit
        {
            if (p->last_unit)
                p->last_unit->next = $2;
            else
                p->out->units = $2;
            p->last_unit = $2;
        }
    | file error
    ;

/* model := 'model' NAME '{' stmt* '}'
 * block := 'block' NAME '(' [NAME (',' NAME)*] ')' '{' stmt* '}' */
unit
    : TK_MODEL TK_NAME '{' stmts '}'
        {
            $$ = ir_arena_alloc(p->arena, sizeof *$$);
            $$->kind = UNIT_MODEL;
            $$->name = $2;
            $$->loc = L(p, @2);
            $$->body = $4.head;
        }
    | TK_BLOCK TK_NAME '(' opt_names ')' '{' stmts '}'
        {
            $$ = ir_arena_alloc(p->arena, sizeof *$$);
            $$->kind = UNIT_BLOCK;
            $$->name = $2;
            $$->loc = L(p, @2);
            $$->params = $4.head;
            $$->n_params = $4.n;
            $$->body = $7.head;
        }
    ;

/* stmt* (a ';' may end a statement) */
stmts
    : %empty            { $$ = (fe_stmts){0}; }
    | stmts stmt
        {
            $$ = $1;
            if ($2) {
                if ($$.tail)
                    $$.tail->next = $2;
                else
                    $$.head = $2;
                $$.tail = $2;
            }
        }
    | stmts ';'         { $$ = $1; }
    ;

stmt
    /* 'hparam' NAME '=' expr (',' NAME '=' expr)* */
    : TK_HPARAM hparams
        {
            $$ = ast_stmt_new(p->arena, ST_HPARAM, L(p, @1));
            $$->names = $2.head;
            $$->n_names = $2.n;
        }
    /* 'mesh' NAME (',' NAME)* */
    | TK_MESH names
        {
            $$ = ast_stmt_new(p->arena, ST_MESH, L(p, @1));
            $$->names = $2.head;
            $$->n_names = $2.n;
        }
    /* 'input' NAME ':' type ['optional'] */
    | TK_INPUT TK_NAME ':' type opt_optional
        {
            $$ = ast_stmt_new(p->arena, ST_INPUT, L(p, @1));
            $$->names = new_name(p, $2, L(p, @2), NULL);
            $$->n_names = 1;
            $$->type = $4;
            $$->optional = $5;
        }
    /* 'param' NAME ':' type ['=' init] ['as' STRING] annot* */
    | TK_PARAM TK_NAME ':' type opt_init opt_as annots
        {
            $$ = ast_stmt_new(p->arena, ST_PARAM, L(p, @1));
            $$->names = new_name(p, $2, L(p, @2), NULL);
            $$->n_names = 1;
            $$->type = $4;
            $$->value = $5;
            $$->ext_name = $6;
            $$->ext_loc = L(p, @6);
            $$->annots = $7.head;
        }
    /* 'let' NAME [':' type] (',' NAME)* '=' expr annot* */
    | TK_LET TK_NAME opt_type more_names '=' expr annots
        {
            $$ = ast_stmt_new(p->arena, ST_LET, L(p, @1));
            $$->names = new_name(p, $2, L(p, @2), NULL);
            $$->names->next = $4.head;
            $$->n_names = 1 + $4.n;
            $$->type = $3;
            $$->value = $6;
            $$->annots = $7.head;
        }
    /* NAME (',' NAME)* '=' expr annot* */
    | TK_NAME more_names '=' expr annots
        {
            $$ = ast_stmt_new(p->arena, ST_ASSIGN, L(p, @1));
            $$->names = new_name(p, $1, L(p, @1), NULL);
            $$->names->next = $2.head;
            $$->n_names = 1 + $2.n;
            $$->value = $4;
            $$->annots = $5.head;
        }
    /* 'output' NAME [':' type] '=' expr annot* */
    | TK_OUTPUT TK_NAME opt_type '=' expr annots
        {
            $$ = ast_stmt_new(p->arena, ST_OUTPUT, L(p, @1));
            $$->names = new_name(p, $2, L(p, @2), NULL);
            $$->n_names = 1;
            $$->type = $3;
            $$->value = $5;
            $$->annots = $6.head;
        }
    /* 'for' NAME 'in' expr '..' expr '{' stmt* '}' */
    | TK_FOR TK_NAME TK_IN expr TK_DOTDOT expr '{' stmts '}'
        {
            $$ = ast_stmt_new(p->arena, ST_FOR, L(p, @1));
            $$->names = new_name(p, $2, L(p, @2), NULL);
            $$->n_names = 1;
            $$->lo = $4;
            $$->hi = $6;
            $$->body = $8.head;
        }
    /* 'return' expr (',' expr)* annot* */
    | TK_RETURN exprs annots
        {
            $$ = ast_stmt_new(p->arena, ST_RETURN, L(p, @1));
            $$->values = $2.head;
            $$->n_values = $2.n;
            $$->annots = $3.head;
        }
    | error             { $$ = NULL; }
    ;

/* NAME '=' expr (',' NAME '=' expr)* */
hparams
    : TK_NAME '=' expr                  { $$ = names_append((fe_names){0}, new_name(p, $1, L(p, @1), $3)); }
    | hparams ',' TK_NAME '=' expr      { $$ = names_append($1, new_name(p, $3, L(p, @3), $5)); }
    ;

/* NAME (',' NAME)* */
names
    : TK_NAME                           { $$ = names_append((fe_names){0}, new_name(p, $1, L(p, @1), NULL)); }
    | names ',' TK_NAME                 { $$ = names_append($1, new_name(p, $3, L(p, @3), NULL)); }
    ;

/* [NAME (',' NAME)*] */
opt_names
    : %empty                            { $$ = (fe_names){0}; }
    | names
    ;

/* (',' NAME)* */
more_names
    : %empty                            { $$ = (fe_names){0}; }
    | more_names ',' TK_NAME            { $$ = names_append($1, new_name(p, $3, L(p, @3), NULL)); }
    ;

/* ['optional'] */
opt_optional
    : %empty                            { $$ = false; }
    | TK_OPTIONAL                       { $$ = true; }
    ;

/* ['=' init]: the builder checks that init is zeros, ones, normal(e), uniform(e) or const(e) */
opt_init
    : %empty                            { $$ = NULL; }
    | '=' expr                          { $$ = $2; }
    ;

/* ['as' STRING] */
opt_as
    : %empty                            { $$ = NULL; }
    | TK_AS TK_STRING                   { $$ = $2; }
    ;

/* [':' type] */
opt_type
    : %empty                            { $$ = NULL; }
    | ':' type                          { $$ = $2; }
    ;

/* type := DTYPE '[' [expr (',' expr)*] ']' */
type
    : TK_DTYPE '[' opt_exprs ']'
        {
            $$ = ir_arena_alloc(p->arena, sizeof *$$);
            $$->dtype = $1;
            $$->loc = L(p, @1);
            $$->dims = $3.head;
            $$->n_dims = $3.n;
        }
    ;

/* annot* */
annots
    : %empty                            { $$ = (fe_annots){0}; }
    | annots annot
        {
            $$ = $1;
            if ($$.tail)
                $$.tail->next = $2;
            else
                $$.head = $2;
            $$.tail = $2;
        }
    ;

/* annot := '@shard' '(' axis (',' axis)* ')' | '@stage' '(' expr ')'     (axis := NAME | '_') */
annot
    : TK_SHARD '(' names ')'
        {
            $$ = ir_arena_alloc(p->arena, sizeof *$$);
            $$->kind = ANNOT_SHARD;
            $$->loc = L(p, @1);
            $$->axes = $3.head;
            $$->n_axes = $3.n;
        }
    | TK_STAGE '(' expr ')'
        {
            $$ = ir_arena_alloc(p->arena, sizeof *$$);
            $$->kind = ANNOT_STAGE;
            $$->loc = L(p, @1);
            $$->stage = $3;
        }
    ;

/* expr (',' expr)* */
exprs
    : expr                              { $$ = args_append((fe_args){0}, new_arg(p, NULL, $1, L(p, @1))); }
    | exprs ',' expr                    { $$ = args_append($1, new_arg(p, NULL, $3, L(p, @3))); }
    ;

/* [expr (',' expr)*] */
opt_exprs
    : %empty                            { $$ = (fe_args){0}; }
    | exprs
    ;

/* expr := expr ('+' | '-') expr | expr ('*' | '/' | '%' | '@') expr | '-' expr | primary */
expr
    : expr '+' expr                     { $$ = binary(p, '+', $1, $3, @2); }
    | expr '-' expr                     { $$ = binary(p, '-', $1, $3, @2); }
    | expr '*' expr                     { $$ = binary(p, '*', $1, $3, @2); }
    | expr '/' expr                     { $$ = binary(p, '/', $1, $3, @2); }
    | expr '%' expr                     { $$ = binary(p, '%', $1, $3, @2); }
    | expr '@' expr                     { $$ = binary(p, '@', $1, $3, @2); }
    | '-' expr %prec NEG                { $$ = check_depth(p, ast_unary(p->arena, $2, L(p, @1))); }
    | primary
    ;

/* primary := NAME | NUMBER | STRING | DTYPE | '[' [expr (',' expr)*] ']' | '(' expr ')'
 *          | NAME '(' [arg (',' arg)*] ')' */
primary
    : TK_NAME
        {
            $$ = ast_expr_new(p->arena, AST_NAME, L(p, @1));
            $$->s = $1;
        }
    | TK_INT
        {
            $$ = ast_expr_new(p->arena, AST_INT, L(p, @1));
            $$->i = $1;
        }
    | TK_FLOAT
        {
            $$ = ast_expr_new(p->arena, AST_FLOAT, L(p, @1));
            $$->f = $1;
        }
    | TK_STRING
        {
            $$ = ast_expr_new(p->arena, AST_STRING, L(p, @1));
            $$->s = $1;
        }
    | TK_DTYPE
        {
            $$ = ast_expr_new(p->arena, AST_DTYPE, L(p, @1));
            $$->dtype = $1;
        }
    | '[' opt_exprs ']'                 { $$ = with_args(p, ast_expr_new(p->arena, AST_LIST, L(p, @1)), $2); }
    | '(' expr ')'
        {
            $$ = $2;
            $$->depth++;
            check_depth(p, $$);
        }
    | TK_NAME '(' opt_args ')'
        {
            $$ = ast_expr_new(p->arena, AST_CALL, L(p, @1));
            $$->s = $1;
            with_args(p, $$, $3);
        }
    ;

/* [arg (',' arg)*] */
opt_args
    : %empty                            { $$ = (fe_args){0}; }
    | args
    ;

/* arg (',' arg)* */
args
    : arg                               { $$ = args_append((fe_args){0}, $1); }
    | args ',' arg                      { $$ = args_append($1, $3); }
    ;

/* arg := expr | NAME '=' expr */
arg
    : expr                              { $$ = new_arg(p, NULL, $1, L(p, @1)); }
    | TK_NAME '=' expr                  { $$ = new_arg(p, $1, $3, L(p, @1)); }
    ;

%%

#ifndef YYSTYPE
#define YYSTYPE FE_YYSTYPE
#endif
#ifndef YYLTYPE
#define YYLTYPE FE_YYLTYPE
#endif
#include "frontend/lexer.h"

void fe_parser_error(fe_parser *p, const fe_yyloc *l, const char *fmt, ...)
{
    if (p->stop)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ir_diag_error(p->d, p->file, l->first_line, l->first_column, "%s", msg);
    /* binary garbage: stop once the diagnostics are full rather than scan megabytes of it */
    if (p->d->n_errors > p->d->max_errors)
        p->stop = true;
}

static void fe_yyerror(FE_YYLTYPE *l, yyscan_t scanner, fe_parser *p, const char *msg)
{
    (void)scanner;
    if (strcmp(msg, "memory exhausted") == 0) { /* bison's stack passed YYMAXDEPTH */
        fe_parser_error(p, l, "expression nested too deeply (more than %d levels)", AST_MAX_DEPTH);
        p->stop = true;
        return;
    }
    fe_parser_error(p, l, "%s", msg);
}

ast_file *ast_parse(ir_diag *d, int file, ir_arena *arena)
{
    const ir_source *src = &d->src[file];
    if (src->len > (size_t)INT32_MAX) {
        ir_diag_error(d, file, 0, 0, "file too large (%zu bytes)", src->len);
        return NULL;
    }
    fe_parser p = {.d = d, .file = file, .arena = arena, .line = 1, .col = 1, .bad_end = (size_t)-1};
    p.out = ir_arena_alloc(arena, sizeof *p.out);
    yyscan_t scanner;
    if (fe_yylex_init_extra(&p, &scanner) != 0)
        ir_unreachable("cannot create the lexer");
    YY_BUFFER_STATE buf = fe_yy_scan_bytes(src->text, (int)src->len, scanner);
    int errors = d->n_errors;
    fe_yyparse(scanner, &p);
    fe_yy_delete_buffer(buf, scanner);
    fe_yylex_destroy(scanner);
    return d->n_errors > errors ? NULL : p.out;
}
