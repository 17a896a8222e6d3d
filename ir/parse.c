/* parse.c — the textual IR parser (format: docs/ir.md "Text form"): a hand-written lexer and a
 * recursive-descent parser over one source of the diagnostic table, building a graph with
 * ir_node_add and checking it as it goes.
 *
 * The language is line-oriented: `graph NAME {`, an optional `mesh a, b` line, one statement a
 * line (`%N = OP ...` or `output "name" %N`), then `}`. `//` starts a comment. Value numbers are
 * any distinct non-negative integers, each defined before use; attributes come in any order and
 * may leave out those with defaults.
 *
 * Checks made here, each reported as file:line:col through ir_diag: lexical errors, syntax,
 * unknown ops, attributes, dtypes and mesh axes, operand counts, undefined and twice-defined
 * values, duplicate external names, shard spec lengths, and that a written type equals what the
 * op's shape rule infers (source ops take the written type). After an error the parser skips to
 * the next line, so one run reports many errors; a value whose line failed is "poisoned", and
 * its uses fail quietly instead of cascading. The parser never trusts the input: binary bytes,
 * NULs, huge lines and numbers are errors, never crashes. On any error ir_parse returns NULL.
 */
#include "ir/ir.h"
#include "ir/ops_impl.h" /* ir_op_attr_default */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- lexer -------------------------------------------------------------------------------- */

typedef enum {
    TK_EOF,
    TK_ERROR,  /* already reported */
    TK_IDENT,  /* [A-Za-z_][A-Za-z0-9_.]* */
    TK_INT,    /* -?[0-9]+ */
    TK_FLOAT,  /* -?[0-9]*.[0-9]*, exponent, or -inf */
    TK_STRING, /* "..." with escapes; decoded text in parser.str */
    TK_VALUE,  /* %N */
    TK_PUNCT,  /* one of = , : { } [ ] */
} tk_kind;

typedef struct {
    tk_kind kind;
    const char *start; /* raw text */
    size_t len;
    int line, col;
    int64_t ival; /* TK_INT, TK_VALUE */
} token;

/* An open-addressing table of fixed-size slots (the functions under "tables" below). */
typedef struct {
    char *slots;
    size_t n, cap;
} slot_table;

/* One value slot of the %N table (open addressing on num). */
typedef struct {
    bool used;
    bool poisoned; /* its line had an error: uses fail without a new message */
    int64_t num;
    ir_node *node;
    int line, col;
} val_slot;

/* One external name: ns 0 is inputs and outputs, ns 1 params. */
typedef struct {
    const char *name; /* NULL: empty slot */
    int ns;
    int line, col;
} name_slot;

typedef struct {
    ir_diag *d;
    int file;
    const char *p, *end, *line_start;
    int line;
    token tok, prev;
    char *str; /* decoded text of the current TK_STRING */
    size_t str_len, str_cap;
    int stmt_line; /* line of the statement being parsed */
    ir_graph *g;
    slot_table vals;  /* val_slot */
    slot_table names; /* name_slot */
    int64_t *ints; /* scratch for int lists */
    size_t ints_cap;
} parser;

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

