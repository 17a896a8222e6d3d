/* cse.c — common subexpression elimination: merges identical pure nodes.
 *
 * Two nodes are identical when they have the same op, the same operands (after earlier merges),
 * equal attributes (floats compared bit for bit), the same type, shard spec, stage and external
 * name, and both recomputed or neither (passes/recompute.c: a recomputation stays one). Pure means every op except input and param (each is a distinct run-time value or
 * checkpoint entry even when declared alike), output, and communication ops; const and iota
 * with identical attributes and type do merge. One forward sweep with a hash table keeps the
 * first of each class and points later users at it; the duplicates are then dropped.
 */
#include "passes/pass.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool is_pure(const ir_node *n)
{
    return n->op != OP_input && n->op != OP_param && n->op != OP_output && ir_ops[n->op].kind != OK_COMM;
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 1099511628211ULL; }

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = mix(h, ((const unsigned char *)p)[i]);
    return h;
}

static uint64_t hash_node(const ir_node *n)
{
    uint64_t h = mix(1469598103934665603ULL, (uint64_t)n->op);
    for (int j = 0; j < n->n_in; j++)
        h = mix(h, (uint64_t)n->in[j]->id);
    h = mix(h, (uint64_t)n->dtype);
    h = mix(h, (uint64_t)n->shape.rank);
    for (int k = 0; k < n->shape.rank; k++)
        h = mix(h, (uint64_t)n->shape.dim[k]);
    for (int k = 0; k < ir_op_nattrs(n->op); k++) {
        const ir_attr *a = &n->attr[k];
        switch (a->kind) {
        case AK_INT: h = mix(h, (uint64_t)a->i); break;
        case AK_FLOAT: h = hash_bytes(h, &a->f, sizeof a->f); break;
        case AK_STR: h = hash_bytes(h, a->s, strlen(a->s)); break;
        case AK_DTYPE: h = mix(h, (uint64_t)a->d); break;
        case AK_INTS: h = hash_bytes(h, a->ints, sizeof *a->ints * (size_t)a->n); break;
        }
    }
    return h;
}

static bool attr_eq(const ir_attr *a, const ir_attr *b)
{
    switch (a->kind) {
    case AK_INT: return a->i == b->i;
    case AK_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case AK_STR: return strcmp(a->s, b->s) == 0;
    case AK_DTYPE: return a->d == b->d;
    case AK_INTS: return a->n == b->n && (a->n == 0 || memcmp(a->ints, b->ints, sizeof *a->ints * (size_t)a->n) == 0);
    }
    return false;
}

static bool shard_eq(const ir_node *a, const ir_node *b)
{
    if (a->shard.present != b->shard.present)
        return false;
    for (int k = 0; a->shard.present && k < a->shape.rank; k++)
        if (a->shard.axis[k] != b->shard.axis[k])
            return false;
    return true;
}

static bool same(const ir_node *a, const ir_node *b)
{
    if (a->op != b->op || a->n_in != b->n_in || a->dtype != b->dtype || !ir_shape_eq(&a->shape, &b->shape) ||
        a->stage != b->stage || a->recomputed != b->recomputed || !shard_eq(a, b))
        return false;
    if ((a->name == NULL) != (b->name == NULL) || (a->name && strcmp(a->name, b->name) != 0))
        return false;
    for (int j = 0; j < a->n_in; j++)
        if (a->in[j] != b->in[j])
            return false;
    for (int k = 0; k < ir_op_nattrs(a->op); k++)
        if (!attr_eq(&a->attr[k], &b->attr[k]))
            return false;
    return true;
}

bool pass_cse(ir_graph *g, ir_diag *d)
{
    (void)d;
    size_t cap = 16;
    while (cap < (size_t)g->n_nodes * 2)
        cap *= 2;
    ir_node **table = calloc(cap, sizeof *table);
    ir_node **repl = calloc((size_t)g->n_nodes + 1, sizeof *repl); /* id -> surviving node */
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!table || !repl || !dead)
        ir_unreachable("out of memory");
    bool any = false;
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            n->in[j] = repl[n->in[j]->id];
        repl[i] = n;
        if (!is_pure(n))
            continue;
        for (size_t s = hash_node(n) & (cap - 1);; s = (s + 1) & (cap - 1)) {
            if (!table[s]) {
                table[s] = n;
                break;
            }
            if (same(table[s], n)) {
                repl[i] = table[s];
                dead[i] = any = true;
                break;
            }
        }
    }
    if (any)
        ir_graph_compact(g, dead);
    free(table);
    free(repl);
    free(dead);
    return true;
}
