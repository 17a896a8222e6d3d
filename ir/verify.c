/* verify.c — the IR verifier: checks every invariant listed at the top of ir.h and in
 * docs/ir.md "Verifier" on a finished graph, and re-runs each node's shape rule.
 *
 * It runs after the frontend and between passes (pass_run_pipeline's verify_each), so it must
 * cope with any malformed graph a buggy pass could leave: it reads operand pointers only after
 * checking they belong to the graph, and re-infers on a scratch copy of each node so the graph
 * is never modified. Each problem is reported at the node's loc, naming the node by the value
 * number the printer gives it ("%3 = matmul: ..."), so `loom dump` output and errors agree.
 */
#include "ir/ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const ir_graph *g;
    ir_diag *d;
    const int *num; /* printer's value number of each node, -1 for outputs */
    bool ok;
} verifier;

static void report(verifier *V, const ir_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(verifier *V, const ir_node *n, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *mn = n->op < OP_COUNT ? ir_ops[n->op].mnemonic : "?";
    if (n->op == OP_output)
        ir_diag_error(V->d, n->loc.file, n->loc.line, n->loc.col, "output \"%s\": %s", n->name ? n->name : "",
                      msg);
    else
        ir_diag_error(V->d, n->loc.file, n->loc.line, n->loc.col, "%%%d = %s: %s", V->num[n->id], mn, msg);
    V->ok = false;
}

/* Operands: each a node of this graph, defined earlier, with a result. False if any is bad. */
static bool check_operands(verifier *V, const ir_node *n, int i)
{
    const ir_op_info *info = &ir_ops[n->op];
    bool good = true;
    if (n->n_in < info->min_in || (info->max_in >= 0 && n->n_in > info->max_in)) {
        if (info->max_in < 0)
            report(V, n, "has %d operands; %s takes at least %d", n->n_in, info->mnemonic, info->min_in);
        else
            report(V, n, "has %d operands; %s takes %d to %d", n->n_in, info->mnemonic, info->min_in, info->max_in);
        good = false;
    }
    if (n->n_in > 0 && !n->in) {
        report(V, n, "operand array missing");
        return false;
    }
    for (int j = 0; j < n->n_in; j++) {
        const ir_node *x = n->in[j];
        if (!x || x->id < 0 || x->id >= V->g->n_nodes || V->g->nodes[x->id] != x) {
            report(V, n, "operand %d is not a node of this graph", j);
            good = false;
        } else if (x->id >= i) {
            report(V, n, "operand %d (%%%d) is not defined before its use", j, V->num[x->id]);
            good = false;
        } else if (x->op == OP_output) {
            report(V, n, "operand %d is an output, which has no result", j);
            good = false;
        }
    }
    return good;
}

static void check_attrs(verifier *V, const ir_node *n)
{
    int na = ir_op_nattrs(n->op);
    for (int k = 0; k < na; k++) {
        const ir_attr *a = &n->attr[k];
        char name[64];
        ir_op_attr_name(n->op, k, name, sizeof name);
        ir_attr_kind want = ir_op_attr_kind(n->op, k);
        if (a->kind != want)
            report(V, n, "attribute '%s' has kind '%c', the schema says '%c'", name, (char)a->kind, (char)want);
        else if (want == AK_STR && !a->s)
            report(V, n, "attribute '%s' has no string", name);
        else if (want == AK_DTYPE && (a->d <= DT_VOID || a->d >= DT_COUNT))
            report(V, n, "attribute '%s' is not a dtype", name);
        else if (want == AK_INTS && (a->n < 0 || (a->n > 0 && !a->ints)))
            report(V, n, "attribute '%s' has a malformed list", name);
    }
}

static void check_type(verifier *V, const ir_node *n)
{
    if (n->dtype >= DT_COUNT || n->shape.rank < 0 || n->shape.rank > IR_MAX_RANK) {
        report(V, n, "malformed type (dtype %d, rank %d)", (int)n->dtype, n->shape.rank);
        return;
    }
    if (n->op == OP_output) {
        if (n->dtype != DT_VOID || n->shape.rank != 0)
            report(V, n, "an output has no result, but its type is set");
        return;
    }
    if (n->dtype == DT_VOID)
        report(V, n, "has no type");
    for (int k = 0; k < n->shape.rank; k++)
        if (n->shape.dim[k] < 0)
            report(V, n, "negative dimension");
}

/* Re-runs the shape rule on a scratch copy and compares with the node's type. Sources keep
 * their declared type (their rules validate it). */
static void check_infer(verifier *V, const ir_node *n)
{
    ir_node tmp = *n;
    if (ir_ops[n->op].kind != OK_SOURCE) {
        tmp.dtype = DT_VOID;
        memset(&tmp.shape, 0, sizeof tmp.shape);
    }
    int before = V->d->n_errors;
    if (!ir_infer(&tmp, V->d)) {
        if (V->d->n_errors == before)
            report(V, n, "shape rule failed");
        V->ok = false;
        return;
    }
    if (tmp.dtype != n->dtype || !ir_shape_eq(&tmp.shape, &n->shape)) {
        char have[320], want[320];
        report(V, n, "type %s but %s infers %s", ir_type_str(n->dtype, &n->shape, have, sizeof have),
               ir_ops[n->op].mnemonic, ir_type_str(tmp.dtype, &tmp.shape, want, sizeof want));
    }
}

static void check_shard(verifier *V, const ir_node *n)
{
    if (!n->shard.present)
        return;
    if (n->op == OP_output) {
        report(V, n, "an output has no result to shard");
        return;
    }
    for (int k = 0; k < n->shape.rank && k < IR_MAX_RANK; k++) {
        int a = n->shard.axis[k];
        if (a == IR_REPLICATED)
            continue;
        if (a < 0 || a >= V->g->n_axes) {
            report(V, n, "shard spec entry %d names mesh axis %d; the graph has %d", k, a, V->g->n_axes);
            continue;
        }
        for (int j = 0; j < k; j++)
            if (n->shard.axis[j] == a)
                report(V, n, "mesh axis '%s' shards dimensions %d and %d", V->g->axis_name[a], j, k);
    }
    for (int k = n->shape.rank; k >= 0 && k < IR_MAX_RANK; k++)
        if (n->shard.axis[k] != IR_REPLICATED && n->shard.axis[k] != 0) {
            report(V, n, "shard spec has an entry past the value's rank %d", n->shape.rank);
            break;
        }
}

/* One external name with its namespace, for the sorted uniqueness check. */
typedef struct {
    const char *name;
    int ns; /* 0: inputs and outputs, 1: params */
    const ir_node *node;
} ext_name;

static int cmp_name(const void *pa, const void *pb)
{
    const ext_name *a = pa, *b = pb;
    if (a->ns != b->ns)
        return a->ns - b->ns;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    return a->node->id - b->node->id;
}

static void check_names(verifier *V)
{
    const ir_graph *g = V->g;
    ext_name *names = malloc(sizeof *names * ((size_t)g->n_nodes + 1));
    if (!names)
        ir_unreachable("out of memory");
    int n_names = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (!n || n->op >= OP_COUNT || (n->op != OP_input && n->op != OP_param && n->op != OP_output))
            continue;
        if (!n->name) {
            report(V, n, "has no external name");
            continue;
        }
        names[n_names++] = (ext_name){n->name, n->op == OP_param, n};
    }
    qsort(names, (size_t)n_names, sizeof *names, cmp_name);
    for (int i = 1; i < n_names; i++)
        if (names[i].ns == names[i - 1].ns && strcmp(names[i].name, names[i - 1].name) == 0)
            report(V, names[i].node, "duplicate %s name \"%s\"", names[i].ns ? "param" : "input/output",
                   names[i].name);
    free(names);
}

