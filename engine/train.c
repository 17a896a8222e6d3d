/* cmd_train.c — `loom train MODEL --data FILE --steps N [options]`: trains a model on the CPU
 * (options, output and guarantees in docs/training.md).
 *
 * Two programs compiled once over one thread pool (engine/program.h): the gradient program (the
 * model pruned to its "loss" output, through the training pipeline: autodiff, dce, cse, fuse)
 * and the update program (passes/optimizer.c: AdamW or SGD as graph IR). A step runs the
 * gradient program --accum times on consecutive batches of the loader (text/tokens.h),
 * summing the gradients on the host, then the update program with this step's learning rate
 * (warmup + cosine, computed here) and copies its outputs — the new params and optimizer state —
 * back into the host buffers every program reads. An eval program (loss only) gives the
 * validation loss; a batch-1 logits program generates the sample. The training state (params,
 * optimizer state, step, batch counter, sampler position) is what a checkpoint holds, so a
 * resumed run continues bit for bit.
 *
 * Under a launcher with --mesh (docs/cluster.md, "Training"): dp alone splits each global batch
 * by rows and averages the gradients with a bucketed allreduce; with tp or pp the gradient
 * program is autodiff then the shard/pipeline passes, run over the mesh by engine/mesh_exec.h.
 * Either way every rank ends the step with the one-rank gradients and runs the same update.
 *
 * --precision bf16|fp16 (docs/training.md, "Mixed precision"): the gradient and eval programs
 * run the lower-precision pass (activations and GEMMs in half, reductions, params — the fp32
 * masters — and gradients in f32); the update stays f32. fp16 adds dynamic loss scaling
 * (engine/loss_scale.h): the gradient program computes the gradients of scale · loss (an input
 * "loss_scale"), which are unscaled on the host; a step with inf/nan gradients is skipped.
 */
#include "runtime/clock.h"
#include "io/checkpoint.h"
#include "engine/jobs.h"
#include "engine/compress.h"
#include "runtime/memory.h"
#include "engine/train.h"
#include "engine/run_values.h"
#include "collectives/coll.h"
#include "text/data.h"
#include "io/hf.h"
#include "io/init.h"
#include "engine/loss_scale.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "engine/metrics.h"
#include "engine/profile.h"
#include "passes/optimizer.h"
#include "passes/pass.h"
#include "engine/program.h"
#include "io/safetensors.h"
#include "text/tokens.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SAMPLE_KEY 0x73616D706C650000ull /* "sample": the sampler's SplitMix64 stream */
enum { STEP_KINDS = 6 }; /* --stats per step: gemm, attention, elementwise, reduction, optimizer, copy */
#define EVAL_CHUNK 16 /* validation batches enqueued on a device before one read-back of their losses */

typedef struct {
    const char *data, *log, *checkpoint, *resume, *prompt, *trace;
    bool nan_skip;                    /* --on-nan skip (default stop) */
    int64_t steps, warmup, eval_every, eval_batches, sample, top_k, save_every;
    double lr, min_lr, temperature;
    pass_opt_config opt;
} train_opts;

/* ---- options ------------------------------------------------------------------------------- */

static bool opt_int(const eng_opts *o, const char *key, int64_t lo, int64_t *out, ir_diag *d)
{
    const char *v = eng_named(o, key);
    if (!v)
        return true;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo) {
        ir_diag_error(d, -1, 0, 0, "train: %s expects an integer >= %" PRId64 ", got '%s'", key, lo, v);
        return false;
    }
    *out = x;
    return true;
}

/* A finite number in [lo, hi] (open at lo when lo_open). */
static bool opt_num(const eng_opts *o, const char *key, double lo, bool lo_open, double hi, double *out, ir_diag *d)
{
    const char *v = eng_named(o, key);
    if (!v)
        return true;
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !isfinite(x) || x < lo || (lo_open && x == lo) || x > hi) {
        ir_diag_error(d, -1, 0, 0, "train: %s expects a number in %s%g, %g], got '%s'", key, lo_open ? "(" : "[", lo,
                      hi, v);
        return false;
    }
    *out = x;
    return true;
}

bool eng_train_optimizer(const eng_opts *o, pass_opt_config *c, ir_diag *d)
{
    *c = pass_opt_config_default();
    c->momentum = 0.9;
    int64_t accum = 1;
    const char *optimizer = eng_named(o, "--optimizer");
    bool ok = opt_int(o, "--accum", 1, &accum, d) && opt_num(o, "--weight-decay", 0, false, 10, &c->weight_decay, d) &&
              opt_num(o, "--beta1", 0, false, 0.999999, &c->beta1, d) &&
              opt_num(o, "--beta2", 0, false, 0.999999, &c->beta2, d) && opt_num(o, "--eps", 0, true, 1, &c->eps, d) &&
              opt_num(o, "--clip", 0, false, 1e30, &c->clip, d) &&
              opt_num(o, "--momentum", 0, false, 0.999999, &c->momentum, d);
    if (!ok)
        return false;
    if (accum > 1000000) {
        ir_diag_error(d, -1, 0, 0, "train: --accum %" PRId64 " is too large", accum);
        return false;
    }
    c->accum = (int)accum;
    if (optimizer && strcmp(optimizer, "sgd") == 0)
        c->kind = PASS_OPT_SGD;
    else if (optimizer && strcmp(optimizer, "adamw") != 0) {
        ir_diag_error(d, -1, 0, 0, "train: --optimizer must be adamw or sgd, got '%s'", optimizer);
        return false;
    }
    return true;
}

bool eng_zero(const eng_opts *o, int dp, const char *cmd, pass_opt_config *c, ir_diag *d)
{
    int64_t z = 0;
    c->shards = 1;
    c->zero = 0;
    if (!eng_named_int(o, cmd, "--zero", 0, 2, &z, d))
        return false;
    if (z > 0 && dp < 2) {
        ir_diag_error(d, -1, 0, 0, "%s: --zero %d shards the %s over the dp ranks; it needs --mesh with dp > 1", cmd,
                      (int)z, z == 1 ? "optimizer state" : "optimizer state and the summed gradients");
        return false;
    }
    c->shards = z > 0 ? dp : 1;
    c->zero = (int)z;
    return true;
}

static bool parse_opts(const eng_opts *o, train_opts *t, ir_diag *d)
{
    *t = (train_opts){.steps = -1, .eval_batches = 10, .sample = 256, .lr = 3e-4, .min_lr = -1, .temperature = 1.0,
                      .prompt = "\n"};
    t->data = eng_named(o, "--data");
    t->log = eng_named(o, "--log");
    t->checkpoint = eng_named(o, "--checkpoint");
    t->resume = eng_named(o, "--resume");
    t->trace = eng_named(o, "--trace");
    const char *on_nan = eng_named(o, "--on-nan");
    if (on_nan && strcmp(on_nan, "stop") != 0 && strcmp(on_nan, "skip") != 0) {
        ir_diag_error(d, -1, 0, 0, "train: --on-nan must be stop or skip, got '%s'", on_nan);
        return false;
    }
    t->nan_skip = on_nan && strcmp(on_nan, "skip") == 0;
    if (eng_named(o, "--prompt"))
        t->prompt = eng_named(o, "--prompt");
    bool ok = eng_train_optimizer(o, &t->opt, d) && opt_int(o, "--steps", 0, &t->steps, d) &&
              opt_int(o, "--warmup", 0, &t->warmup, d) && opt_int(o, "--eval-every", 0, &t->eval_every, d) &&
              opt_int(o, "--eval-batches", 1, &t->eval_batches, d) && opt_int(o, "--sample", 0, &t->sample, d) &&
              opt_int(o, "--top-k", 0, &t->top_k, d) && opt_int(o, "--save-every", 0, &t->save_every, d) &&
              opt_num(o, "--lr", 0, true, 10, &t->lr, d) && opt_num(o, "--min-lr", 0, false, 10, &t->min_lr, d) &&
              opt_num(o, "--temperature", 0, false, 100, &t->temperature, d);
    if (!ok)
        return false;
    if (t->min_lr < 0)
        t->min_lr = t->lr / 10;
    if (t->min_lr > t->lr) {
        ir_diag_error(d, -1, 0, 0, "train: --min-lr %g is above --lr %g", t->min_lr, t->lr);
        return false;
    }
    if (!t->data) {
        ir_diag_error(d, -1, 0, 0, "train: --data FILE is required (text, or a token file from loom tokenize)");
        return false;
    }
    if (t->steps < 0) {
        ir_diag_error(d, -1, 0, 0, "train: --steps N is required");
        return false;
    }
    if (o->target && strcmp(o->target, "cpu") != 0 && strncmp(o->target, "opencl", 6) != 0 &&
        strncmp(o->target, "cuda", 4) != 0) {
        ir_diag_error(d, -1, 0, 0, "train: --target %s is not supported (cpu, cuda or opencl[:P[:D]])", o->target);
        return false;
    }
    if (o->n_extra > 0) {
        ir_diag_error(d, -1, 0, 0, "train: unexpected argument '%s' (one model file)", o->extra[0]);
        return false;
    }
    return true;
}

/* Learning rate of step s (1-based): linear warmup to lr, then cosine down to min_lr at the last step. */
static double lr_at(const train_opts *t, int64_t s)
{
    if (s <= t->warmup)
        return t->lr * (double)s / (double)t->warmup;
    if (t->steps <= t->warmup)
        return t->lr;
    double p = (double)(s - t->warmup) / (double)(t->steps - t->warmup);
    return t->min_lr + 0.5 * (t->lr - t->min_lr) * (1 + cos(M_PI * p));
}

/* ---- graphs -------------------------------------------------------------------------------- */

/* The model's token input or targets: i32 [B, T]. */
static const ir_node *batch_input(const ir_graph *g, const char *name, ir_diag *d)
{
    const ir_node *n = eng_find_node(g, OP_input, name);
    if (!n || n->dtype != DT_I32 || n->shape.rank != 2) {
        ir_diag_error(d, -1, 0, 0, "train: the model needs an input '%s' of type i32[batch, seq]", name);
        return NULL;
    }
    return n;
}

/* ---- the training state ---------------------------------------------------------------------- */

/* A param of this rank's state: where it lives in its flat optimizer group (optimizer.h).
 * Under tp/pp, the rank's slice of a param (its name carries the slices) of its stage. */
typedef struct {
    const char *name;
    ir_shape shape;
    size_t count, off;
    int group;
    int holders;  /* pipeline stages holding it (a tied param: 2); 1 without pp */
    bool sliced;  /* split over tp: each tp rank holds another part */
} model_param;

/* A DP_BUCKET of a flat gradient group, reduced at once, and the gradient program's step
 * after which all of its gradients are final. */
typedef struct {
    int group;
    int64_t at, n;
    int step;
} bucket;

struct eng_trainer {
    ir_diag *d;                       /* the current call's */
    rt_st_file init_w;                /* --weights (or --hf): the start of fine-tuning */
    bool have_init;
    const eng_opts *o;                /* the options it was made with (the caller's) */
    bool quiet;                       /* no progress lines (the C API) */
    bool first;                       /* no step run yet in this process */
    train_opts t;
    ir_graph *g;                      /* the model */
    int B, T, V;                      /* batch, seq, vocab (V 0: no logits output) */
    rt_tokens tokens;
    rt_loader loader;
    rt_pool *pool;
    program *grad, *update, *eval, *sample;
    int n_params;
    model_param *params;
    int n_state;                      /* optimizer state tensors per group: 0, 1 (sgd) or 2 (adamw) */
    const char *state_name[2];
    int64_t n_group[PASS_OPT_GROUPS];
    float *flat[PASS_OPT_GROUPS];     /* the params, flat by group: every program reads these */
    float *state[PASS_OPT_GROUPS][2]; /* optimizer state, same layout */
    float *grads[PASS_OPT_GROUPS];    /* gradients summed over the micro-batches of a step */
    uint8_t *keep[PASS_OPT_GROUPS];   /* --mask: 0 where a param is held at zero (NULL: none) */
    int n_teacher;                    /* --teacher: the teacher's params, inputs "teacher/NAME" of */
    char **teacher_name;              /* the gradient program (passes/distill.c), f32 host copies */
    float **teacher_data;
    int32_t *inputs, *targets;
    float lr_in, step_in;             /* the update program's scalar inputs */
    int64_t step;                     /* steps done */
    uint64_t next_batch, rng;
    double t_start;                   /* when the first step started (the val lines' time) */
    FILE *log;
    /* data parallel (--mesh dp=N under mpirun): this rank computes rows [dp_rank·Bl, +Bl) of
     * each global batch of B rows with programs built for Bl = B / dp rows, then the gradients
     * and the loss are averaged over the dp ranks; without --mesh dp is 1 and g_* alias inputs */
    int dp, dp_rank, Bl;
    int world_rank, world_size;      /* from the launcher's environment (0, 1 without one) */
    coll_comm *world;
    /* tensor parallel (--mesh with tp > 1): the gradient program is autodiff on the whole
     * model, then the shard pass for this rank (so the backward is sharded like the forward,
     * with the allreduces where partial gradients meet replicated values), run by mesh_exec
     * over the mesh; its grad/<param> outputs come back whole, so every rank holds the full
     * params and runs the same update; the shard pass also splits the batch over dp */
    pass_mesh mesh;
    coll_comm *axis[IR_MAX_MESH_AXES];
    mesh_run *mgrad;
    /* pipeline micro-batches (--microbatches, --schedule): each batch runs as `micro`
     * micro-batches of Bm rows through the mesh program, in the schedule's order */
    int micro, Bm;
    mesh_schedule schedule;
    double micro_loss;               /* this rank's loss summed over a batch's micro-batches */
    float sumsq_in;                  /* sharded or ZeRO: the update's grad_sumsq (global Σ g²) */
    /* ZeRO (--zero 1, docs/cluster.md): the optimizer state sharded over the zn dp ranks of
     * zcomm (the world under dp alone, else the dp axis). Rank zrank updates elements
     * [zrank·zchunk, +zchunk) of each group (flat and grads padded with zeros to zn·zchunk;
     * state holds the chunk alone): the summed gradients reduce-scattered in place (the
     * chunk's sums in its place in grads, the rest of grads undefined until the next step
     * writes it), the chunk updated, the params allgathered in place; checkpoints hold the
     * whole state (gathered). Without ZeRO zn is 1 and zchunk the group's size.
     * --zero 2 (zero2): grads holds the chunk alone — elements [gbase, +glen) of each group —
     * and each micro-batch's gradients are reduce-scattered into it bucket by bucket
     * (zero2_scatter), so no whole gradient sum exists */
    int zn, zrank;
    bool zero2;
    int64_t gbase[PASS_OPT_GROUPS], glen[PASS_OPT_GROUPS];
    float *zstage, *zrecv;            /* zero2: a bucket's staging (zn pieces) and its chunk's sums */
    const float **zsrc;               /* zero2: a micro-batch's gradient of each param */
    float **ztied;                    /* zero2 under pp: a tied param's whole gradient sum (its
                                         stages' partial sums are added over pp first) */
    coll_comm *zcomm;
    int64_t zchunk[PASS_OPT_GROUPS];
    /* overlap (dp alone on the host, "Overlap" in docs/cluster.md): in a step's last
     * micro-batch each gradient goes into its flat group as soon as the gradient program's step
     * that finishes it has run (program_output_step), and each bucket's allreduce starts once
     * all of its gradients are there, while the backward goes on; the step waits for them after
     * the run. Off: LOOM_DP_OVERLAP=0 (the whole reduction after the backward); under tp/pp
     * on only with LOOM_DP_OVERLAP=1 (the runner's steps: overlap_mesh_step). */
    bool overlap;
    int *grad_step;                  /* per param: the step after which its gradient is final */
    int n_buckets, cap_buckets;
    bucket *buckets;
    bool sum_into;                   /* the hook adds to the flat gradients (not the first
                                        micro-batch) */
    coll_comm *ocomm;                /* the buckets' comm: the world under dp alone, else dp's */
    bool *taken, *started;           /* tp/pp: per param and bucket, done in this step */
    bool overlap_now;                /* tp/pp: this accumulation step is the step's last */
    int n_model_params;              /* sharded, per model param: stages holding it, its size */
    int64_t *tied_holders, *tied_count; /* on a holder, and its index in params (-1: none) */
    int *tied_local;
    int32_t *g_inputs, *g_targets;   /* the global batch */
    ir_dtype half;                   /* --precision: DT_BF16 or DT_F16 (mixed), else DT_F32 */
    rt_loss_scale scaler;            /* fp16: the dynamic loss scale */
    float loss_scale_in;             /* the gradient program's "loss_scale" input (fp16) */
    float grad_scale_in;             /* fp16 on a device: the update's "grad_scale" (1 / scale) */
    bool skipped;                    /* fp16: this step's gradients overflowed; no update */
    const char *nan_what;            /* --on-nan skip: what was not finite in a skipped step */
    char nan_name[640];
    double comm_ms;                  /* communication time of the current step */
    int64_t comm_bytes;              /* bytes allreduced per step (each rank's buffers) */
    /* device-resident training (--target cpu|opencl|cuda, one process; "Device-resident
     * training" below): every program on one device; params and optimizer state in two
     * halves of device buffers (the update reads half cur and writes the other: output→param
     * binding, swapped after a good step), gradients summed on the device */
    program_device *dev;
    program *accum;                  /* accum > 1: the sums += a micro-batch's, in place */
    program_buf *dparams[2][PASS_OPT_GROUPS], *dstate[2][PASS_OPT_GROUPS][2];
    program_buf *dgrads[PASS_OPT_GROUPS], *dgrads_mb[PASS_OPT_GROUPS]; /* summed; one micro-batch's */
    program_buf *deval;              /* f32 [EVAL_CHUNK]: evaluation's losses, read back at once */
    int32_t *eval_stage;             /* evaluation's batches (EVAL_CHUNK slots), as stage */
    program_buf *dscal;              /* f32 [loss summed over the micro-batches, grad norm, one
                                        micro-batch's loss]: the step's only read-back */
    int cur;                         /* the half holding the params */
    int grads_to;                    /* the gradient program's outputs go to: 0 the sums, 1 the
                                        micro-batch buffers, -1 not bound yet */
    int32_t *stage;                  /* a step's batches (tokens, targets per micro-batch; one
                                        more slot: the next step's first, prefetched): the host
                                        memory of their uploads, unchanged until the step's
                                        read-back waited for them */
    uint64_t prefetched;             /* the batch whose tokens and targets are already bound to
                                        the gradient program (UINT64_MAX: none) */
    bool host_stale;                 /* flat/state behind the device's */
    bool in_place;                   /* one half: the update writes its inputs (device_setup) */
    rt_xfer xfer_step;               /* host↔device bytes of the last step (train_step alone) */
    double kind_ms[STEP_KINDS];      /* --stats on a device: device ms by kind so far (kind_ms) */
    eng_comm_meter meter;            /* under --mesh: bytes per axis (engine/profile.h) */
    bool failed_everywhere;          /* setup failed the same way on every rank (collective
                                        matching): rank 0 says it, no abort */
    double step_flops;               /* one step of the whole model by ir/cost.c (metrics.h) */
    double peak_flops;               /* one device's peak (--peak-tflops, else known; 0: unknown) */
    bool log_csv;                    /* --log FILE.csv (else JSON lines) */
};
typedef struct eng_trainer trainer;

