/* fake_cuda_nccl.c — a stand-in CUDA driver and NCCL in one shared library
 * (libloom_fake_cuda_nccl.so), so that the NCCL backend (collectives/coll_nccl.c) runs in
 * `make test` on machines without a GPU: LOOM_LIBCUDA and LOOM_LIBNCCL both point at it.
 *
 * It implements the entry points loom resolves, with cuda.h's and nccl.h's own prototypes (a
 * definition that differs from the header does not compile). "Device memory" is host memory
 * (cuMemAlloc is malloc, copies are memcpy), streams run everything at once, in order. NCCL's
 * collectives and point-to-point messages between the ranks of a communicator go through a
 * POSIX shared-memory segment named in the ncclUniqueId (each rank writes its contribution to
 * its slot; barriers; each reads what it needs), so several processes under mpirun form real
 * communicators; a rank's messages to a peer queue in a FIFO per ordered pair, matched by
 * order as NCCL's are. Inside ncclGroupStart/End, sends run before receives.
 *
 * What the tests steer, by environment variable:
 *   LOOM_FAKE_CUDA_DEVICES=N    devices per process (default 1; 0: cuInit says no device).
 *                               Device d's UUID is the same in every process, so two ranks on
 *                               device 0 "share a GPU" as two real ranks would.
 *   LOOM_FAKE_NCCL_HANG=K       the K-th NCCL operation of the process (1-based) never
 *                               completes: it does nothing, and events recorded on its stream
 *                               afterwards stay CUDA_ERROR_NOT_READY until ncclCommAbort.
 *   LOOM_FAKE_NCCL_HANG_INIT=1  ncclCommInitRank never returns (sleeps until killed).
 *   LOOM_FAKE_NCCL_ASYNC_ERROR=K  after the K-th operation, ncclCommGetAsyncError reports
 *                               ncclRemoteError.
 * A wait on peers gives up after 120 s with a message (a test that would hang fails instead).
 * Not part of libloom: tests only.
 */
#include <cuda.h>
#include <nccl.h>

#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the driver ------------------------------------------------------------------------------ */

struct CUctx_st {
    int device;
};
struct CUstream_st {
    bool stuck; /* an operation on it hangs: later work never completes */
};
struct CUevent_st {
    struct CUstream_st *stream;
    bool pending;
};

enum { MAX_DEVICES = 16 };
static struct CUctx_st contexts[MAX_DEVICES];
static _Thread_local CUcontext current;
static int n_devices = -1;

static int env_int(const char *name, int dflt)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

