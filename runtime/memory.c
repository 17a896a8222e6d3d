/* memory.c — host memory checks before user-sized allocations (memory.h). */
#include "runtime/memory.h"

#include <stdlib.h>
#include <unistd.h>

int64_t rt_host_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    int64_t have = pages <= 0 || size <= 0 || pages > INT64_MAX / size ? INT64_MAX : (int64_t)pages * size;
    const char *cap = getenv("LOOM_HOST_MEMORY");
    char *end;
    long long v = cap && *cap ? strtoll(cap, &end, 10) : 0;
    if (v > 0 && !*end && v < have)
        have = v;
    return have;
}

bool rt_host_alloc_ok(int64_t bytes, const char *what, ir_diag *d)
{
    int64_t have = rt_host_memory();
    if (bytes >= 0 && bytes <= have)
        return true;
    if (bytes < 0)
        ir_diag_error(d, -1, 0, 0, "%s needs more than 2^63 bytes", what);
    else
        ir_diag_error(d, -1, 0, 0, "%s needs %.1f GiB, more than this machine's %.1f GiB of memory", what,
                      (double)bytes / (1 << 30), (double)have / (1 << 30));
    return false;
}
