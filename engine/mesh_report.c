/* mesh_report.c — `loom check MODEL --mesh dp=2,tp=2,pp=2 [--microbatches M] [--train ...]`:
 * what each rank of the mesh will hold and send, before anything runs (docs/cluster.md, "The
 * communication report").
 *
 * Forward (`loom run --mesh`): every rank's graph is built with the same passes `loom run
 * --mesh` runs (pipeline, shard, dce, cse). Per rank: parameter memory (its slices), activation
 * memory (the peak of live values in graph order, each value live from its definition to its
 * last use, and the sum without reuse), and per mesh axis and communication op the count, the
 * payload and the bytes this rank sends in one forward step under a bandwidth-optimal
 * algorithm: ring allreduce 2(n-1)/n of the buffer, allgather and reduce-scatter (n-1)/n of the
 * full buffer, send its buffer. With pp > 1 the GPipe and 1F1B schedules of M microbatches
 * (default 2·pp) follow, with their bubble fractions.
 *
 * Training (`--train [--microbatches M] [--schedule 1f1b|gpipe] [--accum K] [--optimizer
 * adamw|sgd] [--momentum X]`, as `loom train --mesh` takes them): every rank's gradient program
 * is built as engine/train.c builds it (the model pruned to its loss, with the rows of one
 * micro-batch, through dce,cse,autodiff,dce,cse,pipeline,shard,dce,cse; dp alone: the rows of
 * one dp rank through the training pipeline) and reported for one optimizer step: the state
 * (params, gradients, optimizer state), the activations a micro-batch keeps for its backward
 * times the micro-batches in flight, the buffers engine/mesh_exec.c allocates and the segment
 * programs' arenas, and the communication — the program's collectives once per micro-batch and
 * accumulation step, then what the trainer does outside the program once a step (gradients
 * summed over dp, tied params' gradients over pp, the loss, the clip norm) — with the total
 * that `loom train --stats` counts, to the byte.
 */
#include "engine/jobs.h"
#include "engine/train.h"
#include "engine/run.h"
#include "engine/run_values.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "engine/net_model.h"
#include "passes/comm_match.h"
#include "passes/optimizer.h"
#include "passes/pass.h"
#include "engine/program.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

static int64_t bytes_of(const ir_node *n) { return ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype); }

/* Bytes one rank sends for communication node n (a ring for the collectives). */
static double sent_bytes(const ir_node *n)
{
    if (n->op == OP_send)
        return (double)bytes_of(n);
    if (n->op == OP_recv)
        return 0;
    double T = (double)ir_attr_int(n, "ranks");
    switch (n->op) {
    case OP_allreduce: return 2 * (T - 1) / T * (double)bytes_of(n);
    case OP_allgather: return (T - 1) / T * (double)bytes_of(n);
    case OP_reduce_scatter: return (T - 1) / T * (double)bytes_of(n->in[0]);
    default: return 0;
    }
}

/* Bytes `loom train` counts for node n (engine/mesh_exec.c run_comm): its operand's buffer — the
 * local part for an allgather, the whole buffer for a reduce-scatter — and a receive's buffer. */
static int64_t counted_bytes(const ir_node *n) { return bytes_of(n->n_in ? n->in[0] : n); }

static const char *comm_axis(const ir_node *n)
{
    return n->op == OP_send || n->op == OP_recv ? "pp" : ir_attr_str(n, "axis");
}

/* One line of the communication table: an axis ("all": the world) and what runs on it. */
typedef struct {
    const char *axis, *what;
    int count;
    double payload, sent;
} comm_row;

#define MAX_ROWS 32

static void add_row(comm_row *rows, int *n_rows, const char *axis, const char *what, int count, double payload,
                    double sent)
{
    int r = 0;
    while (r < *n_rows && !(strcmp(rows[r].what, what) == 0 && strcmp(rows[r].axis, axis) == 0))
        r++;
    if (r == MAX_ROWS)
        ir_unreachable("mesh_report: more kinds of communication than rows");
    if (r == *n_rows)
        rows[(*n_rows)++] = (comm_row){axis, what, 0, 0, 0};
    rows[r].count += count;
    rows[r].payload += payload;
    rows[r].sent += sent;
}

/* Prints the rows; returns the bytes sent in all. */
static double print_rows(const comm_row *rows, int n_rows)
{
    double total = 0;
    for (int r = 0; r < n_rows; r++) {
        printf("    %-3s %-15s %4d x, payload %9.3f MiB, sent %9.3f MiB a step\n", rows[r].axis, rows[r].what,
               rows[r].count, mib(rows[r].payload), mib(rows[r].sent));
        total += rows[r].sent;
    }
    return total;
}

/* --json: the rows as an array, and their bytes sent in all. */
static double json_rows(cJSON *to, const comm_row *rows, int n_rows)
{
    double total = 0;
    cJSON *a = cJSON_AddArrayToObject(to, "communication");
    for (int r = 0; r < n_rows; r++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "axis", rows[r].axis);
        cJSON_AddStringToObject(x, "op", rows[r].what);
        cJSON_AddNumberToObject(x, "count", rows[r].count);
        cJSON_AddNumberToObject(x, "payload_bytes", rows[r].payload);
        cJSON_AddNumberToObject(x, "sent_bytes", rows[r].sent);
        cJSON_AddItemToArray(a, x);
        total += rows[r].sent;
    }
    cJSON_AddNumberToObject(to, "sent_bytes", total);
    return total;
}

/* --json: rank's entry of ranks, with its coordinates. */
static cJSON *json_rank(cJSON *ranks, const pass_mesh *m, int rank)
{
    cJSON *x = cJSON_CreateObject(), *c;
    cJSON_AddNumberToObject(x, "rank", rank);
    c = cJSON_AddObjectToObject(x, "coords");
    for (int a = 0; a < m->n_axes; a++)
        cJSON_AddNumberToObject(c, m->axis[a], pass_mesh_coord(m, rank, a));
    cJSON_AddItemToArray(ranks, x);
    return x;
}

static void print_rank(const pass_mesh *m, int rank)
{
    printf("  rank %d (", rank);
    for (int a = 0; a < m->n_axes; a++)
        printf("%s%s %d", a ? ", " : "", m->axis[a], pass_mesh_coord(m, rank, a));
    printf(")");
}

