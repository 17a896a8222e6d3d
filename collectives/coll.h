/* coll.h — the one communicator interface of loom: collectives and point-to-point messages
 * between the ranks of a job, whatever carries them (one process, MPI, NCCL).
 *
 * Model. A job is `size` ranks; a communicator (coll_comm) is an ordered group of them. Every
 * rank of a communicator calls its collectives in the same order with matching arguments
 * (dtype, op, count, root); sub-communicators (coll_split) carry the groups of a device mesh
 * (the dp, tp and pp groups of a dp×tp×pp mesh). The layer depends on nothing above it (not on
 * ir/, not on runtime/): the runtime's executor calls it.
 *
 * Errors are values: every operation returns a coll_status; COLL_OK is 0, and the message of
 * the last failure is coll_error_message(comm) (for coll_init: the coll_error it fills).
 * Argument errors (a bad rank, an overlapping buffer, an unsupported op) are returned and leave
 * the communicator usable. Failures of communication itself are not returned: they end the
 * whole job, because every other rank is waiting on this one —
 *   - a timeout: an operation that has not completed coll_timeout seconds after it started
 *     prints `loom: coll: rank R ...: OP ... did not complete within T s` and aborts the job
 *     (MPI: MPI_Abort on MPI_COMM_WORLD). Never a silent hang.
 *   - a library error (a dead peer, a broken connection): printed with the call, file:line and
 *     the library's own error string, then the job is aborted.
 * See docs/cluster.md for what the launcher prints when a rank dies.
 *
 * Threads. A communicator is used by one thread at a time; the MPI backend initializes MPI
 * with MPI_THREAD_FUNNELED, so all of the process's collectives come from the thread that
 * called coll_init.
 *
 * Buffers. Elements are counted, not bytes. In-place: allreduce with sendbuf == recvbuf,
 * allgather with sendbuf == recvbuf + rank·count (the rank's own block). Any other overlap
 * between send and receive buffers is an argument error. Buffers are host memory, except on
 * a comm whose coll_caps has COLL_CAP_DEVICE_BUFFERS (below).
 *
 * Device buffers (NCCL, coll_nccl.c; docs/cluster.md "NCCL"):
 *   - A comm made with coll_options.device_buffers on the NCCL backend takes device pointers
 *     (CUdeviceptr values cast to void *) of its device, with no host staging: every operation
 *     is enqueued on the comm's stream (coll_options.stream, else one of its own) and returns
 *     at once; coll_caps says COLL_CAP_DEVICE_BUFFERS | COLL_CAP_ASYNC. coll_sync waits for what
 *     was enqueued and reports ncclCommGetAsyncError. The timeout is enforced by a watchdog
 *     thread that polls each operation's completion event (and NCCL's asynchronous error): past
 *     the deadline it prints the operation, calls ncclCommAbort and ends the process (the
 *     launcher then ends the job). Point to point: NCCL has no tags and matches messages by
 *     order between two ranks, so every rank must receive from a peer in the order the peer
 *     sent (tags are checked for range only); sends are copied (stream-ordered) and posted in
 *     one NCCL group with the rank's next receive, sendrecv, or flush, so no order of sends and
 *     receives deadlocks, as with MPI. Ring and tree allreduce (coll_algo.c) need host
 *     buffers: COLL_ERR_UNSUPPORTED (NCCL picks its own algorithm; NCCL_ALGO chooses).
 *   - Without device_buffers an NCCL comm takes host buffers, as MPI and single do: each
 *     collective is staged through a device buffer of the comm (copy in, NCCL, copy out, wait)
 *     and point-to-point messages go through the comm's host communicator (MPI), tags and all.
 *     This is what the mesh runner uses while its values live in host memory.
 *   - MPI and single take host buffers only; the runtime, which owns the devices, stages a
 *     device buffer through host memory. coll_caps(comm) says which a comm accepts, so the
 *     executor decides once per comm, not per call. (A CUDA-aware MPI could take device
 *     pointers too; loom does not rely on it.)
 *
 * Choosing the backend (coll_init with COLL_BACKEND_AUTO): $LOOM_COLL=mpi|nccl first (any other
 * value is an error naming the choices; "auto" or empty: as unset); else NCCL when
 * coll_options.gpu says the ranks compute on CUDA GPUs — unless two ranks share one GPU (NCCL
 * refuses that: "invalid usage"), then MPI; else MPI when a launcher started more than one
 * rank, else single. NCCL without a driver, a device or libnccl.so.2 is an error on every rank
 * (never a silent fallback): "coll: NCCL backend: no CUDA driver found (libcuda.so.1: ...)".
 */
