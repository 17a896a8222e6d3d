/* emit.c — `loom dump --emit=STAGE` (emit.h): a clone of the graph through the pipeline,
 * lowered and memory-planned as program_lower does, then the stage asked for, printed. */
#include "engine/emit.h"

#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/lower.h"
#include "engine/program.h"
#include "passes/pass.h"
#include "plan/plan_memory.h"
#include "plan/plan_print.h"

static const char *const stage_names[] = {
    [ENG_EMIT_GRAPH] = "graph", [ENG_EMIT_FUSED] = "fused", [ENG_EMIT_PLAN] = "plan",     [ENG_EMIT_KIR] = "kir",
    [ENG_EMIT_LL] = "ll",       [ENG_EMIT_PTX] = "ptx",     [ENG_EMIT_PTX_LL] = "ptx-ll", [ENG_EMIT_CL] = "cl",
};
enum { N_STAGES = sizeof stage_names / sizeof *stage_names };

/* The PTX targets --sm takes: those LLVM 19's NVPTX backend knows from sm_80 on. */
static const int sms[] = {80, 86, 87, 89, 90};

bool eng_emit_options_get(const eng_opts *o, const char *cmd, eng_emit_options *eo, ir_diag *d)
{
    *eo = (eng_emit_options){.cmd = cmd, .stage = ENG_EMIT_GRAPH, .pipeline = o->passes, .train = o->train,
                             .time_passes = o->time_passes, .generic_cpu = o->generic_cpu};
    const char *stage = eng_named(o, "--emit");
    if (stage) {
        int s = 0;
        while (s < N_STAGES && strcmp(stage, stage_names[s]) != 0)
            s++;
        if (s == N_STAGES) {
            ir_diag_error(d, -1, 0, 0, "%s: --emit expects graph, fused, plan, kir, ll, ptx, ptx-ll or cl, got '%s'",
                          cmd, stage);
            return false;
        }
        eo->stage = (eng_emit_stage)s;
    }
    const char *sm = eng_named(o, "--sm");
    if (sm) {
        char *end;
        long v = strtol(sm, &end, 10);
        for (size_t i = 0; i < sizeof sms / sizeof *sms && !*end && *sm; i++)
            if (v == sms[i])
                eo->sm = (int)v;
        if (!eo->sm) {
            ir_diag_error(d, -1, 0, 0, "%s: --sm expects 80, 86, 87, 89 or 90, got '%s'", cmd, sm);
            return false;
        }
        if (eo->stage != ENG_EMIT_PTX && eo->stage != ENG_EMIT_PTX_LL) {
            ir_diag_error(d, -1, 0, 0, "%s: --sm picks the PTX target of --emit=ptx or --emit=ptx-ll", cmd);
            return false;
        }
    }
    ir_dtype prec = eng_precision(o, cmd, d);
    if (prec == DT_VOID)
        return false;
    eo->half = prec == DT_BF16 || prec == DT_F16 ? prec : DT_VOID;
    if (eo->stage == ENG_EMIT_GRAPH)
        return true;
    const char *name = stage_names[eo->stage];
    if (o->after) {
        ir_diag_error(d, -1, 0, 0, "%s: --after prints the graph IR after a pass; it does not combine with --emit=%s",
                      cmd, name);
        return false;
    }
    if (o->mesh) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: --emit=%s lowers a single-device graph; a mesh's ranks are shown by --emit=graph "
                      "--after=shard or `loom check --mesh`",
                      cmd, name);
        return false;
    }
    if (prec == DT_F64 && eo->stage != ENG_EMIT_FUSED) {
        ir_diag_error(d, -1, 0, 0, "%s: --emit=%s lowers in f32 (or --precision bf16|fp16), not f64", cmd, name);
        return false;
    }
    if (eo->train && eo->pipeline) {
        ir_diag_error(d, -1, 0, 0, "%s: --train picks the training pipeline; it does not combine with --passes", cmd);
        return false;
    }
    return true;
}

/* The last pass of a comma-separated pipeline is fuse. */
static bool ends_with_fuse(const char *csv)
{
    const char *last = strrchr(csv, ',');
    last = last ? last + 1 : csv;
    return strcmp(last, "fuse") == 0;
}

