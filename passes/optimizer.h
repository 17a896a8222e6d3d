/* optimizer.h — the parameter update of a training step as graph IR (passes/optimizer.c).
 *
 * pass_optimizer_graph reads the params of a model graph and builds a separate "update" graph
 * that `loom train` compiles once (like any graph: dce, cse, fuse, lowering, JIT) and runs once
 * per optimizer step, after the gradient program has run --accum times.
 *
 * Flat layout. The update works on the params flattened and concatenated into (at most) two
 * groups, in graph order: group "decay" (params that get weight decay) and group "no_decay"
 * (the rest), so that it is a handful of kernels over long vectors however many params the
 * model has (like PyTorch's fused/foreach optimizers). For each group G with elements:
 *   params   params/G                 the params before the step, f32[n_G]
 *            adam.m/G adam.v/G        AdamW moments (zeros at step 1)
 *            sgd.buf/G                SGD momentum buffer (only when momentum > 0)
 *   inputs   grads/G                  d loss / d params, summed over the micro-batches
 *            lr                       the learning rate of this step (f32 scalar; the
 *                                     warmup + cosine schedule is computed on the host)
 *            step                     the step number t = 1, 2, ... as f32 (bias correction)
 *            grad_sumsq               with sumsq_input only: Σ g² of the averaged gradient
 *                                     over the whole model (f32 scalar; the norm is its sqrt)
 *            grad_scale               with grad_scale_input only: grads are of scale · loss
 *                                     (fp16 loss scaling) and are multiplied by this first
 *                                     (1 / scale, f32 scalar; as PyTorch's fused AdamW's)
 *   outputs  params/G, adam.m/G, adam.v/G, sgd.buf/G: the values after the step (same names
 *            as the params: params and outputs are separate namespaces)
 *            grad_norm                global L2 norm of the averaged gradient, before clipping
 *
 * The step (PyTorch's AdamW / SGD and clip_grad_norm_ semantics, computed in f32):
 *   g = grads [· grad_scale] / accum;  norm = sqrt(Σ g²) over both groups (an inf or NaN in
 *   the gradients makes it inf or NaN: the caller's found-inf);
 *   with clip > 0:  g *= min(1, clip / (norm + 1e-6))
 *   AdamW: m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;
 *          p = p (1 − lr·wd) − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
 *   SGD:   g += wd · p;  buf = momentum · buf + g (when momentum > 0, else buf = g);  p −= lr · buf
 * with wd = weight_decay in group decay and 0 in group no_decay. A param is decayed when
 * weight_decay ≠ 0 and its rank is ≥ 2 (matrices, embeddings), or always with decay_rank1;
 * norm weights and biases (rank 1) are not by default.
 */
#ifndef LOOM_PASS_OPTIMIZER_H
#define LOOM_PASS_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

typedef enum { PASS_OPT_ADAMW, PASS_OPT_SGD } pass_opt_kind;

typedef struct {
    pass_opt_kind kind;
    double beta1, beta2, eps;  /* AdamW */
    double momentum;           /* SGD; 0: plain SGD, no state */
    double weight_decay;       /* decoupled (AdamW) or L2 (SGD) */
    bool decay_rank1;          /* also decay params of rank <= 1 */
    double clip;               /* max global gradient norm; <= 0: no clipping */
    int accum;                 /* micro-batches summed into grads/G (>= 1) */
    bool sumsq_input;          /* the squared global norm comes as input grad_sumsq (sharded
                                  training: this rank's groups hold only its slices) */
    bool grad_scale_input;     /* the gradients are unscaled by input grad_scale (fp16 on a
                                  device, where the host does not touch them) */
    int shards;                /* ZeRO (--zero 1|2): > 1, each group is split over this many dp
                                  ranks and the update is one rank's chunk of it
                                  (pass_opt_chunk elements; needs sumsq_input) */
    int zero;                  /* the ZeRO stage (0 none; 1 the state sharded; 2 the summed
                                  gradients too: the trainer's, the update is stage 1's) */
} pass_opt_config;

enum { PASS_OPT_DECAY, PASS_OPT_NO_DECAY, PASS_OPT_GROUPS };
/* "decay", "no_decay" */
extern const char *const pass_opt_group_name[PASS_OPT_GROUPS];

/* AdamW with β = (0.9, 0.95), eps 1e-8, weight decay 0.1 on rank ≥ 2, clip 1.0, accum 1. */
pass_opt_config pass_opt_config_default(void);

/* The group of a model param under c. */
int pass_opt_group(const pass_opt_config *c, const ir_node *param);

/* Element counts of the groups (graph order of params within each). */
void pass_opt_group_sizes(const ir_graph *model, const pass_opt_config *c, int64_t n[PASS_OPT_GROUPS]);

/* The elements of a group of n one of `shards` ranks updates under ZeRO: ⌈n / shards⌉ (the
 * group padded with zeros to shards · chunk; a zero param with a zero gradient stays zero under
 * AdamW and SGD). n itself when shards <= 1. */
int64_t pass_opt_chunk(int64_t n, int shards);
/* --zero 2's buckets over a group of `shards` chunks of c elements: bucket `at` (0, piece,
 * 2·piece, ...) stages elements [q·c + at, +len) of every chunk q side by side, len =
 * min(piece, c - at), for one reduce-scatter that gives each rank its own chunk's piece;
 * piece = 2^20 / shards (4 MiB of f32 a reduce-scatter). */
int64_t pass_opt_zero2_piece(int shards);
/* Whether that bucket holds an element of [lo, hi) of the group. */
bool pass_opt_zero2_hits(int64_t at, int64_t len, int64_t c, int shards, int64_t lo, int64_t hi);

/* The names of the optimizer state of c, per group: {"adam.m", "adam.v"}, {"sgd.buf"} or none.
 * Returns the count (0 to 2). */
int pass_opt_state_names(const pass_opt_config *c, const char *names[2]);

/* The update graph of model's params (see above; with c->shards > 1 over one rank's chunk of
 * each group: every size n_G above is pass_opt_chunk(n_G, shards)); NULL after reporting through d when a param
 * is not f32 or the model has no params. */
ir_graph *pass_optimizer_graph(const ir_graph *model, const pass_opt_config *c, ir_diag *d);

/* Micro-batch accumulation as a graph, for training on a device (engine/train.c): per group G
 * with n[G] > 0, param "acc/G" and input "add/G" f32[n_G] and output "acc/G" = acc + add; and
 * the scalars "acc/loss" (param), "add/loss" → "acc/loss" (params and outputs are separate
 * namespaces, as in the update). Every output is one elementwise kernel of its
 * inputs at the same index, so the output may be bound to the memory of its "acc" input (the
 * sum updated in place). */
ir_graph *pass_accum_graph(const int64_t n[PASS_OPT_GROUPS]);

#endif
