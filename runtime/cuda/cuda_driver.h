/* cuda_driver.h — the CUDA driver API, loaded at run time with dlopen("libcuda.so.1"), so that
 * the runtime builds and runs without the CUDA toolkit and fails cleanly without a driver.
 *
 * Only what loom uses is declared here, under rt_cu_ names (cuda.h is never included: its
 * CUresult, CUdevice, ... would clash with nothing here, and the build needs no toolkit). The
 * types are ABI-identical to cuda.h's: handles are opaque pointers, a device pointer is a
 * 64-bit integer, results and enums are ints with the values of cuda.h (CUDA 12/13).
 * Functions are resolved by the symbol names cuda.h maps them to (cuMemAlloc → cuMemAlloc_v2,
 * ...). Contexts are the devices' primary contexts (retained, made current, released).
 *
 * Every call goes through RT_CU_CHECK (or rt_cu_check), which names the call, file:line and
 * the driver's own error name and string:
 *     RT_CU_CHECK(cu, cu->MemAlloc(&p, bytes), err, cap) → false with
 *     "runtime/x.c:42: cuMemAlloc(&p, bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
 */
#ifndef LOOM_CUDA_DRIVER_H
#define LOOM_CUDA_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef int rt_cu_result; /* CUresult */
typedef int rt_cu_device; /* CUdevice */
typedef struct rt_cu_ctx_st *rt_cu_context;
typedef struct rt_cu_mod_st *rt_cu_module;
typedef struct rt_cu_func_st *rt_cu_function;
typedef struct rt_cu_stream_st *rt_cu_stream;
typedef struct rt_cu_event_st *rt_cu_event;
typedef uint64_t rt_cu_deviceptr; /* CUdeviceptr */

enum {
    RT_CU_SUCCESS = 0,
    RT_CU_ERROR_INVALID_VALUE = 1,
    RT_CU_ERROR_OUT_OF_MEMORY = 2,
    RT_CU_ERROR_NOT_INITIALIZED = 3,
    RT_CU_ERROR_NO_DEVICE = 100,
    RT_CU_ERROR_INVALID_PTX = 218,
};

/* CUdevice_attribute values used by loom */
enum {
    RT_CU_ATTR_MAX_THREADS_PER_BLOCK = 1,
    RT_CU_ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    RT_CU_ATTR_WARP_SIZE = 10,
    RT_CU_ATTR_MULTIPROCESSOR_COUNT = 16,
    RT_CU_ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    RT_CU_ATTR_COMPUTE_CAPABILITY_MINOR = 76,
};

/* CUjit_option values for cuModuleLoadDataEx */
enum {
    RT_CU_JIT_INFO_LOG_BUFFER = 3,
    RT_CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
    RT_CU_JIT_ERROR_LOG_BUFFER = 5,
    RT_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    RT_CU_JIT_LOG_VERBOSE = 12,
};

