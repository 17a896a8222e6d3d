/* coll_nccl.c — the NCCL backend (coll.h, "Device buffers"; docs/cluster.md, "NCCL").
 *
 * A comm is an NCCL communicator over the ranks' GPUs plus a host comm over the same ranks
 * (MPI when a launcher started more than one rank, else single) that bootstraps it — rank 0's
 * ncclUniqueId is broadcast over it — and carries what NCCL does not: barriers, the split's
 * color/key exchange, and, for host-buffer comms, point-to-point messages (tags honoured).
 *
 * Device, context, stream. The comm works in coll_options.context (else the primary context of
 * device local_rank mod device count) and enqueues on coll_options.stream (else a stream of its
 * own); the thread's current context is put back after each call, so an executor on the same
 * thread keeps its own. Sub-communicators share their parent's device, context and stream.
 *
 * Buffers. device_buffers: the caller's device pointers go to NCCL as they are; operations are
 * enqueued and return at once. Otherwise host buffers are staged through a device buffer of the
 * comm (scratch): copy in, NCCL in place, wait, copy out.
 *
 * Timeouts. NCCL has no per-call timeout. After each enqueued operation an event is recorded
 * and the operation joins the comm's ring of operations in flight (oldest first). A calling
 * thread that waits (coll_sync, coll_flush, host-buffer operations) polls the oldest event
 * against its deadline and ncclCommGetAsyncError, and past the deadline reports the operation
 * and aborts the job (ncclCommAbort, then the host comm's abort: MPI_Abort). A watchdog thread
 * (one per process while an NCCL comm exists) does the same every 20 ms for every comm — also
 * for calls into NCCL that block the host (ncclCommInitRank, a group's first connection), which
 * are marked while they run — so a hang is reported even when nobody waits through this layer
 * (an executor blocked in its own cuStreamSynchronize): it prints the message, calls
 * ncclCommAbort and ends the process with _Exit(1); the launcher ends the job (mpirun does by
 * default, srun with --kill-on-bad-exit). The watchdog never calls MPI (MPI_THREAD_FUNNELED).
 *
 * Every driver and NCCL call goes through CU_MUST / NCCL_MUST (inside an operation: the call,
 * file:line and the library's own error string, then the job ends) or CU_TRY / NCCL_TRY (setup:
 * the same text returned as COLL_ERR_BACKEND).
 */
#include "collectives/coll_gpu.h"
#include "collectives/coll_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { RING = 256 }; /* operations in flight per comm before the caller waits for the oldest */

typedef struct {
    CUevent ev;
    double deadline;      /* 0: none */
    unsigned long seq;
    char op[32], detail[160];
} inflight;

typedef struct {
    CUdeviceptr buf;      /* a stream-ordered copy of the message */
    size_t n;
    coll_dtype dt;
    int dest;
} pending_send;

typedef struct nccl_state {
    coll_gpu *g;
    coll_comm *self;      /* the comm whose impl this is (for messages) */
    coll_comm *host;      /* MPI or single over the same ranks */
    ncclComm_t comm;
    CUdevice dev;
    CUcontext ctx, saved; /* saved: the thread's context while a call runs in ours */
    CUstream stream;
    CUuuid uuid;
    bool own_ctx, own_stream, device_buffers;
    CUdeviceptr scratch;  /* host-buffer staging */
    size_t scratch_bytes;
    pending_send *sends;  /* device buffers: sends waiting for the next group */
    int n_sends, cap_sends;
    pthread_mutex_t mu;   /* guards ring, spare and blocking against the watchdog */
    inflight ring[RING];
    int head, count;
    CUevent spare[RING];
    int n_spare;
    bool blocking;        /* a host-blocking NCCL call is running: block describes it */
    inflight block;
    struct nccl_state *next; /* the watchdog's list */
} nccl_state;

/* ---- messages and checks ------------------------------------------------------------------- */

#define NCCL_PEER_HINT                                                                          \
    "a peer rank probably died, lost its connection, or called a different collective; the "    \
    "launcher (mpirun/srun) names a rank that exited"

static const char *nccl_hint(ncclResult_t r)
{
    switch (r) {
    case ncclInvalidUsage:
        return "NCCL refuses two ranks on one GPU (and other misuse): give each rank its own GPU "
               "(CUDA_VISIBLE_DEVICES), or run the collectives over MPI with LOOM_COLL=mpi";
    case ncclSystemError:
    case ncclRemoteError: return NCCL_PEER_HINT;
    case ncclUnhandledCudaError: return "a CUDA error inside NCCL: a kernel before this operation may have failed";
    default: return NULL;
    }
}

#define STR2(x) #x
#define STR(x) STR2(x)

/* Inside an operation: a failed call ends the job with the call, file:line and the library's
 * message (the call's name as the header spells it: "cu" / "nccl" and the field). */
