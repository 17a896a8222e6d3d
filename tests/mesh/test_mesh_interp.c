/* test_mesh_interp.c — sharded and pipelined graphs (passes/shard.c, passes/pipeline.c) against
 * the single-device graph, without MPI: the mesh interpreter (passes/mesh_interp.c) runs every
 * rank's graph in one process and performs their collectives and send/recv.
 *
 * GPT-2 tiny and LLaMA tiny (GQA) with every param drawn from normal(0.2) (biases and norm
 * weights too, so a wrongly sliced bias shows), evaluated in f64: rank 0's logits and loss under
 * each mesh must equal the single-device reference interpreter's within 1e-9 relative (the only
 * difference is the order of sums). One line per case prints the max abs and rel error. Also:
 * the automatic mode on GPT-2 with its annotations removed, an odd vocabulary (kept whole), and
 * the mesh errors (unknown axis,
 * a rank outside the mesh, a dim that does not divide).
 */
#include "frontend/frontend.h"
#include "io/init.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/mesh.h"
#include "mesh_test_util.h"
#include "passes/pass.h"
#include "tests/unit/test_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void compare(const char *model, const char *mesh, const ir_graph *g, const ir_named_tensor *vals, int n_vals,
                    const ir_named_tensor *ref, int n_ref)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *outs;
    int n_outs;
    bool ok = mesh_interp_run(g, mesh, NULL, IR_PREC_F64, vals, n_vals, &outs, &n_outs, &d);
    if (!ok)
        ir_diag_print(&d, stderr);
    CHECK(ok, "%s under %s did not run", model, mesh);
    CHECK(!ok || n_outs == n_ref, "%s %s: %d outputs, want %d", model, mesh, n_outs, n_ref);
    for (int i = 0; ok && i < n_outs && i < n_ref; i++) {
        CHECK(strcmp(outs[i].name, ref[i].name) == 0, "output %d is '%s', want '%s'", i, outs[i].name, ref[i].name);
        int64_t cnt = ir_shape_numel(&ref[i].t->shape);
        CHECK(ir_shape_eq(&outs[i].t->shape, &ref[i].t->shape), "%s %s: output '%s' has another shape", model, mesh,
              ref[i].name);
        double max_abs = 0, max_rel = 0;
        for (int64_t e = 0; e < cnt && ir_shape_eq(&outs[i].t->shape, &ref[i].t->shape); e++) {
            double a = outs[i].t->data[e], b = ref[i].t->data[e], err = fabs(a - b);
            max_abs = err > max_abs ? err : max_abs;
            double rel = err / fmax(fabs(b), 1e-3);
            max_rel = rel > max_rel ? rel : max_rel;
        }
        printf("%-6s %-16s %-7s max abs err %.3g, max rel err %.3g\n", model, mesh, ref[i].name, max_abs, max_rel);
        CHECK(max_rel <= 1e-9, "%s %s: output '%s' differs (max rel err %.3g)", model, mesh, ref[i].name, max_rel);
    }
    if (ok)
        ir_named_tensors_free(outs, n_outs);
    ir_diag_free(&d);
}

static void model_cases(const char *model, const char *path, const fe_define *defs, int n_defs, int vocab,
                        const char *const *meshes, int n_meshes, bool strip_annotations)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = build(path, defs, n_defs, &d);
    CHECK(g, "%s did not build", path);
    if (!g) {
        ir_diag_print(&d, stderr);
        return;
    }
    for (int i = 0; strip_annotations && i < g->n_nodes; i++)
        g->nodes[i]->shard.present = false;
    int n_vals;
    ir_named_tensor *vals = values_for(g, vocab, &n_vals);
    ir_named_tensor *ref;
    int n_ref;
    bool ok = ir_interp_run(g, IR_PREC_F64, vals, n_vals, &ref, &n_ref, &d);
    CHECK(ok, "%s: the reference run failed", model);
    for (int m = 0; ok && m < n_meshes; m++)
        compare(model, meshes[m], g, vals, n_vals, ref, n_ref);
    if (ok)
        ir_named_tensors_free(ref, n_ref);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    ir_graph_free(g);
    ir_diag_free(&d);
}

