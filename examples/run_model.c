/* run_model.c — a model through libloom: compile a .loom file, bind safetensors weights, run it on
 * some tokens, read the logits.
 *
 *     cc run_model.c $(pkg-config --cflags --libs loom) -o run_model
 *     loom init models/gpt2.loom -D n_layer=2 -o w.safetensors
 *     ./run_model models/gpt2.loom w.safetensors n_layer=2
 *
 * The tokens are 0, 1, 2, ... (mod the vocabulary); it prints the logits' shape and the first
 * eight logits of the last position.
 */
#include <loom.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(loom_status s)
{
    if (s) {
        fprintf(stderr, "%s\n", loom_status_message(s));
        loom_status_free(s);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.loom WEIGHTS.safetensors [name=value]...\n", argv[0]);
        return 2;
    }
    loom_define defs[32];
    int n_defs = 0;
    for (int i = 3; i < argc && n_defs < 32; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq) {
            *eq = 0;
            defs[n_defs++] = (loom_define){argv[i], eq + 1};
        }
    }
    loom_model *m;
    check(loom_model_load(argv[1], defs, n_defs, &m));
    const char *keep = "logits"; /* the loss would need targets too */
    check(loom_model_keep_outputs(m, &keep, 1));
    loom_tensor_info tok = loom_model_tensor(m, LOOM_INPUT, 0), out = loom_model_tensor(m, LOOM_OUTPUT, 0);
    int64_t vocab = out.dims[out.rank - 1], n = loom_tensor_numel(&tok);
    loom_program *p;
    check(loom_program_new(m, "cpu", &p));
    check(loom_program_load_weights(p, argv[2]));
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    for (int64_t i = 0; i < n; i++)
        tokens[i] = (int32_t)(i % vocab);
    check(loom_program_bind(p, tok.name, tokens));
    check(loom_program_run(p));
    const float *logits = loom_program_output(p, out.name);
    printf("%s [", out.name);
    for (int d = 0; d < out.rank; d++)
        printf("%s%lld", d ? ", " : "", (long long)out.dims[d]);
    printf("]:");
    for (int j = 0; j < 8 && j < vocab; j++)
        printf(" %.9g", logits[loom_tensor_numel(&out) - vocab + j]);
    printf("\n");
    free(tokens);
    loom_program_free(p);
    loom_model_free(m);
    return 0;
}
