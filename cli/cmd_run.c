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
 * Targets: `cpu` (the default, except with --precision f64): fusion, kernels JIT-compiled for
 * this machine, OpenBLAS and a thread pool (engine/run.c); f32 compute, outputs in their
 * own dtype; --stats prints the plan's kernels and library calls, its memory and times.
 * `opencl[:PLATFORM[:DEVICE]]`: the same plan on an OpenCL device (engine/program_opencl.c; the
 * first platform with a device and its first device unless told; f32 compute).
 * `ref`: the reference interpreter. --passes runs a pipeline first on either target (cpu: it
 * must end with fuse; default dce,cse,fuse): --passes=dce,cse,autodiff,fuse runs a training
 * step's forward and backward, writing the loss and every grad/<param>.
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
#include "engine/jobs.h"
#include "engine/run.h"
#include "engine/run_values.h"
#include "ir/interp.h"
#include "runtime/opencl/opencl.h"
#include "passes/pass.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The pipeline at a half precision: --passes with lower-precision given its type (added before
 * a final fuse, else at the end, when absent: after autodiff, so that backward reductions stay
 * f32), or by default dce,cse,lower-precision=TYPE,fuse (no fuse on ref). NULL after reporting
 * a pipeline that does not fit buf. */
static const char *half_pipeline(const char *passes, ir_dtype half, bool ref, char *buf, size_t cap, ir_diag *d)
{
    const char *lower = half == DT_F16 ? "lower-precision=fp16" : "lower-precision=bf16";
    if (!passes) {
        snprintf(buf, cap, ref ? "dce,cse,%s" : "dce,cse,%s,fuse", lower);
        return buf;
    }
    size_t k = 0;
    bool seen = false;
    buf[0] = 0;
    for (const char *p = passes; p;) {
        const char *comma = strchr(p, ','), *s = p, *e = comma ? comma : p + strlen(p);
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        int len = (int)(e - s);
        bool is_lower = len >= 15 && strncmp(s, "lower-precision", 15) == 0 && (len == 15 || s[15] == '=');
        if (!comma && !seen && !is_lower && len == 4 && strncmp(s, "fuse", 4) == 0) {
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
            seen = true;
        }
        if (is_lower && len == 15)
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
        else
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%.*s", k ? "," : "", len, s);
        seen |= is_lower;
        p = comma ? comma + 1 : NULL;
    }
    if (!seen)
        k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%s", k ? "," : "", lower);
    if (k >= cap) {
        ir_diag_error(d, -1, 0, 0, "run: --passes is too long (%zu characters)", strlen(passes));
        return NULL;
    }
    return buf;
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
    if (!ir_diag_ok(&d) || !check_target(o, &d) || !ir_diag_ok(&d))
        return cli_finish(&d);
    if (!o->outputs) {
        ir_diag_error(&d, -1, 0, 0, "run: missing --outputs FILE.safetensors (where to write the outputs)");
        return cli_finish(&d);
    }
    ir_graph *g = eng_load_graph(o, &d);
    if (!g)
        return cli_finish(&d);
    char half_passes[1024];
    const char *pipeline = half ? half_pipeline(o->passes, precision, strcmp(target_of(o), "ref") == 0, half_passes,
                                                sizeof half_passes, &d)
                                : o->passes;

    /* checking and converting weights and inputs: io/run_io.c, shared with `loom build`
     * executables */
    rt_io_sig sig = rt_io_sig_from_graph(g);
    ir_named_tensor *vals = NULL;
    int n_vals = 0;
    if (rt_io_check_options(&sig, "run", o->weights, o->inputs, o->outputs, &d))
        rt_io_load(&sig, o->weights, o->inputs, prec, &vals, &n_vals, &d);

    ir_named_tensor *outs = NULL;
    int n_outs = 0;
    bool ran = false;
    if (ir_diag_ok(&d)) {
        if (strcmp(target_of(o), "cpu") == 0)
            ran = eng_run_cpu(g, pipeline, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else if (strcmp(target_of(o), "cuda") == 0)
            ran = eng_run_program("cuda", g, pipeline, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else if (strncmp(target_of(o), "opencl", 6) == 0)
            ran = eng_run_program(target_of(o), g, pipeline, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else {
            /* --passes on the reference target: e.g. dce,autodiff gives the reference gradients */
            pass_options po = pass_options_default();
            ran = (!pipeline || pass_run_pipeline(g, pipeline, &po, &d)) &&
                  ir_interp_run(g, prec, vals, n_vals, &outs, &n_outs, &d);
        }
    }
    if (ran)
        rt_io_write_outputs(o->outputs, outs, n_outs, prec, &d);
    if (outs)
        ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    rt_io_sig_free(&sig);
    ir_graph_free(g);
    return cli_finish(&d);
}
