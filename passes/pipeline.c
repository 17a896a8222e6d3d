/* pipeline.c — the `pipeline` pass: keeps this rank's pipeline stage of the graph and connects
 * the stages with send/recv (docs/cluster.md, "Pipelines"); the schedules' orders (GPipe, 1F1B,
 * interleaved 1F1B) and their report.
 *
 * The frontend marks each node built by a layer loop with its layer (`stage`). The layers are
 * cut into pp·V contiguous groups, model chunks (V = --virtual-stages, 1 by default; chunk c
 * runs on stage c mod pp, so with V > 1 a stage holds V chunks spread over the model, as in
 * Megatron's interleaved schedule), whose cost — forward FLOPs (ir/cost.c) plus a byte of param
 * per FLOP-equivalent, so equal layers split evenly and memory breaks ties — is as even as a
 * linear-partition DP can make it, the nodes before the first layer counted with stage 0 and
 * those after the last with the last stage. A node's stage is its layer's group; an unmarked
 * node takes the latest stage of its operands; sources (params, inputs, constants) float: each
 * stage that uses one has its own copy (a param tied across stages, like GPT-2's wte, is loaded
 * by both). A value used by another stage is sent right after it is computed (tag: its node
 * id) and received just before its first use there; sends never wait for their receive
 * (coll_send_async), so no order of sends and receives between stages can deadlock. Outputs
 * computed on a later stage are sent to stage 0, so rank 0 holds every output — or, with
 * local_outputs (training), stay on the stage computing them, a tied param's gradient as one
 * partial sum per stage (split_add) that the trainer adds up over pp.
 */
#include "passes/mesh.h"
#include "passes/pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_source(const ir_node *n) { return ir_ops[n->op].kind == OK_SOURCE; }

/* Splits cost[0..L) into P contiguous groups minimizing the largest group's sum (pre added to
 * the first group, post to the last); first[g] receives the first layer of group g. */
static void partition(const double *cost, int L, int P, double pre, double post, int *first)
{
    double *best = malloc(sizeof(double) * (size_t)(L + 1) * (size_t)(P + 1));
    int *cut = malloc(sizeof(int) * (size_t)(L + 1) * (size_t)(P + 1));
    double *prefix = malloc(sizeof(double) * (size_t)(L + 1));
    if (!best || !cut || !prefix)
        ir_unreachable("out of memory");
    prefix[0] = 0;
    for (int i = 0; i < L; i++)
        prefix[i + 1] = prefix[i] + cost[i];
#define B(i, g) best[(size_t)(i) * (size_t)(P + 1) + (size_t)(g)]
#define C(i, g) cut[(size_t)(i) * (size_t)(P + 1) + (size_t)(g)]
    /* B(i, g): the best max over the first i layers in g groups */
    for (int i = 0; i <= L; i++)
        for (int g = 0; g <= P; g++)
            B(i, g) = 1e300;
    B(0, 0) = 0;
    for (int g = 1; g <= P; g++)
        for (int i = g; i <= L; i++)
            for (int j = g - 1; j < i; j++) {
                double s = prefix[i] - prefix[j] + (g == 1 ? pre : 0) + (g == P && i == L ? post : 0);
                double v = B(j, g - 1) > s ? B(j, g - 1) : s;
                if (v < B(i, g)) {
                    B(i, g) = v;
                    C(i, g) = j;
                }
            }
    for (int g = P, i = L; g >= 1; g--) {
        first[g - 1] = C(i, g);
        i = C(i, g);
    }
#undef B
#undef C
    free(best);
    free(cut);
    free(prefix);
}

static double node_cost(const ir_node *n)
{
    double c = ir_ops[n->op].cost(n);
    if (n->op == OP_param)
        c += (double)ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype);
    return c;
}

