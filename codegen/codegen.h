/* codegen.h — the public face of codegen/: rendering kernel IR (kir.h) for the host through
 * LLVM, running it in-process with an ORC JIT, and writing host object files for `loom build`;
 * rendering it to PTX for NVIDIA GPUs (render_nvptx.c; the PTX ABI is below, at cg_ptx).
 * No LLVM type appears here; render_llvm.h is the LLVM-level interface shared inside codegen/.
 *
 * Host kernel ABI (every host kernel, JIT or object file):
 *     void NAME(void **args, int64_t begin, int64_t end);
 * args[i] points to the first element of buffer argument i, or to the int64_t value of scalar
 * argument i. The call runs grid points whose dim-0 index is in [begin, end) (with every index
 * of dims 1..n-1 for each), 0 <= begin <= end <= dim[0]; an empty range does nothing. Distinct
 * ranges may run concurrently on different threads: that is how a thread pool splits a kernel.
 * Buffers must not overlap one another.
 */
#ifndef LOOM_CODEGEN_H
#define LOOM_CODEGEN_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "codegen/kir.h"

typedef void (*cg_host_fn)(void **args, int64_t begin, int64_t end);

typedef struct {
    int opt_level;    /* 0..3: the new pass manager's default<On> (0 runs no passes) */
    bool generic_cpu; /* tune for a generic CPU of the host's architecture, not this machine's
                         CPU name and features (for objects that run elsewhere) */
    bool libm_math;   /* f32 exp/tanh/sigmoid call libm instead of inline vectorizable
                         approximations (within a few ulp) */
} cg_host_options;

/* Options used when a function is given NULL: opt_level 3, tuned for this machine, inline
 * f32 exp/tanh. */
extern const cg_host_options cg_host_defaults;

/* The LLVM IR text of a module holding kernels ks[0..n) (validated first), after the
 * optimization pipeline of o; malloc'd, the caller frees it. NULL on error (reported in d). */
char *cg_llvm_host_ir(cg_kernel *const *ks, int n, const cg_host_options *o, ir_diag *d);

/* Writes a relocatable object file for the host (ELF .o on Linux) defining one function per
 * kernel with the ABI above. Transcendentals call libm (link with -lm). */
bool cg_host_emit_object(cg_kernel *const *ks, int n, const cg_host_options *o, const char *path,
                         ir_diag *d);

/* ---- ORC JIT (jit.c) --------------------------------------------------------------------- */
typedef struct cg_jit cg_jit;

/* A JIT for this process; it resolves libm and other process symbols. NULL on error. */
cg_jit *cg_jit_new(ir_diag *d);
/* Validates, renders, optimizes and adds kernels ks[0..n) as one module. Kernel names must be
 * unique across everything added to one JIT. */
bool cg_jit_add(cg_jit *j, cg_kernel *const *ks, int n, const cg_host_options *o, ir_diag *d);
/* The entry point of a kernel added earlier (compiled on first lookup); NULL if absent. */
cg_host_fn cg_jit_lookup(cg_jit *j, const char *name, ir_diag *d);
/* Frees the JIT and all code it holds; function pointers from it become invalid. */
void cg_jit_free(cg_jit *j);

/* ---- NVIDIA GPUs: kernel IR → LLVM nvptx64 → PTX text (render_nvptx.c) -------------------
 * PTX kernel ABI: each kernel NAME is `.visible .entry NAME` taking, in argument order, one
 * `.u64` global-memory pointer per buffer (the first element; buffers must not overlap) and
 * one `.u64` per i64 scalar (passed by value), launched with cg_ptx_launch_dims's geometry
 * (or any grid.x >= 1 and block = (32·w, 1, 1) with 1 <= w <= 8: the code strides over what
 * the launch does not cover). No shared memory is passed at launch (reductions use a static
 * .shared array of the kernel). The PTX needs no libdevice and loads with cuModuleLoadData. */
typedef struct {
    int sm;        /* target compute capability × 10: 80 (Ampere, the baseline) or 90 (Hopper) */
    int ptx;       /* PTX ISA version × 10; 0: 75 below sm_90, 78 for sm_90 */
    int opt_level; /* 0..3, as cg_host_options.opt_level */
} cg_ptx_options;