static float *param_data(trainer *r, const model_param *mp) { return r->flat[mp->group] + mp->off; }

static bool bind_model_params(trainer *r, program *p)
{
    for (int i = 0; i < r->n_params; i++)
        if (program_find(p, OP_param, r->params[i].name) &&
            !program_bind(p, r->params[i].name, param_data(r, &r->params[i]), r->d))
            return false;
    return true;
}

static float *alloc_floats(int64_t n)
{
    float *x = calloc((size_t)n + 1, sizeof *x);
    if (!x)
        ir_unreachable("out of memory");
    return x;
}

/* --zero 2: the elements of a rank's chunk one reduce-scatter gives it. */
static int64_t z2_piece(const trainer *r) { return pass_opt_zero2_piece(r->zn); }

/* Element idx of group k's gradient sums (--zero 2 holds this rank's chunk alone). */
static float *grad_at(trainer *r, int k, int64_t idx) { return r->grads[k] + (idx - r->gbase[k]); }

typedef struct {
    const ir_node *full;
    uint64_t seed;
    double *dst;
    int n, cap;
    int64_t (*run)[3]; /* e, f, len */
} init_runs;

/* mesh_slice_runs: a run of the slice (elements e..e+len, f..f+len of the whole param). */
static void add_run(void *ctx, int64_t e, int64_t f, int64_t len)
{
    init_runs *c = ctx;
    ir_grow((void **)&c->run, &c->cap, c->n + 1, sizeof *c->run);
    c->run[c->n][0] = e, c->run[c->n][1] = f, c->run[c->n][2] = len;
    c->n++;
}

/* The whole param's init values of runs [lo, hi) (loom init's numbers: counter-based). */
static void init_runs_range(void *ctx, int64_t lo, int64_t hi)
{
    const init_runs *c = ctx;
    for (int64_t i = lo; i < hi; i++)
        rt_init_param(c->full, c->seed, (size_t)c->run[i][1], (size_t)c->run[i][2], c->dst + c->run[i][0]);
}

/* The flat groups and the param layout of the params of pg — the model, or under tp/pp the
 * rank's own slices (names with slices, mesh.h) of its stage's params — initialized as `loom
 * init` initializes the whole model. */
static bool setup_state(trainer *r, uint64_t seed, const ir_graph *pg)
{
    const pass_opt_config *c = &r->t.opt;
    pass_opt_group_sizes(pg, c, r->n_group);
    r->n_state = pass_opt_state_names(c, r->state_name);
    /* params, gradients and the optimizer's moments, f32 each: known before any is allocated */
    int64_t n = r->n_group[0] + r->n_group[1];
    char what[128];
    snprintf(what, sizeof what, "train: the training state (%.2fM params: params, gradients, optimizer state)",
             (double)n / 1e6);
    if (!rt_host_alloc_ok(n > INT64_MAX / 16 ? -1 : n * 4 * (2 + r->n_state), what, r->d))
        return false;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        /* ZeRO: whole params and gradients padded to zn chunks; the chunk's state and sums */
        int64_t ch = r->zchunk[k] = pass_opt_chunk(r->n_group[k], c->shards), whole = r->zn > 1 ? ch * r->zn : ch;
        r->flat[k] = alloc_floats(whole);
        r->gbase[k] = r->zero2 ? r->zrank * ch : 0;
        r->glen[k] = r->zero2 ? ch : whole;
        r->grads[k] = alloc_floats(r->glen[k]);
        for (int j = 0; j < r->n_state; j++)
            r->state[k][j] = alloc_floats(ch);
    }
    for (int i = 0; i < pg->n_nodes; i++)
        r->n_params += pg->nodes[i]->op == OP_param;
    r->params = calloc((size_t)r->n_params + 1, sizeof *r->params);
    r->zsrc = r->zero2 ? calloc((size_t)r->n_params + 1, sizeof *r->zsrc) : NULL;
    r->ztied = r->zero2 ? calloc((size_t)r->n_params + 1, sizeof *r->ztied) : NULL;
    if (!r->params || (r->zero2 && (!r->zsrc || !r->ztied)))
        ir_unreachable("out of memory");
    if (r->zero2) {
        r->zstage = alloc_floats(z2_piece(r) * r->zn);
        r->zrecv = alloc_floats(z2_piece(r));
    }
    size_t off[PASS_OPT_GROUPS] = {0, 0};
    for (int i = 0, k = 0; i < pg->n_nodes; i++) {
        const ir_node *n = pg->nodes[i];
        if (n->op != OP_param)
            continue;
        model_param *mp = &r->params[k++];
        int grp = pass_opt_group(c, n);
        *mp = (model_param){n->name, n->shape, (size_t)ir_shape_numel(&n->shape), off[grp], grp, 1, false};
        off[grp] += mp->count;
        /* loom init's values of the whole param (the same seed gives the same start), then
         * this rank's slices of it */
        char full_name[600];
        mesh_slice sl[MESH_MAX_SLICES];
        int n_sl = 0;
        mesh_slice_parse(n->name, full_name, sizeof full_name, sl, &n_sl);
        const ir_node *full = n_sl ? eng_find_node(r->g, OP_param, full_name) : n;
        if (!full)
            ir_unreachable("train: a rank's param is not one of the model's");
        mp->sliced = n_sl > 0;
        size_t full_count = (size_t)ir_shape_numel(&full->shape);
        if (!n_sl && !r->have_init) { /* straight into the param, on every thread */
            rt_init_param_as(full, seed, 0, full_count, DT_F32, param_data(r, mp), r->pool);
            continue;
        }
        double *mine = malloc((mp->count + 1) * sizeof *mine);
        if (!mine)
            ir_unreachable("out of memory");
        if (!r->have_init) { /* loom init's values of this rank's elements alone, on every thread */
            init_runs ir = {full, seed, mine, 0, 0, NULL};
            mesh_slice_runs(&full->shape, sl, n_sl, add_run, &ir);
            rt_pool_parallel_for_grain(r->pool, ir.n, rt_pool_grain(mp->count / (ir.n ? ir.n : 1)), init_runs_range, &ir);
            free(ir.run);
            rt_convert_from_f64(DT_F32, mine, param_data(r, mp), mp->count);
            free(mine);
            continue;
        }
        double *tmp = malloc((full_count + 1) * sizeof *tmp);
        if (!tmp)
            ir_unreachable("out of memory");
        const rt_st_tensor *t = rt_st_find(&r->init_w, full->name);
        if (r->have_init && (!t || !ir_shape_eq(&t->shape, &full->shape) || !ir_dtype_is_float(t->dtype))) {
            char want[300];
            ir_type_str(full->dtype, &full->shape, want, sizeof want);
            ir_diag_error(r->d, -1, 0, 0, "%s: %s for param %s %s", r->init_w.path,
                          t ? "a tensor of another shape or dtype" : "no tensor", full->name, want);
            free(tmp);
            free(mine);
            return false;
        }
        rt_convert_to_f64(t->dtype, t->data, tmp, full_count); /* fine-tuning: the given weights */
        if (n_sl)
            mesh_slice_extract(tmp, &full->shape, sl, n_sl, mine);
        rt_convert_from_f64(DT_F32, n_sl ? mine : tmp, param_data(r, mp), mp->count);
        free(tmp);
        free(mine);
    }
    return true;
}

/* --mask P (docs/compression.md): every GEMM weight of P (engine/compress.h) that is a model
 * param masks it: its zero elements stay zero — their gradients and params are zeroed after
 * every step's gradients and update (so AdamW's and SGD's state stays zero there too). False
 * after reporting a tensor of another shape, or a file whose GEMM weights hold no zero. */
static bool setup_mask(trainer *r, const char *path)
{
    rt_st_file f;
    if (!rt_hf_open_weights(path, &f, r->d))
        return false;
    int64_t held = 0, total = 0;
    bool ok = true;
    for (int i = 0; i < r->n_params && ok; i++) {
        const model_param *mp = &r->params[i];
        const rt_st_tensor *t = rt_st_find(&f, mp->name);
        int axis;
        if (!t || !eng_gemm_weight(t->name, t->dtype, &t->shape, &axis))
            continue;
        if (!ir_shape_eq(&t->shape, &mp->shape)) {
            char want[128], got[128];
            ir_diag_error(r->d, -1, 0, 0, "%s: mask '%s' is %s, the param %s", path, mp->name,
                          ir_type_str(t->dtype, &t->shape, got, sizeof got),
                          ir_type_str(DT_F32, &mp->shape, want, sizeof want));
            ok = false;
            break;
        }
        if (!r->keep[mp->group]) {
            r->keep[mp->group] = malloc((size_t)r->n_group[mp->group] + 1);
            if (!r->keep[mp->group])
                ir_unreachable("out of memory");
            memset(r->keep[mp->group], 1, (size_t)r->n_group[mp->group] + 1);
        }
        float *v = malloc(sizeof *v * (mp->count + 1));
        if (!v)
            ir_unreachable("out of memory");
        rt_convert_to_f32(t->dtype, t->data, v, mp->count);
        uint8_t *keep = r->keep[mp->group] + mp->off;
        for (size_t j = 0; j < mp->count; j++) {
            keep[j] = v[j] != 0;
            held += v[j] == 0;
        }
        total += (int64_t)mp->count;
        free(v);
    }
    if (ok && held == 0) {
        ir_diag_error(r->d, -1, 0, 0, "%s: --mask: no GEMM weight of the model has a zero here (loom prune writes "
                      "masks)", path);
        ok = false;
    }
    if (ok && !r->quiet && r->world_rank == 0)
        printf("mask %s: %" PRId64 " of %" PRId64 " GEMM weight elements held at zero (%.2f%%)\n", path, held, total,
               100.0 * (double)held / (double)total);
    rt_st_close(&f);
    return ok;
}

/* x (params or gradients, flat by group; x[k][0] is element lo[k], NULL: 0, of the group)
 * zeroed where the mask holds zeros. */
static void apply_mask(trainer *r, float *const x[PASS_OPT_GROUPS], const int64_t *lo)
{
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        int64_t a = lo ? lo[k] : 0, b = lo ? a + r->glen[k] : r->n_group[k];
        for (int64_t j = a; r->keep[k] && j < b && j < r->n_group[k]; j++)
            if (!r->keep[k][j])
                x[k][j - a] = 0.0f;
    }
}

/* --teacher T --teacher-weights W [--teacher-define NAME=VALUE]... [--distill-alpha A]
 * [--distill-temperature T] (docs/compression.md): the loss graph gg with the teacher's forward
 * and the distillation loss (passes/distill.c). The teacher is built with the student's -D,
 * then its own --teacher-define, then the batch of gg's tokens; its weights are read here. NULL
 * after reporting. */
static ir_graph *distill_graph(trainer *r, const eng_opts *o, const ir_graph *gg, ir_diag *d)
{
    const char *teacher = eng_named(o, "--teacher"), *tw = eng_named(o, "--teacher-weights");
    double alpha = 0.5, temp = 2.0;
    if (!tw) {
        ir_diag_error(d, -1, 0, 0, "train: --teacher needs --teacher-weights W.safetensors (the teacher's params)");
        return NULL;
    }
    if (!opt_num(o, "--distill-alpha", 0, false, 1, &alpha, d) ||
        !opt_num(o, "--distill-temperature", 0, true, 1000, &temp, d))
        return NULL;
    const ir_node *tok = eng_find_node(gg, OP_input, "tokens");
    char batch[32];
    snprintf(batch, sizeof batch, "%" PRId64, tok->shape.dim[0]);
    eng_opts ot = *o;
    ot.file = teacher;
    ot.file_text = NULL;
    ot.n_defines = 0;
    char text[ENG_MAX_DEFINES][256];
    int n_text = 0;
    for (int i = 0; i < o->n_named; i++) {
        if (strcmp(o->named_key[i], "--teacher-define") != 0)
            continue;
        const char *v = o->named_value[i], *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1] || strlen(v) >= sizeof text[0] || n_text == ENG_MAX_DEFINES - 1) {
            ir_diag_error(d, -1, 0, 0, "train: --teacher-define expects NAME=VALUE, got '%s'", v);
            return NULL;
        }
        strcpy(text[n_text], v);
        text[n_text][eq - v] = 0;
        n_text++;
    }
    /* the student's -D unless the teacher's own or batch say otherwise, then those */
    for (int i = 0; i < o->n_defines; i++) {
        bool over = strcmp(o->defines[i].name, "batch") == 0;
        for (int k = 0; k < n_text && !over; k++)
            over = strcmp(o->defines[i].name, text[k]) == 0;
        if (!over && ot.n_defines < ENG_MAX_DEFINES - 1)
            ot.defines[ot.n_defines++] = o->defines[i];
    }
    for (int k = 0; k < n_text && ot.n_defines < ENG_MAX_DEFINES - 1; k++)
        ot.defines[ot.n_defines++] = (fe_define){text[k], text[k] + strlen(text[k]) + 1};
    ot.defines[ot.n_defines++] = (fe_define){"batch", batch};
    ir_graph *tg = eng_load_graph(&ot, d);
    if (!tg)
        return NULL;
    ir_graph *dg = ir_graph_clone(gg);
    bool ok = pass_distill(dg, tg, alpha, temp, d);
    ir_graph_free(tg);
    rt_st_file f;
    ok = ok && rt_hf_open_weights(tw, &f, d);
    if (!ok) {
        ir_graph_free(dg);
        return NULL;
    }
    int64_t n_values = 0;
    for (int i = 0; i < dg->n_nodes; i++) {
        const ir_node *n = dg->nodes[i];
        if (n->op != OP_input || strncmp(n->name, "teacher/", 8) != 0)
            continue;
        const rt_st_tensor *t = rt_st_find(&f, n->name + 8);
        char want[128];
        ir_type_str(n->dtype, &n->shape, want, sizeof want);
        if (!t || !ir_shape_eq(&t->shape, &n->shape) || !ir_dtype_is_float(t->dtype)) {
            ir_diag_error(d, -1, 0, 0, "%s: %s for the teacher's param %s %s", tw,
                          t ? "a tensor of another shape or dtype" : "no tensor", n->name + 8, want);
            ok = false;
            break;
        }
        r->teacher_name = realloc(r->teacher_name, sizeof *r->teacher_name * (size_t)(r->n_teacher + 1));
        r->teacher_data = realloc(r->teacher_data, sizeof *r->teacher_data * (size_t)(r->n_teacher + 1));
        if (!r->teacher_name || !r->teacher_data)
            ir_unreachable("out of memory");
        size_t count = (size_t)ir_shape_numel(&t->shape);
        r->teacher_data[r->n_teacher] = alloc_floats((int64_t)count);
        rt_convert_to_f32(t->dtype, t->data, r->teacher_data[r->n_teacher], count);
        r->teacher_name[r->n_teacher++] = strdup(n->name);
        n_values += (int64_t)count;
    }
    rt_st_close(&f);
    if (!ok) {
        ir_graph_free(dg);
        return NULL;
    }
    if (!r->quiet && r->world_rank == 0)
        printf("distill: teacher %s (%.2fM params from %s), loss %g·CE + %g·T²·KL at T = %g; val loss is the "
               "student's CE\n",
               teacher, (double)n_values / 1e6, tw, alpha, 1 - alpha, temp);
    return dg;
}

/* Binds the host buffers to every program. */
static bool bind_all(trainer *r)
{
    char name[64];
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!r->n_group[k])
            continue;
        /* ZeRO: the update reads and writes this rank's chunk (zero_gather spreads it) */
        snprintf(name, sizeof name, "params/%s", pass_opt_group_name[k]);
        if (!program_bind(r->update, name, r->flat[k] + (r->zn > 1 ? r->zrank * r->zchunk[k] : 0), r->d))
            return false;
        snprintf(name, sizeof name, "grads/%s", pass_opt_group_name[k]);
        if (!program_bind(r->update, name, grad_at(r, k, r->zn > 1 ? r->zrank * r->zchunk[k] : 0), r->d))
            return false;
        for (int j = 0; j < r->n_state; j++) {
            snprintf(name, sizeof name, "%s/%s", r->state_name[j], pass_opt_group_name[k]);
            if (!program_bind(r->update, name, r->state[k][j], r->d))
                return false;
        }
    }
    if (r->t.opt.sumsq_input && !program_bind(r->update, "grad_sumsq", &r->sumsq_in, r->d))
        return false;
    if (r->mgrad)
        return program_bind(r->update, "lr", &r->lr_in, r->d) && program_bind(r->update, "step", &r->step_in, r->d);
    for (int i = 0; i < r->n_teacher; i++)
        if (!program_bind(r->grad, r->teacher_name[i], r->teacher_data[i], r->d))
            return false;
    return program_bind(r->update, "lr", &r->lr_in, r->d) && program_bind(r->update, "step", &r->step_in, r->d) &&
           bind_model_params(r, r->grad) && program_bind(r->grad, "tokens", r->inputs, r->d) &&
           program_bind(r->grad, "targets", r->targets, r->d) &&
           (r->half != DT_F16 || program_bind(r->grad, "loss_scale", &r->loss_scale_in, r->d)) &&
           bind_model_params(r, r->eval) && program_bind(r->eval, "tokens", r->inputs, r->d) && program_bind(r->eval, "targets", r->targets, r->d);
}

