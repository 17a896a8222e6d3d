/* planner.c — `loom plan MODEL --devices N ...` (docs/cluster.md, "The planner"): chooses how
 * `loom train` should split a model over N devices.
 *
 * It enumerates what loom can run: every mesh dp×tp×pp of N ranks, the micro-batch counts the
 * batch splits into (B/M rows a multiple of dp), and under pp both schedules (1F1B and GPipe).
 * Each rank's gradient program is built exactly as `loom train` and `loom check --train` build
 * it (eng_train_graph: autodiff, then the pipeline and shard passes), one rank a pipeline stage
 * (the ranks of a stage's tp and dp groups hold and send the same: collective matching proves
 * their programs alike), and measured as `loom check --train` measures it (eng_rank_memory_of:
 * state, runner values, the segment programs' arenas and outputs, the update arena). A mesh is
 * built at the fewest and the most rows a micro-batch can have; every figure of a program is
 * affine in its rows (each activation has the batch dim, the state none), so the micro-batch
 * counts between are interpolated; the printed choices are rebuilt at their own rows, so their
 * memory is exactly `loom check --train`'s. Configurations whose largest rank does not fit
 * --device-memory are pruned; a mesh that does not shard the model (a dim that does not divide)
 * or has more stages than layers is counted and skipped.
 *
 * Step time (engine/net_model.h): a stage's micro-batch takes its FLOPs (ir/cost.c) at the peak
 * rate times the MFU, plus its own communication (the tp and dp collectives and the sends of
 * its program, ring model, inter-node where a group spans nodes), nothing overlapped; the
 * pipeline takes (M + pp − 1) slots of the slowest stage (the bubble (pp−1)/(M+pp−1), the same
 * for both schedules, which differ in memory); then the trainer's once-a-step sums: the
 * gradients over dp (4 MiB buckets), a tied param's over pp, loss and norm.
 *
 * ZeRO: a configuration with dp > 1 that does not fit is tried again with --zero 1 (the
 * optimizer state of a 1/dp chunk a rank; the gradients reduce-scattered and the params
 * allgathered, as many bytes on the wire as the allreduce), then without pp with --zero 2 (the
 * summed gradients a 1/dp chunk too); kept with the first that fits.
 * Recomputation: one that still does not fit is tried with --recompute selective, then full
 * (its mesh built again with it: the activations kept and the recomputed FLOPs), each without
 * and with ZeRO; kept with the first that fits. Not when --recompute is given (every
 * configuration is built with it). */
#include "engine/jobs.h"
#include "engine/net_model.h"
#include "engine/run_values.h"
#include "engine/train.h"
#include "passes/mesh.h"
#include "passes/pass.h"
#include "runtime/clock.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STAGES 64
#define DP_BUCKET_BYTES (4.0 * 1048576.0) /* engine/train.c's gradient allreduce buckets */

#define MAX_PARAMS 512

typedef struct {
    uint64_t hash;
    int64_t count;
} param_key;

/* One pipeline stage of a mesh at some rows a micro-batch: what the planner needs. */
typedef struct {
    eng_rank_memory mem;
    double comm_s;     /* its program's communication time, one micro-batch */
    double wire;       /* bytes it puts on the wire, one micro-batch */
    double tied;       /* elements of params it shares with another stage (summed over pp) */
    int n_params;
    param_key params[MAX_PARAMS]; /* its params: full name's hash, local elements */
    bool spans_dp;     /* its dp group crosses nodes */
    bool spans_pp;     /* its pp group crosses nodes */
} stage_fig;

typedef struct {
    int dp, tp, pp;
    const eng_opts *o;        /* the options it is built with (a --recompute of its own) */
    int recompute;            /* 0 as given, 1 selective, 2 full (the planner's fallback) */
    int virt;                 /* model chunks a stage (--virtual-stages; 1: none) */
    bool sp;                  /* --sequence-parallel (a fallback where tp > 1) */
    bool ok;                  /* builds (shards, enough layers) */
    char why[300];            /* if not: the first error */
    int rows[2];              /* micro-batch rows built at (equal when one) */
    stage_fig at[2][MAX_STAGES];
} mesh_fig;

typedef struct {
    const mesh_fig *mesh;
    int micro;
    bool one_f_one_b;
    int zero;                 /* --zero 1: the optimizer state sharded over dp; 2: the summed
                                 gradients too (not under pp) */
    double step, compute, comm, bubble, memory, traffic;
    int worst_stage;
    bool exact;               /* memory from a build at its own rows */
} config;

