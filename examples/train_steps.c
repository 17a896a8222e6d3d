/* train_steps.c — training through libloom, one step at a time: the loss of each step, the
 * validation loss at the end: the numbers `loom train` prints for the same options.
 *
 *     cc train_steps.c $(pkg-config --cflags --libs loom) -o train_steps
 *     ./train_steps models/gpt2.loom data/tinyshakespeare.txt 20 vocab=256 n_layer=2
 *
 * Options are loom train's (docs/training.md) without their dashes: here a seed and a
 * learning rate.
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
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.loom DATA STEPS [name=value]...\n", argv[0]);
        return 2;
    }
    loom_define defs[32];
    int n_defs = 0;
    for (int i = 4; i < argc && n_defs < 32; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq) {
            *eq = 0;
            defs[n_defs++] = (loom_define){argv[i], eq + 1};
        }
    }
    loom_model *m;
    check(loom_model_load(argv[1], defs, n_defs, &m));
    loom_option opts[] = {{"data", argv[2]}, {"steps", argv[3]}, {"lr", "3e-3"}, {"seed", "3"}};
    loom_trainer *t;
    check(loom_trainer_new(m, opts, 4, &t));
    loom_model_free(m); /* the trainer keeps what it needs */
    for (int i = 0, steps = atoi(argv[3]); i < steps; i++) {
        loom_step s;
        check(loom_trainer_step(t, &s));
        printf("step %lld | loss %.4f | lr %.1e | norm %.2f\n", (long long)s.step, s.loss, s.lr, s.grad_norm);
    }
    double val;
    check(loom_trainer_evaluate(t, &val));
    printf("val loss %.4f\n", val);
    loom_trainer_free(t);
    return 0;
}
