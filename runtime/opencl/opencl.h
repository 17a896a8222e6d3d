/* opencl.h — the OpenCL device runtime: platforms and devices through the ICD loader, target
 * selection (`--target opencl[:PLATFORM[:DEVICE]]`), one context + in-order queue on one
 * device, buffers with blocking reads and writes, programs built from OpenCL C source (cached
 * by a hash of the source: in memory, and as device binaries on disk under
 * $XDG_CACHE_HOME/loom/opencl), and 1-D kernel launches with arguments in kernel IR order.
 *
 * No OpenCL type appears here: buffers and programs are opaque. Every OpenCL call goes through
 * a check that reports the call, file:line and the OpenCL error name through an ir_diag; a
 * failed build reports the compiler's build log and the kernel the first error lies in. The
 * runtime knows nothing of kernel IR: codegen's cg_opencl_source and cg_opencl_launch_dims
 * give the source and the geometry.
 */
#ifndef LOOM_RT_OPENCL_H
#define LOOM_RT_OPENCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/diag.h"
#include "runtime/exec.h"

typedef struct rt_ocl rt_ocl;                 /* a device with its context and queue */
typedef struct rt_ocl_buf rt_ocl_buf;         /* a device buffer */
typedef struct rt_ocl_program rt_ocl_program; /* a built program; owned by its rt_ocl */

/* Parses a target "opencl", "opencl:P" or "opencl:P:D" (P, D decimal indices). *platform and
 * *device are -1 where not given. False (reported: "bad OpenCL target 'x': ...") otherwise. */
bool rt_ocl_parse_target(const char *target, int *platform, int *device, ir_diag *d);

/* Opens the device a target names (see rt_ocl_parse_target): with no platform given, the
 * first platform that has a device; with no device given, the platform's first device. Errors
 * (reported, NULL returned): no ICD or platform ("no OpenCL platform found ..."), "opencl:7:
 * no platform 7 (2 platforms)", "opencl:0:3: no device 3 on platform 0 'NAME' (1 device)",
 * no device at all. The disk cache is on unless LOOM_OPENCL_CACHE=0; see rt_ocl_set_cache_dir. */
rt_ocl *rt_ocl_open(const char *target, ir_diag *d);
void rt_ocl_close(rt_ocl *o);
/* Calls fn just before o's context is released by rt_ocl_close (once however often it is
 * registered): a library that caches programs of the context (CLBlast, in gemm_opencl.c)
 * frees them then. */
void rt_ocl_on_close(rt_ocl *o, void (*fn)(void));

/* Prints every platform and its devices (index, name, vendor, version, type, compute units,
 * global memory, fp64 support), as "opencl:P:D  NAME ..." lines. False (reported) if the
 * platforms cannot be listed; no platform at all prints a line saying so and returns true. */
bool rt_ocl_list_devices(FILE *out, ir_diag *d);

/* "NAME (PLATFORM)" of the open device. */
const char *rt_ocl_device_name(const rt_ocl *o);
/* Whether the device supports cl_khr_fp64 (double). */
bool rt_ocl_has_fp64(const rt_ocl *o);

/* Program binaries are cached under dir (created on first use); NULL turns the disk cache off.
 * The default is $XDG_CACHE_HOME/loom/opencl, else $HOME/.cache/loom/opencl. */
void rt_ocl_set_cache_dir(rt_ocl *o, const char *dir);

/* ---- buffers ---------------------------------------------------------------------------- */
/* A device buffer of bytes (>= 1) bytes; NULL on error (reported). */
rt_ocl_buf *rt_ocl_alloc(rt_ocl *o, size_t bytes, ir_diag *d);
void rt_ocl_free(rt_ocl_buf *b);
size_t rt_ocl_size(const rt_ocl_buf *b);
/* Blocking copies of bytes at offset in b from/to host memory; the range must lie in b. */
bool rt_ocl_write(rt_ocl *o, rt_ocl_buf *b, size_t offset, const void *src, size_t bytes, ir_diag *d);
bool rt_ocl_read(rt_ocl *o, const rt_ocl_buf *b, size_t offset, void *dst, size_t bytes, ir_diag *d);

/* As rt_ocl_write, but returns once enqueued: src must stay unchanged until the queue has run
 * the copy (a later blocking call, rt_ocl_finish, waits for it). */
bool rt_ocl_write_async(rt_ocl *o, rt_ocl_buf *b, size_t offset, const void *src, size_t bytes, ir_diag *d);
/* Enqueues zeros over all of b. */
bool rt_ocl_zero(rt_ocl *o, rt_ocl_buf *b, ir_diag *d);
/* The bytes rt_ocl_write* and rt_ocl_read moved so far (every user of o). */
rt_xfer *rt_ocl_xfer(rt_ocl *o);

/* Enqueues a copy of bytes from src at src_offset to dst at dst_offset (in order with launches;
 * ranges checked; the same buffer only for disjoint ranges). */
bool rt_ocl_copy(rt_ocl *o, const rt_ocl_buf *src, size_t src_offset, rt_ocl_buf *dst, size_t dst_offset,
                 size_t bytes, ir_diag *d);

/* The OpenCL objects underneath, for libraries that take them (CLBlast): a cl_mem, a pointer
 * to the cl_command_queue, the cl_device_id. */
void *rt_ocl_buf_mem(rt_ocl_buf *b);
void *rt_ocl_queue_ptr(rt_ocl *o);
void *rt_ocl_device_id(rt_ocl *o);
/* The device's CL_DEVICE_GLOBAL_MEM_SIZE in bytes. */
uint64_t rt_ocl_global_mem(const rt_ocl *o);

/* ---- programs and launches ---------------------------------------------------------------- */
/* Builds source (NUL-terminated OpenCL C) for the device with build options (NULL: none), or
 * returns the same source's program built earlier on this rt_ocl (memory cache), or loads the
 * device binary cached on disk. The program lives until rt_ocl_close. A source that enables
 * cl_khr_fp64 on a device without it is an error saying so. A failed build reports
 * "OpenCL build failed for kernel NAME on DEVICE:" and the build log. NULL on error. */
rt_ocl_program *rt_ocl_build(rt_ocl *o, const char *source, const char *options, ir_diag *d);

/* One kernel argument: a buffer, or an i64 scalar (OpenCL long). */
typedef struct {
    rt_ocl_buf *buf; /* NULL for a scalar */
    int64_t scalar;
} rt_ocl_arg;

static inline rt_ocl_arg rt_ocl_arg_buf(rt_ocl_buf *b) { return (rt_ocl_arg){b, 0}; }
static inline rt_ocl_arg rt_ocl_arg_i64(int64_t v) { return (rt_ocl_arg){NULL, v}; }

/* Enqueues kernel `name` of p with args[0..n) (their number and kinds must match the kernel's
 * parameters) as groups work-groups of local work-items (1-D). If the device cannot run local
 * work-items of this kernel in a group, the largest size it can is used (codegen's kernels
 * work with any local size). Does not wait: reads wait, and so does rt_ocl_finish. */
bool rt_ocl_launch(rt_ocl *o, rt_ocl_program *p, const char *name, const rt_ocl_arg *args, int n, size_t groups,
                   size_t local, ir_diag *d);
/* Waits for everything enqueued. */
bool rt_ocl_finish(rt_ocl *o, ir_diag *d);

/* Counts for tests and --stats: builds from source, programs from the disk cache, memory
 * cache hits. */
typedef struct {
    int built, disk_hits, memory_hits;
} rt_ocl_stats;
rt_ocl_stats rt_ocl_stats_get(const rt_ocl *o);

#endif
