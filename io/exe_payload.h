/* standalone.h — the contract between `loom build` (engine/build.c) and the executables it
 * writes (exe/standalone_main.c).
 *
 * An executable is: the standalone main + the runtime + the kernels' object file + a generated
 * table of the kernels (RT_KERNEL_TABLE, RT_KERNEL_COUNT), linked by the system C compiler;
 * then the payload is appended to the ELF file: a plan file (plan_io.h) followed by a trailer
 *     "LOOMEXE1"  u64 payload size  u64 FNV-1a 64 of the payload
 * which the executable reads back through /proc/self/exe. The payload's blobs:
 *     "target"     "cpu"
 *     "signature"  rt_io_sig_encode: params, inputs, outputs with dtypes and shapes
 *     "plan_info"  rt_io_plan_info_encode: layers, steps of layer 0, arena without reuse
 *     "model"      text: the model file and -D options it was built with
 * A device target ("opencl[:P[:D]]" or "cuda" in "target") adds its kernels:
 *     "opencl_source"  the plan kernels' OpenCL C (cg_opencl_source_offsets); absent: none
 *     "opencl_dims"    u32 n, n × (str kernel name, u64 groups, u64 local)
 *     "ptx"            the PTX module (program_cuda_ptx); absent: none
 *     "cuda_launch"    u32 n_steps, n_steps × (u32 grid[3], u32 block[3])
 * and is run by standalone_opencl.c / standalone_cuda.c (no host kernels are linked then).
 */
#ifndef LOOM_RT_STANDALONE_H
#define LOOM_RT_STANDALONE_H

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

/* standalone_opencl.c / standalone_cuda.c: bind vals, run plan once on target's device, and
 * return the outputs of sig as doubles (free with ir_named_tensors_free). Weak references in
 * standalone_main.c: linked only into an executable of that target (cmd_build.c: -u NAME). */
#define RT_STANDALONE_OPENCL_SYMBOL "rt_standalone_run_opencl"
#define RT_STANDALONE_CUDA_SYMBOL "rt_standalone_run_cuda"
typedef bool rt_standalone_run_fn(const char *target, const rt_plan *plan, const rt_plan_blob *blobs, int n_blobs,
                                  const rt_io_sig *sig, const ir_named_tensor *vals, int n_vals, bool stats,
                                  ir_named_tensor **outs, int *n_outs, const char *who, ir_diag *d);
rt_standalone_run_fn rt_standalone_run_opencl, rt_standalone_run_cuda;

/* standalone_device.c: what both device targets share. */
typedef struct {
    void *ex;
    bool (*bind)(void *ex, const char *name, const void *data, ir_diag *d);
    bool (*run)(void *ex, ir_diag *d);
    void *(*output)(void *ex, const char *name);
} rt_standalone_exec;
bool rt_standalone_run_exec(const rt_standalone_exec *dev, const char *target, const rt_plan *plan,
                            const rt_io_sig *sig, const ir_named_tensor *vals, int n_vals, bool stats,
                            ir_named_tensor **outs, int *n_outs, ir_diag *d);
const rt_plan_blob *rt_standalone_need_blob(const rt_plan_blob *b, int n, const char *name, const char *who, ir_diag *d);
/* The blob's bytes as a NUL-terminated malloc'd string; NULL for a NULL blob. */
char *rt_standalone_blob_text(const rt_plan_blob *b);

#endif
