/* cmd_run.c — `loom run MODEL --weights W --inputs I --outputs O [--target cpu|cuda|opencl|ref]
 *                       [--precision f32|f64] [--stats] [-D n=v]...`
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
 * this machine, OpenBLAS and a thread pool (cli/target_cpu.c); f32 compute, outputs in their
 * own dtype; --stats prints the plan's kernels and library calls, its memory and times.
 * `opencl[:PLATFORM[:DEVICE]]`: the same plan on an OpenCL device (cli/program_opencl.c; the
 * first platform with a device and its first device unless told; f32 compute).
 * `ref`: the reference interpreter. --passes runs a pipeline first on either target (cpu: it
 * must end with fuse; default dce,cse,fuse): --passes=dce,cse,autodiff,fuse runs a training
 * step's forward and backward, writing the loss and every grad/<param>.
 * With --precision f32 (the default) values are rounded to their dtype after every op and
 * outputs are written in their own dtype; with --precision f64 (ref only) nothing is rounded
 * (parameters given in a wider dtype than declared keep their precision) and float outputs
 * are written as F64, so that a comparison against an f64 reference can be tight.
 */
#include "cli.h"
#include "interp.h"
#include "opencl.h"
#include "pass.h"
#include "safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The target to run on: --target, else cpu, or ref for --precision f64 (cpu computes in f32). */
static const char *target_of(const cli_opts *o)
{
    if (o->target)
        return o->target;
    return o->precision && strcmp(o->precision, "f64") == 0 ? "ref" : "cpu";
}

static bool check_target(const cli_opts *o, ir_diag *d)
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

int cmd_run(const cli_opts *o)
{
    if (o->mesh)
        return cmd_run_mesh(o); /* one process per rank: cli/run_mesh.c */
    ir_diag d;
    ir_diag_init(&d);
    ir_precision prec = IR_PREC_F32;
    if (o->precision && strcmp(o->precision, "f64") == 0)
        prec = IR_PREC_F64;
    else if (o->precision && strcmp(o->precision, "f32") != 0)
        ir_diag_error(&d, -1, 0, 0, "run: --precision expects f32 or f64, got '%s'", o->precision);
    if (!check_target(o, &d) || !ir_diag_ok(&d))
        return cli_finish(&d);
    if (!o->outputs) {
        ir_diag_error(&d, -1, 0, 0, "run: missing --outputs FILE.safetensors (where to write the outputs)");
        return cli_finish(&d);
    }
    ir_graph *g = cli_load_graph(o, &d);
    if (!g)
        return cli_finish(&d);

    /* checking and converting weights and inputs: runtime/run_io.c, shared with `loom build`
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
            ran = cli_run_cpu(g, o->passes, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else if (strcmp(target_of(o), "cuda") == 0)
            ran = cli_run_program("cuda", g, o->passes, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else if (strncmp(target_of(o), "opencl", 6) == 0)
            ran = cli_run_program(target_of(o), g, o->passes, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else {
            /* --passes on the reference target: e.g. dce,autodiff gives the reference gradients */
            pass_options po = pass_options_default();
            ran = (!o->passes || pass_run_pipeline(g, o->passes, &po, &d)) &&
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
