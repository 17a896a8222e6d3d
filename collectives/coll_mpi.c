/* coll_mpi.c — the MPI backend (tested with OpenMPI 4.1).
 *
 * Every operation is started nonblocking (MPI_Iallreduce, MPI_Isend, ...) and completed by
 * polling MPI_Testall against the operation's deadline (coll_impl.h's coll_call): past it, the
 * rank prints which operation timed out and calls MPI_Abort on MPI_COMM_WORLD, which ends every
 * rank of the job. MPI_COMM_WORLD and every comm made here use MPI_ERRORS_RETURN, so a library
 * failure (a dead peer's broken connection) comes back to MPI_MUST, which prints the call,
 * file:line and MPI_Error_string, then aborts — instead of OpenMPI's generic fatal handler.
 *
 * A loom comm holds two MPI communicators with the same group: `user` for the caller's
 * collectives and tagged messages, `algo` for coll_algo.c's internal send/recv, so the two
 * never match each other's messages.
 *
 * Errors outside operations (init, split, finalize) are returned as values (MPI_TRY). Counts
 * are MPI ints: more than INT_MAX elements in one call is an argument error.
 */
#include "collectives/coll_impl.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

typedef struct {
    MPI_Comm user, algo;
    bool owns_mpi; /* coll_init called MPI_Init_thread, so coll_finalize calls MPI_Finalize */
    /* sends started by coll_send_async and not known to be complete, with their buffers */
    MPI_Request *pending;
    void **pending_buf;
    int n_pending, cap_pending;
    MPI_Request *reduces; /* allreduces started by coll_allreduce_start, not yet waited for */
    int n_reduces, cap_reduces;
} mpi_state;

/* The live world communicator, for the exit message below; the only global of the layer.
 * A rank that calls exit() while its world comm is live (an error path that forgot the other
 * ranks) says so before the launcher ends the job: otherwise the job's log shows only
 * mpirun's "process [[job,1],R] exited with status S". */
static coll_comm *live_world;

static void report_exit_while_live(void)
{
    if (!live_world)
        return;
    char who[256];
    coll_describe_rank(live_world, who, sizeof who);
    fprintf(stderr,
            "%s: exiting without coll_finalize while the job's other ranks may be waiting on it; "
            "the launcher will end the job.\n",
            who);
    fflush(stderr);
}

static void mpi_errstr(int rc, char *buf, size_t cap)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof s, "MPI error %d", rc);
    snprintf(buf, cap, "%s (error code %d)", s, rc);
}

#define PEER_HINT                                                                              \
    "a peer rank probably died or lost its connection; the launcher (mpirun/srun) names the "  \
    "rank that exited"

/* Inside an operation: a failed MPI call ends the job with the call, file:line and MPI's
 * message. */
