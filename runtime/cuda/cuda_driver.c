/* cuda_driver.c — the CUDA driver API through dlopen/dlsym (see cuda_driver.h): loading and
 * resolving the entry points, the check function behind RT_CU_CHECK, PTX loading with the
 * JIT's logs, and the device listing. cuda.h gives the types and the symbol names; there is no
 * link-time dependency: a machine without a driver gets a clear message, never a loader error.
 */
#include "runtime/cuda/cuda_driver.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void msg(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Names of common results, for when the driver cannot name them (a stub library, no driver). */
static const struct {
    rt_cu_result r;
    const char *name, *str;
} known[] = {
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", "API call requires a newer CUDA driver"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static const char *hint_for(rt_cu_result r)
{
    switch (r) {
    case CUDA_ERROR_OUT_OF_MEMORY: return "; hint: a smaller batch, or check nvidia-smi for other processes on the GPU";
    case CUDA_ERROR_STUB_LIBRARY: return "; hint: this libcuda is the CUDA toolkit's link stub, not the NVIDIA driver";
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        return "; hint: the NVIDIA driver is older than the PTX ISA version asked for (cg_ptx_options.ptx)";
    case CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER: return "; hint: the NVIDIA driver is older than the CUDA 12 API loom calls";
    case CUDA_ERROR_NO_DEVICE: return "; hint: check CUDA_VISIBLE_DEVICES and nvidia-smi";
    case CUDA_ERROR_INVALID_PTX:
    case CUDA_ERROR_NO_BINARY_FOR_GPU: return "; hint: the PTX targets a newer GPU than this one (cg_ptx_options.sm)";
    default: return "";
    }
}

bool rt_cu_check(const rt_cuda *cu, rt_cu_result r, const char *call, const char *where, char *err, size_t cap)
{
    if (r == RT_CU_SUCCESS)
        return true;
    const char *name = NULL, *str = NULL;
    if (cu && cu->GetErrorName && cu->GetErrorName(r, &name) != RT_CU_SUCCESS)
        name = NULL;
    if (cu && cu->GetErrorString && cu->GetErrorString(r, &str) != RT_CU_SUCCESS)
        str = NULL;
    for (size_t i = 0; i < sizeof known / sizeof *known && !name; i++)
        if (known[i].r == r)
            name = known[i].name, str = known[i].str;
    if (name)
        msg(err, cap, "%s: %s: %s (%s)%s", where, call, name, str ? str : "no description", hint_for(r));
    else
        msg(err, cap, "%s: %s: CUDA error %d%s", where, call, r, hint_for(r));
    return false;
}

/* One entry point: the field, the symbol names to try (the first a driver has wins). The name
 * is cuda.h's: CU(cuMemAlloc) is "cuMemAlloc_v2", the symbol cuda.h maps cuMemAlloc to, and
 * the assignment inside sizeof (never evaluated) makes the compiler hold the field's type to
 * cuda.h's prototype of that symbol: a field typed differently does not build. */
typedef struct {
    size_t offset;
    const char *sym[2];
} entry;

#define CU_NAME(fn) RT_CU_STR(fn)
#define E(field, fn) {offsetof(rt_cuda, field) + 0 * sizeof(((rt_cuda *)0)->field = fn), {CU_NAME(fn), NULL}}
/* with an older name to fall back on (a driver older than the toolkit's headers) */
#define E2(field, fn, old) {offsetof(rt_cuda, field) + 0 * sizeof(((rt_cuda *)0)->field = fn), {CU_NAME(fn), old}}
static const entry entries[] = {
    E(Init, cuInit),
    E(DriverGetVersion, cuDriverGetVersion),
    E(DeviceGetCount, cuDeviceGetCount),
    E(DeviceGet, cuDeviceGet),
    E(DeviceGetName, cuDeviceGetName),
    E(DeviceTotalMem, cuDeviceTotalMem),
    E(DeviceGetAttribute, cuDeviceGetAttribute),
    E(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain),
    E(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease),
    E(CtxSetCurrent, cuCtxSetCurrent),
    E(CtxSynchronize, cuCtxSynchronize),
    E(ModuleLoadDataEx, cuModuleLoadDataEx),
    E(ModuleUnload, cuModuleUnload),
    E(ModuleGetFunction, cuModuleGetFunction),
    E(LaunchKernel, cuLaunchKernel),
    E(MemAlloc, cuMemAlloc),
    E(MemFree, cuMemFree),
    E(MemcpyHtoD, cuMemcpyHtoD),
    E(MemcpyDtoH, cuMemcpyDtoH),
    E(MemsetD8, cuMemsetD8),
    E(MemcpyDtoDAsync, cuMemcpyDtoDAsync),
    E(MemcpyHtoDAsync, cuMemcpyHtoDAsync),
    E(MemGetInfo, cuMemGetInfo),
    E(StreamCreate, cuStreamCreate),
    E(StreamDestroy, cuStreamDestroy),
    E(StreamSynchronize, cuStreamSynchronize),
    E(EventCreate, cuEventCreate),
    E(EventDestroy, cuEventDestroy),
    E(EventRecord, cuEventRecord),
    E(EventSynchronize, cuEventSynchronize),
    E2(EventElapsedTime, cuEventElapsedTime, "cuEventElapsedTime"), /* _v2 from CUDA 12.8 */
    E(GetErrorName, cuGetErrorName),
    E(GetErrorString, cuGetErrorString),
};
#undef E
#undef E2

rt_cuda *rt_cuda_load(char *err, size_t cap)
{
    const char *path = getenv("LOOM_LIBCUDA");
    if (!path || !*path)
        path = "libcuda.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        /* glibc's reason already starts with "PATH: "; name the path only when it does not */
        const char *why = dlerror();
        size_t n = strlen(path);
        if (why && strncmp(why, path, n) == 0 && strncmp(why + n, ": ", 2) == 0)
            msg(err, cap, "no CUDA driver found (%s)", why);
        else
            msg(err, cap, "no CUDA driver found (%s: %s)", path, why ? why : "unknown error");
        return NULL;
    }
    rt_cuda *cu = calloc(1, sizeof *cu);
    if (!cu) {
        dlclose(lib);
        msg(err, cap, "out of memory");
        return NULL;
    }
    cu->lib = lib;
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        void *f = NULL;
        for (int s = 0; s < 2 && !f && entries[i].sym[s]; s++)
            f = dlsym(lib, entries[i].sym[s]);
        if (!f) {
            msg(err, cap, "CUDA driver %s lacks %s (driver too old?)", path, entries[i].sym[0]);
            rt_cuda_unload(cu);
            return NULL;
        }
        memcpy((char *)cu + entries[i].offset, &f, sizeof f); /* object → function pointer, POSIX */
    }
    rt_cu_result r = cu->Init(0);
    if (r == RT_CU_ERROR_NO_DEVICE) {
        msg(err, cap, "no CUDA device");
        rt_cuda_unload(cu);
        return NULL;
    }
    if (!rt_cu_check(cu, r, "cuInit(0)", __FILE__ ":" RT_CU_STR(__LINE__), err, cap) || !RT_CU_CHECK(cu, cu->DriverGetVersion(&cu->driver_version), err, cap) ||
        !RT_CU_CHECK(cu, cu->DeviceGetCount(&cu->device_count), err, cap)) {
        rt_cuda_unload(cu);
        return NULL;
    }
    if (cu->device_count == 0) {
        msg(err, cap, "no CUDA device");
        rt_cuda_unload(cu);
        return NULL;
    }
    return cu;
}

