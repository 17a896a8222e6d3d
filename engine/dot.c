/* dot.c — `loom dump MODEL --dot` (jobs.h, docs/profiling.md "Graphs"): the graph as Graphviz.
 *
 * A node per value, labelled with its op, type and (params, inputs, outputs) name; edges from
 * operands. After fuse, each fused group (one plan step) is a cluster. Pipeline stages fill
 * their nodes with a colour each; a sharded value has a coloured border per mesh axis and its
 * layout in the label; communication ops are red hexagons naming their axis or peer; autodiff's
 * nodes have dashed borders. --dot-depth 0 draws each block instance ("gpt2_block(l=3)", its
 * backward apart) as one node with its op count, so a 48-layer model stays readable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jobs.h"
#include "passes/mesh.h"
#include "passes/pass.h"

static const char *stage_fill[] = {"#dbe9f6", "#fde2c8", "#d9f0d3", "#f2d7ea", "#fff3bf", "#e0e0f5", "#d4f1f1", "#f5dada"};
static const char *axis_pen[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};

/* s with double quotes and backslashes escaped, for a dot string */
static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
}

/* The collapsed node (index into scopes) of n, or -1 when n is drawn itself. */
typedef struct {
    const char *scope;
    bool backward;
    int ops, stage;
} collapsed;

static int collapse_of(const ir_node *n, collapsed *c, int *n_c, int cap)
{
    if (!n->scope || n->op == OP_param || n->op == OP_input || n->op == OP_output)
        return -1;
    for (int i = 0; i < *n_c; i++)
        if (c[i].backward == n->backward && strcmp(c[i].scope, n->scope) == 0) {
            c[i].ops++;
            return i;
        }
    if (*n_c == cap)
        return -1;
    c[*n_c] = (collapsed){n->scope, n->backward, 1, n->stage};
    return (*n_c)++;
}

static void node_attrs(FILE *f, const ir_graph *g, const ir_node *n)
{
    char ty[300];
    ir_type_str(n->dtype, &n->shape, ty, sizeof ty);
    bool comm = ir_ops[n->op].kind == OK_COMM;
    fprintf(f, "  n%d [label=\"", n->id);
    if (n->name)
        esc(f, n->name), fprintf(f, "\\n");
    fprintf(f, "%s", ir_ops[n->op].mnemonic);
    if (comm) {
        int k = ir_op_attr_index(n->op, "axis");
        if (k >= 0 && n->attr[k].s)
            fprintf(f, " over "), esc(f, n->attr[k].s);
        k = ir_op_attr_index(n->op, "peer");
        if (k >= 0)
            fprintf(f, " %s rank %lld", n->op == OP_send ? "to" : "from", (long long)n->attr[k].i);
    }
    if (n->op != OP_output)
        fprintf(f, "\\n"), esc(f, ty);
    if (n->shard.present) {
        fprintf(f, "\\nshard [");
        for (int i = 0; i < n->shape.rank; i++)
            fprintf(f, "%s%s", i ? ", " : "",
                    n->shard.axis[i] >= 0 && n->shard.axis[i] < g->n_axes ? g->axis_name[n->shard.axis[i]] : "_");
        fprintf(f, "]");
    }
    fprintf(f, "\"");
    const char *shape = comm ? "hexagon" : n->op == OP_param ? "ellipse" : n->op == OP_input ? "invhouse"
                        : n->op == OP_output ? "house" : "box";
    fprintf(f, ", shape=%s, style=\"filled%s%s\"", shape, n->backward ? ",dashed" : "", n->op == OP_param ? "" : ",rounded");
    if (comm)
        fprintf(f, ", fillcolor=\"#f8c9c9\", color=\"#c00000\", penwidth=2");
    else
        fprintf(f, ", fillcolor=\"%s\"", n->stage >= 0 ? stage_fill[n->stage % 8] : n->op == OP_param ? "#eeeeee" : "white");
    if (n->shard.present && !comm) {
        int axis = -1;
        for (int i = 0; i < n->shape.rank && axis < 0; i++)
            axis = n->shard.axis[i];
        if (axis >= 0)
            fprintf(f, ", color=\"%s\", penwidth=2.5", axis_pen[axis % 4]);
    }
    fprintf(f, "];\n");
}

