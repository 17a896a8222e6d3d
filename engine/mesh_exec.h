/* mesh_exec.h — one rank's local graph (after the pipeline and shard passes): compiled once
 * into programs split at its communication ops, which run through collectives/coll.h between
 * them (engine/mesh_exec.c). `loom run --mesh` (engine/run_mesh.c) and cluster executables
 * (exe/cluster_main.c) run it as a whole job; `loom train --mesh` for the gradient program. */
#ifndef LOOM_MESH_EXEC_H
#define LOOM_MESH_EXEC_H

#include "collectives/coll.h"
#include "ir/ir.h"
#include "passes/mesh.h"
#include "engine/program.h"
#include "io/safetensors.h"
#include "runtime/threadpool.h"

typedef struct mesh_run mesh_run;

/* Compiles one segment's graph into a program (NULL after reporting through d):
 * program_compile_segment (program.h) with ctx the target, cpu, cuda or opencl[:P[:D]]. */
typedef program *(*mesh_compile_fn)(void *ctx, const ir_graph *segment, rt_pool *pool, ir_diag *d);
/* Takes g (freed by mesh_exec_free, also on failure); world and axis[a] (one sub-communicator
 * per mesh axis) stay the caller's. Values between segments, and so every collective, live in
 * host memory (a GPU's are staged through it). NULL after reporting through d. */
mesh_run *mesh_exec_new(ir_graph *g, mesh_compile_fn compile, void *compile_ctx, const pass_mesh *m,
                        coll_comm *world, coll_comm *const *axis, rt_pool *pool, ir_diag *d);
/* Collective matching at start-up (passes/comm_match.h), cheaply: every rank's sequence of
 * communication for L — micro 0 a forward run, else a training step of micro micro-batches
 * under the schedule — gathered over world (two allgathers) and proven to match, on every
 * rank, so every rank reaches the same verdict. false after reporting the first mismatch
 * (both ranks, the position, each side's source op and .loom line) through d. */
bool mesh_exec_match(const ir_graph *L, const pass_mesh *m, int micro, bool one_f_one_b, coll_comm *world,
                     ir_diag *d);
/* Per node of L (malloc'd): in a micro-batch's backward half — autodiff's nodes (and the
 * communication of their values) that no forward node needs. */
bool *mesh_exec_backward_half(const ir_graph *L);
/* Calls fn with the graph of each segment of L that mesh_exec_new would compile for a mesh
 * of V model chunks a pipeline stage (pass_mesh.virtual_stages), in order (`loom build --mesh`
 * compiles them ahead of time). false as soon as fn is. */
bool mesh_exec_each_segment(const ir_graph *L, int V, bool (*fn)(void *ctx, const ir_graph *segment, ir_diag *d),
                            void *ctx, ir_diag *d);

/* A whole forward job on this rank (`loom run --mesh`, a cluster executable): the world
 * communicator and one per mesh axis, L's params and inputs sliced from the full tensors in
 * weights and inputs (NULL: not given), its segments compiled and run once, rank 0 writing
 * every output to outputs. A rank that fails prints why and ends the whole job. */
typedef struct {
    const char *who;                  /* "run" or the executable's name, before messages */
    const rt_st_file *weights, *inputs;
    const char *outputs;
    bool stats;                       /* per-rank times on stderr */
    const char *profile;              /* --profile FILE.json (engine/profile.h); NULL: none */
    coll_options coll;
    mesh_compile_fn compile;
    void *compile_ctx;
} mesh_job;
/* Takes L. */
bool mesh_exec_job(ir_graph *L, const pass_mesh *m, const mesh_job *j, ir_diag *d);
const ir_graph *mesh_exec_graph(const mesh_run *R);
/* The collectives' options from cmd's --allreduce (backend, ring, tree) and --timeout SECONDS
 * (an operation not done by then ends the job; 0: never; default LOOM_COLL_TIMEOUT, else
 * coll.h's) among n option keys and values (others are ignored). false after reporting a bad
 * value. */
bool mesh_coll_options(const char *const *keys, const char *const *values, int n, const char *cmd,
                       coll_options *out, ir_diag *d);
/* The world communicator of a mesh of `world` ranks (the launcher started as many):
 * COLL_BACKEND_AUTO, so $LOOM_COLL=mpi|nccl chooses; else NCCL when opt->gpu (the ranks run on
 * --target cuda; their values live in host memory, staged by the NCCL comm) and world > 1,
 * else MPI, or single for one rank. NULL with the reason in *err. */
coll_comm *mesh_coll_world(int world, const coll_options *opt, coll_error *err);
/* The buffer of node n's value (its dtype, local shape): fill it for every param and input
 * before mesh_exec_run. */
void *mesh_exec_value(mesh_run *R, const ir_node *n);
/* Param n's value is the caller's data (n's dtype and local shape; alive and unchanged while
 * the runner runs): no copy. */
void mesh_exec_bind(mesh_run *R, const ir_node *n, void *data);
bool mesh_exec_run(mesh_run *R);

/* Pipeline schedules of micro-batches (docs/cluster.md, "Pipelines"). */
typedef enum { MESH_GPIPE, MESH_1F1B } mesh_schedule;
bool mesh_exec_schedule_parse(const char *s, mesh_schedule *out); /* "gpipe", "1f1b" */
/* Called with the micro-batch's slot current: feed fills its inputs (mesh_exec_value) before
 * its forward half, done reads its outputs (mesh_exec_output) after its backward half — with
 * V > 1 model chunks a stage after each chunk's part of it, mesh_exec_output then giving only
 * the outputs that chunk computed (NULL for the others). */
typedef bool (*mesh_micro_fn)(void *ctx, mesh_run *R, int micro);
/* Runs M micro-batches in this rank's order of the schedule (pipeline_order; interleaved 1F1B
 * when the mesh has virtual_stages > 1): its forward half (the nodes of the forward pass and
 * their sends/receives) and backward half per micro-batch (and chunk), each micro-batch in
 * flight in its own slot of values. Returns after every send completed. */
bool mesh_exec_run_micro(mesh_run *R, int M, mesh_schedule sched, mesh_micro_fn feed, mesh_micro_fn done, void *ctx);
/* Only the forward halves of M micro-batches, one after another (evaluation: the loss). */
bool mesh_exec_run_forward(mesh_run *R, int M, mesh_micro_fn feed, mesh_micro_fn done, void *ctx);
/* fn(ctx, R, k) in the last micro-batch's backward half of mesh_exec_run_micro (not with model
 * chunks: their backward steps do not run in the runner's order), once step k of
 * the runner and the steps before it have run (and at the end with the last step): an output
 * computed by step k (mesh_exec_output_step) is final then and can be read (mesh_exec_output)
 * while the backward goes on — a trainer's cue to start reducing it. NULL: none. */
void mesh_exec_set_step_hook(mesh_run *R, void (*fn)(void *ctx, mesh_run *R, int step), void *ctx);
/* The runner's backward step that computes output name's value (-1: none, or a forward one). */
int mesh_exec_output_step(const mesh_run *R, const char *name);
/* The value of the output called name after a run (NULL if none). */
const void *mesh_exec_output(const mesh_run *R, const char *name);
/* Time and bytes in collectives since the last call. */
void mesh_exec_comm(mesh_run *R, double *ms, int64_t *bytes);
/* Host memory the runner holds, in bytes: params and the values between segments (over all
 * slots), and its segment programs' arenas and output buffers. */
typedef struct {
    double params, values, arenas, outputs;
    int segments, slots;
} mesh_memory;
mesh_memory mesh_exec_memory(const mesh_run *R);
void mesh_exec_free(mesh_run *R);

#endif