int *pipeline_stages(const ir_graph *g, int pp, int V, ir_diag *d)
{
    int L = 0, P = pp * V;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->stage + 1 > L)
            L = g->nodes[i]->stage + 1;
    if (L < P) {
        if (V > 1)
            ir_diag_error(d, -1, 0, 0, "pipeline: %d layer%s cannot fill %d model chunks (pp=%d x --virtual-stages %d)", L,
                          L == 1 ? "" : "s", P, pp, V);
        else
            ir_diag_error(d, -1, 0, 0, "pipeline: %d layer%s cannot fill %d stages (pp=%d)", L, L == 1 ? "" : "s", P, P);
        return NULL;
    }
    double *cost = calloc((size_t)L + 1, sizeof *cost), pre = 0, post = 0;
    int *ps = malloc(sizeof(int) * ((size_t)g->n_nodes + 1)), *first = malloc(sizeof(int) * ((size_t)P + 1));
    int *group = malloc(sizeof(int) * ((size_t)L + 1));
    if (!cost || !ps || !first || !group)
        ir_unreachable("out of memory");
    bool seen_layer = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->stage >= 0) {
            cost[n->stage] += node_cost(n);
            seen_layer = true;
        } else {
            *(seen_layer ? &post : &pre) += node_cost(n);
        }
    }
    partition(cost, L, P, pre, post, first);
    for (int s = 0, l = 0; l < L; l++) {
        while (s + 1 < P && l >= first[s + 1])
            s++;
        group[l] = s;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (is_source(n)) {
            ps[i] = -1;
            continue;
        }
        int s = n->stage >= 0 ? group[n->stage] : -1;
        for (int k = 0; k < n->n_in && n->stage < 0; k++)
            if (ps[n->in[k]->id] > s)
                s = ps[n->in[k]->id];
        ps[i] = s;
    }
    free(cost);
    free(first);
    free(group);
    return ps;
}

/* Copies node s into dst with operands ins. */
static ir_node *copy_node(ir_graph *dst, const ir_node *s, ir_node **ins)
{
    ir_node *n = ir_node_add(dst, s->op, s->n_in, ins, s->loc);
    n->dtype = s->dtype;
    n->shape = s->shape;
    n->shard = s->shard;
    n->stage = s->stage;
    n->optional = s->optional;
    n->backward = s->backward;
    n->name = s->name ? ir_graph_strdup(dst, s->name) : NULL;
    n->scope = s->scope ? ir_graph_strdup(dst, s->scope) : NULL;
    for (int k = 0; k < ir_op_nattrs(s->op); k++) {
        char name[64];
        ir_op_attr_name(s->op, k, name, sizeof name);
        n->attr[k] = s->attr[k];
        if (s->attr[k].kind == AK_STR && s->attr[k].s)
            n->attr[k].s = ir_graph_strdup(dst, s->attr[k].s);
        if (s->attr[k].kind == AK_INTS)
            ir_attr_set_ints(dst, n, name, s->attr[k].n, s->attr[k].ints);
    }
    return n;
}

static ir_node *comm_node(ir_graph *dst, ir_opcode op, ir_node *x, const ir_node *like, int peer, int tag, ir_diag *d)
{
    ir_node *n = ir_node_add(dst, op, x ? 1 : 0, x ? &x : NULL, like->loc);
    n->stage = like->stage;
    n->backward = like->backward;
    ir_attr_set_int(n, "peer", peer);
    ir_attr_set_int(n, "tag", tag % 32768);
    if (op == OP_recv) {
        ir_attr_set_dtype(n, "dtype", like->dtype);
        ir_attr_set_ints(dst, n, "shape", like->shape.rank, like->shape.dim);
    }
    if (!ir_infer(n, d))
        ir_unreachable("pipeline: a send/recv does not infer");
    return n;
}

/* An add whose two operands are on different stages and whose only use is an output: with
 * local outputs each operand becomes that output on its own stage (a partial sum the trainer
 * completes over pp), so the stages need not meet for it — GPT-2's tied wte gradient. */
static bool split_add(const int *ps, const int *n_users, const ir_node *x)
{
    if (x->op != OP_add || n_users[x->id] != 1)
        return false;
    int a = ps[x->in[0]->id], b = ps[x->in[1]->id];
    return a >= 0 && b >= 0 && a != b;
}

