/* coll_gpu.c — the CUDA driver and NCCL through dlopen for the NCCL backend (coll_gpu.h): the
 * entry point tables, held to cuda.h's and nccl.h's prototypes at compile time, one shared
 * instance per process, and the error strings behind the backend's check macros.
 */
#include "collectives/coll_gpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPU_STR2(x) #x
#define GPU_STR(x) GPU_STR2(x)

static void msg(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* One entry point: its field, the symbol (the name the header maps the call to: cuMemAlloc is
 * cuMemAlloc_v2), and, inside sizeof (never evaluated, no symbol referenced), the assignment of
 * the header's function to the field: a field typed otherwise than the prototype does not
 * compile. */
typedef struct {
    size_t offset;
    const char *sym;
} entry;
#define E(field, fn) {offsetof(coll_gpu, field) + 0 * sizeof(((coll_gpu *)0)->field = fn), GPU_STR(fn)}

static const entry driver_entries[] = {
    E(Init, cuInit),
    E(DriverGetVersion, cuDriverGetVersion),
    E(DeviceGetCount, cuDeviceGetCount),
    E(DeviceGet, cuDeviceGet),
    E(DeviceGetUuid, cuDeviceGetUuid),
    E(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain),
    E(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease),
    E(CtxSetCurrent, cuCtxSetCurrent),
    E(CtxGetCurrent, cuCtxGetCurrent),
    E(CtxGetDevice, cuCtxGetDevice),
    E(StreamCreate, cuStreamCreate),
    E(StreamDestroy, cuStreamDestroy),
    E(EventCreate, cuEventCreate),
    E(EventDestroy, cuEventDestroy),
    E(EventRecord, cuEventRecord),
    E(EventQuery, cuEventQuery),
    E(MemAlloc, cuMemAlloc),
    E(MemFree, cuMemFree),
    E(MemAllocAsync, cuMemAllocAsync),
    E(MemFreeAsync, cuMemFreeAsync),
    E(MemcpyHtoDAsync, cuMemcpyHtoDAsync),
    E(MemcpyDtoHAsync, cuMemcpyDtoHAsync),
    E(MemcpyDtoDAsync, cuMemcpyDtoDAsync),
    E(GetErrorName, cuGetErrorName),
    E(GetErrorString, cuGetErrorString),
};

static const entry nccl_entries[] = {
    E(GetVersion, ncclGetVersion),
    E(GetUniqueId, ncclGetUniqueId),
    E(CommInitRank, ncclCommInitRank),
    E(CommDestroy, ncclCommDestroy),
    E(CommAbort, ncclCommAbort),
    E(CommGetAsyncError, ncclCommGetAsyncError),
    E(NcclErrorString, ncclGetErrorString),
    E(GetLastError, ncclGetLastError),
    E(AllReduce, ncclAllReduce),
    E(AllGather, ncclAllGather),
    E(ReduceScatter, ncclReduceScatter),
    E(Broadcast, ncclBroadcast),
    E(Send, ncclSend),
    E(Recv, ncclRecv),
    E(GroupStart, ncclGroupStart),
    E(GroupEnd, ncclGroupEnd),
};
#undef E

/* Resolves entries from lib into g; false with "WHAT PATH lacks SYM (why)" in err. */
static bool resolve(coll_gpu *g, void *lib, const entry *es, size_t n, const char *what, const char *path,
                    const char *why, char *err, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        void *f = dlsym(lib, es[i].sym);
        if (!f) {
            msg(err, cap, "%s %s lacks %s (%s)", what, path, es[i].sym, why);
            return false;
        }
        memcpy((char *)g + es[i].offset, &f, sizeof f); /* object → function pointer, POSIX */
    }
    return true;
}

/* dlopen of the first of names[0..n) that loads; NULL with the loader's reason for the first
 * one in why ("PATH: reason", the path once). */
static void *open_first(const char *const *names, size_t n, char *path, size_t path_cap, char *why, size_t why_cap)
{
    why[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i])
            continue;
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib) {
            snprintf(path, path_cap, "%s", names[i]);
            return lib;
        }
        if (!why[0]) {
            /* glibc's reason already starts with "PATH: "; name the path only when it does not */
            const char *r = dlerror();
            size_t len = strlen(names[i]);
            if (r && strncmp(r, names[i], len) == 0 && strncmp(r + len, ": ", 2) == 0)
                snprintf(why, why_cap, "%s", r);
            else
                snprintf(why, why_cap, "%s: %s", names[i], r ? r : "unknown error");
        }
    }
    return NULL;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static coll_gpu *shared; /* the process's instance while users > 0 */
static int users;

static void unload(coll_gpu *g)
{
    if (g->nccl)
        dlclose(g->nccl);
    if (g->cuda)
        dlclose(g->cuda);
    free(g);
}

