/* exec_stats.c — the step counts of a plan (exec_stats.h). */
#include "plan/exec_stats.h"

rt_exec_stats rt_exec_plan_stats(const rt_plan *p)
{
    rt_exec_stats s = {0};
    for (int i = 0; i < p->n_steps; i++)
        switch (p->steps[i].kind) {
        case RT_STEP_KERNEL: s.kernels++; break;
        case RT_STEP_GEMM: s.gemms++; break;
        case RT_STEP_ATTENTION: s.attentions++; break;
        case RT_STEP_COPY: s.copies++; break;
        case RT_STEP_CHECK_IDS: s.checks++; break;
        case RT_STEP_WRITE_ROWS: s.copies++; break;
        case RT_STEP_ATTENTION_GRAD: s.attentions++; break;
        case RT_STEP_SCATTER_ADD: s.scatters++; break;
        case RT_STEP_SUM_ROWS: s.kernels++; break;
        }
    return s;
}