static void report_rank(const ir_graph *g, const pass_mesh *m, int rank, cJSON *ranks)
{
    int64_t params = 0, n_params = 0, unshared = 0, live = 0, peak = 0;
    int *last = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    comm_row rows[MAX_ROWS];
    int n_rows = 0;
    for (int i = 0; i < g->n_nodes; i++)
        last[i] = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            last[g->nodes[i]->in[k]->id] = i;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_param) {
            params += bytes_of(n);
            n_params += ir_shape_numel(&n->shape);
            continue;
        }
        if (n->op != OP_output && n->op != OP_input && ir_ops[n->op].kind != OK_SOURCE) {
            unshared += bytes_of(n);
            live += bytes_of(n);
            peak = live > peak ? live : peak;
        }
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            if (last[x->id] == i && x->op != OP_param && x->op != OP_input && ir_ops[x->op].kind != OK_SOURCE)
                live -= bytes_of(x);
        }
        if (ir_ops[n->op].kind == OK_COMM)
            add_row(rows, &n_rows, comm_axis(n), ir_ops[n->op].mnemonic, 1, (double)bytes_of(n), sent_bytes(n));
    }
    if (ranks) {
        cJSON *x = json_rank(ranks, m, rank);
        cJSON_AddNumberToObject(x, "params", (double)n_params);
        cJSON_AddNumberToObject(x, "params_bytes", (double)params);
        cJSON_AddNumberToObject(x, "activation_peak_bytes", (double)peak);
        cJSON_AddNumberToObject(x, "activation_unshared_bytes", (double)unshared);
        json_rows(x, rows, n_rows);
    } else {
        print_rank(m, rank);
        printf(": params %.2f MiB (%" PRId64 "), activations %.2f MiB peak (%.2f MiB without reuse)\n",
               mib((double)params), n_params, mib((double)peak), mib((double)unshared));
        printf("    sent in all: %.3f MiB a forward step\n", mib(print_rows(rows, n_rows)));
    }
    free(last);
}

/* An integer option of loom check in [lo, hi]; *out unchanged when absent. */
static bool opt_int(const eng_opts *o, const char *key, long lo, long hi, int *out, ir_diag *d)
{
    int64_t v = *out;
    bool ok = eng_named_int(o, "check", key, lo, hi, &v, d);
    *out = (int)v;
    return ok;
}

/* ---- one training step --------------------------------------------------------------------- */

#define DP_BUCKET ((int64_t)1 << 20) /* cmd_train.c's: f32 elements per gradient allreduce */

typedef struct {
    int B, dp, tp, pp, micro, accum;
    bool sharded;          /* tp or pp > 1: the mesh gradient program (else dp alone, or one rank) */
    bool one_f_one_b;
    pass_opt_config opt;
    const char *opt_name;
} train_setup;

/* The options and checks of `loom train --mesh` (cmd_train.c parse_opts, setup, setup_mesh). */
static bool train_options(const ir_graph *g, const eng_opts *o, const pass_mesh *m, train_setup *s, ir_diag *d)
{
    static const char *const need[] = {"tokens", "targets"};
    for (int k = 0; k < 2; k++) {
        const ir_node *n = eng_find_node(g, OP_input, need[k]);
        if (!n || n->dtype != DT_I32 || n->shape.rank != 2) {
            ir_diag_error(d, -1, 0, 0, "check: --train: the model needs an input '%s' of type i32[batch, seq]",
                          need[k]);
            return false;
        }
    }
    if (!eng_find_node(g, OP_output, "loss")) {
        ir_diag_error(d, -1, 0, 0, "check: --train: the model has no output 'loss'");
        return false;
    }
    for (int a = 0; a < m->n_axes; a++)
        if (m->size[a] > 1 && strcmp(m->axis[a], "dp") != 0 && strcmp(m->axis[a], "tp") != 0 &&
            strcmp(m->axis[a], "pp") != 0) {
            ir_diag_error(d, -1, 0, 0, "check: --train: the axes dp, tp and pp train; %s=%d does not", m->axis[a],
                          m->size[a]);
            return false;
        }
    *s = (train_setup){.B = (int)eng_find_node(g, OP_input, "tokens")->shape.dim[0], .dp = pass_mesh_size(m, "dp"),
                       .tp = pass_mesh_size(m, "tp"), .pp = pass_mesh_size(m, "pp"), .accum = 1,
                       .one_f_one_b = true, .opt = pass_opt_config_default(), .opt_name = "adamw"};
    s->micro = s->pp;
    s->sharded = s->tp > 1 || s->pp > 1;
    s->opt.momentum = 0.9; /* loom train's default for sgd */
    if (!opt_int(o, "--microbatches", 1, 4096, &s->micro, d) || !opt_int(o, "--accum", 1, 1000000, &s->accum, d))
        return false;
    const char *sched = eng_named(o, "--schedule"), *optimizer = eng_named(o, "--optimizer"), *mom = eng_named(o, "--momentum");
    if ((eng_named(o, "--microbatches") || sched) && s->pp == 1) {
        ir_diag_error(d, -1, 0, 0, "check: --microbatches and --schedule schedule pipeline stages; the mesh has no "
                      "pp axis (use --accum to split a batch)");
        return false;
    }
    if (sched && strcmp(sched, "1f1b") != 0 && strcmp(sched, "gpipe") != 0) {
        ir_diag_error(d, -1, 0, 0, "check: --schedule expects gpipe or 1f1b, got '%s'", sched);
        return false;
    }
    s->one_f_one_b = !sched || strcmp(sched, "1f1b") == 0;
    if (optimizer && strcmp(optimizer, "sgd") != 0 && strcmp(optimizer, "adamw") != 0) {
        ir_diag_error(d, -1, 0, 0, "check: --optimizer must be adamw or sgd, got '%s'", optimizer);
        return false;
    }
    if (optimizer && strcmp(optimizer, "sgd") == 0) {
        s->opt.kind = PASS_OPT_SGD;
        s->opt_name = "sgd";
    }
    if (mom) {
        char *end;
        s->opt.momentum = strtod(mom, &end);
        if (!*mom || *end || !(s->opt.momentum >= 0 && s->opt.momentum <= 0.999999)) {
            ir_diag_error(d, -1, 0, 0, "check: --momentum expects a number in [0, 0.999999], got '%s'", mom);
            return false;
        }
    }
    s->opt.accum = s->accum;
    if (!eng_zero(o, s->dp, "check", &s->opt, d))
        return false;
    s->opt.sumsq_input = s->sharded || s->opt.shards > 1;
    if (s->B % s->dp != 0) {
        ir_diag_error(d, -1, 0, 0, "check: --train: the batch (%d rows) does not split evenly over dp=%d", s->B, s->dp);
        return false;
    }
    if (s->B % s->micro != 0 || (s->B / s->micro) % s->dp != 0) {
        ir_diag_error(d, -1, 0, 0,
                      "check: --train: the batch (%d rows) does not split into %d micro-batches of a multiple of "
                      "dp=%d rows",
                      s->B, s->micro, s->dp);
        return false;
    }
    return true;
}

