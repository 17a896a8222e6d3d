/* render_llvm.h — LLVM-level interface of the host renderer, shared by render_llvm.c and
 * jit.c (and later the nvptx64 renderer). Only codegen/ includes this file; everything else
 * uses codegen.h.
 */
#ifndef LOOM_RENDER_LLVM_H
#define LOOM_RENDER_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen.h"

/* Initializes LLVM's native target once (idempotent), and creates a target machine for this
 * host: its triple, and unless o->generic_cpu its CPU name and features; PIC, default code
 * model. NULL on error. Dispose with LLVMDisposeTargetMachine. */
LLVMTargetMachineRef cg_llvm_host_machine(const cg_host_options *o, ir_diag *d);

/* Renders kernels ks[0..n) (each must pass cg_kernel_validate) into a new module in ctx, with
 * tm's triple, data layout, CPU and features, and o's math choice; the module is verified.
 * NULL on error. */
LLVMModuleRef cg_llvm_render_host(LLVMContextRef ctx, cg_kernel *const *ks, int n,
                                  LLVMTargetMachineRef tm, const cg_host_options *o, ir_diag *d);

/* Runs default<O{opt_level}> (loop and SLP vectorization on) over m; nothing for level 0. */
bool cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, int opt_level, ir_diag *d);

/* Validates ks, then creates a target machine, renders and optimizes into ctx: the steps every
 * host consumer (text, object, JIT) shares. On success *tm and the returned module are the
 * caller's. */
LLVMModuleRef cg_llvm_build_host(LLVMContextRef ctx, cg_kernel *const *ks, int n,
                                 const cg_host_options *o, LLVMTargetMachineRef *tm, ir_diag *d);

#endif