#define MPI_MUST(c, call, fn, args)                                                         \
    do {                                                                                    \
        int rc_ = fn args;                                                                  \
        if (rc_ != MPI_SUCCESS) {                                                           \
            char msg_[MPI_MAX_ERROR_STRING + 32];                                           \
            mpi_errstr(rc_, msg_, sizeof msg_);                                             \
            coll_fail_lib(c, call, #fn, __FILE__, __LINE__, msg_, PEER_HINT);               \
        }                                                                                   \
    } while (0)

/* Outside operations: a failed MPI call is returned as COLL_ERR_BACKEND with the same text in
 * buf (cap bytes). */
#define MPI_TRY(buf, cap, fn, args)                                                         \
    do {                                                                                    \
        int rc_ = fn args;                                                                  \
        if (rc_ != MPI_SUCCESS) {                                                           \
            char msg_[MPI_MAX_ERROR_STRING + 32];                                           \
            mpi_errstr(rc_, msg_, sizeof msg_);                                             \
            snprintf(buf, cap, "coll: %s:%d: %s failed: %s", "coll_mpi.c", __LINE__, #fn,   \
                     msg_);                                                                 \
            return COLL_ERR_BACKEND;                                                        \
        }                                                                                   \
    } while (0)

static MPI_Datatype mpi_type(coll_dtype dt)
{
    switch (dt) {
    case COLL_F32: return MPI_FLOAT;
    case COLL_F64: return MPI_DOUBLE;
    case COLL_I32: return MPI_INT32_T;
    case COLL_I64: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
    }
}

static MPI_Op mpi_op(coll_op op)
{
    switch (op) {
    case COLL_SUM: return MPI_SUM;
    case COLL_MAX: return MPI_MAX;
    case COLL_MIN: return MPI_MIN;
    default: return MPI_OP_NULL;
    }
}

static coll_status count_ok(coll_comm *c, const coll_call *call, size_t n)
{
    if (n > INT_MAX)
        return coll_set_error(c, COLL_ERR_ARG,
                              "%s: %zu elements exceed the MPI backend's limit of INT_MAX per call; "
                              "split the buffer",
                              call->op, n);
    return COLL_OK;
}

/* Completes reqs[0..n) (n ≤ 2) by polling until call's deadline; statuses may be NULL. */
static void mpi_wait(coll_comm *c, int n, MPI_Request *reqs, MPI_Status *statuses,
                     const coll_call *call)
{
    MPI_Status local[2];
    if (!statuses)
        statuses = local;
    unsigned spins = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, statuses);
        if (rc == MPI_ERR_IN_STATUS) /* the request's own error says more */
            for (int i = 0; i < n; i++)
                if (statuses[i].MPI_ERROR != MPI_SUCCESS && statuses[i].MPI_ERROR != MPI_ERR_PENDING) {
                    rc = statuses[i].MPI_ERROR;
                    break;
                }
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING + 32];
            mpi_errstr(rc, msg, sizeof msg);
            coll_fail_lib(c, call, "MPI_Testall", __FILE__, __LINE__, msg, PEER_HINT);
        }
        if (done)
            return;
        if (call->deadline > 0 && coll_now() > call->deadline)
            coll_fail_timeout(c, call);
        coll_poll_backoff(&spins);
    }
}

/* ---- setup ---------------------------------------------------------------------------------- */

static coll_status make_state(coll_comm *c, MPI_Comm base, bool owns, char *err, size_t cap)
{
    mpi_state *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, cap, "coll: out of memory");
        return COLL_ERR_NOMEM;
    }
    m->owns_mpi = owns;
    m->user = m->algo = MPI_COMM_NULL;
    c->impl = m;
    c->ops = &coll_mpi_ops;
    MPI_TRY(err, cap, MPI_Comm_dup, (base, &m->user));
    MPI_TRY(err, cap, MPI_Comm_dup, (base, &m->algo));
    MPI_TRY(err, cap, MPI_Comm_set_errhandler, (m->user, MPI_ERRORS_RETURN));
    MPI_TRY(err, cap, MPI_Comm_set_errhandler, (m->algo, MPI_ERRORS_RETURN));
    MPI_TRY(err, cap, MPI_Comm_rank, (m->user, &c->rank));
    MPI_TRY(err, cap, MPI_Comm_size, (m->user, &c->size));
    return COLL_OK;
}

static void free_state(coll_comm *c)
{
    mpi_state *m = c->impl;
    if (!m)
        return;
    if (m->user != MPI_COMM_NULL)
        MPI_Comm_free(&m->user);
    if (m->algo != MPI_COMM_NULL)
        MPI_Comm_free(&m->algo);
    for (int i = 0; i < m->n_pending; i++) { /* never flushed: the job is ending */
        MPI_Cancel(&m->pending[i]);
        MPI_Request_free(&m->pending[i]);
        free(m->pending_buf[i]);
    }
    free(m->pending);
    free(m->pending_buf);
    free(m->reduces); /* a comm is destroyed with none started (coll_allreduce_wait) */
    free(m);
    c->impl = NULL;
}

