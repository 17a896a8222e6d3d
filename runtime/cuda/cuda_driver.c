/* cuda_driver.c — the CUDA driver API through dlopen/dlsym (see cuda_driver.h): loading and
 * resolving the entry points, the check function behind RT_CU_CHECK, PTX loading with the
 * JIT's logs, and the device listing. No CUDA header and no link-time dependency: a machine
 * without a driver gets a clear message, never a loader error.
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
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {35, "CUDA_ERROR_INSUFFICIENT_DRIVER", "CUDA driver version is insufficient for CUDA runtime version"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static const char *hint_for(rt_cu_result r)
{
    switch (r) {
    case 2: return "; hint: a smaller batch, or check nvidia-smi for other processes on the GPU";
    case 34: return "; hint: this libcuda is the CUDA toolkit's link stub, not the NVIDIA driver";
    case 35: case 222: return "; hint: the NVIDIA driver is older than the PTX ISA version asked for (cg_ptx_options.ptx)";
    case 100: return "; hint: check CUDA_VISIBLE_DEVICES and nvidia-smi";
    case 218: case 209: return "; hint: the PTX targets a newer GPU than this one (cg_ptx_options.sm)";
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

/* One entry point: the field, the symbol names to try (the first a driver has wins). */
typedef struct {
    size_t offset;
    const char *sym[2];
} entry;

#define E(field, ...) {offsetof(rt_cuda, field), {__VA_ARGS__}}
static const entry entries[] = {
    E(Init, "cuInit"),
    E(DriverGetVersion, "cuDriverGetVersion"),
    E(DeviceGetCount, "cuDeviceGetCount"),
    E(DeviceGet, "cuDeviceGet"),
    E(DeviceGetName, "cuDeviceGetName"),
    E(DeviceTotalMem, "cuDeviceTotalMem_v2"),
    E(DeviceGetAttribute, "cuDeviceGetAttribute"),
    E(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    E(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
    E(CtxSetCurrent, "cuCtxSetCurrent"),
    E(CtxSynchronize, "cuCtxSynchronize"),
    E(ModuleLoadDataEx, "cuModuleLoadDataEx"),
    E(ModuleUnload, "cuModuleUnload"),
    E(ModuleGetFunction, "cuModuleGetFunction"),
    E(LaunchKernel, "cuLaunchKernel"),
    E(MemAlloc, "cuMemAlloc_v2"),
    E(MemFree, "cuMemFree_v2"),
    E(MemcpyHtoD, "cuMemcpyHtoD_v2"),
    E(MemcpyDtoH, "cuMemcpyDtoH_v2"),
    E(MemsetD8, "cuMemsetD8_v2"),
    E(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
    E(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
    E(MemGetInfo, "cuMemGetInfo_v2"),
    E(StreamCreate, "cuStreamCreate"),
    E(StreamDestroy, "cuStreamDestroy_v2"),
    E(StreamSynchronize, "cuStreamSynchronize"),
    E(EventCreate, "cuEventCreate"),
    E(EventDestroy, "cuEventDestroy_v2"),
    E(EventRecord, "cuEventRecord"),
    E(EventSynchronize, "cuEventSynchronize"),
    E(EventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime"), /* _v2 from CUDA 12.8 */
    E(GetErrorName, "cuGetErrorName"),
    E(GetErrorString, "cuGetErrorString"),
};
#undef E

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
    int opts[] = {RT_CU_JIT_ERROR_LOG_BUFFER, RT_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, RT_CU_JIT_INFO_LOG_BUFFER,
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