#ifndef LOOM_COLL_H
#define LOOM_COLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coll_comm coll_comm;

typedef enum {
    COLL_OK = 0,
    COLL_ERR_ARG,         /* a bad argument: rank out of range, overlapping buffers, ... */
    COLL_ERR_UNSUPPORTED, /* the backend cannot do this (e.g. no MPI in this build) */
    COLL_ERR_NOMEM,
    COLL_ERR_BACKEND,     /* the library failed outside an operation (init, split, finalize) */
    COLL_ERR_DEADLOCK,    /* single backend: a receive that no send can ever match */
} coll_status;

typedef enum {
    COLL_BACKEND_AUTO,   /* $LOOM_COLL, else NCCL for GPU ranks, else MPI or single (above) */
    COLL_BACKEND_SINGLE, /* one process: size 1, no library */
    COLL_BACKEND_MPI,
    COLL_BACKEND_NCCL,   /* NCCL over the ranks' GPUs, bootstrapped over MPI (coll_nccl.c) */
} coll_backend;

typedef enum { COLL_F32, COLL_F64, COLL_I32, COLL_I64, COLL_DTYPE_COUNT } coll_dtype;
typedef enum { COLL_SUM, COLL_MAX, COLL_MIN, COLL_OP_COUNT } coll_op;

/* How coll_allreduce computes: the backend's own allreduce (MPI_Allreduce), or loom's ring or
 * tree over send/recv (coll_algo.c) — for experiments and for a summation order that loom
 * documents (docs/cluster.md). Ring and tree give every rank the same bits. */
typedef enum { COLL_ALGO_BACKEND, COLL_ALGO_RING, COLL_ALGO_TREE } coll_algo;

/* Capability bits of a communicator (coll_caps). */
enum {
    COLL_CAP_DEVICE_BUFFERS = 1 << 0, /* accepts device pointers (NCCL); else stage via host */
    COLL_CAP_ASYNC = 1 << 1,          /* operations are enqueued; coll_sync completes them */
};

/* coll_split's color for "this rank joins no group" (it gets NULL and COLL_OK). */
#define COLL_UNDEFINED (-32766)

/* Filled by coll_init on failure. */
typedef struct {
    coll_status code;
    char message[512];
} coll_error;

typedef struct {
    /* Seconds an operation may take before the job is aborted; 0 takes LOOM_COLL_TIMEOUT from
     * the environment, else COLL_DEFAULT_TIMEOUT_S. Negative: no timeout. */
    double timeout_s;
    coll_algo allreduce;  /* default COLL_ALGO_BACKEND (0) */
    /* The ranks compute on CUDA GPUs: COLL_BACKEND_AUTO picks NCCL (see above). */
    bool gpu;
    /* NCCL only (host backends ignore them). device_buffers: the comm's buffers are device
     * pointers and its operations are enqueued on the stream (else host buffers, staged).
     * context: a CUcontext to work in, whose device the comm uses; NULL: the primary context of
     * device local_rank mod device count. stream: a CUstream of that context to enqueue on
     * (the caller's, so its kernels and the collectives are ordered); NULL: the comm makes its
     * own. Both stay the caller's. Sub-communicators share their parent's. */
    bool device_buffers;
    void *context;
    void *stream;
} coll_options;

#define COLL_DEFAULT_TIMEOUT_S 600.0 /* as PyTorch's default for NCCL process groups */

/* ---- setup -------------------------------------------------------------------------------- */

/* The world communicator of backend b (COLL_BACKEND_AUTO: $LOOM_COLL, opt->gpu and the
 * launcher, as above). opt may be NULL (defaults). MPI: initializes MPI (MPI_THREAD_FUNNELED:
 * call collectives from one thread) unless the program already did. NCCL: also MPI (the
 * unique id is broadcast over it) when a launcher started more than one rank. Returns NULL and
 * fills *err on failure (one line, the same on every rank). */