typedef struct {
    const eng_opts *o;
    const ir_graph *g;        /* the model at the planned batch */
    int B;
    pass_opt_config opt;
    eng_net net;
    double budget;            /* bytes a device */
    int built;                /* gradient programs built */
} planner;

static double lerp(double a, double b, double t) { return a + (b - a) * t; }

static void mesh_spec(int dp, int tp, int pp, char *buf, size_t cap)
{
    buf[0] = 0;
    if (dp > 1)
        snprintf(buf + strlen(buf), cap - strlen(buf), "dp=%d", dp);
    if (tp > 1)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%stp=%d", buf[0] ? "," : "", tp);
    if (pp > 1)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%spp=%d", buf[0] ? "," : "", pp);
}

/* Builds stage s of mesh f at `rows` rows a micro-batch (dp alone: a dp rank's rows) into *out.
 * With dp and pp the graph is the rank's own as loom train runs it: stage 0's inputs split over
 * dp, a later stage's received values whole (the shard pass replicates them over dp), so its
 * FLOPs are of the whole micro-batch (docs/cluster.md, "The planner": dp with pp).
 * false with the first message in f->why when it does not build. */
static bool build_stage(planner *P, mesh_fig *f, int rows, int s, stage_fig *out)
{
    ir_diag d;
    ir_diag_init(&d);
    bool sharded = f->tp > 1 || f->pp > 1;
    char spec[64];
    mesh_spec(f->dp, f->tp, f->pp, spec, sizeof spec);
    pass_mesh m;
    bool ok = pass_mesh_parse(spec, 0, P->g, &m, &d);
    int a_pp = pass_mesh_axis(&m, "pp"), a_dp = pass_mesh_axis(&m, "dp");
    if (ok) {
        m.rank = a_pp >= 0 ? pass_mesh_with(&m, 0, a_pp, s) : 0;
        m.local_outputs = true;
        m.virtual_stages = f->virt;
        m.seq_parallel = f->sp;
    }
    ir_graph *L = ok ? eng_train_graph(f->o, P->g, rows, sharded ? &m : NULL, true, "plan", &d) : NULL;
    P->built += L != NULL;
    ok = L && eng_rank_memory_of(L, sharded, f->virt, &P->opt, &out->mem, &d);
    if (ok) {
        out->comm_s = out->wire = 0;
        for (int i = 0; i < L->n_nodes; i++) {
            const ir_node *n = L->nodes[i];
            if (ir_ops[n->op].kind != OK_COMM || n->op == OP_recv)
                continue;
            double bytes = (double)(ir_shape_numel(&(n->op == OP_allgather ? n : n->in[0])->shape) *
                                    ir_dtype_size(n->dtype));
            int T = 2;
            bool spans;
            if (n->op == OP_send) {
                spans = m.rank / P->net.per_node != (int)ir_attr_int(n, "peer") / P->net.per_node;
            } else {
                int a = pass_mesh_axis(&m, ir_attr_str(n, "axis"));
                T = m.size[a];
                spans = eng_net_spans(&P->net, &m, m.rank, a);
            }
            double steps, wire;
            eng_net_traffic(n->op, T, bytes, &steps, &wire);
            out->wire += wire;
            out->comm_s += eng_net_time(&P->net, n->op, T, bytes, spans);
        }
        out->spans_dp = a_dp >= 0 && m.size[a_dp] > 1 && eng_net_spans(&P->net, &m, m.rank, a_dp);
        out->spans_pp = a_pp >= 0 && m.size[a_pp] > 1 && eng_net_spans(&P->net, &m, m.rank, a_pp);
        /* its params by full name (a hash) and local size, for the params two stages hold */
        out->n_params = 0;
        for (int i = 0; i < L->n_nodes; i++) {
            const ir_node *n = L->nodes[i];
            if (n->op != OP_param)
                continue;
            char full[512];
            mesh_slice sl[MESH_MAX_SLICES];
            int n_sl = 0;
            mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl);
            uint64_t h = 0xcbf29ce484222325ull;
            for (const char *c = full; *c; c++)
                h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
            if (out->n_params < MAX_PARAMS)
                out->params[out->n_params++] = (param_key){h, ir_shape_numel(&n->shape)};
        }
    }
    if (!ok && !f->why[0])
        snprintf(f->why, sizeof f->why, "%s", d.n_msg ? d.msg[d.n_msg - 1].msg : "does not build");
    for (int k = 0; !ok && k < d.n_msg; k++)
        if (d.msg[k].level == DIAG_ERROR) {
            snprintf(f->why, sizeof f->why, "%s", d.msg[k].msg);
            break;
        }
    ir_graph_free(L);
    ir_diag_free(&d);
    return ok;
}

