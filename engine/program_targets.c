/* program_targets.c — program_new: the backend of a target name (program.h). The one place
 * that names every backend, so linking it links the JIT and the device runtimes. */
#include <string.h>

#include "engine/program.h"

/* Every target a program can be built for; a backend adds its line here. */
static const program_backend *const backends[] = {
    &program_backend_cpu,
    &program_backend_cuda,
    &program_backend_opencl,
};

const program_backend *program_backend_of(const char *target, ir_diag *d)
{
    size_t head = strcspn(target, ":"); /* "opencl:1:0" names a device after the backend */
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++) {
        const program_backend *be = backends[i];
        bool names_devices = be->create_on || be == &program_backend_opencl;
        if (strcmp(be->target, target) == 0 ||
            (names_devices && strlen(be->target) == head && strncmp(be->target, target, head) == 0))
            return be;
    }
    ir_diag_error(d, -1, 0, 0, "unknown target '%s' for a compiled program", target);
    return NULL;
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
