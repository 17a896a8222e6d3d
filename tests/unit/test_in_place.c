/* test_in_place.c — program_in_place (engine/program.h): when an output may share memory with
 * the param of its name, so that `loom train` on the CPU updates params and optimizer state in
 * place (engine/train.c, update_in_place).
 *
 *  1. The update graphs of passes/optimizer.c (AdamW; SGD with momentum) for a model with a
 *     decayed matrix and an undecayed vector: every params/G and state output is in place.
 *  2. Graphs where sharing would change the result: the param also read by a reduction (a
 *     sum over it, another kernel), read at another index than written (a transpose), and an
 *     output whose param has another shape; and an output without a param of its name.
 *  3. AdamW in place equals out of place: three updates run with the output bound to the
 *     param's own memory, against the same updates with separate outputs copied back, bit for
 *     bit.
 */
#include "engine/program.h"
#include "ir/ir.h"
#include "passes/optimizer.h"
#include "test_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_failed;

static void check(bool ok, const char *what)
{
    printf("%-72s %s\n", what, ok ? "OK" : "FAIL");
    n_failed += !ok;
}

static program *compile(const ir_graph *g, ir_diag *d)
{
    program *p = program_cpu_new(g, NULL, NULL, d);
    if (!p) {
        ir_diag_print(d, stderr);
        exit(1);
    }
    return p;
}

static const char *MODEL = "graph m {\n"
                           "  %0 = input \"x\" : f32[2, 3]\n"
                           "  %1 = param \"w\" : f32[3, 4]\n"
                           "  %2 = param \"b\" : f32[4]\n"
                           "  %3 = matmul %0, %1 : f32[2, 4]\n"
                           "  %4 = add %3, %2 : f32[2, 4]\n"
                           "  %5 = sum %4 {axes = []} : f32[]\n"
                           "  output \"loss\" %5\n"
                           "}\n";

static const char *UNSAFE = "graph u {\n"
                            "  %0 = param \"s\" : f32[8]\n"
                            "  %1 = sum %0 {axes = []} : f32[]\n"
                            "  %2 = mul %0, %1 : f32[8]\n"
                            "  output \"s\" %2\n"
                            "  %3 = param \"t\" : f32[2, 4]\n"
                            "  %4 = transpose %3 {perm = [1, 0]} : f32[4, 2]\n"
                            "  %5 = neg %4 : f32[4, 2]\n"
                            "  %6 = reshape %5 {shape = [2, 4]} : f32[2, 4]\n"
                            "  output \"t\" %6\n"
                            "  %7 = param \"v\" : f32[4]\n"
                            "  %8 = reshape %7 {shape = [2, 2]} : f32[2, 2]\n"
                            "  %9 = neg %8 : f32[2, 2]\n"
                            "  %10 = slice %9 {axis = 0, start = 0, end = 1} : f32[1, 2]\n"
                            "  output \"v\" %10\n"
                            "  %11 = neg %7 : f32[4]\n"
                            "  output \"alone\" %11\n"
                            "}\n";

static bool in_place_all(const program *p, const char *const *names, int n)
{
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok &= program_in_place(p, names[i]);
    return ok;
}

enum { NW = 12, NB = 4 }; /* the decay group (w [3, 4]) and no_decay (b [4]) */

/* Three AdamW updates of params, m and v (the groups' flat arrays: [0] decay, [1] no_decay)
 * on the host device, the outputs bound to the params' own memory (in place) or to separate
 * arrays copied back after each update. */