EXPORT CUresult cuInit(unsigned int flags)
{
    (void)flags;
    n_devices = env_int("LOOM_FAKE_CUDA_DEVICES", 1);
    if (n_devices > MAX_DEVICES)
        n_devices = MAX_DEVICES;
    for (int i = 0; i < MAX_DEVICES; i++)
        contexts[i].device = i;
    return n_devices > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

static CUresult ready(void) { return n_devices < 0 ? CUDA_ERROR_NOT_INITIALIZED : CUDA_SUCCESS; }

EXPORT CUresult cuDriverGetVersion(int *v)
{
    *v = 13000;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *n)
{
    *n = n_devices < 0 ? 0 : n_devices;
    return ready();
}

EXPORT CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
    if (ready() != CUDA_SUCCESS)
        return ready();
    if (ordinal < 0 || ordinal >= n_devices)
        return CUDA_ERROR_INVALID_DEVICE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d)
{
    snprintf(name, (size_t)len, "loom fake GPU %d", (int)d);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem(size_t *bytes, CUdevice d)
{
    (void)d;
    *bytes = (size_t)1 << 30;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
    (void)d;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 1; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
    default: *v = 1024; break;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetUuid(CUuuid *u, CUdevice d)
{
    memset(u, 0, sizeof *u);
    snprintf(u->bytes, sizeof u->bytes, "loomfake-gpu%02d", (int)d);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
    if (d < 0 || d >= n_devices)
        return CUDA_ERROR_INVALID_DEVICE;
    *c = &contexts[d];
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice d)
{
    return d >= 0 && d < n_devices ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext c)
{
    current = c;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext *c)
{
    *c = current;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetDevice(CUdevice *d)
{
    if (!current)
        return CUDA_ERROR_INVALID_CONTEXT;
    *d = current->device;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void) { return current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }

EXPORT CUresult cuStreamCreate(CUstream *s, unsigned int flags)
{
    (void)flags;
    if (!current)
        return CUDA_ERROR_INVALID_CONTEXT;
    *s = calloc(1, sizeof **s);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuStreamDestroy(CUstream s)
{
    free(s);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream s)
{
    return s && s->stuck ? CUDA_ERROR_LAUNCH_TIMEOUT : CUDA_SUCCESS; /* a real one would wait forever */
}

EXPORT CUresult cuEventCreate(CUevent *e, unsigned int flags)
{
    (void)flags;
    if (!current)
        return CUDA_ERROR_INVALID_CONTEXT;
    *e = calloc(1, sizeof **e);
    return *e ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuEventDestroy(CUevent e)
{
    free(e);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent e, CUstream s)
{
    e->stream = s;
    e->pending = s && s->stuck;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuEventQuery(CUevent e)
{
    return e->pending && e->stream && e->stream->stuck ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}

EXPORT CUresult cuEventSynchronize(CUevent e) { return cuEventQuery(e) == CUDA_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_LAUNCH_TIMEOUT; }

EXPORT CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
    (void)a, (void)b;
    *ms = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc(CUdeviceptr *p, size_t bytes)
{
    if (!current)
        return CUDA_ERROR_INVALID_CONTEXT;
    void *m = malloc(bytes ? bytes : 1);
    *p = (CUdeviceptr)(uintptr_t)m;
    return m ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuMemFree(CUdeviceptr p)
{
    free((void *)(uintptr_t)p);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t bytes, CUstream s)
{
    (void)s;
    return cuMemAlloc(p, bytes);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s)
{
    (void)s;
    return cuMemFree(p);
}

EXPORT CUresult cuMemGetInfo(size_t *free_bytes, size_t *total)
{
    *free_bytes = *total = (size_t)1 << 30;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoD(CUdeviceptr d, const void *h, size_t n)
{
    memcpy((void *)(uintptr_t)d, h, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH(void *h, CUdeviceptr d, size_t n)
{
    memcpy(h, (const void *)(uintptr_t)d, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr d, const void *h, size_t n, CUstream s)
{
    (void)s;
    return cuMemcpyHtoD(d, h, n);
}

EXPORT CUresult cuMemcpyDtoHAsync(void *h, CUdeviceptr d, size_t n, CUstream s)
{
    (void)s;
    return cuMemcpyDtoH(h, d, n);
}

EXPORT CUresult cuMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr src, size_t n, CUstream s)
{
    (void)s;
    memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8(CUdeviceptr d, unsigned char v, size_t n)
{
    memset((void *)(uintptr_t)d, v, n);
    return CUDA_SUCCESS;
}

/* no kernels on the fake */
EXPORT CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned int n, CUjit_option *o, void **v)
{
    (void)m, (void)image, (void)n, (void)o, (void)v;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuModuleUnload(CUmodule m)
{
    (void)m;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name)
{
    (void)f, (void)m, (void)name;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                               unsigned int by, unsigned int bz, unsigned int shm, CUstream s, void **p, void **x)
{
    (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shm, (void)s, (void)p, (void)x;
    return CUDA_ERROR_NOT_SUPPORTED;
}

EXPORT CUresult cuGetErrorName(CUresult r, const char **name)
{
    switch (r) {
    case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; break;
    case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case CUDA_ERROR_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; break;
    case CUDA_ERROR_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *name = "CUDA_ERROR_INVALID_CONTEXT"; break;
    case CUDA_ERROR_NOT_READY: *name = "CUDA_ERROR_NOT_READY"; break;
    case CUDA_ERROR_NOT_SUPPORTED: *name = "CUDA_ERROR_NOT_SUPPORTED"; break;
    case CUDA_ERROR_LAUNCH_TIMEOUT: *name = "CUDA_ERROR_LAUNCH_TIMEOUT"; break;
    default: *name = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **s)
{
    const char *name;
    if (cuGetErrorName(r, &name) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_VALUE;
    *s = r == CUDA_ERROR_NOT_SUPPORTED ? "operation not supported (the fake driver runs no kernels)" : "fake driver";
    return CUDA_SUCCESS;
}

/* ---- NCCL ------------------------------------------------------------------------------------ */

enum {
    SLOT_BYTES = 16 << 20,  /* one rank's contribution to a collective */
    QUEUE = 8,              /* messages waiting per ordered pair of ranks */
    MSG_BYTES = 2 << 20,    /* one point-to-point message */
};

typedef struct {
    atomic_uint head, tail; /* messages taken, put */
    size_t bytes[QUEUE];
} fifo;

/* The shared segment: a barrier, one slot per rank, one FIFO per ordered pair. */
typedef struct {
    atomic_int arrived, generation, joined;
    int nranks;
} shared_hdr;

struct ncclComm {
    int rank, nranks;
    char name[NCCL_UNIQUE_ID_BYTES];
    unsigned char *base; /* the mapping */
    size_t bytes;
    bool aborted;
};

static char last_error[256];
static atomic_ulong op_count;
static atomic_bool async_failed;

static size_t seg_bytes(int n)
{
    return 4096 + (size_t)n * SLOT_BYTES + (size_t)n * (size_t)n * (sizeof(fifo) + (size_t)QUEUE * MSG_BYTES);
}
static shared_hdr *hdr(struct ncclComm *c) { return (shared_hdr *)c->base; }
static unsigned char *slot(struct ncclComm *c, int r) { return c->base + 4096 + (size_t)r * SLOT_BYTES; }
static fifo *pair_fifo(struct ncclComm *c, int src, int dst)
{
    unsigned char *p = c->base + 4096 + (size_t)c->nranks * SLOT_BYTES;
    return (fifo *)(p + (size_t)(src * c->nranks + dst) * (sizeof(fifo) + (size_t)QUEUE * MSG_BYTES));
}
static unsigned char *fifo_msg(fifo *f, unsigned i) { return (unsigned char *)(f + 1) + (size_t)(i % QUEUE) * MSG_BYTES; }

/* Spins, yields, then sleeps; after 120 s of waiting, gives up loudly. */
static void wait_step(unsigned *spins, const char *what)
{
    unsigned s = (*spins)++;
    if (s < 200) {
        sched_yield();
        return;
    }
    struct timespec t = {0, 50000};
    nanosleep(&t, NULL);
    if (s > 200 + 120u * 20000u) {
        fprintf(stderr, "fake NCCL: gave up waiting for %s after 120 s\n", what);
        abort();
    }
}

static void barrier(struct ncclComm *c)
{
    shared_hdr *h = hdr(c);
    int gen = atomic_load(&h->generation);
    if (atomic_fetch_add(&h->arrived, 1) == c->nranks - 1) {
        atomic_store(&h->arrived, 0);
        atomic_fetch_add(&h->generation, 1);
        return;
    }
    unsigned spins = 0;
    while (atomic_load(&h->generation) == gen)
        wait_step(&spins, "the other ranks at a barrier");
}

EXPORT ncclResult_t ncclGetVersion(int *v)
{
    *v = NCCL_VERSION_CODE;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    static atomic_int counter;
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "/loomfake-%ld-%d", (long)getpid(), atomic_fetch_add(&counter, 1));
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank)
{
    if (env_int("LOOM_FAKE_NCCL_HANG_INIT", 0))
        for (;;)
            sleep(1);
    if (!current) {
        snprintf(last_error, sizeof last_error, "fake NCCL: no current CUDA context");
        return ncclInvalidUsage;
    }
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        snprintf(last_error, sizeof last_error, "fake NCCL: rank %d of %d", rank, nranks);
        return ncclInvalidArgument;
    }
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c)
        return ncclSystemError;
    c->rank = rank;
    c->nranks = nranks;
    snprintf(c->name, sizeof c->name, "%s", id.internal);
    c->bytes = seg_bytes(nranks);
    int fd = shm_open(c->name, O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)c->bytes) != 0) {
        snprintf(last_error, sizeof last_error, "fake NCCL: shm_open %s failed", c->name);
        if (fd >= 0)
            close(fd);
        free(c);
        return ncclSystemError;
    }
    c->base = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c->base == MAP_FAILED) {
        free(c);
        return ncclSystemError;
    }
    /* every rank has mapped it: then the name can go (the mappings stay) */
    shared_hdr *h = hdr(c);
    atomic_fetch_add(&h->joined, 1);
    unsigned spins = 0;
    while (atomic_load(&h->joined) < nranks)
        wait_step(&spins, "the other ranks to join");
    barrier(c);
    if (rank == 0)
        shm_unlink(c->name);
    *out = c;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (!c)
        return ncclInvalidArgument;
    munmap(c->base, c->bytes);
    free(c);
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommAbort(ncclComm_t c)
{
    if (c)
        c->aborted = true;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e)
{
    (void)c;
    *e = atomic_load(&async_failed) ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}

EXPORT const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

EXPORT const char *ncclGetLastError(ncclComm_t c)
{
    (void)c;
    return last_error;
}

/* Counts an operation; true when it is the one that hangs (its stream stops). */
static bool hangs(cudaStream_t s)
{
    unsigned long k = atomic_fetch_add(&op_count, 1) + 1;
    if ((unsigned long)env_int("LOOM_FAKE_NCCL_ASYNC_ERROR", 0) == k)
        atomic_store(&async_failed, true);
    if ((unsigned long)env_int("LOOM_FAKE_NCCL_HANG", 0) == k) {
        s->stuck = true;
        return true;
    }
    return false;
}

static size_t type_size(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
    }
}

#define FOLD(T)                                                                       \
    do {                                                                              \
        T *d = dst;                                                                   \
        const T *x = src;                                                             \
        for (size_t i = 0; i < n; i++)                                                \
            d[i] = op == ncclSum ? (T)(d[i] + x[i]) : op == ncclMax ? (x[i] > d[i] ? x[i] : d[i]) \
                                                                  : (x[i] < d[i] ? x[i] : d[i]); \
    } while (0)

static void fold(void *dst, const void *src, size_t n, ncclDataType_t t, ncclRedOp_t op)
{
    switch (t) {
    case ncclFloat32: FOLD(float); break;
    case ncclFloat64: FOLD(double); break;
    case ncclInt32:
        if (op == ncclSum) { /* wraps, as the device's adds do */
            uint32_t *d = dst;
            const uint32_t *x = src;
            for (size_t i = 0; i < n; i++)
                d[i] += x[i];
        } else
            FOLD(int32_t);
        break;
    case ncclInt64:
        if (op == ncclSum) {
            uint64_t *d = dst;
            const uint64_t *x = src;
            for (size_t i = 0; i < n; i++)
                d[i] += x[i];
        } else
            FOLD(int64_t);
        break;
    default: break;
    }
}

/* One collective: every rank puts `in` bytes at its slot, then `gather` computes its result from
 * all slots; the slots are not reused until every rank has read them. */
static ncclResult_t exchange(ncclComm_t c, const void *mine, size_t in, void (*gather)(ncclComm_t, void *), void *ctx)
{
    if (in > SLOT_BYTES) {
        snprintf(last_error, sizeof last_error, "fake NCCL: %zu bytes exceed the fake's slot", in);
        return ncclInvalidArgument;
    }
    barrier(c);
    if (in)
        memcpy(slot(c, c->rank), mine, in);
    barrier(c);
    gather(c, ctx);
    barrier(c);
    return ncclSuccess;
}

typedef struct {
    void *r;
    size_t n;
    ncclDataType_t t;
    ncclRedOp_t op;
    int root;
} coll_args;

static void reduce_all(ncclComm_t c, void *ctx)
{
    coll_args *a = ctx;
    size_t bytes = a->n * type_size(a->t);
    unsigned char *acc = malloc(bytes ? bytes : 1);
    memcpy(acc, slot(c, 0), bytes);
    for (int r = 1; r < c->nranks; r++)
        fold(acc, slot(c, r), a->n, a->t, a->op);
    memcpy(a->r, acc, bytes);
    free(acc);
}

static void gather_all(ncclComm_t c, void *ctx)
{
    coll_args *a = ctx;
    size_t bytes = a->n * type_size(a->t);
    for (int r = 0; r < c->nranks; r++)
        memmove((unsigned char *)a->r + (size_t)r * bytes, slot(c, r), bytes);
}

static void reduce_block(ncclComm_t c, void *ctx)
{
    coll_args *a = ctx;
    size_t bytes = a->n * type_size(a->t), off = (size_t)c->rank * bytes;
    unsigned char *acc = malloc(bytes ? bytes : 1);
    memcpy(acc, slot(c, 0) + off, bytes);
    for (int r = 1; r < c->nranks; r++)
        fold(acc, slot(c, r) + off, a->n, a->t, a->op);
    memcpy(a->r, acc, bytes);
    free(acc);
}

static void from_root(ncclComm_t c, void *ctx)
{
    coll_args *a = ctx;
    memmove(a->r, slot(c, a->root), a->n * type_size(a->t));
}

EXPORT ncclResult_t ncclAllReduce(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                                  cudaStream_t st)
{
    if (hangs(st))
        return ncclSuccess;
    coll_args a = {r, n, t, op, 0};
    return exchange(c, s, n * type_size(t), reduce_all, &a);
}

EXPORT ncclResult_t ncclAllGather(const void *s, void *r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st)
{
    if (hangs(st))
        return ncclSuccess;
    coll_args a = {r, n, t, ncclSum, 0};
    return exchange(c, s, n * type_size(t), gather_all, &a);
}

EXPORT ncclResult_t ncclReduceScatter(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                                      cudaStream_t st)
{
    if (hangs(st))
        return ncclSuccess;
    coll_args a = {r, n, t, op, 0};
    return exchange(c, s, n * type_size(t) * (size_t)c->nranks, reduce_block, &a);
}

EXPORT ncclResult_t ncclBroadcast(const void *s, void *r, size_t n, ncclDataType_t t, int root, ncclComm_t c,
                                  cudaStream_t st)
{
    if (hangs(st))
        return ncclSuccess;
    coll_args a = {r, n, t, ncclSum, root};
    return exchange(c, c->rank == root ? s : NULL, c->rank == root ? n * type_size(t) : 0, from_root, &a);
}

/* ---- point to point: queued inside a group, sends first at its end ---- */

typedef struct {
    bool send;
    void *buf;
    size_t bytes;
    int peer;
    ncclComm_t comm;
} p2p;

static int group_depth;
static p2p *queued;
static int n_queued, cap_queued;

static ncclResult_t do_send(const p2p *o)
{
    ncclComm_t c = o->comm;
    if (o->bytes > MSG_BYTES) {
        snprintf(last_error, sizeof last_error, "fake NCCL: a %zu-byte message exceeds the fake's", o->bytes);
        return ncclInvalidArgument;
    }
    fifo *f = pair_fifo(c, c->rank, o->peer);
    unsigned spins = 0;
    while (atomic_load(&f->tail) - atomic_load(&f->head) >= QUEUE)
        wait_step(&spins, "room in a peer's queue");
    unsigned t = atomic_load(&f->tail);
    memcpy(fifo_msg(f, t), o->buf, o->bytes);
    f->bytes[t % QUEUE] = o->bytes;
    atomic_store(&f->tail, t + 1);
    return ncclSuccess;
}

static ncclResult_t do_recv(const p2p *o)
{
    ncclComm_t c = o->comm;
    fifo *f = pair_fifo(c, o->peer, c->rank);
    unsigned spins = 0;
    while (atomic_load(&f->tail) == atomic_load(&f->head))
        wait_step(&spins, "a message from a peer");
    unsigned h = atomic_load(&f->head);
    if (f->bytes[h % QUEUE] != o->bytes) {
        snprintf(last_error, sizeof last_error, "fake NCCL: a %zu-byte receive matched a %zu-byte send", o->bytes,
                 f->bytes[h % QUEUE]);
        return ncclInvalidUsage;
    }
    memcpy(o->buf, fifo_msg(f, h), o->bytes);
    atomic_store(&f->head, h + 1);
    return ncclSuccess;
}

static ncclResult_t run_group(void)
{
    ncclResult_t r = ncclSuccess;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_queued && r == ncclSuccess; i++)
            if (queued[i].send == (pass == 0))
                r = queued[i].send ? do_send(&queued[i]) : do_recv(&queued[i]);
    n_queued = 0;
    return r;
}

static ncclResult_t p2p_op(bool send, const void *buf, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t s)
{
    if (peer < 0 || peer >= c->nranks)
        return ncclInvalidArgument;
    if (hangs(s))
        return ncclSuccess;
    p2p o = {send, (void *)buf, n * type_size(t), peer, c};
    if (group_depth == 0)
        return send ? do_send(&o) : do_recv(&o);
    if (n_queued == cap_queued) {
        int cap = cap_queued ? 2 * cap_queued : 16;
        p2p *q = realloc(queued, sizeof *q * (size_t)cap);
        if (!q)
            return ncclSystemError;
        queued = q;
        cap_queued = cap;
    }
    queued[n_queued++] = o;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclSend(const void *s, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st)
{
    return p2p_op(true, s, n, t, peer, c, st);
}

EXPORT ncclResult_t ncclRecv(void *r, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st)
{
    return p2p_op(false, r, n, t, peer, c, st);
}

EXPORT ncclResult_t ncclGroupStart(void)
{
    group_depth++;
    return ncclSuccess;
}

EXPORT ncclResult_t ncclGroupEnd(void)
{
    if (group_depth == 0)
        return ncclInvalidUsage;
    if (--group_depth > 0)
        return ncclSuccess;
    ncclResult_t r = run_group();
    free(queued); /* a group's queue lives until its end */
    queued = NULL;
    cap_queued = 0;
    return r;
}