/* sm 80, the default PTX version, opt_level 3: used when a function is given NULL. */
extern const cg_ptx_options cg_ptx_defaults;

/* Threads per block at most: a row kernel's block reduction has one shared slot per warp. */
#define CG_PTX_MAX_BLOCK 256

/* The PTX text of a module holding kernels ks[0..n) (validated first; an op the GPU cannot
 * lower, such as f64 exp without libdevice, is an error); malloc'd, the caller frees it.
 * NULL on error (reported in d). */
char *cg_ptx(cg_kernel *const *ks, int n, const cg_ptx_options *o, ir_diag *d);

/* The optimized nvptx64 LLVM IR of the same module, for tests and debugging; as cg_ptx. */
char *cg_ptx_llvm_ir(cg_kernel *const *ks, int n, const cg_ptx_options *o, ir_diag *d);

/* The launch geometry of kernel k (blockDim = block, gridDim = grid; y and z are 1). With P the
 * number of grid points (the product of k->dim):
 *   no loops, or sequential (kir.h): one thread per grid point, flattened row-major:
 *               block.x = min(256, P rounded up to a multiple of 32), grid.x = ceil(P / block.x);
 *   with loops: one block per grid point (blockIdx.x flattened row-major): grid.x = P, and
 *               block.x = the largest loop extent rounded up to a multiple of 32, in [32, 256];
 *               the block's threads stride over each loop's extent.
 * grid.x is capped at 2^31 - 1; the kernels loop (grid-stride) over points beyond the grid. */
void cg_ptx_launch_dims(const cg_kernel *k, unsigned grid[3], unsigned block[3]);

/* ---- OpenCL: kernel IR → OpenCL C text (render_c.c, a C-like renderer with dialects) ------
 * OpenCL kernel ABI: kernel NAME is `__kernel void loom_NAME` (CG_OPENCL_PREFIX: no clash with
 * built-ins) taking, in argument order, one `__global` pointer per buffer (to its storage
 * type: float, double, half, ushort for bf16, int, long, uchar; buffers must not overlap) and
 * one `long` per i64 scalar, launched 1-D as groups × local work-items (global size = groups ·
 * local) with cg_opencl_launch_dims's geometry — or any groups >= 1 and 1 <= local <=
 * CG_OPENCL_MAX_LOCAL: the code strides over what the launch does not cover. No __local
 * memory is passed at launch (reductions use arrays declared in the kernel). f64 needs a
 * device with cl_khr_fp64; f16 needs nothing (vload_half/vstore_half). */
#define CG_OPENCL_PREFIX "loom_"
#define CG_OPENCL_MAX_LOCAL 256     /* work-items per group at most (reduction scratch size) */
#define CG_OPENCL_MAX_GROUPS 65536  /* groups cg_opencl_launch_dims asks for at most */

/* The OpenCL C source of a module holding kernels ks[0..n) (validated first); malloc'd, the
 * caller frees it. NULL on error (reported in d). */
char *cg_opencl_source(cg_kernel *const *ks, int n, ir_diag *d);

/* The same with an element offset after every buffer parameter: `__global T *NAME, const long
 * _offI` (I the argument's index), added to the pointer first. The plan executor passes one
 * arena buffer and offsets this way; sub-buffers would need origins aligned to the device's
 * CL_DEVICE_MEM_BASE_ADDR_ALIGN, which plan offsets (64 bytes, or any element) are not. */
char *cg_opencl_source_offsets(cg_kernel *const *ks, int n, ir_diag *d);

/* The launch geometry of kernel k. With P the number of grid points (the product of k->dim):
 *   no loops, or sequential (kir.h): one work-item per grid point, flattened row-major:
 *               local = min(256, P rounded up to a multiple of 32), groups = ceil(P / local);
 *   with loops: one work-group per grid point (group id flattened row-major): groups = P, and
 *               local = the largest loop extent rounded up to a power of two, in [32, 256];
 *               the group's work-items stride over each loop's extent.
 * groups is capped at CG_OPENCL_MAX_GROUPS; the kernels stride over points beyond it. */
void cg_opencl_launch_dims(const cg_kernel *k, size_t *groups, size_t *local);

#endif
