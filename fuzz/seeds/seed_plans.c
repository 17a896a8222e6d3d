/* seed_plans.c — writes seed inputs for fuzz/plan.c: the plan files (plan/plan_io.h) of graphs
 * lowered as `loom run` lowers them, so the fuzzer starts from every step kind the lowering
 * makes (kernels, GEMMs, attention and its gradient, copies, id checks, cache writes, scatters,
 * row sums).
 *
 *     fuzz_seed_plans OUT_DIR FILE.lir...      (fuzz/make_corpus.sh runs it)
 *
 * Each FILE.lir that lowers gives OUT_DIR/plan-BASENAME: its memory-planned plan with one blob,
 * "graph", its textual IR. Files that do not lower are skipped with a note.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/lower.h"
#include "engine/program.h"
#include "fuzz/fuzz.h"
#include "plan/plan_io.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_seed_plans OUT_DIR FILE.lir...\n");
        return 2;
    }
    int written = 0;
    for (int i = 2; i < argc; i++) {
        ir_diag d;
        ir_diag_init(&d);
        int file = ir_diag_load_file(&d, argv[i]);
        ir_graph *g = file >= 0 ? ir_parse(&d, file) : NULL;
        ir_graph *fused = NULL;
        cg_lowered low = {0};
        bool ok = g && program_lower(g, NULL, false, &fused, &low, &d);
        if (ok) {
            size_t len, n;
            char *text = fz_print_graph(g, &len);
            rt_plan_blob blob = {"graph", (uint8_t *)text, len};
            uint8_t *bytes = rt_plan_serialize(&low.plan, &blob, 1, &n);
            const char *base = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
            char out[4096];
            snprintf(out, sizeof out, "%s/plan-%.*s", argv[1], (int)(strcspn(base, ".")), base);
            fz_write(out, bytes, n);
            free(bytes);
            free(text);
            written++;
        } else {
            fprintf(stderr, "seed_plans: skipped %s\n", argv[i]);
            ir_diag_print(&d, stderr);
        }
        cg_lowered_free(&low);
        ir_graph_free(fused);
        ir_graph_free(g);
        ir_diag_free(&d);
    }
    printf("seed_plans: %d plans in %s\n", written, argv[1]);
    return 0;
}