bool pass_pipeline(ir_graph *g, const pass_mesh *m, ir_diag *d)
{
    int pp = pass_mesh_axis(m, "pp");
    if (pp < 0 || m->size[pp] <= 1)
        return true;
    int P = m->size[pp], me = pass_mesh_coord(m, m->rank, pp);
    int *ps = pipeline_stages(g, P, m->virtual_stages > 1 ? m->virtual_stages : 1, d);
    if (!ps)
        return false;
    for (int i = 0; i < g->n_nodes; i++) /* a model chunk runs on stage chunk mod pp */
        ps[i] = ps[i] >= 0 ? ps[i] % P : -1;
    int nn = g->n_nodes;
    /* what each stage uses: kept nodes' operands; outputs live on stage 0 */
    bool *needed = calloc((size_t)nn + 1, sizeof *needed);
    bool *used_by_later = calloc((size_t)nn * (size_t)P + 1, sizeof *used_by_later); /* [node][stage] */
    ir_node **map = calloc((size_t)nn + 1, sizeof *map);
    int *at = malloc(sizeof *at * ((size_t)nn + 1));       /* the stage holding each node */
    int *n_users = calloc((size_t)nn + 1, sizeof *n_users);
    bool *split = calloc((size_t)nn + 1, sizeof *split);   /* adds computed nowhere: split_add */
    if (!needed || !used_by_later || !map || !at || !n_users || !split)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            n_users[g->nodes[i]->in[k]->id]++;
    /* outputs: on stage 0 (a forward run's rank 0 writes them all), or with m->local_outputs
     * on the stage computing them (the trainer sums gradients over pp) */
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        at[i] = ps[i];
        if (n->op != OP_output)
            continue;
        const ir_node *x = n->in[0];
        at[i] = !m->local_outputs ? 0 : ps[x->id] >= 0 ? ps[x->id] : 0;
        if (m->local_outputs && split_add(ps, n_users, x))
            split[x->id] = true;
    }
    for (int i = nn - 1; i >= 0; i--) {
        const ir_node *n = g->nodes[i];
        if (split[i])
            continue;
        if (n->op == OP_output && split[n->in[0]->id]) {
            for (int k = 0; k < 2; k++)
                if (ps[n->in[0]->in[k]->id] == me)
                    needed[n->in[0]->in[k]->id] = true;
            continue;
        }
        int s = at[i];
        bool mine = s == me || (s < 0 && needed[i]);
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            if (s >= 0 && ps[x->id] >= 0 && ps[x->id] != s)
                used_by_later[(size_t)x->id * (size_t)P + (size_t)s] = true;
            if (mine)
                needed[x->id] = true;
        }
        if (mine)
            needed[i] = true;
    }
    ir_graph *dst = ir_graph_new(g->name);
    dst->n_axes = g->n_axes;
    for (int i = 0; i < g->n_axes; i++)
        dst->axis_name[i] = ir_graph_strdup(dst, g->axis_name[i]);
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (split[i])
            continue;
        if (n->op == OP_output && split[n->in[0]->id]) {
            for (int k = 0; k < 2; k++) {
                ir_node *x = n->in[0]->in[k];
                if (ps[x->id] != me)
                    continue;
                if (!map[x->id])
                    ir_unreachable("pipeline: a partial output's value is missing on its stage");
                ir_node *o = copy_node(dst, n, &map[x->id]);
                if (!ir_infer(o, d))
                    ir_unreachable("pipeline: a partial output does not infer");
            }
            continue;
        }
        int s = at[i];
        bool here = s == me || (s < 0 && needed[i]);
        if (here && !(n->op == OP_param || n->op == OP_input) && !(s < 0 && !needed[i])) {
            ir_node *ins[64];
            for (int k = 0; k < n->n_in && k < 64; k++) {
                const ir_node *x = n->in[k];
                if (!map[x->id] && ps[x->id] >= 0 && ps[x->id] != me) /* received when first used */
                    map[x->id] = comm_node(dst, OP_recv, NULL, x, pass_mesh_with(m, m->rank, pp, ps[x->id]), x->id, d);
                ins[k] = map[x->id];
                if (!ins[k])
                    ir_unreachable("pipeline: an operand is missing on its stage");
            }
            map[i] = copy_node(dst, n, ins);
            if (!ir_infer(map[i], d))
                ir_unreachable("pipeline: a copied node does not infer");
        } else if (here || ((n->op == OP_param || n->op == OP_input) && needed[i])) {
            map[i] = copy_node(dst, n, NULL);
        } else if (n->op == OP_input && !needed[i]) {
            /* inputs stay part of every stage's interface (a run binds them all) */
            map[i] = copy_node(dst, n, NULL);
        }
        /* sends of a value computed here to the later stages (and outputs to stage 0) */
        if (ps[i] == me && map[i])
            for (int t = 0; t < P; t++)
                if (t != me && used_by_later[(size_t)i * (size_t)P + (size_t)t])
                    comm_node(dst, OP_send, map[i], n, pass_mesh_with(m, m->rank, pp, t), i, d);
    }
    free(ps);
    free(at);
    free(n_users);
    free(split);
    free(needed);
    free(used_by_later);
    free(map);
    ir_graph tmp = *g;
    *g = *dst;
    *dst = tmp;
    ir_graph_free(dst);
    return true;
}

