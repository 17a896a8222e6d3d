/* cmd_dump.c — `loom dump` (STUB: being written). */
#include "cli.h"

#include <stdio.h>

int cmd_dump(const cli_opts *o)
{
    (void)o;
    fprintf(stderr, "loom dump: not implemented yet\n");
    return 1;
}
