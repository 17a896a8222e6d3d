/* mesh.h — a device mesh (`--mesh dp=2,tp=2,pp=2`, `--rank N`) and the per-rank passes that
 * use it (passes/pipeline.c, passes/shard.c), the loading of a rank's parameter slices from a
 * full checkpoint, and the mesh interpreter (passes/mesh_interp.c).
 *
 * Axes are the graph's `mesh` axes in declaration order (a graph without a mesh gets dp, tp,
 * pp: the automatic mode); an axis left out of --mesh has size 1. Ranks are numbered row-major
 * with the last axis fastest: for dp×tp×pp, rank = (d·TP + t)·PP + p (docs/cluster.md). */
#ifndef LOOM_MESH_H
#define LOOM_MESH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/interp.h"
#include "ir/ir.h"

typedef struct pass_mesh {
    int n_axes;
    char axis[IR_MAX_MESH_AXES][32];    /* names (copied: passes replace the graph's arena) */
    int size[IR_MAX_MESH_AXES];
    int world;                          /* product of the sizes */
    int rank;                           /* this rank, 0 <= rank < world */
    int microbatches;                   /* pipeline schedule report (0: as many as stages) */
    int virtual_stages;                 /* model chunks a pipeline stage holds (0 or 1: one;
                                           --virtual-stages: interleaved 1F1B) */
    bool seq_parallel;                  /* Megatron's sequence parallelism over tp (shard): a
                                           partial sum met by an elementwise op of activations
                                           is reduce-scattered along the sequence (the dim
                                           before the features) instead of allreduced, so norms,
                                           residual adds and their inputs run on 1/tp of the
                                           rows; allgathered before a column-parallel GEMM */
    bool local_outputs;                 /* training: outputs stay on the stage computing them
                                           (pipeline), a param's gradient in the param's
                                           layout, named after its slice, and over dp this
                                           rank's partial sum (shard) */
    /* A test-only hook, never set by an option: LOOM_TEST_BREAK_SHARD=RANK:PARAM makes the shard
     * pass on rank RANK shard the 2-d param PARAM along its other dim — a deliberately broken
     * layout whose collectives no longer match the other ranks' (tests/errors/comm_match.test:
     * collective matching must catch it before anything runs). break_rank -1: none. */
    int break_rank;
    char break_param[128];
} pass_mesh;

/* Parses spec ("tp=2", "dp=2,tp=2,pp=2") against g's mesh axes (dp, tp, pp when g declares
 * none) for `rank`. Errors (an axis g does not declare, a size < 1, a repeated axis, a rank
 * outside the mesh) are reported through d naming the axis or the rank. */
bool pass_mesh_parse(const char *spec, int rank, const ir_graph *g, pass_mesh *m, ir_diag *d);
/* Size of the axis called name (1 if absent), its index (-1 if absent). */
int pass_mesh_size(const pass_mesh *m, const char *name);
int pass_mesh_axis(const pass_mesh *m, const char *name);
/* The coordinate of `rank` along axis a, and the rank with coordinate c along a and the same
 * other coordinates as `rank`. */
int pass_mesh_coord(const pass_mesh *m, int rank, int a);
int pass_mesh_with(const pass_mesh *m, int rank, int a, int c);
/* "dp=2 x tp=2 x pp=2" */
const char *pass_mesh_str(const pass_mesh *m, char *buf, size_t cap);

/* A rank's graph names each sharded param and input by its full name plus one suffix per
 * sharded dim, "{dD:P/N}" or "{dD:P/N:K}": part P of N along dim D, where with K blocks the dim
 * is K equal blocks each split in N (GPT-2's fused QKV columns). */
#define MESH_MAX_SLICES 4
typedef struct {
    int dim, part, parts, blocks;
} mesh_slice;
/* Splits a rank-local name into the full name (into full, cap bytes) and its slices; false
 * when the name carries no slice suffix (then full is the name itself). A suffix that is not of
 * the form — D outside [0, 8), P outside [0, N), N or K outside [1, 2^20], more than
 * MESH_MAX_SLICES slices, or text after them — gives false with *n = -1 (names from a file:
 * `loom gather` refuses them). */
