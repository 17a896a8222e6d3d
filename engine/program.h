/* program.h — a graph compiled once for one target (cpu, cuda, opencl) and run many times.
 *
 * program_new clones the graph, runs a pass pipeline on the clone (NULL: "dce,cse,fuse"; it
 * must end with fuse), lowers it to a plan and kernels (codegen/lower.c), plans the activation
 * arena, and hands plan and kernels to the target's backend, which compiles the kernels (host
 * JIT, PTX, OpenCL C; in an executable of `loom build`, exe/program_aot.c's program_new gives
 * backends that find them compiled in, by the hash of their kernel IR) and prepares its
 * executor (pool: the CPU thread pool shared by every program of a job; NULL: the caller's
 * thread only; GPU backends ignore it). Then: bind every
 * param and input, run, read outputs. Training builds two programs — gradients, then the
 * optimizer update — over one pool; generation a prefill and a decode program.
 *
 * Memory, the same contract on every target (host memory in and out):
 *  - program_bind(name, data): data is host memory in the node's declared dtype. The CPU
 *    references it (it must stay alive and unchanged during runs); a GPU backend copies it to
 *    the device at bind time and keeps it there across runs (params stay device-resident).
 *    Either way: to change a param or input between runs, bind it again (rebinding is cheap
 *    on the CPU, one host→device copy on a GPU).
 *  - program_output(name): host memory holding the output after the last run (on a GPU it is
 *    copied back on the first call after a run), owned by the program and overwritten by the
 *    next run. NULL if there is no such output (or the copy failed).
 */
#ifndef LOOM_CLI_PROGRAM_H
#define LOOM_CLI_PROGRAM_H

#include <stdbool.h>

#include "ir/diag.h"
#include "runtime/cpu/exec_cpu.h"
#include "runtime/cuda/exec_cuda.h"
#include "ir/ir.h"
#include "codegen/kir.h"
#include "codegen/lower.h"
#include "plan/plan.h"
#include "runtime/exec.h"
#include "runtime/threadpool.h"

typedef struct program program;

/* target: "cpu", "cuda" or "opencl". NULL on error (unknown target, no device, a kernel that
 * does not compile ...), reported through d. */
program *program_new(const char *target, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d);
/* = program_new("cpu", ...) */
program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d);
void program_free(program *p);

const char *program_target(const program *p);
/* The compiled (fused) graph: its param/input/output nodes give names, dtypes and shapes. */
const ir_graph *program_graph(const program *p);
const rt_plan *program_plan(const program *p);
rt_exec *program_exec(program *p);          /* the CPU executor (NULL on other targets) */
double program_compile_ms(const program *p);

/* The param, input or output node called name, or NULL. */
const ir_node *program_find(const program *p, ir_opcode op, const char *name);

bool program_bind(program *p, const char *name, const void *data, ir_diag *d);
/* on: the CPU's contract on every target — a GPU program remembers the host memory of each
 * later bind and uploads it again before every run, so the caller may change bound buffers in
 * place between runs (training's host round trip: params, optimizer state, batches). No-op on
 * the CPU, which reads bound memory directly. */
void program_follow_host(program *p, bool on);
bool program_run(program *p, ir_diag *d);
/* The output called name (the output node's dtype and shape, host memory), or NULL. */
void *program_output(program *p, const char *name);

/* Profiling: time every step (GPU: events on the stream) and sum the times by kind. */
void program_profile(program *p, bool on);
rt_exec_stats program_stats(const program *p);

/* ---- devices: programs that share memory --------------------------------------------------
 * A program made by program_new owns a device of its own. Programs that hand data to each
 * other without the host — training's gradient, accumulation, update and eval programs, the
 * prefill and decode of generation — are made on one program_device: its memory is theirs in
 * common and its one queue orders their runs as they were enqueued. Buffers of the device
 * (program_buf) are owned by the caller and bound to params, inputs and outputs of programs
 * in place of their own (program_bind_buf): an output bound to the buffer another program's
 * param is bound to is output→param binding, nothing is copied. On the CPU a device is host
 * memory and all of this holds with plain memory. */
typedef struct program_device program_device;
typedef struct program_buf program_buf;

/* The device a target names ("cpu", "cuda", "opencl[:P[:D]]"); NULL (reported) when it has
 * none. Close it after every program and buffer on it is freed. */
