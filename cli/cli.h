/* cli.h — the `loom` command: shared options and the subcommands (one file each, cmd_NAME.c). */
#ifndef LOOM_CLI_H
#define LOOM_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend.h"
#include "interp.h"
#include "ir.h"
#include "optimizer.h"
#include "run_io.h"
#include "wordpiece.h"

#define CLI_MAX_DEFINES 64

/* Options every subcommand shares; each takes the ones that make sense for it. */
typedef struct {
    const char *file;                 /* the model (.loom) or textual IR (.lir) */
    const char *file_text;            /* its text, when not read from the file (a cluster
                                         executable's embedded model) */
    const char *exe_name;             /* a cluster executable's name, for its messages (NULL:
                                         the loom command) */
    fe_define defines[CLI_MAX_DEFINES];
    int n_defines;
    const char *after;                /* --after=PASS: print the IR after that pass */
    const char *passes;               /* --passes=a,b,c */
    bool time_passes;                 /* --time-passes */
    const char *mesh;                 /* --mesh dp=2,tp=2 */
    int rank;                         /* --rank N */
    const char *target;               /* --target cpu|ref|cuda|opencl */
    const char *weights, *inputs, *outputs, *out; /* --weights --inputs --outputs -o */
    uint64_t seed;                    /* --seed */
    bool stats;                       /* --stats */
    const char *precision;            /* --precision f32|f64|bf16|fp16 (cli_precision) */
    const char *vocab;                /* --vocab DIR (tokenize) */
    bool decode, bytes, no_special;   /* --decode --bytes --no-special (tokenize) */
    bool recompute, ignore_eos;       /* generate: --recompute (no KV cache, for tests) --ignore-eos */
    bool generic_cpu;                 /* build: --generic-cpu (kernels for any CPU of this architecture) */
    bool train;                       /* check: --train (the mesh report of one training step) */
    int n_named;                      /* valued options of one subcommand (train: --data, */
    const char *named_key[48];        /* --steps, --lr, ...; see options.c), as given, in */
    const char *named_value[48];      /* order; the subcommand checks the values */
    int n_extra;                      /* further positional arguments */
    char *extra[64];
} cli_opts;

/* Parses argv (after the subcommand) into o. Unknown options and missing values are reported
 * as "loom CMD: ..." on stderr; returns false then. */
bool cli_parse(const char *cmd, int argc, char **argv, cli_opts *o);

/* Loads o->file: textual IR when it ends in .lir, else a .loom model built with o->defines.
 * Reports through d; NULL on error. */
ir_graph *cli_load_graph(const cli_opts *o, ir_diag *d);

/* --precision as a dtype: f32 (the default; also fp32), f64, bf16, fp16 (DT_F16). An unknown
 * name is reported as "CMD: --precision expects f32, f64, bf16 or fp16, got 'X'" and gives
 * DT_VOID. */
ir_dtype cli_precision(const cli_opts *o, const char *cmd, ir_diag *d);

/* Prints d's messages to stderr and returns the exit status: 0 if no errors, else 1. */
int cli_finish(ir_diag *d);

/* json_file.c: DIR/NAME parsed as JSON (free with cJSON_Delete), or NULL when it is absent,
 * unreadable or not JSON. */
struct cJSON *cli_read_json(const char *dir, const char *name);
/* json_file.c: the WordPiece settings DIR/tokenizer_config.json gives: do_lower_case (default
 * true) and strip_accents (default -1: as lower-casing), as Hugging Face's BertTokenizer. */
rt_wp_config cli_wp_config(const char *dir);

/* run_values.c: the value called name in vals[0..n), or NULL. */
const ir_tensor *cli_find_value(const ir_named_tensor *vals, int n, const char *name);
/* run_values.c: drops g's optional inputs that have no value in vals and every node depending
 * on one (outputs included), as the reference interpreter skips the outputs that need them. */
void cli_drop_absent(ir_graph *g, const ir_named_tensor *vals, int n_vals);
/* run_values.c: the same, with given(ctx, name) telling whether input name has a value. */
void cli_drop_absent_if(ir_graph *g, bool (*given)(const void *ctx, const char *name), const void *ctx);
/* run_values.c: the node of g with this op and name, or NULL. */
const ir_node *cli_find_node(const ir_graph *g, ir_opcode op, const char *name);
/* run_values.c: keeps only the output called keep and what it needs (params and required
 * inputs stay). */