/* What the segments of a rank's program hold (mesh_exec_each_segment): which values cross a
 * segment boundary (outputs "v<ID>", which the runner takes from the segment's program), and the
 * segment programs' arenas and output buffers as lowered for the CPU (program_lower, as
 * program_new does). */
typedef struct {
    bool *crossing;
    int64_t arenas, outputs;
    int programs;
} segment_info;

static bool visit_segment(void *ctx, const ir_graph *seg, ir_diag *d)
{
    segment_info *si = ctx;
    for (int i = 0; i < seg->n_nodes; i++) {
        int id;
        if (seg->nodes[i]->op == OP_output && sscanf(seg->nodes[i]->name, "v%d", &id) == 1)
            si->crossing[id] = true;
    }
    ir_graph *fused = NULL;
    cg_lowered low = {0};
    bool ok = program_lower(seg, NULL, false, &fused, &low, d);
    if (ok) {
        si->arenas += low.plan.arena_bytes;
        for (int b = 0; b < low.plan.n_bufs; b++)
            if (low.plan.bufs[b].kind == RT_BUF_OUTPUT)
                si->outputs += low.plan.bufs[b].numel * ir_dtype_size(low.plan.bufs[b].dtype);
        si->programs++;
    }
    cg_lowered_free(&low);
    ir_graph_free(fused);
    return ok;
}

/* The elements of the param of L whose full name (without slice suffixes) is full; -1: none. */
static int64_t local_count(const ir_graph *L, const char *full)
{
    for (int i = 0; i < L->n_nodes; i++) {
        const ir_node *n = L->nodes[i];
        char name[600];
        mesh_slice sl[MESH_MAX_SLICES];
        int n_sl = 0;
        if (n->op != OP_param)
            continue;
        mesh_slice_parse(n->name, name, sizeof name, sl, &n_sl);
        if (strcmp(name, full) == 0)
            return ir_shape_numel(&n->shape);
    }
    return -1;
}

bool eng_rank_memory_of(const ir_graph *L, bool sharded, int V, const pass_opt_config *opt, eng_rank_memory *out,
                        ir_diag *d)
{
    memset(out, 0, sizeof *out);
    pass_opt_group_sizes(L, opt, out->n_group);
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        out->state_elems += out->n_group[k];
    const char *state_names[2];
    out->n_state = pass_opt_state_names(opt, state_names);
    eng_rank_memory_shard(out, opt->shards, opt->zero == 2);
    /* activations: forward values (not params) a backward node reads, per micro-batch */
    bool *backward = mesh_exec_backward_half(L), *kept = calloc((size_t)L->n_nodes + 1, sizeof *kept);
    if (!kept)
        ir_unreachable("out of memory");
    for (int i = 0; i < L->n_nodes; i++)
        for (int k = 0; backward[i] && k < L->nodes[i]->n_in; k++) {
            const ir_node *x = L->nodes[i]->in[k];
            if (!backward[x->id] && x->op != OP_param && !kept[x->id]) {
                kept[x->id] = true;
                out->kept += bytes_of(x);
            }
        }
    for (int i = 0; i < L->n_nodes; i++)
        out->flops += ir_ops[L->nodes[i]->op].cost(L->nodes[i]);
    /* program memory: the gradient program's (sharded: the runner's buffers and the segments'
     * arenas) and the update program's arena, as planned for the CPU */
    int64_t unshared = 0;
    ir_graph *ug = pass_optimizer_graph(L, opt, d);
    bool ok = ug && eng_cpu_plan_peak(ug, &out->update_arena, &unshared, d);
    ir_graph_free(ug);
    if (ok && sharded) {
        /* the runner's own buffers (engine/mesh_exec.c): a forward value that crosses segments —
         * an input, a communication result, a segment's output — one per slot; a backward
         * communication result once; params (bound to the trainer's state) and backward
         * segment outputs (read from their program) none — but a backward value another model
         * chunk reads (pipeline_chunk_apart) as a forward one */
        segment_info si = {calloc((size_t)L->n_nodes + 1, sizeof(bool)), 0, 0, 0};
        if (!si.crossing)
            ir_unreachable("out of memory");
        ok = mesh_exec_each_segment(L, V, visit_segment, &si, d);
        int *chunk = pipeline_chunks(L, backward, V);
        bool *apart = pipeline_chunk_apart(L, backward, chunk);
        for (int i = 0; ok && i < L->n_nodes; i++) {
            const ir_node *n = L->nodes[i];
            if (n->op == OP_param)
                continue;
            bool fwd = !backward[i] || apart[i];
            if (fwd && (si.crossing[i] || n->op == OP_input || ir_ops[n->op].kind == OK_COMM))
                out->fwd_values += bytes_of(n);
            else if (backward[i] && ir_ops[n->op].kind == OK_COMM)
                out->bwd_values += bytes_of(n);
        }
        out->programs = si.programs;
        out->arenas = si.arenas;
        out->outputs = si.outputs;
        free(si.crossing);
        free(chunk);
        free(apart);
    } else if (ok)
        ok = eng_cpu_plan_peak(L, &out->grad_arena, &unshared, d);
    free(backward);
    free(kept);
    return ok;
}

