/* opencl.c — the OpenCL device runtime (opencl.h) over the ICD loader (OpenCL 1.2 API, so
 * that every ICD — PoCL, NVIDIA, ROCm, Intel — serves it).
 *
 * Every OpenCL call goes through CL_CALL / CL_OK, which report "OpenCL clFoo failed at
 * file:line: CL_ERROR_NAME (code)" plus a hint where one helps. Programs are cached per rt_ocl
 * by an FNV-1a hash of (source, options, device identity): in memory for the rt_ocl's life,
 * and on disk as the device's program binary (LOOMOCL1 header, hash, size, bytes) written to a
 * temporary file and renamed into place, so concurrent processes never see half a file. A
 * binary that fails to load falls back to a build from source.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include "runtime/opencl/opencl.h"

#include <CL/cl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/arena.h"
#include "ir/ir.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

/* LeakSanitizer (ASan builds): the OpenCL implementation's own allocations that live until
 * exit (PoCL's device and compiler state, the ICD loader's tables, CLBlast's caches) are not
 * ours. Every program that opens an OpenCL device links this file, so it carries the hook. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libpocl\nleak:libOpenCL\nleak:libclblast\n"; }

/* ---- errors --------------------------------------------------------------------------------- */

static const char *cl_error_name(cl_int e)
{
    switch (e) {
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
    E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
    E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
    E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
    E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case CL_PLATFORM_NOT_FOUND_KHR: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

static const char *cl_error_hint(cl_int e)
{
    switch (e) {
    case CL_PLATFORM_NOT_FOUND_KHR:
        return "no OpenCL ICD is installed or none loads: see /etc/OpenCL/vendors and OCL_ICD_VENDORS "
               "(Debian: apt install pocl-opencl-icd for OpenCL on the CPU)";
    case CL_OUT_OF_RESOURCES:
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
        return "the device ran out of memory or resources (a smaller batch or sequence may fit)";
    case CL_INVALID_WORK_GROUP_SIZE:
        return "the local size exceeds what the device or kernel allows";
    default: return NULL;
    }
}

/* Reports a failed call; returns err == CL_SUCCESS. */
static bool cl_check(cl_int err, const char *call, const char *file, int line, ir_diag *d)
{
    if (err == CL_SUCCESS)
        return true;
    const char *hint = cl_error_hint(err);
    ir_diag_error(d, -1, 0, 0, "OpenCL %s failed at %s:%d: %s (%d)%s%s", call, file, line, cl_error_name(err),
                  (int)err, hint ? "\n  ---> HINT: " : "", hint ? hint : "");
    return false;
}

/* CL_CALL(d, clFoo, (args)): calls clFoo and checks its status. CL_OK(d, err, clFoo): checks
 * the errcode_ret of a creating call. */
#define CL_CALL(d, fn, args) cl_check(fn args, #fn, __FILE__, __LINE__, d)
#define CL_OK(d, err, fn) cl_check(err, #fn, __FILE__, __LINE__, d)

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* ---- platforms and devices ------------------------------------------------------------------- */

typedef struct {
    cl_program prog;
    char *source, *options;
    uint64_t hash;
    int n_kernels, cap_kernels;
    struct { char *name; cl_kernel k; } *kernels;
} ocl_prog_entry;

struct rt_ocl_program {
    ocl_prog_entry e;
};

struct rt_ocl {
    cl_platform_id platform;
    cl_device_id device;
    cl_context ctx;
    cl_command_queue queue;
    char *label;          /* "NAME (PLATFORM)" */
    char *identity;       /* platform, device, versions: part of the cache key */
    bool fp64;
    char *cache_dir;      /* NULL: no disk cache */
    int n_progs, cap_progs;
    rt_ocl_program **progs;
    rt_ocl_stats stats;
    rt_xfer xfer;         /* bytes written to and read from the device (rt_ocl_write/read) */
    int n_on_close;
    void (*on_close[8])(void); /* rt_ocl_on_close */
};

struct rt_ocl_buf {
    cl_mem mem;
    size_t size;
};

/* The platforms, malloc'd into *out (NULL when there are none). False on an error other than
 * "no platform". */
static bool get_platforms(cl_platform_id **out, cl_uint *n, ir_diag *d)
{
    *out = NULL;
    *n = 0;
    cl_int err = clGetPlatformIDs(0, NULL, n);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && *n == 0)) {
        *n = 0;
        return true;
    }
    if (!CL_OK(d, err, clGetPlatformIDs))
        return false;
    *out = calloc(*n, sizeof **out);
    if (!*out)
        ir_unreachable("out of memory");
    if (!CL_CALL(d, clGetPlatformIDs, (*n, *out, NULL))) {
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

/* The devices of platform p (all types), malloc'd into *out. */
static bool get_devices(cl_platform_id p, cl_device_id **out, cl_uint *n, ir_diag *d)
{
    *out = NULL;
    *n = 0;
    cl_int err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, n);
    if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && *n == 0)) {
        *n = 0;
        return true;
    }
    if (!CL_OK(d, err, clGetDeviceIDs))
        return false;
    *out = calloc(*n, sizeof **out);
    if (!*out)
        ir_unreachable("out of memory");
    if (!CL_CALL(d, clGetDeviceIDs, (p, CL_DEVICE_TYPE_ALL, *n, *out, NULL))) {
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

/* A string info value, malloc'd ("?" when the query fails). */
static char *platform_str(cl_platform_id p, cl_platform_info what)
{
    size_t n = 0;
    if (clGetPlatformInfo(p, what, 0, NULL, &n) != CL_SUCCESS || n == 0)
        return xstrdup("?");
    char *s = calloc(n + 1, 1);
    if (!s)
        ir_unreachable("out of memory");
    if (clGetPlatformInfo(p, what, n, s, NULL) != CL_SUCCESS)
        strcpy(s, "?");
    return s;
}

static char *device_str(cl_device_id dev, cl_device_info what)
{
    size_t n = 0;
    if (clGetDeviceInfo(dev, what, 0, NULL, &n) != CL_SUCCESS || n == 0)
        return xstrdup("?");
    char *s = calloc(n + 1, 1);
    if (!s)
        ir_unreachable("out of memory");
    if (clGetDeviceInfo(dev, what, n, s, NULL) != CL_SUCCESS)
        strcpy(s, "?");
    return s;
}

static bool device_fp64(cl_device_id dev)
{
    char *ext = device_str(dev, CL_DEVICE_EXTENSIONS);
    bool yes = strstr(ext, "cl_khr_fp64") != NULL;
    free(ext);
    return yes;
}

bool rt_ocl_parse_target(const char *target, int *platform, int *device, ir_diag *d)
{
    *platform = *device = -1;
    const char *s = target ? target : "";
    if (strncmp(s, "opencl", 6) != 0)
        goto bad;
    s += 6;
    for (int part = 0; part < 2 && *s == ':'; part++) {
        s++;
        if (*s < '0' || *s > '9')
            goto bad;
        long v = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (*s++ - '0');
            if (v > 1000000)
                goto bad;
        }
        *(part == 0 ? platform : device) = (int)v;
    }
    if (*s)
        goto bad;
    return true;
bad:
    ir_diag_error(d, -1, 0, 0, "bad OpenCL target '%s': expected opencl[:PLATFORM[:DEVICE]] (indices from "
                               "0, in the ICD loader's order)", target ? target : "");
    *platform = *device = -1;
    return false;
}