/* The checkpoint's tensors: every param X, then each state tensor "adam.m/X" ... (names
 * allocated in *names, freed by the caller). */
static rt_ckpt_tensor *ckpt_tensors(trainer *r, int *n, char **names)
{
    int total = r->n_params * (1 + r->n_state);
    rt_ckpt_tensor *c = calloc((size_t)total + 1, sizeof *c);
    char *buf = *names = calloc((size_t)total + 1, 600);
    if (!c || !buf)
        ir_unreachable("out of memory");
    *n = 0;
    for (int j = -1; j < r->n_state; j++)
        for (int i = 0; i < r->n_params; i++) {
            const model_param *mp = &r->params[i];
            char *name = buf + (size_t)*n * 600;
            snprintf(name, 600, "%s%s%s", j < 0 ? "" : r->state_name[j], j < 0 ? "" : "/", mp->name);
            float *data = (j < 0 ? r->flat[mp->group] : r->state[mp->group][j]) + mp->off;
            c[(*n)++] = (rt_ckpt_tensor){name, mp->shape, data};
        }
    return c;
}

static rt_ckpt_info ckpt_info(const trainer *r, uint64_t seed)
{
    rt_ckpt_info info = {r->step, r->next_batch, seed, r->rng, "", r->B, r->T, r->t.opt.accum,
                         r->half == DT_F16 ? r->scaler.scale : 0, r->half == DT_F16 ? r->scaler.good_steps : 0};
    snprintf(info.optimizer, sizeof info.optimizer, "%s", r->t.opt.kind == PASS_OPT_SGD ? "sgd" : "adamw");
    return info;
}

/* Under tp/pp a checkpoint is sharded: DIR/mesh.txt (the mesh, by rank 0) and one checkpoint
 * per rank, DIR/rank-NNNNN, of its state (its params' slices and their optimizer state);
 * `loom gather` makes one safetensors file of the params. */
static const char *ckpt_dir(const trainer *r, const char *dir, char *buf, size_t cap)
{
    if (!r->mgrad)
        return dir;
    snprintf(buf, cap, "%s/rank-%05d", dir, r->world_rank);
    return buf;
}

/* mesh.txt's line; with model chunks (they decide which layers a stage holds) their count */
static void mesh_line(const trainer *r, char *buf, size_t cap)
{
    char ms[128], v[48] = "";
    if (r->mesh.virtual_stages > 1)
        snprintf(v, sizeof v, " with --virtual-stages %d", r->mesh.virtual_stages);
    snprintf(buf, cap, "loom sharded checkpoint: mesh %s%s, %d ranks\n", pass_mesh_str(&r->mesh, ms, sizeof ms), v,
             r->mesh.world);
}

static bool dev_pull_state(trainer *r);

static bool save_state(trainer *r, uint64_t seed)
{
    int n;
    char *names, path[4200];
    if (!dev_pull_state(r))
        return false;
    if (r->mgrad) {
        if (mkdir(r->t.checkpoint, 0777) != 0 && errno != EEXIST) {
            ir_diag_error(r->d, -1, 0, 0, "%s: cannot create: %s", r->t.checkpoint, strerror(errno));
            return false;
        }
        char line[256], file[4200];
        mesh_line(r, line, sizeof line);
        snprintf(file, sizeof file, "%s/mesh.txt", r->t.checkpoint);
        FILE *f = r->world_rank == 0 ? fopen(file, "w") : NULL;
        if (r->world_rank == 0 && (!f || fputs(line, f) < 0 || fclose(f) != 0)) {
            ir_diag_error(r->d, -1, 0, 0, "%s: cannot write: %s", file, strerror(errno));
            return false;
        }
    }
    rt_ckpt_tensor *c = ckpt_tensors(r, &n, &names);
    rt_ckpt_info info = ckpt_info(r, seed);
    const char *dir = ckpt_dir(r, r->t.checkpoint, path, sizeof path);
    int64_t before = rt_ckpt_step(dir);
    bool ok = rt_ckpt_save(dir, &info, c, n, r->d);
    free(c);
    free(names);
    /* a full disk or a write error: what was there before is intact (rt_ckpt_save is atomic) */
    if (!ok && before >= 0)
        ir_diag_note(r->d, -1, 0, 0, "%s: the checkpoint of step %" PRId64 " there is intact; --resume %s continues from it",
                     dir, before, r->t.checkpoint);
    else if (!ok)
        ir_diag_note(r->d, -1, 0, 0, "%s: no checkpoint was written there before this one", dir);
    return ok;
}

static void zero_state_whole(trainer *r, bool gather);
static void zero_state_chunks(trainer *r);

/* A checkpoint of the step (under ZeRO every dp rank takes part: the state gathered whole, as
 * without it, so that any run resumes it). */
static bool save(trainer *r, uint64_t seed)
{
    if (r->zn == 1)
        return save_state(r, seed);
    zero_state_whole(r, true);
    bool ok = r->mgrad || r->world_rank == 0 ? save_state(r, seed) : true;
    zero_state_chunks(r);
    return ok;
}

static bool resume_state(trainer *r, uint64_t seed);

static bool resume(trainer *r, uint64_t seed)
{
    if (r->zn == 1)
        return resume_state(r, seed);
    zero_state_whole(r, false);
    bool ok = resume_state(r, seed);
    zero_state_chunks(r);
    return ok;
}

static bool resume_state(trainer *r, uint64_t seed)
{
    int n;
    char *names, path[4200], file[4200], want_line[256], got_line[256] = "";
    snprintf(file, sizeof file, "%s/mesh.txt", r->t.resume);
    FILE *f = fopen(file, "r");
    if (f && !fgets(got_line, sizeof got_line, f))
        got_line[0] = 0;
    if (f)
        fclose(f);
    mesh_line(r, want_line, sizeof want_line);
    if (r->mgrad ? strcmp(got_line, want_line) != 0 : f != NULL) {
        got_line[strcspn(got_line, "\n")] = 0;
        want_line[strcspn(want_line, "\n")] = 0;
        const char *made = f ? got_line + strlen("loom ") : "a whole checkpoint (no mesh.txt)";
        const char *now = r->mgrad ? want_line + strlen("loom sharded checkpoint: ") : "without tp or pp";
        ir_diag_error(r->d, -1, 0, 0,
                      "%s: %s, but this run is %s; resume under the checkpoint's mesh (`loom gather` makes a "
                      "sharded checkpoint's params one file)",
                      r->t.resume, made, now);
        return false;
    }
    rt_ckpt_tensor *c = ckpt_tensors(r, &n, &names);
    rt_ckpt_info got, want = ckpt_info(r, seed);
    bool ok = rt_ckpt_load(ckpt_dir(r, r->t.resume, path, sizeof path), &got, c, n, r->d);
    free(c);
    free(names);
    if (!ok)
        return false;
    const char *what = strcmp(got.optimizer, want.optimizer) != 0 ? "--optimizer"
                       : got.batch != want.batch                  ? "batch"
                       : got.seq != want.seq                      ? "seq"
                       : got.accum != want.accum                  ? "--accum"
                       : got.seed != want.seed                    ? "--seed"
                                                                  : NULL;
    if (what) {
        ir_diag_error(r->d, -1, 0, 0,
                      "%s: the checkpoint was made with another %s (optimizer %s, batch %d, seq %d, accum %d, seed "
                      "%" PRIu64 "); resume with the same settings",
                      r->t.resume, what, got.optimizer, got.batch, got.seq, got.accum, got.seed);
        return false;
    }
    r->step = got.step;
    r->next_batch = got.next_batch;
    r->rng = got.rng;
    if (r->half == DT_F16 && got.loss_scale > 0) { /* fp16: the loss scale where it was */
        r->scaler.scale = got.loss_scale;
        r->scaler.good_steps = (int)got.good_steps;
    }
    return true;
}

/* ---- data parallel ------------------------------------------------------------------------- */

#define DP_BUCKET ((size_t)1 << 20) /* elements per allreduce: 4 MiB buckets of f32 gradients */

/* Copies this rank's rows of the global batch in g_inputs / g_targets into the program inputs. */
static void take_rows(trainer *r)
{
    if (r->dp == 1)
        return;
    size_t n = (size_t)r->Bl * (size_t)r->T, off = (size_t)r->dp_rank * n;
    memcpy(r->inputs, r->g_inputs + off, n * sizeof *r->inputs);
    memcpy(r->targets, r->g_targets + off, n * sizeof *r->targets);
}

/* Sums x[n] over the dp ranks in place, bucket by bucket (a failed exchange ends the job in
 * coll.h); the time and volume go to this step's communication figures. */
static void dp_sum(trainer *r, void *x, size_t n, coll_dtype dt)
{
    if (r->dp == 1 || n == 0)
        return;
    double t0 = rt_now_ms();
    size_t es = coll_dtype_size(dt);
    for (size_t at = 0; at < n; at += DP_BUCKET) {
        size_t c = n - at < DP_BUCKET ? n - at : DP_BUCKET;
        char *p = (char *)x + at * es;
        if (coll_allreduce(r->world, p, p, c, dt, COLL_SUM) != COLL_OK)
            ir_unreachable("train: gradient allreduce rejected its arguments");
    }
    r->comm_ms += rt_now_ms() - t0;
    r->comm_bytes += (int64_t)(n * es);
}

static double dp_mean1(trainer *r, double x)
{
    dp_sum(r, &x, 1, COLL_F64);
    return x / r->dp;
}

/* ---- tensor parallel: the gradient program over the mesh ---------------------------------- */

/* Fills a rank-local param or input of the mesh gradient program from the full host buffer
 * (f32 params, i32 tokens): its slices when its name carries them (mesh.h), else a copy. */
static void feed_slice(mesh_run *R, const ir_node *n, const void *full_data, const ir_shape *full_shape, ir_dtype dt)
{
    mesh_slice sl[MESH_MAX_SLICES];
    int n_sl = 0;
    char full[600];
    void *dst = mesh_exec_value(R, n);
    size_t cnt = (size_t)ir_shape_numel(&n->shape), fcnt = (size_t)ir_shape_numel(full_shape);
    if (!mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl)) {
        memcpy(dst, full_data, cnt * (size_t)ir_dtype_size(dt));
        return;
    }
    double *a = malloc((fcnt + 1) * sizeof *a), *b = malloc((cnt + 1) * sizeof *b);
    if (!a || !b)
        ir_unreachable("out of memory");
    for (size_t i = 0; i < fcnt; i++)
        a[i] = dt == DT_I32 ? (double)((const int32_t *)full_data)[i] : (double)((const float *)full_data)[i];
    mesh_slice_extract(a, full_shape, sl, n_sl, b);
    for (size_t i = 0; i < cnt; i++)
        if (dt == DT_I32)
            ((int32_t *)dst)[i] = (int32_t)b[i];
        else
            ((float *)dst)[i] = (float)b[i];
    free(a);
    free(b);
}

/* Micro-batch `micro` of the batch in r->inputs / r->targets into the mesh program's inputs. */
static bool feed_micro(void *ctx, mesh_run *R, int micro)
{
    trainer *r = ctx;
    double t0 = rt_now_ms();
    const ir_graph *L = mesh_exec_graph(R);
    size_t off = (size_t)micro * (size_t)r->Bm * (size_t)r->T;
    ir_shape bt = {2, {r->Bm, r->T}};
    for (int i = 0; i < L->n_nodes; i++) {
        const ir_node *n = L->nodes[i];
        if (n->op != OP_input)
            continue;
        char full[600];
        mesh_slice sl[MESH_MAX_SLICES];
        int n_sl;
        mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl);
        bool tok = strcmp(full, "tokens") == 0;
        if (!tok && strcmp(full, "targets") != 0)
            ir_unreachable("train: the mesh gradient program has an unexpected input");
        feed_slice(R, n, (tok ? r->inputs : r->targets) + off, &bt, DT_I32);
    }
    eng_trace_span("host", "feed micro-batch", "", t0, rt_now_ms());
    return true;
}

/* Adds a finished micro-batch's gradients and loss — those this rank holds: under pp each
 * stage has its own params' (a tied param's partial sum) and only the last stage the loss. */
/* The runner's gradient of mp (this rank's slice) added into its flat group. */
static void add_mesh_grad(trainer *r, mesh_run *R, const model_param *mp)
{
    char gname[600];
    snprintf(gname, sizeof gname, "grad/%s", mp->name);
    const float *g = mesh_exec_output(R, gname);
    float *a = r->grads[mp->group] + mp->off;
    for (size_t j = 0; g && j < mp->count; j++)
        a[j] += g[j];
}

static void zero2_take(trainer *r, mesh_run *R);
static void zero2_scatter(trainer *r, const float *const *src, bool only_given);

static bool take_micro(void *ctx, mesh_run *R, int micro)
{
    (void)micro;
    trainer *r = ctx;
    double t0 = rt_now_ms();
    if (r->zero2)
        zero2_take(r, R);
    for (int i = 0; !r->zero2 && i < r->n_params; i++)
        if (!(r->overlap_now && r->taken[i])) /* else added by the overlap hook already */
            add_mesh_grad(r, R, &r->params[i]);
    const float *l = mesh_exec_output(R, "loss");
    r->micro_loss += l ? *l : 0;
    eng_trace_span("host", "add micro-batch gradients", "", t0, rt_now_ms());
    return true;
}

/* Adds a forward-only micro-batch's loss (the last stage's ranks have it). */
static bool take_loss(void *ctx, mesh_run *R, int micro)
{
    (void)micro;
    trainer *r = ctx;
    const float *l = mesh_exec_output(R, "loss");
    r->micro_loss += l ? *l : 0;
    return true;
}

/* The rank's params (its state: the slices of its stage's params) into the mesh program. */
static void feed_params(trainer *r)
{
    const ir_graph *L = mesh_exec_graph(r->mgrad);
    for (int i = 0, k = 0; i < L->n_nodes; i++) {
        const ir_node *n = L->nodes[i];
        if (n->op != OP_param)
            continue;
        if (k >= r->n_params || strcmp(r->params[k].name, n->name) != 0)
            ir_unreachable("train: the mesh program's params are not the rank's state");
        mesh_exec_bind(r->mgrad, n, param_data(r, &r->params[k]));
        k++;
    }
}

/* Runs the mesh gradient program over the micro-batches of one batch: fed this step's params
 * once (shared by every micro-batch), adding into r->grads (zeroed first when `zero`);
 * returns this rank's loss sum over the micro-batches (0 off the last stage). */
static bool mesh_grad_run(trainer *r, bool zero, double *loss)
{
    feed_params(r);
    double t0 = rt_now_ms();
    for (int k = 0; zero && k < PASS_OPT_GROUPS; k++)
        memset(r->grads[k], 0, (size_t)(r->zero2 ? r->glen[k] : r->n_group[k]) * sizeof *r->grads[k]);
    for (int i = 0; zero && r->ztied && i < r->n_params; i++)
        if (r->ztied[i])
            memset(r->ztied[i], 0, r->params[i].count * sizeof *r->ztied[i]);
    eng_trace_span("host", "zero gradients", "", t0, rt_now_ms());
    r->micro_loss = 0;
    bool ok = mesh_exec_run_micro(r->mgrad, r->micro, r->schedule, feed_micro, take_micro, r);
    double ms;
    int64_t bytes;
    mesh_exec_comm(r->mgrad, &ms, &bytes);
    r->comm_ms += ms;
    r->comm_bytes += bytes;
    *loss = r->micro_loss;
    return ok;
}

/* Sums x[n] over the pp stages in place (a stage holds only its own params' gradients). */
/* Sums x[n] over the mesh axis called `axis` in place, bucket by bucket. */
static void axis_sum(trainer *r, const char *axis, void *x, size_t n, coll_dtype dt)
{
    int a = pass_mesh_axis(&r->mesh, axis);
    if (a < 0 || r->mesh.size[a] == 1 || n == 0)
        return;
    double t0 = rt_now_ms();
    size_t es = coll_dtype_size(dt);
    for (size_t at = 0; at < n; at += DP_BUCKET) {
        size_t c = n - at < DP_BUCKET ? n - at : DP_BUCKET;
        char *p = (char *)x + at * es;
        if (coll_allreduce(r->axis[a], p, p, c, dt, COLL_SUM) != COLL_OK)
            ir_unreachable("train: a mesh-axis allreduce rejected its arguments");
    }
    r->comm_ms += rt_now_ms() - t0;
    r->comm_bytes += (int64_t)(n * es);
}

/* Which params more than one pipeline stage holds (GPT-2's tied wte: the first and the last):
 * each model param's holder count summed over pp, and its size on a holder (for the others'
 * zero buffers in tied_sum). */
static bool count_holders(trainer *r)
{
    int a = pass_mesh_axis(&r->mesh, "pp");
    int n = 0;
    for (int i = 0; i < r->g->n_nodes; i++)
        n += r->g->nodes[i]->op == OP_param;
    r->n_model_params = n;
    r->tied_count = calloc((size_t)n + 1, sizeof *r->tied_count);
    r->tied_holders = calloc((size_t)n + 1, sizeof *r->tied_holders);
    r->tied_local = calloc((size_t)n + 1, sizeof *r->tied_local);
    if (!r->tied_count || !r->tied_holders || !r->tied_local)
        ir_unreachable("out of memory");
    for (int i = 0, k = 0; i < r->g->n_nodes; i++) {
        const ir_node *p = r->g->nodes[i];
        if (p->op != OP_param)
            continue;
        r->tied_local[k] = -1;
        for (int j = 0; j < r->n_params; j++) {
            char full[600];
            mesh_slice sl[MESH_MAX_SLICES];
            int n_sl;
            mesh_slice_parse(r->params[j].name, full, sizeof full, sl, &n_sl);
            if (strcmp(full, p->name) == 0) {
                r->tied_local[k] = j;
                r->tied_holders[k] = 1;
                r->tied_count[k] = (int64_t)r->params[j].count;
            }
        }
        k++;
    }
    if (a >= 0 && r->mesh.size[a] > 1 &&
        (coll_allreduce(r->axis[a], r->tied_holders, r->tied_holders, (size_t)n, COLL_I64, COLL_SUM) != COLL_OK ||
         coll_allreduce(r->axis[a], r->tied_count, r->tied_count, (size_t)n, COLL_I64, COLL_MAX) != COLL_OK))
        ir_unreachable("train: the pp exchange of param holders rejected its arguments");
    for (int k = 0; k < n; k++)
        if (r->tied_local[k] >= 0)
            r->params[r->tied_local[k]].holders = (int)r->tied_holders[k];
    return true;
}