program_device *program_device_open(const char *target, ir_diag *d);
void program_device_close(program_device *dev);
const char *program_device_target(const program_device *dev);
bool program_device_is_host(const program_device *dev);
/* Waits for everything enqueued on the device. */
bool program_device_sync(program_device *dev, ir_diag *d);
/* Bytes copied host→device and device→host so far by every program and buffer on dev. */
rt_xfer program_device_xfer(const program_device *dev);

/* bytes of zeroed device memory; NULL (reported) when the device has no room. */
program_buf *program_buf_new(program_device *dev, size_t bytes, ir_diag *d);
void program_buf_free(program_buf *b);
/* On a host device (program_device_is_host), a buffer that is bytes of the caller's memory at
 * host (which outlives it; not freed with it): programs read and write it in place, no copy.
 * NULL on other devices. */
program_buf *program_buf_host(program_device *dev, void *host, size_t bytes);
size_t program_buf_size(const program_buf *b);
/* Copies between host memory and bytes at byte offset off of b (inside b). write_async returns
 * once the copy is enqueued: src must stay unchanged until the device ran it (a sync or read). */
bool program_buf_write(program_buf *b, size_t off, const void *src, size_t bytes, ir_diag *d);
bool program_buf_write_async(program_buf *b, size_t off, const void *src, size_t bytes, ir_diag *d);
bool program_buf_read(const program_buf *b, size_t off, void *dst, size_t bytes, ir_diag *d);

/* program_new on dev (which outlives the program). */
program *program_new_device(program_device *dev, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d);
/* Binds byte offset off of b (which outlives the binding) to the param or input (output: the
 * output) called name of p, a program on b's device. */
bool program_bind_buf(program *p, const char *name, program_buf *b, size_t off, ir_diag *d);
bool program_bind_output_buf(program *p, const char *name, program_buf *b, size_t off, ir_diag *d);
/* Whether the output called name may share memory with the param of that name (an update in
 * place, as PyTorch's optimizers do): p's steps are kernels only, and the param is read only
 * by kernels without loops that store the output at every index they read it — so each
 * element is read and then written by one grid point, and nothing reads it after. False when
 * either is missing or the plan is anything else. */
bool program_in_place(const program *p, const char *name);
/* program_bind whose copy is enqueued only (rt_walker_bind_async): data must stay unchanged
 * until the program's next run has finished. */
bool program_bind_async(program *p, const char *name, const void *data, ir_diag *d);
/* async: program_run returns once the steps are enqueued (reads of outputs wait). */
void program_set_async(program *p, bool on);
/* fn(ctx, s) after each step s of p's runs (NULL: none; rt_walker_set_step_hook): on the CPU
 * an output is final after the step program_output_step names, before the run returns — what
 * a trainer needs to start reducing a gradient while the backward goes on. */
void program_set_step_hook(program *p, void (*fn)(void *ctx, int step), void *ctx);
/* The last step of p's plan that touches output name (-1: no such output, or no step). */
int program_output_step(const program *p, const char *name);

/* ---- for backends (program.c dispatches to these; one file per target) ------------------
 * create gets the memory-planned plan and its kernels (both owned by the program and alive
 * until destroy) and returns the backend's state, or NULL with the reason in d. The other
 * functions implement the calls above on that state; profile and stats may be NULL. */
typedef struct program_backend {
    const char *target;
    void *(*create)(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool, ir_diag *d);
    void (*destroy)(void *state);
    bool (*bind)(void *state, const char *name, const void *data, ir_diag *d);
    bool (*run)(void *state, ir_diag *d);
    void *(*output)(void *state, const char *name);
    void (*profile)(void *state, bool on);
    rt_exec_stats (*stats)(const void *state);
    /* When set, called instead of create with the whole target string: a target may name a
     * device after the backend's name ("opencl:1:0"; program_new matches the part before ':'). */
    void *(*create_on)(const char *target, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels,
                       ir_diag *d);
    /* A host backend's CPU executor (program_exec); NULL on a device, whose binds copy (so
     * program_follow_host applies). */
    rt_exec *(*exec)(void *state);
    /* devices (program_device): dev_open opens the device of a target (NULL: reported) and
     * dev_close closes it; create_dev makes a program's state on one (used instead of
     * create/create_on when set); walker is a state's plan walker (runtime/exec.h). Buffers:
     * buf_alloc (zeroed), buf_free, buf_write (async: returns once enqueued), buf_read;
     * dev_sync, dev_xfer. */
    void *(*dev_open)(const char *target, ir_diag *d);
    /* supported (may be NULL): false (reported) for a plan the backend cannot run, asked before
     * a program opens a device of its own, so that the plan's error comes first */
    bool (*supported)(const rt_plan *plan, ir_diag *d);
    void (*dev_close)(void *dev);
    void *(*create_dev)(void *dev, const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_pool *pool,
                        ir_diag *d);
    rt_walker *(*walker)(void *state);
    void *(*buf_alloc)(void *dev, size_t bytes, ir_diag *d);
    void (*buf_free)(void *dev, void *mem);
    bool (*buf_write)(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d);
    bool (*buf_read)(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d);
    bool (*dev_sync)(void *dev, ir_diag *d);
    rt_xfer (*dev_xfer)(void *dev);
    /* GEMM and attention steps take f32 operands only (the device executors so far): under
     * --precision the lower-precision pass keeps them in f32 on half-rounded values */
    bool f32_library;
} program_backend;

