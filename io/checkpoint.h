/* checkpoint.h — training checkpoints: a directory holding
 *     manifest.json            {"format": "loom-checkpoint", "version": 1, "step": 120,
 *                               "next_batch": 480, "seed": "1337", "rng": "0",
 *                               "optimizer": "adamw", "batch": 16, "seq": 128, "accum": 1,
 *                               "state": "state-00000120.safetensors",
 *                               "state_sum": "sum64:0123456789abcdef",
 *                               "loss_scale": 65536, "loss_scale_good_steps": 12}  (fp16 only)
 *     state-00000120.safetensors   every f32 tensor of the training state (params, optimizer
 *                                  state), by name
 * u64 values are decimal strings (JSON numbers are doubles). Saving is atomic: the state file
 * is written as PATH.tmp, fsynced and renamed; then the manifest the same way; then the
 * directory is fsynced and older state files are removed. The manifest names the state file of
 * its step, and a state file is only removed once a newer manifest is durable, so a kill at any
 * moment leaves the last complete checkpoint loadable. "state_sum" is the state file's checksum
 * (io/checksum.h), verified whenever the file is read: a flipped byte is an error naming it.
 */
#ifndef LOOM_RT_CHECKPOINT_H
#define LOOM_RT_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "io/safetensors.h"
#include "ir/ir.h"

typedef struct {
    int64_t step;          /* optimizer steps done */
    uint64_t next_batch;   /* index of the next training batch (tokens.h's loader) */
    uint64_t seed;         /* the run's --seed */
    uint64_t rng;          /* position of the sampling stream */
    char optimizer[16];    /* "adamw" or "sgd" */
    int batch, seq, accum; /* what the batch stream depends on */
    double loss_scale;     /* fp16 training's dynamic loss scale; 0: none (optional in the file) */
    int64_t good_steps;    /* its good steps in a row */
} rt_ckpt_info;

/* One tensor of the state: f32, shape, caller memory. */
typedef struct {
    const char *name;
    ir_shape shape;
    float *data;
} rt_ckpt_tensor;

/* Writes a checkpoint of the n tensors into dir (created if missing). */
bool rt_ckpt_save(const char *dir, const rt_ckpt_info *info, const rt_ckpt_tensor *t, int n, ir_diag *d);

/* Reads dir's checkpoint: *info from the manifest, and each t[i].data from the state file,
 * which must hold exactly these tensors, f32, with these shapes. Reports the first problem
 * ("DIR/manifest.json: ...", "DIR/state-...: tensor 'x' ...") through d. */
bool rt_ckpt_load(const char *dir, rt_ckpt_info *info, rt_ckpt_tensor *t, int n, ir_diag *d);

/* The step of dir's checkpoint (its manifest), or -1 when there is none or it is unreadable. */
int64_t rt_ckpt_step(const char *dir);
/* Opens the state file dir's manifest names and verifies its checksum (`loom gather`); false
 * after reporting "DIR/manifest.json: ..." or "DIR/state-...: ...". */
bool rt_ckpt_open_state(const char *dir, rt_st_file *f, ir_diag *d);

#endif
