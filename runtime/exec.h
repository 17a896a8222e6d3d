/* exec.h — the plan walker: the one executor core, over a table of backend operations.
 *
 * A walker runs a plan (plan.h) on one device. Everything that does not depend on the device
 * is here: which buffer lives where (the arena from the memory plan, params and inputs bound
 * by name to caller memory or to device memory, outputs), binding and reading back, the step
 * loop and its dispatch, id and cache-position checks, library steps run as their kernels,
 * profiling by step kind and transfer counts. A backend (runtime/cpu, runtime/cuda,
 * runtime/opencl) supplies an rt_backend_ops table — memory (alloc, free, write, read, copy),
 * kernels (prepare, launch), GEMMs, events and sync, and optionally its own routines for
 * library steps — and nothing else: the backend-neutral logic exists once.
 *
 * Memory. Device memory is named by rt_mem: an allocation of the backend (opaque: a host
 * pointer on the CPU, a cl_mem wrapper on OpenCL, a device address on CUDA) and a byte offset.
 * A host backend (ops->host) binds params and inputs to the caller's memory in place; a device
 * backend copies host data into its own buffer at bind time (the caller's memory may change
 * afterwards). Any backend can bind a param, input or output to device memory someone else owns
 * (rt_walker_bind_mem): that is how programs hand data to each other without the host —
 * training's update writes the params the next step's gradient program reads, generation's
 * prefill and decode share the KV cache.
 *
 * Checks. A gather's ids and a cache write's position are range-checked before the kernels
 * index with them (plan.h CHECK_IDS, WRITE_ROWS). Where the host bound the buffer, the walker
 * checks the host data at bind time (no transfer) and reports at the run; for device-resident
 * or computed values it reads them back (a synchronization and a few bytes). A backend may
 * check natively instead (the CPU reads its memory).
 *
 * Runs. rt_walker_run enqueues every step in order and, unless the walker is asynchronous
 * (rt_walker_set_async), waits for the device; reading an output back waits anyway. Errors of
 * asynchronous device work surface at the next wait. One run at a time per walker; walkers
 * that share a device and its queue run in the order their runs were enqueued.
 */
#ifndef LOOM_RUNTIME_EXEC_H
#define LOOM_RUNTIME_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/exec_stats.h"
#include "plan/plan.h"

/* A place in device memory: an allocation of the backend and a byte offset into it. */
typedef struct {
    void *mem;
    size_t off;
} rt_mem;

static inline rt_mem rt_mem_plus(rt_mem m, size_t bytes) { return (rt_mem){m.mem, m.off + bytes}; }

/* Bytes moved between host and device, counted by the device's write and read. */
typedef struct {
    int64_t h2d, d2h;
} rt_xfer;

typedef struct rt_walker rt_walker;

/* A backend's operations. dev is the backend's state for this walker (rt_walker_new's dev). */
typedef struct rt_backend_ops {
    const char *name;  /* "cpu", "opencl", "cuda": in messages */
    bool host;         /* device memory is host memory: bind references the caller's memory */
    /* memory: alloc returns a zeroed allocation of bytes (>= 1) or NULL (reported) */
    void *(*alloc)(void *dev, size_t bytes, ir_diag *d);
    void (*free)(void *dev, void *mem);
    /* host → device (ordered after what was enqueued; src may be reused on return) and device
     * → host (waits for what was enqueued); both count their bytes in the device's rt_xfer */
    bool (*write)(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d);
    bool (*read)(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d);
    /* host → device returning once enqueued: src must stay unchanged until the queue ran it
     * (NULL: write) */
    bool (*write_async)(void *dev, rt_mem dst, const void *src, size_t bytes, ir_diag *d);
    bool (*copy)(void *dev, rt_mem dst, rt_mem src, size_t bytes, ir_diag *d);
    /* kernels: kernel prepares plan kernel k (its handle), launch runs it over args[k->n_args]
     * (each argument's element 0) */
    void *(*kernel)(void *dev, const rt_plan_kernel *k, ir_diag *d);
    void (*kernel_free)(void *dev, void *handle);
    bool (*launch)(void *dev, void *handle, const rt_plan_kernel *k, const rt_mem *args, ir_diag *d);
    /* GEMM steps: gemm_prepare (may be NULL) once per step; gemm runs C = op(A)op(B) + bias
     * (refs a, b, c, bias; bias.mem NULL: none) and, with an epilogue kernel (epi the handle,
     * epi_args its arguments), that kernel after the GEMM wrote C: the backend may apply it
     * itself as it sees fit (the CPU per range of rows, cuBLASLt in its own epilogue) */
    void *(*gemm_prepare)(void *dev, const rt_plan_gemm *g, ir_diag *d);
    /* gemm reads a quantized B's codes (plan.h: qbits); without, such a step runs its library
     * kernel (codegen/library.c), then its epilogue kernel */
    bool gemm_codes;
    void (*gemm_free)(void *dev, void *h);
    bool (*gemm)(void *dev, void *h, const rt_plan_gemm *g, const rt_mem abcb[4], void *epi, const rt_mem *epi_args,
                 ir_diag *d);
    /* a routine of the backend's own for step s of a kind (NULL: the walker's default — a
     * library step's kernels, GEMMs through gemm, checks with the walker's host-side logic);
     * w gives the step's memory and prepared kernels */
    bool (*native[RT_STEP_KIND_COUNT])(void *dev, rt_walker *w, int s, ir_diag *d);
    /* waits for everything enqueued */
    bool (*sync)(void *dev, ir_diag *d);
    /* timing: an event records a point in the device's queue; ms is the time between two
     * recorded events (after a sync) */
    void *(*event_new)(void *dev);
    void (*event_free)(void *dev, void *ev);
    bool (*event_record)(void *dev, void *ev, ir_diag *d);
    double (*event_ms)(void *dev, void *a, void *b);
    /* the device's transfer counts (shared by every walker on the device) */
    rt_xfer *(*xfer)(void *dev);
    /* where a run failed: "on DEVICE NAME" for messages */
    const char *(*where)(void *dev);
} rt_backend_ops;

