/* exec_stats.h — what one run of a plan did, as every executor (CPU, CUDA, OpenCL) reports it:
 * the step counts, which follow from the plan alone, and the times by kind when profiling. */
#ifndef LOOM_PLAN_EXEC_STATS_H
#define LOOM_PLAN_EXEC_STATS_H

#include "plan/plan.h"

/* What one run did; the times (wall clock, ms, summed over runs) only with profiling on. */
typedef struct {
    int kernels, gemms, attentions, copies, checks, scatters; /* attentions: forward and grad */
    double ms_kernels, ms_gemms, ms_attentions, ms_other, ms_scatters;
} rt_exec_stats;

/* Counts of the steps one run of p executes (times zero). */
rt_exec_stats rt_exec_plan_stats(const rt_plan *p);

#endif