/* Each stage's elements of the params another stage holds too (their gradients summed over pp). */
static void tied_params(stage_fig *st, int pp)
{
    for (int s = 0; s < pp; s++) {
        st[s].tied = 0;
        for (int i = 0; i < st[s].n_params; i++)
            for (int o = 0; o < pp; o++) {
                bool found = false;
                for (int j = 0; o != s && j < st[o].n_params && !found; j++)
                    found = st[o].params[j].hash == st[s].params[i].hash;
                if (found) {
                    st[s].tied += (double)st[s].params[i].count;
                    break;
                }
            }
    }
}

/* Builds every stage of f at its two row counts (f->ok false when one does not build). */
static void build_mesh(planner *P, mesh_fig *f)
{
    for (int k = 0; k < 2 && f->ok; k++)
        for (int s = 0; s < f->pp && f->ok; s++) {
            if (k == 1 && f->rows[1] == f->rows[0])
                f->at[1][s] = f->at[0][s];
            else
                f->ok = build_stage(P, f, f->rows[k], s, &f->at[k][s]);
        }
    for (int k = 0; k < 2 && f->ok; k++)
        tied_params(f->at[k], f->pp);
}

/* The config's figures: memory and step time from f's stages interpolated at its rows. */
static void evaluate(const planner *P, const mesh_fig *f, int M, bool one_f_one_b, int zero, config *c)
{
    int r = f->pp > 1 || f->tp > 1 ? P->B / M : P->B / f->dp;
    double t = f->rows[1] > f->rows[0] ? (double)(r - f->rows[0]) / (f->rows[1] - f->rows[0]) : 0;
    *c = (config){.mesh = f, .micro = M, .one_f_one_b = one_f_one_b, .zero = zero,
                  .exact = r == f->rows[0] || r == f->rows[1]};
    double peak = P->net.peak_flops * P->net.mfu, slowest = 0, dp_s = 0, tied_s = 0, traffic = 0, update_s = 0;
    bool spans_pp = false;
    for (int s = 0; s < f->pp; s++) {
        const stage_fig *a = &f->at[0][s], *b = &f->at[1][s];
        eng_rank_memory m = a->mem;
        m.kept = (int64_t)llround(lerp((double)a->mem.kept, (double)b->mem.kept, t));
        m.fwd_values = (int64_t)llround(lerp((double)a->mem.fwd_values, (double)b->mem.fwd_values, t));
        m.bwd_values = (int64_t)llround(lerp((double)a->mem.bwd_values, (double)b->mem.bwd_values, t));
        m.arenas = (int64_t)llround(lerp((double)a->mem.arenas, (double)b->mem.arenas, t));
        m.outputs = (int64_t)llround(lerp((double)a->mem.outputs, (double)b->mem.outputs, t));
        m.grad_arena = (int64_t)llround(lerp((double)a->mem.grad_arena, (double)b->mem.grad_arena, t));
        eng_rank_memory_shard(&m, zero ? f->dp : 1, zero == 2);
        int slots = f->pp > 1 ? pipeline_in_flight(f->pp, s, M, f->virt, one_f_one_b) : 1;
        double mem = eng_rank_memory_total(&m, slots);
        if (mem > c->memory) {
            c->memory = mem;
            c->worst_stage = s;
        }
        double flops = lerp(a->mem.flops, b->mem.flops, t), comm = lerp(a->comm_s, b->comm_s, t);
        double stage = flops / peak + comm;
        if (stage > slowest) {
            slowest = stage;
            c->compute = flops / peak;
            c->comm = comm;
        }
        /* once a step: the gradients over dp, in buckets, ring */
        double grad_bytes = 4.0 * (double)a->mem.state_elems, dp_t = 0, dp_wire = 0;
        if (f->dp > 1 && zero) { /* each group reduce-scattered, then allgathered (padded chunks);
                                  * --zero 2 (dp alone or tp: one micro-batch a step) in buckets */
            for (int k = 0; k < PASS_OPT_GROUPS; k++) {
                int64_t c = pass_opt_chunk(a->mem.n_group[k], f->dp);
                double b = 4.0 * (double)(c * f->dp), wire;
                for (int op = 0; b > 0 && op < 2; op++) {
                    double steps, buckets = op == 0 && zero == 2 ? ceil((double)c / pass_opt_zero2_piece(f->dp)) : 1;
                    eng_net_traffic(op ? OP_allgather : OP_reduce_scatter, f->dp, b, &steps, &wire);
                    dp_t += eng_net_time(&P->net, op ? OP_allgather : OP_reduce_scatter, f->dp, b, a->spans_dp) +
                            (buckets - 1) * steps * (a->spans_dp ? P->net.inter_lat : P->net.intra_lat);
                    dp_wire += wire;
                }
            }
        } else if (f->dp > 1) {
            double buckets = ceil(grad_bytes / DP_BUCKET_BYTES), steps, wire;
            eng_net_traffic(OP_allreduce, f->dp, grad_bytes, &steps, &wire);
            dp_wire = wire;
            dp_t = buckets * steps * (a->spans_dp ? P->net.inter_lat : P->net.intra_lat) +
                   wire / (a->spans_dp ? P->net.inter_bw : P->net.intra_bw);
        }
        dp_s = dp_t > dp_s ? dp_t : dp_s;
        spans_pp = spans_pp || a->spans_pp;
        /* once a step: the optimizer update, memory-bound — each element of the rank's chunk read
         * (params, gradients, state) and written (params, state) once */
        double elems = 0;
        for (int k = 0; k < PASS_OPT_GROUPS; k++)
            elems += (double)pass_opt_chunk(a->mem.n_group[k], zero ? f->dp : 1);
        double upd = 4.0 * (2 * a->mem.n_state + 3) * elems / P->net.mem_bw;
        update_s = upd > update_s ? upd : update_s;
        double tied_t = 0, tied_wire = 0;
        if (f->pp > 1 && a->tied > 0) {
            double steps;
            eng_net_traffic(OP_allreduce, f->pp, 4.0 * a->tied, &steps, &tied_wire);
            tied_t = eng_net_time(&P->net, OP_allreduce, f->pp, 4.0 * a->tied, true);
        }
        tied_s = tied_t > tied_s ? tied_t : tied_s;
        double tr = lerp(a->wire, b->wire, t) * M + dp_wire + tied_wire;
        traffic = tr > traffic ? tr : traffic;
    }
    /* the pipeline: M + pp - 1 micro-batch slots of the slowest stage; with V model chunks a
     * stage, M·V + pp - 1 slots of a chunk's time (a V-th of the stage's) */
    double slots_total = M + (double)(f->pp - 1) / f->virt;
    c->bubble = (double)(f->pp - 1) / (f->virt * M + f->pp - 1);
    /* the pipeline's messages on the critical path: GPipe's forwards run ahead of their
     * receives (the fill and the drain wait, 2(pp-1) messages); 1F1B's steady state waits for
     * the other stage's message at every forward and backward of a chunk (2·M·V) */
    double hops = f->pp < 2 ? 0 : one_f_one_b || f->virt > 1 ? 2.0 * M * f->virt : 2.0 * (f->pp - 1);
    double pp_lat = hops * (spans_pp ? P->net.inter_lat : P->net.intra_lat);
    c->step = slots_total * slowest + dp_s + tied_s + update_s + pp_lat;
    c->comm = c->comm * slots_total + dp_s + tied_s + pp_lat;
    c->compute = c->compute * slots_total + update_s;
    c->traffic = traffic;
}

