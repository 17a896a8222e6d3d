/* comm_match.h — collective matching: the communication every rank of a mesh will perform,
 * simulated before anything runs, and the proof that the ranks agree (docs/cluster.md,
 * "Checks before launch").
 *
 * A rank's sequence is read off its local graph (after the pipeline and shard passes) in the
 * order engine/mesh_exec.c runs it: a forward run in graph order; a training step's M
 * micro-batches in the schedule's order (pipeline_order), each micro-batch's forward half then
 * later its backward half. comm_match then proves, for every group of every mesh axis, that its
 * members call the same collectives (kind, dtype, element count, reduction or dim) in the same
 * order; that every send has its receive with the same dtype and count; and, by a simulation of
 * the whole job (sends complete in the background, a receive waits for its send, a collective
 * for its whole group), that no rank waits forever. `loom check --mesh` runs it over every
 * rank's graph in one process; `loom train|run --mesh` and cluster executables exchange the
 * ranks' sequences at start-up (engine/mesh_exec.c) and run the same proof on every rank. */
#ifndef LOOM_COMM_MATCH_H
#define LOOM_COMM_MATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "ir/ir.h"
#include "passes/mesh.h"

/* One communication op of a rank, plain integers only (exchanged between ranks as int64). */
typedef struct {
    int64_t op;        /* ir_opcode: allreduce, allgather, reduce_scatter, send, recv */
    int64_t axis;      /* a collective's mesh axis; -1 for send/recv (the world) */
    int64_t dtype;     /* ir_dtype */
    int64_t count;     /* elements of the operand (recv: of the value received) */
    int64_t detail;    /* allreduce: 0 sum, 1 max, 2 min; allgather, reduce_scatter: dim; send/recv: tag */
    int64_t peer;      /* send/recv: the other world rank; else -1 */
    int64_t micro;     /* micro-batch (-1: a forward run) */
    int64_t backward;  /* 1: in a micro-batch's backward half */
    int64_t node;      /* the communication node's id in the rank's graph */
    int64_t src_op;    /* ir_opcode of the op whose value it moves (-1: a receive) */
    int64_t src_backward; /* 1: that op was made by autodiff */
    int64_t file, line, col; /* that op's source location (ir_loc; file indexes the diag's sources) */
} comm_event;

#define COMM_EVENT_WORDS ((int)(sizeof(comm_event) / sizeof(int64_t)))

typedef struct {
    comm_event *ev;    /* malloc'd */
    int n;
} comm_seq;

/* Per node of L (malloc'd): in a micro-batch's backward half — autodiff's nodes (and the
 * communication of their values) that no forward node needs; one sweep from the end moves what
 * CSE shared with the forward back to it. engine/mesh_exec.c cuts its halves by it. */
bool *comm_backward_half(const ir_graph *L);

/* The communication rank m->rank performs with its graph L: micro 0 a forward run (graph order,
 * once); micro M > 0 a training step of M micro-batches in the order of the pipeline schedule
 * (one_f_one_b: 1F1B, else GPipe; m->virtual_stages > 1: interleaved 1F1B, each micro-batch's
 * halves run chunk by chunk, pipeline_chunks) on the rank's stage. */
comm_seq comm_seq_of(const ir_graph *L, const pass_mesh *m, int micro, bool one_f_one_b);
void comm_seq_free(comm_seq *s);

/* Proves that seqs[0 .. m->world) match (above). false after reporting the first mismatch
 * through d: both ranks, the position in the group's sequence and each side's op, dtype,
 * count and source op with its .loom location (d's sources name the file). */
bool comm_match(const comm_seq *seqs, const pass_mesh *m, ir_diag *d);

/* "allreduce f32 x 512 (sum) of matmul at models/gpt2.loom:45:13" into buf. */
const char *comm_event_str(const comm_event *e, const pass_mesh *m, const ir_diag *d, char *buf, size_t cap);

#endif