/* A walker for plan p (which must outlive it) on dev; with lib_kernels, library steps run their
 * kernels even where ops has a routine (the CPU op suite checks the kernel IR that way). The
 * arena and every kernel are prepared here. NULL on error, reported through d. */
rt_walker *rt_walker_new(const rt_plan *p, const rt_backend_ops *ops, void *dev, bool lib_kernels, ir_diag *d);
void rt_walker_free(rt_walker *w);

/* Binds host data (the buffer's dtype, numel elements) to every param or input called name
 * (see the top of this file). False (reported) if there is none or the copy fails. */
bool rt_walker_bind(rt_walker *w, const char *name, const void *data, ir_diag *d);
/* The same, but a device backend's copy is only enqueued: data must stay unchanged until the
 * device ran it (the next run's end, or any read). The host prepares the next batch while the
 * device computes. */
bool rt_walker_bind_async(rt_walker *w, const char *name, const void *data, ir_diag *d);
/* Binds device memory m (the walker's device; owned by the caller, alive while bound) to the
 * param, input or output called name, kind RT_BUF_PARAM/INPUT (either) or RT_BUF_OUTPUT. */
bool rt_walker_bind_mem(rt_walker *w, const char *name, bool output, rt_mem m, ir_diag *d);
/* The output called name in host memory (read back once after a run; on a host backend the
 * buffer itself), owned by the walker, valid until the next run; NULL if absent or the read
 * failed (reported). */
void *rt_walker_output(rt_walker *w, const char *name, ir_diag *d);
/* Where the output called name lives on the device (its own buffer or the memory bound to it);
 * .mem NULL if absent. */
rt_mem rt_walker_output_mem(rt_walker *w, const char *name, ir_diag *d);

/* Runs every step (see the top of this file). False on an unbound param or input, a failed
 * check or a backend error, reported with the step. */
bool rt_walker_run(rt_walker *w, ir_diag *d);
/* async: runs return once enqueued (the host waits when it reads). */
void rt_walker_set_async(rt_walker *w, bool async);
/* fn(ctx, s) after each step s of every run (NULL: none): on a host backend the step is done
 * (its outputs final when it is their last step: rt_plan_live_ranges), on a device enqueued. */
void rt_walker_set_step_hook(rt_walker *w, void (*fn)(void *ctx, int step), void *ctx);

/* Profiling: events around every step, summed by kind; under --profile (rt_trace_active) each
 * step is also a slice of the timeline, on the host track (a host backend) or the device's. */
void rt_walker_profile(rt_walker *w, bool on);
/* The plan's step counts, the times so far by kind (profiled runs) and the device's transfers. */
rt_exec_stats rt_walker_stats(const rt_walker *w);

/* For backends' routines: the memory of plan ref r (.mem NULL for r.buf < 0), the plan, the
 * arena. */
rt_mem rt_walker_mem(const rt_walker *w, rt_plan_ref r);
/* the backend's handle of the x-th kernel of step s (rt_plan_step_kernels), NULL if not prepared */
void *rt_walker_kernel(const rt_walker *w, int s, int x);
const rt_plan *rt_walker_plan(const rt_walker *w);
rt_mem rt_walker_arena(const rt_walker *w);

#endif