/* ---- the schedules ---- */

/* Interleaved 1F1B's k-th forward (or backward) on a stage: micro-batches go through the chunks
 * in groups of P — P micro-batches' chunk 0, then their chunk 1, ... (backwards from the last
 * chunk) — as Megatron-LM's schedule does. */
static int interleaved_op(int P, int V, int k, bool forward)
{
    int in = k % (P * V), chunk = in / P, micro = k / (P * V) * P + in % P;
    if (!forward)
        chunk = V - 1 - chunk;
    int op = micro * V + chunk + 1;
    return forward ? op : -op;
}

void pipeline_order(int P, int s, int M, int V, bool one_f_one_b, int *o)
{
    int k = 0;
    if (V > 1) {
        int total = M * V, warm = (P - 1 - s) * 2 + (V - 1) * P;
        warm = warm < total ? warm : total;
        for (int f = 0; f < warm; f++)
            o[k++] = interleaved_op(P, V, f, true);
        for (int i = 0; i < total - warm; i++) {
            o[k++] = interleaved_op(P, V, warm + i, true);
            o[k++] = interleaved_op(P, V, i, false);
        }
        for (int b = total - warm; b < total; b++)
            o[k++] = interleaved_op(P, V, b, false);
        return;
    }
    int f = 0, b = 0;
    int warm = one_f_one_b ? (P - 1 - s < M ? P - 1 - s : M) : M;
    while (f < warm)
        o[k++] = ++f;
    while (f < M || b < M) {
        if (f < M)
            o[k++] = ++f;
        if (b < M && (one_f_one_b || f == M))
            o[k++] = -(++b);
    }
}

int pipeline_in_flight(int P, int s, int M, int V, bool one_f_one_b)
{
    V = V > 1 ? V : 1;
    int *order = malloc(sizeof *order * (size_t)(2 * M * V)), most = 1;
    if (!order)
        ir_unreachable("out of memory");
    pipeline_order(P, s, M, V, one_f_one_b, order);
    for (int k = 0, now = 0; k < 2 * M * V; k++) {
        int op = order[k] > 0 ? order[k] : -order[k];
        if ((op - 1) % V == 0) /* a micro-batch's first forward or last backward */
            now += order[k] > 0 ? 1 : -1;
        most = now > most ? now : most;
    }
    free(order);
    return most;
}

static bool is_compute(const ir_node *n)
{
    return ir_ops[n->op].kind != OK_COMM && ir_ops[n->op].kind != OK_SOURCE && n->op != OP_output;
}

/* A node without operands that a stage makes itself (a receive, a constant): it goes with the
 * chunk that first needs it. */
static bool by_users(const ir_node *n)
{
    return n->op == OP_recv || (ir_ops[n->op].kind == OK_SOURCE && n->op != OP_param && n->op != OP_input);
}

