/* program_host.c — the calls both host backends (program_cpu.c: JIT; program_table.c: kernels
 * linked ahead of time) make on their CPU executor, the first member of their state. */
#include "engine/program.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/exec_cpu.h"

bool program_host_calls(const rt_plan *plan, const char *name, bool lib)
{
    for (int s = 0; s < plan->n_steps; s++) {
        const rt_plan_step *st = &plan->steps[s];
        const rt_plan_kernel *ks[RT_PLAN_MAX_LIB + 1];
        int n = rt_plan_step_kernels(st, ks);
        for (int i = 0; i < n; i++) /* library kernels only with lib (the executor's own routines otherwise) */
            if (strcmp(ks[i]->name, name) == 0 && (lib || ks[i] == &st->kernel || ks[i] == &st->gemm.epi))
                return true;
    }
    return false;
}

static rt_exec *ex_of(const void *state) { return *(rt_exec *const *)state; }

bool program_host_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_exec_bind(ex_of(state), name, data, d);
}

bool program_host_run(void *state, ir_diag *d) { return rt_exec_run(ex_of(state), d); }
void *program_host_output(void *state, const char *name) { return rt_exec_output(ex_of(state), name); }
void program_host_profile(void *state, bool on) { rt_exec_profile(ex_of(state), on); }
rt_exec_stats program_host_stats(const void *state) { return rt_exec_stats_get(ex_of(state)); }
rt_exec *program_host_exec(void *state) { return ex_of(state); }

/* ---- a host backend's device: host memory --------------------------------------------------- */

static int host_device; /* a host device has no state; its handle is this */

void *program_host_dev_open(const char *target, ir_diag *d)
{
    (void)target, (void)d;
    return &host_device;
}

void program_host_dev_close(void *dev) { (void)dev; }

rt_walker *program_host_walker(void *state) { return rt_exec_walker(ex_of(state)); }

void *program_host_buf_alloc(void *dev, size_t bytes, ir_diag *d)
{
    (void)dev;
    void *p = calloc(bytes ? bytes : 1, 1); /* large ones are fresh zeroed pages, not touched here */
    if (!p)
        ir_diag_error(d, -1, 0, 0, "cpu: cannot allocate %zu bytes", bytes);
    return p;
}

void program_host_buf_free(void *dev, void *mem)
{
    (void)dev;
    free(mem);
}

bool program_host_buf_write(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d)
{
    (void)dev, (void)async, (void)d;
    if ((char *)dst.mem + dst.off != src) /* the same memory: a program_buf_host */
        memcpy((char *)dst.mem + dst.off, src, bytes);
    return true;
}

bool program_host_buf_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d)
{
    (void)dev, (void)d;
    if ((const char *)src.mem + src.off != dst)
        memcpy(dst, (const char *)src.mem + src.off, bytes);
    return true;
}

bool program_host_dev_sync(void *dev, ir_diag *d)
{
    (void)dev, (void)d;
    return true;
}

rt_xfer program_host_dev_xfer(void *dev)
{
    (void)dev;
    return (rt_xfer){0, 0};
}
