/* trace.h — the timeline of a job (`--profile FILE.json`): an event buffer and its writer in
 * the Chrome trace-event format that Perfetto and chrome://tracing open (docs/profiling.md).
 *
 * A trace is one process of the timeline (pid: the rank + 1, as pid 0 is the kernel's swapper to
 * Perfetto; its name says the rank) with tracks (tid: RT_TRACE_HOST, a
 * device stream ...). Events are slices (a begin time and a duration on a track) and the two
 * ends of flow arrows (a send and its receive, across ranks). Times are rt_now_ms() values
 * (the monotonic clock); the writer turns them into microseconds of the wall clock, so the
 * files of ranks on one host (and of NTP-synced hosts, to within its error) line up when
 * merged.
 *
 * Recording is cheap: a slice's name, category and arguments are interned once (rt_trace_intern
 * returns an id that a caller such as an executor keeps per plan step) and an event is 32 bytes
 * appended under a mutex. Nothing here is reached with profiling off: every caller tests
 * rt_trace_active() (or its executor's profile flag) first.
 *
 * The installed trace. A job's programs are compiled and run deep inside the trainer, the
 * generator and the mesh runner; rather than thread a trace through every one of those
 * signatures, `--profile` installs one trace for the process (rt_trace_install) and the places
 * that record (program_new, the executors' profiled runs, the mesh runner, the collectives'
 * observer) ask rt_trace_active(). It is the one piece of process state here, set once at the
 * start of a job and cleared at its end.
 */
#ifndef LOOM_RT_TRACE_H
#define LOOM_RT_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/plan.h"

typedef struct rt_trace rt_trace;

/* Tracks of a process (Chrome's tids). */
enum { RT_TRACE_HOST = 1, RT_TRACE_DEVICE = 2 };

/* A trace for process `rank`, named e.g. "rank 0: loom train". */
rt_trace *rt_trace_new(int rank, const char *process_name);
void rt_trace_free(rt_trace *t);
/* The process's trace (NULL: none; profiling is off). */
void rt_trace_install(rt_trace *t);
rt_trace *rt_trace_active(void);

int rt_trace_rank(const rt_trace *t);
void rt_trace_track_name(rt_trace *t, int tid, const char *name);

/* Interns a slice description: its category ("step", "compile", "comm", "schedule", ...), its
 * name and its arguments as the members of a JSON object without the braces ("" for none;
 * rt_trace_json_str quotes strings). flops, bytes (>= 0) add the achieved GFLOP/s and GB/s of
 * each slice to its arguments when written. Returns the description's id. */
int rt_trace_intern(rt_trace *t, const char *cat, const char *name, const char *args, double flops, double bytes);
/* A slice from t0_ms to t1_ms (rt_now_ms values) on track tid. */
void rt_trace_slice(rt_trace *t, int tid, int desc, double t0_ms, double t1_ms);
/* = rt_trace_slice of a description interned on the spot. */
void rt_trace_slice_named(rt_trace *t, int tid, const char *cat, const char *name, const char *args, double t0_ms,
                          double t1_ms);
/* One end of flow `id` at time ts_ms on track tid, bound to the slice there: start (a send) or
 * end (its receive, on whichever process). Both ends must use the same id. */
void rt_trace_flow(rt_trace *t, int tid, uint64_t id, bool start, double ts_ms);

/* The description of step s of plan p as a slice: named by its kernel or library step, the
 * source op and the .loom line it was lowered from (plan.h's rt_plan_origin), with the shape,
 * bytes and FLOPs as arguments. */
int rt_trace_plan_step(rt_trace *t, const rt_plan *p, int s);

/* Writes the trace to path (atomically: a temporary file renamed). False, reported, on error. */
bool rt_trace_write(const rt_trace *t, const char *path, ir_diag *d);
/* Merges loom trace files (the ranks' FILE.rankN.json) into one at out. False, reported (which
 * file, why), when one cannot be read or is not a loom trace. */
bool rt_trace_merge(const char *out, const char *const *in, int n, ir_diag *d);

/* s as a JSON string literal (quotes, escapes) into buf (cap bytes, always terminated). */
char *rt_trace_json_str(const char *s, char *buf, size_t cap);

#endif