static void adamw_runs(const ir_graph *up, bool in_place, float *par[2], float *st[2][2], ir_diag *d)
{
    static const char *const group[2] = {"decay", "no_decay"}, *const state[2] = {"adam.m", "adam.v"};
    const int n[2] = {NW, NB};
    program_device *dev = program_device_open("cpu", d);
    program *p = dev ? program_new_device(dev, up, NULL, NULL, d) : NULL;
    if (!p) {
        ir_diag_print(d, stderr);
        exit(1);
    }
    float grads[2][NW], out[2][3][NW], lr = 0.05f, step = 0;
    program_buf *bufs[2][3][2]; /* group, tensor (params, m, v), input / output */
    char name[64];
    bool ok = true;
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 3; t++) {
            float *x = t == 0 ? par[k] : st[k][t - 1];
            snprintf(name, sizeof name, "%s/%s", t == 0 ? "params" : state[t - 1], group[k]);
            bufs[k][t][0] = program_buf_host(dev, x, sizeof(float) * (size_t)n[k]);
            bufs[k][t][1] = in_place ? NULL : program_buf_host(dev, out[k][t], sizeof(float) * (size_t)n[k]);
            ok = ok && program_bind_buf(p, name, bufs[k][t][0], 0, d) &&
                 program_bind_output_buf(p, name, in_place ? bufs[k][t][0] : bufs[k][t][1], 0, d);
        }
    for (int s = 1; ok && s <= 3; s++) {
        step = (float)s;
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < n[k]; i++)
                grads[k][i] = (float)((i * 7 + s * 3 + k) % 11) / 11.0f - 0.4f;
            snprintf(name, sizeof name, "grads/%s", group[k]);
            ok = ok && program_bind(p, name, grads[k], d);
        }
        ok = ok && program_bind(p, "lr", &lr, d) && program_bind(p, "step", &step, d) && program_run(p, d);
        for (int k = 0; ok && !in_place && k < 2; k++)
            for (int t = 0; t < 3; t++)
                memcpy(t == 0 ? par[k] : st[k][t - 1], out[k][t], sizeof(float) * (size_t)n[k]);
    }
    if (!ok) {
        ir_diag_print(d, stderr);
        exit(1);
    }
    program_free(p);
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 3; t++)
            for (int io = 0; io < (in_place ? 1 : 2); io++)
                program_buf_free(bufs[k][t][io]);
    program_device_close(dev);
}

int main(void)
{
    ir_diag d;
    ir_diag_init(&d);

    /* 1. the optimizers' update graphs */
    ir_graph *model = tg_parse(MODEL, &d);
    pass_opt_config c = pass_opt_config_default();
    ir_graph *up = pass_optimizer_graph(model, &c, &d);
    program *p = compile(up, &d);
    const char *adam[] = {"params/decay", "adam.m/decay", "adam.v/decay", "params/no_decay", "adam.m/no_decay",
                          "adam.v/no_decay"};
    check(in_place_all(p, adam, 6), "AdamW update: params and moments of both groups in place");
    program_free(p);

    /* 3. the same numbers in place */
    float pa[2][NW], sa[2][2][NW], pb[2][NW], sb[2][2][NW];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NW; i++) {
            pa[k][i] = pb[k][i] = (float)(i % 5) * 0.3f - 0.6f + (float)k;
            sa[k][0][i] = sb[k][0][i] = sa[k][1][i] = sb[k][1][i] = 0;
        }
    adamw_runs(up, true, (float *[2]){pa[0], pa[1]}, (float *[2][2]){{sa[0][0], sa[0][1]}, {sa[1][0], sa[1][1]}}, &d);
    adamw_runs(up, false, (float *[2]){pb[0], pb[1]}, (float *[2][2]){{sb[0][0], sb[0][1]}, {sb[1][0], sb[1][1]}}, &d);
    bool changed = pa[0][0] != -0.6f;
    check(changed && memcmp(pa, pb, sizeof pa) == 0 && memcmp(sa, sb, sizeof sa) == 0,
          "AdamW, 3 updates: in place equals out of place, bit for bit (and moved the params)");
    ir_graph_free(up);
    c.kind = PASS_OPT_SGD;
    c.momentum = 0.9;
    up = pass_optimizer_graph(model, &c, &d);
    p = compile(up, &d);
    const char *sgd[] = {"params/decay", "sgd.buf/decay", "params/no_decay", "sgd.buf/no_decay"};
    check(in_place_all(p, sgd, 4), "SGD with momentum: params and buffers of both groups in place");
    program_free(p);
    ir_graph_free(up);
    ir_graph_free(model);

    /* 2. where sharing would change the result */
    ir_graph *u = tg_parse(UNSAFE, &d);
    p = compile(u, &d);
    check(!program_in_place(p, "s"), "a param also summed by another kernel: not in place");
    check(!program_in_place(p, "t"), "a param read at another index than written (transpose): not in place");
    check(!program_in_place(p, "v"), "an output of another size than its param: not in place");
    check(!program_in_place(p, "alone"), "an output without a param of its name: not in place");
    program_free(p);
    ir_graph_free(u);

    ir_diag_free(&d);
    if (n_failed)
        printf("%d FAILED\n", n_failed);
    return n_failed ? 1 : 0;
}