static const char *type_name(cl_device_type t)
{
    return t & CL_DEVICE_TYPE_GPU ? "GPU" : t & CL_DEVICE_TYPE_CPU ? "CPU" : t & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator" : "other";
}

bool rt_ocl_list_devices(FILE *out, ir_diag *d)
{
    cl_platform_id *ps;
    cl_uint np;
    if (!get_platforms(&ps, &np, d))
        return false;
    if (np == 0)
        fprintf(out, "no OpenCL platform found (no ICD installed or loadable: see /etc/OpenCL/vendors)\n");
    bool ok = true;
    for (cl_uint p = 0; p < np; p++) {
        char *pname = platform_str(ps[p], CL_PLATFORM_NAME), *pver = platform_str(ps[p], CL_PLATFORM_VERSION);
        fprintf(out, "opencl:%u  platform '%s' (%s)\n", p, pname, pver);
        cl_device_id *ds;
        cl_uint nd;
        if (!get_devices(ps[p], &ds, &nd, d)) {
            ok = false;
            nd = 0;
        }
        if (nd == 0)
            fprintf(out, "  (no devices)\n");
        for (cl_uint i = 0; i < nd; i++) {
            char *name = device_str(ds[i], CL_DEVICE_NAME), *ver = device_str(ds[i], CL_DEVICE_VERSION);
            cl_device_type t = 0;
            cl_uint cu = 0;
            cl_ulong mem = 0;
            clGetDeviceInfo(ds[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            clGetDeviceInfo(ds[i], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            clGetDeviceInfo(ds[i], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            fprintf(out, "opencl:%u:%u  %s — %s, %s, %u compute units, %.1f GiB, fp64 %s\n", p, i, name,
                    type_name(t), ver, cu, (double)mem / (1024.0 * 1024 * 1024), device_fp64(ds[i]) ? "yes" : "no");
            free(name);
            free(ver);
        }
        free(ds);
        free(pname);
        free(pver);
    }
    free(ps);
    return ok;
}

static char *default_cache_dir(void)
{
    const char *env = getenv("LOOM_OPENCL_CACHE");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0))
        return NULL;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[4096];
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/loom/opencl", xdg);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.cache/loom/opencl", home);
    else
        return NULL;
    return xstrdup(buf);
}

rt_ocl *rt_ocl_open(const char *target, ir_diag *d)
{
    int want_p, want_d;
    if (!rt_ocl_parse_target(target, &want_p, &want_d, d))
        return NULL;
    cl_platform_id *ps;
    cl_uint np;
    if (!get_platforms(&ps, &np, d))
        return NULL;
    if (np == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: no OpenCL platform found: no OpenCL ICD is installed or none loads "
                                   "(see /etc/OpenCL/vendors and OCL_ICD_VENDORS; Debian: apt install "
                                   "pocl-opencl-icd)", target);
        return NULL;
    }
    if (want_p >= (int)np) {
        ir_diag_error(d, -1, 0, 0, "%s: no platform %d (%u platform%s)", target, want_p, np, np == 1 ? "" : "s");
        free(ps);
        return NULL;
    }
    cl_platform_id plat = NULL;
    cl_device_id dev = NULL;
    bool ok = true;
    for (cl_uint p = want_p >= 0 ? (cl_uint)want_p : 0; p < np && !dev && ok; p++) {
        cl_device_id *ds;
        cl_uint nd;
        if (!get_devices(ps[p], &ds, &nd, d)) {
            ok = false;
            break;
        }
        if (want_d >= 0 && want_d >= (int)nd) {
            char *pname = platform_str(ps[p], CL_PLATFORM_NAME);
            ir_diag_error(d, -1, 0, 0, "%s: no device %d on platform %u '%s' (%u device%s)", target, want_d, p, pname,
                          nd, nd == 1 ? "" : "s");
            free(pname);
            ok = false;
        } else if (nd > 0) {
            plat = ps[p];
            dev = ds[want_d >= 0 ? want_d : 0];
        }
        free(ds);
        if (want_p >= 0)
            break;
    }
    free(ps);
    if (!ok)
        return NULL;
    if (!dev) {
        ir_diag_error(d, -1, 0, 0, "%s: no OpenCL device%s (the installed ICDs offer none)", target,
                      want_p >= 0 ? " on that platform" : " on any platform");
        return NULL;
    }
    rt_ocl *o = calloc(1, sizeof *o);
    if (!o)
        ir_unreachable("out of memory");
    o->platform = plat;
    o->device = dev;
    char *dname = device_str(dev, CL_DEVICE_NAME), *pname = platform_str(plat, CL_PLATFORM_NAME);
    char *dver = device_str(dev, CL_DEVICE_VERSION), *drv = device_str(dev, CL_DRIVER_VERSION);
    char *pver = platform_str(plat, CL_PLATFORM_VERSION);
    size_t n = strlen(dname) + strlen(pname) + 8;
    o->label = malloc(n);
    size_t m = n + strlen(dver) + strlen(drv) + strlen(pver) + 8;
    o->identity = malloc(m);
    if (!o->label || !o->identity)
        ir_unreachable("out of memory");
    snprintf(o->label, n, "%s (%s)", dname, pname);
    snprintf(o->identity, m, "%s|%s|%s|%s|%s", pname, pver, dname, dver, drv);
    free(dname), free(pname), free(dver), free(drv), free(pver);
    o->fp64 = device_fp64(dev);
    o->cache_dir = default_cache_dir();
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    o->ctx = clCreateContext(props, 1, &dev, NULL, NULL, &err);
    if (!CL_OK(d, err, clCreateContext)) {
        rt_ocl_close(o);
        return NULL;
    }
    o->queue = clCreateCommandQueue(o->ctx, dev, 0, &err);
    if (!CL_OK(d, err, clCreateCommandQueue)) {
        rt_ocl_close(o);
        return NULL;
    }
    return o;
}

