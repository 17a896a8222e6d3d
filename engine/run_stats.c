/* run_stats.c — the --stats lines of a run (run.h: eng_print_cpu_stats,
 * eng_print_device_stats), printed by eng_run for `loom run` and the executables of `loom
 * build` alike. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run.h"
#include "io/safetensors.h"
#include "runtime/clock.h"

void eng_print_cpu_stats(const rt_plan *plan, const rt_exec *e, const rt_pool *pool, const eng_plan_info *info,
                         const eng_run_times *t)
{
    rt_exec_stats s = rt_exec_plan_stats(plan);
    printf("cpu: %d kernels, %d library calls (%d gemm, %d attention), %d copies, %d id checks per forward\n", s.kernels,
           s.gemms + s.attentions, s.gemms, s.attentions, s.copies, s.checks);
    if (info->layers > 0)
        printf("cpu: %d layers; kernels + library calls in layer 0: %d\n", info->layers, info->per_layer);
    double planned = (double)plan->arena_bytes, touched = (double)rt_exec_arena_touched(e);
    printf("cpu: arena %.2f MiB (%.2f MiB without reuse)\n", planned / 1048576.0,
           (double)info->unshared_bytes / 1048576.0);
    if (planned > 0)
        printf("cpu: activation peak planned %.2f MiB, measured %.2f MiB (arena pages touched: %.1f%% of the plan)\n",
               planned / 1048576.0, touched / 1048576.0, 100.0 * touched / planned);
    else
        printf("cpu: activation peak planned 0 MiB (no arena)\n");
    rt_exec_stats es = rt_exec_stats_get(e);
    int n = t->repeats > 0 ? t->repeats : 1;
    if (info->compile_ms >= 0)
        printf("cpu: compile %.1f ms, ", info->compile_ms);
    else
        printf("cpu: ");
    printf("forward %.2f ms (first), %.2f ms (median of %d more, profiled: kernels %.2f, gemm %.2f, attention %.2f, "
           "other %.2f), %d threads\n",
           t->ms_first, t->ms_median, t->repeats, es.ms_kernels / n, es.ms_gemms / n, es.ms_attentions / n,
           es.ms_other / n, rt_pool_size(pool));
}

void eng_print_device_stats(const char *target, const rt_plan *plan, rt_exec_stats s, double compile_ms,
                            const eng_run_times *t)
{
    printf("%s: %d kernels, %d gemms, %d attentions, %d copies, %d id checks; arena %.1f MiB\n", target, s.kernels,
           s.gemms, s.attentions, s.copies, s.checks, (double)plan->arena_bytes / (1 << 20));
    printf("%s: compile %.1f ms, first run %.3f ms, %d more runs: median %.3f ms, min %.3f ms\n", target, compile_ms,
           t->ms_first, t->repeats, t->ms_median, t->ms_min);
    printf("%s: one profiled run (device time): kernels %.3f ms, gemms %.3f ms, attention %.3f ms, other %.3f ms\n",
           target, s.ms_kernels, s.ms_gemms, s.ms_attentions, s.ms_other);
}