/* The pipeline before --dot draws: through --after (with --mesh: the rank's pipeline up to it,
 * default up to shard), or nothing. */
static bool run_until(ir_graph *g, const eng_opts *o, ir_diag *d)
{
    const char *after = o->after ? o->after : o->mesh ? "shard" : NULL;
    if (!after)
        return true;
    const char *pipeline = o->passes ? o->passes : o->mesh ? pass_mesh_pipeline() : pass_default_pipeline();
    char buf[512];
    snprintf(buf, sizeof buf, ",%s,", pipeline);
    char key[80];
    snprintf(key, sizeof key, ",%s,", after);
    if (!strstr(buf, key) && !o->passes) {
        pipeline = o->mesh ? pass_mesh_gradient_pipeline() : pass_training_pipeline();
        snprintf(buf, sizeof buf, ",%s,", pipeline);
    }
    char *at = strstr(buf, key);
    if (!at) {
        ir_diag_error(d, -1, 0, 0, "dump: --after: pass '%s' is not in the pipeline '%s'", after, pipeline);
        return false;
    }
    at[strlen(key) - 1] = 0; /* the pipeline up to and including `after` */
    pass_options po = pass_options_default();
    pass_mesh mesh;
    if (o->mesh && !pass_mesh_parse(o->mesh, o->rank, g, &mesh, d))
        return false;
    po.mesh = o->mesh ? &mesh : NULL;
    return pass_run_pipeline(g, buf + 1, &po, d);
}

typedef struct {
    size_t a, b;
} pair;

static int pair_cmp(const void *x, const void *y)
{
    const pair *p = x, *q = y;
    return p->a != q->a ? (p->a < q->a ? -1 : 1) : p->b != q->b ? (p->b < q->b ? -1 : 1) : 0;
}