/* Sums the partial gradients of params several stages hold over pp (in model order, every pp
 * rank taking part: a stage without the param adds zeros). */
static void tied_sum(trainer *r)
{
    int a = pass_mesh_axis(&r->mesh, "pp");
    if (a < 0 || r->mesh.size[a] == 1)
        return;
    for (int k = 0; k < r->n_model_params; k++) {
        if (r->tied_holders[k] < 2)
            continue;
        size_t n = (size_t)r->tied_count[k];
        int j = r->tied_local[k];
        float *buf = j < 0       ? calloc(n + 1, sizeof *buf)
                     : r->zero2 ? r->ztied[j]
                                : r->grads[r->params[j].group] + r->params[j].off;
        if (!buf)
            ir_unreachable("out of memory");
        double t0 = rt_now_ms();
        if (coll_allreduce(r->axis[a], buf, buf, n, COLL_F32, COLL_SUM) != COLL_OK)
            ir_unreachable("train: the tied-gradient allreduce rejected its arguments");
        r->comm_ms += rt_now_ms() - t0;
        r->comm_bytes += (int64_t)(n * sizeof(float));
        if (j < 0)
            free(buf);
    }
    if (!r->zero2)
        return;
    /* --zero 2: the tied sums over dp into the chunks, only the buckets that hold them */
    for (int i = 0; i < r->n_params; i++)
        r->zsrc[i] = r->ztied[i];
    zero2_scatter(r, r->zsrc, true);
}

/* --zero 2 under pp: a whole gradient buffer for each param several stages hold. */
static void zero2_tied(trainer *r)
{
    for (int i = 0; r->zero2 && i < r->n_params; i++)
        if (r->params[i].holders > 1)
            r->ztied[i] = alloc_floats((int64_t)r->params[i].count);
}

/* The elements [*at, *at + *n) of mp's group that hold mp's summed gradient on this rank after
 * the step's reduction: the whole param, under ZeRO its part in this rank's chunk (false: none). */
static bool summed_part(const trainer *r, const model_param *mp, size_t *at, size_t *n)
{
    int64_t lo = r->zrank * r->zchunk[mp->group], hi = lo + r->zchunk[mp->group];
    int64_t a = (int64_t)mp->off > lo ? (int64_t)mp->off : lo;
    int64_t b = (int64_t)(mp->off + mp->count) < hi ? (int64_t)(mp->off + mp->count) : hi;
    *at = (size_t)a;
    *n = a < b ? (size_t)(b - a) : 0;
    return a < b;
}

/* Σ g² of the whole model's (averaged) gradient from the ranks' slices: each slice counted
 * once — divided by the ranks holding the same values (dp replicas, tp replicas of an unsliced
 * param, the stages of a tied one) before the sum over every rank. */
static void global_sumsq(trainer *r)
{
    int dp = pass_mesh_size(&r->mesh, "dp"), tp = pass_mesh_size(&r->mesh, "tp");
    double s = 0, t_host = rt_now_ms();
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        size_t at, n;
        if (!summed_part(r, mp, &at, &n))
            continue;
        const float *g = grad_at(r, mp->group, (int64_t)at);
        double q = 0;
        for (size_t j = 0; j < n; j++)
            q += (double)g[j] * g[j];
        /* ZeRO: the chunk's sums are this rank's alone, no dp replica holds them */
        s += q / ((r->zn > 1 ? 1.0 : (double)dp) * (mp->sliced ? 1 : tp) * mp->holders);
    }
    double t0 = rt_now_ms();
    eng_trace_span("host", "gradient sum of squares", "", t_host, t0);
    if (coll_allreduce(r->world, &s, &s, 1, COLL_F64, COLL_SUM) != COLL_OK)
        ir_unreachable("train: the gradient-norm allreduce rejected its arguments");
    r->comm_ms += rt_now_ms() - t0;
    double accum = r->t.opt.accum;
    r->sumsq_in = (float)(s / (accum * accum));
}

/* ---- overlap: the dp allreduce bucket by bucket during the backward ---------------------- */

/* One param's gradient of this micro-batch into its flat group (copied, or added to the sums of
 * the earlier micro-batches). */
static void take_grad(trainer *r, const model_param *mp)
{
    char gname[600];
    snprintf(gname, sizeof gname, "grad/%s", mp->name);
    const float *g = program_output(r->grad, gname);
    float *a = r->grads[mp->group] + mp->off;
    if (!r->sum_into)
        memcpy(a, g, mp->count * sizeof *a);
    else
        for (size_t j = 0; j < mp->count; j++)
            a[j] += g[j];
}

/* The gradient program's step hook in a step's last micro-batch: the gradients final after
 * step s taken, the buckets they complete started. */
static void overlap_step(void *ctx, int s)
{
    trainer *r = ctx;
    for (int i = 0; i < r->n_params; i++)
        if (r->grad_step[i] == s)
            take_grad(r, &r->params[i]);
    double t0 = rt_now_ms();
    for (int b = 0; b < r->n_buckets; b++)
        if (r->buckets[b].step == s &&
            coll_allreduce_start(r->world, r->grads[r->buckets[b].group] + r->buckets[b].at, (size_t)r->buckets[b].n,
                                 COLL_F32, COLL_SUM) != COLL_OK)
            ir_unreachable("train: a gradient allreduce rejected its arguments");
    coll_progress(r->world);
    r->comm_ms += rt_now_ms() - t0;
}

/* Under tp/pp (the runner's hook in the last micro-batch's backward): every gradient whose
 * runner step is done by step k added into its flat group, every bucket complete by then
 * started on the dp axis (the steps of the other half are skipped, so "by": at most k). */
static void overlap_mesh_step(void *ctx, mesh_run *R, int k)
{
    trainer *r = ctx;
    if (!r->overlap_now)
        return;
    for (int i = 0; i < r->n_params; i++)
        if (!r->taken[i] && r->grad_step[i] <= k) {
            add_mesh_grad(r, R, &r->params[i]);
            r->taken[i] = true;
        }
    double t0 = rt_now_ms();
    for (int b = 0; b < r->n_buckets; b++)
        if (!r->started[b] && r->buckets[b].step <= k) {
            if (coll_allreduce_start(r->ocomm, r->grads[r->buckets[b].group] + r->buckets[b].at,
                                     (size_t)r->buckets[b].n, COLL_F32, COLL_SUM) != COLL_OK)
                ir_unreachable("train: a gradient allreduce rejected its arguments");
            r->started[b] = true;
        }
    coll_progress(r->ocomm);
    r->comm_ms += rt_now_ms() - t0;
}

/* The buckets and the steps that finish each param's gradient; false (no overlap) when a
 * gradient has no step of its own. */
static bool setup_overlap(trainer *r)
{
    const char *e = getenv("LOOM_DP_OVERLAP");
    int a = pass_mesh_axis(&r->mesh, "dp");
    int dp = r->mgrad ? (a >= 0 ? r->mesh.size[a] : 1) : r->dp;
    /* under tp/pp only when asked (LOOM_DP_OVERLAP=1): measured slower with ranks sharing cores;
     * not with model chunks (interleaved 1F1B), whose backward steps run out of graph order */
    if (dp < 2 || r->zn > 1 || (e && strcmp(e, "0") == 0) || (r->mgrad && !(e && strcmp(e, "1") == 0)) ||
        r->mesh.virtual_stages > 1)
        return false;
    if (!r->mgrad && !program_exec(r->grad)) /* a device's step hook fires at enqueue: nothing is final */
        return false;
    r->ocomm = r->mgrad ? r->axis[a] : r->world;
    r->grad_step = calloc((size_t)r->n_params + 1, sizeof *r->grad_step);
    r->taken = calloc((size_t)r->n_params + 1, sizeof *r->taken);
    if (!r->grad_step || !r->taken)
        ir_unreachable("out of memory");
    char gname[600];
    for (int i = 0; i < r->n_params; i++) {
        snprintf(gname, sizeof gname, "grad/%s", r->params[i].name);
        r->grad_step[i] = r->mgrad ? mesh_exec_output_step(r->mgrad, gname) : program_output_step(r->grad, gname);
        if (r->grad_step[i] < 0)
            return false;
    }
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        for (int64_t at = 0; at < r->n_group[k]; at += (int64_t)DP_BUCKET) {
            ir_grow((void **)&r->buckets, &r->cap_buckets, r->n_buckets + 1, sizeof *r->buckets);
            int64_t n = r->n_group[k] - at < (int64_t)DP_BUCKET ? r->n_group[k] - at : (int64_t)DP_BUCKET;
            bucket *b = &r->buckets[r->n_buckets++];
            *b = (bucket){k, at, n, -1};
            for (int i = 0; i < r->n_params; i++) {
                const model_param *mp = &r->params[i];
                if (mp->group == k && (int64_t)mp->off < at + n && (int64_t)(mp->off + mp->count) > at &&
                    r->grad_step[i] > b->step)
                    b->step = r->grad_step[i];
            }
        }
    r->started = calloc((size_t)r->n_buckets + 1, sizeof *r->started);
    if (!r->started)
        ir_unreachable("out of memory");
    if (r->mgrad)
        mesh_exec_set_step_hook(r->mgrad, overlap_mesh_step, r);
    return true;
}

/* ---- ZeRO (--zero 1): the optimizer state sharded over dp -------------------------------- */

/* The gradients summed over the dp ranks, each rank getting its chunk in its place (in place),
 * divided by div (the mean over dp or over the micro-batches). */
static void zero_scatter(trainer *r, float div)
{
    double t0 = rt_now_ms();
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        size_t c = (size_t)r->zchunk[k], whole = c * (size_t)r->zn;
        if (!c)
            continue;
        float *mine = r->grads[k] + (size_t)r->zrank * c;
        /* the padding: zeros again (the last step's reduction may have left anything there) */
        memset(r->grads[k] + r->n_group[k], 0, (whole - (size_t)r->n_group[k]) * sizeof(float));
        if (coll_reduce_scatter(r->zcomm, r->grads[k], mine, c, COLL_F32, COLL_SUM) != COLL_OK)
            ir_unreachable("train: the gradient reduce-scatter rejected its arguments");
        for (size_t j = 0; div != 1 && j < c; j++)
            mine[j] /= div;
        r->comm_bytes += (int64_t)(c * (size_t)r->zn * sizeof(float));
    }
    r->comm_ms += rt_now_ms() - t0;
}

/* ---- ZeRO stage 2 (--zero 2): each micro-batch's gradients reduce-scattered into the chunk ---- */

/* Elements [at, at + n) of group k of one micro-batch's gradients (src: per param, NULL: none
 * here) into dst, zeros where no param is (the padding). */
static void flat_range(const trainer *r, int k, int64_t at, int64_t n, const float *const *src, float *dst)
{
    memset(dst, 0, (size_t)n * sizeof *dst);
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        int64_t off = (int64_t)mp->off, a = off > at ? off : at;
        int64_t b = off + (int64_t)mp->count < at + n ? off + (int64_t)mp->count : at + n;
        if (mp->group == k && a < b && src[i])
            memcpy(dst + (a - at), src[i] + (a - off), (size_t)(b - a) * sizeof *dst);
    }
}

/* One micro-batch's gradients (src, per param) summed over the dp ranks and added into this
 * rank's chunk of grads: piece `at` of every rank's chunk staged side by side, one
 * reduce-scatter a bucket (pass_opt_zero2_piece), so that each rank receives its own chunk's
 * piece. only_given: only the buckets holding an element of a param src gives (the same on
 * every dp rank: their layouts are equal). */
static void zero2_scatter(trainer *r, const float *const *src, bool only_given)
{
    int64_t piece = z2_piece(r);
    double t_host = rt_now_ms(), t_comm = 0;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        int64_t c = r->zchunk[k];
        for (int64_t at = 0; at < c; at += piece) {
            int64_t len = c - at < piece ? c - at : piece;
            bool hit = !only_given;
            for (int i = 0; !hit && i < r->n_params; i++) {
                const model_param *mp = &r->params[i];
                hit = src[i] && mp->group == k &&
                      pass_opt_zero2_hits(at, len, c, r->zn, (int64_t)mp->off, (int64_t)(mp->off + mp->count));
            }
            if (!hit)
                continue;
            for (int q = 0; q < r->zn; q++)
                flat_range(r, k, q * c + at, len, src, r->zstage + q * len);
            double t0 = rt_now_ms();
            if (coll_reduce_scatter(r->zcomm, r->zstage, r->zrecv, (size_t)len, COLL_F32, COLL_SUM) != COLL_OK)
                ir_unreachable("train: the gradient reduce-scatter rejected its arguments");
            t_comm += rt_now_ms() - t0;
            float *g = r->grads[k] + at;
            for (int64_t j = 0; j < len; j++)
                g[j] += r->zrecv[j];
            r->comm_bytes += len * r->zn * (int64_t)sizeof(float);
        }
    }
    r->comm_ms += t_comm;
    eng_trace_span("host", "reduce-scatter micro-batch gradients", "", t_host, rt_now_ms());
}

/* The step's gradients, each rank's chunk of their sum over dp, divided by div: reduce-scattered
 * now (--zero 1), or as each micro-batch ended (--zero 2). */
static void zero_reduce(trainer *r, float div)
{
    if (!r->zero2) {
        zero_scatter(r, div);
        return;
    }
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        for (int64_t j = 0; div != 1 && j < r->zchunk[k]; j++)
            r->grads[k][j] /= div;
}

/* Every rank's updated chunk of the params to every dp rank (in place). */
static void zero_gather(trainer *r)
{
    double t0 = rt_now_ms();
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        size_t c = (size_t)r->zchunk[k];
        if (c && coll_allgather(r->zcomm, r->flat[k] + (size_t)r->zrank * c, r->flat[k], c, COLL_F32) != COLL_OK)
            ir_unreachable("train: the params allgather rejected its arguments");
        r->comm_bytes += (int64_t)(c * sizeof(float));
    }
    r->comm_ms += rt_now_ms() - t0;
}

/* The whole optimizer state (a checkpoint's) in place of this rank's chunks: the ranks' chunks
 * gathered, or zeros to load into (zero_state_chunks takes the chunks back). */
static void zero_state_whole(trainer *r, bool gather)
{
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        for (int j = 0; j < r->n_state; j++) {
            size_t c = (size_t)r->zchunk[k];
            float *w = alloc_floats((int64_t)c * r->zn);
            if (gather && c && coll_allgather(r->zcomm, r->state[k][j], w, c, COLL_F32) != COLL_OK)
                ir_unreachable("train: the optimizer state allgather rejected its arguments");
            free(r->state[k][j]);
            r->state[k][j] = w;
        }
}

static void zero_state_chunks(trainer *r)
{
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        for (int j = 0; j < r->n_state; j++) {
            float *c = alloc_floats(r->zchunk[k]);
            memcpy(c, r->state[k][j] + r->zrank * r->zchunk[k], (size_t)r->zchunk[k] * sizeof *c);
            free(r->state[k][j]);
            r->state[k][j] = c;
        }
}

static const void *grad_output(trainer *r, const char *name)
{
    const void *v = program_output(r->grad, name);
    if (!v) {
        fprintf(stderr, "loom: internal error: the gradient program has no output '%s'\n", name);
        ir_unreachable("train: a gradient output is missing");
    }
    return v;
}

/* --zero 2: one micro-batch's gradients — the mesh runner's, or with R NULL the gradient
 * program's — reduce-scattered into the chunk; a tied param's added to its whole sum instead
 * (tied_sum reduces it once a step). */
static void zero2_take(trainer *r, mesh_run *R)
{
    char gname[600];
    for (int i = 0; i < r->n_params; i++) {
        snprintf(gname, sizeof gname, "grad/%s", r->params[i].name);
        const float *g = R ? mesh_exec_output(R, gname) : grad_output(r, gname);
        r->zsrc[i] = r->ztied[i] ? NULL : g;
        for (size_t j = 0; r->ztied[i] && g && j < r->params[i].count; j++)
            r->ztied[i][j] += g[j];
    }
    zero2_scatter(r, r->zsrc, false);
}

/* ---- steps --------------------------------------------------------------------------------- */

/* Writes the gradients the update is about to see, per param, for tests of the optimizer. */
static bool trace(trainer *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/grads-%06" PRId64 ".safetensors", r->t.trace, r->step);
    rt_st_entry *e = calloc((size_t)r->n_params + 1, sizeof *e);
    char (*names)[600] = calloc((size_t)r->n_params + 1, sizeof *names);
    if (!e || !names)
        ir_unreachable("out of memory");
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        snprintf(names[i], sizeof names[i], "grad/%s", mp->name);
        e[i] = (rt_st_entry){names[i], DT_F32, mp->shape, r->grads[mp->group] + mp->off};
    }
    bool ok = rt_st_write(path, e, r->n_params, NULL, 0, NULL, NULL, r->d);
    free(e);
    free(names);
    return ok;
}

/* "grad/NAME" of the first param (in the model's order) whose summed gradient holds a NaN or an
 * inf on this rank, or NULL. */
static const char *first_nonfinite_grad(trainer *r)
{
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        size_t at, n;
        if (!summed_part(r, mp, &at, &n))
            continue;
        const float *g = grad_at(r, mp->group, (int64_t)at);
        for (size_t j = 0; j < n; j++)
            if (!isfinite(g[j])) {
                snprintf(r->nan_name, sizeof r->nan_name, "grad/%s", mp->name);
                return r->nan_name;
            }
    }
    return NULL;
}

/* Whether any rank of the job says yes (one small allreduce; not counted as the step's traffic). */
static bool agree_any(trainer *r, bool yes)
{
    if (!r->world || r->world_size == 1)
        return yes;
    int32_t v = yes, any = 0;
    if (coll_allreduce(r->world, &v, &any, 1, COLL_I32, COLL_MAX) != COLL_OK)
        ir_unreachable("train: flag allreduce rejected its arguments");
    return any != 0;
}

