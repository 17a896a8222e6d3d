/* mesh_exec.h — one rank's local graph (after the pipeline and shard passes) run on the CPU:
 * compiled once into CPU programs split at its communication ops, which run through
 * collectives/coll.h between them (the runner of `loom run --mesh`, cli/run_mesh.c; `loom
 * train --mesh` uses it for the gradient program). */
#ifndef LOOM_MESH_EXEC_H
#define LOOM_MESH_EXEC_H

#include "cli.h"
#include "coll.h"
#include "ir.h"
#include "mesh.h"
#include "threadpool.h"

typedef struct mesh_run mesh_run;

/* Takes g (freed by mesh_exec_free); world and axis[a] (one sub-communicator per mesh axis)
 * stay the caller's. The segments run on target (cli/program.h: cpu, cuda, opencl[:P[:D]]);
 * values between segments, and so every collective, live in host memory (a GPU's are staged
 * through it). NULL after reporting through d. */
mesh_run *mesh_exec_new(ir_graph *g, const char *target, const pass_mesh *m, coll_comm *world,
                        coll_comm *const *axis, rt_pool *pool, ir_diag *d);
const ir_graph *mesh_exec_graph(const mesh_run *R);
/* The collectives' options from cmd's --allreduce (backend, ring, tree) and --timeout SECONDS
 * (an operation not done by then ends the job; 0: never; default LOOM_COLL_TIMEOUT, else
 * coll.h's). false after reporting a bad value. */
bool mesh_coll_options(const cli_opts *o, const char *cmd, coll_options *out, ir_diag *d);
/* The buffer of node n's value (its dtype, local shape): fill it for every param and input
 * before mesh_exec_run. */
void *mesh_exec_value(mesh_run *R, const ir_node *n);
bool mesh_exec_run(mesh_run *R);

/* Pipeline schedules of micro-batches (docs/cluster.md, "Pipelines"). */
typedef enum { MESH_GPIPE, MESH_1F1B } mesh_schedule;
bool mesh_exec_schedule_parse(const char *s, mesh_schedule *out); /* "gpipe", "1f1b" */
/* Called with the micro-batch's slot current: feed fills its inputs (mesh_exec_value) before
 * its forward half, done reads its outputs (mesh_exec_output) after its backward half. */
typedef bool (*mesh_micro_fn)(void *ctx, mesh_run *R, int micro);
/* Runs M micro-batches in this rank's order of the schedule: its forward half (the nodes of
 * the forward pass and their sends/receives) and backward half per micro-batch, each
 * micro-batch in flight in its own slot of values. Returns after every send completed. */
bool mesh_exec_run_micro(mesh_run *R, int M, mesh_schedule sched, mesh_micro_fn feed, mesh_micro_fn done, void *ctx);
/* Only the forward halves of M micro-batches, one after another (evaluation: the loss). */
bool mesh_exec_run_forward(mesh_run *R, int M, mesh_micro_fn feed, mesh_micro_fn done, void *ctx);
/* The value of the output called name after a run (NULL if none). */
const void *mesh_exec_output(const mesh_run *R, const char *name);
/* Time and bytes in collectives since the last call. */
void mesh_exec_comm(mesh_run *R, double *ms, int64_t *bytes);
void mesh_exec_free(mesh_run *R);

#endif
