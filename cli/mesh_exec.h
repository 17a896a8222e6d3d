/* mesh_exec.h — one rank's local graph (after the pipeline and shard passes) run on the CPU:
 * compiled once into CPU programs split at its communication ops, which run through
 * collectives/coll.h between them (the runner of `loom run --mesh`, cli/run_mesh.c; `loom
 * train --mesh` uses it for the gradient program). */
#ifndef LOOM_MESH_EXEC_H
#define LOOM_MESH_EXEC_H

#include "coll.h"
#include "ir.h"
#include "mesh.h"
#include "threadpool.h"

typedef struct mesh_run mesh_run;

/* Takes g (freed by mesh_exec_free); world and axis[a] (one sub-communicator per mesh axis)
 * stay the caller's. NULL after reporting through d. */
mesh_run *mesh_exec_new(ir_graph *g, const pass_mesh *m, coll_comm *world, coll_comm *const *axis, rt_pool *pool,
                        ir_diag *d);
const ir_graph *mesh_exec_graph(const mesh_run *R);
/* The buffer of node n's value (its dtype, local shape): fill it for every param and input
 * before mesh_exec_run. */
void *mesh_exec_value(mesh_run *R, const ir_node *n);
bool mesh_exec_run(mesh_run *R);
/* The value of the output called name after a run (NULL if none). */
const void *mesh_exec_output(const mesh_run *R, const char *name);
/* Time and bytes in collectives since the last call. */
void mesh_exec_comm(mesh_run *R, double *ms, int64_t *bytes);
void mesh_exec_free(mesh_run *R);

#endif