/* --on-nan stop: the error that ends training at a non-finite loss (what "loss") or gradient
 * (what "grad/NAME", the first param whose gradient is not finite). */
static bool nonfinite_stop(trainer *r, const char *what, double loss)
{
    const char *then = "training stopped (the last checkpoint is unchanged; --on-nan skip skips such steps instead)";
    if (strcmp(what, "loss") == 0)
        ir_diag_error(r->d, -1, 0, 0, "train: step %" PRId64 ": the loss is %s; %s", r->step,
                      isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf", then);
    else
        ir_diag_error(r->d, -1, 0, 0, "train: step %" PRId64 ": %s holds a nan or inf (the loss was %.4f); %s", r->step,
                      what, loss, then);
    return false;
}

/* ---- device-resident training ----------------------------------------------------------------
 * With --target cpu|opencl|cuda in one process (no --trace, --mask, --teacher), every program
 * runs on one program_device and the whole state lives there: the params (the fp32 masters
 * under --precision) and the optimizer state in two halves (the update reads half cur and
 * writes the other half: output→param binding; after a step that is not skipped the halves
 * swap, and every program is bound to the new half — a few pointers, nothing copied), the
 * gradient sums, the loss. A step uploads its token batches (asynchronously, from r->stage)
 * and the update's lr and step (fp16: also the loss scale and its inverse), and reads back 8
 * bytes: the loss and the gradient norm. fp16's found-inf is a non-finite norm (the update
 * unscales the gradients before it sums their squares): the step is skipped by keeping half
 * cur, and the host's scaler moves the scale it uploads next. Host copies (flat, state) are
 * refreshed only when needed: a checkpoint, the sample, a non-finite gradient's name. */

static size_t group_bytes(const trainer *r, int k) { return (size_t)r->n_group[k] * sizeof(float); }

/* Binds the model params of p to half h of the device params. */
static bool dev_bind_params(trainer *r, program *p, int h)
{
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        if (program_find(p, OP_param, mp->name) &&
            !program_bind_buf(p, mp->name, r->dparams[h][mp->group], mp->off * sizeof(float), r->d))
            return false;
    }
    return true;
}

/* Binds every program to half r->cur: the gradient and eval programs' params, the update's
 * params and state (read from half cur, written to the other). */
static bool dev_bind_half(trainer *r)
{
    int c = r->cur, n = r->in_place ? c : 1 - c;
    char name[64];
    if (!dev_bind_params(r, r->grad, c) || !dev_bind_params(r, r->eval, c))
        return false;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!r->n_group[k])
            continue;
        snprintf(name, sizeof name, "params/%s", pass_opt_group_name[k]);
        if (!program_bind_buf(r->update, name, r->dparams[c][k], 0, r->d) ||
            !program_bind_output_buf(r->update, name, r->dparams[n][k], 0, r->d))
            return false;
        for (int j = 0; j < r->n_state; j++) {
            snprintf(name, sizeof name, "%s/%s", r->state_name[j], pass_opt_group_name[k]);
            if (!program_bind_buf(r->update, name, r->dstate[c][k][j], 0, r->d) ||
                !program_bind_output_buf(r->update, name, r->dstate[n][k][j], 0, r->d))
                return false;
        }
    }
    return true;
}

/* The gradient program's outputs (each param's gradient, the loss) to the sums (to 0) or to
 * one micro-batch's buffers (to 1), which the accumulation program adds to the sums. */
static bool dev_bind_grads(trainer *r, int to)
{
    if (r->grads_to == to)
        return true;
    char gname[600];
    for (int i = 0; i < r->n_params; i++) {
        const model_param *mp = &r->params[i];
        snprintf(gname, sizeof gname, "grad/%s", mp->name);
        program_buf *b = to == 0 ? r->dgrads[mp->group] : r->dgrads_mb[mp->group];
        if (!program_bind_output_buf(r->grad, gname, b, mp->off * sizeof(float), r->d))
            return false;
    }
    if (!program_bind_output_buf(r->grad, "loss", r->dscal, to == 0 ? 0 : 2 * sizeof(float), r->d))
        return false;
    r->grads_to = to;
    return true;
}

/* Whether the update may write its params and state over its inputs (one half): on a host
 * device, where memory touched is start-up time and RSS, when no step is ever skipped by
 * keeping the old half (fp16's found-inf, --on-nan skip; a stop on a non-finite norm does not
 * resume) and the update's plan allows it for every group (program_in_place). */
static bool update_in_place(trainer *r)
{
    if (!program_device_is_host(r->dev) || r->half == DT_F16 || r->t.nan_skip)
        return false;
    char name[64];
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!r->n_group[k])
            continue;
        snprintf(name, sizeof name, "params/%s", pass_opt_group_name[k]);
        if (!program_in_place(r->update, name))
            return false;
        for (int j = 0; j < r->n_state; j++) {
            snprintf(name, sizeof name, "%s/%s", r->state_name[j], pass_opt_group_name[k]);
            if (!program_in_place(r->update, name))
                return false;
        }
    }
    return true;
}

/* The device's buffers, the host state uploaded into half 0 (on a host device half 0 is the
 * host's flat params and state themselves), every program bound. */
static bool device_setup(trainer *r)
{
    ir_diag *d = r->d;
    program_device *dev = r->dev;
    int accum = r->t.opt.accum;
    r->in_place = update_in_place(r);
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        size_t bytes = group_bytes(r, k);
        if (!bytes)
            continue;
        /* half 0 and the gradient sums are the host's own arrays where the device is host
         * memory (no copy); their pages are faulted in now, on every thread, not in step 1 */
        if ((r->dparams[0][k] = program_buf_host(dev, r->flat[k], bytes))) {
            r->dgrads[k] = program_buf_host(dev, r->grads[k], bytes);
            rt_pool_touch(r->pool, r->grads[k], bytes);
            for (int j = 0; j < r->n_state; j++) {
                r->dstate[0][k][j] = program_buf_host(dev, r->state[k][j], bytes);
                rt_pool_touch(r->pool, r->state[k][j], bytes);
            }
        }
        for (int h = 0; h < (r->in_place ? 1 : 2); h++) {
            if (!r->dparams[h][k] && !(r->dparams[h][k] = program_buf_new(dev, bytes, d)))
                return false;
            for (int j = 0; j < r->n_state; j++)
                if (!r->dstate[h][k][j] && !(r->dstate[h][k][j] = program_buf_new(dev, bytes, d)))
                    return false;
        }
        if ((!r->dgrads[k] && !(r->dgrads[k] = program_buf_new(dev, bytes, d))) ||
            (accum > 1 && !(r->dgrads_mb[k] = program_buf_new(dev, bytes, d))))
            return false;
        if (program_device_is_host(dev))
            continue;
        if (!program_buf_write(r->dparams[0][k], 0, r->flat[k], bytes, d))
            return false;
        for (int j = 0; j < r->n_state; j++)
            if (!program_buf_write(r->dstate[0][k][j], 0, r->state[k][j], bytes, d))
                return false;
    }
    program *progs[] = {r->grad, r->eval, r->update, r->accum};
    for (int i = 0; i < 4; i++) /* the programs' arenas faulted in too, on a host device */
        if (progs[i] && program_exec(progs[i]))
            rt_exec_touch_arena(program_exec(progs[i]));
    if (!(r->dscal = program_buf_new(dev, 4 * sizeof(float), d)) ||
        !(r->deval = program_buf_new(dev, EVAL_CHUNK * sizeof(float), d)))
        return false;
    r->stage = calloc((size_t)(accum + 1) * 2 * (size_t)r->B * (size_t)r->T + 1, sizeof *r->stage);
    r->eval_stage = calloc((size_t)EVAL_CHUNK * 2 * (size_t)r->B * (size_t)r->T + 1, sizeof *r->eval_stage);
    r->prefetched = UINT64_MAX;
    if (!r->stage || !r->eval_stage)
        ir_unreachable("out of memory");
    char name[64];
    for (int k = 0; r->accum && k < PASS_OPT_GROUPS; k++) {
        if (!r->n_group[k])
            continue;
        snprintf(name, sizeof name, "acc/%s", pass_opt_group_name[k]);
        if (!program_bind_buf(r->accum, name, r->dgrads[k], 0, d) ||
            !program_bind_output_buf(r->accum, name, r->dgrads[k], 0, d))
            return false;
        snprintf(name, sizeof name, "add/%s", pass_opt_group_name[k]);
        if (!program_bind_buf(r->accum, name, r->dgrads_mb[k], 0, d))
            return false;
    }
    if (r->accum && (!program_bind_buf(r->accum, "acc/loss", r->dscal, 0, d) ||
                     !program_bind_output_buf(r->accum, "acc/loss", r->dscal, 0, d) ||
                     !program_bind_buf(r->accum, "add/loss", r->dscal, 2 * sizeof(float), d)))
        return false;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        if (!r->n_group[k])
            continue;
        snprintf(name, sizeof name, "grads/%s", pass_opt_group_name[k]);
        if (!program_bind_buf(r->update, name, r->dgrads[k], 0, d))
            return false;
    }
    r->cur = 0;
    r->grads_to = -1;
    return program_bind_output_buf(r->update, "grad_norm", r->dscal, sizeof(float), d) && dev_bind_half(r) &&
           dev_bind_grads(r, 0) && program_device_sync(dev, d);
}

/* The host's flat params and optimizer state from the device (half cur), when behind; on a
 * host device half 0 is them already, and half 1 is copied over half 0 (which the next update
 * overwrites anyway). */
static bool dev_pull_state(trainer *r)
{
    if (!r->dev || !r->host_stale)
        return true;
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        size_t bytes = group_bytes(r, k);
        if (!bytes)
            continue;
        if (!program_buf_read(r->dparams[r->cur][k], 0, r->flat[k], bytes, r->d))
            return false;
        for (int j = 0; j < r->n_state; j++)
            if (!program_buf_read(r->dstate[r->cur][k][j], 0, r->state[k][j], bytes, r->d))
                return false;
    }
    r->host_stale = false;
    return true;
}

/* The name of a non-finite summed gradient (read back from the device: an error path). */
static const char *dev_nonfinite_grad(trainer *r)
{
    for (int k = 0; k < PASS_OPT_GROUPS; k++)
        if (group_bytes(r, k) && !program_buf_read(r->dgrads[k], 0, r->grads[k], group_bytes(r, k), r->d))
            return NULL;
    return first_nonfinite_grad(r);
}

/* Validation batches first..first+n (n <= EVAL_CHUNK) on the device: their uploads and runs
 * enqueued, each loss into its slot of deval, then one read-back; adds the losses to *sum. */
static bool dev_evaluate(trainer *r, uint64_t first, int n, double *sum)
{
    size_t bt = (size_t)r->B * (size_t)r->T;
    for (int i = 0; i < n; i++) {
        int32_t *tok = r->eval_stage + (size_t)i * 2 * bt, *tgt = tok + bt;
        rt_loader_seq(&r->loader, RT_SPLIT_VAL, first + (uint64_t)i, tok, tgt);
        if (!program_bind_async(r->eval, "tokens", tok, r->d) || !program_bind_async(r->eval, "targets", tgt, r->d) ||
            !program_bind_output_buf(r->eval, "loss", r->deval, (size_t)i * sizeof(float), r->d) ||
            !program_run(r->eval, r->d))
            return false;
    }
    float loss[EVAL_CHUNK];
    if (!program_buf_read(r->deval, 0, loss, (size_t)n * sizeof *loss, r->d))
        return false;
    for (int i = 0; i < n; i++)
        *sum += loss[i];
    return true;
}

/* Training batch `batch` into stage slot `slot`, its upload to the gradient program's tokens
 * and targets enqueued. */
static bool dev_feed(trainer *r, uint64_t batch, int slot)
{
    size_t bt = (size_t)r->B * (size_t)r->T;
    rt_loader_random(&r->loader, RT_SPLIT_TRAIN, batch, r->g_inputs, r->g_targets);
    int32_t *tok = r->stage + (size_t)slot * 2 * bt, *tgt = tok + bt;
    memcpy(tok, r->inputs, bt * sizeof *tok);
    memcpy(tgt, r->targets, bt * sizeof *tgt);
    return program_bind_async(r->grad, "tokens", tok, r->d) && program_bind_async(r->grad, "targets", tgt, r->d);
}

/* train_step on the device: the micro-batches' gradients summed there, the update enqueued
 * behind them, the next step's first batch read and its upload enqueued behind that (so the
 * host's loading overlaps the device's step), then the one wait of the step (the loss and the
 * norm read back). */
static bool dev_train_step(trainer *r, double *loss, double *norm, bool first)
{
    int accum = r->t.opt.accum;
    bool f16 = r->half == DT_F16;
    r->loss_scale_in = (float)r->scaler.scale;
    r->grad_scale_in = (float)(1.0 / r->scaler.scale); /* exact: a power of two */
    if (f16 && !program_bind_async(r->grad, "loss_scale", &r->loss_scale_in, r->d))
        return false;
    for (int m = 0; m < accum; m++) {
        uint64_t batch = r->next_batch++;
        if (!(m == 0 && r->prefetched == batch) && !dev_feed(r, batch, m))
            return false;
        r->prefetched = UINT64_MAX;
        if (!dev_bind_grads(r, m == 0 ? 0 : 1) || !program_run(r->grad, r->d) || (m > 0 && !program_run(r->accum, r->d)))
            return false;
        if (first && m == 0 && !r->quiet) {
            float l0;
            if (!program_buf_read(r->dscal, 0, &l0, sizeof l0, r->d))
                return false;
            if (f16)
                l0 /= r->loss_scale_in; /* the gradient program's loss is scale · loss */
            printf("loss at init %.4f (ln(vocab) = %.4f)\n", l0, r->V ? log((double)r->V) : NAN);
            fflush(stdout);
        }
    }
    r->step++;
    r->lr_in = (float)lr_at(&r->t, r->step);
    r->step_in = (float)r->step;
    float sc[2];
    if (!program_bind_async(r->update, "lr", &r->lr_in, r->d) || !program_bind_async(r->update, "step", &r->step_in, r->d) ||
        (f16 && !program_bind_async(r->update, "grad_scale", &r->grad_scale_in, r->d)) || !program_run(r->update, r->d))
        return false;
    r->host_stale = true; /* even when skipped: on a host device the other half may be flat itself */
    if (r->step < r->t.steps) { /* slot accum: the step's own slots may still be uploading */
        if (!dev_feed(r, r->next_batch, accum))
            return false;
        r->prefetched = r->next_batch;
    }
    if (!program_buf_read(r->dscal, 0, sc, sizeof sc, r->d))
        return false;
    double sum = f16 ? sc[0] / r->loss_scale_in : sc[0];
    *loss = sum / accum;
    *norm = sc[1];
    r->skipped = false;
    r->nan_what = NULL;
    if (f16 && !rt_loss_scale_update(&r->scaler, isfinite(*norm))) {
        /* an inf or NaN in the gradients of scale · loss: skipped (the update wrote the other
         * half), the scale halved */
        r->skipped = true;
        *norm = NAN;
        return true;
    }
    if (r->t.nan_skip && (!isfinite(sum) || !isfinite(*norm))) {
        /* the update ran, but into the other half: keeping half cur skips the step */
        const char *bad = !isfinite(sum) ? "loss" : dev_nonfinite_grad(r);
        r->skipped = true;
        r->nan_what = bad ? bad : "a gradient";
        *norm = NAN;
        return true;
    }
    if (!isfinite(sum))
        return nonfinite_stop(r, "loss", *loss);
    if (!isfinite(*norm)) {
        const char *bad = dev_nonfinite_grad(r);
        return nonfinite_stop(r, bad ? bad : "a gradient", *loss);
    }
    r->host_stale = true;
    if (r->in_place) /* the one half holds the new values already */
        return true;
    r->cur = 1 - r->cur;
    return dev_bind_half(r);
}