#define CU_MUST(c, s, call, fn, args)                                                     \
    do {                                                                                  \
        CUresult r_ = (s)->g->fn args;                                                    \
        if (r_ != CUDA_SUCCESS) {                                                         \
            char m_[320];                                                                 \
            coll_gpu_cu_error((s)->g, r_, m_, sizeof m_);                                 \
            coll_fail_lib(c, call, "cu" #fn, __FILE__, __LINE__, m_, NULL);               \
        }                                                                                 \
    } while (0)

#define NCCL_MUST(c, s, call, fn, args)                                                   \
    do {                                                                                  \
        block_begin(s, call);                                                             \
        ncclResult_t r_ = (s)->g->fn args;                                                \
        block_end(s);                                                                     \
        if (r_ != ncclSuccess) {                                                          \
            char m_[512];                                                                 \
            coll_gpu_nccl_error((s)->g, r_, (s)->comm, m_, sizeof m_);                    \
            coll_fail_lib(c, call, "nccl" #fn, __FILE__, __LINE__, m_, nccl_hint(r_));    \
        }                                                                                 \
    } while (0)

/* Setup: a failed call is returned as COLL_ERR_BACKEND with the same text in err (cap). */
#define CU_TRY(s, err, cap, fn, args)                                                     \
    do {                                                                                  \
        CUresult r_ = (s)->g->fn args;                                                    \
        if (r_ != CUDA_SUCCESS) {                                                         \
            char m_[320];                                                                 \
            coll_gpu_cu_error((s)->g, r_, m_, sizeof m_);                                 \
            snprintf(err, cap, "coll_nccl.c:%d: cu%s failed: %s", __LINE__, #fn, m_);     \
            return COLL_ERR_BACKEND;                                                      \
        }                                                                                 \
    } while (0)

#define NCCL_TRY(s, call, err, cap, fn, args)                                             \
    do {                                                                                  \
        block_begin(s, call);                                                             \
        ncclResult_t r_ = (s)->g->fn args;                                                \
        block_end(s);                                                                     \
        if (r_ != ncclSuccess) {                                                          \
            char m_[300];                                                                 \
            coll_gpu_nccl_error((s)->g, r_, (s)->comm, m_, sizeof m_);                    \
            const char *h_ = nccl_hint(r_);                                               \
            snprintf(err, cap, "coll_nccl.c:%d: nccl%s failed: %s%s%s", __LINE__, #fn, m_, \
                     h_ ? "; hint: " : "", h_ ? h_ : "");                                 \
            return COLL_ERR_BACKEND;                                                      \
        }                                                                                 \
    } while (0)

static void describe(inflight *f, const coll_call *call, double deadline)
{
    f->deadline = deadline;
    f->seq = call->seq;
    snprintf(f->op, sizeof f->op, "%s", call->op);
    snprintf(f->detail, sizeof f->detail, "%s", call->detail);
}

static coll_call call_of(const inflight *f)
{
    return (coll_call){f->op, f->detail, 0, f->deadline, f->seq};
}

/* ---- the watchdog -------------------------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stop;
    nccl_state *list;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Taken, never released, by whoever ends the process first (a caller's failure or the
 * watchdog's), so one message is printed. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

/* The watchdog found f late (timeout) or NCCL failed (fn, msg): report, abort NCCL, end the
 * process. Returns only if a failure is already being handled elsewhere. */
static void watchdog_fail(nccl_state *s, const inflight *f, const char *fn, const char *msg, const char *hint)
{
    if (pthread_mutex_trylock(&fail_lock) != 0)
        return;
    coll_call call = call_of(f);
    if (fn)
        coll_report_lib(s->self, &call, fn, __FILE__, __LINE__, msg, hint);
    else
        coll_report_timeout(s->self, &call);
    fprintf(stderr, "loom: coll: the NCCL watchdog %sends this process; the launcher ends the job.\n",
            s->comm ? "aborted the communicator (ncclCommAbort) and " : "");
    fflush(stderr);
    if (s->comm)
        s->g->CommAbort(s->comm);
    _Exit(1);
}

/* Drops the completed operations at the head of s's ring (s->mu held). In the watchdog (call
 * NULL), a failed query ends the process; in a caller, the job. */
static void reap(nccl_state *s, const coll_call *call)
{
    while (s->count > 0) {
        inflight *f = &s->ring[s->head];
        CUresult r = s->g->EventQuery(f->ev);
        if (r == CUDA_ERROR_NOT_READY)
            return;
        if (r != CUDA_SUCCESS) {
            char m[320];
            coll_gpu_cu_error(s->g, r, m, sizeof m);
            if (!call) {
                watchdog_fail(s, f, "cuEventQuery", m, "a kernel on the stream failed");
                return;
            }
            coll_call fc = call_of(f);
            coll_fail_lib(s->self, &fc, "cuEventQuery", __FILE__, __LINE__, m, "a kernel on the stream failed");
        }
        s->spare[s->n_spare++] = f->ev;
        s->head = (s->head + 1) % RING;
        s->count--;
    }
}

/* NCCL's asynchronous error of s, or ncclSuccess (ncclInProgress counts as none). */
static ncclResult_t async_error(nccl_state *s)
{
    ncclResult_t ae = ncclSuccess;
    if (!s->comm)
        return ncclSuccess;
    ncclResult_t r = s->g->CommGetAsyncError(s->comm, &ae);
    if (r != ncclSuccess)
        return r;
    return ae == ncclInProgress ? ncclSuccess : ae;
}

static void watchdog_check(nccl_state *s)
{
    pthread_mutex_lock(&s->mu);
    double now = coll_now();
    if (s->blocking && s->block.deadline > 0 && now > s->block.deadline)
        watchdog_fail(s, &s->block, NULL, NULL, NULL);
    if (s->count > 0) {
        s->g->CtxSetCurrent(s->ctx); /* this thread's own: nothing to restore */
        reap(s, NULL);
        if (s->count > 0 && s->ring[s->head].deadline > 0 && now > s->ring[s->head].deadline)
            watchdog_fail(s, &s->ring[s->head], NULL, NULL, NULL);
    }
    if (s->count > 0 || s->blocking) {
        ncclResult_t ae = async_error(s);
        if (ae != ncclSuccess) {
            char m[512];
            coll_gpu_nccl_error(s->g, ae, s->comm, m, sizeof m);
            watchdog_fail(s, s->count > 0 ? &s->ring[s->head] : &s->block, "ncclCommGetAsyncError", m, nccl_hint(ae));
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.mu);
    while (!wd.stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 20 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000L)
            t.tv_sec++, t.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&wd.cv, &wd.mu, &t);
        for (nccl_state *s = wd.list; s && !wd.stop; s = s->next)
            watchdog_check(s);
    }
    pthread_mutex_unlock(&wd.mu);
    return NULL;
}

/* Adds s to the watchdog's list, starting the thread with the first; false (message in err)
 * if it cannot start. */
static bool watch(nccl_state *s, char *err, size_t cap)
{
    pthread_mutex_lock(&wd.mu);
    bool ok = true;
    if (!wd.running) {
        wd.stop = false;
        int rc = pthread_create(&wd.thread, NULL, watchdog_main, NULL);
        if (rc != 0) {
            snprintf(err, cap, "coll_nccl.c:%d: pthread_create failed for the watchdog: %s", __LINE__, strerror(rc));
            ok = false;
        }
        wd.running = ok;
    }
    if (ok) {
        s->next = wd.list;
        wd.list = s;
    }
    pthread_mutex_unlock(&wd.mu);
    return ok;
}

/* Removes s from the list; the last one stops the thread. */
static void unwatch(nccl_state *s)
{
    pthread_mutex_lock(&wd.mu);
    for (nccl_state **p = &wd.list; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    bool join = wd.running && !wd.list;
    if (join) {
        wd.stop = true;
        pthread_cond_signal(&wd.cv);
    }
    pthread_mutex_unlock(&wd.mu);
    if (join) {
        pthread_join(wd.thread, NULL);
        pthread_mutex_lock(&wd.mu);
        wd.running = false;
        pthread_mutex_unlock(&wd.mu);
    }
}

/* Marks a call into NCCL that may block the host (the watchdog times it). */
static void block_begin(nccl_state *s, const coll_call *call)
{
    pthread_mutex_lock(&s->mu);
    describe(&s->block, call, call->deadline);
    s->blocking = true;
    pthread_mutex_unlock(&s->mu);
}

static void block_end(nccl_state *s)
{
    pthread_mutex_lock(&s->mu);
    s->blocking = false;
    pthread_mutex_unlock(&s->mu);
}

/* ---- in flight ----------------------------------------------------------------------------- */

/* The thread works in s's context until leave() puts the previous one back. */
static void enter(coll_comm *c, nccl_state *s, const coll_call *call)
{
    CU_MUST(c, s, call, CtxGetCurrent, (&s->saved));
    if (s->saved != s->ctx)
        CU_MUST(c, s, call, CtxSetCurrent, (s->ctx));
}

static void leave(coll_comm *c, nccl_state *s, const coll_call *call)
{
    if (s->saved != s->ctx)
        CU_MUST(c, s, call, CtxSetCurrent, (s->saved));
}

/* Waits until everything s enqueued has completed, within each operation's deadline, and
 * checks NCCL's asynchronous error. */
static void wait_all(coll_comm *c, nccl_state *s, const coll_call *call)
{
    unsigned spins = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        reap(s, call);
        bool done = s->count == 0;
        inflight head = done ? (inflight){0} : s->ring[s->head];
        pthread_mutex_unlock(&s->mu);
        ncclResult_t ae = async_error(s);
        if (ae != ncclSuccess) {
            char m[512];
            coll_gpu_nccl_error(s->g, ae, s->comm, m, sizeof m);
            coll_call fc = done ? *call : call_of(&head);
            coll_fail_lib(c, &fc, "ncclCommGetAsyncError", __FILE__, __LINE__, m, nccl_hint(ae));
        }
        if (done)
            return;
        if (head.deadline > 0 && coll_now() > head.deadline) {
            coll_call fc = call_of(&head);
            coll_fail_timeout(c, &fc);
        }
        coll_poll_backoff(&spins);
    }
}

/* Records an event after what call enqueued and adds it to the ring (waiting for the oldest
 * when the ring is full). */
static void track(coll_comm *c, nccl_state *s, const coll_call *call)
{
    pthread_mutex_lock(&s->mu);
    reap(s, call);
    bool full = s->count == RING;
    pthread_mutex_unlock(&s->mu);
    if (full)
        wait_all(c, s, call);
    CUevent ev = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_spare > 0)
        ev = s->spare[--s->n_spare];
    pthread_mutex_unlock(&s->mu);
    if (!ev)
        CU_MUST(c, s, call, EventCreate, (&ev, CU_EVENT_DISABLE_TIMING));
    CU_MUST(c, s, call, EventRecord, (ev, s->stream));
    pthread_mutex_lock(&s->mu);
    inflight *f = &s->ring[(s->head + s->count) % RING];
    f->ev = ev;
    describe(f, call, call->deadline);
    s->count++;
    pthread_mutex_unlock(&s->mu);
}

/* ---- types ----------------------------------------------------------------------------------- */

static ncclDataType_t nccl_type(coll_dtype dt)
{
    switch (dt) {
    case COLL_F32: return ncclFloat32;
    case COLL_F64: return ncclFloat64;
    case COLL_I32: return ncclInt32;
    case COLL_I64: return ncclInt64;
    default: return ncclFloat32; /* coll.c checked dt */
    }
}

static ncclRedOp_t nccl_op(coll_op op)
{
    switch (op) {
    case COLL_MAX: return ncclMax;
    case COLL_MIN: return ncclMin;
    default: return ncclSum;
    }
}

#define DEV(p) ((void *)(uintptr_t)(p))

/* The staging buffer, at least bytes (host-buffer comms; nothing of s is in flight). */
static CUdeviceptr scratch(coll_comm *c, nccl_state *s, size_t bytes, const coll_call *call)
{
    if (bytes <= s->scratch_bytes)
        return s->scratch;
    size_t want = s->scratch_bytes * 2 > bytes ? s->scratch_bytes * 2 : bytes;
    want = (want + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
    if (s->scratch)
        CU_MUST(c, s, call, MemFree, (s->scratch));
    s->scratch = 0;
    s->scratch_bytes = 0;
    CU_MUST(c, s, call, MemAlloc, (&s->scratch, want));
    s->scratch_bytes = want;
    return s->scratch;
}

/* Host buffers: copies host[0..bytes) to dev on the stream (pageable memory: synchronous). */
static void copy_in(coll_comm *c, nccl_state *s, CUdeviceptr dev, const void *host, size_t bytes, const coll_call *call)
{
    CU_MUST(c, s, call, MemcpyHtoDAsync, (dev, host, bytes, s->stream));
}

/* Host buffers: waits for the operation enqueued (so a hang is a timeout, not a copy that never
 * returns), then copies dev back. */
static void copy_out(coll_comm *c, nccl_state *s, void *host, CUdeviceptr dev, size_t bytes, const coll_call *call)
{
    track(c, s, call);
    wait_all(c, s, call);
    if (bytes) {
        CU_MUST(c, s, call, MemcpyDtoHAsync, (host, dev, bytes, s->stream));
        track(c, s, call);
        wait_all(c, s, call);
    }
}

/* ---- collectives ----------------------------------------------------------------------------- */

static coll_status nccl_allreduce(coll_comm *c, const void *sb, void *rb, size_t n, coll_dtype dt, coll_op op,
                                  const coll_call *call)
{
    nccl_state *s = c->impl;
    size_t bytes = n * coll_dtype_size(dt);
    enter(c, s, call);
    if (s->device_buffers) {
        NCCL_MUST(c, s, call, AllReduce, (sb, rb, n, nccl_type(dt), nccl_op(op), s->comm, s->stream));
        track(c, s, call);
    } else {
        CUdeviceptr d = scratch(c, s, bytes, call);
        copy_in(c, s, d, sb, bytes, call);
        NCCL_MUST(c, s, call, AllReduce, (DEV(d), DEV(d), n, nccl_type(dt), nccl_op(op), s->comm, s->stream));
        copy_out(c, s, rb, d, bytes, call);
    }
    leave(c, s, call);
    return COLL_OK;
}

static coll_status nccl_allgather(coll_comm *c, const void *sb, void *rb, size_t n, coll_dtype dt,
                                  const coll_call *call)
{
    nccl_state *s = c->impl;
    size_t bytes = n * coll_dtype_size(dt), mine = (size_t)c->rank * bytes;
    enter(c, s, call);
    if (s->device_buffers) {
        NCCL_MUST(c, s, call, AllGather, (sb, rb, n, nccl_type(dt), s->comm, s->stream));
        track(c, s, call);
    } else {
        CUdeviceptr d = scratch(c, s, bytes * (size_t)c->size, call);
        copy_in(c, s, d + mine, sb, bytes, call);
        NCCL_MUST(c, s, call, AllGather, (DEV(d + mine), DEV(d), n, nccl_type(dt), s->comm, s->stream));
        copy_out(c, s, rb, d, bytes * (size_t)c->size, call);
    }
    leave(c, s, call);
    return COLL_OK;
}

static coll_status nccl_reduce_scatter(coll_comm *c, const void *sb, void *rb, size_t n, coll_dtype dt, coll_op op,
                                       const coll_call *call)
{
    nccl_state *s = c->impl;
    size_t bytes = n * coll_dtype_size(dt), mine = (size_t)c->rank * bytes;
    enter(c, s, call);
    if (s->device_buffers) {
        NCCL_MUST(c, s, call, ReduceScatter, (sb, rb, n, nccl_type(dt), nccl_op(op), s->comm, s->stream));
        track(c, s, call);
    } else {
        CUdeviceptr d = scratch(c, s, bytes * (size_t)c->size, call);
        copy_in(c, s, d, sb, bytes * (size_t)c->size, call);
        NCCL_MUST(c, s, call, ReduceScatter, (DEV(d), DEV(d + mine), n, nccl_type(dt), nccl_op(op), s->comm, s->stream));
        copy_out(c, s, rb, d + mine, bytes, call);
    }
    leave(c, s, call);
    return COLL_OK;
}

static coll_status nccl_broadcast(coll_comm *c, void *buf, size_t n, coll_dtype dt, int root, const coll_call *call)
{
    nccl_state *s = c->impl;
    size_t bytes = n * coll_dtype_size(dt);
    enter(c, s, call);
    if (s->device_buffers) {
        NCCL_MUST(c, s, call, Broadcast, (buf, buf, n, nccl_type(dt), root, s->comm, s->stream));
        track(c, s, call);
    } else {
        CUdeviceptr d = scratch(c, s, bytes, call);
        if (c->rank == root)
            copy_in(c, s, d, buf, bytes, call);
        NCCL_MUST(c, s, call, Broadcast, (DEV(d), DEV(d), n, nccl_type(dt), root, s->comm, s->stream));
        copy_out(c, s, buf, d, c->rank == root ? 0 : bytes, call);
    }
    leave(c, s, call);
    return COLL_OK;
}

/* A host comm's status, its message moved onto c. */
static coll_status from_host(coll_comm *c, nccl_state *s, coll_status st)
{
    if (st != COLL_OK)
        snprintf(c->err, sizeof c->err, "%s", s->host->err);
    return st;
}

static coll_status nccl_sync(coll_comm *c, const coll_call *call);

static coll_status nccl_barrier(coll_comm *c, const coll_call *call)
{
    nccl_state *s = c->impl;
    coll_status st = nccl_sync(c, call);
    if (st != COLL_OK)
        return st;
    return from_host(c, s, s->host->ops->barrier(s->host, call));
}

/* ---- point to point -------------------------------------------------------------------------- */

/* Device buffers: posts the waiting sends and, if recv, the receive, in one group; the copies
 * are freed in stream order after it. */
static void post_group(coll_comm *c, nccl_state *s, const void *sb, size_t sn, int dest, void *rb, size_t rn, int src,
                       coll_dtype dt, const coll_call *call)
{
    NCCL_MUST(c, s, call, GroupStart, ());
    for (int i = 0; i < s->n_sends; i++) {
        pending_send *p = &s->sends[i];
        NCCL_MUST(c, s, call, Send, (DEV(p->buf), p->n, nccl_type(p->dt), p->dest, s->comm, s->stream));
    }
    if (dest >= 0)
        NCCL_MUST(c, s, call, Send, (sb, sn, nccl_type(dt), dest, s->comm, s->stream));
    if (src >= 0)
        NCCL_MUST(c, s, call, Recv, (rb, rn, nccl_type(dt), src, s->comm, s->stream));
    NCCL_MUST(c, s, call, GroupEnd, ());
    for (int i = 0; i < s->n_sends; i++)
        CU_MUST(c, s, call, MemFreeAsync, (s->sends[i].buf, s->stream));
    s->n_sends = 0;
    track(c, s, call);
}

static coll_status nccl_isend(coll_comm *c, const void *buf, size_t n, coll_dtype dt, int dest, int tag,
                              const coll_call *call);

static coll_status nccl_sendrecv(coll_comm *c, int channel, const void *sb, size_t sn, int dest, void *rb, size_t rn,
                                 int src, coll_dtype dt, int tag, const coll_call *call)
{
    nccl_state *s = c->impl;
    if (!s->device_buffers)
        return from_host(c, s, s->host->ops->sendrecv(s->host, channel, sb, sn, dest, rb, rn, src, dt, tag, call));
    if (src < 0) /* a send alone waits for the next receive's group: it cannot block the stream */
        return nccl_isend(c, sb, sn, dt, dest, tag, call);
    enter(c, s, call);
    post_group(c, s, sb, sn, dest, rb, rn, src, dt, call);
    leave(c, s, call);
    return COLL_OK;
}

static coll_status nccl_isend(coll_comm *c, const void *buf, size_t n, coll_dtype dt, int dest, int tag,
                              const coll_call *call)
{
    nccl_state *s = c->impl;
    if (!s->device_buffers) {
        coll_comm *h = s->host;
        return from_host(c, s, h->ops->isend ? h->ops->isend(h, buf, n, dt, dest, tag, call)
                                             : h->ops->sendrecv(h, COLL_CH_USER, buf, n, dest, NULL, 0, -1, dt, tag, call));
    }
    if (s->n_sends == s->cap_sends) {
        int cap = s->cap_sends ? 2 * s->cap_sends : 16;
        pending_send *p = realloc(s->sends, sizeof *p * (size_t)cap);
        if (!p)
            return coll_set_error(c, COLL_ERR_NOMEM, "coll_send_async: out of memory");
        s->sends = p;
        s->cap_sends = cap;
    }
    size_t bytes = n * coll_dtype_size(dt);
    pending_send *p = &s->sends[s->n_sends];
    enter(c, s, call);
    CU_MUST(c, s, call, MemAllocAsync, (&p->buf, bytes, s->stream));
    CU_MUST(c, s, call, MemcpyDtoDAsync, (p->buf, (CUdeviceptr)(uintptr_t)buf, bytes, s->stream));
    leave(c, s, call);
    p->n = n;
    p->dt = dt;
    p->dest = dest;
    s->n_sends++;
    return COLL_OK;
}

static coll_status nccl_flush(coll_comm *c, const coll_call *call)
{
    nccl_state *s = c->impl;
    if (!s->device_buffers) {
        coll_comm *h = s->host;
        return from_host(c, s, h->ops->flush ? h->ops->flush(h, call) : COLL_OK);
    }
    enter(c, s, call);
    if (s->n_sends)
        post_group(c, s, NULL, 0, -1, NULL, 0, -1, COLL_F32, call);
    wait_all(c, s, call);
    leave(c, s, call);
    return COLL_OK;
}

static coll_status nccl_sync(coll_comm *c, const coll_call *call)
{
    nccl_state *s = c->impl;
    enter(c, s, call);
    wait_all(c, s, call);
    leave(c, s, call);
    return COLL_OK;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static nccl_state *state_new(coll_comm *self, coll_comm *host)
{
    nccl_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->self = self;
    s->host = host;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

/* Frees what s holds (after its operations completed or were abandoned) and its host comm. */
static void state_free(nccl_state *s, bool watched)
{
    if (!s)
        return;
    if (watched)
        unwatch(s);
    coll_gpu *g = s->g;
    if (g) {
        CUcontext saved = NULL;
        g->CtxGetCurrent(&saved);
        if (s->ctx)
            g->CtxSetCurrent(s->ctx);
        if (s->comm)
            g->CommDestroy(s->comm);
        for (int i = 0; i < s->n_sends; i++) /* never flushed: the comm is going away */
            g->MemFreeAsync(s->sends[i].buf, s->stream);
        for (int i = 0; i < s->count; i++)
            g->EventDestroy(s->ring[(s->head + i) % RING].ev);
        for (int i = 0; i < s->n_spare; i++)
            g->EventDestroy(s->spare[i]);
        if (s->scratch)
            g->MemFree(s->scratch);
        if (s->own_stream)
            g->StreamDestroy(s->stream);
        if (saved != s->ctx)
            g->CtxSetCurrent(saved);
        if (s->own_ctx)
            g->DevicePrimaryCtxRelease(s->dev);
        coll_gpu_close(g);
    }
    free(s->sends);
    pthread_mutex_destroy(&s->mu);
    coll_finalize(s->host);
    free(s);
}

/* setup_device's part in s's context: the context (and device), the stream, the UUID. */
static coll_status setup_in_context(nccl_state *s, const coll_options *opt, char *err, size_t cap)
{
    if (opt->context) {
        s->ctx = (CUcontext)opt->context;
        CU_TRY(s, err, cap, CtxSetCurrent, (s->ctx));
        CU_TRY(s, err, cap, CtxGetDevice, (&s->dev));
    } else {
        CU_TRY(s, err, cap, DeviceGet, (&s->dev, s->host->local_rank % s->g->device_count));
        CU_TRY(s, err, cap, DevicePrimaryCtxRetain, (&s->ctx, s->dev));
        s->own_ctx = true;
        CU_TRY(s, err, cap, CtxSetCurrent, (s->ctx));
    }
    if (opt->stream) {
        s->stream = (CUstream)opt->stream;
    } else {
        CU_TRY(s, err, cap, StreamCreate, (&s->stream, CU_STREAM_NON_BLOCKING));
        s->own_stream = true;
    }
    CU_TRY(s, err, cap, DeviceGetUuid, (&s->uuid, s->dev));
    return COLL_OK;
}

/* This rank's side of the setup: the libraries, its device, context and stream, and the
 * device's UUID; the thread's current context is put back. */
static coll_status setup_device(nccl_state *s, const coll_options *opt, char *err, size_t cap)
{
    s->g = coll_gpu_open(err, cap);
    if (!s->g)
        return COLL_ERR_UNSUPPORTED;
    s->device_buffers = opt->device_buffers;
    CUcontext saved = NULL;
    CU_TRY(s, err, cap, CtxGetCurrent, (&saved));
    coll_status st = setup_in_context(s, opt, err, cap);
    CU_TRY(s, err, cap, CtxSetCurrent, (saved));
    return st;
}

/* Every rank of host learns whether all succeeded (true). If not, err holds one line: a rank
 * that failed keeps its own message, the others get the lowest failing rank's, prefixed with
 * "rank R: ". */
static bool agree(coll_comm *host, bool ok, char *err, size_t cap)
{
    int32_t mine = ok ? host->size : host->rank, first = 0;
    if (coll_allreduce(host, &mine, &first, 1, COLL_I32, COLL_MIN) != COLL_OK) {
        snprintf(err, cap, "%s", coll_error_message(host));
        return false;
    }
    if (first == host->size)
        return true;
    int32_t text[512 / 4] = {0};
    if (host->rank == first)
        snprintf((char *)text, sizeof text, "%s", err);
    if (coll_broadcast(host, text, sizeof text / 4, COLL_I32, first) != COLL_OK) {
        snprintf(err, cap, "%s", coll_error_message(host));
        return false;
    }
    ((char *)text)[sizeof text - 1] = 0;
    if (ok)
        snprintf(err, cap, "rank %d: %.480s", (int)first, (const char *)text);
    return false;
}

/* ncclCommInitRank in s's context, timed by the watchdog. */
static coll_status init_rank(nccl_state *s, const coll_call *call, const ncclUniqueId *id, char *err, size_t cap)
{
    NCCL_TRY(s, call, err, cap, CommInitRank, (&s->comm, s->host->size, *id, s->host->rank));
    return COLL_OK;
}

/* The NCCL communicator over host's ranks: rank 0's unique id broadcast over host, then
 * ncclCommInitRank (timed by the watchdog). */
static coll_status bootstrap(nccl_state *s, double timeout_s, char *err, size_t cap)
{
    coll_comm *host = s->host;
    struct {
        int32_t ok;
        char msg[252];
        ncclUniqueId id;
    } b;
    memset(&b, 0, sizeof b);
    _Static_assert(sizeof b % 4 == 0, "broadcast as i32");
    char detail[64];
    snprintf(detail, sizeof detail, "%d ranks on GPU %d", host->size, (int)s->dev);
    coll_call call = {"ncclCommInitRank", detail, coll_now(), 0, 0};
    if (timeout_s > 0)
        call.deadline = call.start + timeout_s;
    if (host->rank == 0) {
        ncclResult_t r = s->g->GetUniqueId(&b.id);
        b.ok = r == ncclSuccess;
        if (!b.ok) {
            char m[200];
            coll_gpu_nccl_error(s->g, r, NULL, m, sizeof m);
            snprintf(b.msg, sizeof b.msg, "coll_nccl.c:%d: ncclGetUniqueId failed: %s", __LINE__, m);
        }
    }
    if (coll_broadcast(host, &b, sizeof b / 4, COLL_I32, 0) != COLL_OK) {
        snprintf(err, cap, "%s", coll_error_message(host));
        return COLL_ERR_BACKEND;
    }
    if (!b.ok) {
        b.msg[sizeof b.msg - 1] = 0;
        snprintf(err, cap, "%s%s", host->rank ? "rank 0: " : "", b.msg);
        return COLL_ERR_BACKEND;
    }
    CUcontext saved = NULL;
    CU_TRY(s, err, cap, CtxGetCurrent, (&saved));
    CU_TRY(s, err, cap, CtxSetCurrent, (s->ctx));
    coll_status st = init_rank(s, &call, &b.id, err, cap);
    CU_TRY(s, err, cap, CtxSetCurrent, (saved));
    return st;
}

/* Whether two ranks of host have the same GPU (by UUID); *a < *b name the first two. */
static coll_status shared_gpu(nccl_state *s, bool *shared, int *a, int *b, char *err, size_t cap)
{
    coll_comm *host = s->host;
    *shared = false;
    int32_t *all = malloc(sizeof s->uuid * (size_t)host->size);
    if (!all) {
        snprintf(err, cap, "out of memory");
        return COLL_ERR_NOMEM;
    }
    _Static_assert(sizeof(CUuuid) == 16, "a CUuuid is 4 i32");
    if (coll_allgather(host, &s->uuid, all, 4, COLL_I32) != COLL_OK) {
        snprintf(err, cap, "%s", coll_error_message(host));
        free(all);
        return COLL_ERR_BACKEND;
    }
    for (int i = 0; i < host->size && !*shared; i++)
        for (int j = i + 1; j < host->size && !*shared; j++)
            if (memcmp(all + 4 * i, all + 4 * j, 16) == 0)
                *shared = true, *a = i, *b = j;
    free(all);
    return COLL_OK;
}

coll_status coll_nccl_init(coll_comm *c, const coll_options *opt, bool fallback, coll_error *err)
{
    char *e = err->message;
    size_t cap = sizeof err->message;
    coll_launch l;
    if (!coll_launch_detect(&l, err))
        return err->code;
    /* the host comm over the same ranks */
    coll_comm *host = calloc(1, sizeof *host);
    if (!host) {
        snprintf(e, cap, "coll: out of memory");
        return COLL_ERR_NOMEM;
    }
    *host = *c;
    host->backend = l.size > 1 ? COLL_BACKEND_MPI : COLL_BACKEND_SINGLE;
    coll_status st = l.size > 1 ? coll_mpi_init(host, err) : coll_single_init(host, err);
    if (st != COLL_OK) {
        free(host);
        return st;
    }
    host->caps = host->ops->caps;
    nccl_state *s = state_new(c, host);
    if (!s) {
        coll_finalize(host);
        snprintf(e, cap, "coll: out of memory");
        return COLL_ERR_NOMEM;
    }
    c->rank = host->rank, c->size = host->size;
    c->world_rank = host->world_rank, c->world_size = host->world_size;
    c->local_rank = host->local_rank, c->local_size = host->local_size;

    char why[512] = "";
    st = setup_device(s, opt, why, sizeof why);
    bool shared = false;
    int ra = 0, rb = 0;
    if (agree(host, st == COLL_OK, why, sizeof why)) {
        st = shared_gpu(s, &shared, &ra, &rb, why, sizeof why);
        if (st == COLL_OK && shared && fallback) {
            /* NCCL refuses two ranks on one GPU: the collectives go over the host comm */
            if (host->rank == 0)
                fprintf(stderr,
                        "loom: coll: ranks %d and %d share one GPU: collectives go through %s (NCCL needs a GPU "
                        "per rank)\n",
                        ra, rb, coll_backend_name(host->backend));
            s->host = NULL;
            state_free(s, false);
            *c = *host;
            coll_mpi_rehome(host, c);
            free(host);
            return COLL_OK;
        }
        if (st == COLL_OK && shared) {
            snprintf(why, sizeof why,
                     "ranks %d and %d share one GPU, which NCCL refuses (\"invalid usage\"): give each rank its own "
                     "GPU (CUDA_VISIBLE_DEVICES), or use LOOM_COLL=mpi",
                     ra, rb);
            st = COLL_ERR_UNSUPPORTED;
        }
        if (st == COLL_OK && !watch(s, why, sizeof why))
            st = COLL_ERR_BACKEND;
        bool watched = st == COLL_OK;
        if (st == COLL_OK)
            st = bootstrap(s, c->timeout_s, why, sizeof why);
        if (!agree(host, st == COLL_OK, why, sizeof why) && st == COLL_OK)
            st = COLL_ERR_BACKEND;
        if (st != COLL_OK) {
            snprintf(e, cap, "coll: NCCL backend: %.480s", why);
            state_free(s, watched);
            return st;
        }
    } else {
        snprintf(e, cap, "coll: NCCL backend: %.480s", why);
        state_free(s, false);
        return st != COLL_OK ? st : COLL_ERR_BACKEND;
    }
    c->ops = &coll_nccl_ops;
    c->backend = COLL_BACKEND_NCCL;
    c->impl = s;
    c->caps = s->device_buffers ? COLL_CAP_DEVICE_BUFFERS | COLL_CAP_ASYNC : 0;
    c->stream = s->device_buffers ? (void *)s->stream : NULL;
    return COLL_OK;
}

static coll_status nccl_split(coll_comm *c, int color, int key, coll_comm *out)
{
    nccl_state *s = c->impl;
    coll_comm *hsub = NULL;
    coll_status st = coll_split(s->host, color, key, &hsub);
    if (st != COLL_OK)
        return from_host(c, s, st);
    if (!hsub)
        return COLL_OK;
    nccl_state *n = state_new(out, hsub);
    if (!n) {
        coll_finalize(hsub);
        return coll_set_error(c, COLL_ERR_NOMEM, "coll_split: out of memory");
    }
    char why[512] = "";
    n->g = coll_gpu_open(why, sizeof why); /* the parent holds it: cannot fail */
    n->dev = s->dev, n->ctx = s->ctx, n->stream = s->stream, n->uuid = s->uuid;
    n->device_buffers = s->device_buffers;
    st = n->g && watch(n, why, sizeof why) ? COLL_OK : COLL_ERR_BACKEND;
    bool watched = st == COLL_OK;
    if (st == COLL_OK)
        st = bootstrap(n, c->timeout_s, why, sizeof why);
    if (st != COLL_OK) {
        state_free(n, watched);
        return coll_set_error(c, st, "coll_split: NCCL backend: %.470s", why);
    }
    out->rank = hsub->rank, out->size = hsub->size;
    out->impl = n;
    return COLL_OK;
}

static void nccl_destroy(coll_comm *c, bool world)
{
    nccl_state *s = c->impl;
    if (!s)
        return;
    if (s->g && s->comm && s->count > 0) { /* complete what is in flight, within its deadlines */
        coll_call call = {"finalize", "what was enqueued", coll_now(), 0, c->seq};
        enter(c, s, &call);
        wait_all(c, s, &call);
        leave(c, s, &call);
    }
    s->host->world = world;
    state_free(s, true);
    c->impl = NULL;
}

static _Noreturn void nccl_abort_job(coll_comm *c, int code)
{
    nccl_state *s = c->impl;
    pthread_mutex_lock(&fail_lock); /* the watchdog may be ending the process already */
    if (s && s->comm)
        s->g->CommAbort(s->comm);
    if (s && s->host)
        s->host->ops->abort_job(s->host, code);
    fflush(stderr);
    _Exit(code ? code : 1);
}

const coll_backend_ops coll_nccl_ops = {
    .name = "nccl",
    .caps = 0, /* per comm: coll_comm.caps */
    .allreduce = nccl_allreduce,
    .allgather = nccl_allgather,
    .reduce_scatter = nccl_reduce_scatter,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .sendrecv = nccl_sendrecv,
    .isend = nccl_isend,
    .flush = nccl_flush,
    .split = nccl_split,
    .destroy = nccl_destroy,
    .abort_job = nccl_abort_job,
    .sync = nccl_sync,
};