static void error_at(parser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void error_at(parser *P, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ir_diag_error(P->d, P->file, line, col, "%s", msg);
}

static bool is_ident_start(int c) { return isalpha(c) || c == '_'; }
static bool is_ident_char(int c) { return isalnum(c) || c == '_' || c == '.'; }

static int cur_col(const parser *P, const char *at) { return (int)(at - P->line_start) + 1; }

static void str_push(parser *P, char c)
{
    if (P->str_len + 1 >= P->str_cap) {
        P->str_cap = P->str_cap ? P->str_cap * 2 : 64;
        P->str = xrealloc(P->str, P->str_cap);
    }
    P->str[P->str_len++] = c;
    P->str[P->str_len] = 0;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Lexes a string starting at the opening quote into P->str. */
static tk_kind lex_string(parser *P)
{
    const char *open = P->p;
    P->str_len = 0;
    str_push(P, 0); /* allocates the buffer and leaves it holding "" */
    P->str_len = 0;
    P->p++;
    for (;;) {
        if (P->p >= P->end || *P->p == '\n') {
            error_at(P, P->line, cur_col(P, open), "unterminated string");
            return TK_ERROR;
        }
        unsigned char c = (unsigned char)*P->p;
        if (c == '"') {
            P->p++;
            return TK_STRING;
        }
        if (c == '\\') {
            const char *esc = P->p;
            char e = P->p + 1 < P->end ? P->p[1] : 0;
            if (e == '"' || e == '\\')
                str_push(P, e);
            else if (e == 'n')
                str_push(P, '\n');
            else if (e == 't')
                str_push(P, '\t');
            else if (e == 'x' && P->p + 3 < P->end && hex_digit(P->p[2]) >= 0 && hex_digit(P->p[3]) >= 0 &&
                     (hex_digit(P->p[2]) | hex_digit(P->p[3])) != 0) {
                str_push(P, (char)(hex_digit(P->p[2]) * 16 + hex_digit(P->p[3])));
                P->p += 2;
            } else {
                error_at(P, P->line, cur_col(P, esc), "invalid escape in string (use \\\" \\\\ \\n \\t or \\xHH)");
                return TK_ERROR;
            }
            P->p += 2;
            continue;
        }
        if (c < 32 && c != '\t') {
            error_at(P, P->line, cur_col(P, P->p), "unexpected byte 0x%02x in string", c);
            return TK_ERROR;
        }
        str_push(P, (char)c);
        P->p++;
    }
}

/* Lexes a number: [+-]digits[.digits][e[+-]digits], or [+-].digits..., or -inf. */
static tk_kind lex_number(parser *P)
{
    const char *s = P->p, *q = P->p;
    if (*q == '-' || *q == '+')
        q++;
    bool is_float = false;
    if (q + 3 <= P->end && strncmp(q, "inf", 3) == 0) {
        q += 3;
        is_float = true;
    } else {
        while (q < P->end && isdigit((unsigned char)*q))
            q++;
        if (q < P->end && *q == '.') {
            is_float = true;
            q++;
            while (q < P->end && isdigit((unsigned char)*q))
                q++;
        }
        if (q < P->end && (*q == 'e' || *q == 'E')) {
            const char *e = q + 1;
            if (e < P->end && (*e == '+' || *e == '-'))
                e++;
            if (e < P->end && isdigit((unsigned char)*e)) {
                is_float = true;
                q = e;
                while (q < P->end && isdigit((unsigned char)*q))
                    q++;
            }
        }
    }
    bool bad = false;
    while (q < P->end && is_ident_char((unsigned char)*q)) {
        q++;
        bad = true;
    }
    P->p = q;
    size_t len = (size_t)(q - s);
    if (bad || len > 64) {
        error_at(P, P->line, cur_col(P, s), "%s '%.*s%s'", bad ? "malformed number" : "number too long",
                 (int)(len > 40 ? 40 : len), s, len > 40 ? "..." : "");
        return TK_ERROR;
    }
    if (is_float)
        return TK_FLOAT;
    char buf[80];
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    P->tok.ival = strtoll(buf, NULL, 10);
    if (errno == ERANGE) {
        error_at(P, P->line, cur_col(P, s), "integer %s is out of range", buf);
        return TK_ERROR;
    }
    return TK_INT;
}

/* Reads the next token into P->tok; the previous one moves to P->prev. */
static void next(parser *P)
{
    P->prev = P->tok;
    for (;;) {
        if (P->p >= P->end)
            break;
        char c = *P->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            P->p++;
        } else if (c == '\n') {
            P->p++;
            P->line++;
            P->line_start = P->p;
        } else if (c == '/' && P->p + 1 < P->end && P->p[1] == '/') {
            while (P->p < P->end && *P->p != '\n')
                P->p++;
        } else {
            break;
        }
    }
    token *t = &P->tok;
    t->start = P->p;
    t->line = P->line;
    t->col = cur_col(P, P->p);
    t->ival = 0;
    if (P->p >= P->end) {
        t->kind = TK_EOF;
        t->len = 0;
        return;
    }
    unsigned char c = (unsigned char)*P->p;
    unsigned char c1 = P->p + 1 < P->end ? (unsigned char)P->p[1] : 0;
    unsigned char c2 = P->p + 2 < P->end ? (unsigned char)P->p[2] : 0;
    if (is_ident_start(c)) {
        while (P->p < P->end && is_ident_char((unsigned char)*P->p))
            P->p++;
        t->kind = TK_IDENT;
    } else if (isdigit(c) || ((c == '-' || c == '+') && (isdigit(c1) || (c1 == '.' && isdigit(c2)))) ||
               (c == '.' && isdigit(c1)) || (c == '-' && P->end - P->p >= 4 && strncmp(P->p + 1, "inf", 3) == 0)) {
        t->kind = lex_number(P);
    } else if (c == '%') {
        const char *q = P->p + 1;
        int64_t v = 0;
        bool big = false;
        while (q < P->end && isdigit((unsigned char)*q)) {
            v = v * 10 + (*q - '0');
            if (v > INT_MAX) {
                big = true;
                v = INT_MAX;
            }
            q++;
        }
        if (q == P->p + 1 || (q < P->end && is_ident_char((unsigned char)*q))) {
            while (q < P->end && is_ident_char((unsigned char)*q))
                q++;
            P->p = q;
            error_at(P, t->line, t->col, "expected a value number such as %%3, got '%.*s'",
                     (int)((size_t)(q - t->start) > 40 ? 40 : (q - t->start)), t->start);
            t->kind = TK_ERROR;
        } else if (big) {
            P->p = q;
            error_at(P, t->line, t->col, "value number %.*s is too large",
                     (int)((size_t)(q - t->start) > 40 ? 40 : (q - t->start)), t->start);
            t->kind = TK_ERROR;
        } else {
            P->p = q;
            t->kind = TK_VALUE;
            t->ival = v;
        }
    } else if (c == '"') {
        t->kind = lex_string(P);
    } else if (strchr("=,:{}[]", c) && c) {
        P->p++;
        t->kind = TK_PUNCT;
    } else {
        P->p++;
        if (isprint(c))
            error_at(P, t->line, t->col, "unexpected character '%c'", c);
        else
            error_at(P, t->line, t->col, "unexpected byte 0x%02x", c);
        t->kind = TK_ERROR;
    }
    t->len = (size_t)(P->p - t->start);
}

/* ---- token helpers ------------------------------------------------------------------------- */

static bool is_punct(const parser *P, char c) { return P->tok.kind == TK_PUNCT && *P->tok.start == c; }

static bool is_word(const parser *P, const char *w)
{
    return P->tok.kind == TK_IDENT && P->tok.len == strlen(w) && memcmp(P->tok.start, w, P->tok.len) == 0;
}

/* True when the current token is past the statement's line (or the end of the file). */
static bool at_eol(const parser *P) { return P->tok.kind == TK_EOF || P->tok.line != P->stmt_line; }

/* Reports "expected WHAT, got X" at the current token, or "expected WHAT at end of line" just
 * after the previous token when the statement's line is over. Quiet after a lexer error. */
static void expected(parser *P, const char *what)
{
    const token *t = &P->tok;
    if (t->kind == TK_ERROR)
        return;
    if (t->kind == TK_EOF) {
        error_at(P, t->line, t->col, "expected %s, got end of file", what);
    } else if (at_eol(P)) {
        error_at(P, P->prev.line, P->prev.col + (int)P->prev.len, "expected %s at end of line", what);
    } else if (t->kind == TK_STRING) {
        error_at(P, t->line, t->col, "expected %s, got a string", what);
    } else {
        int n = t->len > 40 ? 40 : (int)t->len;
        error_at(P, t->line, t->col, "expected %s, got '%.*s'%s", what, n, t->start, t->len > 40 ? "..." : "");
    }
}

/* Consumes punctuation c or reports it missing. */
static bool expect_punct(parser *P, char c, const char *what)
{
    if (!at_eol(P) && is_punct(P, c)) {
        next(P);
        return true;
    }
    expected(P, what);
    return false;
}

static bool have_punct(parser *P, char c) { return !at_eol(P) && is_punct(P, c); }
static bool have_word(parser *P, const char *w) { return !at_eol(P) && is_word(P, w); }
static bool have(parser *P, tk_kind k) { return !at_eol(P) && P->tok.kind == k; }

/* Consumes punctuation c when it comes next (a list's closing bracket, say); false otherwise. */
static bool take_punct(parser *P, char c)
{
    if (!have_punct(P, c))
        return false;
    next(P);
    return true;
}

/* Is a token of kind k next (left for the caller to read)? Otherwise reports "expected what". */
static bool expect_kind(parser *P, tk_kind k, const char *what)
{
    if (have(P, k))
        return true;
    expected(P, what);
    return false;
}

/* Copies the current identifier into the graph arena and advances. */
static const char *take_ident(parser *P)
{
    const char *s = ir_arena_strndup(&P->g->arena, P->tok.start, P->tok.len);
    next(P);
    return s;
}

static const char *take_string(parser *P)
{
    const char *s = ir_arena_strndup(&P->g->arena, P->str, P->str_len);
    next(P);
    return s;
}

/* Skips the rest of the statement's line after an error. */
static void sync_line(parser *P)
{
    if (at_eol(P))
        return;
    while (P->p < P->end && *P->p != '\n')
        P->p++;
    next(P);
}

/* ---- tables -------------------------------------------------------------------------------- */

/* An open-addressing table with linear probing, at most half full (64 slots at first, then
 * doubling): the %N values and the external names, each with its kind of slot. */
typedef struct {
    size_t slot_size;
    bool (*used)(const void *slot);
    uint64_t (*hash)(const void *slot); /* of the slot's key */
    bool (*same_key)(const void *a, const void *b);
} slot_kind;

/* The slot holding probe's key, or the empty slot where it would go; NULL while t is empty. */
static void *table_find(const slot_table *t, const slot_kind *k, const void *probe)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = k->hash(probe) & mask;; i = (i + 1) & mask) {
        void *s = t->slots + i * k->slot_size;
        if (!k->used(s) || k->same_key(s, probe))
            return s;
    }
}