static bool train_step(trainer *r, double *loss, double *norm, bool first)
{
    if (r->dev)
        return dev_train_step(r, loss, norm, first);
    int accum = r->t.opt.accum;
    double sum = 0;
    char gname[600];
    for (int m = 0; m < accum; m++) {
        rt_loader_random(&r->loader, RT_SPLIT_TRAIN, r->next_batch++, r->g_inputs, r->g_targets);
        take_rows(r);
        if (r->mgrad) {
            double l;
            r->overlap_now = r->overlap && m == accum - 1;
            if (r->overlap_now) {
                memset(r->taken, 0, sizeof *r->taken * (size_t)r->n_params);
                memset(r->started, 0, sizeof *r->started * (size_t)r->n_buckets);
            }
            bool ran = mesh_grad_run(r, m == 0, &l);
            r->overlap_now = false;
            if (!ran)
                return false;
            if (first && m == 0) {
                double l0 = l / r->micro;
                axis_sum(r, "pp", &l0, 1, COLL_F64);
                if (!r->quiet) {
                    printf("loss at init %.4f (ln(vocab) = %.4f)\n", l0, r->V ? log((double)r->V) : NAN);
                    fflush(stdout);
                }
            }
            sum += l;
            continue;
        }
        r->loss_scale_in = (float)r->scaler.scale;
        bool hook = r->overlap && m == accum - 1; /* the last micro-batch: reduce as it goes */
        r->sum_into = m > 0;
        if (hook)
            program_set_step_hook(r->grad, overlap_step, r);
        bool ran = program_run(r->grad, r->d);
        if (hook)
            program_set_step_hook(r->grad, NULL, NULL);
        if (!ran)
            return false;
        float l = *(const float *)grad_output(r, "loss");
        if (r->half == DT_F16)
            l /= r->loss_scale_in; /* the gradient program's loss is scale · loss */
        if (first && m == 0) {
            double l0 = dp_mean1(r, l);
            if (!r->quiet) {
                printf("loss at init %.4f (ln(vocab) = %.4f)\n", l0, r->V ? log((double)r->V) : NAN);
                fflush(stdout);
            }
        }
        sum += l;
        if (r->zero2) { /* this micro-batch's sum over dp into the chunk */
            for (int k = 0; m == 0 && k < PASS_OPT_GROUPS; k++)
                memset(r->grads[k], 0, (size_t)r->glen[k] * sizeof *r->grads[k]);
            zero2_take(r, NULL);
        }
        /* gather the per-param gradients into the flat groups, summing the batches */
        for (int i = 0; !hook && !r->zero2 && i < r->n_params; i++) {
            const model_param *mp = &r->params[i];
            snprintf(gname, sizeof gname, "grad/%s", mp->name);
            const float *g = grad_output(r, gname);
            if (!g)
                ir_unreachable("train: the gradient program lacks a gradient output");
            float *a = r->grads[mp->group] + mp->off;
            if (m == 0)
                memcpy(a, g, mp->count * sizeof *a);
            else
                for (size_t j = 0; j < mp->count; j++)
                    a[j] += g[j];
        }
    }
    if (r->overlap && !r->mgrad) { /* the buckets' allreduces, started during the backward: what is left */
        double t0 = rt_now_ms();
        if (coll_allreduce_wait(r->world) != COLL_OK)
            ir_unreachable("train: waiting for the gradient allreduces failed");
        r->comm_ms += rt_now_ms() - t0;
        for (int k = 0; k < PASS_OPT_GROUPS; k++) {
            r->comm_bytes += r->n_group[k] * (int64_t)sizeof(float);
            for (int64_t j = 0; j < r->n_group[k]; j++)
                r->grads[k][j] /= (float)r->dp;
        }
    }
    apply_mask(r, r->grads, r->gbase); /* --mask: no gradient where the params are held at zero */
    /* the mean over dp of the ranks' gradients is the gradient of the global batch's mean loss
     * (ZeRO: each rank gets its chunk of it) */
    if (r->dp > 1 && r->zn > 1)
        zero_reduce(r, (float)r->dp);
    for (int k = 0; r->dp > 1 && r->zn == 1 && !r->overlap && k < PASS_OPT_GROUPS; k++) {
        dp_sum(r, r->grads[k], (size_t)r->n_group[k], COLL_F32);
        for (int64_t j = 0; j < r->n_group[k]; j++)
            r->grads[k][j] /= (float)r->dp;
    }
    sum = r->dp > 1 ? dp_mean1(r, sum) : sum;
    if (r->mgrad) {
        /* the dp ranks' partial gradients summed (once a step), a tied param's partial
         * gradients summed over its stages, the last stage's loss to every stage; the mean
         * over the micro-batches is the gradient of the batch's mean loss; the clip norm over
         * the whole model. ZeRO: the tied sums first, then each dp rank's chunk of the sum */
        for (int k = 0; r->zn == 1 && !r->overlap && k < PASS_OPT_GROUPS; k++)
            axis_sum(r, "dp", r->grads[k], (size_t)r->n_group[k], COLL_F32);
        if (r->overlap) { /* started bucket by bucket in the last backward: what is left */
            double t0 = rt_now_ms();
            for (int b = 0; b < r->n_buckets; b++) /* a bucket no step completed (none, normally) */
                if (!r->started[b] && coll_allreduce_start(r->ocomm, r->grads[r->buckets[b].group] + r->buckets[b].at,
                                                           (size_t)r->buckets[b].n, COLL_F32, COLL_SUM) != COLL_OK)
                    ir_unreachable("train: a gradient allreduce rejected its arguments");
            if (coll_allreduce_wait(r->ocomm) != COLL_OK)
                ir_unreachable("train: waiting for the gradient allreduces failed");
            r->comm_ms += rt_now_ms() - t0;
            for (int k = 0; k < PASS_OPT_GROUPS; k++)
                r->comm_bytes += r->n_group[k] * (int64_t)sizeof(float);
        }
        tied_sum(r);
        if (r->zn > 1)
            zero_reduce(r, (float)r->micro);
        double t0 = rt_now_ms();
        for (int k = 0; r->zn == 1 && k < PASS_OPT_GROUPS; k++)
            for (int64_t j = 0; r->micro > 1 && j < r->n_group[k]; j++)
                r->grads[k][j] /= (float)r->micro;
        eng_trace_span("host", "mean over micro-batches", "", t0, rt_now_ms());
        axis_sum(r, "pp", &sum, 1, COLL_F64);
        sum /= r->micro;
        global_sumsq(r);
    }
    r->skipped = false;
    r->nan_what = NULL;
    if (r->half != DT_F16 && r->t.nan_skip) {
        /* --on-nan skip: a step whose loss or gradients are not finite changes nothing (every
         * rank agrees: under tp/pp each looked at its own slices) */
        const char *bad = !isfinite(sum) ? "loss" : first_nonfinite_grad(r);
        if (agree_any(r, bad != NULL)) {
            r->skipped = true;
            r->nan_what = bad ? bad : "a gradient on another rank";
        }
    } else if (r->half != DT_F16 && !isfinite(sum)) {
        r->step++;
        return nonfinite_stop(r, "loss", sum / accum);
    }
    if (r->half == DT_F16) {
        /* gradients of scale · loss: unscaled here; inf/nan skips the step (the same on every
         * dp rank: the allreduce spread it) and halves the scale */
        bool finite = true;
        for (int k = 0; k < PASS_OPT_GROUPS; k++)
            finite = rt_loss_scale_unscale(&r->scaler, grad_at(r, k, r->zrank * r->zchunk[k]), r->zchunk[k]) && finite;
        if (r->zn > 1) /* each rank saw its chunk */
            finite = !agree_any(r, !finite);
        r->skipped = !rt_loss_scale_update(&r->scaler, finite);
    }
    if (r->zn > 1 && !r->mgrad) /* ZeRO: the clip norm from the ranks' chunks */
        global_sumsq(r);
    r->step++;
    r->lr_in = (float)lr_at(&r->t, r->step);
    r->step_in = (float)r->step;
    if (r->t.trace && r->world_rank == 0 && !trace(r))
        return false;
    *loss = sum / accum;
    if (r->skipped) {
        *norm = NAN;
        return true;
    }
    if (!program_run(r->update, r->d))
        return false;
    double t_copy = rt_now_ms();
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        size_t bytes = (size_t)r->zchunk[k] * sizeof(float); /* the whole group without ZeRO */
        if (!bytes)
            continue;
        snprintf(gname, sizeof gname, "params/%s", pass_opt_group_name[k]);
        memcpy(r->flat[k] + r->zrank * r->zchunk[k], program_output(r->update, gname), bytes);
        for (int j = 0; j < r->n_state; j++) {
            snprintf(gname, sizeof gname, "%s/%s", r->state_name[j], pass_opt_group_name[k]);
            memcpy(r->state[k][j], program_output(r->update, gname), bytes);
        }
    }
    if (r->zn > 1)
        zero_gather(r);
    apply_mask(r, r->flat, NULL); /* and no update there (weight decay included) */
    eng_trace_span("host", "take updated params and state", "", t_copy, rt_now_ms());
    *norm = *(const float *)program_output(r->update, "grad_norm");
    if (r->half != DT_F16 && !isfinite(*norm)) { /* the loss was finite: a gradient is not */
        const char *bad = first_nonfinite_grad(r);
        return nonfinite_stop(r, bad ? bad : "a gradient on another rank", *loss);
    }
    return true;
}

/* Mean loss over the first --eval-batches sequential validation batches. */
static bool evaluate(trainer *r, double *loss)
{
    uint64_t n = rt_loader_seq_count(&r->loader, RT_SPLIT_VAL);
    if (n > (uint64_t)r->t.eval_batches)
        n = (uint64_t)r->t.eval_batches;
    double sum = 0;
    for (uint64_t i = 0; r->mgrad && i < n; i++) {
        /* under tp/pp: the gradient program's forward half, micro-batch by micro-batch */
        rt_loader_seq(&r->loader, RT_SPLIT_VAL, i, r->g_inputs, r->g_targets);
        feed_params(r);
        r->micro_loss = 0;
        if (!mesh_exec_run_forward(r->mgrad, r->micro, feed_micro, take_loss, r))
            return false;
        sum += r->micro_loss / r->micro;
    }
    if (r->mgrad) {
        /* evaluation's traffic is not the next training step's (its step line counts that) */
        double ms;
        int64_t bytes;
        mesh_exec_comm(r->mgrad, &ms, &bytes);
        axis_sum(r, "pp", &sum, 1, COLL_F64);
    }
    for (uint64_t i = 0; r->dev && i < n; i += EVAL_CHUNK)
        if (!dev_evaluate(r, i, n - i < EVAL_CHUNK ? (int)(n - i) : EVAL_CHUNK, &sum))
            return false;
    for (uint64_t i = 0; !r->mgrad && !r->dev && i < n; i++) {
        rt_loader_seq(&r->loader, RT_SPLIT_VAL, i, r->g_inputs, r->g_targets);
        take_rows(r);
        if (!program_run(r->eval, r->d))
            return false;
        sum += *(const float *)program_output(r->eval, "loss");
    }
    sum = r->dp > 1 ? dp_mean1(r, sum) : sum;
    *loss = n ? sum / (double)n : NAN;
    return true;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static double uniform(trainer *r, uint64_t seed)
{
    return (double)(rt_splitmix64_at(seed ^ SAMPLE_KEY, r->rng++) >> 11) * 0x1p-53;
}

/* Picks the next token from logits[V]: greedy at temperature 0, else softmax(logits / T) over
 * the top-k (all when k is 0). */
static int pick(trainer *r, const float *logits, uint64_t seed, double *prob)
{
    int V = r->V, best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    if (r->t.temperature <= 0)
        return best;
    float cut = -INFINITY;
    if (r->t.top_k > 0 && r->t.top_k < V) {
        /* the k-th largest logit: partial selection on a copy */
        float *c = malloc(sizeof(float) * (size_t)V);
        if (!c)
            ir_unreachable("out of memory");
        memcpy(c, logits, sizeof(float) * (size_t)V);
        for (int64_t k = 0; k < r->t.top_k; k++) {
            int m = (int)k;
            for (int v = (int)k + 1; v < V; v++)
                if (c[v] > c[m])
                    m = v;
            float x = c[k];
            c[k] = c[m];
            c[m] = x;
        }
        cut = c[r->t.top_k - 1];
        free(c);
    }
    double total = 0;
    for (int v = 0; v < V; v++)
        if (logits[v] >= cut)
            total += (prob[v] = exp((logits[v] - logits[best]) / r->t.temperature));
        else
            prob[v] = 0;
    double u = uniform(r, seed) * total, acc = 0;
    for (int v = 0; v < V; v++) {
        acc += prob[v];
        if (prob[v] > 0 && u < acc)
            return v;
    }
    return best;
}

/* The model built with batch = 1 and only its logits: a full forward per generated token over
 * the last seq tokens (no KV cache). */
static program *sample_program(trainer *r, const eng_opts *o)
{
    ir_diag d1;
    ir_diag_init(&d1);
    ir_graph *g = eng_load_graph_define(o, "batch", "1", &d1);
    const ir_node *tok = g ? eng_find_node(g, OP_input, "tokens") : NULL;
    program *p = NULL;
    if (tok && tok->shape.dim[0] == 1 && tok->shape.dim[1] == r->T && eng_find_node(g, OP_output, "logits")) {
        eng_prune_to(g, "logits");
        p = program_cpu_new(g, NULL, r->pool, &d1);
    }
    ir_graph_free(g);
    if (!p)
        fprintf(stderr, "loom train: no sample (the model does not build with -D batch=1 and a logits output)\n");
    ir_diag_free(&d1);
    return p;
}

static bool generate(trainer *r, const eng_opts *o, uint64_t seed)
{
    program *p = r->sample = sample_program(r, o);
    if (!p)
        return true;
    if (!dev_pull_state(r))
        return false;
    if (!bind_model_params(r, p))
        return false;
    int T = r->T, V = r->V;
    size_t n0 = 0, cap = (size_t)r->t.sample + strlen(r->t.prompt) + 2;
    uint32_t *ctx = calloc(cap, sizeof *ctx);
    int32_t *win = calloc((size_t)T, sizeof *win);
    double *prob = calloc((size_t)V, sizeof *prob);
    if (!ctx || !win || !prob)
        ir_unreachable("out of memory");
    bool bytes = V == RT_TOK_BYTE_VOCAB;
    if (bytes && *r->t.prompt) {
        rt_tok_bytes_encode(r->t.prompt, strlen(r->t.prompt), ctx);
        n0 = strlen(r->t.prompt);
    } else {
        ctx[n0++] = r->tokens.ids[r->loader.n_train]; /* no tokenizer here: the first validation token */
    }
    bool ok = program_bind(p, "tokens", win, r->d);
    printf("---- sample (%" PRId64 " tokens, temperature %g, top-k %" PRId64 ") ----\n", r->t.sample, r->t.temperature,
           r->t.top_k);
    if (bytes)
        fwrite(r->t.prompt, 1, strlen(r->t.prompt), stdout);
    size_t n = n0;
    for (int64_t i = 0; ok && i < r->t.sample; i++) {
        size_t start = n > (size_t)T ? n - (size_t)T : 0, len = n - start;
        for (int t = 0; t < T; t++)
            win[t] = t < (int)len ? (int32_t)ctx[start + (size_t)t] : 0;
        ok = program_run(p, r->d);
        if (!ok)
            break;
        const float *logits = (const float *)program_output(p, "logits") + (len - 1) * (size_t)V;
        int tok = pick(r, logits, seed, prob);
        ctx[n++] = (uint32_t)tok;
        if (bytes)
            putchar(tok);
        else
            printf("%d ", tok);
    }
    printf("\n----\n");
    fflush(stdout);
    free(ctx);
    free(win);
    free(prob);
    return ok;
}

/* ---- the command --------------------------------------------------------------------------- */

/* The model built with `batch` rows (-D batch=N), for a data-parallel rank's programs. */
/* --mesh: this rank's place in the mesh, the split of the batch (over dp, into micro-batches)
 * and the communicators: the world's, and one per axis when tp or pp shard the program. */
static bool setup_mesh(trainer *r, const eng_opts *o)
{
    ir_diag *d = r->d;
    r->dp = 1;
    r->Bl = r->B;
    r->micro = 1;
    r->Bm = r->B;
    coll_options copt;
    if (!mesh_coll_options(o->named_key, o->named_value, o->n_named, "train", &copt, d))
        return false;
    r->zn = 1;
    if (!o->mesh) {
        pass_opt_config none = pass_opt_config_default();
        if (!eng_zero(o, 1, "train", &none, d) || !eng_seq_parallel(o, NULL, "train", d) ||
            !eng_virtual_stages(o, NULL, 1, true, "train", d))
            return false;
        if (eng_named(o, "--microbatches") || eng_named(o, "--schedule")) {
            ir_diag_error(d, -1, 0, 0, "train: --microbatches and --schedule need --mesh with a pp axis");
            return false;
        }
        if (r->world_size > 1) {
            ir_diag_error(d, -1, 0, 0,
                          "train: started as %d processes but without --mesh; add --mesh dp=%d to train data parallel",
                          r->world_size, r->world_size);
            return false;
        }
        return true;
    }
    pass_mesh m;
    char ms[128];
    if (!pass_mesh_parse(o->mesh, r->world_rank, r->g, &m, d))
        return false;
    pass_mesh_str(&m, ms, sizeof ms);
    if (!eng_zero(o, pass_mesh_size(&m, "dp"), "train", &r->t.opt, d) ||
        !eng_seq_parallel(o, &m, "train", d))
        return false;
    if (m.world != r->world_size) {
        char how[300];
        if (o->exe_name) /* a training executable (cluster_main.c): the mesh is compiled in */
            snprintf(how, sizeof how, "%s ...", o->exe_name);
        else
            snprintf(how, sizeof how, "loom train ... --mesh %s", o->mesh);
        ir_diag_error(d, -1, 0, 0,
                      "train: the mesh %s has %d rank%s but %d process%s started; start one process per rank "
                      "(mpirun -np %d %s)",
                      ms, m.world, m.world == 1 ? "" : "s", r->world_size, r->world_size == 1 ? " was" : "es were",
                      m.world, how);
        return false;
    }
    for (int a = 0; a < m.n_axes; a++)
        if (m.size[a] > 1 && strcmp(m.axis[a], "dp") != 0 && strcmp(m.axis[a], "tp") != 0 &&
            strcmp(m.axis[a], "pp") != 0) {
            ir_diag_error(d, -1, 0, 0,
                          "train: --mesh %s: the axes dp, tp and pp train; %s=%d does not "
                          "(loom run --mesh runs it forward)",
                          o->mesh, m.axis[a], m.size[a]);
            return false;
        }
    r->mesh = m;
    bool sharded = pass_mesh_size(&m, "tp") > 1 || pass_mesh_size(&m, "pp") > 1;
    int a = pass_mesh_axis(&m, "dp");
    r->dp = pass_mesh_size(&m, "dp");
    r->dp_rank = a >= 0 ? pass_mesh_coord(&m, r->world_rank, a) : 0;
    r->zn = r->t.opt.shards;
    r->zrank = r->zn > 1 ? r->dp_rank : 0;
    r->zero2 = r->t.opt.zero == 2;
    if (r->zero2 && r->t.trace) {
        ir_diag_error(d, -1, 0, 0, "train: --trace writes every param's whole gradient; under --zero 2 a rank holds a "
                      "chunk of them (use --zero 1)");
        return false;
    }
    if (r->B % r->dp != 0) {
        ir_diag_error(d, -1, 0, 0, "train: the batch (%d rows) does not split evenly over dp=%d; set -D batch=%d",
                      r->B, r->dp, (r->B / r->dp + 1) * r->dp);
        return false;
    }
    r->Bl = r->B / r->dp;
    int pp = pass_mesh_size(&m, "pp");
    int64_t micro = pp;
    const char *sched = eng_named(o, "--schedule");
    if (!opt_int(o, "--microbatches", 1, &micro, d))
        return false;
    if ((eng_named(o, "--microbatches") || sched) && pp == 1) {
        ir_diag_error(d, -1, 0, 0, "train: --microbatches and --schedule schedule pipeline stages; --mesh %s has no pp "
                      "axis (use --accum to split a batch)", o->mesh);
        return false;
    }
    r->schedule = MESH_1F1B;
    if (sched && !mesh_exec_schedule_parse(sched, &r->schedule)) {
        ir_diag_error(d, -1, 0, 0, "train: --schedule expects gpipe or 1f1b, got '%s'", sched);
        return false;
    }
    if (r->B % micro != 0 || (r->B / micro) % r->dp != 0) {
        ir_diag_error(d, -1, 0, 0,
                      "train: the batch (%d rows) does not split into %" PRId64 " micro-batches of a multiple of dp=%d "
                      "rows; set -D batch= or --microbatches",
                      r->B, micro, r->dp);
        return false;
    }
    r->micro = (int)micro;
    r->Bm = r->B / r->micro;
    if (!eng_virtual_stages(o, &r->mesh, r->micro, r->schedule == MESH_1F1B, "train", d))
        return false;
    if (r->dp * r->micro > 1 && !eng_params_batch_free(o, r->g, r->Bm / r->dp, "train", d))
        return false;
    if (sharded) {
        /* the shard pass splits the batch over dp inside the gradient program; its outputs
         * stay on the stage computing them (summed over pp after the micro-batches) */
        r->dp = 1;
        r->dp_rank = 0;
        r->Bl = r->B;
        r->mesh.local_outputs = true;
    }
    coll_error cerr;
    copt.gpu = o->target && strncmp(o->target, "cuda", 4) == 0;
    r->world = mesh_coll_world(m.world, &copt, &cerr);
    if (!r->world) {
        ir_diag_error(d, -1, 0, 0, "train: %s", cerr.message);
        return false;
    }
    eng_comm_watch(r->world, &r->meter, sharded ? "pp" : "dp"); /* the axes split below inherit it */
    for (int x = 0; sharded && x < m.n_axes; x++) {
        /* color: the rank with this axis's coordinate 0 (the same for the whole group) */
        if (coll_split(r->world, pass_mesh_with(&m, r->world_rank, x, 0), pass_mesh_coord(&m, r->world_rank, x),
                       &r->axis[x]))
            coll_abort(r->world, 1, "train: cannot split the world communicator by mesh axis");
        coll_set_name(r->axis[x], m.axis[x]);
        coll_set_allreduce_algo(r->axis[x], copt.allreduce);
    }
    r->zcomm = r->zn == 1 ? NULL : sharded ? r->axis[a] : r->world;
    char sched_name[64];
    if (r->mesh.virtual_stages > 1)
        snprintf(sched_name, sizeof sched_name, "interleaved 1f1b (%d model chunks a stage)", r->mesh.virtual_stages);
    else
        snprintf(sched_name, sizeof sched_name, "%s", r->schedule == MESH_GPIPE ? "gpipe" : "1f1b");
    if (sharded && pp > 1)
        printf("train: mesh %s: %d ranks; gradient program sharded (autodiff, then the pipeline and shard passes), "
               "%d micro-batch%s of %d rows, %s schedule, %s allreduce\n",
               ms, m.world, r->micro, r->micro == 1 ? "" : "es", r->Bm, sched_name, coll_algo_name(copt.allreduce));
    else if (sharded)
        printf("train: mesh %s: %d ranks; gradient program sharded (autodiff, then the shard pass), %s allreduce\n",
               ms, m.world, coll_algo_name(copt.allreduce));
    else if (r->zn == 1)
        printf("train: mesh %s: %d rank%s, each %d of the %d rows of a batch; gradients averaged with %s allreduce\n",
               ms, m.world, m.world == 1 ? "" : "s", r->Bl, r->B, coll_algo_name(copt.allreduce));
    else
        printf("train: mesh %s: %d ranks, each %d of the %d rows of a batch; gradients averaged with reduce-scatter\n",
               ms, m.world, r->Bl, r->B);
    if (r->zn > 1)
        printf("train: --zero 1: the optimizer state sharded over dp=%d (each rank updates 1/%d of the params, then "
               "allgathers them)\n", r->zn, r->zn);
    return true;
}

/* A program of the training step on --target. On r->dev (device-resident training) it runs
 * asynchronously on the device the others share; else, on a GPU, it follows the host buffers
 * (params, state and batches change in place between runs: uploaded again before each run). */
static program *train_program(trainer *r, const eng_opts *o, const ir_graph *g, const char *pipeline, rt_pool *pool,
                              ir_diag *d)
{
    if (r->dev) {
        program *p = program_new_device(r->dev, g, pipeline, pool, d);
        if (p)
            program_set_async(p, true);
        return p;
    }
    program *p = program_new(o->target ? o->target : "cpu", g, pipeline, pool, d);
    if (p)
        program_follow_host(p, true);
    return p;
}

/* fp16 loss scaling: the output "loss" of g becomes loss · loss_scale, a new f32 scalar input,
 * so autodiff's gradients come out scaled (the output moved to the end: operands first). */
static void scale_loss(ir_graph *g, ir_diag *d)
{
    int at = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_output && strcmp(g->nodes[i]->name, "loss") == 0)
            at = i;
    if (at < 0)
        ir_unreachable("train: scale_loss needs the output 'loss'");
    ir_node *old = g->nodes[at], *loss = old->in[0];
    ir_node *scale = ir_node_add(g, OP_input, 0, NULL, old->loc);
    scale->name = ir_graph_strdup(g, "loss_scale");
    scale->dtype = loss->dtype;
    ir_node *ins[2] = {loss, scale};
    ir_node *scaled = ir_node_add(g, OP_mul, 2, ins, old->loc);
    ir_node *out = ir_node_add(g, OP_output, 1, &scaled, old->loc);
    out->name = ir_graph_strdup(g, "loss");
    if (!ir_infer(scale, d) || !ir_infer(scaled, d) || !ir_infer(out, d))
        ir_unreachable("train: the scaled loss does not infer");
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    if (!dead)
        ir_unreachable("out of memory");
    dead[at] = true;
    ir_graph_compact(g, dead);
    free(dead);
}

