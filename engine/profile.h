/* profile.h — `--profile FILE.json` for a job (docs/profiling.md), and the communication meter
 * of the metrics: what the engine records on top of the executors' step slices.
 *
 * A job (loom run, train, generate and the executables of loom build) calls eng_profile_start
 * first and eng_profile_finish last; between them runtime/trace.h's trace is installed, so
 * every program compiled records its compile phases (program.c) and turns on its executor's
 * profiling, whose steps become slices. Under a launcher with more than one rank each rank
 * writes FILE.rankN.json, and rank 0 merges them into FILE (`loom trace-merge` does the same by
 * hand). With no --profile nothing is installed and every recording call below returns at its
 * first test.
 */
#ifndef LOOM_ENGINE_PROFILE_H
#define LOOM_ENGINE_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "collectives/coll.h"
#include "ir/diag.h"
#include "runtime/trace.h"

typedef struct eng_profile eng_profile;

/* Starts the trace of a job when path is not NULL (job: "loom train", or an executable's name,
 * for the process's name in the timeline); the rank comes from the launcher's environment.
 * NULL when path is NULL or after reporting a path that cannot be written. */
eng_profile *eng_profile_start(const char *path, const char *job, ir_diag *d);
/* Writes the trace (under a launcher of N > 1 ranks: path.rankR.json, and rank 0 then waits up
 * to LOOM_PROFILE_WAIT seconds, default 60, for the other ranks' files and merges them into
 * path), uninstalls and frees it. NULL: nothing. False after reporting a write error. */
bool eng_profile_finish(eng_profile *p, ir_diag *d);

/* A slice on the host track of the installed trace (none: nothing happens). t0, t1: rt_now_ms. */
void eng_trace_span(const char *cat, const char *name, const char *args, double t0, double t1);

/* Bytes a rank sent into collectives per mesh axis (the communicator's name), for the metrics,
 * and the numbering of point-to-point messages that gives a send and its receive one flow id. */
#define ENG_METER_AXES 8
typedef struct {
    const char *world_as;   /* the axis name for the world communicator's traffic ("dp", "pp") */
    int n_axes;
    char axis[ENG_METER_AXES][32];
    double bytes[ENG_METER_AXES];
    int n_pairs;
    struct eng_meter_pair {
        int src, dst, tag;
        char comm[32];
        uint64_t count;
    } pairs[64];
} eng_comm_meter;
/* Observes comm (and the communicators split from it afterwards): every operation adds to m
 * (may be NULL) and, under --profile, becomes a slice (op, axis, bytes, peer), a point-to-point
 * message one end of a flow arrow. */
void eng_comm_watch(coll_comm *comm, eng_comm_meter *m, const char *world_as);
/* The bytes sent on axis since the last eng_comm_meter_take, zeroed. */
double eng_comm_meter_take(eng_comm_meter *m, const char *axis);

#endif