bool eng_dump_dot(ir_graph *g, const eng_opts *o, FILE *f, ir_diag *d)
{
    const char *depth_s = eng_named(o, "--dot-depth");
    char *end = NULL;
    long depth = depth_s ? strtol(depth_s, &end, 10) : 1;
    if (depth_s && (!*depth_s || *end || depth < 0)) {
        ir_diag_error(d, -1, 0, 0, "dump: --dot-depth expects 0 (each block instance one node) or more, got '%s'",
                      depth_s);
        return false;
    }
    if (!run_until(g, o, d))
        return false;
    bool collapse = depth == 0;
    int nn = g->n_nodes, n_c = 0;
    collapsed *cs = calloc((size_t)nn + 1, sizeof *cs);
    int *of = malloc(sizeof *of * ((size_t)nn + 1));
    if (!cs || !of)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        of[i] = collapse ? collapse_of(g->nodes[i], cs, &n_c, nn) : -1;
    if (collapse) {
        /* a param only one block instance uses goes inside it (-2: unused yet, -3: several) */
        int *user = malloc(sizeof *user * ((size_t)nn + 1));
        if (!user)
            ir_unreachable("out of memory");
        for (int i = 0; i < nn; i++)
            user[i] = -2;
        for (int i = 0; i < nn; i++)
            for (int k = 0; k < g->nodes[i]->n_in; k++) {
                int a = g->nodes[i]->in[k]->id;
                user[a] = user[a] == -2 ? of[i] : user[a] == of[i] ? user[a] : -3;
            }
        for (int i = 0; i < nn; i++)
            if (g->nodes[i]->op == OP_param && user[i] >= 0)
                of[i] = user[i];
        free(user);
    }
    fprintf(f, "digraph \"");
    esc(f, g->name);
    fprintf(f, "\" {\n  rankdir=TB; nodesep=0.25; ranksep=0.35;\n"
               "  node [fontname=\"Helvetica\", fontsize=10, margin=\"0.08,0.03\"];\n"
               "  edge [color=\"#666666\", arrowsize=0.6];\n");
    fprintf(f, "  label=\"");
    esc(f, g->name);
    fprintf(f, "%s%s%s\"; labelloc=t; fontname=\"Helvetica\";\n", o->after ? " after " : "", o->after ? o->after : "",
            o->mesh ? " (one rank)" : "");
    /* fused groups as clusters (nodes not collapsed); the rest at the top level */
    int max_group = -1;
    for (int i = 0; i < nn; i++)
        if (of[i] < 0 && g->nodes[i]->group > max_group)
            max_group = g->nodes[i]->group;
    for (int grp = 0; grp <= max_group; grp++) {
        int members = 0;
        for (int i = 0; i < nn; i++)
            members += of[i] < 0 && g->nodes[i]->group == grp;
        if (!members)
            continue;
        fprintf(f, " subgraph cluster_g%d {\n  label=\"step of group %d\"; style=\"rounded,dashed\"; color=\"#888888\"; "
                   "fontsize=9;\n", grp, grp);
        for (int i = 0; i < nn; i++)
            if (of[i] < 0 && g->nodes[i]->group == grp)
                node_attrs(f, g, g->nodes[i]);
        fprintf(f, " }\n");
    }
    for (int i = 0; i < nn; i++)
        if (of[i] < 0 && g->nodes[i]->group < 0)
            node_attrs(f, g, g->nodes[i]);
    for (int c = 0; c < n_c; c++) {
        fprintf(f, "  c%d [label=\"", c);
        esc(f, cs[c].scope);
        fprintf(f, "%s\\n%d ops\", shape=box3d, style=\"filled%s\", fillcolor=\"%s\"];\n", cs[c].backward ? " backward" : "",
                cs[c].ops, cs[c].backward ? ",dashed" : "", cs[c].stage >= 0 ? stage_fill[cs[c].stage % 8] : "#f0f0f0");
    }
    /* edges, once per pair of drawn nodes (sorted pairs, duplicates skipped) */
    size_t n_e = 0, cap_e = 16;
    pair *e = malloc(sizeof *e * cap_e);
    if (!e)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++) {
            int a = g->nodes[i]->in[k]->id;
            pair p = {of[a] >= 0 ? (size_t)nn + (size_t)of[a] : (size_t)a, of[i] >= 0 ? (size_t)nn + (size_t)of[i] : (size_t)i};
            if (p.a == p.b)
                continue;
            if (n_e == cap_e) {
                cap_e *= 2;
                pair *ne = realloc(e, sizeof *e * cap_e);
                if (!ne)
                    ir_unreachable("out of memory");
                e = ne;
            }
            e[n_e++] = p;
        }
    qsort(e, n_e, sizeof *e, pair_cmp);
    for (size_t i = 0; i < n_e; i++) {
        if (i && e[i].a == e[i - 1].a && e[i].b == e[i - 1].b)
            continue;
        size_t a = e[i].a, b = e[i].b, N = (size_t)nn;
        fprintf(f, "  %s%zu -> %s%zu;\n", a >= N ? "c" : "n", a >= N ? a - N : a, b >= N ? "c" : "n", b >= N ? b - N : b);
    }
    free(e);
    /* the legend: stages and mesh axes present */
    fprintf(f, " subgraph cluster_legend {\n  label=\"legend\"; fontsize=9; color=\"#bbbbbb\";\n");
    int max_stage = -1;
    for (int i = 0; i < nn; i++)
        max_stage = g->nodes[i]->stage > max_stage ? g->nodes[i]->stage : max_stage;
    for (int s = 0; s <= max_stage && s < 8; s++)
        fprintf(f, "  legend_s%d [label=\"stage %d\", shape=box, style=filled, fillcolor=\"%s\", fontsize=9];\n", s, s,
                stage_fill[s]);
    for (int a = 0; a < g->n_axes && a < 4; a++) {
        fprintf(f, "  legend_a%d [label=\"sharded over ", a);
        esc(f, g->axis_name[a]);
        fprintf(f, "\", shape=box, color=\"%s\", penwidth=2.5, fontsize=9];\n", axis_pen[a]);
    }
    fprintf(f, "  legend_comm [label=\"communication\", shape=hexagon, style=filled, fillcolor=\"#f8c9c9\", "
               "color=\"#c00000\", fontsize=9];\n");
    fprintf(f, "  legend_bw [label=\"backward (autodiff)\", shape=box, style=\"dashed,rounded\", fontsize=9];\n }\n}\n");
    free(cs);
    free(of);
    return true;
}