bool mesh_slice_parse(const char *name, char *full, size_t cap, mesh_slice *s, int *n);
/* Appends the suffix of slice s to buf. */
void mesh_slice_append(char *buf, size_t cap, const mesh_slice *s);
/* Shape of the slice of a tensor of shape full. */
ir_shape mesh_slice_shape(const ir_shape *full, const mesh_slice *s, int n);
/* Copies the slices of src (doubles, shape full) into dst (mesh_slice_shape elements). */
void mesh_slice_extract(const double *src, const ir_shape *full, const mesh_slice *s, int n, double *dst);
/* Calls fn for each maximal run of the slices' elements e..e+len (local row-major order) that
 * are elements f..f+len of the full tensor, in order: what a rank reads of a whole tensor. */
void mesh_slice_runs(const ir_shape *full, const mesh_slice *s, int n, void (*fn)(void *ctx, int64_t e, int64_t f, int64_t len),
                     void *ctx);
/* The inverse: writes the slice src (local shape) into its place in the full tensor dst. */
void mesh_slice_insert(const float *src, const ir_shape *full, const mesh_slice *s, int n, float *dst);

/* The mesh passes (registered in pass.c with the mesh they need). */
bool pass_pipeline(ir_graph *g, const pass_mesh *m, ir_diag *d);
bool pass_shard(ir_graph *g, const pass_mesh *m, ir_diag *d);

/* pipeline.c: the model chunk (0..pp·V-1; stage: chunk mod pp) of every node of g for pp stages
 * of V chunks each (-1: sources, which float to the stages that use them); malloc'd; NULL after
 * reporting too few layers. */
int *pipeline_stages(const ir_graph *g, int pp, int V, ir_diag *d);
/* pipeline.c: prints the GPipe and 1F1B schedules of P stages and M microbatches and their
 * bubble fractions, and with V > 1 the interleaved 1F1B schedule of V chunks a stage. */
void pipeline_schedule_print(FILE *out, int P, int M, int V);
/* The bubble fraction of a schedule (the idle share of the stages' time, simulated as printed
 * above); -1 if a stage would wait forever. */
double pipeline_bubble(int P, int M, int V, bool one_f_one_b);
/* Stage s's order of its 2·M·V ops. V = 1: GPipe (all forwards, then all backwards) or 1F1B
 * (min(P-1-s, M) warm-up forwards, then one forward and one backward in turn, then the
 * remaining backwards). V > 1 (M a multiple of P): Megatron-LM's interleaved 1F1B over the
 * stage's V model chunks — P micro-batches at a time through chunk 0, then chunk 1, ...
 * (backwards from the last chunk), (P-1-s)·2 + (V-1)·P warm-up forwards. ops[k] = i·V+v+1 for
 * micro-batch i's forward through the stage's chunk v, -(i·V+v+1) for its backward. */
void pipeline_order(int P, int s, int M, int V, bool one_f_one_b, int *ops);
/* Micro-batches in flight on stage s under that order (from a micro-batch's first forward to
 * its last backward): engine/mesh_exec.c's slots of values. */
int pipeline_in_flight(int P, int s, int M, int V, bool one_f_one_b);
/* Per node of a stage's local graph L (after the pipeline pass with V chunks a stage; backward:
 * comm_backward_half), the stage's chunk 0..V-1 that runs it: marked nodes by their layer (a
 * chunk is a run of consecutive layers), the rest no earlier than their forward operands (a
 * backward node no later than its backward operands: backwards run from the last chunk), a
 * receive in the chunk that first uses it. All 0 when V <= 1. malloc'd. */
int *pipeline_chunks(const ir_graph *L, const bool *backward, int V);
/* Per node (malloc'd): a backward value that another chunk reads — it must outlive other
 * micro-batches' backward of its own chunk (engine/mesh_exec.c keeps it a slot each). */
bool *pipeline_chunk_apart(const ir_graph *L, const bool *backward, const int *chunk);

/* The mesh interpreter: builds every rank's graph with the passes in pipeline ("pipeline,shard"
 * when NULL) and evaluates all of them in this process with the reference interpreter,
 * performing their collectives and send/recv across the ranks. values: every full param and
 * input by name (the full checkpoint); *outs: rank 0's outputs (free with
 * ir_named_tensors_free). Deadlocks and mismatched collectives are reported, naming the ranks.
 * A mesh_spec ending in "+sp" runs it under sequence parallelism (pass_mesh.seq_parallel). */
bool mesh_interp_run(const ir_graph *g, const char *mesh_spec, const char *pipeline, ir_precision prec,
                     const ir_named_tensor *values, int n_values, ir_named_tensor **outs, int *n_outs,
                     ir_diag *d);

#endif