/* The backend of a target name (program_targets.c for `loom`, exe/program_aot.c for the
 * executables of `loom build`); NULL (reported) for a target without one. */
const program_backend *program_backend_of(const char *target, ir_diag *d);
/* program_device_open on a given backend. */
program_device *program_device_open_on(const program_backend *be, const char *target, ir_diag *d);

/* program_new on a given backend (target: its name, or a device after it for create_on). */
program *program_new_on(const program_backend *be, const char *target, const ir_graph *g, const char *pipeline,
                        rt_pool *pool, ir_diag *d);
/* program_new's first half: a clone of g through pipeline (NULL: "dce,cse,fuse"), lowered, its
 * arena planned, for a backend whose GEMM and attention take f32 only (f32_library: the
 * devices) or not (the CPU); *fused is the clone (free both, also on failure: false). */
bool program_lower(const ir_graph *g, const char *pipeline, bool f32_library, ir_graph **fused, cg_lowered *low,
                   ir_diag *d);
/* = program_new(target, g, NULL, pool, d) with target a const char * (mesh_exec.h's compiler
 * for `loom run|train --mesh`). */
program *program_compile_segment(void *target, const ir_graph *g, rt_pool *pool, ir_diag *d);
/* exe/program_table.c: the CPU backend of the executables of `loom build` (with or without
 * --mesh), whose kernels were compiled into the executable and are found by
 * program_kernel_symbol. */
extern const program_backend program_backend_cpu_table;
/* The symbol of kernel k in an executable: "lk_" + 16 hex digits of a hash of its kernel IR
 * without its name and with its arguments named by position, so equal kernels of different
 * ranks, segments and programs (and of the graphs of different optional inputs given), whichever
 * plan buffers they are bound to, are one. */
void program_kernel_symbol(const cg_kernel *k, char *buf, size_t n);

extern const program_backend program_backend_cpu;  /* program_cpu.c */
/* program_host.c: does the CPU executor call the kernel called name of plan? Kernel steps' and
 * GEMM epilogues' always; a library step's (plan.h) only with lib, when it runs library steps
 * as kernels (exec_cpu.h: rt_exec_new_lib) — so the JIT and `loom build` compile no more. */
bool program_host_calls(const rt_plan *plan, const char *name, bool lib);
/* program_cpu.c: LOOM_CPU_LIBRARY=kernels — the CPU backend runs library steps as their
 * kernel IR (the description the devices run) instead of its own routines: for comparisons
 * and benchmarks. Anything else (or unset): its routines. */
bool program_cpu_library_kernels(void);
/* program_host.c: bind, run, output, profile, stats and exec of a host backend whose state
 * struct starts with its rt_exec * (program_cpu.c, program_table.c). */
