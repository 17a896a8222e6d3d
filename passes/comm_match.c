/* comm_match.c — collective matching (comm_match.h): every rank's communication read off its
 * graph in the runner's order, and the proof that the ranks agree: per group of each mesh axis
 * the same collectives in the same order, every send matched by its receive, and a simulation
 * of the job that ends with every rank done. */
#include "passes/comm_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool *comm_backward_half(const ir_graph *L)
{
    bool *backward = calloc((size_t)L->n_nodes + 1, sizeof *backward);
    if (!backward)
        ir_unreachable("out of memory");
    for (int i = 0; i < L->n_nodes; i++)
        backward[i] = L->nodes[i]->backward;
    for (int i = L->n_nodes - 1; i >= 0; i--)
        for (int k = 0; !backward[i] && k < L->nodes[i]->n_in; k++)
            backward[L->nodes[i]->in[k]->id] = false;
    return backward;
}

static comm_event event_of(const ir_node *n, const pass_mesh *m, int micro, bool backward)
{
    comm_event e = {.op = n->op, .axis = -1, .dtype = n->dtype, .peer = -1, .micro = micro,
                     .backward = backward, .node = n->id, .src_op = -1, .file = n->loc.file,
                     .line = n->loc.line, .col = n->loc.col};
    const ir_node *x = n->n_in ? n->in[0] : n;
    e.count = ir_shape_numel(&x->shape);
    if (n->op == OP_send || n->op == OP_recv) {
        e.peer = ir_attr_int(n, "peer");
        e.detail = ir_attr_int(n, "tag");
    } else {
        e.axis = pass_mesh_axis(m, ir_attr_str(n, "axis"));
        if (n->op == OP_allreduce) {
            const char *op = ir_attr_str(n, "op");
            e.detail = strcmp(op, "max") == 0 ? 1 : strcmp(op, "min") == 0 ? 2 : 0;
        } else
            e.detail = ir_attr_int(n, "dim");
    }
    /* the source op: what computed the value it moves (through other communication) */
    const ir_node *src = n->n_in ? n->in[0] : NULL;
    while (src && ir_ops[src->op].kind == OK_COMM && src->n_in)
        src = src->in[0];
    if (src && ir_ops[src->op].kind != OK_COMM) {
        e.src_op = src->op;
        e.src_backward = src->backward;
    }
    return e;
}

static void push(comm_seq *s, int *cap, comm_event e)
{
    if (s->n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        s->ev = realloc(s->ev, sizeof *s->ev * (size_t)*cap);
        if (!s->ev)
            ir_unreachable("out of memory");
    }
    s->ev[s->n++] = e;
}

comm_seq comm_seq_of(const ir_graph *L, const pass_mesh *m, int micro, bool one_f_one_b)
{
    comm_seq s = {NULL, 0};
    int cap = 0;
    bool *backward = comm_backward_half(L);
    int M = micro > 0 ? micro : 1, V = micro > 0 && m->virtual_stages > 1 ? m->virtual_stages : 1;
    int *order = malloc(sizeof *order * (size_t)(2 * M * V)), *chunk = pipeline_chunks(L, backward, V);
    if (!order)
        ir_unreachable("out of memory");
    if (micro > 0) {
        int a = pass_mesh_axis(m, "pp");
        int P = a >= 0 ? m->size[a] : 1, stage = a >= 0 ? pass_mesh_coord(m, m->rank, a) : 0;
        pipeline_order(P, stage, M, V, one_f_one_b, order);
    } else {
        order[0] = 1; /* mesh_exec's run_steps: the forward half, then the backward half */
        order[1] = -1;
    }
    for (int k = 0; k < 2 * M * V; k++) {
        bool half = order[k] < 0;
        int u = (order[k] > 0 ? order[k] : -order[k]) - 1, mb = u / V, v = u % V;
        for (int i = 0; i < L->n_nodes; i++)
            if (ir_ops[L->nodes[i]->op].kind == OK_COMM && backward[i] == half && chunk[i] == v)
                push(&s, &cap, event_of(L->nodes[i], m, micro > 0 ? mb : -1, half));
    }
    free(order);
    free(chunk);
    free(backward);
    return s;
}