/* "dce,cse,lower-precision=T,fuse" for the eval program under --precision T */
static const char *eval_pipeline(const trainer *r)
{
    return r->half == DT_F16 ? "dce,cse,lower-precision=fp16,fuse"
           : r->half == DT_BF16 ? "dce,cse,lower-precision=bf16,fuse"
                                : NULL;
}

/* LOOM_TRAIN_FOLLOW_HOST=1: a device target runs training as before device-resident training
 * (every program on a device of its own, following the host buffers), for comparisons. */
static bool follow_host_env(void)
{
    const char *e = getenv("LOOM_TRAIN_FOLLOW_HOST");
    return e && strcmp(e, "1") == 0;
}

/* The mesh axes whose traffic the metrics report (in the mesh's order), into row. */
static void metrics_axes(const trainer *r, eng_metrics_row *row)
{
    row->n_axes = 0;
    for (int a = 0; r->world && a < r->mesh.n_axes && row->n_axes < 8; a++)
        if (r->mesh.size[a] > 1)
            row->axis[row->n_axes++] = r->mesh.axis[a];
}

/* The FLOPs of a step (the whole model's training graph, by ir/cost.c) and the peak they are
 * measured against (--peak-tflops, else eng_peak_flops). */
static bool setup_metrics(trainer *r, const eng_opts *o)
{
    ir_diag *d = r->d;
    double tf = -1;
    if (!opt_num(o, "--peak-tflops", 0, true, 1e9, &tf, d))
        return false;
    const char *how = "--peak-tflops";
    r->peak_flops = tf > 0 ? tf * 1e12 : eng_peak_flops(o->target, r->half, rt_pool_size(r->pool), &how);
    ir_graph *tg = eng_train_graph(o, r->g, 0, NULL, true, "train", d);
    if (!tg)
        return false;
    r->step_flops = eng_graph_flops(tg) * r->t.opt.accum;
    ir_graph_free(tg);
    if (!r->quiet && o->stats)
        printf("train: %.3g FLOPs a step (ir/cost.c); peak %.3g TFLOP/s a device (%s)\n", r->step_flops,
               r->peak_flops / 1e12, r->peak_flops > 0 ? how : "unknown: --peak-tflops gives it");
    return true;
}

static bool setup(trainer *r, const eng_opts *o)
{
    ir_diag *d = r->d;
    r->g = eng_load_graph(o, d);
    if (!r->g)
        return false;
    const ir_node *tok = batch_input(r->g, "tokens", d), *tgt = tok ? batch_input(r->g, "targets", d) : NULL;
    if (!tgt)
        return false;
    if (!ir_shape_eq(&tok->shape, &tgt->shape)) {
        ir_diag_error(d, -1, 0, 0, "train: inputs 'tokens' and 'targets' differ in shape");
        return false;
    }
    const ir_node *loss = eng_find_node(r->g, OP_output, "loss"), *logits = eng_find_node(r->g, OP_output, "logits");
    if (!loss) {
        ir_diag_error(d, -1, 0, 0, "train: the model has no output 'loss'");
        return false;
    }
    r->B = (int)tok->shape.dim[0];
    r->T = (int)tok->shape.dim[1];
    r->V = logits && logits->in[0]->shape.rank >= 1 ? (int)logits->in[0]->shape.dim[logits->in[0]->shape.rank - 1] : 0;
    r->half = eng_precision(o, "train", d);
    if (r->half == DT_VOID)
        return false;
    if (r->half == DT_F64) {
        ir_diag_error(d, -1, 0, 0, "train: --precision f64: training computes in f32 (bf16 or fp16: mixed precision)");
        return false;
    }
    r->scaler = rt_loss_scale_default();
    if (eng_named(o, "--loss-scale")) {
        double s;
        if (r->half != DT_F16) {
            ir_diag_error(d, -1, 0, 0, "train: --loss-scale is the initial loss scale of --precision fp16");
            return false;
        }
        if (!opt_num(o, "--loss-scale", r->scaler.min_scale, false, r->scaler.max_scale, &s, d))
            return false;
        r->scaler.scale = s;
    }
    if (!setup_mesh(r, o))
        return false;
    if (r->t.trace && (r->axis[0] || r->zn > 1)) {
        ir_diag_error(d, -1, 0, 0, "train: --trace writes whole gradients; under %s no rank has them",
                      r->zn > 1 ? "--zero 1" : "tp or pp");
        return false;
    }
    if (r->half != DT_F32 && r->axis[0]) {
        ir_diag_error(d, -1, 0, 0, "train: --precision %s under tp or pp is not supported yet (dp is)", o->precision);
        return false;
    }
    if (!rt_data_load(r->t.data, &r->tokens, d))
        return false;
    if (r->V && r->tokens.vocab_size > (uint32_t)r->V) {
        ir_diag_error(d, -1, 0, 0, "%s: the data's vocabulary (%u) is larger than the model's (%d); set -D vocab=%u",
                      r->t.data, r->tokens.vocab_size, r->V, r->tokens.vocab_size);
        return false;
    }
    if (!rt_loader_init(&r->loader, &r->tokens, RT_LOADER_VAL_FRAC, r->B, r->T, o->seed, d))
        return false;
    if (rt_loader_seq_count(&r->loader, RT_SPLIT_VAL) == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: the validation split (last 10%%, %zu tokens) holds no batch of %d x %d tokens",
                      r->t.data, r->loader.n_val, r->B, r->T);
        return false;
    }
    r->inputs = calloc((size_t)r->Bl * (size_t)r->T, sizeof *r->inputs);
    r->targets = calloc((size_t)r->Bl * (size_t)r->T, sizeof *r->targets);
    r->g_inputs = r->dp > 1 ? calloc((size_t)r->B * (size_t)r->T, sizeof *r->g_inputs) : r->inputs;
    r->g_targets = r->dp > 1 ? calloc((size_t)r->B * (size_t)r->T, sizeof *r->g_targets) : r->targets;
    r->pool = rt_pool_new(0);
    if (!r->inputs || !r->targets || !r->g_inputs || !r->g_targets || !r->pool)
        ir_unreachable("out of memory");

    /* --mask P without --weights: fine-tuning starts from P */
    const char *mask = eng_named(o, "--mask"), *start = o->weights ? o->weights : mask;
    if (mask && r->axis[0]) {
        ir_diag_error(d, -1, 0, 0, "train: --mask under tp or pp is not supported yet (dp is)");
        return false;
    }
    if (start && !r->t.resume) {
        r->have_init = rt_hf_open_weights(start, &r->init_w, d);
        if (!r->have_init)
            return false;
    }
    /* the state first: a bad checkpoint is reported before minutes of compiling (under tp/pp
     * the state is the rank's slices, known once its program is built: below) */
    if (!r->axis[0] && (!setup_state(r, o->seed, r->g) || (r->t.resume && !resume(r, o->seed))))
        return false;
    if (mask) {
        if (!setup_mask(r, mask))
            return false;
        apply_mask(r, r->flat, NULL);
    }
    /* on a device, one process: the whole state stays on the device (below); --mask and
     * --teacher work on the host's copies, so they keep the host round trip */
    if (!(o->target && strcmp(o->target, "ref") == 0) && !o->mesh && !r->t.trace && !mask && !eng_named(o, "--teacher") && !follow_host_env() &&
        !(r->dev = program_device_open(o->target ? o->target : "cpu", d)))
        return false;
    double t0 = rt_now_ms();
    /* the recipe (recipe.c): the loss on a dp rank's rows; under tp/pp a micro-batch's gradient
     * graph on this rank */
    ir_graph *gg = eng_train_graph(o, r->g, r->dp > 1 ? r->Bl : 0, NULL, false, "train", d);
    if (!gg)
        return false;
    /* --teacher: the gradient program's loss is the distillation loss; evaluation stays CE */
    ir_graph *dg = NULL;
    if (eng_named(o, "--teacher")) {
        if (r->axis[0]) {
            ir_diag_error(d, -1, 0, 0, "train: --teacher under tp or pp is not supported yet (dp is)");
            ir_graph_free(gg);
            return false;
        }
        dg = distill_graph(r, o, gg, d);
        if (!dg) {
            ir_graph_free(gg);
            return false;
        }
    } else if (eng_named(o, "--teacher-weights") || eng_named(o, "--distill-alpha") ||
               eng_named(o, "--distill-temperature") || eng_named(o, "--teacher-define")) {
        ir_diag_error(d, -1, 0, 0, "train: --teacher-weights, --teacher-define and --distill-* go with --teacher MODEL");
        ir_graph_free(gg);
        return false;
    }
    const ir_graph *lg = dg ? dg : gg;
    if (r->axis[0]) {
        ir_graph *tg = eng_train_graph(o, r->g, r->micro > 1 ? r->Bm : 0, &r->mesh, true, "train", d);
        /* collective matching before anything runs: the same verdict on every rank */
        if (tg && !mesh_exec_match(tg, &r->mesh, r->micro, r->schedule == MESH_1F1B, r->world, d)) {
            r->failed_everywhere = true;
            ir_graph_free(tg);
            tg = NULL;
        }
        for (int k = 0; k < r->meter.n_axes; k++) /* the exchange is no step's traffic */
            eng_comm_meter_take(&r->meter, r->meter.axis[k]);
        if (tg)
            r->mgrad = mesh_exec_new(tg, program_compile_segment, (void *)(o->target ? o->target : "cpu"), &r->mesh,
                                     r->world, r->axis, r->pool, d);
        if (!r->mgrad || !setup_state(r, o->seed, mesh_exec_graph(r->mgrad)) || !count_holders(r) ||
            (zero2_tied(r), r->t.resume && !resume(r, o->seed))) {
            ir_graph_free(gg);
            return false;
        }
    } else {
        /* --recompute: its pass right after autodiff's (recipe.c) */
        char buf[256];
        const char *pipeline = eng_recompute_pipeline(
            o, r->half == DT_F32 ? pass_training_pipeline() : pass_training_precision_pipeline(r->half), "train", buf,
            sizeof buf, d);
        ir_graph *sg = pipeline && r->half == DT_F16 ? ir_graph_clone(lg) : NULL;
        if (sg)
            scale_loss(sg, d);
        r->grad = pipeline ? train_program(r, o, sg ? sg : lg, pipeline, r->pool, d) : NULL;
        ir_graph_free(sg);
    }
    ir_graph_free(dg);
    double t1 = rt_now_ms();
    /* the eval program: under tp/pp the gradient program's forward half (mesh_exec_run_forward) */
    r->eval = r->grad ? train_program(r, o, gg, eval_pipeline(r), r->pool, d) : NULL;
    ir_graph_free(gg);
    double t2 = rt_now_ms();
    /* the update over this rank's state; sharded, its clip norm comes summed over the ranks */
    r->t.opt.sumsq_input = r->mgrad != NULL || r->zn > 1;
    r->t.opt.grad_scale_input = r->dev && r->half == DT_F16; /* unscaled on the device */
    ir_graph *ug = r->eval || r->mgrad ? pass_optimizer_graph(r->mgrad ? mesh_exec_graph(r->mgrad) : r->g, &r->t.opt, d)
                                       : NULL;
    r->update = ug ? train_program(r, o, ug, NULL, r->pool, d) : NULL;
    ir_graph_free(ug);
    if (r->update && r->dev && r->t.opt.accum > 1) {
        ir_graph *ag = pass_accum_graph(r->n_group);
        r->accum = train_program(r, o, ag, NULL, r->pool, d);
        ir_graph_free(ag);
        if (!r->accum)
            return false;
    }
    double t3 = rt_now_ms();
    if (!r->update)
        return false;
    if (!(r->dev ? device_setup(r) : bind_all(r)))
        return false;
    r->overlap = !r->dev && setup_overlap(r);
    int64_t n_params = r->n_group[0] + r->n_group[1];
    if (!r->quiet)
        printf("train: %.2fM params, %s; data %s: %zu train / %zu val tokens (vocab %u); batch %d x seq %d x accum %d "
           "= %d tokens a step; %d threads; compiled in %.0f ms (gradients %.0f, eval %.0f, update %.0f)\n",
           (double)n_params / 1e6, r->t.opt.kind == PASS_OPT_SGD ? "sgd" : "adamw", r->t.data, r->loader.n_train,
           r->loader.n_val, r->tokens.vocab_size, r->B, r->T, r->t.opt.accum, r->B * r->T * r->t.opt.accum,
           rt_pool_size(r->pool), t3 - t0, t1 - t0, t2 - t1, t3 - t2);
    if (r->t.resume && !r->quiet)
        printf("resumed from %s at step %" PRId64 "\n", r->t.resume, r->step);
    if (!setup_metrics(r, o))
        return false;
    if (r->t.log && r->world_rank == 0) {
        bool append = r->t.resume != NULL;
        r->log = fopen(r->t.log, append ? "a" : "w");
        if (!r->log) {
            ir_diag_error(d, -1, 0, 0, "%s: cannot write the log: %s", r->t.log, strerror(errno));
            return false;
        }
        r->log_csv = eng_metrics_csv(r->t.log);
        eng_metrics_row axes = {0};
        metrics_axes(r, &axes);
        if (!append || ftell(r->log) == 0)
            eng_metrics_header(r->log, r->log_csv, &axes);
    }
    if (r->t.trace && r->world_rank == 0 && mkdir(r->t.trace, 0777) != 0 && errno != EEXIST) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot create: %s", r->t.trace, strerror(errno));
        return false;
    }
    fflush(stdout);
    return true;
}