bool program_host_bind(void *state, const char *name, const void *data, ir_diag *d);
bool program_host_run(void *state, ir_diag *d);
void *program_host_output(void *state, const char *name);
void program_host_profile(void *state, bool on);
rt_exec_stats program_host_stats(const void *state);
rt_exec *program_host_exec(void *state);
/* program_host.c: a host backend's device: host memory (buffers malloc'd, copies memcpy). */
void *program_host_dev_open(const char *target, ir_diag *d);
void program_host_dev_close(void *dev);
rt_walker *program_host_walker(void *state);
void *program_host_buf_alloc(void *dev, size_t bytes, ir_diag *d);
void program_host_buf_free(void *dev, void *mem);
bool program_host_buf_write(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d);
bool program_host_buf_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d);
bool program_host_dev_sync(void *dev, ir_diag *d);
rt_xfer program_host_dev_xfer(void *dev);
#define PROGRAM_HOST_CALLS                                                                                       \
    .bind = program_host_bind, .run = program_host_run, .output = program_host_output,                          \
    .profile = program_host_profile, .stats = program_host_stats, .exec = program_host_exec,                    \
    .dev_open = program_host_dev_open, .dev_close = program_host_dev_close, .walker = program_host_walker,      \
    .buf_alloc = program_host_buf_alloc, .buf_free = program_host_buf_free, .buf_write = program_host_buf_write, \
    .buf_read = program_host_buf_read, .dev_sync = program_host_dev_sync, .dev_xfer = program_host_dev_xfer
extern const program_backend program_backend_cuda; /* program_cuda.c */
/* program_cuda.c: the PTX module of kernels for $LOOM_CUDA_SM (80, the default, or 90); NULL
 * on error, reported through d. Needs LLVM: for program_cuda and `loom build --target cuda`. */
char *program_cuda_ptx(cg_kernel *const *kernels, int n_kernels, ir_diag *d);
/* program_cuda.c: the PTX target the CUDA backend compiles for ($LOOM_CUDA_SM, else 80). */
int program_cuda_sm(void);
/* program_cuda_exec.c, without LLVM (both CUDA backends): false, reported, when the plan has
 * steps the CUDA executor does not run yet (half GEMMs). */
bool program_cuda_supported(const rt_plan *plan, ir_diag *d);
/* program_cuda_exec.c: the geometry (cg_ptx_launch_dims) of each kernel a step launches, in
 * launch[s · RT_CUDA_STEP_KERNELS + x] for the x-th kernel of step s (rt_plan_step_kernels: a
 * kernel step's, a GEMM's epilogue — run when cuBLASLt lacks that epilogue —, a library
 * step's); with fn (entries likewise), the function of each is its kernel's
 * program_kernel_symbol, written to fn[...] and pointed to by launch[...].fn. */
void program_cuda_launch(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_cuda_launch *launch,
                         char (*fn)[32]);
/* program_cuda_exec.c: destroy, bind, run, output, profile and stats of a CUDA backend whose
 * state is its rt_cuda_exec. */
void program_cuda_destroy(void *state);
bool program_cuda_bind(void *state, const char *name, const void *data, ir_diag *d);
bool program_cuda_run(void *state, ir_diag *d);
void *program_cuda_output(void *state, const char *name);
void program_cuda_profile(void *state, bool on);
rt_exec_stats program_cuda_stats(const void *state);
void *program_cuda_dev_open(const char *target, ir_diag *d);
void program_cuda_dev_close(void *dev);
rt_walker *program_cuda_walker(void *state);
void *program_cuda_buf_alloc(void *dev, size_t bytes, ir_diag *d);
void program_cuda_buf_free(void *dev, void *mem);
bool program_cuda_buf_write(void *dev, rt_mem dst, const void *src, size_t bytes, bool async, ir_diag *d);
bool program_cuda_buf_read(void *dev, rt_mem src, void *dst, size_t bytes, ir_diag *d);
bool program_cuda_dev_sync(void *dev, ir_diag *d);
rt_xfer program_cuda_dev_xfer(void *dev);
#define PROGRAM_CUDA_CALLS                                                                                       \
    .destroy = program_cuda_destroy, .bind = program_cuda_bind, .run = program_cuda_run,                        \
    .output = program_cuda_output, .profile = program_cuda_profile, .stats = program_cuda_stats,                \
    .dev_open = program_cuda_dev_open, .dev_close = program_cuda_dev_close, .walker = program_cuda_walker,      \
    .buf_alloc = program_cuda_buf_alloc, .buf_free = program_cuda_buf_free, .buf_write = program_cuda_buf_write, \
    .buf_read = program_cuda_buf_read, .dev_sync = program_cuda_dev_sync, .dev_xfer = program_cuda_dev_xfer
/* exe/program_cuda_table.c: the CUDA backend of a `loom build --target cuda` executable, whose
 * PTX (every distinct kernel under its program_kernel_symbol) was compiled into it. */
extern const program_backend program_backend_cuda_table;
extern const program_backend program_backend_opencl; /* program_opencl.c */

#endif