/* The first error message of a mesh pipeline on g for mesh/rank, or "" when it succeeds. */
static void expect_error(const ir_graph *g0, const char *mesh, int rank, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = ir_graph_clone(g0);
    pass_mesh m;
    bool ok = pass_mesh_parse(mesh, rank, g, &m, &d);
    if (ok) {
        pass_options po = pass_options_default();
        po.mesh = &m;
        ok = pass_run_pipeline(g, "pipeline,shard", &po, &d);
    }
    const char *got = d.n_msg ? d.msg[0].msg : "";
    CHECK(!ok && strstr(got, want), "mesh %s rank %d: got error '%s', want '%s'", mesh, rank, got, want);
    printf("error  %-16s %s\n", mesh, got);
    ir_graph_free(g);
    ir_diag_free(&d);
}

/* The order each stage runs its micro-batches in (what loom train's executor follows): every
 * forward before its backward, backwards in micro-batch order, and at most M (GPipe) or P-s
 * (1F1B) micro-batches in flight on stage s — the activation memory 1F1B saves. */
static void schedule_cases(void)
{
    static const int PM[][2] = {{2, 2}, {2, 4}, {4, 4}, {4, 8}, {3, 2}, {8, 3}};
    for (size_t c = 0; c < sizeof PM / sizeof *PM; c++)
        for (int k = 0; k < 2; k++) {
            int P = PM[c][0], M = PM[c][1], ops[64];
            for (int s = 0; s < P; s++) {
                pipeline_order(P, s, M, 1, k == 1, ops);
                int f = 0, b = 0, peak = 0;
                bool ok = true;
                for (int i = 0; i < 2 * M; i++) {
                    if (ops[i] > 0)
                        ok = ok && ops[i] == ++f;
                    else
                        ok = ok && -ops[i] == ++b && b <= f;
                    peak = f - b > peak ? f - b : peak;
                }
                int want = k == 0 ? M : (P - s < M ? P - s : M);
                CHECK(ok && f == M && b == M && peak == want, "%s P=%d M=%d stage %d: %d in flight (want %d)%s",
                      k ? "1f1b" : "gpipe", P, M, s, peak, want, ok ? "" : ", ops out of order");
            }
        }
    printf("schedules: GPipe and 1F1B orders for %zu (pp, microbatches) pairs\n", sizeof PM / sizeof *PM);
    /* interleaved 1F1B (V model chunks a stage): every (micro-batch, chunk) forward and backward
     * once, a micro-batch's forwards in chunk order and its backwards in reverse after them,
     * micro-batches starting and finishing in order (the runner's slots are round robin); the
     * simulated schedule never waits forever, and its bubble is (pp-1)/(V·m+pp-1), below
     * 1F1B's (pp-1)/(m+pp-1) */
    static const int PMV[][3] = {{2, 2, 2}, {2, 4, 2}, {2, 2, 4}, {4, 4, 2}, {4, 8, 2}, {4, 8, 3}, {3, 6, 2}, {8, 16, 2}};
    for (size_t c = 0; c < sizeof PMV / sizeof *PMV; c++) {
        int P = PMV[c][0], M = PMV[c][1], V = PMV[c][2], ops[512];
        for (int s = 0; s < P; s++) {
            pipeline_order(P, s, M, V, true, ops);
            int next_f[64] = {0}, next_b[64], started = 0, finished = 0;
            bool ok = true;
            for (int i = 0; i < M; i++)
                next_b[i] = V - 1;
            for (int k = 0; k < 2 * M * V; k++) {
                int u = (ops[k] > 0 ? ops[k] : -ops[k]) - 1, i = u / V, v = u % V;
                ok = ok && i < M;
                if (!ok)
                    break;
                if (ops[k] > 0) {
                    ok = ok && v == next_f[i]++ && (v > 0 || i == started++);
                } else {
                    ok = ok && next_f[i] == V && v == next_b[i]-- && (v > 0 || i == finished++);
                }
            }
            CHECK(ok && started == M && finished == M, "interleaved P=%d M=%d V=%d stage %d: ops out of order", P, M, V, s);
        }
        double bubble = pipeline_bubble(P, M, V, true), want = (double)(P - 1) / (V * M + P - 1);
        CHECK(bubble >= 0 && bubble < want + 1e-9 && bubble < pipeline_bubble(P, M, 1, true),
              "interleaved P=%d M=%d V=%d: bubble %.4f (want %.4f, 1F1B %.4f)", P, M, V, bubble, want,
              pipeline_bubble(P, M, 1, true));
    }
    printf("schedules: interleaved 1F1B orders and bubbles for %zu (pp, microbatches, chunks)\n", sizeof PMV / sizeof *PMV);
}