void eng_rank_memory_shard(eng_rank_memory *m, int shards, bool grads)
{
    m->params_bytes = m->grads_bytes = m->opt_bytes = 0;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        int64_t c = pass_opt_chunk(m->n_group[k], shards), whole = shards > 1 ? c * shards : c;
        m->params_bytes += 4 * whole;
        m->grads_bytes += 4 * (grads ? c : whole);
        m->opt_bytes += 4 * c * m->n_state;
    }
}

double eng_rank_memory_total(const eng_rank_memory *r, int slots)
{
    return (double)(r->params_bytes + r->grads_bytes + r->opt_bytes) + (double)r->fwd_values * slots + (double)r->bwd_values +
           (double)r->arenas + (double)r->outputs + (double)r->grad_arena + (double)r->update_arena;
}

/* The pipeline stages (of rank's pp group) holding a slice of the param whose full name is full,
 * and the largest slice's elements into *count (NULL: not wanted). */
static int stage_holders(ir_graph *const *Ls, const pass_mesh *m, int rank, int pp, const char *full, int64_t *count)
{
    int a_pp = pass_mesh_axis(m, "pp"), holders = 0;
    int64_t most = 0;
    for (int st = 0; st < pp; st++) {
        int64_t c = local_count(Ls[pass_mesh_with(m, rank, a_pp, st)], full);
        holders += c >= 0;
        most = c > most ? c : most;
    }
    if (count)
        *count = most;
    return holders;
}

/* --zero 2 under pp: a param several stages hold keeps its whole gradient sum on each holder
 * (summed over pp, then reduce-scattered over dp in the buckets that hold it: train.c
 * tied_sum). Its bytes on rank `rank` into *held, those buckets' bytes into *sent. */
static void zero2_tied(ir_graph *const *Ls, const pass_mesh *m, const train_setup *s, int rank,
                       const int64_t *n_group, int64_t *held, int64_t *sent)
{
    *held = *sent = 0;
    if (s->opt.zero != 2 || s->pp < 2)
        return;
    const ir_graph *L = Ls[rank];
    int64_t off[PASS_OPT_GROUPS] = {0, 0}, *lo = calloc((size_t)L->n_nodes + 1, sizeof *lo);
    int *grp = calloc((size_t)L->n_nodes + 1, sizeof *grp), n_tied = 0;
    int64_t *hi = calloc((size_t)L->n_nodes + 1, sizeof *hi);
    if (!lo || !hi || !grp)
        ir_unreachable("out of memory");
    for (int i = 0; i < L->n_nodes; i++) { /* the flat layout of train.c's setup_state */
        const ir_node *n = L->nodes[i];
        if (n->op != OP_param)
            continue;
        int k = pass_opt_group(&s->opt, n);
        int64_t count = ir_shape_numel(&n->shape);
        char full[600];
        mesh_slice sl[MESH_MAX_SLICES];
        int n_sl = 0;
        mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl);
        if (stage_holders(Ls, m, rank, s->pp, full, NULL) > 1) {
            grp[n_tied] = k;
            lo[n_tied] = off[k];
            hi[n_tied++] = off[k] + count;
            *held += 4 * count;
        }
        off[k] += count;
    }
    for (int k = 0; n_tied && k < PASS_OPT_GROUPS; k++) {
        int64_t c = pass_opt_chunk(n_group[k], s->dp), piece = pass_opt_zero2_piece(s->dp);
        for (int64_t at = 0; at < c; at += piece) {
            int64_t len = c - at < piece ? c - at : piece;
            bool hit = false;
            for (int t = 0; !hit && t < n_tied; t++)
                hit = grp[t] == k && pass_opt_zero2_hits(at, len, c, s->dp, lo[t], hi[t]);
            *sent += hit ? 4 * len * s->dp : 0;
        }
    }
    free(lo);
    free(hi);
    free(grp);
}

/* One rank's report of a training step. L: its gradient program's graph (every rank's in
 * Ls, for the tied params); model: the whole model. False after reporting a lowering error. */
