/* run.h — one run of a model on a target, as `loom run` does it: compile, bind the given values,
 * run, read the outputs back (run.c: the CPU; run_device.c: the device targets), and the
 * --stats lines. */
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

/* runs g on the CPU path (fuse, lower, plan memory, JIT, executor) with every
 * param and input given in vals (doubles, as the reference interpreter takes them; optional
 * inputs may be absent, and then the outputs that need them are skipped). pipeline: the
 * passes (--passes; NULL: dce,cse,fuse), which must end with fuse (e.g. dce,cse,autodiff,fuse
 * for a training step's forward + backward). On success *outs holds the outputs in graph
 * order (free with ir_named_tensors_free). f32 compute; f64 graphs are rejected. With stats,
 * prints the plan's step counts, memory and times. */
bool eng_run_cpu(const ir_graph *g, const char *pipeline, const ir_named_tensor *vals, int n_vals, bool stats,
                 ir_named_tensor **outs, int *n_outs, ir_diag *d);
/* run_device.c: as eng_run_cpu on another program.h target ("cuda"): compile once, bind
 * (copied to the device), run, read back; with stats, timings of repeated runs. */
bool eng_run_program(const char *target, const ir_graph *g, const char *pipeline, const ir_named_tensor *vals,
                     int n_vals, bool stats, ir_named_tensor **outs, int *n_outs, ir_diag *d);
/* what --stats prints about a plan besides its steps: layers and steps of layer 0
 * (from fused graph g's stages and groups), the arena without reuse; compile_ms -1. */
rt_io_plan_info eng_cpu_plan_info(const ir_graph *g, const rt_plan *plan);
/* the CPU plan's activation arena for g (all inputs present): *peak bytes as
 * planned, *unshared without reuse. For `loom check`. False on a lowering error (in d). */
bool eng_cpu_plan_peak(const ir_graph *g, int64_t *peak, int64_t *unshared, ir_diag *d);

/* What eng_run_exec measured. */
typedef struct {
    double ms_first;        /* the first forward (fresh memory) */
    int repeats;            /* further forwards timed (profiled when stats) */
    double ms_median, ms_min;
} eng_run_times;

/* Binds vals (converted to each slot's dtype) to e, runs the plan once, then `repeats` more
 * times (profiled when profile is set), and returns the outputs of s in *outs (doubles, names
 * malloc'd; free with ir_named_tensors_free). */
bool eng_run_exec(rt_exec *e, const rt_io_sig *s, const ir_named_tensor *vals, int n_vals, int repeats,
                   bool profile, eng_run_times *times, ir_named_tensor **outs, int *n_outs, ir_diag *d);

/* Prints the --stats lines of a CPU run: step counts, layers, the arena as planned and as
 * measured (pages touched), times. */
void eng_print_cpu_stats(const rt_plan *plan, const rt_exec *e, const rt_pool *pool, const rt_io_plan_info *info,
                           const eng_run_times *t);

#endif
