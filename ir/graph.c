/* graph.c — graphs, nodes, attributes, dtypes and shapes: the data structures of ir.h. */
#include "ir/ir.h"
#include "ir/ops_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtypes ---- */
static const struct {
    const char *name;
    int size;
} dtypes[DT_COUNT] = {
    [DT_VOID] = {"void", 0}, [DT_F32] = {"f32", 4}, [DT_F64] = {"f64", 8},
    [DT_F16] = {"f16", 2},   [DT_BF16] = {"bf16", 2}, [DT_I32] = {"i32", 4},
    [DT_I64] = {"i64", 8},   [DT_U8] = {"u8", 1},
    [DT_I8] = {"i8", 1},
};

const char *ir_dtype_name(ir_dtype dt) { return dt < DT_COUNT ? dtypes[dt].name : "?"; }
int ir_dtype_size(ir_dtype dt) { return dt < DT_COUNT ? dtypes[dt].size : 0; }
bool ir_dtype_is_float(ir_dtype dt) { return dt == DT_F32 || dt == DT_F64 || dt == DT_F16 || dt == DT_BF16; }
bool ir_dtype_is_int(ir_dtype dt) { return dt == DT_I32 || dt == DT_I64 || dt == DT_U8 || dt == DT_I8; }

bool ir_dtype_parse(const char *s, ir_dtype *out)
{
    for (int i = 1; i < DT_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (ir_dtype)i;
            return true;
        }
    return false;
}

/* ---- shapes ---- */
int64_t ir_shape_numel(const ir_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->dim[i];
    return n;
}

bool ir_shape_fits(const ir_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] < 0 || s->dim[i] > IR_MAX_NUMEL)
            return false;
        if (s->dim[i] > 0 && n > IR_MAX_NUMEL / s->dim[i])
            return false;
        n *= s->dim[i] ? s->dim[i] : 1;
    }
    return true;
}

bool ir_shape_eq(const ir_shape *a, const ir_shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

char *ir_shape_str(const ir_shape *s, char *buf, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "[");
    for (int i = 0; i < s->rank; i++)
        k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%" PRId64, i ? ", " : "", s->dim[i]);
    snprintf(buf + k, k < cap ? cap - k : 0, "]");
    return buf;
}

char *ir_type_str(ir_dtype dt, const ir_shape *s, char *buf, size_t cap)
{
    char sh[256];
    snprintf(buf, cap, "%s%s", ir_dtype_name(dt), ir_shape_str(s, sh, sizeof sh));
    return buf;
}

/* ---- graphs ---- */
ir_graph *ir_graph_new(const char *name)
{
    ir_graph *g = calloc(1, sizeof *g);
    if (!g)
        ir_unreachable("out of memory");
    g->name = ir_arena_strdup(&g->arena, name);
    return g;
}

void ir_graph_free(ir_graph *g)
{
    if (!g)
        return;
    free(g->nodes);
    ir_arena_free(&g->arena);
    free(g);
}

const char *ir_graph_strdup(ir_graph *g, const char *s) { return s ? ir_arena_strdup(&g->arena, s) : NULL; }

int ir_graph_axis(const ir_graph *g, const char *name)
{
    for (int i = 0; i < g->n_axes; i++)
        if (strcmp(g->axis_name[i], name) == 0)
            return i;
    return -1;
}

/* Sets attribute k of n to its schema default (or zero of its kind when required). */
static void attr_default(ir_graph *g, ir_node *n, int k)
{
    ir_attr *a = &n->attr[k];
    memset(a, 0, sizeof *a);
    a->kind = ir_op_attr_kind(n->op, k);
    const char *def = ir_op_attr_default(n->op, k);
    if (!def)
        return;
    size_t len = strcspn(def, ",");
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, def);
    switch (a->kind) {
    case AK_INT: a->i = strtoll(text, NULL, 10); break;
    case AK_FLOAT: a->f = strtod(text, NULL); break;
    case AK_STR: a->s = ir_arena_strdup(&g->arena, text); break;
    case AK_DTYPE: ir_dtype_parse(text, &a->d); break;
    case AK_INTS: break;
    }
}

ir_node *ir_node_add(ir_graph *g, ir_opcode op, int n_in, ir_node *const *in, ir_loc loc)
{
    ir_grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes);
    ir_node *n = ir_arena_alloc(&g->arena, sizeof *n);
    n->id = g->n_nodes;
    n->op = op;
    n->n_in = n_in;
    n->in = n_in ? ir_arena_alloc(&g->arena, sizeof *n->in * (size_t)n_in) : NULL;
    for (int i = 0; i < n_in; i++)
        n->in[i] = in[i];
    n->dtype = DT_VOID;
    n->stage = -1;
    n->group = -1;
    n->loc = loc;
    for (int k = 0; k < ir_op_nattrs(op); k++)
        attr_default(g, n, k);
    g->nodes[g->n_nodes++] = n;
    return n;
}