void comm_seq_free(comm_seq *s)
{
    free(s->ev);
    s->ev = NULL;
    s->n = 0;
}

const char *comm_event_str(const comm_event *e, const pass_mesh *m, const ir_diag *d, char *buf, size_t cap)
{
    static const char *const reduce[] = {"sum", "max", "min"};
    const char *op = e->op >= 0 && e->op < OP_COUNT ? ir_ops[e->op].mnemonic : "?";
    const char *dt = e->dtype >= 0 && e->dtype < DT_COUNT ? ir_dtype_name((ir_dtype)e->dtype) : "?";
    char what[96];
    if (e->op == OP_allreduce)
        snprintf(what, sizeof what, "%s", reduce[e->detail >= 0 && e->detail < 3 ? e->detail : 0]);
    else if (e->op == OP_send || e->op == OP_recv)
        snprintf(what, sizeof what, "%s rank %lld, tag %lld", e->op == OP_send ? "to" : "from", (long long)e->peer,
                 (long long)e->detail);
    else
        snprintf(what, sizeof what, "dim %lld", (long long)e->detail);
    char src[128] = "a value";
    if (e->src_op >= 0 && e->src_op < OP_COUNT)
        snprintf(src, sizeof src, "%s%s", ir_ops[e->src_op].mnemonic, e->src_backward ? " (backward)" : "");
    char at[400] = "";
    if (e->line > 0)
        snprintf(at, sizeof at, " at %s:%lld:%lld",
                 e->file >= 0 && e->file < d->n_src ? d->src[e->file].name : "?", (long long)e->line,
                 (long long)e->col);
    char mb[64] = "";
    if (e->micro >= 0)
        snprintf(mb, sizeof mb, ", micro-batch %lld %s", (long long)e->micro, e->backward ? "backward" : "forward");
    const char *axis = e->axis >= 0 && e->axis < m->n_axes ? m->axis[e->axis] : NULL;
    snprintf(buf, cap, "%s%s%s %s x %lld (%s%s) of %s%s", op, axis ? " over " : "", axis ? axis : "", dt,
             (long long)e->count, what, mb, src, at);
    return buf;
}

static bool same_call(const comm_event *a, const comm_event *b)
{
    return a->op == b->op && a->axis == b->axis && a->dtype == b->dtype && a->count == b->count &&
           a->detail == b->detail;
}

/* "ranks 0, 2" (at most 8 named) */
static void group_str(const pass_mesh *m, int leader, int a, char *buf, size_t cap)
{
    int T = m->size[a];
    snprintf(buf, cap, "ranks");
    for (int c = 0; c < T && c < 8; c++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s %d", c ? "," : "", pass_mesh_with(m, leader, a, c));
    if (T > 8)
        snprintf(buf + strlen(buf), cap - strlen(buf), ", ... (%d ranks)", T);
}

/* Index in seq of the k-th event (0-based) on axis a; -1 if fewer. */
static int kth_on_axis(const comm_seq *s, int a, int k)
{
    for (int i = 0; i < s->n; i++)
        if (s->ev[i].axis == a && s->ev[i].op != OP_send && s->ev[i].op != OP_recv && k-- == 0)
            return i;
    return -1;
}

static int count_on_axis(const comm_seq *s, int a)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->ev[i].axis == a && s->ev[i].op != OP_send && s->ev[i].op != OP_recv;
    return n;
}

