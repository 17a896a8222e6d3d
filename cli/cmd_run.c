/* cmd_run.c — `loom run MODEL --weights W --inputs I --outputs O [--target cpu|cuda|opencl|ref]
 *                       [--precision f32|f64|bf16|fp16] [--stats] [-D n=v]...`
 *
 * Binds every parameter from W and every input from I by external name, runs the model and
 * writes its outputs to O, each under its output name. Checks, each reported naming the file
 * and the tensor (all of them, not just the first):
 *  - a parameter or required input absent from its file; a tensor the model has no use for;
 *  - a shape different from the declared one; a float tensor for an integer value or the
 *    reverse. Float tensors of another float dtype (f16, bf16, f32, f64) convert; integer
 *    tensors of another integer dtype convert when every element fits.
 * Optional inputs may be absent: the outputs that need them are then skipped. Hugging Face's
 * non-parameter buffers in a weights file (e.g. embeddings.position_ids) are skipped.
 *
 * Every target runs through engine/run.c (eng_run_files), as the executables of `loom build`
 * do. Targets: `cpu` (the default, except with --precision f64): fusion, kernels JIT-compiled
 * for this machine, OpenBLAS and a thread pool; f32 compute, outputs in their own dtype;
 * --stats prints the plan's kernels and library calls, its memory and times.
 * `cuda`, `opencl[:PLATFORM[:DEVICE]]`: the same plan on a device (engine/program_cuda.c,
 * engine/program_opencl.c; OpenCL: the first platform with a device and its first device unless
 * told; f32 compute). `ref`: the reference interpreter. --passes runs a pipeline first on any
 * target (but ref it must end with fuse; default dce,cse,fuse): --passes=dce,cse,autodiff,fuse
 * runs a training step's forward and backward, writing the loss and every grad/<param>.
 * With --precision f32 (the default) values are rounded to their dtype after every op and
 * outputs are written in their own dtype; with --precision f64 (ref only) nothing is rounded
 * (parameters given in a wider dtype than declared keep their precision) and float outputs
 * are written as F64, so that a comparison against an f64 reference can be tight.
 * With --precision bf16|fp16 the lower-precision pass (passes/lower_precision.c) joins the
 * pipeline (default dce,cse,lower-precision=TYPE,fuse; with --passes, before a final fuse or at
 * the end): activations and GEMM/attention operands in the half type, reductions and params in
 * f32, outputs in their declared dtype; on ref every value is then rounded to its (half or f32)
 * dtype after each op.
 */
#include "cli/cli.h"
#include "engine/compress.h"
#include "engine/jobs.h"
#include "engine/run.h"
#include "ir/interp.h"
#include "runtime/opencl/opencl.h"

#include <string.h>

/* The target to run on: --target, else cpu, or ref for --precision f64 (cpu computes in f32). */
static const char *target_of(const eng_opts *o)
{
    if (o->target)
        return o->target;
    return o->precision && strcmp(o->precision, "f64") == 0 ? "ref" : "cpu";
}

static bool check_target(const eng_opts *o, ir_diag *d)
{
    const char *t = target_of(o);
    if (strcmp(t, "ref") == 0)
        return true;
    if (strcmp(t, "cpu") == 0) {
        if (o->precision && strcmp(o->precision, "f64") == 0) {
            ir_diag_error(d, -1, 0, 0, "run: --target cpu computes in f32; use --target ref for --precision f64");
            return false;
        }
        return true;
    }
    if (strcmp(t, "cuda") == 0) {
        if (o->precision && strcmp(o->precision, "f64") == 0) {
            ir_diag_error(d, -1, 0, 0, "run: --target cuda computes in f32; use --target ref for --precision f64");
            return false;
        }
        return true;
    }
    if (strncmp(t, "opencl", 6) == 0 && (t[6] == 0 || t[6] == ':')) {
        /* opencl[:PLATFORM[:DEVICE]]: the syntax now, the device when the program is built */
        int plat, dev;
        if (o->precision && strcmp(o->precision, "f64") == 0) {
            ir_diag_error(d, -1, 0, 0, "run: --target opencl computes in f32; use --target ref for --precision f64");
            return false;
        }
        return rt_ocl_parse_target(t, &plat, &dev, d);
    }
    ir_diag_error(d, -1, 0, 0, "run: unknown target '%s' (known: ref, cpu, cuda, opencl[:PLATFORM[:DEVICE]])", t);
    return false;
}

int cmd_run(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (o->mesh) {
        ir_dtype p = eng_precision(o, "run", &d);
        if (p == DT_BF16 || p == DT_F16)
            ir_diag_error(&d, -1, 0, 0, "run: --precision %s under --mesh is not supported yet", o->precision);
        if (ir_diag_ok(&d))
            eng_run_mesh(o, &d); /* one process per rank: engine/run_mesh.c */
        return cli_finish(&d);
    }
    /* bf16/fp16: the lower-precision pass first, then the graph runs as usual (f32 rounding) */
    ir_dtype precision = eng_precision(o, "run", &d);
    ir_precision prec = precision == DT_F64 ? IR_PREC_F64 : IR_PREC_F32;
    bool half = precision == DT_BF16 || precision == DT_F16;
    if (!ir_diag_ok(&d) || !check_target(o, &d) || !ir_diag_ok(&d) || !eng_seq_parallel(o, NULL, "run", &d))
        return cli_finish(&d);
    if (!o->outputs) {
        ir_diag_error(&d, -1, 0, 0, "run: missing --outputs FILE.safetensors (where to write the outputs)");
        return cli_finish(&d);
    }
    ir_graph *g = eng_load_graph(o, &d);
    if (g && !eng_dequantize_graph(g, o->weights, &d)) { /* quantized weights (docs/compression.md) */
        ir_graph_free(g);
        g = NULL;
    }
    if (!g)
        return cli_finish(&d);
    char half_passes[1024];
    const char *pipeline = half ? eng_half_pipeline(o->passes, precision, strcmp(target_of(o), "ref") == 0, "run",
                                                    half_passes, sizeof half_passes, &d)
                                : o->passes;
    /* binding, running and writing: engine/run.c, the path of `loom build` executables too */
    eng_run_opts ro = {.target = target_of(o), .pipeline = pipeline, .prec = prec, .stats = o->stats,
                       .profile = o->profile};
    if (ir_diag_ok(&d))
        eng_run_files(g, &ro, o->weights, o->inputs, o->outputs, &d);
    ir_graph_free(g);
    return cli_finish(&d);
}
