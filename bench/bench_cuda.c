/* bench_cuda.c — forward timing of a model on `--target cuda` (or cpu) through engine/program.h:
 *     bench_cuda MODEL.loom WEIGHTS.safetensors [--target cuda|cpu] [--runs N] [-D name=value]...
 * Compiles once, binds the weights (converted to the params' dtypes) and random token inputs
 * (every integer input gets ids in [0, vocab)), runs once to warm up, then N times (default
 * 10) timed on the host around each synchronous run, then once profiled. Prints the median and
 * min ms, the TFLOP/s of the graph's matmuls and attentions (2·M·N·K per matmul; attention as
 * 2·B·H·T·S·(D + E), the full T×S even when causal), and device time by step kind. No outputs
 * are read back (GPT-2's logits at batch 16 are 3.3 GB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "frontend/frontend.h"
#include "engine/program.h"
#include "io/safetensors.h"

static double graph_flops(const ir_graph *g)
{
    double f = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_matmul) {
            const ir_node *a = n->in[0];
            int r = a->shape.rank;
            int64_t K = ir_attr_int(n, "transpose_a") ? a->shape.dim[r - 2] : a->shape.dim[r - 1];
            f += 2.0 * (double)ir_shape_numel(&n->shape) * (double)K;
        } else if (n->op == OP_attention) {
            const ir_shape *q = &n->in[0]->shape, *v = &n->in[2]->shape;
            double B = (double)q->dim[0], H = (double)q->dim[1], T = (double)q->dim[2], D = (double)q->dim[3];
            double S = (double)v->dim[2], E = (double)v->dim[3];
            f += 2.0 * B * H * T * S * (D + E);
        }
    }
    return f;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_cuda MODEL.loom WEIGHTS.safetensors [--target cuda|cpu] [--runs N] [-D n=v]...\n");
        return 2;
    }
    const char *target = "cuda";
    int runs = 10;
    fe_define defs[32];
    int n_defs = 0;
    int64_t vocab = 2;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "-D") == 0 && i + 1 < argc && n_defs < 32) {
            char *eq = strchr(argv[++i], '=');
            if (!eq)
                return 2;
            *eq = 0;
            defs[n_defs++] = (fe_define){argv[i], eq + 1};
        } else {
            fprintf(stderr, "bench_cuda: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    ir_diag d;
    ir_diag_init(&d);
    int file = ir_diag_load_file(&d, argv[1]);
    ir_graph *g = file >= 0 ? fe_build(&d, file, defs, n_defs) : NULL;
    rt_st_file w;
    bool ok = g && rt_st_open(argv[2], &w, &d);
    if (!ok) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    for (int i = 0; i < g->n_nodes; i++) /* ids: below the rows of the smallest embedding table */
        if (g->nodes[i]->op == OP_embedding) {
            int64_t rows = g->nodes[i]->in[0]->shape.dim[0];
            vocab = vocab == 2 || rows < vocab ? rows : vocab;
        }
    double flops = graph_flops(g);
    program *p = program_new(target, g, NULL, NULL, &d);
    ok = p != NULL;
    const ir_graph *pg = ok ? program_graph(p) : NULL;
    uint64_t rng = 88172645463325252ull;
    void **bufs = calloc((size_t)(pg ? pg->n_nodes : 0) + 1, sizeof *bufs); /* the CPU target reads them */
    for (int i = 0; ok && i < pg->n_nodes; i++) {
        const ir_node *n = pg->nodes[i];
        if (n->op != OP_param && n->op != OP_input)
            continue;
        size_t count = (size_t)ir_shape_numel(&n->shape), sz = (size_t)ir_dtype_size(n->dtype);
        void *buf = bufs[i] = malloc(count * sz + 1);
        if (n->op == OP_param) {
            const rt_st_tensor *t = rt_st_find(&w, n->name);
            if (!t || ir_shape_numel(&t->shape) != (int64_t)count || n->dtype != DT_F32) {
                fprintf(stderr, "bench_cuda: weights lack f32 '%s' of the declared size\n", n->name);
                return 1;
            }
            rt_convert_to_f32(t->dtype, t->data, buf, count);
        } else {
            for (size_t j = 0; j < count; j++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                int64_t v = (int64_t)(rng % (uint64_t)vocab);
                if (n->dtype == DT_I32)
                    ((int32_t *)buf)[j] = (int32_t)v;
                else if (n->dtype == DT_I64)
                    ((int64_t *)buf)[j] = v;
                else if (n->dtype == DT_F32)
                    ((float *)buf)[j] = 1.0f;
                else
                    memset((char *)buf + j * sz, 0, sz);
            }
        }
        ok = program_bind(p, n->name, buf, &d);
    }
    double t0 = rt_now_ms();
    ok = ok && program_run(p, &d);
    double first = rt_now_ms() - t0;
    double *ms = calloc((size_t)runs + 1, sizeof *ms);
    for (int r = 0; ok && r < runs; r++) {
        double t = rt_now_ms();
        ok = program_run(p, &d);
        ms[r] = rt_now_ms() - t;
    }
    if (ok) {
        program_profile(p, true);
        ok = program_run(p, &d);
    }
    if (!ok) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    rt_sort_doubles(ms, (size_t)runs);
    rt_exec_stats s = program_stats(p);
    printf("%s: compile %.0f ms, first run %.2f ms, %d runs: median %.3f ms, min %.3f ms; %.1f GFLOP -> %.1f TFLOP/s (median)\n",
           target, program_compile_ms(p), first, runs, ms[runs / 2], ms[0], flops / 1e9, flops / (ms[runs / 2] * 1e-3) / 1e12);
    printf("%s: steps: %d kernels, %d gemms, %d attentions; profiled run: kernels %.2f ms, gemms %.2f ms, attention %.2f ms, "
           "other %.2f ms\n",
           target, s.kernels, s.gemms, s.attentions, s.ms_kernels, s.ms_gemms, s.ms_attentions, s.ms_other);
    free(ms);
    for (int i = 0; i < pg->n_nodes; i++)
        free(bufs[i]);
    free(bufs);
    program_free(p);
    rt_st_close(&w);
    ir_graph_free(g);
    ir_diag_free(&d);
    return 0;
}