static bool train_rank(const ir_graph *model, ir_graph *const *Ls, const pass_mesh *m, const train_setup *s,
                       int rank, cJSON *ranks, ir_diag *d)
{
    cJSON *j = ranks ? json_rank(ranks, m, rank) : NULL;
    const ir_graph *L = Ls[rank];
    int a_pp = pass_mesh_axis(m, "pp");
    int stage = a_pp >= 0 ? pass_mesh_coord(m, rank, a_pp) : 0;
    eng_rank_memory mem;
    if (!eng_rank_memory_of(L, s->sharded, m->virtual_stages, &s->opt, &mem, d))
        return false;
    const int64_t *n_group = mem.n_group, state_elems = mem.state_elems, kept_bytes = mem.kept;
    int n_state = mem.n_state;
    int64_t tied_held, tied_sent;
    zero2_tied(Ls, m, s, rank, n_group, &tied_held, &tied_sent);
    mem.grads_bytes += tied_held;
    double state_bytes = 4.0 * (double)state_elems;
    int slots = s->sharded ? pipeline_in_flight(s->pp, stage, s->micro, m->virtual_stages, s->one_f_one_b) : 1;
    int64_t held = mem.params_bytes + mem.grads_bytes + mem.opt_bytes;
    if (j) {
        cJSON_AddNumberToObject(j, "params", (double)state_elems);
        cJSON_AddNumberToObject(j, "params_bytes", (double)mem.params_bytes);
        cJSON_AddNumberToObject(j, "gradients_bytes", (double)mem.grads_bytes);
        cJSON_AddNumberToObject(j, "optimizer_state_bytes", (double)mem.opt_bytes);
        cJSON_AddNumberToObject(j, "activations_kept_bytes_per_microbatch", (double)kept_bytes);
        cJSON_AddNumberToObject(j, "microbatches_in_flight", slots);
    } else if (s->opt.shards > 1) {
        print_rank(m, rank);
        char grads[96];
        if (s->opt.zero == 2)
            snprintf(grads, sizeof grads, "a 1/%d chunk, each micro-batch's reduce-scattered into it%s", s->dp,
                     tied_held ? "; tied params whole" : "");
        else
            snprintf(grads, sizeof grads, "reduce-scattered over dp");
        printf(": params %.2f MiB (%" PRId64 "), gradients %.2f MiB (%s), %s state %.2f MiB "
               "(%d x a 1/%d chunk: --zero %d); loom train holds %" PRId64 " bytes\n",
               mib((double)mem.params_bytes), state_elems, mib((double)mem.grads_bytes), grads, s->opt_name,
               mib((double)mem.opt_bytes), n_state, s->dp, s->opt.zero, held);
        printf("    activations kept for the backward: %.2f MiB a micro-batch, %d in flight: %.2f MiB\n",
               mib((double)kept_bytes), slots, mib((double)kept_bytes * slots));
    } else {
        print_rank(m, rank);
        printf(": params %.2f MiB (%" PRId64 "), gradients %.2f MiB, %s state %.2f MiB (%d x params); loom train "
               "holds %" PRId64 " bytes\n",
               mib(state_bytes), state_elems, mib(state_bytes), s->opt_name, mib(n_state * state_bytes), n_state, held);
        printf("    activations kept for the backward: %.2f MiB a micro-batch, %d in flight: %.2f MiB\n",
               mib((double)kept_bytes), slots, mib((double)kept_bytes * slots));
    }
    if (s->sharded && j) {
        cJSON_AddNumberToObject(j, "runner_values_bytes", (double)(mem.fwd_values * slots + mem.bwd_values));
        cJSON_AddNumberToObject(j, "segment_programs", mem.programs);
        cJSON_AddNumberToObject(j, "segment_arenas_bytes", (double)mem.arenas);
        cJSON_AddNumberToObject(j, "segment_outputs_bytes", (double)mem.outputs);
        cJSON_AddNumberToObject(j, "update_arena_bytes", (double)mem.update_arena);
    } else if (s->sharded)
        printf("    runner values %.2f MiB (forward %.2f x %d slot%s, backward %.2f); %d segment programs: arenas "
               "%.2f MiB, outputs %.2f MiB; update arena %.2f MiB; with the state %.2f MiB in all\n",
               mib((double)(mem.fwd_values * slots + mem.bwd_values)), mib((double)mem.fwd_values), slots,
               slots == 1 ? "" : "s", mib((double)mem.bwd_values), mem.programs, mib((double)mem.arenas),
               mib((double)mem.outputs), mib((double)mem.update_arena), mib(eng_rank_memory_total(&mem, slots)));
    else if (j) {
        cJSON_AddNumberToObject(j, "gradient_arena_bytes", (double)mem.grad_arena);
        cJSON_AddNumberToObject(j, "update_arena_bytes", (double)mem.update_arena);
    } else
        printf("    gradient program arena %.2f MiB; update arena %.2f MiB; with the state %.2f MiB in all\n",
               mib((double)mem.grad_arena), mib((double)mem.update_arena), mib(eng_rank_memory_total(&mem, slots)));
    if (j)
        cJSON_AddNumberToObject(j, "memory_bytes", eng_rank_memory_total(&mem, slots));

    /* communication: the program's, once per micro-batch and accumulation step ... */
    comm_row rows[MAX_ROWS];
    int n_rows = 0, times = s->micro * s->accum;
    int64_t counted = 0;
    for (int i = 0; i < L->n_nodes; i++) {
        const ir_node *n = L->nodes[i];
        if (ir_ops[n->op].kind != OK_COMM)
            continue;
        add_row(rows, &n_rows, comm_axis(n), ir_ops[n->op].mnemonic, times, (double)times * (double)bytes_of(n),
                times * sent_bytes(n));
        counted += times * counted_bytes(n);
    }
    /* ... then the trainer's, once a step: the gradients summed over dp in buckets */
    int dp_size = s->dp; /* over dp's sub-communicator; dp alone: the world */
    for (int k = 0; dp_size > 1 && s->opt.shards > 1 && k < PASS_OPT_GROUPS; k++) {
        /* ZeRO: each group (padded to dp chunks) reduce-scattered, the updated chunks allgathered */
        int64_t c = pass_opt_chunk(n_group[k], s->opt.shards);
        double b = 4.0 * (double)(c * dp_size);
        if (!c)
            continue;
        /* --zero 2: every micro-batch's gradients, in buckets */
        int rs = s->opt.zero == 2 ? times : 1;
        add_row(rows, &n_rows, "dp", "reduce-scatter", rs, rs * b, rs * (double)(dp_size - 1) / dp_size * b);
        add_row(rows, &n_rows, "dp", "param allgather", 1, b, (double)(dp_size - 1) / dp_size * b);
        counted += rs * 4 * c * dp_size + 4 * c;
    }
    if (dp_size > 1 && s->opt.shards > 1 && !s->sharded) {
        add_row(rows, &n_rows, "dp", "loss allreduce", 1, 8, 2.0 * (dp_size - 1) / dp_size * 8);
        counted += 8;
    }
    if (dp_size > 1 && s->opt.shards == 1) {
        for (int k = 0; k < PASS_OPT_GROUPS; k++) {
            double b = 4.0 * (double)n_group[k];
            add_row(rows, &n_rows, "dp", "grad allreduce", (int)((n_group[k] + DP_BUCKET - 1) / DP_BUCKET), b,
                    2.0 * (dp_size - 1) / dp_size * b);
            counted += 4 * n_group[k];
        }
        if (!s->sharded) { /* dp alone: the mean loss (f64) */
            add_row(rows, &n_rows, "dp", "loss allreduce", 1, 8, 2.0 * (dp_size - 1) / dp_size * 8);
            counted += 8;
        }
    }
    if (s->sharded && s->pp > 1) {
        /* a param several stages hold (GPT-2's tied wte): its partial gradients summed over pp,
         * every stage taking part with its slice's size (zeros where it holds none) */
        for (int i = 0; i < model->n_nodes; i++) {
            const ir_node *p = model->nodes[i];
            if (p->op != OP_param)
                continue;
            int64_t count;
            if (stage_holders(Ls, m, rank, s->pp, p->name, &count) < 2)
                continue;
            add_row(rows, &n_rows, "pp", "tied allreduce", 1, 4.0 * (double)count,
                    2.0 * (s->pp - 1) / s->pp * 4.0 * (double)count);
            counted += 4 * count;
        }
        /* the last stage's loss (f64) to every stage */
        add_row(rows, &n_rows, "pp", "loss allreduce", 1, 8, 2.0 * (s->pp - 1) / s->pp * 8);
        counted += 8;
    }
    if (tied_sent) { /* --zero 2: the tied sums over dp, in the buckets that hold them */
        add_row(rows, &n_rows, "dp", "tied reduce-scatter", 1, (double)tied_sent,
                (double)(s->dp - 1) / s->dp * (double)tied_sent);
        counted += tied_sent;
    }
    bool norm = (s->sharded || s->opt.shards > 1) && m->world > 1;
    if (norm) /* Σ g² for the clip norm (f64), over the world */
        add_row(rows, &n_rows, "all", "norm allreduce", 1, 8, 2.0 * (m->world - 1) / m->world * 8);
    bool init = (s->sharded && s->pp > 1) || (!s->sharded && s->dp > 1);
    if (j) {
        json_rows(j, rows, n_rows);
        cJSON_AddNumberToObject(j, "bytes_loom_train_counts", (double)counted);
        return true;
    }
    double total = print_rows(rows, n_rows);
    printf("    sent in all: %.3f MiB a training step; loom train counts %" PRId64
           " bytes a step (each op's operand, receives included%s)%s\n",
           mib(total), counted, norm ? "; the norm not" : "",
           init ? "; step 1: 8 more (the loss at init)" : "");
    return true;
}