static void prog_free(rt_ocl_program *p)
{
    for (int i = 0; i < p->e.n_kernels; i++) {
        clReleaseKernel(p->e.kernels[i].k);
        free(p->e.kernels[i].name);
    }
    free(p->e.kernels);
    if (p->e.prog)
        clReleaseProgram(p->e.prog);
    free(p->e.source);
    free(p->e.options);
    free(p);
}

void rt_ocl_close(rt_ocl *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n_progs; i++)
        prog_free(o->progs[i]);
    free(o->progs);
    if (o->queue) {
        clFinish(o->queue);
        clReleaseCommandQueue(o->queue);
    }
    for (int i = 0; i < o->n_on_close; i++)
        o->on_close[i]();
    if (o->ctx)
        clReleaseContext(o->ctx);
    free(o->label);
    free(o->identity);
    free(o->cache_dir);
    free(o);
}

void rt_ocl_on_close(rt_ocl *o, void (*fn)(void))
{
    for (int i = 0; i < o->n_on_close; i++)
        if (o->on_close[i] == fn)
            return;
    if (o->n_on_close == (int)(sizeof o->on_close / sizeof *o->on_close))
        ir_unreachable("rt_ocl_on_close: too many functions");
    o->on_close[o->n_on_close++] = fn;
}