int *pipeline_chunks(const ir_graph *L, const bool *backward, int V)
{
    int n = L->n_nodes, layers = 0;
    int *chunk = calloc((size_t)n + 1, sizeof *chunk);
    if (!chunk)
        ir_unreachable("out of memory");
    if (V <= 1)
        return chunk;
    for (int i = 0; i < n; i++)
        layers = L->nodes[i]->stage + 1 > layers ? L->nodes[i]->stage + 1 : layers;
    /* the layers this stage computes, a run of consecutive layers a chunk: another stage's
     * chunk lies between two of ours */
    int *of_layer = malloc(sizeof *of_layer * ((size_t)layers + 1));
    bool *here = calloc((size_t)layers + 1, sizeof *here);
    if (!of_layer || !here)
        ir_unreachable("out of memory");
    for (int i = 0; i < n; i++)
        if (is_compute(L->nodes[i]) && L->nodes[i]->stage >= 0)
            here[L->nodes[i]->stage] = true;
    for (int l = 0, c = -1, last = -2; l < layers; l++) {
        if (here[l] && l != last + 1)
            c++;
        if (here[l])
            last = l;
        of_layer[l] = c < 0 ? 0 : c < V ? c : V - 1;
    }
    /* forward: no earlier than its operands; backward (chunks run last to first): no later
     * than the backward values it reads; a receive in the chunk of the op that first needs it */
    for (int i = 0; i < n; i++) {
        const ir_node *x = L->nodes[i];
        if (ir_ops[x->op].kind == OK_SOURCE || by_users(x))
            continue;
        bool marked = x->stage >= 0 && is_compute(x);
        int c = marked ? of_layer[x->stage] : backward[i] ? V - 1 : 0;
        for (int k = 0; k < x->n_in; k++) {
            const ir_node *y = x->in[k];
            if (ir_ops[y->op].kind == OK_SOURCE || by_users(y) || backward[y->id] != backward[i])
                continue;
            if (backward[i] ? chunk[y->id] < c : chunk[y->id] > c)
                c = chunk[y->id];
        }
        chunk[i] = c;
    }
    for (int i = 0; i < n; i++)
        if (by_users(L->nodes[i]))
            chunk[i] = -1;
    for (int j = 0; j < n; j++)
        for (int k = 0; L->nodes[j]->op != OP_output && k < L->nodes[j]->n_in; k++) {
            int x = L->nodes[j]->in[k]->id, u = chunk[j];
            if (by_users(L->nodes[x]) && (chunk[x] < 0 || (backward[x] ? u > chunk[x] : u < chunk[x])))
                chunk[x] = u;
        }
    for (int i = 0; i < n; i++) {
        chunk[i] = chunk[i] < 0 ? 0 : chunk[i];
        for (int k = 0; k < L->nodes[i]->n_in; k++) { /* the order the runner relies on */
            int y = L->nodes[i]->in[k]->id;
            if (!(backward[i] ? chunk[y] >= chunk[i] || !backward[y] : !backward[y] && chunk[y] <= chunk[i]) &&
                ir_ops[L->nodes[y]->op].kind != OK_SOURCE && L->nodes[i]->op != OP_output)
                ir_unreachable("pipeline: a value is read by a model chunk that runs before it");
        }
    }
    free(of_layer);
    free(here);
    return chunk;
}

bool *pipeline_chunk_apart(const ir_graph *L, const bool *backward, const int *chunk)
{
    bool *apart = calloc((size_t)L->n_nodes + 1, sizeof *apart);
    if (!apart)
        ir_unreachable("out of memory");
    for (int i = 0; i < L->n_nodes; i++)
        for (int k = 0; k < L->nodes[i]->n_in; k++) {
            int x = L->nodes[i]->in[k]->id;
            if (backward[x] && L->nodes[i]->op != OP_output && chunk[x] != chunk[i])
                apart[x] = true;
        }
    return apart;
}

/* ---- the schedule report ---- */

/* Simulates a schedule in unit time slots (a forward and a backward of one model chunk take
 * one slot each): stage s runs its next op (pipeline_order) once its inputs are there — F of
 * micro-batch i on chunk c after F_i on chunk c-1, B_i on chunk c after B_i on chunk c+1 and
 * its own F_i (chunk c on stage c mod P). Prints one row per stage (F/B; with V > 1 the case
 * alternates with the stage's chunk: F/B its first, f/b its second, ...) and returns the bubble
 * fraction (idle slots over all slots until the last op ends); -1 when a stage waits forever. */
