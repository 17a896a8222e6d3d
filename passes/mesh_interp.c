/* mesh_interp.c — the mesh interpreter (mesh.h): every rank's graph in one process, evaluated
 * with the reference interpreter, collectives and send/recv performed across the ranks.
 *
 * It is the oracle for sharding and pipelining without MPI: the per-rank graphs come from the
 * same passes `loom run --mesh` uses, each rank loads its slices of the full checkpoint by the
 * names those passes give (mesh.h), and rank 0's outputs must equal the single-device run's.
 * Ranks advance in turn until each stops at a communication op; a send deposits its value in a
 * mailbox, a recv takes the matching one, a collective runs once every rank of its group
 * (the ranks that differ from it only along the op's axis) is waiting at one (a member waiting
 * at a collective over another axis is not there yet; one over the same axis that differs is a
 * disagreement). No progress with ranks unfinished is a deadlock, reported naming each waiting
 * rank and op.
 */
#include "passes/mesh.h"
#include "passes/pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ir_graph *g;
    ir_tensor **t; /* per node: its value (NULL: not computed, or depends on an absent input) */
    bool *absent;  /* per node: depends on an absent optional input */
    int pc;
} rank_state;

typedef struct message {
    int from, to, tag;
    ir_tensor *t;
    struct message *next;
} message;

static ir_tensor *copy_tensor(const ir_tensor *x)
{
    ir_tensor *t = ir_tensor_new(x->dtype, &x->shape);
    memcpy(t->data, x->data, sizeof(double) * (size_t)ir_shape_numel(&x->shape));
    return t;
}

static const ir_tensor *find_value(const ir_named_tensor *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return v[i].t;
    return NULL;
}

/* Binds rank r's params and inputs: the slice its name asks for, out of the full value. */
static bool bind_sources(rank_state *s, int r, const ir_named_tensor *values, int n_values, ir_diag *d)
{
    for (int i = 0; i < s->g->n_nodes; i++) {
        const ir_node *n = s->g->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        char full[512];
        mesh_slice sl[MESH_MAX_SLICES];
        int n_sl = 0;
        mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl);
        const ir_tensor *v = find_value(values, n_values, full);
        if (!v) {
            if (n->op == OP_input && n->optional) {
                s->absent[i] = true;
                continue;
            }
            ir_diag_error(d, -1, 0, 0, "rank %d: missing value for %s '%s'", r, ir_ops[n->op].mnemonic, full);
            return false;
        }
        ir_shape want = mesh_slice_shape(&v->shape, sl, n_sl);
        if (!ir_shape_eq(&want, &n->shape)) {
            char a[200], b[200];
            ir_diag_error(d, -1, 0, 0, "rank %d: %s '%s': expected %s, got %s", r, ir_ops[n->op].mnemonic, n->name,
                          ir_shape_str(&n->shape, a, sizeof a), ir_shape_str(&want, b, sizeof b));
            return false;
        }
        s->t[i] = ir_tensor_new(n->dtype, &n->shape);
        mesh_slice_extract(v->data, &v->shape, sl, n_sl, s->t[i]->data);
    }
    return true;
}

/* Runs rank s forward to its next communication op (or the end). */
static bool advance(rank_state *s, ir_precision prec, bool *progress, ir_diag *d)
{
    for (; s->pc < s->g->n_nodes; s->pc++) {
        const ir_node *n = s->g->nodes[s->pc];
        if (ir_ops[n->op].kind == OK_COMM)
            return true;
        *progress = true;
        if (n->op == OP_param || n->op == OP_input || n->op == OP_output)
            continue;
        ir_tensor *in[16] = {0};
        bool skip = false;
        for (int k = 0; k < n->n_in && k < 16; k++) {
            skip |= s->absent[n->in[k]->id];
            in[k] = s->t[n->in[k]->id];
        }
        if (skip) {
            s->absent[s->pc] = true;
            continue;
        }
        ir_tensor *out = ir_tensor_new(n->dtype, &n->shape);
        if (!ir_interp_node(n, prec, in, out, d)) {
            ir_tensor_free(out);
            return false;
        }
        s->t[s->pc] = out;
    }
    return true;
}

