/* program.h — a graph compiled once for one target (cpu, cuda, opencl) and run many times.
 *
 * program_new clones the graph, runs a pass pipeline on the clone (NULL: "dce,cse,fuse"; it
 * must end with fuse), lowers it to a plan and kernels (codegen/lower.c), plans the activation
 * arena, and hands plan and kernels to the target's backend, which compiles the kernels (host
 * JIT, PTX, OpenCL C) and prepares its executor (pool: the CPU thread pool shared by every
 * program of a job; NULL: the caller's thread only; GPU backends ignore it). Then: bind every
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
} program_backend;

/* program_new on a given backend (target: its name, or a device after it for create_on). */
program *program_new_on(const program_backend *be, const char *target, const ir_graph *g, const char *pipeline,
                        rt_pool *pool, ir_diag *d);
/* program_new's first half: a clone of g through pipeline (NULL: "dce,cse,fuse"), lowered, its
 * arena planned; *fused is the clone (free both, also on failure: false). */
bool program_lower(const ir_graph *g, const char *pipeline, ir_graph **fused, cg_lowered *low, ir_diag *d);
/* = program_new(target, g, NULL, pool, d) with target a const char * (mesh_exec.h's compiler
 * for `loom run|train --mesh`). */
program *program_compile_segment(void *target, const ir_graph *g, rt_pool *pool, ir_diag *d);
/* program_table.c: the CPU backend of a cluster executable, whose kernels were compiled by
 * `loom build --mesh` into the executable and are found by program_kernel_symbol. */
extern const program_backend program_backend_cpu_table;
/* The symbol of kernel k in a cluster executable: "lk_" + 16 hex digits of a hash of its
 * kernel IR without its name, so equal kernels of different ranks and segments are one. */
void program_kernel_symbol(const cg_kernel *k, char *buf, size_t n);

extern const program_backend program_backend_cpu;  /* program_cpu.c */
/* program_host.c: bind, run, output, profile, stats and exec of a host backend whose state
 * struct starts with its rt_exec * (program_cpu.c, program_table.c). */
bool program_host_bind(void *state, const char *name, const void *data, ir_diag *d);
bool program_host_run(void *state, ir_diag *d);
void *program_host_output(void *state, const char *name);
void program_host_profile(void *state, bool on);
rt_exec_stats program_host_stats(const void *state);
rt_exec *program_host_exec(void *state);
#define PROGRAM_HOST_CALLS                                                                                       \
    .bind = program_host_bind, .run = program_host_run, .output = program_host_output,                          \
    .profile = program_host_profile, .stats = program_host_stats, .exec = program_host_exec
extern const program_backend program_backend_cuda; /* program_cuda.c */
/* program_cuda.c: the PTX module of a plan's kernels (plus the fused attention kernels when
 * the plan has an attention step) and the launch geometry of each kernel step and of each GEMM
 * step's epilogue kernel in launch[plan->n_steps]; NULL when there is nothing to compile, or on error (*failed set,
 * reported through d). For program_cuda and `loom build --target cuda`. */
char *program_cuda_ptx(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_cuda_launch *launch,
                       bool *failed, ir_diag *d);
extern const program_backend program_backend_opencl; /* program_opencl.c */

#endif