void rt_cuda_unload(rt_cuda *cu)
{
    if (!cu)
        return;
    if (cu->lib)
        dlclose(cu->lib);
    free(cu);
}

bool rt_cuda_load_ptx(const rt_cuda *cu, const char *ptx, rt_cu_module *mod, char *err, size_t cap)
{
    enum { LOG = 16384 };
    char *info = calloc(1, LOG), *error = calloc(1, LOG);
    if (!info || !error) {
        free(info);
        free(error);
        msg(err, cap, "out of memory");
        return false;
    }
    CUjit_option opts[] = {RT_CU_JIT_ERROR_LOG_BUFFER, RT_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, RT_CU_JIT_INFO_LOG_BUFFER,
                  RT_CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, RT_CU_JIT_LOG_VERBOSE};
    void *vals[] = {error, (void *)(uintptr_t)LOG, info, (void *)(uintptr_t)LOG, (void *)(uintptr_t)0};
    *mod = NULL;
    bool ok = RT_CU_CHECK(cu, cu->ModuleLoadDataEx(mod, ptx, 5, opts, vals), err, cap);
    if (!ok && error[0] && err) {
        size_t n = strlen(err);
        msg(err + n, cap - n, "\nptxas log:\n%s", error);
    }
    free(info);
    free(error);
    return ok;
}

void rt_cuda_list_devices(FILE *out)
{
    char err[512];
    rt_cuda *cu = rt_cuda_load(err, sizeof err);
    if (!cu) {
        fprintf(out, "cuda: %s\n", err);
        return;
    }
    for (int i = 0; i < cu->device_count; i++) {
        rt_cu_device dev;
        char name[256] = "";
        size_t mem = 0;
        int major = 0, minor = 0, sms = 0;
        if (!RT_CU_CHECK(cu, cu->DeviceGet(&dev, i), err, sizeof err) ||
            !RT_CU_CHECK(cu, cu->DeviceGetName(name, (int)sizeof name, dev), err, sizeof err) ||
            !RT_CU_CHECK(cu, cu->DeviceTotalMem(&mem, dev), err, sizeof err) ||
            !RT_CU_CHECK(cu, cu->DeviceGetAttribute(&major, RT_CU_ATTR_COMPUTE_CAPABILITY_MAJOR, dev), err, sizeof err) ||
            !RT_CU_CHECK(cu, cu->DeviceGetAttribute(&minor, RT_CU_ATTR_COMPUTE_CAPABILITY_MINOR, dev), err, sizeof err) ||
            !RT_CU_CHECK(cu, cu->DeviceGetAttribute(&sms, RT_CU_ATTR_MULTIPROCESSOR_COUNT, dev), err, sizeof err)) {
            fprintf(out, "cuda: device %d: %s\n", i, err);
            continue;
        }
        fprintf(out, "cuda: device %d: %s, sm_%d%d, %d SMs, %.1f GiB, driver %d.%d\n", i, name, major, minor, sms,
                (double)mem / (1024.0 * 1024.0 * 1024.0), cu->driver_version / 1000, cu->driver_version % 1000 / 10);
    }
    rt_cuda_unload(cu);
}