/* A collective over the ranks in group (coordinate order), all waiting at one. */
static void collective(rank_state *st, const int *group, int T, ir_precision prec)
{
    const ir_node *n0 = st[group[0]].g->nodes[st[group[0]].pc];
    bool absent = st[group[0]].absent[n0->in[0]->id];
    for (int k = 0; k < T; k++) {
        rank_state *s = &st[group[k]];
        s->absent[s->pc] = absent;
    }
    if (absent)
        return;
    const ir_tensor *x0 = st[group[0]].t[n0->in[0]->id];
    int64_t cnt = ir_shape_numel(&x0->shape);
    if (n0->op == OP_allgather) {
        int dim = (int)ir_attr_int(n0, "dim");
        dim = dim < 0 ? dim + x0->shape.rank : dim;
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < dim; i++)
            outer *= x0->shape.dim[i];
        for (int i = dim; i < x0->shape.rank; i++)
            inner *= x0->shape.dim[i];
        for (int r = 0; r < T; r++) {
            rank_state *s = &st[group[r]];
            const ir_node *n = s->g->nodes[s->pc];
            ir_tensor *out = ir_tensor_new(n->dtype, &n->shape);
            for (int k = 0; k < T; k++) {
                const ir_tensor *x = st[group[k]].t[st[group[k]].g->nodes[st[group[k]].pc]->in[0]->id];
                for (int64_t o = 0; o < outer; o++)
                    memcpy(out->data + (o * T + k) * inner, x->data + o * inner, sizeof(double) * (size_t)inner);
            }
            s->t[s->pc] = out;
        }
        return;
    }
    /* allreduce and reduce_scatter: the reduction in coordinate order */
    const char *op = n0->op == OP_allreduce ? ir_attr_str(n0, "op") : "sum";
    double *acc = malloc(sizeof(double) * ((size_t)cnt + 1));
    if (!acc)
        ir_unreachable("out of memory");
    for (int k = 0; k < T; k++) {
        const ir_tensor *x = st[group[k]].t[st[group[k]].g->nodes[st[group[k]].pc]->in[0]->id];
        for (int64_t i = 0; i < cnt; i++) {
            double v = x->data[i];
            acc[i] = k == 0                     ? v
                     : strcmp(op, "max") == 0 ? (v > acc[i] ? v : acc[i])
                     : strcmp(op, "min") == 0 ? (v < acc[i] ? v : acc[i])
                                              : acc[i] + v;
            if (prec == IR_PREC_F32)
                acc[i] = ir_round_to(x->dtype, acc[i]);
        }
    }
    for (int r = 0; r < T; r++) {
        rank_state *s = &st[group[r]];
        const ir_node *n = s->g->nodes[s->pc];
        ir_tensor *out = ir_tensor_new(n->dtype, &n->shape);
        if (n->op == OP_allreduce) {
            memcpy(out->data, acc, sizeof(double) * (size_t)cnt);
        } else {
            int dim = (int)ir_attr_int(n, "dim");
            dim = dim < 0 ? dim + x0->shape.rank : dim;
            int64_t outer = 1, inner = 1;
            for (int i = 0; i < dim; i++)
                outer *= x0->shape.dim[i];
            for (int i = dim; i < x0->shape.rank; i++)
                inner *= x0->shape.dim[i];
            int64_t part = inner / T;
            for (int64_t o = 0; o < outer; o++)
                memcpy(out->data + o * part, acc + o * inner + r * part, sizeof(double) * (size_t)part);
        }
        s->t[s->pc] = out;
    }
    free(acc);
}

/* Tries to complete the communication op rank r waits at. */
static bool try_comm(rank_state *st, const pass_mesh *m, int r, message **box, ir_precision prec, bool *progress,
                     ir_diag *d)
{
    rank_state *s = &st[r];
    if (s->pc >= s->g->n_nodes)
        return true;
    const ir_node *n = s->g->nodes[s->pc];
    if (ir_ops[n->op].kind != OK_COMM)
        return true; /* a collective of its group completed it earlier in this sweep */
    if (n->op == OP_send) {
        message *msg = calloc(1, sizeof *msg);
        if (!msg)
            ir_unreachable("out of memory");
        bool absent = s->absent[n->in[0]->id];
        *msg = (message){r, (int)ir_attr_int(n, "peer"), (int)ir_attr_int(n, "tag"),
                         absent ? NULL : copy_tensor(s->t[n->in[0]->id]), *box};
        *box = msg;
        s->absent[s->pc] = absent;
        s->t[s->pc] = absent ? NULL : copy_tensor(s->t[n->in[0]->id]);
        s->pc++;
        *progress = true;
        return true;
    }
    if (n->op == OP_recv) {
        int peer = (int)ir_attr_int(n, "peer"), tag = (int)ir_attr_int(n, "tag");
        for (message **p = box; *p; p = &(*p)->next) {
            message *msg = *p;
            if (msg->from != peer || msg->to != r || msg->tag != tag)
                continue;
            if (msg->t && !ir_shape_eq(&msg->t->shape, &n->shape)) {
                char a[200], b[200];
                ir_diag_error(d, -1, 0, 0, "rank %d: recv from rank %d (tag %d): expected %s, got %s", r, peer, tag,
                              ir_shape_str(&n->shape, a, sizeof a), ir_shape_str(&msg->t->shape, b, sizeof b));
                return false;
            }
            s->t[s->pc] = msg->t;
            s->absent[s->pc] = !msg->t;
            *p = msg->next;
            free(msg);
            s->pc++;
            *progress = true;
            return true;
        }
        return true;
    }
    int a = pass_mesh_axis(m, ir_attr_str(n, "axis"));
    if (a < 0 || m->size[a] != ir_attr_int(n, "ranks")) {
        ir_diag_error(d, -1, 0, 0, "rank %d: %s over axis '%s' of %d ranks does not match the mesh", r,
                      ir_ops[n->op].mnemonic, ir_attr_str(n, "axis"), (int)ir_attr_int(n, "ranks"));
        return false;
    }
    int T = m->size[a], group[4096];
    for (int c = 0; c < T; c++) {
        group[c] = pass_mesh_with(m, r, a, c);
        rank_state *o = &st[group[c]];
        if (o->pc >= o->g->n_nodes)
            return true;
        const ir_node *x = o->g->nodes[o->pc];
        if (ir_ops[x->op].kind != OK_COMM || x->op == OP_send || x->op == OP_recv)
            return true; /* not there yet */
        if (strcmp(ir_attr_str(x, "axis"), ir_attr_str(n, "axis")) != 0)
            return true; /* at a collective of another group first (another communicator:
                            it completes when that group meets; a cycle is a deadlock, below) */
        if (x->op != n->op || !ir_shape_eq(&x->in[0]->shape, &n->in[0]->shape)) {
            char a1[200], b1[200];
            ir_diag_error(d, -1, 0, 0, "ranks %d and %d disagree: %s over '%s' of %s against %s over '%s' of %s", r,
                          group[c], ir_ops[n->op].mnemonic, ir_attr_str(n, "axis"),
                          ir_shape_str(&n->in[0]->shape, a1, sizeof a1), ir_ops[x->op].mnemonic,
                          ir_attr_str(x, "axis"), ir_shape_str(&x->in[0]->shape, b1, sizeof b1));
            return false;
        }
    }
    collective(st, group, T, prec);
    for (int c = 0; c < T; c++)
        st[group[c]].pc++;
    *progress = true;
    return true;
}