int main(void)
{
    schedule_cases();
    static const fe_define gpt2[] = {{"vocab", "64"}, {"ctx", "16"}, {"d_model", "32"}, {"n_layer", "2"},
                                     {"n_head", "4"},  {"batch", "2"}, {"seq", "8"}};
    static const fe_define llama[] = {{"vocab", "64"}, {"d_model", "32"}, {"n_layer", "2"}, {"n_head", "4"},
                                      {"n_kv_head", "2"}, {"d_ff", "48"}, {"batch", "2"}, {"seq", "8"}};
    static const char *const meshes[] = {"tp=2", "tp=4", "dp=2", "dp=2,tp=2", "pp=2", "tp=2,pp=2", "dp=2,tp=2,pp=2"};
    int n_meshes = (int)(sizeof meshes / sizeof *meshes);
    model_cases("gpt2", "models/gpt2.loom", gpt2, 7, 64, meshes, n_meshes, false);
    model_cases("llama", "models/llama.loom", llama, 8, 64, meshes, n_meshes, false);
    static const char *const automatic[] = {"tp=2"};
    model_cases("gpt2/a", "models/gpt2.loom", gpt2, 7, 64, automatic, 1, true);
    /* an odd vocabulary (as GPT-2's 50257) stays whole under tp; the layers are still split */
    static const fe_define odd_vocab[] = {{"vocab", "65"}, {"ctx", "16"}, {"d_model", "32"}, {"n_layer", "2"},
                                          {"n_head", "4"},  {"batch", "2"}, {"seq", "8"}};
    model_cases("gpt2/v", "models/gpt2.loom", odd_vocab, 7, 65, automatic, 1, false);

    ir_diag d;
    ir_diag_init(&d);
    static const fe_define odd[] = {{"vocab", "64"}, {"ctx", "16"}, {"d_model", "30"}, {"n_layer", "1"},
                                    {"n_head", "3"},  {"batch", "3"}, {"seq", "8"}};
    ir_graph *g = build("models/gpt2.loom", odd, 7, &d);
    CHECK(g, "gpt2 (odd sizes) did not build");
    if (g) {
        expect_error(g, "xp=2", 0, "--mesh: unknown axis 'xp' (the model's mesh axes: dp, tp, pp)");
        expect_error(g, "tp=2", 2, "--rank 2 is outside the mesh dp=1 x tp=2 x pp=1 of 2 ranks");
        expect_error(g, "tp=4", 0, "param 'h.0.attn.c_attn.weight' f32[30, 90]: dim 1 (90) does not divide by mesh axis tp=4");
        expect_error(g, "dp=2", 0, "input 'tokens' i32[3, 8]: dim 0 (3) does not divide by mesh axis dp=2");
        expect_error(g, "pp=2", 0, "pipeline: 1 layer cannot fill 2 stages");
    }
    ir_graph_free(g);
    ir_diag_free(&d);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures != 0;
}
