/* exe_payload.h — the contract between `loom build` (engine/build.c) and the executables it
 * writes (exe/standalone_main.c: a model's, on cpu, opencl or cuda; exe/cluster_main.c: a
 * mesh's).
 *
 * An executable is: its main (libloom_exe.a or libloom_cluster_main.a) + libloom.a + the host
 * kernels' object file + a generated table of them (RT_KERNEL_TABLE, RT_KERNEL_COUNT), each
 * kernel under program_kernel_symbol's name (engine/program.h: a hash of its kernel IR), and
 * for cuda the PTX of its kernels (RT_KERNEL_PTX, each `.entry` under the same name), linked
 * by the system C compiler; then the payload is appended to the ELF file: a plan file
 * (plan_io.h; its plan is empty, its blobs are the payload) followed by a trailer
 *     "LOOMEXE1"  u64 payload size  u64 FNV-1a 64 of the payload
 * which the executable reads back through /proc/self/exe. A model's executable has the blobs
 *     "target"    cpu, opencl[:P[:D]] or cuda
 *     "graph"     the model's graph as textual IR (ir/print.c), before any pass
 *     "pipeline"  the passes before lowering, e.g. dce,cse,fuse (ends with fuse)
 *     "model"     text: the model file and -D options it was built with
 * and runs as `loom run` does (engine/run.c: eng_run_files): the optional inputs not given are
 * dropped, the pipeline runs, the graph is lowered, and each kernel is found by its hash —
 * in RT_KERNEL_TABLE (cpu) or RT_KERNEL_PTX (cuda) — or rendered to OpenCL C (opencl).
 * `loom build` compiles the kernels of every combination of optional inputs given and absent.
 * A cluster executable's blobs are listed in exe/cluster_main.c.
 */
#ifndef LOOM_IO_EXE_PAYLOAD_H
#define LOOM_IO_EXE_PAYLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/interp.h"
#include "plan/plan_io.h"
#include "io/run_io.h"

#define RT_EXE_TRAILER_MAGIC "LOOMEXE1"
#define RT_EXE_TRAILER_BYTES 24

typedef struct {
    const char *name;
    void (*fn)(void **args, int64_t begin, int64_t end);
} rt_kernel_entry;

/* exe_payload.c: the payload at the end of this executable (/proc/self/exe), checked against
 * its trailer, malloc'd; NULL with the reason (prog: the executable's name) in d. */
uint8_t *rt_exe_read_payload(const char *prog, size_t *size, ir_diag *d);
/* exe_payload.c: the payload read and parsed into *plan and *blobs (rt_plan_deserialize's
 * contract); false with the reason in d. */
bool rt_exe_load(const char *prog, rt_plan *plan, rt_plan_blob **blobs, int *n_blobs, ir_diag *d);
/* exe_payload.c: the executable's name for messages: argv[0] without its directory. */
const char *rt_exe_name(const char *argv0, const char *fallback);
/* exe_payload.c: the valued option `--name value` or `--name=value` at argv[*i], one of
 * names[0..n): its index and *value (*i past a separate value); -1 after printing why
 * (unknown, or no value) on stderr. */
int rt_exe_option(int argc, char **argv, int *i, const char *const *names, int n, const char *prog, const char **value);
/* exe_payload.c: prints d's messages, frees d; the exit status (0, or 1 after an error). */
int rt_exe_finish(ir_diag *d);

#define RT_KERNEL_TABLE loom_kernel_table
#define RT_KERNEL_COUNT loom_kernel_count
/* cuda executables: the PTX module of every distinct kernel (NUL-terminated) */
#define RT_KERNEL_PTX loom_kernel_ptx
#define RT_KERNEL_PTX_NAME "loom_kernel_ptx"

#endif