bool mesh_interp_run(const ir_graph *g, const char *mesh_spec, const char *pipeline, ir_precision prec,
                     const ir_named_tensor *values, int n_values, ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    pass_mesh m0;
    char spec[256];
    size_t len = strlen(mesh_spec);
    bool sp = len > 3 && strcmp(mesh_spec + len - 3, "+sp") == 0;
    snprintf(spec, sizeof spec, "%.*s", (int)(sp ? len - 3 : len), mesh_spec);
    if (!pass_mesh_parse(spec, 0, g, &m0, d))
        return false;
    m0.seq_parallel = sp;
    int W = m0.world;
    rank_state *st = calloc((size_t)W, sizeof *st);
    pass_mesh *ms = calloc((size_t)W, sizeof *ms);
    if (!st || !ms)
        ir_unreachable("out of memory");
    bool ok = true;
    for (int r = 0; r < W && ok; r++) {
        ms[r] = m0;
        ms[r].rank = r;
        st[r].g = ir_graph_clone(g);
        pass_options po = pass_options_default();
        po.mesh = &ms[r];
        ok = pass_run_pipeline(st[r].g, pipeline ? pipeline : "pipeline,shard,dce", &po, d);
        st[r].t = calloc((size_t)st[r].g->n_nodes + 1, sizeof *st[r].t);
        st[r].absent = calloc((size_t)st[r].g->n_nodes + 1, sizeof *st[r].absent);
        if (ok)
            ok = bind_sources(&st[r], r, values, n_values, d);
    }
    message *box = NULL;
    for (bool progress = true; ok && progress;) {
        progress = false;
        for (int r = 0; r < W && ok; r++)
            ok = advance(&st[r], prec, &progress, d);
        for (int r = 0; r < W && ok; r++)
            ok = try_comm(st, &ms[0], r, &box, prec, &progress, d);
    }
    for (int r = 0; r < W && ok; r++)
        if (st[r].pc < st[r].g->n_nodes) {
            const ir_node *n = st[r].g->nodes[st[r].pc];
            ir_diag_error(d, -1, 0, 0, "mesh deadlock: rank %d waits at %s (node %%%d)", r, ir_ops[n->op].mnemonic,
                          n->id);
            ok = false;
        }
    if (ok) {
        const ir_graph *g0 = st[0].g;
        *outs = calloc((size_t)g0->n_nodes + 1, sizeof **outs);
        for (int i = 0; i < g0->n_nodes; i++) {
            const ir_node *n = g0->nodes[i];
            if (n->op != OP_output || st[0].absent[n->in[0]->id])
                continue;
            (*outs)[*n_outs].name = strdup(n->name);
            (*outs)[(*n_outs)++].t = copy_tensor(st[0].t[n->in[0]->id]);
        }
    }
    while (box) {
        message *next = box->next;
        ir_tensor_free(box->t);
        free(box);
        box = next;
    }
    for (int r = 0; r < W; r++) {
        for (int i = 0; st[r].g && i < st[r].g->n_nodes; i++)
            ir_tensor_free(st[r].t ? st[r].t[i] : NULL);
        free(st[r].t);
        free(st[r].absent);
        ir_graph_free(st[r].g);
    }
    free(st);
    free(ms);
    return ok;
}