static coll_gpu *load(char *err, size_t cap)
{
    coll_gpu *g = calloc(1, sizeof *g);
    if (!g) {
        msg(err, cap, "out of memory");
        return NULL;
    }
    char why[512];
    const char *env = getenv("LOOM_LIBCUDA");
    const char *cuda_names[] = {env && *env ? env : "libcuda.so.1"};
    g->cuda = open_first(cuda_names, 1, g->cuda_path, sizeof g->cuda_path, why, sizeof why);
    if (!g->cuda) {
        msg(err, cap, "no CUDA driver found (%s)", why);
        unload(g);
        return NULL;
    }
    if (!resolve(g, g->cuda, driver_entries, sizeof driver_entries / sizeof *driver_entries, "CUDA driver",
                 g->cuda_path, "driver too old?", err, cap)) {
        unload(g);
        return NULL;
    }
    CUresult r = g->Init(0);
    if (r == CUDA_ERROR_NO_DEVICE) {
        msg(err, cap, "no CUDA device");
        unload(g);
        return NULL;
    }
    char e[256];
    if (r != CUDA_SUCCESS || (r = g->DriverGetVersion(&g->driver_version)) != CUDA_SUCCESS ||
        (r = g->DeviceGetCount(&g->device_count)) != CUDA_SUCCESS) {
        coll_gpu_cu_error(g, r, e, sizeof e);
        msg(err, cap, "coll_gpu.c:%d: the CUDA driver failed to start: %s", __LINE__, e);
        unload(g);
        return NULL;
    }
    if (g->device_count == 0) {
        msg(err, cap, "no CUDA device");
        unload(g);
        return NULL;
    }
    /* NCCL: $LOOM_LIBNCCL alone when set; else the loader's path, then the toolkit's lib64 */
    env = getenv("LOOM_LIBNCCL");
    const char *home = getenv("CUDA_HOME");
    char home_lib[300] = "";
    if (home && *home)
        snprintf(home_lib, sizeof home_lib, "%s/lib64/libnccl.so.2", home);
    const char *nccl_names[] = {"libnccl.so.2", home_lib, "/usr/local/cuda/lib64/libnccl.so.2"};
    const char *only[] = {env};
    g->nccl = env && *env ? open_first(only, 1, g->nccl_path, sizeof g->nccl_path, why, sizeof why)
                          : open_first(nccl_names, 3, g->nccl_path, sizeof g->nccl_path, why, sizeof why);
    if (!g->nccl) {
        msg(err, cap, "no NCCL library found (%s; set LOOM_LIBNCCL to its path)", why);
        unload(g);
        return NULL;
    }
    if (!resolve(g, g->nccl, nccl_entries, sizeof nccl_entries / sizeof *nccl_entries, "NCCL library", g->nccl_path,
                 "NCCL older than 2.7?", err, cap)) {
        unload(g);
        return NULL;
    }
    ncclResult_t nr = g->GetVersion(&g->nccl_version);
    if (nr != ncclSuccess) {
        coll_gpu_nccl_error(g, nr, NULL, e, sizeof e);
        msg(err, cap, "coll_gpu.c:%d: ncclGetVersion failed: %s", __LINE__, e);
        unload(g);
        return NULL;
    }
    return g;
}

coll_gpu *coll_gpu_open(char *err, size_t cap)
{
    pthread_mutex_lock(&lock);
    if (!shared)
        shared = load(err, cap);
    if (shared)
        users++;
    coll_gpu *g = shared;
    pthread_mutex_unlock(&lock);
    return g;
}

void coll_gpu_close(coll_gpu *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&lock);
    if (--users == 0) {
        unload(shared);
        shared = NULL;
    }
    pthread_mutex_unlock(&lock);
}

static const char *cu_hint(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_OUT_OF_MEMORY: return "; hint: check nvidia-smi for other processes on the GPU";
    case CUDA_ERROR_NO_DEVICE:
    case CUDA_ERROR_INVALID_DEVICE: return "; hint: check CUDA_VISIBLE_DEVICES and nvidia-smi";
    case CUDA_ERROR_STUB_LIBRARY: return "; hint: this libcuda is the CUDA toolkit's link stub, not the NVIDIA driver";
    default: return "";
    }
}

void coll_gpu_cu_error(const coll_gpu *g, CUresult r, char *buf, size_t cap)
{
    const char *name = NULL, *str = NULL;
    if (g && g->GetErrorName && g->GetErrorName(r, &name) != CUDA_SUCCESS)
        name = NULL;
    if (g && g->GetErrorString && g->GetErrorString(r, &str) != CUDA_SUCCESS)
        str = NULL;
    if (name)
        msg(buf, cap, "%s (%s)%s", name, str ? str : "no description", cu_hint(r));
    else
        msg(buf, cap, "CUDA error %d%s", (int)r, cu_hint(r));
}

void coll_gpu_nccl_error(const coll_gpu *g, ncclResult_t r, ncclComm_t comm, char *buf, size_t cap)
{
    const char *s = g && g->NcclErrorString ? g->NcclErrorString(r) : NULL;
    const char *last = g && g->GetLastError ? g->GetLastError(comm) : NULL;
    msg(buf, cap, "%s (ncclResult %d)%s%s", s ? s : "NCCL error", (int)r, last && *last ? ": " : "",
        last && *last ? last : "");
}