/* Every group of axis a: its members' sequences on a against its first member's. */
static bool match_axis(const comm_seq *seqs, const pass_mesh *m, int a, ir_diag *d)
{
    for (int r = 0; r < m->world; r++) {
        if (pass_mesh_coord(m, r, a) != 0)
            continue;
        int n0 = count_on_axis(&seqs[r], a);
        for (int c = 1; c < m->size[a]; c++) {
            int o = pass_mesh_with(m, r, a, c), n1 = count_on_axis(&seqs[o], a);
            for (int k = 0; k < n0 || k < n1; k++) {
                int i = kth_on_axis(&seqs[r], a, k), j = kth_on_axis(&seqs[o], a, k);
                if (i >= 0 && j >= 0 && same_call(&seqs[r].ev[i], &seqs[o].ev[j]))
                    continue;
                char g[160], x[700], y[700];
                group_str(m, r, a, g, sizeof g);
                if (i >= 0)
                    comm_event_str(&seqs[r].ev[i], m, d, x, sizeof x);
                else
                    snprintf(x, sizeof x, "nothing (its %d collectives over %s are done)", n0, m->axis[a]);
                if (j >= 0)
                    comm_event_str(&seqs[o].ev[j], m, d, y, sizeof y);
                else
                    snprintf(y, sizeof y, "nothing (its %d collectives over %s are done)", n1, m->axis[a]);
                ir_diag_error(d, -1, 0, 0,
                              "collectives do not match in the %s group of %s: #%d on rank %d is %s; on rank %d it is "
                              "%s",
                              m->axis[a], g, k + 1, r, x, o, y);
                return false;
            }
        }
    }
    return true;
}

/* The receive on rank `to` that the k-th send from `from` with tag matches: index, -1 none. */
static int kth_recv(const comm_seq *s, int from, int64_t tag, int k)
{
    for (int i = 0; i < s->n; i++)
        if (s->ev[i].op == OP_recv && s->ev[i].peer == from && s->ev[i].detail == tag && k-- == 0)
            return i;
    return -1;
}

static int sends_before(const comm_seq *s, int i, int64_t peer, int64_t tag, int64_t op)
{
    int k = 0;
    for (int j = 0; j < i; j++)
        k += s->ev[j].op == op && s->ev[j].peer == peer && s->ev[j].detail == tag;
    return k;
}

/* Every send against its receive (k-th send on a channel, k-th receive); partner[r][i]: the
 * index of the matching event on the peer. */
static bool match_p2p(const comm_seq *seqs, const pass_mesh *m, int **partner, ir_diag *d)
{
    char x[700], y[700];
    for (int r = 0; r < m->world; r++)
        for (int i = 0; i < seqs[r].n; i++) {
            const comm_event *e = &seqs[r].ev[i];
            if (e->op != OP_send && e->op != OP_recv)
                continue;
            int p = (int)e->peer;
            if (p < 0 || p >= m->world) {
                ir_diag_error(d, -1, 0, 0, "rank %d: %s names rank %d, outside the mesh of %d ranks", r,
                              comm_event_str(e, m, d, x, sizeof x), p, m->world);
                return false;
            }
            int k = sends_before(&seqs[r], i, p, e->detail, e->op);
            int j = -1;
            if (e->op == OP_send)
                j = kth_recv(&seqs[p], r, e->detail, k);
            else
                for (int q = 0, kk = k; q < seqs[p].n && j < 0; q++)
                    if (seqs[p].ev[q].op == OP_send && seqs[p].ev[q].peer == r && seqs[p].ev[q].detail == e->detail &&
                        kk-- == 0)
                        j = q;
            if (j < 0) {
                ir_diag_error(d, -1, 0, 0, "point-to-point ops do not match: #%d on rank %d is %s; rank %d never %s it",
                              i + 1, r, comm_event_str(e, m, d, x, sizeof x), p,
                              e->op == OP_send ? "receives" : "sends");
                return false;
            }
            const comm_event *f = &seqs[p].ev[j];
            if (f->dtype != e->dtype || f->count != e->count) {
                ir_diag_error(d, -1, 0, 0, "point-to-point ops do not match: #%d on rank %d is %s; #%d on rank %d is %s",
                              i + 1, r, comm_event_str(e, m, d, x, sizeof x), j + 1, p,
                              comm_event_str(f, m, d, y, sizeof y));
                return false;
            }
            partner[r][i] = j;
        }
    return true;
}

/* The job, simulated: a send completes at once (in the background), a receive once its send
 * has been issued, a collective once every member of its group is at it. */