coll_comm *coll_init(coll_backend b, const coll_options *opt, coll_error *err);

/* Frees comm. On the world communicator it also finalizes the library if coll_init
 * initialized it, so free sub-communicators first. Collective over comm's ranks. NULL is ok. */
void coll_finalize(coll_comm *comm);

/* Splits comm into groups of equal color, ranked by (key, rank in comm) as MPI_Comm_split.
 * Collective over comm. color COLL_UNDEFINED: *out = NULL. The new comm inherits timeout,
 * algorithm and name; free it with coll_finalize. */
coll_status coll_split(coll_comm *comm, int color, int key, coll_comm **out);

int coll_rank(const coll_comm *comm);
int coll_size(const coll_comm *comm);
int coll_world_rank(const coll_comm *comm); /* this process's rank in the world comm */
/* The rank among ranks on this host and their number (MPI: MPI_COMM_TYPE_SHARED): picks the
 * GPU. */
int coll_local_rank(const coll_comm *comm);
int coll_local_size(const coll_comm *comm);
coll_backend coll_backend_of(const coll_comm *comm);
unsigned coll_caps(const coll_comm *comm);

/* A name for messages ("world", "tp", ...): copied, at most 31 characters kept. */
void coll_set_name(coll_comm *comm, const char *name);
const char *coll_name(const coll_comm *comm);
/* Per-operation timeout in seconds; ≤ 0: none. */
void coll_set_timeout(coll_comm *comm, double seconds);
double coll_timeout(const coll_comm *comm);
void coll_set_allreduce_algo(coll_comm *comm, coll_algo a);
coll_algo coll_allreduce_algo(const coll_comm *comm);

/* The message of comm's last failed call ("" if none). */
const char *coll_error_message(const coll_comm *comm);

/* ---- collectives (every rank of comm calls each, in the same order) ------------------------- */

/* recvbuf[i] = op over ranks of sendbuf[i], i < count, on every rank. */
coll_status coll_allreduce(coll_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                           coll_dtype dt, coll_op op);
/* recvbuf (size·count) = the ranks' sendbuf (count each) in rank order. */
coll_status coll_allgather(coll_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                           coll_dtype dt);
/* recvbuf (count) of rank r = op over ranks of sendbuf[r·count .. (r+1)·count) (sendbuf holds
 * size·count). In place when recvbuf is this rank's block of sendbuf (sendbuf + r·count, as
 * NCCL's): the other blocks of sendbuf are then undefined after the call. */
coll_status coll_reduce_scatter(coll_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                                coll_dtype dt, coll_op op);
/* buf (count) of every rank = root's buf. */
coll_status coll_broadcast(coll_comm *comm, void *buf, size_t count, coll_dtype dt, int root);
coll_status coll_barrier(coll_comm *comm);

/* ---- point to point (tag ≥ 0; a send may block until matched: never rely on buffering) ---- */

coll_status coll_send(coll_comm *comm, const void *buf, size_t count, coll_dtype dt, int dest,
                      int tag);
/* Receives exactly count elements from src with tag (a longer message is an error). */
coll_status coll_recv(coll_comm *comm, void *buf, size_t count, coll_dtype dt, int src, int tag);
/* Starts sending count elements of buf to dest and returns at once: the data is copied, so buf
 * may be reused. Messages to one peer with one tag arrive in the order they were sent. Pipeline
 * stages send this way so that a stage never waits on a peer's receive (no send/recv ordering
 * can deadlock). coll_flush completes them. */
coll_status coll_send_async(coll_comm *comm, const void *buf, size_t count, coll_dtype dt, int dest,
                            int tag);
/* Waits until every send started with coll_send_async on comm has been received, within the
 * timeout (counted from this call). */
coll_status coll_flush(coll_comm *comm);
/* Starts an allreduce of buf in place (count elements) and returns at once: buf must stay
 * untouched until coll_allreduce_wait. Every rank starts the same ones in the same order.
 * coll_progress lets started ones advance (MPI moves them only inside its calls: call it now
 * and then while computing); coll_allreduce_wait completes all of them within the timeout
 * (counted from that call). Backends and algorithms without it (single, NCCL, ring, tree) run
 * the allreduce at start. This overlaps gradient reduction with the backward (engine/train.c). */