bool ir_infer(ir_node *n, ir_diag *d)
{
    if (!ir_ops[n->op].infer(n, d))
        return false;
    if (!ir_shape_fits(&n->shape)) {
        char buf[256];
        ir_diag_error(d, n->loc.file, n->loc.line, n->loc.col, "%s: its result %s has more than 2^56 elements",
                      ir_ops[n->op].mnemonic, ir_shape_str(&n->shape, buf, sizeof buf));
        return false;
    }
    return true;
}

void ir_graph_compact(ir_graph *g, const bool *dead)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!dead[i]) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    g->n_nodes = k;
}

static const char *dup_or_null(ir_graph *g, const char *s) { return s ? ir_arena_strdup(&g->arena, s) : NULL; }

ir_node *ir_node_copy(ir_graph *g, const ir_node *s, ir_node *const *in)
{
    ir_node *n = ir_node_add(g, s->op, s->n_in, in, s->loc);
    n->dtype = s->dtype;
    n->shape = s->shape;
    n->shard = s->shard;
    n->stage = s->stage;
    n->group = s->group;
    n->optional = s->optional;
    n->backward = s->backward;
    n->recomputed = s->recomputed;
    n->name = dup_or_null(g, s->name);
    n->scope = dup_or_null(g, s->scope);
    for (int k = 0; k < ir_op_nattrs(s->op); k++) {
        n->attr[k] = s->attr[k];
        if (s->attr[k].kind == AK_STR)
            n->attr[k].s = dup_or_null(g, s->attr[k].s);
        if (s->attr[k].kind == AK_INTS && s->attr[k].n) {
            size_t bytes = sizeof(int64_t) * (size_t)s->attr[k].n;
            n->attr[k].ints = ir_arena_alloc(&g->arena, bytes);
            memcpy(n->attr[k].ints, s->attr[k].ints, bytes);
        }
    }
    return n;
}

ir_graph *ir_graph_clone(const ir_graph *src)
{
    ir_graph *g = ir_graph_new(src->name);
    g->n_axes = src->n_axes;
    for (int i = 0; i < src->n_axes; i++)
        g->axis_name[i] = ir_arena_strdup(&g->arena, src->axis_name[i]);
    ir_node **map = calloc((size_t)src->n_nodes + 1, sizeof *map);
    ir_node *ops[64], **tmp = ops;
    for (int i = 0; i < src->n_nodes; i++) {
        const ir_node *s = src->nodes[i];
        if (s->n_in > 64)
            tmp = malloc(sizeof *tmp * (size_t)s->n_in);
        for (int j = 0; j < s->n_in; j++)
            tmp[j] = map[s->in[j]->id];
        ir_node *n = ir_node_copy(g, s, tmp);
        if (tmp != ops) {
            free(tmp);
            tmp = ops;
        }
        map[s->id] = n;
    }
    free(map);
    return g;
}

/* ---- attributes ---- */
static int attr_index(const ir_node *n, const char *name)
{
    int k = ir_op_attr_index(n->op, name);
    if (k < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "op '%s' has no attribute '%s'", ir_ops[n->op].mnemonic, name);
        ir_unreachable(msg);
    }
    return k;
}

const ir_attr *ir_attr_get(const ir_node *n, const char *name) { return &n->attr[attr_index(n, name)]; }
int64_t ir_attr_int(const ir_node *n, const char *name) { return ir_attr_get(n, name)->i; }
double ir_attr_float(const ir_node *n, const char *name) { return ir_attr_get(n, name)->f; }
const char *ir_attr_str(const ir_node *n, const char *name) { return ir_attr_get(n, name)->s; }
ir_dtype ir_attr_dtype(const ir_node *n, const char *name) { return ir_attr_get(n, name)->d; }
void ir_attr_set_int(ir_node *n, const char *name, int64_t v) { n->attr[attr_index(n, name)].i = v; }
void ir_attr_set_float(ir_node *n, const char *name, double v) { n->attr[attr_index(n, name)].f = v; }
void ir_attr_set_dtype(ir_node *n, const char *name, ir_dtype dt) { n->attr[attr_index(n, name)].d = dt; }

void ir_attr_set_str(ir_graph *g, ir_node *n, const char *name, const char *s)
{
    n->attr[attr_index(n, name)].s = ir_arena_strdup(&g->arena, s);
}

void ir_attr_set_ints(ir_graph *g, ir_node *n, const char *name, int count, const int64_t *v)
{
    ir_attr *a = &n->attr[attr_index(n, name)];
    a->n = count;
    a->ints = count ? ir_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)count) : NULL;
    if (count)
        memcpy(a->ints, v, sizeof(int64_t) * (size_t)count);
}
