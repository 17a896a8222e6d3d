/* program_host.c — the calls both host backends (program_cpu.c: JIT; program_table.c: kernels
 * linked ahead of time) make on their CPU executor, the first member of their state. */
#include "engine/program.h"

static rt_exec *ex_of(const void *state) { return *(rt_exec *const *)state; }

bool program_host_bind(void *state, const char *name, const void *data, ir_diag *d)
{
    return rt_exec_bind(ex_of(state), name, data, d);
}

bool program_host_run(void *state, ir_diag *d) { return rt_exec_run(ex_of(state), d); }
void *program_host_output(void *state, const char *name) { return rt_exec_output(ex_of(state), name); }
void program_host_profile(void *state, bool on) { rt_exec_profile(ex_of(state), on); }
rt_exec_stats program_host_stats(const void *state) { return rt_exec_stats_get(ex_of(state)); }
rt_exec *program_host_exec(void *state) { return ex_of(state); }
