/* cmd_dump.c — `loom dump FILE [-D n=v]... [--after=PASS] [--passes=a,b] [--time-passes]`: loads a
 * model (.loom, built with the -D overrides) or textual IR (.lir) and prints its graph IR. With
 * --after it runs the pipeline (--passes, else the default one) and prints the IR after that
 * pass; --time-passes alone times the whole pipeline and prints its result. */
#include "cli.h"
#include "pass.h"

#include <stdio.h>

int cmd_dump(const cli_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (o->n_extra > 0) {
        ir_diag_error(&d, -1, 0, 0, "dump: unexpected argument '%s' (one input file)", o->extra[0]);
        return cli_finish(&d);
    }
    ir_graph *g = cli_load_graph(o, &d);
    if (g) {
        if (o->after || o->time_passes || o->passes) {
            pass_options po = pass_options_default();
            po.after = o->after;
            po.time_passes = o->time_passes;
            const char *pipeline = o->passes ? o->passes : pass_default_pipeline();
            if (pass_run_pipeline(g, pipeline, &po, &d) && !o->after)
                ir_print(g, stdout);
        } else {
            ir_print(g, stdout);
        }
        fflush(stdout);
    }
    ir_graph_free(g);
    return cli_finish(&d);
}
