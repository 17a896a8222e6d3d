/* codegen.h — the public face of codegen/: rendering kernel IR (kir.h) for the host through
 * LLVM, running it in-process with an ORC JIT, and writing host object files for `loom build`.
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

#include "diag.h"
#include "kir.h"

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

#endif