/* Every kernel's launch geometry as comment lines (GPU targets). */
static void put_launch(cg_kernel *const *ks, int n, bool ptx, FILE *out)
{
    for (int i = 0; i < n; i++) {
        if (ptx) {
            unsigned grid[3], block[3];
            cg_ptx_launch_dims(ks[i], grid, block);
            fprintf(out, "// launch %s: grid %u x %u x %u, block %u x %u x %u\n", ks[i]->name, grid[0], grid[1],
                    grid[2], block[0], block[1], block[2]);
        } else {
            size_t groups, local;
            cg_opencl_launch_dims(ks[i], &groups, &local);
            fprintf(out, "// launch %s: %zu groups x %zu work-items\n", ks[i]->name, groups, local);
        }
    }
}

/* Writes the stage from the pipeline's graph f and its lowering l (empty for `fused`); false
 * (reported, nothing written) when a renderer fails. */
static bool put_stage(const eng_emit_options *eo, const ir_graph *f, const cg_lowered *l, FILE *out, ir_diag *d)
{
    cg_kernel *const *ks = l->kernels;
    int n = l->n_kernels;
    char *text = NULL;
    switch (eo->stage) {
    case ENG_EMIT_GRAPH:
    case ENG_EMIT_FUSED:
        ir_print(f, out);
        return true;
    case ENG_EMIT_PLAN:
        rt_plan_print(&l->plan, out);
        return true;
    case ENG_EMIT_KIR:
        for (int i = 0; i < n; i++) {
            if (i)
                fputc('\n', out);
            cg_kernel_print(ks[i], out);
        }
        return true;
    case ENG_EMIT_LL: {
        if (n == 0) {
            fputs("; no kernels\n", out);
            return true;
        }
        cg_host_options ho = cg_host_defaults;
        ho.generic_cpu = eo->generic_cpu;
        text = cg_llvm_host_ir(ks, n, &ho, d);
        break;
    }
    case ENG_EMIT_PTX:
    case ENG_EMIT_PTX_LL: {
        cg_ptx_options po = cg_ptx_defaults;
        po.sm = eo->sm ? eo->sm : program_cuda_sm();
        if (n == 0) {
            fputs(eo->stage == ENG_EMIT_PTX ? "// no kernels\n" : "; no kernels\n", out);
            return true;
        }
        text = eo->stage == ENG_EMIT_PTX ? cg_ptx(ks, n, &po, d) : cg_ptx_llvm_ir(ks, n, &po, d);
        if (text && eo->stage == ENG_EMIT_PTX)
            put_launch(ks, n, true, out);
        break;
    }
    case ENG_EMIT_CL:
        if (n == 0) {
            fputs("// no kernels\n", out);
            return true;
        }
        text = cg_opencl_source_offsets(ks, n, d);
        if (text)
            put_launch(ks, n, false, out);
        break;
    }
    if (!text)
        return false;
    fputs(text, out);
    free(text);
    return true;
}

bool eng_emit(const ir_graph *g, const eng_emit_options *eo, FILE *out, ir_diag *d)
{
    if (eo->stage == ENG_EMIT_GRAPH) {
        ir_print(g, out);
        return true;
    }
    const char *name = stage_names[eo->stage];
    const char *pipeline = eo->pipeline;
    if (!pipeline)
        pipeline = eo->train ? (eo->half != DT_VOID ? pass_training_precision_pipeline(eo->half) : pass_training_pipeline())
                             : eo->half != DT_VOID ? pass_precision_pipeline()
                                                   : pass_default_pipeline();
    if (!ends_with_fuse(pipeline)) {
        ir_diag_error(d, -1, 0, 0, "%s: --emit=%s needs a pipeline that ends with fuse, got --passes=%s", eo->cmd,
                      name, pipeline);
        return false;
    }
    pass_options po = pass_options_default();
    po.time_passes = eo->time_passes;
    po.precision = eo->half;
    /* PTX and OpenCL C are what the device targets run: their GEMM and attention take f32 */
    po.f32_library = eo->stage == ENG_EMIT_PTX || eo->stage == ENG_EMIT_PTX_LL || eo->stage == ENG_EMIT_CL;
    ir_graph *f = ir_graph_clone(g);
    cg_lowered low = {0};
    bool ok = pass_run_pipeline(f, pipeline, &po, d);
    if (ok && eo->stage != ENG_EMIT_FUSED) {
        ok = cg_lower(f, &low, d);
        if (ok)
            pass_plan_memory(&low.plan);
    }
    ok = ok && put_stage(eo, f, &low, out, d);
    cg_lowered_free(&low);
    ir_graph_free(f);
    return ok;
}
