/* cmd_check.c — `loom check` (STUB: being written). */
#include "cli.h"

#include <stdio.h>

int cmd_check(const cli_opts *o)
{
    (void)o;
    fprintf(stderr, "loom check: not implemented yet\n");
    return 1;
}