coll_status coll_mpi_init(coll_comm *c, coll_error *err)
{
    char *e = err->message;
    size_t cap = sizeof err->message;
    int inited = 0, provided = 0;
    MPI_TRY(e, cap, MPI_Initialized, (&inited));
    if (!inited)
        MPI_TRY(e, cap, MPI_Init_thread, (NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    MPI_TRY(e, cap, MPI_Comm_set_errhandler, (MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    coll_status st = make_state(c, MPI_COMM_WORLD, !inited, e, cap);
    if (st != COLL_OK) {
        free_state(c);
        return st;
    }
    c->world_rank = c->rank;
    c->world_size = c->size;
    static bool registered;
    if (!registered)
        registered = atexit(report_exit_while_live) == 0;

    /* ranks on this host: picks the GPU */
    MPI_Comm local;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING + 32];
        mpi_errstr(rc, msg, sizeof msg);
        snprintf(e, cap, "coll: coll_mpi.c:%d: MPI_Comm_split_type failed: %s", __LINE__, msg);
        free_state(c);
        return COLL_ERR_BACKEND;
    }
    MPI_Comm_rank(local, &c->local_rank);
    MPI_Comm_size(local, &c->local_size);
    MPI_Comm_free(&local);

    /* A launcher that is not MPI's (torchrun) starts singletons that cannot find each other. */
    coll_launch l;
    coll_error le;
    if (coll_launch_detect(&l, &le) && l.found && l.size != c->size) {
        snprintf(e, cap,
                 "coll: the launcher (%s) started %d ranks but MPI sees %d: start MPI jobs with "
                 "mpirun, or srun --mpi=pmix",
                 l.launcher, l.size, c->size);
        free_state(c);
        return COLL_ERR_BACKEND;
    }
    live_world = c;
    return COLL_OK;
}

static coll_status mpi_split(coll_comm *c, int color, int key, coll_comm *out)
{
    mpi_state *m = c->impl;
    /* MPI_Comm_split blocks with no timeout: first meet every rank in an allgather that has
     * one, so a missing rank is reported instead of hanging in the split. */
    int mine[2] = {color, key};
    int *all = malloc(sizeof(int) * 2 * (size_t)c->size);
    if (!all)
        return coll_set_error(c, COLL_ERR_NOMEM, "coll_split: out of memory");
    char detail[64];
    snprintf(detail, sizeof detail, "color %d, key %d", color, key);
    coll_call call = {"split", detail, coll_now(), 0, c->seq};
    if (c->timeout_s > 0)
        call.deadline = call.start + c->timeout_s;
    MPI_Request req;
    MPI_MUST(c, &call, MPI_Iallgather, (mine, 2, MPI_INT, all, 2, MPI_INT, m->user, &req));
    mpi_wait(c, 1, &req, NULL, &call);
    free(all);

    MPI_Comm sub;
    MPI_TRY(c->err, sizeof c->err, MPI_Comm_split,
            (m->user, color == COLL_UNDEFINED ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL)
        return COLL_OK;
    coll_status st = make_state(out, sub, false, c->err, sizeof c->err);
    MPI_Comm_free(&sub);
    if (st != COLL_OK)
        free_state(out);
    return st;
}

static void mpi_destroy(coll_comm *c, bool world)
{
    mpi_state *m = c->impl;
    bool owns = m && m->owns_mpi;
    if (world && live_world == c)
        live_world = NULL;
    free_state(c);
    if (world && owns) {
        int rc = MPI_Finalize();
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING + 32];
            mpi_errstr(rc, msg, sizeof msg);
            fprintf(stderr, "loom: coll: rank %d: coll_mpi.c:%d: MPI_Finalize failed: %s\n",
                    c->world_rank, __LINE__, msg);
        }
    }
}

void coll_mpi_rehome(const coll_comm *old, coll_comm *now)
{
    if (live_world == old)
        live_world = now;
}

static _Noreturn void mpi_abort(coll_comm *c, int code)
{
    live_world = NULL; /* the abort message was printed */
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _Exit(code ? code : 1); /* MPI_Abort does not return; if it did, still end this rank */
}

/* ---- operations ------------------------------------------------------------------------------ */

static coll_status mpi_allreduce(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                 coll_op op, const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    MPI_Request req;
    MPI_MUST(c, call, MPI_Iallreduce,
             (s == r ? MPI_IN_PLACE : s, r, (int)n, mpi_type(dt), mpi_op(op), m->user, &req));
    mpi_wait(c, 1, &req, NULL, call);
    return COLL_OK;
}

static coll_status mpi_allgather(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                 const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    bool in_place = (const char *)s == (char *)r + (size_t)c->rank * n * coll_dtype_size(dt);
    MPI_Request req;
    MPI_MUST(c, call, MPI_Iallgather,
             (in_place ? MPI_IN_PLACE : s, (int)n, mpi_type(dt), r, (int)n, mpi_type(dt), m->user, &req));
    mpi_wait(c, 1, &req, NULL, call);
    return COLL_OK;
}

static coll_status mpi_reduce_scatter(coll_comm *c, const void *s, void *r, size_t n,
                                      coll_dtype dt, coll_op op, const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    /* in place (r is this rank's block of s): MPI's in-place result is the buffer's first block */
    size_t bytes = n * coll_dtype_size(dt);
    bool in_place = (const char *)r == (const char *)s + (size_t)c->rank * bytes;
    MPI_Request req;
    MPI_MUST(c, call, MPI_Ireduce_scatter_block,
             (in_place ? MPI_IN_PLACE : s, in_place ? (void *)(uintptr_t)s : r, (int)n, mpi_type(dt), mpi_op(op),
              m->user, &req));
    mpi_wait(c, 1, &req, NULL, call);
    if (in_place && r != s)
        memmove(r, s, bytes);
    return COLL_OK;
}

static coll_status mpi_broadcast(coll_comm *c, void *buf, size_t n, coll_dtype dt, int root,
                                 const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    MPI_Request req;
    MPI_MUST(c, call, MPI_Ibcast, (buf, (int)n, mpi_type(dt), root, m->user, &req));
    mpi_wait(c, 1, &req, NULL, call);
    return COLL_OK;
}

static coll_status mpi_barrier(coll_comm *c, const coll_call *call)
{
    mpi_state *m = c->impl;
    MPI_Request req;
    MPI_MUST(c, call, MPI_Ibarrier, (m->user, &req));
    mpi_wait(c, 1, &req, NULL, call);
    return COLL_OK;
}

static coll_status mpi_sendrecv(coll_comm *c, int channel, const void *s, size_t sn, int dest,
                                void *r, size_t rn, int src, coll_dtype dt, int tag,
                                const coll_call *call)
{
    mpi_state *m = c->impl;
    MPI_Comm comm = channel == COLL_CH_ALGO ? m->algo : m->user;
    coll_status st = count_ok(c, call, sn > rn ? sn : rn);
    if (st != COLL_OK)
        return st;
    MPI_Request reqs[2];
    MPI_Status stats[2];
    int nreq = 0;
    if (src >= 0)
        MPI_MUST(c, call, MPI_Irecv, (r, (int)rn, mpi_type(dt), src, tag, comm, &reqs[nreq++]));
    if (dest >= 0)
        MPI_MUST(c, call, MPI_Isend, (s, (int)sn, mpi_type(dt), dest, tag, comm, &reqs[nreq++]));
    mpi_wait(c, nreq, reqs, stats, call);
    if (src >= 0) {
        int got = 0;
        MPI_MUST(c, call, MPI_Get_count, (&stats[0], mpi_type(dt), &got));
        if ((size_t)got != rn)
            return coll_set_error(c, COLL_ERR_ARG,
                                  "%s #%lu: received %d elements from rank %d, expected %zu",
                                  call->op, call->seq, got, src, rn);
    }
    return COLL_OK;
}

/* Frees the buffers of completed sends and drops their requests (MPI_Test, no waiting). */
static void reap_sends(coll_comm *c, const coll_call *call)
{
    mpi_state *m = c->impl;
    int kept = 0;
    for (int i = 0; i < m->n_pending; i++) {
        int done = 0;
        MPI_MUST(c, call, MPI_Test, (&m->pending[i], &done, MPI_STATUS_IGNORE));
        if (done) {
            free(m->pending_buf[i]);
            continue;
        }
        m->pending[kept] = m->pending[i];
        m->pending_buf[kept++] = m->pending_buf[i];
    }
    m->n_pending = kept;
}

static coll_status mpi_isend(coll_comm *c, const void *data, size_t n, coll_dtype dt, int dest, int tag,
                             const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    /* MPI reads the buffer until the send completes: send a copy, freed once it has */
    void *buf = malloc(n * coll_dtype_size(dt));
    if (!buf)
        return coll_set_error(c, COLL_ERR_NOMEM, "coll_send_async: out of memory for %zu elements", n);
    memcpy(buf, data, n * coll_dtype_size(dt));
    reap_sends(c, call);
    if (m->n_pending == m->cap_pending) {
        int cap = m->cap_pending ? 2 * m->cap_pending : 16;
        MPI_Request *r = realloc(m->pending, sizeof *r * (size_t)cap);
        if (r)
            m->pending = r;
        void **b = realloc(m->pending_buf, sizeof *b * (size_t)cap);
        if (b)
            m->pending_buf = b;
        if (!r || !b) {
            free(buf);
            return coll_set_error(c, COLL_ERR_NOMEM, "coll_send_async: out of memory");
        }
        m->cap_pending = cap;
    }
    MPI_MUST(c, call, MPI_Isend, (buf, (int)n, mpi_type(dt), dest, tag, m->user, &m->pending[m->n_pending]));
    m->pending_buf[m->n_pending++] = buf;
    return COLL_OK;
}

/* Waits for the n started requests reqs (mpi_wait with a status each); who names the call. */
static coll_status wait_all(coll_comm *c, int n, MPI_Request *reqs, const char *who, const coll_call *call)
{
    MPI_Status *stats = malloc(sizeof *stats * (size_t)n);
    if (!stats)
        return coll_set_error(c, COLL_ERR_NOMEM, "%s: out of memory", who);
    mpi_wait(c, n, reqs, stats, call);
    free(stats);
    return COLL_OK;
}

static coll_status mpi_flush(coll_comm *c, const coll_call *call)
{
    mpi_state *m = c->impl;
    if (!m->n_pending)
        return COLL_OK;
    coll_status st = wait_all(c, m->n_pending, m->pending, "coll_flush", call);
    if (st != COLL_OK)
        return st;
    for (int i = 0; i < m->n_pending; i++)
        free(m->pending_buf[i]);
    m->n_pending = 0;
    return COLL_OK;
}

static coll_status mpi_iallreduce(coll_comm *c, void *buf, size_t n, coll_dtype dt, coll_op op,
                                  const coll_call *call)
{
    mpi_state *m = c->impl;
    coll_status st = count_ok(c, call, n);
    if (st != COLL_OK)
        return st;
    if (m->n_reduces == m->cap_reduces) {
        int cap = m->cap_reduces ? 2 * m->cap_reduces : 16;
        MPI_Request *r = realloc(m->reduces, sizeof *r * (size_t)cap);
        if (!r)
            return coll_set_error(c, COLL_ERR_NOMEM, "coll_allreduce_start: out of memory");
        m->reduces = r;
        m->cap_reduces = cap;
    }
    MPI_MUST(c, call, MPI_Iallreduce,
             (MPI_IN_PLACE, buf, (int)n, mpi_type(dt), mpi_op(op), m->user, &m->reduces[m->n_reduces]));
    m->n_reduces++;
    return COLL_OK;
}

static void mpi_progress(coll_comm *c)
{
    mpi_state *m = c->impl;
    int flag;
    if (m->n_reduces) /* drives MPI's progress engine; the requests stay until the wait */
        MPI_Testall(m->n_reduces, m->reduces, &flag, MPI_STATUSES_IGNORE);
}

static coll_status mpi_wait_allreduces(coll_comm *c, const coll_call *call)
{
    mpi_state *m = c->impl;
    if (!m->n_reduces)
        return COLL_OK;
    coll_status st = wait_all(c, m->n_reduces, m->reduces, "coll_allreduce_wait", call);
    m->n_reduces = st == COLL_OK ? 0 : m->n_reduces;
    return st;
}

const coll_backend_ops coll_mpi_ops = {
    .name = "mpi",
    .caps = 0,
    .allreduce = mpi_allreduce,
    .allgather = mpi_allgather,
    .reduce_scatter = mpi_reduce_scatter,
    .iallreduce = mpi_iallreduce,
    .progress = mpi_progress,
    .wait_allreduces = mpi_wait_allreduces,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .sendrecv = mpi_sendrecv,
    .isend = mpi_isend,
    .flush = mpi_flush,
    .split = mpi_split,
    .destroy = mpi_destroy,
    .abort_job = mpi_abort,
};