coll_status coll_allreduce_start(coll_comm *comm, void *buf, size_t count, coll_dtype dt, coll_op op);
void coll_progress(coll_comm *comm);
coll_status coll_allreduce_wait(coll_comm *comm);
/* Sends to dest and receives from src at once (no deadlock in a ring). */
coll_status coll_sendrecv(coll_comm *comm, const void *sendbuf, size_t sendcount, int dest,
                          void *recvbuf, size_t recvcount, int src, coll_dtype dt, int tag);

/* Completes what is enqueued (a no-op for host backends) and reports asynchronous errors. */
coll_status coll_sync(coll_comm *comm);
/* The stream a device-buffer comm enqueues on (a CUstream), NULL for host-buffer comms. */
void *coll_stream(const coll_comm *comm);

/* Prints `loom: coll: rank R ...: message` and ends the whole job with exit code. */
_Noreturn void coll_abort(coll_comm *comm, int code, const char *message);

/* ---- observing (profiles, metrics) ------------------------------------------------------------ */

/* One completed operation, as an observer sees it. */
typedef struct {
    const char *op;     /* "allreduce", "allgather", "reduce_scatter", "broadcast", "barrier",
                           "send", "recv", "sendrecv", "flush" */
    const char *comm;   /* the communicator's name (coll_set_name) */
    int rank, size;     /* this rank in the communicator, its size */
    int peer;           /* send: dest; recv: src (ranks of the communicator); else -1 */
    int tag;            /* point to point; else -1 */
    size_t bytes;       /* sent (recv: received) by this rank */
    double start, end;  /* coll_now() seconds */
} coll_event;
typedef void (*coll_observer)(void *ctx, const coll_event *ev);
/* Calls fn after every operation on comm that reaches other ranks (not on one-rank comms);
 * NULL: none. Communicators split from comm afterwards inherit it. */
void coll_set_observer(coll_comm *comm, coll_observer fn, void *ctx);
/* Seconds on the monotonic clock (CLOCK_MONOTONIC), the clock of coll_event's times. */
double coll_now(void);

/* ---- names ---------------------------------------------------------------------------------- */

size_t coll_dtype_size(coll_dtype dt);
const char *coll_dtype_name(coll_dtype dt);
const char *coll_op_name(coll_op op);
const char *coll_backend_name(coll_backend b);
const char *coll_algo_name(coll_algo a);
/* "auto|single|mpi|nccl" / "backend|ring|tree" → value; false if unknown. */
bool coll_backend_parse(const char *s, coll_backend *out);
bool coll_algo_parse(const char *s, coll_algo *out);
const char *coll_status_name(coll_status s);

/* ---- the launcher (launch.c) ---------------------------------------------------------------- */

typedef struct {
    bool found;           /* a launcher's variables were present */
    const char *launcher; /* "openmpi", "pmi", "torchrun", "slurm" or "none" */
    int rank, size, local_rank, local_size; /* local_size -1 when the launcher does not say */
} coll_launch;

/* Reads rank, size and local rank from the environment, first match wins:
 *   OpenMPI  OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE
 *   PMI      PMI_RANK / PMI_SIZE (MPICH, Intel MPI; local: MPI_LOCALRANKID / MPI_LOCALNRANKS)
 *   torchrun RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE
 *   Slurm    SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, only inside a job step (SLURM_STEP_ID
 *            set: a batch script is one process yet has the allocation's SLURM_NTASKS)
 * MPI launchers come first because mpirun inside a Slurm allocation inherits the batch step's
 * SLURM_PROCID; torchrun before Slurm because srun may start one torchrun per node. None
 * found: rank 0, size 1, local 0/1, found false. local_size is -1 where the launcher does not
 * say (PMI without MPI_LOCALNRANKS, Slurm). A present but malformed variable (not an
 * integer, rank ≥ size) is an error: false, message in err. */
bool coll_launch_detect(coll_launch *out, coll_error *err);

#endif
