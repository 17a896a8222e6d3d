/* coll.c — the front of the collectives layer: coll_init picks a backend, and every public
 * operation is checked here (dtype, op, ranks, tags, buffer overlap), numbered, given its
 * deadline and a description for messages, then handed to the backend's table
 * (coll_impl.h). Count 0 and one-rank communicators never reach a backend. Also the shared
 * helpers: the failure messages that end a job, local reduction, dtype/op names.
 */
#include "collectives/coll_impl.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const dtype_names[] = {"f32", "f64", "i32", "i64"};
static const size_t dtype_sizes[] = {4, 8, 4, 8};
static const char *const op_names[] = {"sum", "max", "min"};
static const char *const backend_names[] = {"auto", "single", "mpi", "nccl"};
static const char *const algo_names[] = {"backend", "ring", "tree"};

size_t coll_dtype_size(coll_dtype dt) { return (unsigned)dt < COLL_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
const char *coll_dtype_name(coll_dtype dt) { return (unsigned)dt < COLL_DTYPE_COUNT ? dtype_names[dt] : "?"; }
const char *coll_op_name(coll_op op) { return (unsigned)op < COLL_OP_COUNT ? op_names[op] : "?"; }
const char *coll_backend_name(coll_backend b) { return (unsigned)b <= COLL_BACKEND_NCCL ? backend_names[b] : "?"; }
const char *coll_algo_name(coll_algo a) { return (unsigned)a <= COLL_ALGO_TREE ? algo_names[a] : "?"; }

bool coll_backend_parse(const char *s, coll_backend *out)
{
    for (int i = 0; i <= COLL_BACKEND_NCCL; i++)
        if (s && strcmp(s, backend_names[i]) == 0) {
            *out = (coll_backend)i;
            return true;
        }
    return false;
}

bool coll_algo_parse(const char *s, coll_algo *out)
{
    for (int i = 0; i <= COLL_ALGO_TREE; i++)
        if (s && strcmp(s, algo_names[i]) == 0) {
            *out = (coll_algo)i;
            return true;
        }
    return false;
}

const char *coll_status_name(coll_status s)
{
    switch (s) {
    case COLL_OK: return "ok";
    case COLL_ERR_ARG: return "invalid argument";
    case COLL_ERR_UNSUPPORTED: return "unsupported";
    case COLL_ERR_NOMEM: return "out of memory";
    case COLL_ERR_BACKEND: return "backend error";
    case COLL_ERR_DEADLOCK: return "deadlock";
    }
    return "?";
}

/* ---- helpers shared with the backends ------------------------------------------------------ */

double coll_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void coll_poll_backoff(unsigned *spins)
{
    unsigned s = (*spins)++;
    if (s < 64)
        return;
    if (s < 256) {
        sched_yield(); /* oversubscribed ranks let the one we wait for run */
        return;
    }
    long ns = 10000L << (s - 256 < 7 ? s - 256 : 7); /* 10 µs .. 1.28 ms */
    if (ns > 1000000L)
        ns = 1000000L;
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

coll_status coll_set_error(coll_comm *c, coll_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

void coll_describe_rank(const coll_comm *c, char *buf, size_t cap)
{
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(buf, cap, "loom: coll: rank %d/%d of '%s' (world rank %d/%d, host %s, pid %ld)",
             c->rank, c->size, c->name, c->world_rank, c->world_size, host, (long)getpid());
}

void coll_report_timeout(coll_comm *c, const coll_call *call)
{
    char who[256];
    coll_describe_rank(c, who, sizeof who);
    fprintf(stderr,
            "%s: %s #%lu (%s) did not complete within %.1f s; aborting the job.\n"
            "---> HINT: another rank of '%s' is stuck, dead, or called a different collective "
            "(every rank must call the same collectives in the same order); set "
            "LOOM_COLL_TIMEOUT=seconds to wait longer.\n",
            who, call->op, call->seq, call->detail, c->timeout_s, c->name);
    fflush(stderr);
}

void coll_report_lib(coll_comm *c, const coll_call *call, const char *fn, const char *file, int line,
                     const char *libmsg, const char *hint)
{
    char who[256];
    coll_describe_rank(c, who, sizeof who);
    const char *base = strrchr(file, '/');
    fprintf(stderr, "%s: %s:%d: %s failed: %s (during %s #%lu, %s); aborting the job.\n", who,
            base ? base + 1 : file, line, fn, libmsg, call ? call->op : "?", call ? call->seq : 0,
            call ? call->detail : "");
    if (hint)
        fprintf(stderr, "---> HINT: %s\n", hint);
    fflush(stderr);
}

_Noreturn void coll_fail_timeout(coll_comm *c, const coll_call *call)
{
    coll_report_timeout(c, call);
    c->ops->abort_job(c, 1);
    _Exit(1);
}

_Noreturn void coll_fail_lib(coll_comm *c, const coll_call *call, const char *fn,
                             const char *file, int line, const char *libmsg, const char *hint)
{
    coll_report_lib(c, call, fn, file, line, libmsg, hint);
    c->ops->abort_job(c, 1);
    _Exit(1);
}

_Noreturn void coll_abort(coll_comm *c, int code, const char *message)
{
    char who[256];
    coll_describe_rank(c, who, sizeof who);
    fprintf(stderr, "%s: %s; aborting the job.\n", who, message ? message : "abort");
    fflush(stderr);
    c->ops->abort_job(c, code);
    _Exit(code ? code : 1);
}

#define REDUCE_LOOP(T)                                                        \
    do {                                                                      \
        T *d = dst;                                                           \
        const T *s = src;                                                     \
        switch (op) {                                                         \
        case COLL_SUM: for (size_t i = 0; i < n; i++) d[i] = d[i] + s[i]; break; \
        case COLL_MAX: for (size_t i = 0; i < n; i++) d[i] = s[i] > d[i] ? s[i] : d[i]; break; \
        case COLL_MIN: for (size_t i = 0; i < n; i++) d[i] = s[i] < d[i] ? s[i] : d[i]; break; \
        default: break;                                                       \
        }                                                                     \
    } while (0)

void coll_reduce_local(void *dst, const void *src, size_t n, coll_dtype dt, coll_op op)
{
    switch (dt) {
    case COLL_F32: REDUCE_LOOP(float); break;
    case COLL_F64: REDUCE_LOOP(double); break;
    /* integer sums wrap (two's complement) as MPI's do: computed unsigned, no UB */
    case COLL_I32:
        if (op == COLL_SUM) {
            uint32_t *d = dst;
            const uint32_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] += s[i];
        } else {
            REDUCE_LOOP(int32_t);
        }
        break;
    case COLL_I64:
        if (op == COLL_SUM) {
            uint64_t *d = dst;
            const uint64_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] += s[i];
        } else {
            REDUCE_LOOP(int64_t);
        }
        break;
    default: break;
    }
}

/* ---- setup ---------------------------------------------------------------------------------- */

static double env_timeout(void)
{
    const char *s = getenv("LOOM_COLL_TIMEOUT");
    if (s && *s) {
        char *end;
        errno = 0;
        double t = strtod(s, &end);
        if (!*end && errno == 0)
            return t > 0 ? t : -1;
        fprintf(stderr, "loom: coll: LOOM_COLL_TIMEOUT='%s' is not a number of seconds; using %.0f\n",
                s, COLL_DEFAULT_TIMEOUT_S);
    }
    return COLL_DEFAULT_TIMEOUT_S;
}

/* COLL_BACKEND_AUTO's choice before any library is touched: $LOOM_COLL, else NCCL for GPU
 * ranks (*fallback: MPI where two ranks share a GPU), else MPI for more than one rank. */
static bool choose_backend(const coll_options *opt, coll_backend *b, bool *fallback, coll_error *err)
{
    coll_launch l;
    if (!coll_launch_detect(&l, err))
        return false;
    const char *env = getenv("LOOM_COLL");
    *fallback = false;
    if (env && *env && strcmp(env, "auto") != 0) {
        if (strcmp(env, "mpi") == 0)
            *b = COLL_BACKEND_MPI;
        else if (strcmp(env, "nccl") == 0)
            *b = COLL_BACKEND_NCCL;
        else {
            err->code = COLL_ERR_ARG;
            snprintf(err->message, sizeof err->message,
                     "coll: LOOM_COLL='%s' is not a collectives backend: choose mpi or nccl (or leave it unset: "
                     "nccl for --target cuda ranks, else mpi)",
                     env);
            return false;
        }
        return true;
    }
    if (opt && opt->gpu) {
        *b = COLL_BACKEND_NCCL;
        *fallback = true;
        return true;
    }
    *b = l.size > 1 ? COLL_BACKEND_MPI : COLL_BACKEND_SINGLE;
    return true;
}

coll_comm *coll_init(coll_backend b, const coll_options *opt, coll_error *err)
{
    coll_error scratch;
    if (!err)
        err = &scratch;
    err->code = COLL_OK;
    err->message[0] = 0;
    bool fallback = false;
    if (b == COLL_BACKEND_AUTO && !choose_backend(opt, &b, &fallback, err))
        return NULL;
    if (b != COLL_BACKEND_SINGLE && b != COLL_BACKEND_MPI && b != COLL_BACKEND_NCCL) {
        err->code = COLL_ERR_ARG;
        snprintf(err->message, sizeof err->message, "coll: unknown backend %d", (int)b);
        return NULL;
    }
    coll_comm *c = calloc(1, sizeof *c);
    if (!c) {
        err->code = COLL_ERR_NOMEM;
        snprintf(err->message, sizeof err->message, "coll: out of memory");
        return NULL;
    }
    c->backend = b;
    c->world = true;
    c->local_size = 1;
    snprintf(c->name, sizeof c->name, "world");
    c->timeout_s = opt && opt->timeout_s != 0 ? (opt->timeout_s > 0 ? opt->timeout_s : -1) : env_timeout();
    c->algo = opt ? opt->allreduce : COLL_ALGO_BACKEND;
    coll_options none = {0};
    coll_status st = b == COLL_BACKEND_MPI    ? coll_mpi_init(c, err)
                     : b == COLL_BACKEND_NCCL ? coll_nccl_init(c, opt ? opt : &none, fallback, err)
                                              : coll_single_init(c, err);
    if (st != COLL_OK) {
        err->code = st;
        free(c);
        return NULL;
    }
    if (c->backend != COLL_BACKEND_NCCL)
        c->caps = c->ops->caps;
    return c;
}

void coll_finalize(coll_comm *c)
{
    if (!c)
        return;
    c->ops->destroy(c, c->world);
    free(c);
}

coll_status coll_split(coll_comm *c, int color, int key, coll_comm **out)
{
    *out = NULL;
    if (color < 0 && color != COLL_UNDEFINED)
        return coll_set_error(c, COLL_ERR_ARG, "coll_split: color %d is negative (use COLL_UNDEFINED)", color);
    coll_comm *n = calloc(1, sizeof *n);
    if (!n)
        return coll_set_error(c, COLL_ERR_NOMEM, "coll_split: out of memory");
    n->ops = c->ops;
    n->backend = c->backend;
    n->world_rank = c->world_rank;
    n->world_size = c->world_size;
    n->local_rank = c->local_rank;
    n->local_size = c->local_size;
    n->timeout_s = c->timeout_s;
    n->algo = c->algo;
    n->caps = c->caps;
    n->stream = c->stream;
    n->observer = c->observer;
    n->observer_ctx = c->observer_ctx;
    memcpy(n->name, c->name, sizeof n->name);
    c->seq++;
    coll_status st = c->ops->split(c, color, key, n);
    if (st != COLL_OK || color == COLL_UNDEFINED) {
        free(n);
        return st;
    }
    *out = n;
    return COLL_OK;
}

int coll_rank(const coll_comm *c) { return c->rank; }
int coll_size(const coll_comm *c) { return c->size; }
int coll_world_rank(const coll_comm *c) { return c->world_rank; }
int coll_local_rank(const coll_comm *c) { return c->local_rank; }
int coll_local_size(const coll_comm *c) { return c->local_size; }
coll_backend coll_backend_of(const coll_comm *c) { return c->backend; }
unsigned coll_caps(const coll_comm *c) { return c->caps; }
void *coll_stream(const coll_comm *c) { return c->stream; }
const char *coll_name(const coll_comm *c) { return c->name; }
void coll_set_name(coll_comm *c, const char *name) { snprintf(c->name, sizeof c->name, "%s", name ? name : ""); }
void coll_set_timeout(coll_comm *c, double seconds) { c->timeout_s = seconds > 0 ? seconds : -1; }
double coll_timeout(const coll_comm *c) { return c->timeout_s > 0 ? c->timeout_s : 0; }
void coll_set_allreduce_algo(coll_comm *c, coll_algo a) { c->algo = a; }
coll_algo coll_allreduce_algo(const coll_comm *c) { return c->algo; }
const char *coll_error_message(const coll_comm *c) { return c->err; }

void coll_set_observer(coll_comm *c, coll_observer fn, void *ctx)
{
    c->observer = fn;
    c->observer_ctx = ctx;
}

/* st, after telling the observer (if any) that the operation of call is done. */
static coll_status observed(coll_comm *c, const coll_call *call, int peer, int tag, size_t bytes, coll_status st)
{
    if (c->observer && st == COLL_OK) {
        coll_event ev = {call->op, c->name, c->rank, c->size, peer, tag, bytes, call->start, coll_now()};
        c->observer(c->observer_ctx, &ev);
    }
    return st;
}

/* ---- argument checks -------------------------------------------------------------------- */

static coll_call begin(coll_comm *c, const char *op, char *detail)
{
    coll_call call = {op, detail, coll_now(), 0, ++c->seq};
    if (c->timeout_s > 0)
        call.deadline = call.start + c->timeout_s;
    return call;
}

static bool overlap(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}

static coll_status check_common(coll_comm *c, const char *fn, coll_dtype dt, size_t count,
                                const void *b1, const void *b2)
{
    c->err[0] = 0;
    if ((unsigned)dt >= COLL_DTYPE_COUNT)
        return coll_set_error(c, COLL_ERR_ARG, "%s: unknown dtype %d", fn, (int)dt);
    if (count > SIZE_MAX / 16 / (size_t)c->size)
        return coll_set_error(c, COLL_ERR_ARG, "%s: count %zu is too large", fn, count);
    if (count && (!b1 || !b2))
        return coll_set_error(c, COLL_ERR_ARG, "%s: NULL buffer with count %zu", fn, count);
    return COLL_OK;
}

static coll_status check_op(coll_comm *c, const char *fn, coll_op op)
{
    if ((unsigned)op >= COLL_OP_COUNT)
        return coll_set_error(c, COLL_ERR_ARG, "%s: unknown reduction op %d", fn, (int)op);
    return COLL_OK;
}

static coll_status check_peer(coll_comm *c, const char *fn, const char *what, int r)
{
    if (r < 0 || r >= c->size)
        return coll_set_error(c, COLL_ERR_ARG, "%s: %s %d is not a rank of '%s' (size %d)", fn,
                              what, r, c->name, c->size);
    return COLL_OK;
}

static coll_status check_tag(coll_comm *c, const char *fn, int tag)
{
    if (tag < 0 || tag > 32767) /* MPI promises tags up to 32767 */
        return coll_set_error(c, COLL_ERR_ARG, "%s: tag %d is outside [0, 32767]", fn, tag);
    return COLL_OK;
}

/* Whether c takes device pointers: then no memcpy here, every operation goes to the backend. */
static bool device_buffers(const coll_comm *c) { return (c->caps & COLL_CAP_DEVICE_BUFFERS) != 0; }

#define TRY(x)                     \
    do {                           \
        coll_status st_ = (x);     \
        if (st_ != COLL_OK)        \
            return st_;            \
    } while (0)

/* ---- collectives ----------------------------------------------------------------------------- */

coll_status coll_allreduce(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt, coll_op op)
{
    TRY(check_common(c, "coll_allreduce", dt, n, s, r));
    TRY(check_op(c, "coll_allreduce", op));
    size_t bytes = n * coll_dtype_size(dt);
    if (s != r && overlap(s, bytes, r, bytes))
        return coll_set_error(c, COLL_ERR_ARG, "coll_allreduce: send and receive buffers overlap");
    char detail[128];
    snprintf(detail, sizeof detail, "%s %s, %zu elements, %s", coll_dtype_name(dt),
             coll_op_name(op), n, coll_algo_name(c->algo));
    if (device_buffers(c) && c->algo != COLL_ALGO_BACKEND)
        return coll_set_error(c, COLL_ERR_UNSUPPORTED,
                              "coll_allreduce: the %s algorithm needs host buffers; '%s' takes device buffers "
                              "(use --allreduce backend: NCCL picks its own, NCCL_ALGO=Ring|Tree chooses)",
                              coll_algo_name(c->algo), c->name);
    coll_call call = begin(c, "allreduce", detail);
    if (n == 0)
        return COLL_OK;
    if (c->size == 1 && !device_buffers(c)) {
        if (s != r)
            memcpy(r, s, bytes);
        return COLL_OK;
    }
    if (c->algo == COLL_ALGO_RING || c->algo == COLL_ALGO_TREE)
        return observed(c, &call, -1, -1, bytes, coll_algo_allreduce(c, s, r, n, dt, op, c->algo, &call));
    return observed(c, &call, -1, -1, bytes, c->ops->allreduce(c, s, r, n, dt, op, &call));
}

coll_status coll_allgather(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt)
{
    TRY(check_common(c, "coll_allgather", dt, n, s, r));
    size_t bytes = n * coll_dtype_size(dt);
    const char *own = (const char *)r + (size_t)c->rank * bytes;
    if (s != own && overlap(s, bytes, r, bytes * (size_t)c->size))
        return coll_set_error(c, COLL_ERR_ARG,
                              "coll_allgather: send buffer overlaps the receive buffer other than "
                              "at this rank's block");
    char detail[128];
    snprintf(detail, sizeof detail, "%s, %zu elements per rank", coll_dtype_name(dt), n);
    coll_call call = begin(c, "allgather", detail);
    if (n == 0)
        return COLL_OK;
    if (c->size == 1 && !device_buffers(c)) {
        if (s != r)
            memcpy(r, s, bytes);
        return COLL_OK;
    }
    return observed(c, &call, -1, -1, bytes, c->ops->allgather(c, s, r, n, dt, &call));
}

coll_status coll_reduce_scatter(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt, coll_op op)
{
    TRY(check_common(c, "coll_reduce_scatter", dt, n, s, r));
    TRY(check_op(c, "coll_reduce_scatter", op));
    size_t bytes = n * coll_dtype_size(dt);
    const char *own = (const char *)s + (size_t)c->rank * bytes;
    if (r != own && overlap(s, bytes * (size_t)c->size, r, bytes))
        return coll_set_error(c, COLL_ERR_ARG,
                              "coll_reduce_scatter: receive buffer overlaps the send buffer other than "
                              "at this rank's block");
    char detail[128];
    snprintf(detail, sizeof detail, "%s %s, %zu elements per rank", coll_dtype_name(dt),
             coll_op_name(op), n);
    coll_call call = begin(c, "reduce_scatter", detail);
    if (n == 0)
        return COLL_OK;
    if (c->size == 1 && !device_buffers(c)) {
        if (s != r)
            memcpy(r, s, bytes);
        return COLL_OK;
    }
    return observed(c, &call, -1, -1, bytes * (size_t)c->size, c->ops->reduce_scatter(c, s, r, n, dt, op, &call));
}

coll_status coll_broadcast(coll_comm *c, void *buf, size_t n, coll_dtype dt, int root)
{
    TRY(check_common(c, "coll_broadcast", dt, n, buf, buf));
    TRY(check_peer(c, "coll_broadcast", "root", root));
    char detail[128];
    snprintf(detail, sizeof detail, "%s, %zu elements, root %d", coll_dtype_name(dt), n, root);
    coll_call call = begin(c, "broadcast", detail);
    if (n == 0 || c->size == 1)
        return COLL_OK;
    return observed(c, &call, root, -1, n * coll_dtype_size(dt), c->ops->broadcast(c, buf, n, dt, root, &call));
}

coll_status coll_barrier(coll_comm *c)
{
    c->err[0] = 0;
    coll_call call = begin(c, "barrier", "");
    if (c->size == 1)
        return COLL_OK;
    return observed(c, &call, -1, -1, 0, c->ops->barrier(c, &call));
}

/* ---- point to point -------------------------------------------------------------------------- */

/* A send's argument checks and its call (detail: caller storage for the call's text). */
static coll_status send_call(coll_comm *c, const char *fn, const void *buf, size_t n, coll_dtype dt, int dest,
                             int tag, char *detail, size_t cap, coll_call *call)
{
    TRY(check_common(c, fn, dt, n, buf, buf));
    TRY(check_peer(c, fn, "dest", dest));
    TRY(check_tag(c, fn, tag));
    snprintf(detail, cap, "%s, %zu elements to rank %d, tag %d", coll_dtype_name(dt), n, dest, tag);
    *call = begin(c, "send", detail);
    return COLL_OK;
}

coll_status coll_send(coll_comm *c, const void *buf, size_t n, coll_dtype dt, int dest, int tag)
{
    char detail[128];
    coll_call call;
    TRY(send_call(c, "coll_send", buf, n, dt, dest, tag, detail, sizeof detail, &call));
    if (n == 0)
        return COLL_OK;
    return observed(c, &call, dest, tag, n * coll_dtype_size(dt),
                    c->ops->sendrecv(c, COLL_CH_USER, buf, n, dest, NULL, 0, -1, dt, tag, &call));
}

coll_status coll_send_async(coll_comm *c, const void *buf, size_t n, coll_dtype dt, int dest, int tag)
{
    if (!c->ops->isend)
        return coll_send(c, buf, n, dt, dest, tag);
    char detail[128];
    coll_call call;
    TRY(send_call(c, "coll_send_async", buf, n, dt, dest, tag, detail, sizeof detail, &call));
    if (n == 0)
        return COLL_OK;
    return observed(c, &call, dest, tag, n * coll_dtype_size(dt), c->ops->isend(c, buf, n, dt, dest, tag, &call));
}

coll_status coll_allreduce_start(coll_comm *c, void *buf, size_t n, coll_dtype dt, coll_op op)
{
    if (!c->ops->iallreduce || c->algo == COLL_ALGO_RING || c->algo == COLL_ALGO_TREE || device_buffers(c))
        return coll_allreduce(c, buf, buf, n, dt, op);
    TRY(check_common(c, "coll_allreduce_start", dt, n, buf, buf));
    TRY(check_op(c, "coll_allreduce_start", op));
    char detail[128];
    snprintf(detail, sizeof detail, "%s %s, %zu elements, started", coll_dtype_name(dt), coll_op_name(op), n);
    coll_call call = begin(c, "allreduce", detail);
    if (n == 0 || c->size == 1)
        return COLL_OK;
    return observed(c, &call, -1, -1, n * coll_dtype_size(dt), c->ops->iallreduce(c, buf, n, dt, op, &call));
}

void coll_progress(coll_comm *c)
{
    if (c->ops->progress)
        c->ops->progress(c);
}

coll_status coll_allreduce_wait(coll_comm *c)
{
    c->err[0] = 0;
    if (!c->ops->wait_allreduces)
        return COLL_OK;
    coll_call call = begin(c, "allreduce", "waiting for those started");
    return c->ops->wait_allreduces(c, &call);
}

coll_status coll_flush(coll_comm *c)
{
    c->err[0] = 0;
    coll_call call = begin(c, "flush of started sends", "");
    if (!c->ops->flush)
        return COLL_OK;
    coll_status st = c->ops->flush(c, &call);
    call.op = "flush";
    return observed(c, &call, -1, -1, 0, st);
}

coll_status coll_recv(coll_comm *c, void *buf, size_t n, coll_dtype dt, int src, int tag)
{
    TRY(check_common(c, "coll_recv", dt, n, buf, buf));
    TRY(check_peer(c, "coll_recv", "src", src));
    TRY(check_tag(c, "coll_recv", tag));
    char detail[128];
    snprintf(detail, sizeof detail, "%s, %zu elements from rank %d, tag %d", coll_dtype_name(dt),
             n, src, tag);
    coll_call call = begin(c, "recv", detail);
    if (n == 0)
        return COLL_OK;
    return observed(c, &call, src, tag, n * coll_dtype_size(dt),
                    c->ops->sendrecv(c, COLL_CH_USER, NULL, 0, -1, buf, n, src, dt, tag, &call));
}

coll_status coll_sendrecv(coll_comm *c, const void *s, size_t sn, int dest, void *r, size_t rn,
                          int src, coll_dtype dt, int tag)
{
    TRY(check_common(c, "coll_sendrecv", dt, sn, s, s));
    TRY(check_common(c, "coll_sendrecv", dt, rn, r, r));
    TRY(check_peer(c, "coll_sendrecv", "dest", dest));
    TRY(check_peer(c, "coll_sendrecv", "src", src));
    TRY(check_tag(c, "coll_sendrecv", tag));
    size_t es = coll_dtype_size(dt);
    if (overlap(s, sn * es, r, rn * es))
        return coll_set_error(c, COLL_ERR_ARG, "coll_sendrecv: send and receive buffers overlap");
    char detail[160];
    snprintf(detail, sizeof detail, "%s, %zu elements to rank %d, %zu from rank %d, tag %d",
             coll_dtype_name(dt), sn, dest, rn, src, tag);
    coll_call call = begin(c, "sendrecv", detail);
    if (sn == 0 && rn == 0)
        return COLL_OK;
    return observed(c, &call, dest, tag, sn * es,
                    c->ops->sendrecv(c, COLL_CH_USER, s, sn, sn ? dest : -1, r, rn, rn ? src : -1, dt, tag, &call));
}

coll_status coll_sync(coll_comm *c)
{
    c->err[0] = 0;
    if (!c->ops->sync) /* host backends complete every operation before returning */
        return COLL_OK;
    coll_call call = begin(c, "sync", "what was enqueued");
    return c->ops->sync(c, &call);
}
