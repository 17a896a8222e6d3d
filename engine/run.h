/* run.h — one run of a model, as `loom run` and every executable of `loom build` do it: bind
 * the weights and inputs files by name, drop what needs an absent optional input, compile (or,
 * in an executable, lower and find the kernels compiled in) through the program API
 * (program.h), run, write the outputs, and the --stats lines (run.c; run_stats.c). One path
 * for every target and for both callers, so that the two cannot disagree. */
#ifndef LOOM_ENGINE_RUN_H
#define LOOM_ENGINE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "io/run_io.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "plan/plan.h"
#include "runtime/cpu/exec_cpu.h"
#include "runtime/threadpool.h"

typedef struct {
    const char *who;      /* before messages: "run" (NULL) or the executable's name */
    const char *target;   /* cpu, cuda, opencl[:P[:D]] (program_new's targets) or ref (the
                             reference interpreter) */
    const char *pipeline; /* the passes before lowering (NULL: dce,cse,fuse); on a program target
                             it must end with fuse; on ref it runs as given (NULL: none) */
    ir_precision prec;    /* IR_PREC_F64 on ref only: nothing rounded, float outputs as F64 */
    bool stats;           /* print the --stats lines (not on ref) */
    int repeats;          /* with stats, runs timed after the first; 0: one on the cpu,
                             LOOM_STATS_RUNS (default 10) on a device */
    const char *profile;  /* eng_run_files: --profile FILE.json (engine/profile.h); NULL: none */
} eng_run_opts;

/* Does pipeline (a,b,c) end with the pass fuse, as a program target's must? */
bool eng_pipeline_ends_with_fuse(const char *pipeline);

/* `loom run MODEL --target T` and a `loom build` executable alike: checks the file options,
 * binds weights and inputs from their safetensors files (io/run_io.c: every check and
 * message), runs g and writes the outputs. On a program target (cpu, cuda, opencl) the values
 * stay in their declared dtypes — weights in the file's dtype are bound where the file is
 * mapped, never copied through f64 — and what needs an absent optional input is dropped
 * before the pipeline runs (with --passes, which must end with fuse); --stats prints the
 * target's lines. On ref the reference interpreter runs on doubles (--passes as given).
 * False if anything was reported. */
bool eng_run_files(const ir_graph *g, const eng_run_opts *o, const char *weights, const char *inputs,
                   const char *outputs, ir_diag *d);

/* Facts about a plan that --stats prints besides its steps. */
typedef struct {
    int layers;             /* 0: not a layered model */
    int per_layer;          /* kernels + library calls of layer 0 */
    int64_t unshared_bytes; /* the activations without reuse */
    double compile_ms;      /* < 0: not known */
} eng_plan_info;

/* layers and steps of layer 0 (from fused graph g's stages and groups), the arena without
 * reuse; compile_ms -1. */
eng_plan_info eng_cpu_plan_info(const ir_graph *g, const rt_plan *plan);
/* the CPU plan's activation arena for g (all inputs present): *peak bytes as
 * planned, *unshared without reuse. For `loom check`. False on a lowering error (in d). */
bool eng_cpu_plan_peak(const ir_graph *g, int64_t *peak, int64_t *unshared, ir_diag *d);

/* What a run measured (run_stats.c prints it). */
typedef struct {
    double ms_first;        /* the first run (fresh memory) */
    int repeats;            /* further runs timed */
    double ms_median, ms_min;
} eng_run_times;

/* run_stats.c: the --stats lines of a CPU run: step counts, layers, the arena as planned and
 * as measured (pages touched), compile and run times (repeats profiled). */
void eng_print_cpu_stats(const rt_plan *plan, const rt_exec *e, const rt_pool *pool, const eng_plan_info *info,
                         const eng_run_times *t);
/* run_stats.c: the --stats lines of a device run: step counts, arena, compile and run times,
 * one profiled run's device time by step kind (s). */
void eng_print_device_stats(const char *target, const rt_plan *plan, rt_exec_stats s, double compile_ms,
                            const eng_run_times *t);

#endif