static void check_mesh(verifier *V)
{
    const ir_graph *g = V->g;
    if (g->n_axes < 0 || g->n_axes > IR_MAX_MESH_AXES) {
        ir_diag_error(V->d, -1, 0, 0, "graph %s: %d mesh axes (at most %d)", g->name, g->n_axes, IR_MAX_MESH_AXES);
        V->ok = false;
        return;
    }
    for (int i = 0; i < g->n_axes; i++) {
        bool bad = !g->axis_name[i];
        for (int j = 0; j < i && !bad; j++)
            bad = strcmp(g->axis_name[i], g->axis_name[j]) == 0;
        if (bad) {
            ir_diag_error(V->d, -1, 0, 0, "graph %s: mesh axis %d is unnamed or repeated", g->name, i);
            V->ok = false;
        }
    }
}

bool ir_verify(const ir_graph *g, ir_diag *d)
{
    verifier V = {g, d, NULL, true};
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (!n || n->id != i || n->op >= OP_COUNT) {
            ir_diag_error(d, -1, 0, 0, "graph %s: node %d is %s", g->name, i,
                          !n ? "null" : n->op >= OP_COUNT ? "of an unknown op" : "misnumbered");
            return false;
        }
    }
    int *num = malloc(sizeof *num * ((size_t)g->n_nodes + 1));
    if (!num)
        ir_unreachable("out of memory");
    for (int i = 0, next = 0; i < g->n_nodes; i++)
        num[i] = g->nodes[i]->op == OP_output ? -1 : next++;
    V.num = num;
    check_mesh(&V);
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        bool operands = check_operands(&V, n, i);
        check_attrs(&V, n);
        check_type(&V, n);
        check_shard(&V, n);
        if (n->optional && n->op != OP_input)
            report(&V, n, "only inputs may be optional");
        if (n->stage < -1)
            report(&V, n, "negative stage %d", n->stage);
        /* shape rules read operands and attributes: only run them on a sound node */
        bool sound = operands;
        for (int j = 0; j < n->n_in && sound; j++)
            sound = n->in[j]->dtype < DT_COUNT && n->in[j]->shape.rank >= 0 && n->in[j]->shape.rank <= IR_MAX_RANK;
        for (int k = 0; k < ir_op_nattrs(n->op) && sound; k++)
            sound = n->attr[k].kind == ir_op_attr_kind(n->op, k) && (n->attr[k].kind != AK_STR || n->attr[k].s) &&
                    (n->attr[k].kind != AK_INTS || n->attr[k].n == 0 || n->attr[k].ints);
        if (sound)
            check_infer(&V, n);
    }
    check_names(&V);
    free(num);
    return V.ok;
}
