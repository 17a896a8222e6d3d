/* jobs.h — the whole jobs of loom, each from the options the `loom` command (cli/) or an
 * executable (exe/) parsed: train, generate, build, gather, a run over a mesh, the mesh report.
 * Each reports through d and returns false on failure; the caller prints d. A job prints its
 * progress and results (step lines, generated text, "built X") on stdout as it goes. */
#ifndef LOOM_ENGINE_JOBS_H
#define LOOM_ENGINE_JOBS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/options.h"
#include "ir/diag.h"
#include "ir/ir.h"
#include "passes/mesh.h"
#include "passes/optimizer.h"

/* train.c: `loom train` (docs/training.md): a model trained on --data for --steps, on one
 * process or, under a launcher with --mesh, on every rank of the mesh (docs/cluster.md). On
 * SIGTERM or SIGUSR1 it finishes the step, writes a checkpoint (with --checkpoint) on every
 * rank and returns with *preempted set: the process then exits with ENG_EXIT_PREEMPTED. */
bool eng_train(const eng_opts *o, ir_diag *d, bool *preempted);
#define ENG_EXIT_PREEMPTED 75 /* sysexits.h's EX_TEMPFAIL: stopped early, try again (--resume) */
/* train.c: the optimizer of loom train's options (--optimizer, --accum, --weight-decay,
 * --beta1, --beta2, --eps, --clip, --momentum; loom train's defaults); false after reporting. */
bool eng_train_optimizer(const eng_opts *o, pass_opt_config *c, ir_diag *d);
/* mesh_report.c: --sequence-parallel of o into m (cmd names the command); false after
 * "CMD: --sequence-parallel splits the sequence over tp; the mesh has no tp axis" or, under
 * a mesh other than o's (none), an option without a mesh. */
bool eng_seq_parallel(const eng_opts *o, pass_mesh *m, const char *cmd, ir_diag *d);
/* mesh_report.c: --virtual-stages V of o into m->virtual_stages (model chunks a pipeline stage:
 * interleaved 1F1B) for a training step of `micro` micro-batches; false after reporting V
 * outside [1, 64], or V > 1 without a pp axis (m NULL: without a mesh), with GPipe
 * (one_f_one_b false) or with micro-batches not a multiple of pp. */
bool eng_virtual_stages(const eng_opts *o, pass_mesh *m, int micro, bool one_f_one_b, const char *cmd, ir_diag *d);
/* train.c: --zero of loom train, check and build (cmd) on a mesh of dp data-parallel ranks
 * (1 without a mesh) into c: the ZeRO stage (c->zero) and the ranks the optimizer state is
 * sharded over (c->shards; 1 without --zero or with --zero 0); false after reporting (a stage
 * without dp > 1). */
bool eng_zero(const eng_opts *o, int dp, const char *cmd, pass_opt_config *c, ir_diag *d);
/* generate.c: `loom generate` (docs/generation.md): text from a prompt with a KV cache. */
bool eng_generate(const eng_opts *o, ir_diag *d);
/* build.c: `loom build`: a standalone executable, or with --mesh a cluster executable
 * (docs/backend.md, docs/cluster.md). */
bool eng_build(const eng_opts *o, ir_diag *d);
/* gather.c: `loom gather CKPT -o W.safetensors`: the whole params of a sharded checkpoint. */
bool eng_gather(const eng_opts *o, ir_diag *d);
/* compress.c: `loom quantize W --format int8|int4 [--group G] [--scales f16|f32] -o Q` and `loom
 * prune W --sparsity S | --pattern N:M -o P` (docs/compression.md). */
bool eng_quantize(const eng_opts *o, ir_diag *d);
bool eng_prune(const eng_opts *o, ir_diag *d);
/* plot.c: `loom plot LOG... -o curve.svg`: loss curves of loom train --log files in one SVG. */
bool eng_plot(const eng_opts *o, ir_diag *d);
/* dot.c: `loom dump --dot`: g (run through --after, or with --mesh the rank's pipeline) as
 * Graphviz on f; --dot-depth 0 draws each block instance as one node. */