const char *rt_ocl_device_name(const rt_ocl *o) { return o->label; }
bool rt_ocl_has_fp64(const rt_ocl *o) { return o->fp64; }
rt_ocl_stats rt_ocl_stats_get(const rt_ocl *o) { return o->stats; }

void rt_ocl_set_cache_dir(rt_ocl *o, const char *dir)
{
    free(o->cache_dir);
    o->cache_dir = dir ? xstrdup(dir) : NULL;
}

/* ---- buffers -------------------------------------------------------------------------------- */

rt_ocl_buf *rt_ocl_alloc(rt_ocl *o, size_t bytes, ir_diag *d)
{
    cl_int err;
    cl_mem m = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
    if (!CL_OK(d, err, clCreateBuffer))
        return NULL;
    rt_ocl_buf *b = malloc(sizeof *b);
    if (!b)
        ir_unreachable("out of memory");
    b->mem = m;
    b->size = bytes;
    return b;
}

void rt_ocl_free(rt_ocl_buf *b)
{
    if (!b)
        return;
    clReleaseMemObject(b->mem);
    free(b);
}

size_t rt_ocl_size(const rt_ocl_buf *b) { return b->size; }

static bool range_ok(const rt_ocl_buf *b, size_t offset, size_t bytes, const char *what, ir_diag *d)
{
    if (offset <= b->size && bytes <= b->size - offset)
        return true;
    ir_diag_error(d, -1, 0, 0, "OpenCL %s of %zu bytes at offset %zu: the buffer holds %zu bytes", what, bytes,
                  offset, b->size);
    return false;
}

bool rt_ocl_write(rt_ocl *o, rt_ocl_buf *b, size_t offset, const void *src, size_t bytes, ir_diag *d)
{
    if (!range_ok(b, offset, bytes, "write", d))
        return false;
    o->xfer.h2d += (int64_t)bytes;
    return bytes == 0 ||
           CL_CALL(d, clEnqueueWriteBuffer, (o->queue, b->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL));
}

bool rt_ocl_write_async(rt_ocl *o, rt_ocl_buf *b, size_t offset, const void *src, size_t bytes, ir_diag *d)
{
    if (!range_ok(b, offset, bytes, "write", d))
        return false;
    o->xfer.h2d += (int64_t)bytes;
    return bytes == 0 ||
           CL_CALL(d, clEnqueueWriteBuffer, (o->queue, b->mem, CL_FALSE, offset, bytes, src, 0, NULL, NULL));
}