static int by_step(const void *a, const void *b)
{
    const config *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step ? 1 : 0;
}

/* Rebuilds c's mesh at c's own rows (and with --zero 1 for a ZeRO configuration: its update
 * over a chunk) and evaluates c again: memory exactly as loom check --train. */
static bool exact(planner *P, config *c)
{
    if (c->exact && !c->zero)
        return true;
    const mesh_fig *f = c->mesh;
    mesh_fig *g = malloc(sizeof *g);
    if (!g)
        ir_unreachable("out of memory");
    *g = *f;
    int r = f->pp > 1 || f->tp > 1 ? P->B / c->micro : P->B / f->dp;
    g->rows[0] = g->rows[1] = r;
    bool ok = true;
    pass_opt_config plain = P->opt;
    if (c->zero) {
        P->opt.shards = f->dp;
        P->opt.zero = c->zero;
        P->opt.sumsq_input = true;
    }
    for (int s = 0; ok && s < f->pp; s++) {
        ok = build_stage(P, g, r, s, &g->at[0][s]);
        g->at[1][s] = g->at[0][s];
    }
    P->opt = plain;
    config e;
    if (ok) {
        tied_params(g->at[0], f->pp);
        tied_params(g->at[1], f->pp);
        evaluate(P, g, c->micro, c->one_f_one_b, c->zero, &e);
    }
    free(g);
    if (!ok)
        return false;
    c->memory = e.memory;
    c->worst_stage = e.worst_stage;
    c->exact = true;
    return true;
}