/* ---- --explain: every collective of a rank, why it is there, what it costs ---------------- */

static const char *size_str(double b, char *buf, size_t cap)
{
    if (b < 1024)
        snprintf(buf, cap, "%.0f B", b);
    else if (b < 1048576)
        snprintf(buf, cap, "%.2f KiB", b / 1024);
    else
        snprintf(buf, cap, "%.2f MiB", b / 1048576);
    return buf;
}

static const char *time_str(double s, char *buf, size_t cap)
{
    if (s < 1e-3)
        snprintf(buf, cap, "%.2f us", s * 1e6);
    else
        snprintf(buf, cap, "%.3f ms", s * 1e3);
    return buf;
}

/* Lists rank's communication ops in the order they run (a micro-batch's forward half, then its
 * backward half), each with the layout change it performs, its payload, its traffic and time
 * under net, and the source op with its .loom line; times: how often each runs a step. Returns
 * the predicted seconds a step. */
static double explain_rank(const ir_graph *L, const pass_mesh *m0, int rank, const eng_net *net, int times,
                           const char *step, const ir_diag *d)
{
    pass_mesh m = *m0;
    m.rank = rank;
    comm_seq s = comm_seq_of(L, &m, 0, false);
    int a_pp = pass_mesh_axis(&m, "pp");
    int stage = a_pp >= 0 ? pass_mesh_coord(&m, rank, a_pp) : 0;
    printf("collectives of rank %d (", rank);
    for (int a = 0; a < m.n_axes; a++)
        printf("%s%s %d", a ? ", " : "", m.axis[a], pass_mesh_coord(&m, rank, a));
    printf("), %s: %d communication op%s%s\n", step, s.n, s.n == 1 ? "" : "s",
           times > 1 ? ", each run once a micro-batch" : "");
    double total = 0, wire_all = 0;
    int n_coll = 0, n_p2p = 0;
    for (int i = 0; i < s.n; i++) {
        const comm_event *e = &s.ev[i];
        const ir_node *n = L->nodes[e->node];
        bool p2p = e->op == OP_send || e->op == OP_recv;
        int T = p2p ? 2 : m.size[e->axis];
        /* the payload: the operand (a receive: what arrives); the ring model's n: an allgather's result */
        double payload = (double)bytes_of(n->n_in ? n->in[0] : n);
        double bytes = e->op == OP_allgather ? (double)bytes_of(n) : payload;
        bool spans = p2p ? rank / net->per_node != (int)e->peer / net->per_node : eng_net_spans(net, &m, rank, (int)e->axis);
        double steps, wire, t = 0;
        eng_net_traffic((int)e->op, T, bytes, &steps, &wire);
        if (e->op != OP_recv)
            t = eng_net_time(net, (int)e->op, T, bytes, spans);
        total += t;
        wire_all += wire;
        n_coll += !p2p;
        n_p2p += p2p;
        char change[96], type[160], pay[32], w[32], tm[32], cost[96];
        int peer_stage = p2p && a_pp >= 0 ? pass_mesh_coord(&m, (int)e->peer, a_pp) : 0;
        if (e->op == OP_allreduce) /* detail: 0 sum, 1 max, 2 min (comm_match.h) */
            snprintf(change, sizeof change, "partial %s -> replicated",
                     e->detail == 1 ? "max" : e->detail == 2 ? "min" : "sum");
        else if (e->op == OP_allgather)
            snprintf(change, sizeof change, "split on dim %d -> replicated", (int)e->detail);
        else if (e->op == OP_reduce_scatter)
            snprintf(change, sizeof change, "partial sum -> split on dim %d", (int)e->detail);
        else if (e->op == OP_send)
            snprintf(change, sizeof change, "stage %d -> stage %d (rank %d)", stage, peer_stage, (int)e->peer);
        else
            snprintf(change, sizeof change, "stage %d -> stage %d (rank %d)", peer_stage, stage, (int)e->peer);
        ir_type_str(n->dtype, &(n->n_in ? n->in[0] : n)->shape, type, sizeof type);
        if (e->op == OP_recv)
            snprintf(cost, sizeof cost, "(timed at the send)");
        else
            snprintf(cost, sizeof cost, "%s in %.0f step%s, %s%s", size_str(wire, w, sizeof w), steps,
                     steps == 1 ? "" : "s", time_str(t, tm, sizeof tm), spans ? " inter-node" : "");
        char src[128] = "a value";
        if (e->src_op >= 0)
            snprintf(src, sizeof src, "%s%s", ir_ops[e->src_op].mnemonic, e->src_backward ? " (backward)" : "");
        char at[400] = "";
        if (e->line > 0)
            snprintf(at, sizeof at, " at %s:%lld:%lld", e->file >= 0 && e->file < d->n_src ? d->src[e->file].name : "?",
                     (long long)e->line, (long long)e->col);
        printf("  #%-3d %-14s %-3s %-18s %-10s %-32s %-40s %s%s%s%s\n", i + 1, ir_ops[e->op].mnemonic,
               p2p ? "pp" : m.axis[e->axis], type, size_str(payload, pay, sizeof pay), change, cost, src, at,
               n->scope ? " in " : "", n->scope ? n->scope : "");
    }
    char w[32], tm[32];
    printf("  in all: %d collective%s and %d send%s/receive%s, %s on the wire, %s%s\n", n_coll, n_coll == 1 ? "" : "s",
           n_p2p, n_p2p == 1 ? "" : "s", n_p2p == 1 ? "" : "s", size_str(wire_all * times, w, sizeof w),
           time_str(total * times, tm, sizeof tm),
           times > 1 ? " a step (every micro-batch and accumulation step; exposed, not overlapped)" : " a step (exposed, not overlapped)");
    if (strstr(step, "training"))
        printf("  (and once a step the trainer's sums over dp and pp, the grad, tied, loss and norm rows of the report above)\n");
    comm_seq_free(&s);
    return total * times;
}