/* Device time (ms, profiled, so far) by kind: the gradient and accumulation programs' GEMMs,
 * attention, elementwise and reduction kernels and copies, and the update program's whole time
 * (the optimizer). */
static void kind_ms(const trainer *r, double ms[STEP_KINDS])
{
    rt_exec_stats g = program_stats(r->grad), a = r->accum ? program_stats(r->accum) : (rt_exec_stats){0};
    rt_exec_stats u = program_stats(r->update);
    double v[STEP_KINDS] = {g.ms_gemms + a.ms_gemms, g.ms_attentions + a.ms_attentions,
                            g.ms_elementwise + a.ms_elementwise, g.ms_reductions + a.ms_reductions,
                            u.ms_kernels + u.ms_gemms + u.ms_attentions + u.ms_other + u.ms_scatters,
                            g.ms_copies + a.ms_copies};
    memcpy(ms, v, sizeof v);
}

/* --stats: what a step's programs are made of and where their time went. */
static void print_stats(trainer *r)
{
    program *ps[] = {r->grad, r->update};
    const char *names[] = {"gradients", "update"};
    for (int i = 0; i < 2; i++) {
        rt_exec_stats s = program_stats(ps[i]);
        double total = s.ms_kernels + s.ms_gemms + s.ms_attentions + s.ms_other + s.ms_scatters;
        printf("stats %s: %d kernels, %d gemm, %d attention, %d copies per run; arena %.2f MiB; time %.0f ms: "
               "kernels %.0f, gemm %.0f (%.0f%%), attention %.0f, scatter %.0f, other %.0f\n",
               names[i], s.kernels, s.gemms, s.attentions, s.copies, (double)program_plan(ps[i])->arena_bytes / 1048576.0,
               total, s.ms_kernels, s.ms_gemms, total > 0 ? 100 * s.ms_gemms / total : 0, s.ms_attentions,
               s.ms_scatters, s.ms_other);
    }
}

/* The end of a job after a failure on one rank: the others wait in a collective, so the
 * whole job ends (what: "failed to set up" or "failed"). */
static void abort_job(trainer *r, const char *what)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "train: rank %d %s: %s", r->world_rank, what, r->d->n_msg ? r->d->msg[0].msg : "unknown error");
    ir_diag_print(r->d, stderr);
    coll_abort(r->world, 1, msg);
}

eng_trainer *eng_trainer_new(const eng_opts *o, bool quiet, ir_diag *d)
{
    trainer *r = calloc(1, sizeof *r);
    if (!r)
        ir_unreachable("out of memory");
    *r = (trainer){.d = d, .o = o, .quiet = quiet, .first = true, .world_size = 1};
    coll_launch launch;
    coll_error cerr;
    if (!coll_launch_detect(&launch, &cerr)) {
        ir_diag_error(d, -1, 0, 0, "train: %s", cerr.message);
        eng_trainer_free(r);
        return NULL;
    }
    if (launch.found) {
        r->world_rank = launch.rank;
        r->world_size = launch.size;
    }
    bool set = parse_opts(o, &r->t, d) && setup(r, o);
    if (!set && r->axis[0] && r->world_size > 1 && !r->failed_everywhere)
        /* under tp/pp each rank builds its own program and state: a setup failure may be this
         * rank's alone, with the others waiting in a collective; say it and end the job */
        abort_job(r, "failed to set up");
    if (!set) {
        /* setup errors are the same on every rank: only rank 0 says them */
        if (r->world_rank > 0)
            ir_diag_quiet(d);
        eng_trainer_free(r);
        return NULL;
    }
    r->t_start = rt_now_ms();
    return r;
}

/* The bytes a step's programs moved between host and device so far: the shared device's, or
 * (following the host) the gradient and update programs' own devices'. */
static rt_xfer step_xfer(trainer *r)
{
    if (r->dev)
        return program_device_xfer(r->dev);
    rt_xfer x = {0, 0};
    program *ps[] = {r->grad, r->update};
    for (int i = 0; i < 2; i++) {
        if (!ps[i])
            continue;
        rt_exec_stats s = program_stats(ps[i]);
        x.h2d += s.bytes_h2d;
        x.d2h += s.bytes_d2h;
    }
    return x;
}

bool eng_trainer_step(eng_trainer *r, eng_train_step *out, ir_diag *d)
{
    r->d = d;
    if (r->o->stats && r->grad && r->first) {
        program_profile(r->grad, true);
        program_profile(r->update, true);
    }
    double t0 = rt_now_ms(), loss = 0, norm = 0;
    r->comm_ms = 0;
    r->comm_bytes = 0;
    rt_xfer x0 = step_xfer(r);
    bool ok = train_step(r, &loss, &norm, r->first && r->step == 0);
    rt_xfer x1 = step_xfer(r);
    r->xfer_step = (rt_xfer){x1.h2d - x0.h2d, x1.d2h - x0.d2h};
    r->first = false;
    if (!ok)
        return false;
    double t1 = rt_now_ms(), ms = t1 - t0;
    if (rt_trace_active()) {
        char name[64], args[160];
        snprintf(name, sizeof name, "step %" PRId64, r->step);
        snprintf(args, sizeof args, "\"step\":%" PRId64 ",\"loss\":%.6g,\"tokens\":%lld", r->step, loss,
                 (long long)r->B * r->T * r->t.opt.accum);
        eng_trace_span("train", name, args, t0, t1);
    }
    *out = (eng_train_step){.step = r->step, .loss = loss, .grad_norm = norm, .lr = lr_at(&r->t, r->step), .ms = ms,
                            .tokens = (int64_t)r->B * r->T * r->t.opt.accum, .skipped = r->skipped,
                            .loss_scale = r->half == DT_F16 ? r->scaler.scale : 0, .comm_ms = r->comm_ms,
                            .comm_bytes = r->comm_bytes};
    return true;
}

bool eng_trainer_evaluate(eng_trainer *r, double *loss, ir_diag *d)
{
    r->d = d;
    double t0 = rt_now_ms();
    bool ok = evaluate(r, loss);
    eng_trace_span("train", "evaluate", "", t0, rt_now_ms());
    return ok;
}

bool eng_trainer_save(eng_trainer *r, const char *dir, ir_diag *d)
{
    r->d = d;
    const char *was = r->t.checkpoint;
    r->t.checkpoint = dir;
    bool ok = save(r, r->o->seed);
    r->t.checkpoint = was;
    return ok;
}

int64_t eng_trainer_steps_done(const eng_trainer *r) { return r->step; }

void eng_trainer_free(eng_trainer *r)
{
    if (!r)
        return;
    if (r->log)
        fclose(r->log);
    program_free(r->sample);
    program_free(r->grad);
    program_free(r->update);
    program_free(r->eval);
    for (int i = 0; i < r->n_teacher; i++) {
        free(r->teacher_name[i]);
        free(r->teacher_data[i]);
    }
    free(r->teacher_name);
    free(r->teacher_data);
    program_free(r->accum);
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        for (int h = 0; h < 2; h++) {
            program_buf_free(r->dparams[h][k]);
            for (int j = 0; j < 2; j++)
                program_buf_free(r->dstate[h][k][j]);
        }
        program_buf_free(r->dgrads[k]);
        program_buf_free(r->dgrads_mb[k]);
    }
    program_buf_free(r->dscal);
    program_buf_free(r->deval);
    free(r->eval_stage);
    program_device_close(r->dev);
    free(r->stage);
    free(r->tied_holders);
    free(r->tied_count);
    free(r->tied_local);
    free(r->grad_step);
    free(r->buckets);
    free(r->taken);
    free(r->started);
    free(r->params); /* its names may live in the mesh program's graph: freed next */
    r->params = NULL;
    mesh_exec_free(r->mgrad);
    rt_pool_free(r->pool);
    if (r->have_init)
        rt_st_close(&r->init_w);
    free(r->zstage);
    free(r->zrecv);
    free(r->zsrc);
    for (int i = 0; r->ztied && i < r->n_params; i++)
        free(r->ztied[i]);
    free(r->ztied);
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        free(r->flat[k]);
        free(r->grads[k]);
        free(r->keep[k]);
        for (int j = 0; j < 2; j++)
            free(r->state[k][j]);
    }
    if (r->g_inputs != r->inputs)
        free(r->g_inputs), free(r->g_targets);
    free(r->inputs);
    free(r->targets);
    for (int a = 0; a < IR_MAX_MESH_AXES; a++)
        coll_finalize(r->axis[a]);
    if (r->world) {
        coll_barrier(r->world);
        coll_finalize(r->world);
    }
    rt_tok_free(&r->tokens);
    ir_graph_free(r->g);
    free(r);
}

/* SIGTERM or SIGUSR1 (Slurm's --signal, a preemption notice): the loop finishes its step,
 * writes a checkpoint and ends (docs/training.md, "Preemption"). */
static volatile sig_atomic_t preempt_signal;

static void on_preempt(int sig) { preempt_signal = sig; }

static void catch_preemption(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_preempt;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* a file size limit (RLIMIT_FSIZE) is a write error to report, not a signal to die of */
    signal(SIGXFSZ, SIG_IGN);
}

/* `loom train`'s loop: a step line per step, evaluation, the log, checkpoints, --stats, the
 * sample at the end. */
static bool run(trainer *r, bool *preempted)
{
    const eng_opts *o = r->o;
    const train_opts *t = &r->t;
    bool ok = true;
    while (ok && r->step < t->steps) {
        eng_train_step s;
        ok = eng_trainer_step(r, &s, r->d);
        if (!ok)
            break;
        double tok_s = (double)s.tokens / (s.ms / 1e3);
        double mfu = r->peak_flops > 0 ? r->step_flops / (s.ms / 1e3) / (r->peak_flops * r->world_size) : NAN;
        char mfu_text[32] = "";
        if (isfinite(mfu))
            snprintf(mfu_text, sizeof mfu_text, " | MFU %.1f%%", 100 * mfu);
        eng_metrics_row row = {.step = s.step, .tokens = s.step * s.tokens, .loss = s.loss, .lr = s.lr,
                               .grad_norm = s.grad_norm, .ms = s.ms, .tok_per_s = tok_s, .mfu = mfu, .val_loss = NAN,
                               .loss_scale = s.loss_scale, .skipped = s.skipped};
        metrics_axes(r, &row);
        for (int k = 0; k < row.n_axes; k++)
            row.bytes[k] = eng_comm_meter_take(&r->meter, row.axis[k]);
        char scale[96] = ""; /* fp16: the loss scale the next step uses, and a skipped step */
        if (r->half == DT_F16)
            snprintf(scale, sizeof scale, " | scale %g%s", s.loss_scale,
                     s.skipped ? " (step skipped: inf/nan gradients)" : "");
        else if (s.skipped)
            snprintf(scale, sizeof scale, " (step skipped: %.60s is not finite)", r->nan_what);
        if (r->world)
            printf("step %" PRId64 "/%" PRId64 " | loss %.4f | lr %.1e | norm %.2f%s | %.1f ms (compute %.1f, comm "
                   "%.1f: %.2f MiB) | %.1fk tok/s%s\n",
                   s.step, t->steps, s.loss, s.lr, s.grad_norm, scale, s.ms, s.ms - s.comm_ms, s.comm_ms,
                   (double)s.comm_bytes / 1048576.0, tok_s / 1e3, mfu_text);
        else
            printf("step %" PRId64 "/%" PRId64 " | loss %.4f | lr %.1e | norm %.2f%s | %.1f ms | %.1fk tok/s%s\n",
                   s.step, t->steps, s.loss, s.lr, s.grad_norm, scale, s.ms, tok_s / 1e3, mfu_text);
        if (o->stats && o->target && strcmp(o->target, "cpu") != 0 && !r->world) {
            /* the step's traffic over the bus and its device time by kind (evaluation's not counted) */
            double ms[STEP_KINDS];
            kind_ms(r, ms);
            fprintf(stderr, "stats step %" PRId64 ": %" PRId64 " bytes host->device, %" PRId64 " bytes device->host; "
                    "device ms: gemm %.3f, attention %.3f, elementwise %.3f, reduction %.3f, optimizer %.3f, copy %.3f\n",
                    s.step, r->xfer_step.h2d, r->xfer_step.d2h, ms[0] - r->kind_ms[0], ms[1] - r->kind_ms[1],
                    ms[2] - r->kind_ms[2], ms[3] - r->kind_ms[3], ms[4] - r->kind_ms[4], ms[5] - r->kind_ms[5]);
            memcpy(r->kind_ms, ms, sizeof ms);
        }
        if (o->stats && r->world) /* each rank's own count, exact (`loom check --train` predicts it) */
            fprintf(stderr, "stats rank %d step %" PRId64 ": %" PRId64 " bytes into collectives\n", r->world_rank,
                    s.step, s.comm_bytes);
        double val = NAN;
        if ((t->eval_every > 0 && r->step % t->eval_every == 0) || r->step == t->steps) {
            ok = eng_trainer_evaluate(r, &val, r->d);
            for (int k = 0; k < row.n_axes; k++) /* evaluation's traffic is no step's */
                eng_comm_meter_take(&r->meter, row.axis[k]);
            if (ok)
                printf("val step %" PRId64 " | val loss %.4f | %.1f s\n", r->step, val, (rt_now_ms() - r->t_start) / 1e3);
        }
        fflush(stdout);
        if (r->log) {
            row.val_loss = val;
            eng_metrics_write(r->log, r->log_csv, &row);
            fflush(r->log);
        }
        bool saved = false;
        if (ok && t->checkpoint && (r->world_rank == 0 || r->mgrad || r->zn > 1) &&
            ((t->save_every > 0 && r->step % t->save_every == 0) || r->step == t->steps))
            ok = saved = save(r, o->seed);
        /* a preemption notice on any rank: every rank stops after this same step */
        if (ok && r->step < t->steps && agree_any(r, preempt_signal != 0)) {
            if (t->checkpoint && !saved && (r->world_rank == 0 || r->mgrad || r->zn > 1))
                ok = save(r, o->seed);
            if (ok && t->checkpoint)
                printf("preempted after step %" PRId64 ": checkpoint written to %s (--resume %s continues)\n",
                       r->step, t->checkpoint, t->checkpoint);
            else if (ok)
                printf("preempted after step %" PRId64 ": no --checkpoint, nothing saved\n", r->step);
            fflush(stdout);
            *preempted = ok;
            return ok;
        }
    }
    if (ok && o->stats && r->grad)
        print_stats(r);
    int64_t held = 0; /* params, gradients and optimizer state, as allocated (setup_state) */
    for (int k = 0; k < PASS_OPT_GROUPS; k++) {
        int64_t whole = r->zn > 1 ? r->zchunk[k] * r->zn : r->n_group[k];
        held += 4 * (whole + (r->zero2 ? r->zchunk[k] : whole) + r->n_state * r->zchunk[k]);
    }
    for (int i = 0; r->ztied && i < r->n_params; i++) { /* --zero 2 under pp: tied params' sums */
        if (r->ztied[i])
            held += 4 * (int64_t)r->params[i].count;
    }
    if (ok && o->stats && r->world) /* `loom check --train` predicts it ("loom train holds") */
        fprintf(stderr, "stats rank %d memory: %" PRId64 " bytes of params, gradients and optimizer state\n",
                r->world_rank, held);
    if (ok && o->stats && r->mgrad) {
        mesh_memory m = mesh_exec_memory(r->mgrad);
        double state = (double)held;
        fprintf(stderr,
                "loom: rank %d memory: state %.1f MiB (params, gradients, optimizer); runner: params %.1f MiB, values "
                "%.1f MiB in %d slot%s, %d segments' arenas %.1f MiB and outputs %.1f MiB\n",
                r->world_rank, state / 1048576, m.params / 1048576, m.values / 1048576, m.slots, m.slots == 1 ? "" : "s",
                m.segments, m.arenas / 1048576, m.outputs / 1048576);
    }
    if (ok && t->sample > 0 && r->V > 0 && r->world_rank == 0 && r->mgrad)
        printf("sample: skipped under tp/pp, where no rank holds the whole model (`loom gather` the checkpoint, then "
               "`loom generate`)\n");
    else if (ok && t->sample > 0 && r->V > 0 && r->world_rank == 0)
        ok = generate(r, o, o->seed);
    return ok;
}

bool eng_train(const eng_opts *o, ir_diag *d, bool *preempted)
{
    *preempted = false;
    catch_preemption();
    /* rank 0 alone prints: the ranks hold the same state and print the same lines */
    coll_launch launch;
    coll_error cerr;
    if (coll_launch_detect(&launch, &cerr) && launch.found && launch.rank > 0 && !freopen("/dev/null", "w", stdout))
        ir_unreachable("train: cannot silence a rank's stdout");
    eng_profile *prof = eng_profile_start(o->profile, o->exe_name ? o->exe_name : "loom train", d);
    if (o->profile && !prof)
        return false;
    trainer *r = eng_trainer_new(o, false, d);
    if (!r)
        return eng_profile_finish(prof, d) && false;
    catch_preemption(); /* again: MPI's start-up may have set its own SIGUSR1 handler */
    /* a failure on one rank leaves the others waiting in the next allreduce: end the job */
    if (!run(r, preempted) && r->world && r->world_size > 1)
        abort_job(r, "failed");
    eng_trainer_free(r);
    eng_profile_finish(prof, d);
    return ir_diag_ok(d);
}
