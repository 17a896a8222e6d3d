/* cmd_opt.c — `loom opt` (STUB: being written). */
#include "cli.h"

#include <stdio.h>

int cmd_opt(const cli_opts *o)
{
    (void)o;
    fprintf(stderr, "loom opt: not implemented yet\n");
    return 1;
}
