/* cmd_dump.c — `loom dump FILE [-D n=v]... [--after=PASS] [--passes=a,b] [--time-passes]
 * [--precision bf16|fp16]`: loads a
 * model (.loom, built with the -D overrides) or textual IR (.lir) and prints its graph IR. With
 * --after it runs the pipeline (--passes, else the default one, or the training pipeline when
 * --after names one of its passes that the default one lacks, e.g. autodiff) and prints the IR
 * after that pass; --time-passes alone times the whole pipeline and prints its result. With a
 * half --precision (or --after=lower-precision) the default pipeline is dce,cse,lower-precision,
 * fuse, and lower-precision in any pipeline lowers to that precision.
 * --emit=fused|plan|kir|ll|ptx|cl (and ptx-ll; --sm N for the PTX target) prints a later stage
 * of lowering instead: engine/emit.h, which also reads the options that go with it. */
#include "cli/cli.h"
#include "engine/emit.h"
#include "engine/jobs.h"
#include "passes/mesh.h"
#include "passes/pass.h"

#include <stdio.h>
#include <string.h>

/* True when the comma-separated list csv names pass. */
static bool in_pipeline(const char *csv, const char *pass)
{
    size_t n = strlen(pass);
    for (const char *p = csv; p;) {
        if (strncmp(p, pass, n) == 0 && (p[n] == ',' || p[n] == 0))
            return true;
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return false;
}

int cmd_dump(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (o->n_extra > 0) {
        ir_diag_error(&d, -1, 0, 0, "dump: unexpected argument '%s' (one input file)", o->extra[0]);
        return cli_finish(&d);
    }
    eng_emit_options eo;
    if (!eng_emit_options_get(o, "dump", &eo, &d))
        return cli_finish(&d);
    ir_graph *g = eng_load_graph(o, &d);
    if (g && o->dot) {
        eng_dump_dot(g, o, stdout, &d);
        fflush(stdout);
    } else if (g && eo.stage != ENG_EMIT_GRAPH) {
        eng_emit(g, &eo, stdout, &d);
        fflush(stdout);
    } else if (g) {
        if (o->after || o->time_passes || o->passes) {
            pass_options po = pass_options_default();
            po.after = o->after;
            po.time_passes = o->time_passes;
            po.precision = eo.half;
            bool lower = po.precision != DT_VOID || (o->after && strcmp(o->after, "lower-precision") == 0);
            const char *pipeline = o->passes  ? o->passes
                                   : o->mesh  ? pass_mesh_pipeline()
                                   : lower    ? pass_precision_pipeline()
                                              : pass_default_pipeline();
            pass_mesh mesh; /* --mesh: the per-rank pipeline (passes/mesh.h) */
            po.mesh = o->mesh && pass_mesh_parse(o->mesh, o->rank, g, &mesh, &d) ? &mesh : NULL;
            if (!o->passes && o->after && !in_pipeline(pipeline, o->after) &&
                in_pipeline(pass_training_pipeline(), o->after))
                pipeline = pass_training_pipeline();
            if ((!o->mesh || po.mesh) && pass_run_pipeline(g, pipeline, &po, &d) && !o->after)
                ir_print(g, stdout);
        } else {
            ir_print(g, stdout);
        }
        fflush(stdout);
    }
    ir_graph_free(g);
    return cli_finish(&d);
}
