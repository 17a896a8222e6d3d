/* jobs.h — the whole jobs of loom, each from the options the `loom` command (cli/) or an
 * executable (exe/) parsed: train, generate, build, gather, a run over a mesh, the mesh report.
 * Each reports through d and returns false on failure; the caller prints d. A job prints its
 * progress and results (step lines, generated text, "built X") on stdout as it goes. */
#ifndef LOOM_ENGINE_JOBS_H
#define LOOM_ENGINE_JOBS_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/options.h"
#include "ir/diag.h"
#include "ir/ir.h"
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
/* check_json.c: `loom check --json`: g's summary (inputs, outputs, params per block, FLOPs,
 * activation memory, the CPU plan's arena) and with --mesh the per-rank report, as one JSON
 * object on stdout. */
bool eng_check_json(const ir_graph *g, const eng_opts *o, ir_diag *d);

#endif
