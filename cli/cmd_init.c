/* cmd_init.c — `loom init` (STUB: being written). */
#include "cli.h"

#include <stdio.h>

int cmd_init(const cli_opts *o)
{
    (void)o;
    fprintf(stderr, "loom init: not implemented yet\n");
    return 1;
}
