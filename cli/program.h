/* program.h — a graph compiled once for the CPU and run many times.
 *
 * program_cpu_new clones the graph, runs a pass pipeline on the clone (NULL: "dce,cse,fuse";
 * it must end with fuse), lowers it to a plan and kernels, plans the activation arena, JIT-
 * compiles the kernels and prepares an executor on the given thread pool (shared by every
 * program of a job; NULL: the caller's thread only). Then: bind every param and input (in its
 * declared dtype, caller memory that stays alive and unchanged during runs; rebinding between
 * runs is fine, e.g. ping-pong parameter buffers), run, read outputs (executor-owned buffers,
 * overwritten by the next run). Training builds two programs — gradients, then the optimizer
 * update — over one pool; generation a prefill and a decode program.
 */
#ifndef LOOM_CLI_PROGRAM_H
#define LOOM_CLI_PROGRAM_H

#include <stdbool.h>

#include "diag.h"
#include "exec.h"
#include "ir.h"
#include "threadpool.h"

typedef struct program program;

program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d);
void program_free(program *p);

/* The compiled (fused) graph: its param/input/output nodes give names, dtypes and shapes. */
const ir_graph *program_graph(const program *p);
const rt_plan *program_plan(const program *p);
rt_exec *program_exec(program *p);          /* for profiling and stats */
double program_compile_ms(const program *p);

/* The param, input or output node called name, or NULL. */
const ir_node *program_find(const program *p, ir_opcode op, const char *name);

bool program_bind(program *p, const char *name, const void *data, ir_diag *d);
bool program_run(program *p, ir_diag *d);
/* The output buffer called name (the output node's dtype and shape), or NULL. */
void *program_output(program *p, const char *name);

#endif
