/* lir.c — fuzzes the textual IR parser and the verifier (ir/parse.c, ir/verify.c), as `loom opt`
 * and `loom run FILE.lir` read IR.
 *
 * Feeds: the input as the text of "fuzz.lir".
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a failed parse reported an error, the first one at a location in fuzz.lir;
 *  - a parsed graph verifies (the parser's checks imply the verifier's), prints to IR that
 *    parses back and prints the same text (print → parse → print is the identity), and its
 *    clone (ir_graph_clone) prints the same text too;
 *  - dce and cse run over it with the verifier between passes (a pass may refuse a graph with
 *    an error, never crash), and a result round-trips the same way.
 * Inputs over 64 KiB are skipped.
 */
#include "fuzz/fuzz.h"

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
    ir_graph *g = ir_parse(&d, ir_diag_add_source(&d, "fuzz.lir", (const char *)data, size));
    fz_check_outcome(g != NULL, &d, "fuzz.lir", "ir_parse");
    if (g) {
        if (!ir_verify(g, &d)) {
            fz_print_diag(&d);
            fz_fail("ir_parse returned a graph that does not verify");
        }
        size_t len, len2;
        char *text = fz_print_graph(g, &len);
        fz_check_roundtrip(text, len, "parsed graph");
        ir_graph *c = ir_graph_clone(g);
        char *again = fz_print_graph(c, &len2);
        if (len != len2 || memcmp(text, again, len) != 0)
            fz_fail("a clone of the parsed graph prints differently");
        free(again);
        ir_graph_free(c);
        free(text);
        pass_options opt = pass_options_default();
        ir_diag pd;
        ir_diag_init(&pd);
        bool ok = pass_run_pipeline(g, "dce,cse", &opt, &pd);
        fz_check_outcome(ok, &pd, NULL, "dce,cse");
        if (ok) {
            text = fz_print_graph(g, &len);
            fz_check_roundtrip(text, len, "parsed graph after dce,cse");
            free(text);
        }
        ir_diag_free(&pd);
    }
    ir_graph_free(g);
    ir_diag_free(&d);
    return 0;
}