static double simulate(FILE *out, int P, int M, int V, bool one_f_one_b)
{
    int n_ops = 2 * M * V, C = P * V, horizon = 4 * (M * V + C) + 4;
    int *order = malloc(sizeof(int) * (size_t)P * (size_t)n_ops); /* op: +(i·V+v+1) forward, - backward */
    int *done_f = malloc(sizeof(int) * (size_t)C * (size_t)M), *done_b = malloc(sizeof(int) * (size_t)C * (size_t)M);
    int *next = calloc((size_t)P, sizeof(int)), *ran = malloc(sizeof(int) * (size_t)P);
    char *grid = malloc((size_t)P * (size_t)horizon);
    if (!order || !done_f || !done_b || !next || !ran || !grid)
        ir_unreachable("out of memory");
    for (int s = 0; s < P; s++)
        pipeline_order(P, s, M, V, one_f_one_b, order + (size_t)s * (size_t)n_ops);
    for (int i = 0; i < C * M; i++)
        done_f[i] = done_b[i] = -1;
    memset(grid, '.', (size_t)P * (size_t)horizon);
    int end = 0, left = P * n_ops;
#define DONE(a, c, i) ((a)[(c) * M + (i)] >= 0 && (a)[(c) * M + (i)] < t)
    for (int t = 0; t < horizon && left; t++) {
        for (int s = 0; s < P; s++) {
            ran[s] = 0;
            if (next[s] >= n_ops)
                continue;
            int op = order[s * n_ops + next[s]], u = (op > 0 ? op : -op) - 1, i = u / V, c = u % V * P + s;
            bool ready = op > 0 ? c == 0 || DONE(done_f, c - 1, i) : DONE(done_f, c, i) && (c == C - 1 || DONE(done_b, c + 1, i));
            if (ready)
                ran[s] = op;
        }
        for (int s = 0; s < P; s++) {
            if (!ran[s])
                continue;
            int u = (ran[s] > 0 ? ran[s] : -ran[s]) - 1, i = u / V, v = u % V;
            (ran[s] > 0 ? done_f : done_b)[(v * P + s) * M + i] = t;
            grid[s * horizon + t] = (char)((ran[s] > 0 ? 'F' : 'B') + (v % 2 ? 'a' - 'A' : 0));
            next[s]++;
            left--;
            end = t + 1;
        }
    }
#undef DONE
    int busy = 0;
    for (int s = 0; s < P; s++) {
        if (out)
            fprintf(out, "    stage %d  ", s);
        for (int t = 0; t < end; t++) {
            busy += grid[s * horizon + t] != '.';
            if (out)
                fputc(grid[s * horizon + t], out);
        }
        if (out)
            fputc('\n', out);
    }
    free(order);
    free(done_f);
    free(done_b);
    free(next);
    free(ran);
    free(grid);
    return left ? -1 : end ? 1.0 - (double)busy / ((double)P * end) : 0;
}

double pipeline_bubble(int P, int M, int V, bool one_f_one_b) { return simulate(NULL, P, M, V > 1 ? V : 1, one_f_one_b); }

void pipeline_schedule_print(FILE *out, int P, int M, int V)
{
    if (P <= 1)
        return;
    if (M < 1)
        M = P;
    fprintf(out, "pipeline schedule: pp=%d stages, %d microbatches (F forward, B backward of one microbatch, "
                 ". idle; one column a time slot)\n", P, M);
    for (int k = 0; k < 2; k++) {
        fprintf(out, "  %s\n", k ? "1F1B (at most pp microbatches in flight per stage):"
                                 : "GPipe (all forwards, then all backwards):");
        double bubble = simulate(out, P, M, 1, k == 1);
        fprintf(out, "    bubble fraction %.3f (idle stage-slots; (pp-1)/(m+pp-1) = %.3f)\n", bubble,
                (double)(P - 1) / (double)(M + P - 1));
    }
    if (V > 1) {
        fprintf(out, "  interleaved 1F1B, %d model chunks a stage (F/B: a stage's first chunk, f/b: its second, "
                     "alternating; a column a chunk's time, 1/%d of a slot above):\n", V, V);
        double bubble = simulate(out, P, M, V, true);
        fprintf(out, "    bubble fraction %.3f (idle stage-slots; (pp-1)/(v*m+pp-1) = %.3f)\n", bubble,
                (double)(P - 1) / (double)(V * M + P - 1));
    }
}
