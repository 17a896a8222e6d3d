/* frontend.c — fuzzes the .loom front end: lexer.l, parser.y, builder.c and eval.c (frontend/),
 * through fe_build as `loom check` calls it.
 *
 * Feeds: the input as the source of a model file "fuzz.loom", built with the hyperparameters
 * it declares (no -D).
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a failed build reported an error, the first one at a location in fuzz.loom (or naming it);
 *  - a built graph verifies (ir_verify), prints to textual IR that parses back to a graph that
 *    verifies and prints the same text (print → parse → print is the identity);
 *  - dce and cse run over it with the verifier after each (pass_run_pipeline's verify_each), and
 *    the result round-trips the same way.
 * Inputs over 64 KiB are skipped (the corpus models are 3–4 KiB; longer ones only slow it down).
 */
#include "fuzz/fuzz.h"

#include "frontend/frontend.h"
#include "passes/pass.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return -1;
    ir_diag d;
    ir_diag_init(&d);
    int file = ir_diag_add_source(&d, "fuzz.loom", (const char *)data, size);
    ir_graph *g = fe_build(&d, file, NULL, 0);
    fz_check_outcome(g != NULL, &d, "fuzz.loom", "fe_build");
    if (g) {
        if (!ir_verify(g, &d)) {
            fz_print_diag(&d);
            fz_fail("fe_build returned a graph that does not verify");
        }
        size_t len;
        char *text = fz_print_graph(g, &len);
        fz_check_roundtrip(text, len, "built graph");
        free(text);
        pass_options opt = pass_options_default();
        if (!pass_run_pipeline(g, "dce,cse", &opt, &d)) {
            fz_print_diag(&d);
            fz_fail("dce,cse failed on a built graph");
        }
        text = fz_print_graph(g, &len);
        fz_check_roundtrip(text, len, "built graph after dce,cse");
        free(text);
    }
    ir_graph_free(g);
    ir_diag_free(&d);
    return 0;
}
