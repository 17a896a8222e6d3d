/* exec_stats.h — what one run of a plan did, as every executor (CPU, CUDA, OpenCL) reports it:
 * the step counts, which follow from the plan alone, and the times by kind when profiling. */
#ifndef LOOM_PLAN_EXEC_STATS_H
#define LOOM_PLAN_EXEC_STATS_H

#include "plan/plan.h"

/* What one run did; the times (device time, ms, summed over runs) only with profiling on.
 * The first five times are the historical grouping (kernels: kernel steps and column sums;
 * other: copies, id checks, cache rows); the last three split the kernels another way
 * (elementwise: kernels without loops; reductions: row and reduction kernels, column sums,
 * scatter-adds; copies: copies, cache rows, id checks), as --stats prints per step kind.
 * bytes_*: host↔device transfers on the executor's device so far (every program on it). */
typedef struct {
    int kernels, gemms, attentions, copies, checks, scatters; /* attentions: forward and grad */
    double ms_kernels, ms_gemms, ms_attentions, ms_other, ms_scatters;
    double ms_elementwise, ms_reductions, ms_copies;
    int64_t bytes_h2d, bytes_d2h;
} rt_exec_stats;

/* Counts of the steps one run of p executes (times zero). */
rt_exec_stats rt_exec_plan_stats(const rt_plan *p);

#endif
