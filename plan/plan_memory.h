/* plan_memory.h — the memory planner: arena offsets for a plan's activation buffers. */
#ifndef LOOM_PASS_PLAN_MEMORY_H
#define LOOM_PASS_PLAN_MEMORY_H

#include <stdint.h>

#include "plan/plan.h"

/* Gives every activation buffer of p an offset in one arena (64-byte aligned) so that two
 * buffers whose live step ranges overlap never share bytes; sets p->arena_bytes to the arena
 * size (the planned peak of activation memory) and returns it. Liveness: from the first step
 * that references a buffer to the last, inclusive. Placement: greedy by size, largest first,
 * each at the best-fitting gap (the smallest one that holds it) among the already placed
 * buffers it overlaps in time. */
int64_t pass_plan_memory(rt_plan *p);

/* The live range of every buffer of p: first[i] and last[i] the first and last step that
 * reference buffer i (-1, -1: none). An output's last step is the one after which its value is
 * final. */
void rt_plan_live_ranges(const rt_plan *p, int *first, int *last);

/* Sum of all activation buffers' sizes (64-byte rounded): the arena without reuse. */
int64_t pass_plan_memory_unshared(const rt_plan *p);

#endif