static const char *gib(double b, char *buf, size_t cap)
{
    snprintf(buf, cap, b >= 1073741824.0 ? "%.2f GiB" : "%.2f MiB", b >= 1073741824.0 ? b / 1073741824.0 : b / 1048576.0);
    return buf;
}

static const char *ms(double s, char *buf, size_t cap)
{
    snprintf(buf, cap, s >= 1 ? "%.3f s" : "%.2f ms", s >= 1 ? s : s * 1e3);
    return buf;
}

/* What eng_plan collects: the ranked configurations and the counts it reports, the meshes
 * built on the way (recomputation, model chunks: configurations point into them). */
typedef struct {
    config *cfg;
    int n_cfg, cap_cfg;
    mesh_fig **extra;
    int n_extra, cap_extra;
    int considered, no_shard, no_fit, no_split;
    eng_opts o_rc[2];         /* o with --recompute selective, full */
} plan_run;

/* A mesh like f (to build), kept with the run. */
static mesh_fig *new_mesh(plan_run *run, const mesh_fig *f)
{
    mesh_fig *m = calloc(1, sizeof *m);
    if (!m)
        ir_unreachable("out of memory");
    *m = *f;
    m->ok = true;
    m->why[0] = 0;
    ir_grow((void **)&run->extra, &run->cap_extra, run->n_extra + 1, sizeof *run->extra);
    run->extra[run->n_extra++] = m;
    return m;
}

/* The configurations of mesh f: each micro-batch count of Ms under each schedule (1: 1F1B
 * alone), with ZeRO, then sequence parallelism (tp > 1), then recomputation where only they
 * make it fit (their meshes built once a configuration needs them). */
static void mesh_configs(planner *P, plan_run *run, const mesh_fig *f, const int *Ms, int n_M, int schedules)
{
    mesh_fig *with_rc[2] = {NULL, NULL}, *with_sp = NULL;
    int zmax = f->dp > 1 ? (f->pp > 1 ? 1 : 2) : 0; /* --zero 2 not under pp: no tied sums modelled */
    for (int i = 0; i < n_M; i++)
        for (int sch = 0; sch < schedules; sch++) {
            config c;
            evaluate(P, f, Ms[i], sch == 0, 0, &c);
            for (int z = 1; z <= zmax && c.memory > P->budget; z++) /* ZeRO, where it makes it fit */
                evaluate(P, f, Ms[i], sch == 0, z, &c);
            if (c.memory > P->budget && f->tp > 1 && !f->sp) {
                if (!with_sp) {
                    with_sp = new_mesh(run, f);
                    with_sp->sp = true;
                    build_mesh(P, with_sp);
                }
                for (int z = 0; with_sp->ok && z <= zmax && (z == 0 || c.memory > P->budget); z++)
                    evaluate(P, with_sp, Ms[i], sch == 0, z, &c);
            }
            for (int rc = 0; rc < 2 && c.memory > P->budget && !eng_named(P->o, "--recompute"); rc++) {
                if (!with_rc[rc]) {
                    with_rc[rc] = new_mesh(run, f);
                    with_rc[rc]->o = &run->o_rc[rc];
                    with_rc[rc]->recompute = rc + 1;
                    build_mesh(P, with_rc[rc]);
                }
                for (int z = 0; with_rc[rc]->ok && z <= zmax && (z == 0 || c.memory > P->budget); z++)
                    evaluate(P, with_rc[rc], Ms[i], sch == 0, z, &c);
                if (!with_rc[rc]->ok)
                    c.memory = INFINITY;
            }
            if (c.memory > P->budget) {
                run->no_fit++;
                continue;
            }
            ir_grow((void **)&run->cfg, &run->cap_cfg, run->n_cfg + 1, sizeof *run->cfg);
            run->cfg[run->n_cfg++] = c;
        }
}