bool rt_ocl_read(rt_ocl *o, const rt_ocl_buf *b, size_t offset, void *dst, size_t bytes, ir_diag *d)
{
    if (!range_ok(b, offset, bytes, "read", d))
        return false;
    o->xfer.d2h += (int64_t)bytes;
    return bytes == 0 ||
           CL_CALL(d, clEnqueueReadBuffer, (o->queue, b->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL));
}

bool rt_ocl_zero(rt_ocl *o, rt_ocl_buf *b, ir_diag *d)
{
    const cl_uchar zero = 0;
    return CL_CALL(d, clEnqueueFillBuffer, (o->queue, b->mem, &zero, 1, 0, b->size ? b->size : 1, 0, NULL, NULL));
}

rt_xfer *rt_ocl_xfer(rt_ocl *o) { return &o->xfer; }

bool rt_ocl_copy(rt_ocl *o, const rt_ocl_buf *src, size_t src_offset, rt_ocl_buf *dst, size_t dst_offset,
                 size_t bytes, ir_diag *d)
{
    if (!range_ok(src, src_offset, bytes, "copy source", d) || !range_ok(dst, dst_offset, bytes, "copy target", d))
        return false;
    return bytes == 0 || CL_CALL(d, clEnqueueCopyBuffer,
                                 (o->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0, NULL, NULL));
}

void *rt_ocl_buf_mem(rt_ocl_buf *b) { return b->mem; }
void *rt_ocl_queue_ptr(rt_ocl *o) { return &o->queue; }
void *rt_ocl_device_id(rt_ocl *o) { return o->device; }

