/* cmd_run.c — `loom run` (STUB: being written). */
#include "cli.h"

#include <stdio.h>

int cmd_run(const cli_opts *o)
{
    (void)o;
    fprintf(stderr, "loom run: not implemented yet\n");
    return 1;
}
