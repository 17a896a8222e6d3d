/* cuda_driver.h — the CUDA driver API, loaded at run time with dlopen("libcuda.so.1"), so that
 * loom's programs start (and fail cleanly, with a message) on a machine without a driver.
 *
 * The types, enums and prototypes are the toolkit's own: this header includes cuda.h (CMake
 * finds it under $CUDA_HOME/include, else /usr/local/cuda/include; docs/cuda.md), so nothing
 * here is typed by hand. Building needs the headers; running needs no toolkit — the library
 * is still opened with dlopen, never linked. The rt_cu_ names are cuda.h's types under the
 * runtime's prefix, and each field of rt_cuda is checked at compile time against cuda.h's
 * prototype of its entry point (cuda_driver.c), whose symbol is the one cuda.h maps the name
 * to (cuMemAlloc → cuMemAlloc_v2, ...). Contexts are the devices' primary contexts (retained,
 * made current, released).
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

#include <cuda.h>

typedef CUresult rt_cu_result;
typedef CUdevice rt_cu_device;
typedef CUcontext rt_cu_context;
typedef CUmodule rt_cu_module;
typedef CUfunction rt_cu_function;
typedef CUstream rt_cu_stream;
typedef CUevent rt_cu_event;
typedef CUdeviceptr rt_cu_deviceptr;

/* cuda.h's constants under the runtime's prefix (macros, so they keep cuda.h's enum types) */
#define RT_CU_SUCCESS CUDA_SUCCESS
#define RT_CU_ERROR_INVALID_VALUE CUDA_ERROR_INVALID_VALUE
#define RT_CU_ERROR_OUT_OF_MEMORY CUDA_ERROR_OUT_OF_MEMORY
#define RT_CU_ERROR_NOT_INITIALIZED CUDA_ERROR_NOT_INITIALIZED
#define RT_CU_ERROR_NO_DEVICE CUDA_ERROR_NO_DEVICE
#define RT_CU_ERROR_INVALID_PTX CUDA_ERROR_INVALID_PTX

/* CUdevice_attribute values used by loom */
#define RT_CU_ATTR_MAX_THREADS_PER_BLOCK CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK
#define RT_CU_ATTR_MAX_SHARED_MEMORY_PER_BLOCK CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK
#define RT_CU_ATTR_WARP_SIZE CU_DEVICE_ATTRIBUTE_WARP_SIZE
#define RT_CU_ATTR_MULTIPROCESSOR_COUNT CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
#define RT_CU_ATTR_COMPUTE_CAPABILITY_MAJOR CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
#define RT_CU_ATTR_COMPUTE_CAPABILITY_MINOR CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

/* CUjit_option values for cuModuleLoadDataEx */
#define RT_CU_JIT_INFO_LOG_BUFFER CU_JIT_INFO_LOG_BUFFER
#define RT_CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES
#define RT_CU_JIT_ERROR_LOG_BUFFER CU_JIT_ERROR_LOG_BUFFER
#define RT_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
#define RT_CU_JIT_LOG_VERBOSE CU_JIT_LOG_VERBOSE

/* The driver: one function pointer per entry point, named as in cuda.h without the "cu", with
 * cuda.h's parameter types (cuda_driver.c checks each against the prototype). */
typedef struct rt_cuda {
    void *lib; /* the dlopen handle */
    int driver_version; /* cuDriverGetVersion: 1000 * major + 10 * minor */
    int device_count;
    CUresult (*Init)(unsigned int flags);
    CUresult (*DriverGetVersion)(int *version);
    CUresult (*DeviceGetCount)(int *count);
    CUresult (*DeviceGet)(CUdevice *dev, int ordinal);
    CUresult (*DeviceGetName)(char *name, int len, CUdevice dev);
    CUresult (*DeviceTotalMem)(size_t *bytes, CUdevice dev);
    CUresult (*DeviceGetAttribute)(int *value, CUdevice_attribute attr, CUdevice dev);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice dev);
    CUresult (*CtxSetCurrent)(CUcontext ctx);
    CUresult (*CtxSynchronize)(void);
    CUresult (*ModuleLoadDataEx)(CUmodule *mod, const void *image, unsigned int n_options, CUjit_option *options,
                                 void **values);
    CUresult (*ModuleUnload)(CUmodule mod);
    CUresult (*ModuleGetFunction)(CUfunction *fn, CUmodule mod, const char *name);
    CUresult (*LaunchKernel)(CUfunction fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                             unsigned int by, unsigned int bz, unsigned int shared_bytes, CUstream stream,
                             void **params, void **extra);
    CUresult (*MemAlloc)(CUdeviceptr *p, size_t bytes);
    CUresult (*MemFree)(CUdeviceptr p);
    CUresult (*MemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);
    CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
    CUresult (*MemsetD8)(CUdeviceptr dst, unsigned char value, size_t n);
    CUresult (*MemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
    CUresult (*MemGetInfo)(size_t *free_bytes, size_t *total_bytes);
    CUresult (*StreamCreate)(CUstream *s, unsigned int flags);
    CUresult (*StreamDestroy)(CUstream s);
    CUresult (*StreamSynchronize)(CUstream s);
    CUresult (*EventCreate)(CUevent *e, unsigned int flags);
    CUresult (*EventDestroy)(CUevent e);
    CUresult (*EventRecord)(CUevent e, CUstream s);
    CUresult (*EventSynchronize)(CUevent e);
    CUresult (*EventElapsedTime)(float *ms, CUevent start, CUevent end);
    CUresult (*GetErrorName)(CUresult r, const char **name);
    CUresult (*GetErrorString)(CUresult r, const char **str);
} rt_cuda;

/* Loads libcuda.so.1 (or $LOOM_LIBCUDA when set: tests and odd installs), resolves every entry
 * point above, calls cuInit(0) and counts the devices. NULL with a message in err (cap bytes)
 * on failure: "no CUDA driver found (libcuda.so.1: <dlerror>)", "CUDA driver libcuda.so.1
 * lacks cuXxx", "cuInit(0): CUDA_ERROR_... (...)", or "no CUDA device" (a driver without a
 * device). Free with rt_cuda_unload. */
rt_cuda *rt_cuda_load(char *err, size_t cap);
void rt_cuda_unload(rt_cuda *cu);

/* If r is not success, writes "where: call: NAME (string)" into err (cap bytes) and returns
 * false; true on success. cu may be NULL (then the shim's own names of common codes, else the
 * number). */
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