/* Puts slot into t (over a slot with the same key), growing t first when it would be over half
 * full. */
static void table_insert(slot_table *t, const slot_kind *k, const void *slot)
{
    if ((t->n + 1) * 2 > t->cap) {
        slot_table old = *t;
        t->cap = old.cap ? old.cap * 2 : 64;
        t->slots = calloc(t->cap, k->slot_size);
        if (!t->slots)
            ir_unreachable("out of memory");
        for (size_t i = 0; i < old.cap; i++) {
            const void *s = old.slots + i * k->slot_size;
            if (k->used(s))
                memcpy(table_find(t, k, s), s, k->slot_size);
        }
        free(old.slots);
    }
    memcpy(table_find(t, k, slot), slot, k->slot_size);
    t->n++;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static bool val_used(const void *s) { return ((const val_slot *)s)->used; }
static uint64_t val_hash(const void *s) { return hash_u64((uint64_t)((const val_slot *)s)->num); }
static bool val_same(const void *a, const void *b)
{
    return ((const val_slot *)a)->num == ((const val_slot *)b)->num;
}
static const slot_kind val_kind = {sizeof(val_slot), val_used, val_hash, val_same};

static val_slot *val_find(parser *P, int64_t num)
{
    return table_find(&P->vals, &val_kind, &(val_slot){.num = num});
}

static void val_insert(parser *P, int64_t num, ir_node *node, bool poisoned, int line, int col)
{
    table_insert(&P->vals, &val_kind, &(val_slot){true, poisoned, num, node, line, col});
}

static bool name_used(const void *s) { return ((const name_slot *)s)->name != NULL; }

static uint64_t name_hash(const void *slot)
{
    const name_slot *n = slot;
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n->ns;
    for (const char *s = n->name; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static bool name_same(const void *a, const void *b)
{
    const name_slot *x = a, *y = b;
    return x->ns == y->ns && strcmp(x->name, y->name) == 0;
}

static const slot_kind name_kind = {sizeof(name_slot), name_used, name_hash, name_same};

/* Records an external name; reports a duplicate (with a note at the first use) and returns
 * false if the namespace already has it. `what` is "input", "output" or "param". */
static bool name_claim(parser *P, const char *name, int ns, const char *what, int line, int col)
{
    name_slot key = {name, ns, line, col};
    const name_slot *s = table_find(&P->names, &name_kind, &key);
    if (s && s->name) {
        error_at(P, line, col, "duplicate %s name \"%s\"", what, name);
        ir_diag_note(P->d, P->file, s->line, s->col, "\"%s\" was first used here", name);
        return false;
    }
    table_insert(&P->names, &name_kind, &key);
    return true;
}

/* ---- grammar ------------------------------------------------------------------------------- */


/* type := DTYPE '[' [INT (',' INT)*] ']' */
static bool parse_type(parser *P, ir_dtype *dt, ir_shape *shape)
{
    if (!expect_kind(P, TK_IDENT, "a type such as f32[2, 3]"))
        return false;
    char name[32];
    snprintf(name, sizeof name, "%.*s", (int)(P->tok.len < 31 ? P->tok.len : 31), P->tok.start);
    if (P->tok.len > 31 || !ir_dtype_parse(name, dt)) {
        error_at(P, P->tok.line, P->tok.col, "unknown dtype '%.*s'", (int)(P->tok.len > 40 ? 40 : P->tok.len),
                 P->tok.start);
        return false;
    }
    next(P);
    if (!expect_punct(P, '[', "'[' and the shape"))
        return false;
    shape->rank = 0;
    int64_t numel = 1;
    if (take_punct(P, ']'))
        return true;
    for (;;) {
        if (!expect_kind(P, TK_INT, "a dimension"))
            return false;
        int64_t v = P->tok.ival;
        if (v < 0) {
            error_at(P, P->tok.line, P->tok.col, "negative dimension %" PRId64, v);
            return false;
        }
        if (shape->rank == IR_MAX_RANK) {
            error_at(P, P->tok.line, P->tok.col, "more than %d dimensions", IR_MAX_RANK);
            return false;
        }
        if (v > 0 && numel > IR_MAX_NUMEL / v) {
            error_at(P, P->tok.line, P->tok.col, "tensor has more than 2^56 elements");
            return false;
        }
        numel *= v ? v : 1;
        shape->dim[shape->rank++] = v;
        next(P);
        if (take_punct(P, ']'))
            return true;
        if (!expect_punct(P, ',', "',' or ']'"))
            return false;
    }
}

static const char *kind_words(ir_attr_kind k)
{
    switch (k) {
    case AK_INT: return "an integer";
    case AK_FLOAT: return "a float";
    case AK_STR: return "an identifier";
    case AK_DTYPE: return "a dtype";
    case AK_INTS: return "a list of integers";
    }
    return "a value";
}

/* attr := INT | FLOAT | NAME | STRING | '[' [INT (',' INT)*] ']', checked against kind. */
static bool parse_attr_value(parser *P, ir_opcode op, const char *name, ir_attr *a)
{
    const char *mn = ir_ops[op].mnemonic;
    token t = P->tok;
    bool eol = at_eol(P);
    switch (a->kind) {
    case AK_INT:
        if (eol || t.kind != TK_INT)
            break;
        a->i = t.ival;
        next(P);
        return true;
    case AK_FLOAT:
        if (!eol && (t.kind == TK_INT || t.kind == TK_FLOAT || is_word(P, "inf") || is_word(P, "nan"))) {
            char buf[80];
            snprintf(buf, sizeof buf, "%.*s", (int)t.len, t.start);
            a->f = strtod(buf, NULL);
            next(P);
            return true;
        }
        break;
    case AK_STR:
        if (!eol && t.kind == TK_IDENT) {
            a->s = take_ident(P);
            return true;
        }
        if (!eol && t.kind == TK_STRING) {
            a->s = take_string(P);
            return true;
        }
        break;
    case AK_DTYPE:
        if (!eol && t.kind == TK_IDENT) {
            char buf[32];
            snprintf(buf, sizeof buf, "%.*s", (int)(t.len < 31 ? t.len : 31), t.start);
            if (t.len > 31 || !ir_dtype_parse(buf, &a->d)) {
                error_at(P, t.line, t.col, "unknown dtype '%.*s'", (int)(t.len > 40 ? 40 : t.len), t.start);
                return false;
            }
            next(P);
            return true;
        }
        break;
    case AK_INTS:
        if (!eol && is_punct(P, '[')) {
            next(P);
            size_t n = 0;
            if (!have_punct(P, ']'))
                for (;;) {
                    if (!expect_kind(P, TK_INT, "an integer"))
                        return false;
                    if (n == P->ints_cap) {
                        P->ints_cap = P->ints_cap ? P->ints_cap * 2 : 16;
                        P->ints = xrealloc(P->ints, P->ints_cap * sizeof *P->ints);
                    }
                    P->ints[n++] = P->tok.ival;
                    next(P);
                    if (have_punct(P, ']'))
                        break;
                    if (!expect_punct(P, ',', "',' or ']'"))
                        return false;
                }
            next(P); /* ']' */
            if (n > INT_MAX / 16) {
                error_at(P, t.line, t.col, "attribute '%s' of %s: list too long", name, mn);
                return false;
            }
            a->n = (int)n;
            a->ints = n ? ir_arena_alloc(&P->g->arena, n * sizeof *a->ints) : NULL;
            if (n)
                memcpy(a->ints, P->ints, n * sizeof *a->ints);
            return true;
        }
        break;
    }
    if (t.kind == TK_ERROR)
        return false;
    if (eol || t.kind == TK_EOF) {
        char what[96];
        snprintf(what, sizeof what, "a value for attribute '%s'", name);
        expected(P, what);
        return false;
    }
    error_at(P, t.line, t.col, "attribute '%s' of %s expects %s", name, mn, kind_words(a->kind));
    return false;
}

/* attrs := '{' [NAME '=' attr (',' NAME '=' attr)*] '}' */
static bool parse_attrs(parser *P, ir_opcode op, ir_attr *attr, bool *given)
{
    next(P); /* '{' */
    if (take_punct(P, '}'))
        return true;
    for (;;) {
        if (!expect_kind(P, TK_IDENT, "an attribute name"))
            return false;
        token t = P->tok;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(t.len < 63 ? t.len : 63), t.start);
        int k = t.len < 63 ? ir_op_attr_index(op, name) : -1;
        if (k < 0) {
            error_at(P, t.line, t.col, "unknown attribute '%.*s' for %s", (int)(t.len > 40 ? 40 : t.len), t.start,
                     ir_ops[op].mnemonic);
            return false;
        }
        if (given[k]) {
            error_at(P, t.line, t.col, "attribute '%s' given twice", name);
            return false;
        }
        next(P);
        if (!expect_punct(P, '=', "'='"))
            return false;
        if (!parse_attr_value(P, op, name, &attr[k]))
            return false;
        given[k] = true;
        if (take_punct(P, '}'))
            return true;
        if (!expect_punct(P, ',', "',' or '}'"))
            return false;
    }
}

/* Describes the graph's mesh for an error: "mesh has dp, tp" or "the graph has no mesh". */
static void mesh_words(const ir_graph *g, char *buf, size_t cap)
{
    if (g->n_axes == 0) {
        snprintf(buf, cap, "the graph has no mesh");
        return;
    }
    size_t k = (size_t)snprintf(buf, cap, "mesh has ");
    for (int i = 0; i < g->n_axes && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", g->axis_name[i]);
}

/* spec := '[' (NAME | '_') (',' (NAME | '_'))* ']'; *ok turns false on a semantic error. */
static bool parse_shard(parser *P, int rank, ir_shard *shard, bool *ok)
{
    token open = P->tok;
    if (!expect_punct(P, '[', "'[' and a shard spec"))
        return false;
    int n = 0;
    shard->present = true;
    for (int i = 0; i < IR_MAX_RANK; i++)
        shard->axis[i] = IR_REPLICATED;
    if (!have_punct(P, ']'))
        for (;;) {
            if (!expect_kind(P, TK_IDENT, "a mesh axis or '_'"))
                return false;
            token t = P->tok;
            int a = IR_REPLICATED;
            if (!is_word(P, "_")) {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)(t.len < 63 ? t.len : 63), t.start);
                a = t.len < 63 ? ir_graph_axis(P->g, name) : -1;
                if (a < 0) {
                    char mesh[160];
                    mesh_words(P->g, mesh, sizeof mesh);
                    error_at(P, t.line, t.col, "unknown mesh axis '%.*s' (%s)", (int)(t.len > 40 ? 40 : t.len), t.start,
                             mesh);
                    *ok = false;
                    a = IR_REPLICATED;
                } else {
                    for (int j = 0; j < n && j < IR_MAX_RANK; j++)
                        if (shard->axis[j] == a) {
                            error_at(P, t.line, t.col, "mesh axis '%s' shards two dimensions", name);
                            *ok = false;
                        }
                }
            }
            if (n < IR_MAX_RANK)
                shard->axis[n] = (int8_t)a;
            n++;
            next(P);
            if (have_punct(P, ']'))
                break;
            if (!expect_punct(P, ',', "',' or ']'"))
                return false;
        }
    next(P); /* ']' */
    if (n != rank) {
        error_at(P, open.line, open.col, "shard spec has %d entr%s for a rank-%d value", n, n == 1 ? "y" : "ies", rank);
        *ok = false;
    }
    return true;
}

/* Checks an operand count against the op's schema. */
static bool check_arity(parser *P, ir_opcode op, int n, int line, int col)
{
    const ir_op_info *info = &ir_ops[op];
    if (n >= info->min_in && (info->max_in < 0 || n <= info->max_in))
        return true;
    const char *s = info->min_in == 1 ? "" : "s";
    if (info->max_in == info->min_in)
        error_at(P, line, col, "%s expects %d operand%s, got %d", info->mnemonic, info->min_in, s, n);
    else if (info->max_in < 0)
        error_at(P, line, col, "%s expects at least %d operand%s, got %d", info->mnemonic, info->min_in, s, n);
    else
        error_at(P, line, col, "%s expects %d to %d operands, got %d", info->mnemonic, info->min_in, info->max_in, n);
    return false;
}

/* [WORD N] after a node's type (`stage 1`, `group 3`): N a non-negative int into *out, which
 * stays as it is when WORD is absent; false after an error. */
static bool parse_tagged_index(parser *P, const char *word, int *out)
{
    if (!have_word(P, word))
        return true;
    next(P);
    if (!have(P, TK_INT) || P->tok.ival < 0 || P->tok.ival > INT_MAX) {
        if (have(P, TK_INT)) {
            error_at(P, P->tok.line, P->tok.col, "%s must be a non-negative integer", word);
        } else {
            char what[48];
            snprintf(what, sizeof what, "a %s number", word);
            expected(P, what);
        }
        return false;
    }
    *out = (int)P->tok.ival;
    next(P);
    return true;
}

/* line := VALUE '=' OP [STRING] ['optional'] [VALUE (',' VALUE)*] [attrs] ':' type
 *         ['shard' spec] ['stage' INT] ['group' INT] ['recomputed']
 * Returns false on a syntax error (the caller skips the line); semantic errors are reported
 * here and poison the value. */
static bool parse_def(parser *P)
{
    token vt = P->tok;
    int64_t num = vt.ival;
    val_slot *old = val_find(P, num);
    bool dup = old && old->used;
    bool ok = !dup;
    if (dup) {
        error_at(P, vt.line, vt.col, "value %%%" PRId64 " defined twice", num);
        ir_diag_note(P->d, P->file, old->line, old->col, "%%%" PRId64 " was first defined here", num);
    }
    next(P);
    bool parsed = false; /* the line is well formed; a value without a node is poisoned */
    ir_node **ins = NULL;
    int n_in = 0, cap_in = 0;
    ir_node *node = NULL;

    if (!expect_punct(P, '=', "'='"))
        goto done;
    if (!expect_kind(P, TK_IDENT, "an op name"))
        goto done;
    token opt = P->tok;
    char opname[64];
    snprintf(opname, sizeof opname, "%.*s", (int)(opt.len < 63 ? opt.len : 63), opt.start);
    ir_opcode op = opt.len < 63 ? ir_op_lookup(opname) : OP_COUNT;
    if (op == OP_COUNT) {
        error_at(P, opt.line, opt.col, "unknown op '%.*s'", (int)(opt.len > 40 ? 40 : opt.len), opt.start);
        goto done;
    }
    if (op == OP_output) {
        error_at(P, opt.line, opt.col, "output defines no value: write output \"name\" %%N");
        goto done;
    }
    next(P);

    const char *name = NULL;
    token name_tok = P->tok;
    if (have(P, TK_STRING))
        name = take_string(P);
    token optional_tok = P->tok;
    bool optional = false;
    if (have_word(P, "optional")) {
        optional = true;
        next(P);
    }
    while (have(P, TK_VALUE)) {
        token t = P->tok;
        val_slot *s = val_find(P, t.ival);
        if (!s || !s->used) {
            error_at(P, t.line, t.col, "undefined value %%%" PRId64, t.ival);
            ok = false;
        } else if (s->poisoned) {
            ok = false;
        }
        if (n_in == cap_in) {
            cap_in = cap_in ? cap_in * 2 : 4;
            ins = xrealloc(ins, sizeof *ins * (size_t)cap_in);
        }
        ins[n_in++] = s && s->used ? s->node : NULL;
        next(P);
        if (!have_punct(P, ','))
            break;
        next(P);
        if (!expect_kind(P, TK_VALUE, "an operand"))
            goto done;
    }
    ir_attr attr[IR_MAX_ATTRS];
    bool given[IR_MAX_ATTRS] = {false};
    memset(attr, 0, sizeof attr);
    int na = ir_op_nattrs(op);
    for (int k = 0; k < na; k++)
        attr[k].kind = ir_op_attr_kind(op, k);
    if (have_punct(P, '{') && !parse_attrs(P, op, attr, given))
        goto done;
    if (!expect_punct(P, ':', "':' and the result type"))
        goto done;
    token type_tok = P->tok;
    ir_dtype dt = DT_VOID;
    ir_shape shape = {0};
    if (!parse_type(P, &dt, &shape))
        goto done;
    ir_shard shard = {0};
    if (have_word(P, "shard")) {
        next(P);
        if (!parse_shard(P, shape.rank, &shard, &ok))
            goto done;
    }
    int stage = -1, group = -1;
    if (!parse_tagged_index(P, "stage", &stage) || !parse_tagged_index(P, "group", &group))
        goto done;
    bool recomputed = have_word(P, "recomputed");
    if (recomputed)
        next(P);
    parsed = true;

    /* semantics: the line is well formed */
    if (!check_arity(P, op, n_in, opt.line, opt.col))
        ok = false;
    if (optional && op != OP_input) {
        error_at(P, optional_tok.line, optional_tok.col, "'optional' applies only to inputs");
        ok = false;
    }
    if ((op == OP_input || op == OP_param) && !name) {
        error_at(P, opt.line, opt.col, "%s needs an external name: %s \"NAME\"", opname, opname);
        ok = false;
    }
    if (name && (op == OP_input || op == OP_param) &&
        !name_claim(P, name, op == OP_param, opname, name_tok.line, name_tok.col))
        ok = false;
    for (int k = 0; k < na; k++)
        if (!given[k] && !ir_op_attr_default(op, k)) {
            char an[64];
            error_at(P, opt.line, opt.col, "missing attribute '%s' of %s", ir_op_attr_name(op, k, an, sizeof an),
                     opname);
            ok = false;
        }
    if (!ok)
        goto done;

    node = ir_node_add(P->g, op, n_in, ins, (ir_loc){P->file, opt.line, opt.col});
    for (int k = 0; k < na; k++)
        if (given[k])
            node->attr[k] = attr[k];
    node->name = name;
    node->optional = optional;
    node->shard = shard;
    node->stage = stage;
    node->group = group;
    node->recomputed = recomputed;
    if (ir_ops[op].kind == OK_SOURCE) {
        node->dtype = dt;
        node->shape = shape;
        if (!ir_infer(node, P->d))
            ok = false;
    } else if (!ir_infer(node, P->d)) {
        ok = false;
    } else if (node->dtype != dt || !ir_shape_eq(&node->shape, &shape)) {
        char want[320], got[320];
        error_at(P, type_tok.line, type_tok.col, "%%%" PRId64 ": declared %s but %s infers %s", num,
                 ir_type_str(dt, &shape, want, sizeof want), opname,
                 ir_type_str(node->dtype, &node->shape, got, sizeof got));
        ok = false;
    }

done:
    free(ins);
    if (!dup)
        val_insert(P, num, ok ? node : NULL, !ok || !node, vt.line, vt.col);
    return parsed;
}

/* line := 'output' STRING VALUE */
static bool parse_output(parser *P)
{
    token kw = P->tok;
    next(P);
    if (!expect_kind(P, TK_STRING, "the output's name in quotes"))
        return false;
    token name_tok = P->tok;
    const char *name = take_string(P);
    if (!expect_kind(P, TK_VALUE, "the value to output, such as %3"))
        return false;
    token t = P->tok;
    next(P);
    bool ok = name_claim(P, name, 0, "output", name_tok.line, name_tok.col);
    val_slot *s = val_find(P, t.ival);
    if (!s || !s->used) {
        error_at(P, t.line, t.col, "undefined value %%%" PRId64, t.ival);
        return true;
    }
    if (s->poisoned || !ok)
        return true;
    ir_node *x = s->node;
    ir_node *n = ir_node_add(P->g, OP_output, 1, &x, (ir_loc){P->file, kw.line, kw.col});
    n->name = name;
    ir_infer(n, P->d);
    return true;
}

/* 'mesh' NAME (',' NAME)* */
static bool parse_mesh(parser *P)
{
    token kw = P->tok;
    if (P->g->n_nodes > 0 || P->g->n_axes > 0 || P->vals.n > 0) {
        error_at(P, kw.line, kw.col, "the mesh must be declared once, before the first node");
        return false;
    }
    next(P);
    for (;;) {
        if (!have(P, TK_IDENT) || is_word(P, "_")) {
            expected(P, "a mesh axis name");
            return false;
        }
        token t = P->tok;
        const char *name = take_ident(P);
        if (ir_graph_axis(P->g, name) >= 0) {
            error_at(P, t.line, t.col, "mesh axis '%s' declared twice", name);
            return false;
        }
        if (P->g->n_axes == IR_MAX_MESH_AXES) {
            error_at(P, t.line, t.col, "a mesh has at most %d axes", IR_MAX_MESH_AXES);
            return false;
        }
        P->g->axis_name[P->g->n_axes++] = name;
        if (!have_punct(P, ','))
            return true;
        next(P);
    }
}

/* graph := 'graph' NAME '{' ['mesh' ...] line* '}' */
static ir_graph *parse_graph(parser *P)
{
    P->stmt_line = P->tok.line;
    if (!is_word(P, "graph")) {
        expected(P, "'graph'");
        return NULL;
    }
    next(P);
    if (!have(P, TK_IDENT) && !have(P, TK_STRING)) {
        expected(P, "the graph's name");
        return NULL;
    }
    P->g = ir_graph_new("");
    P->g->name = P->tok.kind == TK_IDENT ? take_ident(P) : take_string(P);
    if (!expect_punct(P, '{', "'{'"))
        return P->g;
    for (;;) {
        P->stmt_line = P->tok.line;
        token t = P->tok;
        bool ok;
        if (t.kind == TK_EOF) {
            error_at(P, t.line, t.col, "expected '}' to close graph %s, got end of file", P->g->name);
            return P->g;
        }
        if (is_punct(P, '}')) {
            next(P);
            break;
        }
        if (is_word(P, "mesh"))
            ok = parse_mesh(P);
        else if (is_word(P, "output"))
            ok = parse_output(P);
        else if (t.kind == TK_VALUE)
            ok = parse_def(P);
        else {
            expected(P, "'%N = OP ...', 'output' or '}'");
            ok = false;
        }
        if (ok && !at_eol(P) && !is_punct(P, '}')) {
            expected(P, "end of line");
            ok = false;
        }
        if (!ok)
            sync_line(P);
    }
    if (P->tok.kind != TK_EOF && P->tok.kind != TK_ERROR)
        error_at(P, P->tok.line, P->tok.col, "unexpected text after the end of the graph");
    return P->g;
}

ir_graph *ir_parse(ir_diag *d, int file)
{
    parser P = {0};
    P.d = d;
    P.file = file;
    const ir_source *src = &d->src[file];
    P.p = src->text;
    P.end = src->text + src->len;
    if (P.end - P.p >= 3 && memcmp(P.p, "\xef\xbb\xbf", 3) == 0) /* UTF-8 byte order mark */
        P.p += 3;
    P.line_start = src->text;
    P.line = 1;
    int errors = d->n_errors;
    next(&P);
    ir_graph *g = parse_graph(&P);
    free(P.str);
    free(P.vals.slots);
    free(P.names.slots);
    free(P.ints);
    if (d->n_errors > errors) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