/* --explain over the ranks' graphs: the ranks --rank names, else one rank a pipeline stage (the
 * ranks of a group call the same collectives: comm_match proved it). */
static bool explain(ir_graph *const *Ls, const pass_mesh *m, const eng_opts *o, int times, const char *step,
                    ir_diag *d)
{
    eng_net net = eng_net_default();
    if (!eng_net_options(o, "check", &net, d))
        return false;
    char buf[256];
    if (o->rank_given && o->rank >= m->world) {
        ir_diag_error(d, -1, 0, 0, "check: --rank %d is outside the mesh %s of %d ranks", o->rank,
                      pass_mesh_str(m, buf, sizeof buf), m->world);
        return false;
    }
    printf("time model: ring algorithms, t = steps x latency + bytes on the wire / bandwidth; %s\n",
           eng_net_str(&net, buf, sizeof buf));
    if (o->rank_given) {
        explain_rank(Ls[o->rank], m, o->rank, &net, times, step, d);
        return true;
    }
    int a_pp = pass_mesh_axis(m, "pp"), P = a_pp >= 0 ? m->size[a_pp] : 1;
    for (int p = 0; p < P; p++) {
        int r = a_pp >= 0 ? pass_mesh_with(m, 0, a_pp, p) : 0;
        explain_rank(Ls[r], m, r, &net, times, step, d);
    }
    if (m->world > P)
        printf("(the other ranks call the same collectives as the rank of their stage listed: --rank R lists rank R)\n");
    return true;
}

/* Collective matching (passes/comm_match.h) over the ranks' graphs Ls: micro 0 a forward run,
 * else a training step of micro micro-batches. Prints one line when they match. */
static bool match_ranks(ir_graph *const *Ls, const pass_mesh *m0, int micro, bool one_f_one_b, bool quiet, ir_diag *d)
{
    comm_seq *seqs = calloc((size_t)m0->world, sizeof *seqs);
    if (!seqs)
        ir_unreachable("out of memory");
    int colls = 0, p2p = 0;
    for (int r = 0; r < m0->world; r++) {
        pass_mesh m = *m0;
        m.rank = r;
        seqs[r] = comm_seq_of(Ls[r], &m, micro, one_f_one_b);
        for (int i = 0; i < seqs[r].n; i++)
            *(seqs[r].ev[i].axis >= 0 ? &colls : &p2p) += 1;
    }
    bool ok = comm_match(seqs, m0, d);
    if (ok && !quiet)
        printf("collectives matched: in every group the same kind, dtype, count and order (%d calls over all ranks), "
               "every send received (%d sends and receives), the job simulated to its end\n",
               colls, p2p);
    for (int r = 0; r < m0->world; r++)
        comm_seq_free(&seqs[r]);
    free(seqs);
    return ok;
}

/* `loom check --train`: every rank's gradient program as `loom train` builds it, reported for
 * one optimizer step, then the pipeline schedule. */
static void train_report(const ir_graph *g0, const eng_opts *o, pass_mesh *m, cJSON *json, ir_diag *d)
{
    train_setup s;
    if (!train_options(g0, o, m, &s, d) || !eng_virtual_stages(o, m, s.micro, s.one_f_one_b, "check", d))
        return;
    /* the recipe (recipe.c) as loom train runs it: under tp/pp a micro-batch's rows (the shard
     * pass splits them over dp) on each rank, dp alone a dp rank's rows, the same on every rank */
    int rows_of = s.sharded ? s.B / s.micro : s.B / s.dp;
    ir_graph **Ls = calloc((size_t)m->world, sizeof *Ls);
    if (!Ls)
        ir_unreachable("out of memory");
    bool ok = true;
    m->local_outputs = true;
    for (int r = 0; ok && r < m->world; r++) {
        if (!s.sharded && r > 0) { /* dp alone: every rank runs the same program */
            Ls[r] = Ls[0];
            continue;
        }
        m->rank = r;
        Ls[r] = eng_train_graph(o, g0, rows_of, s.sharded ? m : NULL, true, "check: --train", d);
        ok = Ls[r] != NULL;
    }
    char buf[128];
    char rows[64] = "";
    if (s.dp > 1)
        snprintf(rows, sizeof rows, " (%d a dp rank)", s.B / s.micro / s.dp);
    if (ok && s.sharded)
        ok = match_ranks(Ls, m, s.micro, s.one_f_one_b, json != NULL, d);
    cJSON *ranks = NULL;
    if (ok && json) {
        cJSON_AddStringToObject(json, "mesh", pass_mesh_str(m, buf, sizeof buf));
        cJSON_AddStringToObject(json, "step", "training");
        cJSON_AddNumberToObject(json, "microbatches", s.micro);
        cJSON_AddNumberToObject(json, "microbatch_rows", s.B / s.micro);
        cJSON_AddNumberToObject(json, "accum", s.accum);
        cJSON_AddStringToObject(json, "optimizer", s.opt_name);
        if (s.pp > 1)
            cJSON_AddStringToObject(json, "schedule", m->virtual_stages > 1 ? "interleaved-1f1b" : s.one_f_one_b ? "1f1b" : "gpipe");
        if (s.pp > 1)
            cJSON_AddNumberToObject(json, "virtual_stages", m->virtual_stages > 1 ? m->virtual_stages : 1);
        if (s.pp > 1)
            cJSON_AddNumberToObject(json, "bubble_fraction",
                                    pipeline_bubble(s.pp, s.micro, m->virtual_stages, s.one_f_one_b));
        ranks = cJSON_AddArrayToObject(json, "ranks");
    } else if (ok) {
        char sched[96] = "";
        if (s.pp > 1 && m->virtual_stages > 1)
            snprintf(sched, sizeof sched, ", interleaved 1f1b (%d model chunks a stage)", m->virtual_stages);
        else if (s.pp > 1)
            snprintf(sched, sizeof sched, ", %s", s.one_f_one_b ? "1f1b" : "gpipe");
        printf("mesh %s: %d rank%s; one training step: %d micro-batch%s of %d rows%s%s, accum %d, %s:\n",
               pass_mesh_str(m, buf, sizeof buf), m->world, m->world == 1 ? "" : "s", s.micro,
               s.micro == 1 ? "" : "es", s.B / s.micro, rows, sched, s.accum, s.opt_name);
    }
    for (int r = 0; ok && r < m->world; r++)
        ok = train_rank(g0, Ls, m, &s, r, ranks, d);
    if (ok && o->explain && !s.sharded)
        printf("collectives: the program of dp alone has none (the trainer sums the gradients over dp once a step, "
               "above)\n");
    else if (ok && o->explain && !json) {
        char step[96];
        snprintf(step, sizeof step, "one training step of %d micro-batch%s x accum %d", s.micro,
                 s.micro == 1 ? "" : "es", s.accum);
        ok = explain(Ls, m, o, s.micro * s.accum, step, d);
    }
    for (int r = 0; r < m->world; r++)
        if (s.sharded || r == 0)
            ir_graph_free(Ls[r]);
    free(Ls);
    if (ok && s.pp > 1 && !json)
        pipeline_schedule_print(stdout, s.pp, s.micro, m->virtual_stages);
}

