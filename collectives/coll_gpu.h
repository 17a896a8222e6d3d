/* coll_gpu.h — the two libraries the NCCL backend opens itself with dlopen: the CUDA driver
 * (libcuda.so.1, $LOOM_LIBCUDA) for its device, context, stream, events and copies, and NCCL
 * (libnccl.so.2, $LOOM_LIBNCCL). Private to collectives/.
 *
 * Why the collectives open the driver themselves rather than take runtime/cuda's table: the
 * layer depends on nothing above it (tools/layers.txt), and the watchdog needs entry points of
 * its own (cuEventQuery) that no caller should have to lend it. dlopen of a library already
 * loaded by the runtime returns the same library, so a CUcontext or CUstream the caller passes
 * in coll_options is valid here. The types and prototypes are the toolkit's (cuda.h, nccl.h);
 * each field is held to its header prototype at compile time as runtime/cuda/cuda_driver.c
 * does.
 *
 * Loaded once per process (coll_gpu_open counts users; the last coll_gpu_close unloads).
 * Every call goes through a check that names the call, file:line and the library's own error
 * (coll_gpu_cu_error, coll_gpu_nccl_error).
 */
#ifndef LOOM_COLL_GPU_H
#define LOOM_COLL_GPU_H

#include <stdbool.h>
#include <stddef.h>

#include <cuda.h>
#include <nccl.h>

typedef struct {
    void *cuda, *nccl;            /* dlopen handles */
    char cuda_path[256], nccl_path[256];
    int driver_version, nccl_version, device_count;
    /* the driver (cuda.h's names without "cu") */
    CUresult (*Init)(unsigned int flags);
    CUresult (*DriverGetVersion)(int *version);
    CUresult (*DeviceGetCount)(int *count);
    CUresult (*DeviceGet)(CUdevice *dev, int ordinal);
    CUresult (*DeviceGetUuid)(CUuuid *uuid, CUdevice dev);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice dev);
    CUresult (*CtxSetCurrent)(CUcontext ctx);
    CUresult (*CtxGetCurrent)(CUcontext *ctx);
    CUresult (*CtxGetDevice)(CUdevice *dev);
    CUresult (*StreamCreate)(CUstream *s, unsigned int flags);
    CUresult (*StreamDestroy)(CUstream s);
    CUresult (*EventCreate)(CUevent *e, unsigned int flags);
    CUresult (*EventDestroy)(CUevent e);
    CUresult (*EventRecord)(CUevent e, CUstream s);
    CUresult (*EventQuery)(CUevent e);
    CUresult (*MemAlloc)(CUdeviceptr *p, size_t bytes);
    CUresult (*MemFree)(CUdeviceptr p);
    CUresult (*MemAllocAsync)(CUdeviceptr *p, size_t bytes, CUstream s);
    CUresult (*MemFreeAsync)(CUdeviceptr p, CUstream s);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
    CUresult (*MemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream s);
    CUresult (*MemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s);
    CUresult (*GetErrorName)(CUresult r, const char **name);
    CUresult (*GetErrorString)(CUresult r, const char **str);
    /* NCCL (nccl.h's names without "nccl") */
    ncclResult_t (*GetVersion)(int *version);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *id);
    ncclResult_t (*CommInitRank)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
    ncclResult_t (*CommDestroy)(ncclComm_t comm);
    ncclResult_t (*CommAbort)(ncclComm_t comm);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t *async_error);
    const char *(*NcclErrorString)(ncclResult_t r);
    const char *(*GetLastError)(ncclComm_t comm);
    ncclResult_t (*AllReduce)(const void *s, void *r, size_t n, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t comm,
                              cudaStream_t stream);
    ncclResult_t (*AllGather)(const void *s, void *r, size_t n, ncclDataType_t dt, ncclComm_t comm,
                              cudaStream_t stream);
    ncclResult_t (*ReduceScatter)(const void *s, void *r, size_t n, ncclDataType_t dt, ncclRedOp_t op,
                                  ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*Broadcast)(const void *s, void *r, size_t n, ncclDataType_t dt, int root, ncclComm_t comm,
                              cudaStream_t stream);
    ncclResult_t (*Send)(const void *s, size_t n, ncclDataType_t dt, int peer, ncclComm_t comm,
                         cudaStream_t stream);
    ncclResult_t (*Recv)(void *r, size_t n, ncclDataType_t dt, int peer, ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
} coll_gpu;

/* Opens (or shares) the driver and NCCL, calls cuInit(0) and counts the devices. NULL with a
 * message in err (cap bytes), one line:
 *   "no CUDA driver found (libcuda.so.1: <dlerror>)", "no CUDA device",
 *   "CUDA driver PATH lacks cuXxx (driver too old?)", "coll_gpu.c:L: cuInit(0) failed: ...",
 *   "no NCCL library found (libnccl.so.2: <dlerror>; set LOOM_LIBNCCL to its path)",
 *   "NCCL library PATH lacks ncclXxx (NCCL older than 2.7?)". */
coll_gpu *coll_gpu_open(char *err, size_t cap);
void coll_gpu_close(coll_gpu *g);

/* "NAME (string)" of a driver result, with a hint where one helps. */
void coll_gpu_cu_error(const coll_gpu *g, CUresult r, char *buf, size_t cap);
/* "NCCL's string (ncclResult N): last error" of an NCCL result; comm may be NULL. */
void coll_gpu_nccl_error(const coll_gpu *g, ncclResult_t r, ncclComm_t comm, char *buf, size_t cap);

#endif
