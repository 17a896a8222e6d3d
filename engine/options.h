/* options.h — the options of a loom job as the `loom` command and the executables of `loom build`
 * give them (eng_opts), their parser, and loading the model they name. A training executable
 * parses the same options as `loom train` (exe/cluster_main.c), so the parser lives here, below
 * both, and cli/ only dispatches. */
#ifndef LOOM_ENGINE_OPTIONS_H
#define LOOM_ENGINE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/frontend.h"
#include "ir/ir.h"

#define ENG_MAX_DEFINES 64

/* Options every subcommand shares; each takes the ones that make sense for it. */
typedef struct {
    const char *file;                 /* the model (.loom) or textual IR (.lir) */
    const char *file_text;            /* its text, when not read from the file (a cluster
                                         executable's embedded model) */
    const char *exe_name;             /* a cluster executable's name, for its messages (NULL:
                                         the loom command) */
    fe_define defines[ENG_MAX_DEFINES];
    int n_defines;
    const char *after;                /* --after=PASS: print the IR after that pass */
    const char *passes;               /* --passes=a,b,c */
    bool time_passes;                 /* --time-passes */
    const char *mesh;                 /* --mesh dp=2,tp=2 */
    int rank;                         /* --rank N */
    bool rank_given;                  /* --rank was given */
    const char *target;               /* --target cpu|ref|cuda|opencl */
    const char *weights, *inputs, *outputs, *out; /* --weights --inputs --outputs -o */
    uint64_t seed;                    /* --seed */
    bool stats;                       /* --stats */
    const char *precision;            /* --precision f32|f64|bf16|fp16 (eng_precision) */
    const char *vocab;                /* --vocab DIR (tokenize) */
    const char *hf;                   /* --hf DIR: a Hugging Face folder (engine/hf.h) */
    bool decode, bytes, no_special;   /* --decode --bytes --no-special (tokenize) */
    bool recompute, ignore_eos;       /* generate: --recompute (no KV cache, for tests) --ignore-eos */
    bool generic_cpu;                 /* build: --generic-cpu (kernels for any CPU of this architecture) */
    bool train;                       /* check: --train (the mesh report of one training step) */
    bool explain;                     /* check: --explain (every collective, why, its time) */
    bool seq_parallel;                /* train, check, run: --sequence-parallel (pass_mesh) */
    const char *profile;              /* --profile FILE.json: the job's timeline (engine/profile.h) */
    bool dot, json, log_y;            /* dump: --dot (Graphviz); check: --json; plot: --log-y */
    int n_named;                      /* valued options of one subcommand (train: --data, */
    const char *named_key[48];        /* --steps, --lr, ...; see options.c), as given, in */
    const char *named_value[48];      /* order; the subcommand checks the values */
    int n_extra;                      /* further positional arguments */
    char *extra[64];
    char define_text[ENG_MAX_DEFINES][256]; /* "name\0value" of each -D (defines point here) */
    char hf_model[4096], hf_config[4096];  /* --hf: the model file chosen, DIR/config.json */
} eng_opts;

/* Parses argv (after the subcommand cmd) into o; the strings stay argv's, so argv must outlive o.
 * An unknown option, a missing value or a bad -D gives false with "loom CMD: ..." in why (cap
 * bytes) for the caller to print. */
bool eng_opts_parse(const char *cmd, int argc, char **argv, eng_opts *o, char *why, size_t cap);
/* Adds -D name=value to o (copied into o), as the parser does; false with the reason in why. */
bool eng_opts_define(eng_opts *o, const char *name, const char *value, char *why, size_t cap);

/* Loads o->file: textual IR when it ends in .lir, else a .loom model built with o->defines.
 * Reports through d; NULL on error. */
ir_graph *eng_load_graph(const eng_opts *o, ir_diag *d);

/* --precision as a dtype: f32 (the default; also fp32), f64, bf16, fp16 (DT_F16). An unknown
 * name is reported as "CMD: --precision expects f32, f64, bf16 or fp16, got 'X'" and gives
 * DT_VOID. */
ir_dtype eng_precision(const eng_opts *o, const char *cmd, ir_diag *d);

/* The pipeline at a half precision (loom run's and loom build's --precision bf16|fp16): --passes
 * with lower-precision given its type and half-params after it (added before a final fuse, else
 * at the end, when absent: after autodiff, so that backward reductions stay f32), or by default
 * dce,cse,lower-precision=TYPE,half-params,fuse (no half-params and no fuse on ref). NULL after reporting (cmd: the command) a
 * pipeline that does not fit buf. */
const char *eng_half_pipeline(const char *passes, ir_dtype half, bool ref, const char *cmd, char *buf, size_t cap,
                              ir_diag *d);

/* the value of the subcommand's valued option key (the last one given), or NULL. */
const char *eng_named(const eng_opts *o, const char *key);
/* The valued option key as an integer in [lo, hi]: *out unchanged when absent; otherwise
 * "CMD: KEY expects an integer in [LO, HI], got 'V'" and false when it is not one. */
bool eng_named_int(const eng_opts *o, const char *cmd, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   ir_diag *d);
/* the model of o built with -D name=value too (replacing a -D of that name), e.g.
 * another batch; NULL after reporting. */
ir_graph *eng_load_graph_define(const eng_opts *o, const char *name, const char *value, ir_diag *d);
/* the model with -D batch=rows (a dp rank's or a micro-batch's rows), checked to
 * give tokens of that many rows (cmd names the command in the error); NULL after reporting. */
ir_graph *eng_load_batch(const eng_opts *o, int rows, const char *cmd, ir_diag *d);
/* false (reported) when a param of model g has another shape in the model built
 * with -D batch=rows: a split batch would then give wrong gradients. */
bool eng_params_batch_free(const eng_opts *o, const ir_graph *g, int rows, const char *cmd, ir_diag *d);

#endif