bool eng_virtual_stages(const eng_opts *o, pass_mesh *m, int micro, bool one_f_one_b, const char *cmd, ir_diag *d)
{
    int64_t V = 1;
    if (!eng_named_int(o, cmd, "--virtual-stages", 1, 64, &V, d))
        return false;
    if (V == 1)
        return true;
    int pp = m ? pass_mesh_size(m, "pp") : 1;
    if (pp < 2) {
        ir_diag_error(d, -1, 0, 0, "%s: --virtual-stages interleaves model chunks over pipeline stages; %s", cmd,
                      m ? "the mesh has no pp axis" : "it needs --mesh with pp > 1");
        return false;
    }
    if (!one_f_one_b) {
        ir_diag_error(d, -1, 0, 0, "%s: --virtual-stages runs the interleaved 1F1B schedule; it does not combine with "
                      "--schedule gpipe", cmd);
        return false;
    }
    if (micro % pp != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: --virtual-stages needs the micro-batches (%d) to be a multiple of pp=%d: the "
                      "interleaved schedule runs them through the chunks pp at a time", cmd, micro, pp);
        return false;
    }
    m->virtual_stages = (int)V;
    return true;
}

bool eng_seq_parallel(const eng_opts *o, pass_mesh *m, const char *cmd, ir_diag *d)
{
    if (!o->seq_parallel)
        return true;
    if (!m || pass_mesh_size(m, "tp") < 2) {
        ir_diag_error(d, -1, 0, 0, "%s: --sequence-parallel splits the sequence over tp; %s", cmd,
                      m ? "the mesh has no tp axis" : "it needs --mesh with tp > 1");
        return false;
    }
    m->seq_parallel = true;
    return true;
}

static void mesh_report(const ir_graph *g0, const eng_opts *o, cJSON *json, ir_diag *d)
{

    static const char *const train_only[] = {"--schedule", "--accum", "--optimizer", "--momentum", "--zero",
                                             "--recompute", "--virtual-stages"};
    pass_mesh m;
    if (!pass_mesh_parse(o->mesh, 0, g0, &m, d) || !eng_seq_parallel(o, &m, "check", d))
        return;
    if (o->train) {
        train_report(g0, o, &m, json, d);
        return;
    }
    for (size_t k = 0; k < sizeof train_only / sizeof *train_only; k++)
        if (eng_named(o, train_only[k])) {
            ir_diag_error(d, -1, 0, 0, "check: %s describes a training step: add --train", train_only[k]);
            return;
        }
    int microbatches = 0;
    if (!opt_int(o, "--microbatches", 1, 4096, &microbatches, d))
        return;
    char buf[128];
    cJSON *ranks = NULL;
    if (json) {
        cJSON_AddStringToObject(json, "mesh", pass_mesh_str(&m, buf, sizeof buf));
        cJSON_AddStringToObject(json, "step", "forward");
        ranks = cJSON_AddArrayToObject(json, "ranks");
    } else
        printf("mesh %s: %d rank%s (rank = row-major over the axes, the last fastest); one forward step:\n",
               pass_mesh_str(&m, buf, sizeof buf), m.world, m.world == 1 ? "" : "s");
    ir_graph **gs = calloc((size_t)m.world, sizeof *gs);
    if (!gs)
        ir_unreachable("out of memory");
    bool ok = true;
    for (int r = 0; ok && r < m.world; r++) {
        gs[r] = ir_graph_clone(g0);
        m.rank = r;
        pass_options po = pass_options_default();
        po.mesh = &m;
        ok = pass_run_pipeline(gs[r], "pipeline,shard,dce,cse", &po, d);
    }
    ok = ok && match_ranks(gs, &m, 0, false, json != NULL, d);
    for (int r = 0; ok && r < m.world; r++)
        report_rank(gs[r], &m, r, ranks);
    if (ok && o->explain && !json)
        ok = explain(gs, &m, o, 1, "one forward step", d);
    for (int r = 0; r < m.world; r++)
        ir_graph_free(gs[r]);
    free(gs);
    if (!ok)
        return;
    int pp = pass_mesh_size(&m, "pp");
    if (pp > 1 && !json)
        pipeline_schedule_print(stdout, pp, microbatches ? microbatches : 2 * pp, 1);
}

void eng_mesh_report(const ir_graph *g, const eng_opts *o, ir_diag *d) { mesh_report(g, o, NULL, d); }

void eng_mesh_report_json(const ir_graph *g, const eng_opts *o, void *json, ir_diag *d) { mesh_report(g, o, json, d); }