bool eng_dump_dot(ir_graph *g, const eng_opts *o, FILE *f, ir_diag *d);
/* profile.c: `loom trace-merge OUT.json IN.json...`: the ranks' --profile files as one. */
bool eng_trace_merge(const eng_opts *o, ir_diag *d);
/* run_mesh.c: `loom run --mesh ...`, one process per rank under mpirun or srun. */
bool eng_run_mesh(const eng_opts *o, ir_diag *d);
/* mesh_report.c: `loom check --mesh ...`: per-rank parameter and activation memory and the
 * communication volume of a forward step by mesh axis and collective; the pipeline schedule.
 * With --train, of one training step as `loom train --mesh` runs it. */
void eng_mesh_report(const ir_graph *g, const eng_opts *o, ir_diag *d);
/* The same report into json (a cJSON object): "mesh", "step", "ranks" (per rank its params,
 * memory and communication by axis), for `loom check --json`. */
void eng_mesh_report_json(const ir_graph *g, const eng_opts *o, void *json, ir_diag *d);
/* mesh_report.c: what one rank of `loom train` holds, as `loom check --train` reports it (and
 * `loom plan` prunes by). L: the rank's gradient program (sharded: after the pipeline and shard
 * passes, run by engine/mesh_exec.c; else dp alone or one rank, one CPU program). */
typedef struct {
    int64_t n_group[PASS_OPT_GROUPS]; /* f32 elements of the rank's params by optimizer group */
    int64_t state_elems;              /* their sum: params, and as many gradients */
    int n_state;                      /* optimizer state tensors a param (AdamW 2) */
    int64_t params_bytes, grads_bytes, opt_bytes; /* what loom train allocates for them: under
                                         ZeRO (opt->shards) params and gradients padded to whole
                                         chunks, the optimizer state of one chunk alone */
    int64_t kept;                     /* activations a micro-batch keeps for its backward */
    int64_t fwd_values, bwd_values;   /* sharded: the runner's values, per slot and once */
    int64_t arenas, outputs;          /* sharded: the segment programs' arenas and output buffers */
    int programs;                     /* sharded: segment programs */
    int64_t grad_arena;               /* dp alone: the gradient program's arena */
    int64_t update_arena;             /* the update program's arena */
    double flops;                     /* the gradient program's FLOPs (ir/cost.c), one micro-batch */
} eng_rank_memory;
bool eng_rank_memory_of(const ir_graph *L, bool sharded, int V, const pass_opt_config *opt, eng_rank_memory *out,
                        ir_diag *d);
/* The state's bytes of m (params_bytes, grads_bytes, opt_bytes) under ZeRO over `shards` dp
 * ranks (1: without); grads: the gradient sums sharded too (--zero 2). */
void eng_rank_memory_shard(eng_rank_memory *m, int shards, bool grads);
/* Bytes in all with `slots` micro-batches in flight: state (params, gradients, optimizer
 * state), runner values, arenas and output buffers. */
double eng_rank_memory_total(const eng_rank_memory *r, int slots);
/* planner.c: `loom plan MODEL --devices N ...` (docs/cluster.md, "The planner"): the meshes,
 * micro-batch counts and schedules of loom train on N devices, pruned by the memory loom check
 * --train predicts, ranked by a predicted step time; prints the best with their command lines. */
bool eng_plan(const eng_opts *o, ir_diag *d);
/* check_json.c: `loom check --json`: g's summary (inputs, outputs, params per block, FLOPs,
 * activation memory, the CPU plan's arena) and with --mesh the per-rank report, as one JSON
 * object on stdout. */
bool eng_check_json(const ir_graph *g, const eng_opts *o, ir_diag *d);

#endif