uint64_t rt_ocl_global_mem(const rt_ocl *o)
{
    cl_ulong mem = 0;
    clGetDeviceInfo(o->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    return mem;
}

/* ---- programs ------------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t prog_hash(const rt_ocl *o, const char *source, const char *options)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, source, strlen(source) + 1);
    h = fnv1a(h, options, strlen(options) + 1);
    return fnv1a(h, o->identity, strlen(o->identity) + 1);
}

/* The kernel whose definition encloses line `line` (1-based) of source, into buf: the last
 * "__kernel void NAME" at or before it. False if there is none. */
static bool kernel_at_line(const char *source, int line, char *buf, size_t cap)
{
    const char *p = source, *found = NULL;
    for (int l = 1; *p && l <= line; l++) {
        const char *eol = strchr(p, '\n');
        const char *k = strstr(p, "__kernel void ");
        if (k && (!eol || k < eol))
            found = k + strlen("__kernel void ");
        if (!eol)
            break;
        p = eol + 1;
    }
    if (!found)
        return false;
    size_t n = strspn(found, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    if (n == 0 || n >= cap)
        return false;
    memcpy(buf, found, n);
    buf[n] = 0;
    return true;
}

/* The source line of the first error in a build log, or 0: the first ":LINE:COL:" on a log
 * line that says "error" (clang's "FILE:12:5: error: ..." as NVIDIA and AMD print it, PoCL's
 * "error: FILE:12:5: ..."). */
static int first_error_line(const char *log)
{
    for (const char *line = log; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        if (strstr(buf, "error"))
            for (const char *p = strchr(buf, ':'); p; p = strchr(p + 1, ':')) {
                char *e1, *e2;
                long l = strtol(p + 1, &e1, 10);
                if (e1 > p + 1 && *e1 == ':' && (strtol(e1 + 1, &e2, 10), e2 > e1 + 1) && *e2 == ':' && l > 0)
                    return (int)l;
            }
        if (!eol)
            break;
        line = eol + 1;
    }
    return 0;
}

/* Names of all kernels in source, comma-separated, into buf. */
static void kernel_names(const char *source, char *buf, size_t cap)
{
    buf[0] = 0;
    for (const char *k = strstr(source, "__kernel void "); k; k = strstr(k + 1, "__kernel void ")) {
        const char *nm = k + strlen("__kernel void ");
        size_t n = strspn(nm, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        size_t len = strlen(buf);
        if (len + n + 3 >= cap)
            break;
        if (len)
            strcat(buf, ", ");
        strncat(buf, nm, n);
    }
    if (!buf[0])
        snprintf(buf, cap, "(none)");
}

static char *build_log(rt_ocl *o, cl_program prog)
{
    size_t n = 0;
    if (clGetProgramBuildInfo(prog, o->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) != CL_SUCCESS || n == 0)
        return xstrdup("(no build log)");
    char *log = calloc(n + 1, 1);
    if (!log)
        ir_unreachable("out of memory");
    if (clGetProgramBuildInfo(prog, o->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS)
        strcpy(log, "(no build log)");
    return log;
}

static void cache_path(const rt_ocl *o, uint64_t hash, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016" PRIx64 ".bin", o->cache_dir, hash);
}

static const char CACHE_MAGIC[8] = {'L', 'O', 'O', 'M', 'O', 'C', 'L', '1'};

/* A program from the disk cache, built for the device; NULL when absent or unusable. */
static cl_program load_cached(rt_ocl *o, uint64_t hash, const char *options)
{
    if (!o->cache_dir)
        return NULL;
    char path[4200];
    cache_path(o, hash, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char magic[8];
    uint64_t h = 0, size = 0;
    unsigned char *bin = NULL;
    cl_program prog = NULL;
    if (fread(magic, 1, 8, f) == 8 && memcmp(magic, CACHE_MAGIC, 8) == 0 && fread(&h, sizeof h, 1, f) == 1 &&
        h == hash && fread(&size, sizeof size, 1, f) == 1 && size > 0 && size < (1ull << 31)) {
        bin = malloc((size_t)size);
        if (bin && fread(bin, 1, (size_t)size, f) == size) {
            size_t len = (size_t)size;
            const unsigned char *bins[1] = {bin};
            cl_int status, err;
            prog = clCreateProgramWithBinary(o->ctx, 1, &o->device, &len, bins, &status, &err);
            if (err != CL_SUCCESS || status != CL_SUCCESS) {
                if (prog)
                    clReleaseProgram(prog);
                prog = NULL;
            } else if (clBuildProgram(prog, 1, &o->device, options, NULL, NULL) != CL_SUCCESS) {
                clReleaseProgram(prog);
                prog = NULL;
            }
        }
    }
    free(bin);
    fclose(f);
    return prog;
}

/* mkdir -p; false if dir does not exist afterwards. */
static bool make_dirs(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
    struct stat st;
    return stat(tmp, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Stores prog's device binary in the disk cache (best effort: a failure only costs a rebuild
 * next time). */
static void store_cached(rt_ocl *o, uint64_t hash, cl_program prog)
{
    if (!o->cache_dir || !make_dirs(o->cache_dir))
        return;
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
        free(bin);
        return;
    }
    char path[4200], tmp[4300];
    cache_path(o, hash, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd >= 0) {
        FILE *f = fdopen(fd, "wb");
        uint64_t h = hash, sz = size;
        bool ok = f && fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&h, sizeof h, 1, f) == 1 &&
                  fwrite(&sz, sizeof sz, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
        if (f)
            ok &= fclose(f) == 0;
        else
            close(fd);
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(bin);
}

rt_ocl_program *rt_ocl_build(rt_ocl *o, const char *source, const char *options, ir_diag *d)
{
    if (!options)
        options = "";
    uint64_t hash = prog_hash(o, source, options);
    for (int i = 0; i < o->n_progs; i++) {
        rt_ocl_program *p = o->progs[i];
        if (p->e.hash == hash && strcmp(p->e.source, source) == 0 && strcmp(p->e.options, options) == 0) {
            o->stats.memory_hits++;
            return p;
        }
    }
    char names[512];
    if (!o->fp64 && strstr(source, "cl_khr_fp64")) {
        kernel_names(source, names, sizeof names);
        ir_diag_error(d, -1, 0, 0, "OpenCL device %s does not support f64 (no cl_khr_fp64), which kernel%s %s need%s",
                      o->label, strchr(names, ',') ? "s" : "", names, strchr(names, ',') ? "" : "s");
        return NULL;
    }
    cl_program prog = load_cached(o, hash, options);
    if (prog) {
        o->stats.disk_hits++;
    } else {
        cl_int err;
        size_t len = strlen(source);
        prog = clCreateProgramWithSource(o->ctx, 1, &source, &len, &err);
        if (!CL_OK(d, err, clCreateProgramWithSource))
            return NULL;
        err = clBuildProgram(prog, 1, &o->device, options, NULL, NULL);
        if (err == CL_BUILD_PROGRAM_FAILURE || err == CL_COMPILE_PROGRAM_FAILURE) {
            char *log = build_log(o, prog);
            int line = first_error_line(log);
            char where[256];
            if (line > 0 && kernel_at_line(source, line, where, sizeof where)) {
                ir_diag_error(d, -1, 0, 0, "OpenCL build failed for kernel %s (source line %d) on %s:\n%s", where,
                              line, o->label, log);
            } else {
                kernel_names(source, names, sizeof names);
                ir_diag_error(d, -1, 0, 0, "OpenCL build failed for the module of kernel%s %s on %s:\n%s",
                              strchr(names, ',') ? "s" : "", names, o->label, log);
            }
            free(log);
            clReleaseProgram(prog);
            return NULL;
        }
        if (!CL_OK(d, err, clBuildProgram)) {
            clReleaseProgram(prog);
            return NULL;
        }
        o->stats.built++;
        store_cached(o, hash, prog);
    }
    rt_ocl_program *p = calloc(1, sizeof *p);
    if (!p)
        ir_unreachable("out of memory");
    p->e.prog = prog;
    p->e.hash = hash;
    p->e.source = xstrdup(source);
    p->e.options = xstrdup(options);
    ir_grow((void **)&o->progs, &o->cap_progs, o->n_progs + 1, sizeof *o->progs);
    o->progs[o->n_progs++] = p;
    return p;
}

/* The kernel object `name` of p, created on first use. */
static cl_kernel get_kernel(rt_ocl_program *p, const char *name, ir_diag *d)
{
    for (int i = 0; i < p->e.n_kernels; i++)
        if (strcmp(p->e.kernels[i].name, name) == 0)
            return p->e.kernels[i].k;
    cl_int err;
    cl_kernel k = clCreateKernel(p->e.prog, name, &err);
    if (err == CL_INVALID_KERNEL_NAME) {
        char names[512];
        kernel_names(p->e.source, names, sizeof names);
        ir_diag_error(d, -1, 0, 0, "OpenCL program has no kernel %s (it has %s)", name, names);
        return NULL;
    }
    if (!CL_OK(d, err, clCreateKernel))
        return NULL;
    ir_grow((void **)&p->e.kernels, &p->e.cap_kernels, p->e.n_kernels + 1, sizeof *p->e.kernels);
    p->e.kernels[p->e.n_kernels].name = xstrdup(name);
    p->e.kernels[p->e.n_kernels].k = k;
    p->e.n_kernels++;
    return k;
}

bool rt_ocl_launch(rt_ocl *o, rt_ocl_program *p, const char *name, const rt_ocl_arg *args, int n, size_t groups,
                   size_t local, ir_diag *d)
{
    cl_kernel k = get_kernel(p, name, d);
    if (!k)
        return false;
    cl_uint nargs = 0;
    if (!CL_CALL(d, clGetKernelInfo, (k, CL_KERNEL_NUM_ARGS, sizeof nargs, &nargs, NULL)))
        return false;
    if ((int)nargs != n) {
        ir_diag_error(d, -1, 0, 0, "OpenCL kernel %s takes %u arguments, given %d", name, nargs, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        bool ok;
        if (args[i].buf) {
            ok = CL_CALL(d, clSetKernelArg, (k, (cl_uint)i, sizeof(cl_mem), &args[i].buf->mem));
        } else {
            cl_long v = args[i].scalar;
            ok = CL_CALL(d, clSetKernelArg, (k, (cl_uint)i, sizeof v, &v));
        }
        if (!ok) {
            ir_diag_note(d, -1, 0, 0, "argument %d of OpenCL kernel %s", i, name);
            return false;
        }
    }
    size_t max_local = 0;
    if (!CL_CALL(d, clGetKernelWorkGroupInfo, (k, o->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof max_local, &max_local,
                                               NULL)))
        return false;
    if (local < 1)
        local = 1;
    if (max_local >= 1 && local > max_local)
        local = max_local;
    if (groups < 1)
        groups = 1;
    if (groups > SIZE_MAX / local) {
        ir_diag_error(d, -1, 0, 0, "OpenCL kernel %s: %zu groups of %zu work-items overflow", name, groups, local);
        return false;
    }
    size_t global = groups * local;
    return CL_CALL(d, clEnqueueNDRangeKernel, (o->queue, k, 1, NULL, &global, &local, 0, NULL, NULL));
}

bool rt_ocl_finish(rt_ocl *o, ir_diag *d) { return CL_CALL(d, clFinish, (o->queue)); }