void cli_prune_to(ir_graph *g, const char *keep);
/* options.c: the value of the subcommand's valued option key (the last one given), or NULL. */
const char *cli_named(const cli_opts *o, const char *key);
/* options.c: the model of o built with -D name=value too (replacing a -D of that name), e.g.
 * another batch; NULL after reporting. */
ir_graph *cli_load_graph_define(const cli_opts *o, const char *name, const char *value, ir_diag *d);
/* options.c: the model with -D batch=rows (a dp rank's or a micro-batch's rows), checked to
 * give tokens of that many rows (cmd names the command in the error); NULL after reporting. */
ir_graph *cli_load_batch(const cli_opts *o, int rows, const char *cmd, ir_diag *d);
/* options.c: false (reported) when a param of model g has another shape in the model built
 * with -D batch=rows: a split batch would then give wrong gradients. */
bool cli_params_batch_free(const cli_opts *o, const ir_graph *g, int rows, const char *cmd, ir_diag *d);

/* target_cpu.c: runs g on the CPU path (fuse, lower, plan memory, JIT, executor) with every
 * param and input given in vals (doubles, as the reference interpreter takes them; optional
 * inputs may be absent, and then the outputs that need them are skipped). pipeline: the
 * passes (--passes; NULL: dce,cse,fuse), which must end with fuse (e.g. dce,cse,autodiff,fuse
 * for a training step's forward + backward). On success *outs holds the outputs in graph
 * order (free with ir_named_tensors_free). f32 compute; f64 graphs are rejected. With stats,
 * prints the plan's step counts, memory and times. */
bool cli_run_cpu(const ir_graph *g, const char *pipeline, const ir_named_tensor *vals, int n_vals, bool stats,
                 ir_named_tensor **outs, int *n_outs, ir_diag *d);
/* target_gpu.c: as cli_run_cpu on another program.h target ("cuda"): compile once, bind
 * (copied to the device), run, read back; with stats, timings of repeated runs. */
bool cli_run_program(const char *target, const ir_graph *g, const char *pipeline, const ir_named_tensor *vals,
                     int n_vals, bool stats, ir_named_tensor **outs, int *n_outs, ir_diag *d);
/* target_cpu.c: what --stats prints about a plan besides its steps: layers and steps of layer 0
 * (from fused graph g's stages and groups), the arena without reuse; compile_ms -1. */
rt_io_plan_info cli_cpu_plan_info(const ir_graph *g, const rt_plan *plan);
/* target_cpu.c: the CPU plan's activation arena for g (all inputs present): *peak bytes as
 * planned, *unshared without reuse. For `loom check`. False on a lowering error (in d). */
bool cli_cpu_plan_peak(const ir_graph *g, int64_t *peak, int64_t *unshared, ir_diag *d);

int cmd_check(const cli_opts *o);
int cmd_dump(const cli_opts *o);
int cmd_opt(const cli_opts *o);
int cmd_init(const cli_opts *o);
int cmd_run(const cli_opts *o);
/* run_mesh.c: `loom run --mesh ...`, one process per rank under mpirun or srun. */
int cmd_run_mesh(const cli_opts *o);
/* mesh_report.c: `loom check --mesh ...`: per-rank parameter and activation memory and the
 * communication volume of a forward step by mesh axis and collective; the pipeline schedule.
 * With --train, of one training step as `loom train --mesh` runs it. */
void cli_mesh_report(const ir_graph *g, const cli_opts *o, ir_diag *d);
int cmd_devices(const cli_opts *o);
int cmd_build(const cli_opts *o);
/* cmd_train.c: the optimizer of loom train's options (--optimizer, --accum, --weight-decay,
 * --beta1, --beta2, --eps, --clip, --momentum; loom train's defaults); false after reporting. */
bool cli_train_optimizer(const cli_opts *o, pass_opt_config *c, ir_diag *d);
int cmd_tokenize(const cli_opts *o);
int cmd_generate(const cli_opts *o);
int cmd_embed(const cli_opts *o);
int cmd_gather(const cli_opts *o);
int cmd_train(const cli_opts *o);

#endif