static bool simulate(const comm_seq *seqs, const pass_mesh *m, int *const *partner, ir_diag *d)
{
    int W = m->world;
    int *pc = calloc((size_t)W, sizeof *pc);
    int **pos = calloc((size_t)W, sizeof *pos); /* per event: its index among its axis's collectives */
    bool **sent = calloc((size_t)W, sizeof *sent);
    if (!pc || !pos || !sent)
        ir_unreachable("out of memory");
    for (int r = 0; r < W; r++) {
        pos[r] = calloc((size_t)seqs[r].n + 1, sizeof **pos);
        sent[r] = calloc((size_t)seqs[r].n + 1, sizeof **sent);
        if (!pos[r] || !sent[r])
            ir_unreachable("out of memory");
        int seen[IR_MAX_MESH_AXES] = {0};
        for (int i = 0; i < seqs[r].n; i++)
            if (seqs[r].ev[i].axis >= 0 && seqs[r].ev[i].axis < IR_MAX_MESH_AXES)
                pos[r][i] = seen[seqs[r].ev[i].axis]++;
    }
    for (bool progress = true; progress;) {
        progress = false;
        for (int r = 0; r < W; r++)
            while (pc[r] < seqs[r].n) {
                const comm_event *e = &seqs[r].ev[pc[r]];
                if (e->op == OP_send) {
                    sent[r][pc[r]] = true;
                } else if (e->op == OP_recv) {
                    if (!sent[e->peer][partner[r][pc[r]]])
                        break;
                } else {
                    int a = (int)e->axis, k = pos[r][pc[r]];
                    bool all = true;
                    for (int c = 0; all && c < m->size[a]; c++) {
                        int o = pass_mesh_with(m, r, a, c);
                        all = pc[o] < seqs[o].n && seqs[o].ev[pc[o]].axis == a &&
                              seqs[o].ev[pc[o]].op != OP_send && seqs[o].ev[pc[o]].op != OP_recv &&
                              pos[o][pc[o]] == k;
                    }
                    if (!all)
                        break;
                    for (int c = 0; c < m->size[a]; c++) {
                        int o = pass_mesh_with(m, r, a, c);
                        if (o != r)
                            pc[o]++;
                    }
                }
                pc[r]++;
                progress = true;
            }
    }
    bool ok = true;
    char msg[2400] = "", x[700];
    int named = 0;
    for (int r = 0; r < W; r++)
        if (pc[r] < seqs[r].n) {
            ok = false;
            if (named++ < 4)
                snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%srank %d waits at #%d, %s", named > 1 ? "; " : "",
                         r, pc[r] + 1, comm_event_str(&seqs[r].ev[pc[r]], m, d, x, sizeof x));
        }
    if (!ok)
        ir_diag_error(d, -1, 0, 0, "the ranks' communication would deadlock: %s%s", msg,
                      named > 4 ? "; and more" : "");
    for (int r = 0; r < W; r++) {
        free(pos[r]);
        free(sent[r]);
    }
    free(pos);
    free(sent);
    free(pc);
    return ok;
}

bool comm_match(const comm_seq *seqs, const pass_mesh *m, ir_diag *d)
{
    for (int r = 0; r < m->world; r++)
        for (int i = 0; i < seqs[r].n; i++) {
            const comm_event *e = &seqs[r].ev[i];
            bool p2p = e->op == OP_send || e->op == OP_recv;
            if (!p2p && (e->axis < 0 || e->axis >= m->n_axes)) {
                char x[700];
                ir_diag_error(d, -1, 0, 0, "rank %d: #%d, %s, is over an axis the mesh does not have", r, i + 1,
                              comm_event_str(e, m, d, x, sizeof x));
                return false;
            }
        }
    for (int a = 0; a < m->n_axes; a++)
        if (m->size[a] > 1 && !match_axis(seqs, m, a, d))
            return false;
    int **partner = calloc((size_t)m->world, sizeof *partner);
    if (!partner)
        ir_unreachable("out of memory");
    for (int r = 0; r < m->world; r++) {
        partner[r] = calloc((size_t)seqs[r].n + 1, sizeof **partner);
        if (!partner[r])
            ir_unreachable("out of memory");
    }
    bool ok = match_p2p(seqs, m, partner, d) && simulate(seqs, m, partner, d);
    for (int r = 0; r < m->world; r++)
        free(partner[r]);
    free(partner);
    return ok;
}
