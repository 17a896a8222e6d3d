/* program_aot.c — program_new for cluster executables (cluster_main.c): every target name
 * gets the kernel-table backend (program_table.c), since the kernels were compiled by `loom
 * build --mesh` and linked in; a device target is refused. The `loom` command has
 * program_targets.c instead (the JIT and the device backends). */
#include <string.h>

#include "engine/program.h"

program *program_new(const char *target, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    if (strcmp(target, "cpu") != 0) {
        ir_diag_error(d, -1, 0, 0, "target '%s': this cluster executable runs its ranks on the cpu", target);
        return NULL;
    }
    return program_new_on(&program_backend_cpu_table, "cpu", g, pipeline, pool, d);
}

program *program_cpu_new(const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    return program_new("cpu", g, pipeline, pool, d);
}

program *program_compile_segment(void *target, const ir_graph *g, rt_pool *pool, ir_diag *d)
{
    return program_new(target, g, NULL, pool, d);
}
