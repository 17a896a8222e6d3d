/* registry.c — the op table, built from ops.def, and schema queries over it. */
#include "ir/ir.h"
#include "ir/ops_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ir_op_info ir_ops[OP_COUNT] = {
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad)                  \
    [OP_##id] = {mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad},
#include "ir/ops.def"
#undef OP
};

/* ---- the family tables (unary.def, binary.def, reduce.def) cover their kinds exactly -----------
 * Each entry must name an op of its kind, and the table must have as many entries as ops.def has
 * ops of that kind (a duplicate is a duplicate case label in every consumer's switch): so an
 * OK_UNARY, OK_BINARY or OK_REDUCE op added to ops.def without its family line does not build. */
enum {
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad) KIND_OF_##id = kind,
#include "ir/ops.def"
#undef OP
};
#define UNARY(id, epi) _Static_assert((int)KIND_OF_##id == (int)OK_UNARY, "unary.def: " #id " is not an OK_UNARY op of ops.def");
#include "ir/unary.def"
#undef UNARY
#define BINARY(id) _Static_assert((int)KIND_OF_##id == (int)OK_BINARY, "binary.def: " #id " is not an OK_BINARY op of ops.def");
#include "ir/binary.def"
#undef BINARY
#define REDUCE(id, fold, mean) _Static_assert((int)KIND_OF_##id == (int)OK_REDUCE, "reduce.def: " #id " is not an OK_REDUCE op of ops.def");
#include "ir/reduce.def"
#undef REDUCE
enum {
    N_UNARY_OPS = 0
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad) +((kind) == OK_UNARY)
#include "ir/ops.def"
#undef OP
    ,
    N_UNARY_DEF = 0
#define UNARY(id, epi) +1
#include "ir/unary.def"
#undef UNARY
    ,
    N_BINARY_OPS = 0
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad) +((kind) == OK_BINARY)
#include "ir/ops.def"
#undef OP
    ,
    N_BINARY_DEF = 0
#define BINARY(id) +1
#include "ir/binary.def"
#undef BINARY
    ,
    N_REDUCE_OPS = 0
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad) +((kind) == OK_REDUCE)
#include "ir/ops.def"
#undef OP
    ,
    N_REDUCE_DEF = 0
#define REDUCE(id, fold, mean) +1
#include "ir/reduce.def"
#undef REDUCE
};
_Static_assert(N_UNARY_DEF == N_UNARY_OPS, "an OK_UNARY op of ops.def has no line in ir/unary.def");
_Static_assert(N_BINARY_DEF == N_BINARY_OPS, "an OK_BINARY op of ops.def has no line in ir/binary.def");
_Static_assert(N_REDUCE_DEF == N_REDUCE_OPS, "an OK_REDUCE op of ops.def has no line in ir/reduce.def");

const char *const ir_deriv_names[IR_DERIV_COUNT] = {
#define UNARY_GRAD(fn) [IR_DERIV_##fn] = #fn,
#include "ir/unary_grad.def"
#undef UNARY_GRAD
};

ir_deriv ir_deriv_lookup(const char *fn)
{
    for (int i = 0; fn && i < IR_DERIV_COUNT; i++)
        if (strcmp(ir_deriv_names[i], fn) == 0)
            return (ir_deriv)i;
    return IR_DERIV_COUNT;
}

ir_opcode ir_op_lookup(const char *mnemonic)
{
    for (int op = 0; op < OP_COUNT; op++)
        if (strcmp(ir_ops[op].mnemonic, mnemonic) == 0)
            return (ir_opcode)op;
    return OP_COUNT;
}

/* Finds entry k of the schema: sets [*name, *name+*len) and returns a pointer to its kind char. */
static const char *schema_entry(ir_opcode op, int k, const char **name, size_t *len)
{
    const char *p = ir_ops[op].attrs;
    for (int i = 0; *p; i++) {
        const char *colon = strchr(p, ':');
        const char *comma = strchr(p, ',');
        if (!colon)
            break;
        if (i == k) {
            *name = p;
            *len = (size_t)(colon - p);
            return colon + 1;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return NULL;
}

int ir_op_nattrs(ir_opcode op)
{
    const char *p = ir_ops[op].attrs;
    if (!*p)
        return 0;
    int n = 1;
    for (; *p; p++)
        n += *p == ',';
    return n;
}

const char *ir_op_attr_name(ir_opcode op, int k, char *buf, size_t cap)
{
    const char *name;
    size_t len;
    if (!schema_entry(op, k, &name, &len) || len + 1 > cap)
        ir_unreachable("attribute index out of range");
    memcpy(buf, name, len);
    buf[len] = 0;
    return buf;
}

ir_attr_kind ir_op_attr_kind(ir_opcode op, int k)
{
    const char *name;
    size_t len;
    const char *kind = schema_entry(op, k, &name, &len);
    if (!kind)
        ir_unreachable("attribute index out of range");
    return (ir_attr_kind)*kind;
}

const char *ir_op_attr_default(ir_opcode op, int k)
{
    const char *name;
    size_t len;
    const char *kind = schema_entry(op, k, &name, &len);
    if (!kind)
        ir_unreachable("attribute index out of range");
    return kind[1] == '=' ? kind + 2 : NULL; /* runs to ',' or end */
}

int ir_op_attr_index(ir_opcode op, const char *want)
{
    int n = ir_op_nattrs(op);
    for (int k = 0; k < n; k++) {
        const char *name = NULL;
        size_t len = 0;
        schema_entry(op, k, &name, &len);
        if (strlen(want) == len && memcmp(want, name, len) == 0)
            return k;
    }
    return -1;
}

_Noreturn void ir_die(const char *file, int line, const char *msg)
{
    fprintf(stderr, "loom: internal compiler error at %s:%d: %s\n", file, line, msg);
    abort();
}
