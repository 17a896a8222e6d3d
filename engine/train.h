/* train.h — the trainer as an object (train.c): what `loom train` runs step by step, and what
 * the C API's loom_trainer is. Made from loom train's options (eng_opts: the model, -D, --data,
 * --lr, ... ; docs/training.md), it holds the programs, the data loader and the whole training
 * state (params, optimizer state, step, batch counter), resumed from --resume if given. */
#ifndef LOOM_ENGINE_TRAIN_H
#define LOOM_ENGINE_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/options.h"
#include "ir/diag.h"
#include "ir/ir.h"
#include "passes/mesh.h"

/* recipe.c — the training recipe: the graph one rank runs for a training step, from model g
 * (built with options o): g with `rows` rows a batch (-D batch=rows; 0 or g's own: g itself),
 * pruned to its output "loss", whose inputs must be only "tokens" and "targets" (else
 * "CMD: the loss needs input 'X' ..."): the evaluation graph. With grad, then autodiff, and
 * under a mesh m with tp or pp the pipeline and shard passes for rank m->rank (the rank's local
 * graph with its communication): the gradient graph. NULL after reporting through d. */
ir_graph *eng_train_graph(const eng_opts *o, const ir_graph *g, int rows, pass_mesh *m, bool grad, const char *cmd,
                          ir_diag *d);
/* The training pipeline `pipeline` (one with autodiff) with o's --recompute none|selective|full
 * (passes/recompute.c) run right after autodiff's dce,cse, written into buf; pipeline itself
 * without one; NULL after "CMD: --recompute expects none, selective or full, got 'X'". */
const char *eng_recompute_pipeline(const eng_opts *o, const char *pipeline, const char *cmd, char *buf, size_t cap,
                                   ir_diag *d);

typedef struct eng_trainer eng_trainer;

/* What one step did. */
typedef struct {
    int64_t step;          /* steps done, this one included */
    double loss;           /* the step's mean training loss */
    double grad_norm;      /* before clipping; NaN when the step was skipped */
    double lr;             /* the learning rate it used */
    double ms;             /* wall time */
    int64_t tokens;        /* tokens it trained on (batch · seq · accum) */
    bool skipped;          /* fp16: inf/nan gradients, no update */
    double loss_scale;     /* fp16: the scale the next step uses (0 otherwise) */
    double comm_ms;        /* under a mesh: time in collectives */
    int64_t comm_bytes;    /* under a mesh: bytes into collectives */
} eng_train_step;

/* Sets up training as `loom train` would with options o (which must outlive the trainer): on
 * one process, or under a launcher with --mesh on this rank of the mesh. quiet: no progress
 * lines on stdout (the summary, "loss at init"). NULL after reporting through d. */
eng_trainer *eng_trainer_new(const eng_opts *o, bool quiet, ir_diag *d);
/* One optimizer step: --accum batches of the training split, the gradients, the update. */
bool eng_trainer_step(eng_trainer *t, eng_train_step *out, ir_diag *d);
/* The mean loss over the first --eval-batches batches of the validation split. */
bool eng_trainer_evaluate(eng_trainer *t, double *loss, ir_diag *d);
/* A checkpoint of the whole state in dir (atomic; io/checkpoint.h): --resume continues from it
 * bit for bit. */
bool eng_trainer_save(eng_trainer *t, const char *dir, ir_diag *d);
int64_t eng_trainer_steps_done(const eng_trainer *t);
void eng_trainer_free(eng_trainer *t);

#endif
