/* program_aot.c — program_new for the executables of `loom build` (standalone_main.c,
 * cluster_main.c): a target gets the backend whose kernels this executable holds — cpu the
 * kernel table (program_table.c), cuda the PTX compiled in (program_cuda_table.c), opencl
 * OpenCL C rendered from kernel IR at start-up (engine/program_opencl.c, as `loom run`). The
 * device backends are weak references: `loom build` forces in the one of its target
 * (-Wl,-u,NAME), so a cpu executable links no OpenCL and a cluster executable neither. The
 * `loom` command has program_targets.c instead (the JIT and the device backends). */
#include <string.h>

#include "engine/program.h"

#pragma weak program_backend_opencl
#pragma weak program_backend_cuda_table

const program_backend *program_backend_of(const char *target, ir_diag *d)
{
    const program_backend *be = NULL;
    if (strcmp(target, "cpu") == 0)
        be = &program_backend_cpu_table;
    else if (strcmp(target, "cuda") == 0)
        be = &program_backend_cuda_table;
    else if (strncmp(target, "opencl", 6) == 0 && (target[6] == 0 || target[6] == ':'))
        be = &program_backend_opencl;
    if (!be)
        ir_diag_error(d, -1, 0, 0, "target '%s': this executable holds no kernels for it (`loom build --target %s` "
                      "makes one that does)", target, target);
    return be;
}

program *program_new(const char *target, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    const program_backend *be = program_backend_of(target, d);
    return be ? program_new_on(be, target, g, pipeline, pool, d) : NULL;
}

program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    return program_new("cpu", g, pipeline, pool, d);
}

program *program_compile_segment(void *target, const ir_graph *g, rt_pool *pool, ir_diag *d)
{
    return program_new(target, g, NULL, pool, d);
}
