/* program_cuda_exec.c — what program.h's two CUDA backends share: program_cuda.c (`loom run
 * --target cuda`: PTX rendered by LLVM) and exe/program_cuda_table.c (a `loom build --target
 * cuda` executable: PTX compiled in, each kernel under its program_kernel_symbol). Each kernel
 * step's launch geometry, the check of what the CUDA executor runs, and the calls on its
 * executor. No LLVM here: an executable links this file. */
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/exec_cuda.h"
#include "runtime/half.h"
#include "engine/program.h"

bool program_cuda_supported(const rt_plan *plan, ir_diag *d)
{
    ir_dtype half = rt_plan_half_library(plan);
    if (half == DT_VOID)
        return true;
    /* cuBLASLt and the attention kernel take f32 here so far */
    ir_diag_error(d, -1, 0, 0, "cuda: %s GEMM and attention steps (--precision %s) are not supported by the CUDA "
                  "executor yet; --target cpu runs them", ir_dtype_name(half), half == DT_F16 ? "fp16" : "bf16");
    return false;
}

bool program_cuda_launch(const rt_plan *plan, cg_kernel *const *kernels, int n_kernels, rt_cuda_launch *launch,
                         char (*fn)[32])
{
    bool attention = false;
    for (int s = 0; s < plan->n_steps; s++) {
        const rt_plan_step *st = &plan->steps[s];
        attention |= st->kind == RT_STEP_ATTENTION;
        /* a kernel step's kernel, or a GEMM's epilogue kernel (the executor runs it when
         * cuBLASLt does not have the epilogue: exec_cuda.c) */
        const char *name = st->kind == RT_STEP_KERNEL ? st->kernel.name
                           : st->kind == RT_STEP_GEMM ? st->gemm.epi.name
                                                      : NULL;
        if (!name)
            continue;
        const cg_kernel *k = NULL;
        for (int i = 0; i < n_kernels && !k; i++)
            if (strcmp(kernels[i]->name, name) == 0)
                k = kernels[i];
        if (!k)
            ir_unreachable("plan step names a kernel that lowering did not build");
        cg_ptx_launch_dims(k, launch[s].grid, launch[s].block);
        if (fn) {
            program_kernel_symbol(k, fn[s], sizeof fn[s]);
            launch[s].fn = fn[s];
        }
    }
    return attention;
}

void program_cuda_destroy(void *state) { rt_cuda_exec_free(state); }
bool program_cuda_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_cuda_exec_bind(state, name, data, d);
}
bool program_cuda_run(void *state, ir_diag *d) { return rt_cuda_exec_run(state, d); }
void *program_cuda_output(void *state, const char *name) { return rt_cuda_exec_output(state, name); }
void program_cuda_profile(void *state, bool on) { rt_cuda_exec_profile(state, on); }
rt_exec_stats program_cuda_stats(const void *state) { return rt_cuda_exec_stats(state); }