bool eng_plan(const eng_opts *o, ir_diag *d)
{
    double t0 = rt_now_ms();
    int64_t devices = 0, top = 5, batch = 0;
    if (!eng_named(o, "--devices")) {
        ir_diag_error(d, -1, 0, 0, "plan: --devices N is required (the devices to plan for)");
        return false;
    }
    if (!eng_named_int(o, "plan", "--devices", 1, 65536, &devices, d) || !eng_named_int(o, "plan", "--top", 1, 1000, &top, d) ||
        !eng_named_int(o, "plan", "--batch", 1, 1 << 24, &batch, d))
        return false;
    planner P = {.o = o, .net = eng_net_default(), .budget = 80.0 * 1073741824.0, .opt = pass_opt_config_default()};
    const char *mem = eng_named(o, "--device-memory"), *optimizer = eng_named(o, "--optimizer");
    if (mem && !eng_parse_bytes(mem, &P.budget)) {
        ir_diag_error(d, -1, 0, 0, "plan: --device-memory expects a size like 80GiB, 40GB or 512MiB, got '%s'", mem);
        return false;
    }
    if (optimizer && strcmp(optimizer, "adamw") != 0 && strcmp(optimizer, "sgd") != 0) {
        ir_diag_error(d, -1, 0, 0, "plan: --optimizer must be adamw or sgd, got '%s'", optimizer);
        return false;
    }
    if (optimizer && strcmp(optimizer, "sgd") == 0) {
        P.opt.kind = PASS_OPT_SGD;
        P.opt.momentum = 0.9;
    }
    char rc_buf[256]; /* --recompute: every configuration built with it (eng_train_graph) */
    if (!eng_net_options(o, "plan", &P.net, d) ||
        !eng_recompute_pipeline(o, pass_gradient_pipeline(), "plan", rc_buf, sizeof rc_buf, d))
        return false;
    /* the model at the planned batch (--batch: -D batch=B) */
    eng_opts ob = *o;
    char num[32], why[256];
    snprintf(num, sizeof num, "%" PRId64, batch);
    if (batch && !eng_opts_define(&ob, "batch", num, why, sizeof why)) {
        ir_diag_error(d, -1, 0, 0, "plan: %s", why);
        return false;
    }
    P.o = &ob;
    ir_graph *g = eng_load_graph(&ob, d);
    if (!g)
        return false;
    const ir_node *tok = eng_find_node(g, OP_input, "tokens");
    if (!tok || tok->dtype != DT_I32 || tok->shape.rank != 2 || !eng_find_node(g, OP_input, "targets") ||
        !eng_find_node(g, OP_output, "loss")) {
        ir_diag_error(d, -1, 0, 0, "plan: the model must train as loom train trains it: inputs 'tokens' and "
                      "'targets' (i32[batch, seq]) and an output 'loss'");
        ir_graph_free(g);
        return false;
    }
    if (batch && tok->shape.dim[0] != batch) {
        ir_diag_error(d, -1, 0, 0, "plan: --batch %" PRId64 ": the model's tokens have %" PRId64 " rows with -D batch=%" PRId64 "; "
                      "its batch is not the hparam 'batch'", batch, tok->shape.dim[0], batch);
        ir_graph_free(g);
        return false;
    }
    P.g = g;
    P.B = (int)tok->shape.dim[0];

    /* every mesh of N ranks whose dp divides the batch */
    int n_mesh = 0, cap_mesh = 0;
    for (long tp = 1; tp <= devices; tp++)
        for (long pp = 1; devices % tp == 0 && pp <= devices / tp; pp++)
            cap_mesh += (devices / tp) % pp == 0;
    mesh_fig *meshes = calloc((size_t)cap_mesh, sizeof *meshes); /* configs point into it: never moved */
    if (!meshes)
        ir_unreachable("out of memory");
    /* the recomputation fallbacks' options: o with --recompute selective, full */
    plan_run run = {.o_rc = {ob, ob}};
    for (int k = 0; k < 2 && ob.n_named < (int)(sizeof ob.named_key / sizeof *ob.named_key); k++) {
        run.o_rc[k].named_key[run.o_rc[k].n_named] = "--recompute";
        run.o_rc[k].named_value[run.o_rc[k].n_named++] = k == 0 ? "selective" : "full";
    }
    for (long tp = 1; tp <= devices; tp++) {
        if (devices % tp)
            continue;
        for (long pp = 1; pp <= devices / tp; pp++) {
            if ((devices / tp) % pp)
                continue;
            int dp = (int)(devices / tp / pp);
            bool sharded = tp > 1 || pp > 1;
            /* micro-batch counts: B/M rows a multiple of dp (1 without pp) */
            int Ms[64], n_M = 0;
            for (int M = 1; M <= (pp > 1 ? P.B : 1) && n_M < 64; M++)
                if (P.B % M == 0 && (P.B / M) % dp == 0)
                    Ms[n_M++] = M;
            int schedules = pp > 1 ? 2 : 1;
            if (pp > MAX_STAGES || n_M == 0) {
                run.considered += n_M ? n_M * schedules : schedules;
                run.no_split += n_M ? n_M * schedules : schedules;
                continue;
            }
            mesh_fig *f = &meshes[n_mesh++];
            memset(f, 0, sizeof *f);
            *f = (mesh_fig){.dp = dp, .tp = (int)tp, .pp = (int)pp, .o = P.o, .ok = true, .virt = 1};
            /* rows a micro-batch at the most and the fewest micro-batches (dp alone: a dp rank's) */
            f->rows[0] = sharded ? P.B / Ms[n_M - 1] : P.B / dp;
            f->rows[1] = sharded ? P.B / Ms[0] : P.B / dp;
            build_mesh(&P, f);
            run.considered += n_M * schedules;
            if (!f->ok) {
                run.no_shard += n_M * schedules;
                continue;
            }
            mesh_configs(&P, &run, f, Ms, n_M, schedules);
            /* interleaved 1F1B, 2 model chunks a stage: micro-batch counts a multiple of pp */
            int Mv[64], n_Mv = 0;
            for (int i = 0; pp > 1 && i < n_M; i++)
                if (Ms[i] % pp == 0)
                    Mv[n_Mv++] = Ms[i];
            if (!n_Mv)
                continue;
            mesh_fig *fv = new_mesh(&run, f);
            fv->virt = 2;
            fv->rows[0] = P.B / Mv[n_Mv - 1];
            fv->rows[1] = P.B / Mv[0];
            build_mesh(&P, fv);
            run.considered += n_Mv;
            if (!fv->ok)
                run.no_shard += n_Mv;
            else
                mesh_configs(&P, &run, fv, Mv, n_Mv, 1);
        }
    }
    config *cfg = run.cfg;
    int n_cfg = run.n_cfg, considered = run.considered, no_shard = run.no_shard, no_fit = run.no_fit,
        no_split = run.no_split, n_extra = run.n_extra;
    mesh_fig **extra = run.extra;
    if (n_cfg)
        qsort(cfg, (size_t)n_cfg, sizeof *cfg, by_step);

    char buf[256], a[32], b[32], c3[32], c4[32], c5[32];
    double flops_step = 0;
    for (int i = 0; i < g->n_nodes; i++)
        flops_step += ir_ops[g->nodes[i]->op].cost(g->nodes[i]);
    printf("plan: %s on %" PRId64 " device%s of %s, batch %d x %" PRId64 " tokens, %s; forward %.3g FLOPs a step\n",
           o->file ? o->file : g->name, devices, devices == 1 ? "" : "s", gib(P.budget, a, sizeof a), P.B,
           tok->shape.dim[1], optimizer ? optimizer : "adamw", flops_step);
    printf("machine: %s; %.4g TFLOP/s peak at %.0f%% (--mfu); memory %.3g TB/s\n", eng_net_str(&P.net, buf, sizeof buf),
           P.net.peak_flops / 1e12, 100 * P.net.mfu, P.net.mem_bw / 1e12);
    /* the printed choices: rebuilt at their own rows where interpolated (exact memory) */
    int shown = 0, dropped = 0;
    for (int i = 0; i < n_cfg && shown < top; i++) {
        config *c = &cfg[i];
        if (!exact(&P, c) || c->memory > P.budget) { /* the interpolation said it fits; it does not */
            no_fit++;
            dropped++;
            continue;
        }
        if (shown == 0)
            printf("  #  mesh              micro  schedule  step time   compute     comm (exposed)  bubble  memory/rank  "
                   "traffic/rank/step\n");
        const mesh_fig *f = c->mesh;
        char spec[64], cmd[1200] = "";
        mesh_spec(f->dp, f->tp, f->pp, spec, sizeof spec);
        if (c->zero)
            snprintf(spec + strlen(spec), sizeof spec - strlen(spec), " zero%d", c->zero);
        if (f->sp)
            snprintf(spec + strlen(spec), sizeof spec - strlen(spec), " sp");
        if (f->recompute)
            snprintf(spec + strlen(spec), sizeof spec - strlen(spec), " rc-%s", f->recompute == 1 ? "sel" : "full");
        char sched[16];
        snprintf(sched, sizeof sched, "%s", f->pp == 1 ? "-" : f->virt > 1 ? "1f1b" : c->one_f_one_b ? "1f1b" : "gpipe");
        if (f->virt > 1) /* interleaved: its chunks a stage */
            snprintf(sched + strlen(sched), sizeof sched - strlen(sched), " v%d", f->virt);
        printf("  %-2d %-17s %-6d %-9s %-11s %-11s %-15s %5.1f%%  %-12s %s\n", shown + 1, spec[0] ? spec : "(one rank)",
               c->micro, sched, ms(c->step, a, sizeof a),
               ms(c->compute, b, sizeof b), ms(c->comm, c3, sizeof c3), 100 * c->bubble, gib(c->memory, c4, sizeof c4),
               gib(c->traffic, c5, sizeof c5));
        snprintf(cmd, sizeof cmd, "%sloom train %s", devices > 1 ? "" : "", o->file ? o->file : "MODEL");
        if (devices > 1) {
            char pre[64];
            snprintf(pre, sizeof pre, "mpirun -np %" PRId64 " ", devices);
            memmove(cmd + strlen(pre), cmd, strlen(cmd) + 1);
            memcpy(cmd, pre, strlen(pre));
        }
        for (int k = 0; k < ob.n_defines; k++)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " -D %s=%s", ob.defines[k].name, ob.defines[k].value);
        mesh_spec(f->dp, f->tp, f->pp, spec, sizeof spec);
        if (spec[0])
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --mesh %s", spec);
        if (c->zero)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --zero %d", c->zero);
        if (f->sp)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --sequence-parallel");
        if (f->pp > 1)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --microbatches %d --schedule %s", c->micro,
                     c->one_f_one_b ? "1f1b" : "gpipe");
        if (f->virt > 1)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --virtual-stages %d", f->virt);
        if (optimizer)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --optimizer %s", optimizer);
        if (eng_named(o, "--recompute") || f->recompute)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --recompute %s",
                     f->recompute == 1 ? "selective" : f->recompute == 2 ? "full" : eng_named(o, "--recompute"));
        printf("     %s --data DATA ...\n", cmd);
        shown++;
    }
    printf("considered %d configurations (%d meshes dp x tp x pp of %" PRId64 ", micro-batch counts, schedules; --zero 1 "
           "or 2, --sequence-parallel and --recompute where only they fit): %d ranked, "
           "%d do not fit %s, %d do not shard or pipeline the model, %d do not split the batch; %d gradient programs "
           "built, %.2f s\n",
           considered, n_mesh, devices, n_cfg - dropped, no_fit, gib(P.budget, a, sizeof a), no_shard, no_split, P.built,
           (rt_now_ms() - t0) / 1e3);
    for (int i = 0, named = 0; i < n_mesh; i++)
        if (!meshes[i].ok) {
            char spec[64];
            mesh_spec(meshes[i].dp, meshes[i].tp, meshes[i].pp, spec, sizeof spec);
            if (named++ < 8)
                printf("  not planned: %s: %s\n", spec, meshes[i].why);
            else if (named == 9)
                printf("  (more meshes not planned)\n");
        }
    if (shown == 0) {
        const char *why = NULL;
        for (int i = 0; i < n_mesh && !why; i++)
            if (!meshes[i].ok)
                why = meshes[i].why;
        ir_diag_error(d, -1, 0, 0,
                      "plan: none of the %d configurations of %" PRId64 " devices runs: %d do not fit %s a device, %d do "
                      "not shard or pipeline the model%s%s%s, %d do not split the batch of %d rows over dp",
                      considered, devices, no_fit, gib(P.budget, a, sizeof a), no_shard, why ? " (" : "",
                      why ? why : "", why ? ")" : "", no_split, P.B);
    }
    free(cfg);
    for (int i = 0; i < n_extra; i++)
        free(extra[i]);
    free(extra);
    free(meshes);
    ir_graph_free(g);
    return shown > 0;
}
