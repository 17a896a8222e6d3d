/* test_ptx_models.c — every kernel of every model, as PTX, through ptxas: tiny GPT-2, LLaMA
 * (grouped-query attention) and BERT (the .loom files of models/, with small -D sizes), each as its forward
 * graph (dce,cse,fuse) and, GPT-2 and LLaMA, as its training graph (pass_training_pipeline: forward + backward),
 * lowered exactly as `loom run`/`loom train` lower them, in f32 and under the lower-precision
 * pass at bf16 and f16 (half loads and stores; "dce,cse,lower-precision=T,fuse" and
 * pass_training_precision_pipeline); the kernels of a plan (its library steps' kernel IR,
 * codegen/library.c, included) go into one module, rendered for sm_80 (and sm_90 for the forward graphs)
 * and assembled by ptxas (-arch=sm_80 / sm_90). ptxas: $LOOM_PTXAS (CMake sets it), else /usr/local/cuda/bin/ptxas,
 * else "ptxas" on PATH; without one the PTX is still generated and "skipped: ptxas not found"
 * is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/cuda/exec_cuda.h"
#include "frontend/frontend.h"
#include "codegen/lower.h"
#include "passes/pass.h"

static const char *ptxas_path(void)
{
    const char *env = getenv("LOOM_PTXAS");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
        return "/usr/local/cuda/bin/ptxas";
    return system("command -v ptxas >/dev/null 2>&1") == 0 ? "ptxas" : NULL;
}

/* ptxas on ptx for sm; true if it assembles. */
static bool assemble(const char *ptxas, const char *ptx, int sm, const char *tag)
{
    char path[] = "/tmp/loom_ptx_models_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    FILE *f = fdopen(fd, "w");
    fputs(ptx, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -arch=sm_%d -O3 %s -o /dev/null", ptxas, sm, path);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "ptxas -arch=sm_%d rejected %s (status %d); PTX kept in %s\n", sm, tag, rc, path);
    else
        unlink(path);
    return rc == 0;
}

typedef struct {
    const char *model;
    fe_define defs[8];
    int n_defs;
} model_case;

int main(void)
{
    const model_case cases[] = {
        {"models/gpt2.loom", {{"vocab", "64"}, {"ctx", "32"}, {"d_model", "32"}, {"n_layer", "2"}, {"n_head", "4"}, {"batch", "2"}, {"seq", "16"}}, 7},
        {"models/llama.loom", {{"vocab", "64"}, {"d_model", "32"}, {"n_layer", "2"}, {"n_head", "4"}, {"n_kv_head", "2"}, {"d_ff", "48"}, {"batch", "2"}, {"seq", "16"}}, 8},
        {"models/bert.loom", {{"vocab", "64"}, {"max_pos", "32"}, {"d_model", "32"}, {"n_layer", "2"}, {"n_head", "4"}, {"d_ff", "64"}, {"batch", "2"}, {"seq", "16"}}, 8},
    };
    const char *ptxas = ptxas_path();
    int failed = 0, modules = 0, kernels = 0, assembled = 0;
    const ir_dtype precisions[] = {DT_F32, DT_BF16, DT_F16}; /* f32, then lower-precision's types */
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (size_t pr = 0; pr < sizeof precisions / sizeof *precisions; pr++) {
        ir_dtype half = precisions[pr];
        for (int train = 0; train < (strstr(cases[c].model, "bert") ? 1 : 2); train++) { /* BERT has no loss */
            ir_diag d;
            ir_diag_init(&d);
            int file = ir_diag_load_file(&d, cases[c].model);
            ir_graph *g = file >= 0 ? fe_build(&d, file, cases[c].defs, cases[c].n_defs) : NULL;
            pass_options po = pass_options_default();
            cg_lowered low = {0};
            const char *pipeline = half == DT_F32 ? (train ? pass_training_pipeline() : "dce,cse,fuse")
                                   : train        ? pass_training_precision_pipeline(half)
                                   : half == DT_BF16 ? "dce,cse,lower-precision=bf16,fuse"
                                                     : "dce,cse,lower-precision=fp16,fuse";
            bool ok = g && pass_run_pipeline(g, pipeline, &po, &d) && cg_lower(g, &low, &d);
            int lib = 0; /* library steps' kernels (attention, its backward, sums, scatter-add) */
            for (int s = 0; ok && s < low.plan.n_steps; s++)
                lib += low.plan.steps[s].n_lib;
            for (int sm = 80; ok && sm <= (train ? 80 : 90); sm += 10) { /* sm_90: forward graphs */
                cg_ptx_options o = cg_ptx_defaults;
                o.sm = sm;
                char *ptx = cg_ptx(low.kernels, low.n_kernels, &o, &d);
                ok = ptx != NULL;
                modules++;
                char tag[128];
                snprintf(tag, sizeof tag, "%s (%s%s%s, %d kernels, %d of library steps)", cases[c].model,
                         train ? "training" : "forward", half == DT_F32 ? "" : ", ", half == DT_F32 ? "" : ir_dtype_name(half),
                         low.n_kernels, lib);
                if (ok && ptxas) {
                    ok = assemble(ptxas, ptx, sm, tag);
                    assembled += ok;
                }
                printf("%-58s sm_%d: %s\n", tag, sm, !ok ? "FAIL" : ptxas ? "ptxas OK" : "rendered");
                free(ptx);
            }
            if (!ok) {
                ir_diag_print(&d, stderr);
                printf("%s (%s, %s): FAIL\n", cases[c].model, train ? "training" : "forward", ir_dtype_name(half));
                failed++;
            } else {
                kernels += low.n_kernels;
            }
            cg_lowered_free(&low);
            if (g)
                ir_graph_free(g);
            ir_diag_free(&d);
        }
    }
    printf("%d modules (%d kernels per sm), %d assembled by ptxas, %d graphs failed\n", modules, kernels, assembled, failed);
    if (!ptxas)
        printf("skipped: ptxas not found (set LOOM_PTXAS, or pip install nvidia-cuda-nvcc-cu12)\n");
    return failed ? 1 : 0;
}
