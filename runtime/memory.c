/* memory.c — host memory checks before user-sized allocations (memory.h). */
#include "runtime/memory.h"

#include <stdio.h>
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

/* "12.34 GiB", "5.00 MiB" or "4096 bytes" */
static const char *size_str(uint64_t b, char buf[32])
{
    if (b >= (1ull << 30))
        snprintf(buf, 32, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, 32, "%.2f MiB", (double)b / (1ull << 20));
    else
        snprintf(buf, 32, "%llu bytes", (unsigned long long)b);
    return buf;
}

bool rt_device_alloc_ok(int64_t bytes, uint64_t have, const char *device, const char *what, ir_diag *d)
{
    const char *cap = getenv("LOOM_DEVICE_MEMORY");
    char *end;
    long long v = cap && *cap ? strtoll(cap, &end, 10) : 0;
    if (v > 0 && !*end && (have == 0 || (uint64_t)v < have))
        have = (uint64_t)v;
    if (bytes >= 0 && (have == 0 || (uint64_t)bytes <= have))
        return true;
    char need_s[32], have_s[32];
    if (bytes < 0)
        ir_diag_error(d, -1, 0, 0, "%s needs more than 2^63 bytes of device memory", what);
    else
        ir_diag_error(d, -1, 0, 0, "%s needs %s of device memory, more than %s's %s", what,
                      size_str((uint64_t)bytes, need_s), device, size_str(have, have_s));
    return false;
}
