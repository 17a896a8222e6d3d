/* standalone.h — the contract between `loom build` (cli/cmd_build.c) and the executables it
 * writes (runtime/standalone_main.c).
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
 * A GPU target would add its kernels' text (PTX, OpenCL C) as further blobs.
 */
#ifndef LOOM_RT_STANDALONE_H
#define LOOM_RT_STANDALONE_H

#include <stdint.h>

#define RT_EXE_TRAILER_MAGIC "LOOMEXE1"
#define RT_EXE_TRAILER_BYTES 24

typedef struct {
    const char *name;
    void (*fn)(void **args, int64_t begin, int64_t end);
} rt_kernel_entry;

#define RT_KERNEL_TABLE loom_kernel_table
#define RT_KERNEL_COUNT loom_kernel_count

#endif
