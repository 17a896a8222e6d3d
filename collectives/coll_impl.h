/* coll_impl.h — what the collectives' files share and users of coll.h never see: the
 * communicator struct, the backend table (a struct of function pointers per backend), the
 * description of the call in flight (for timeout and error messages), and helpers.
 *
 * Division of work: coll.c checks arguments, handles count 0 and the trivial cases, picks the
 * allreduce algorithm and computes the operation's deadline; a backend only moves data. A
 * backend's operations either complete, or end the job (coll_fail_timeout / coll_fail_lib):
 * they return COLL_OK or an argument-level status, never a half-done operation.
 */
#ifndef LOOM_COLL_IMPL_H
#define LOOM_COLL_IMPL_H

#include "collectives/coll.h"

/* The operation in flight: for deadlines and messages. */
typedef struct {
    const char *op;     /* "allreduce", "send", ... as the user called it */
    const char *detail; /* e.g. "f32 sum, 1024 elements, ring" */
    double start;       /* coll_now() when it started */
    double deadline;    /* coll_now() limit; 0: none */
    unsigned long seq;  /* operation number on this comm, from 1 */
} coll_call;

/* Point-to-point channels: user messages and the algorithms' internal traffic never match
 * each other (MPI: two communicators). */
enum { COLL_CH_USER = 0, COLL_CH_ALGO = 1 };

typedef struct {
    const char *name;
    unsigned caps;
    coll_status (*allreduce)(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                             coll_op op, const coll_call *call);
    coll_status (*allgather)(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                             const coll_call *call);
    coll_status (*reduce_scatter)(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                  coll_op op, const coll_call *call);
    coll_status (*broadcast)(coll_comm *c, void *buf, size_t n, coll_dtype dt, int root,
                             const coll_call *call);
    coll_status (*barrier)(coll_comm *c, const coll_call *call);
    /* Sends sn elements to dest and receives rn from src at once; dest or src -1: that half
     * is skipped. */
    coll_status (*sendrecv)(coll_comm *c, int channel, const void *s, size_t sn, int dest,
                            void *r, size_t rn, int src, coll_dtype dt, int tag,
                            const coll_call *call);
    /* Starts sending buf (n elements, the caller's) to dest and returns: the backend keeps a
     * copy if it needs one, buf may be reused at once. NULL: coll.c sends synchronously.
     * flush completes every started send. */
    coll_status (*isend)(coll_comm *c, const void *buf, size_t n, coll_dtype dt, int dest, int tag,
                         const coll_call *call);
    coll_status (*flush)(coll_comm *c, const coll_call *call);
    /* Starts an in-place allreduce of buf and returns (NULL: coll.c runs it at once, blocking);
     * progress lets started ones advance without waiting; wait_allreduces completes all. */
    coll_status (*iallreduce)(coll_comm *c, void *buf, size_t n, coll_dtype dt, coll_op op, const coll_call *call);
    void (*progress)(coll_comm *c);
    coll_status (*wait_allreduces)(coll_comm *c, const coll_call *call);
    /* *out's backend part (impl); coll.c has filled the rest. COLL_UNDEFINED color: *out is
     * freed by coll.c after the call. */
    coll_status (*split)(coll_comm *c, int color, int key, coll_comm *out);
    void (*destroy)(coll_comm *c, bool world);
    void (*abort_job)(coll_comm *c, int code); /* must not return */
    /* Completes enqueued operations (NULL: none are ever left enqueued). */
    coll_status (*sync)(coll_comm *c, const coll_call *call);
} coll_backend_ops;

struct coll_comm {
    const coll_backend_ops *ops;
    coll_backend backend;
    int rank, size, world_rank, world_size, local_rank, local_size;
    bool world;             /* the comm coll_init returned */
    unsigned caps;          /* COLL_CAP_* (set by the backend's init or split) */
    void *stream;           /* device-buffer comms: the CUstream operations go on; else NULL */
    double timeout_s;       /* ≤ 0: none */
    coll_algo algo;
    unsigned long seq;      /* operations issued */
    char name[32];
    char err[512];
    coll_observer observer; /* coll_set_observer; NULL: none */
    void *observer_ctx;
    void *impl;             /* the backend's state */
};

extern const coll_backend_ops coll_single_ops;
extern const coll_backend_ops coll_mpi_ops;
extern const coll_backend_ops coll_nccl_ops;

/* Backend constructors: fill c (ops, rank, size, ...); on failure return a status with the
 * message in err. */
coll_status coll_single_init(coll_comm *c, coll_error *err);
coll_status coll_mpi_init(coll_comm *c, coll_error *err);
/* NCCL over a host comm (MPI when the launcher started more than one rank, else single) that
 * bootstraps it. fallback (COLL_BACKEND_AUTO): when two ranks share a GPU, c becomes that host
 * comm instead (rank 0 says so on stderr) and the result is COLL_OK. */
coll_status coll_nccl_init(coll_comm *c, const coll_options *opt, bool fallback, coll_error *err);
/* The MPI backend's world comm moved from old to now (a struct copy): its exit report follows. */
void coll_mpi_rehome(const coll_comm *old, coll_comm *now);

/* Ring and tree allreduce over c->ops->sendrecv (coll_algo.c). */
coll_status coll_algo_allreduce(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                coll_op op, coll_algo a, const coll_call *call);

/* Monotonic seconds. */
double coll_now(void);
/* dst[i] = dst[i] op src[i] for i < n (elementwise; the order of the two operands does not
 * matter for sum, max and min: they are commutative, also in floating point). */
void coll_reduce_local(void *dst, const void *src, size_t n, coll_dtype dt, coll_op op);

/* Stores a message in c->err (printf-style) and returns code. */
coll_status coll_set_error(coll_comm *c, coll_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the "loom: coll: rank R/P (world rank W, 'name', host H, pid N): " prefix. */
void coll_describe_rank(const coll_comm *c, char *buf, size_t cap);
/* The two messages below, printed only (the NCCL watchdog ends the process its own way). */
void coll_report_timeout(coll_comm *c, const coll_call *call);
void coll_report_lib(coll_comm *c, const coll_call *call, const char *fn, const char *file, int line,
                     const char *libmsg, const char *hint);
/* Prints the timeout message for call and aborts the job. */
_Noreturn void coll_fail_timeout(coll_comm *c, const coll_call *call);
/* Prints `file:line: FN failed: LIBMSG (during OP #seq, DETAIL)` plus hint and aborts. */
_Noreturn void coll_fail_lib(coll_comm *c, const coll_call *call, const char *fn,
                             const char *file, int line, const char *libmsg, const char *hint);

/* Sleeps a little while polling: nothing for the first spins, then growing up to 1 ms. */
void coll_poll_backoff(unsigned *spins);

#endif
