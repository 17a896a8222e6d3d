/* cmd_opt.c — `loom opt FILE --passes=a,b [--after=PASS] [--time-passes] [--precision bf16|fp16]`:
 * reads textual IR (or
 * a model), runs the listed passes with the verifier between them, and prints the resulting IR
 * to stdout. `--passes=` (empty) runs no pass, so `loom opt F --passes=` round-trips F; without
 * --passes the default pipeline runs. With --after the IR is printed after that pass instead.
 * --precision is the half type of the lower-precision pass. */
#include "cli/cli.h"
#include "passes/pass.h"

#include <stdio.h>

int cmd_opt(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (o->n_extra > 0) {
        ir_diag_error(&d, -1, 0, 0, "opt: unexpected argument '%s' (one input file)", o->extra[0]);
        return cli_finish(&d);
    }
    ir_dtype prec = eng_precision(o, "opt", &d);
    ir_graph *g = prec != DT_VOID ? eng_load_graph(o, &d) : NULL;
    if (g) {
        pass_options po = pass_options_default();
        po.precision = prec == DT_BF16 || prec == DT_F16 ? prec : DT_VOID;
        po.after = o->after;
        po.time_passes = o->time_passes;
        const char *pipeline = o->passes ? o->passes : pass_default_pipeline();
        if (pass_run_pipeline(g, pipeline, &po, &d) && !o->after)
            ir_print(g, stdout);
        fflush(stdout);
    }
    ir_graph_free(g);
    return cli_finish(&d);
}
