/* memory.h — host memory that a size read from a file or given by a user is held against before
 * it is allocated, so that a hostile or mistaken size gives an error naming what it was for,
 * not the OOM killer or an "out of memory" abort. */
#ifndef LOOM_RT_MEMORY_H
#define LOOM_RT_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"

/* This machine's physical memory in bytes (sysconf), or INT64_MAX when it cannot be told; less
 * when the environment variable LOOM_HOST_MEMORY gives a smaller positive number of bytes (a
 * container's share; the fuzzers of fuzz/ hold inputs to 1 GiB with it). */
int64_t rt_host_memory(void);
/* true when bytes (>= 0) fit in host memory; else reports "WHAT needs N GiB, more than this
 * machine's M GiB of memory" through d (what names the file, tensor or model) and gives false.
 * A negative bytes (an overflowed size) is refused the same way. */
bool rt_host_alloc_ok(int64_t bytes, const char *what, ir_diag *d);

#endif
