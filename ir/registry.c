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