/* The driver: one function pointer per entry point, named as in cuda.h without the "cu". */
typedef struct rt_cuda {
    void *lib; /* the dlopen handle */
    int driver_version; /* cuDriverGetVersion: 1000 * major + 10 * minor */
    int device_count;
    rt_cu_result (*Init)(unsigned flags);
    rt_cu_result (*DriverGetVersion)(int *version);
    rt_cu_result (*DeviceGetCount)(int *count);
    rt_cu_result (*DeviceGet)(rt_cu_device *dev, int ordinal);
    rt_cu_result (*DeviceGetName)(char *name, int len, rt_cu_device dev);
    rt_cu_result (*DeviceTotalMem)(size_t *bytes, rt_cu_device dev);
    rt_cu_result (*DeviceGetAttribute)(int *value, int attr, rt_cu_device dev);
    rt_cu_result (*DevicePrimaryCtxRetain)(rt_cu_context *ctx, rt_cu_device dev);
    rt_cu_result (*DevicePrimaryCtxRelease)(rt_cu_device dev);
    rt_cu_result (*CtxSetCurrent)(rt_cu_context ctx);
    rt_cu_result (*CtxSynchronize)(void);
    rt_cu_result (*ModuleLoadDataEx)(rt_cu_module *mod, const void *image, unsigned n_options, int *options,
                                     void **values);
    rt_cu_result (*ModuleUnload)(rt_cu_module mod);
    rt_cu_result (*ModuleGetFunction)(rt_cu_function *fn, rt_cu_module mod, const char *name);
    rt_cu_result (*LaunchKernel)(rt_cu_function fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                 unsigned bz, unsigned shared_bytes, rt_cu_stream stream, void **params,
                                 void **extra);
    rt_cu_result (*MemAlloc)(rt_cu_deviceptr *p, size_t bytes);
    rt_cu_result (*MemFree)(rt_cu_deviceptr p);
    rt_cu_result (*MemcpyHtoD)(rt_cu_deviceptr dst, const void *src, size_t bytes);
    rt_cu_result (*MemcpyDtoH)(void *dst, rt_cu_deviceptr src, size_t bytes);
    rt_cu_result (*MemsetD8)(rt_cu_deviceptr dst, unsigned char value, size_t n);
    rt_cu_result (*MemcpyDtoDAsync)(rt_cu_deviceptr dst, rt_cu_deviceptr src, size_t bytes, rt_cu_stream s);
    rt_cu_result (*MemcpyHtoDAsync)(rt_cu_deviceptr dst, const void *src, size_t bytes, rt_cu_stream s);
    rt_cu_result (*MemGetInfo)(size_t *free_bytes, size_t *total_bytes);
    rt_cu_result (*StreamCreate)(rt_cu_stream *s, unsigned flags);
    rt_cu_result (*StreamDestroy)(rt_cu_stream s);
    rt_cu_result (*StreamSynchronize)(rt_cu_stream s);
    rt_cu_result (*EventCreate)(rt_cu_event *e, unsigned flags);
    rt_cu_result (*EventDestroy)(rt_cu_event e);
    rt_cu_result (*EventRecord)(rt_cu_event e, rt_cu_stream s);
    rt_cu_result (*EventSynchronize)(rt_cu_event e);
    rt_cu_result (*EventElapsedTime)(float *ms, rt_cu_event start, rt_cu_event end);
    rt_cu_result (*GetErrorName)(rt_cu_result r, const char **name);
    rt_cu_result (*GetErrorString)(rt_cu_result r, const char **str);
} rt_cuda;

/* Loads libcuda.so.1 (or $LOOM_LIBCUDA when set: tests and odd installs), resolves every entry
 * point above, calls cuInit(0) and counts the devices. NULL with a message in err (cap bytes)
 * on failure: "no CUDA driver found (libcuda.so.1: <dlerror>)", "CUDA driver libcuda.so.1
 * lacks cuXxx", "cuInit(0): CUDA_ERROR_... (...)", or "no CUDA device" (a driver without a
 * device). Free with rt_cuda_unload. */
rt_cuda *rt_cuda_load(char *err, size_t cap);
void rt_cuda_unload(rt_cuda *cu);

/* If r is not success, writes "where: call: NAME (string)" into err (cap bytes) and returns
 * false; true on success. cu may be NULL (then the code is printed as a number). */
bool rt_cu_check(const rt_cuda *cu, rt_cu_result r, const char *call, const char *where, char *err, size_t cap);

#define RT_CU_STR2(x) #x
#define RT_CU_STR(x) RT_CU_STR2(x)
/* Evaluates the driver call expr (e.g. cu->MemAlloc(&p, n)); on failure fills err with the
 * call's text, file:line and the driver's error, and makes the enclosing expression false. */
#define RT_CU_CHECK(cu, expr, err, cap) rt_cu_check((cu), (expr), #expr, __FILE__ ":" RT_CU_STR(__LINE__), (err), (cap))

/* Loads a PTX image (NUL-terminated text) with cuModuleLoadDataEx, the JIT's error and info
 * logs captured: on failure err holds the call's error and the ptxas log. */
bool rt_cuda_load_ptx(const rt_cuda *cu, const char *ptx, rt_cu_module *mod, char *err, size_t cap);

/* Prints one line per device ("cuda: device 0: NVIDIA H100 80GB HBM3, sm_90, 132 SMs,
 * 79.2 GiB, driver 13.0"), or "cuda: <why not>" when there is no driver or device. */
void rt_cuda_list_devices(FILE *out);

#endif
