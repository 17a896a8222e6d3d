/* cmd_run.c — `loom run MODEL --weights W --inputs I --outputs O [--target cpu|ref]
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
 * `ref`: the reference interpreter.
 * With --precision f32 (the default) values are rounded to their dtype after every op and
 * outputs are written in their own dtype; with --precision f64 (ref only) nothing is rounded
 * (parameters given in a wider dtype than declared keep their precision) and float outputs
 * are written as F64, so that a comparison against an f64 reference can be tight.
 */
#include "cli.h"
#include "interp.h"
#include "safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a run binds: the graph's params or its inputs, read from one file. */
typedef struct {
    const char *what;     /* "parameter" or "input" */
    ir_opcode op;         /* OP_param or OP_input */
    const char *option;   /* the option naming the file, for messages */
} binding_kind;

static const binding_kind PARAMS = {"parameter", OP_param, "--weights"};
static const binding_kind INPUTS = {"input", OP_input, "--inputs"};

/* Converts file tensor t to a tensor of node n's type, or reports why it cannot. */
static ir_tensor *load_value(const char *path, const binding_kind *k, const rt_st_tensor *t,
                             const ir_node *n, ir_precision prec, ir_diag *d)
{
    char want[300], got[300];
    ir_type_str(n->dtype, &n->shape, want, sizeof want);
    ir_type_str(t->dtype, &t->shape, got, sizeof got);
    bool same_class = ir_dtype_is_float(n->dtype) ? ir_dtype_is_float(t->dtype)
                                                  : ir_dtype_is_int(t->dtype);
    if (!same_class || !ir_shape_eq(&n->shape, &t->shape)) {
        ir_diag_error(d, -1, 0, 0, "%s: %s '%s': expected %s, got %s", path, k->what, n->name, want,
                      got);
        return NULL;
    }
    ir_tensor *v = ir_tensor_new(n->dtype, &n->shape);
    size_t count = (size_t)ir_shape_numel(&n->shape);
    rt_convert_to_f64(t->dtype, t->data, v->data, count);
    if (t->dtype == n->dtype)
        return v;
    if (ir_dtype_is_float(n->dtype)) {
        if (prec == IR_PREC_F32)
            for (size_t i = 0; i < count; i++)
                v->data[i] = ir_round_to(n->dtype, v->data[i]);
        return v;
    }
    /* integers of another width: every element must fit */
    double lo = n->dtype == DT_U8 ? 0 : n->dtype == DT_I32 ? -0x1p31 : -0x1p63;
    double hi = n->dtype == DT_U8 ? 256 : n->dtype == DT_I32 ? 0x1p31 : 0x1p63;
    for (size_t i = 0; i < count; i++)
        if (!(v->data[i] >= lo && v->data[i] < hi)) {
            ir_diag_error(d, -1, 0, 0, "%s: %s '%s': element %zu is %.17g, which does not fit in %s",
                          path, k->what, n->name, i, v->data[i], ir_dtype_name(n->dtype));
            ir_tensor_free(v);
            return NULL;
        }
    return v;
}

/* Tensors that Hugging Face checkpoints carry besides parameters: buffers that the model
 * recomputes (position ids, rotary inverse frequencies, GPT-2's causal-mask buffers). A weights
 * file may hold them; they are skipped rather than reported as unexpected. */
static bool is_hf_buffer(const char *name)
{
    static const char *const suffixes[] = {".position_ids", ".rotary_emb.inv_freq", ".attn.bias",
                                           ".attn.masked_bias"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Binds the graph's nodes of kind k from f (path) into vals; reports every missing, unexpected
 * or mistyped tensor. */
static void bind(const ir_graph *g, const binding_kind *k, const rt_st_file *f, ir_precision prec,
                 ir_named_tensor *vals, int *n_vals, ir_diag *d)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != k->op)
            continue;
        const rt_st_tensor *t = f ? rt_st_find(f, n->name) : NULL;
        if (!t) {
            if (!n->optional && f) {
                char ty[300];
                ir_type_str(n->dtype, &n->shape, ty, sizeof ty);
                ir_diag_error(d, -1, 0, 0, "%s: missing %s '%s' (%s)", f->path, k->what, n->name, ty);
            }
            continue;
        }
        ir_tensor *v = load_value(f->path, k, t, n, prec, d);
        if (v)
            vals[(*n_vals)++] = (ir_named_tensor){n->name, v};
    }
    for (int i = 0; f && i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        bool used = false, other = false;
        for (int j = 0; j < g->n_nodes && !used; j++) {
            const ir_node *n = g->nodes[j];
            if ((n->op == OP_param || n->op == OP_input) && strcmp(n->name, name) == 0) {
                used |= n->op == k->op;
                other |= n->op != k->op;
            }
        }
        if (used || (k == &PARAMS && !other && is_hf_buffer(name)))
            continue;
        if (other)
            ir_diag_error(d, -1, 0, 0,
                          "%s: unexpected tensor '%s' (the model has no %s of that name; it has %s "
                          "of that name: pass it with %s)",
                          f->path, name, k->what, k == &PARAMS ? "an input" : "a parameter",
                          k == &PARAMS ? INPUTS.option : PARAMS.option);
        else
            ir_diag_error(d, -1, 0, 0, "%s: unexpected tensor '%s' (the model has no %s of that name)",
                          f->path, name, k->what);
    }
}

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
    if (strcmp(t, "cuda") == 0 || strcmp(t, "opencl") == 0)
        ir_diag_error(d, -1, 0, 0,
                      "run: --target %s is not available yet (it comes with the code generator); "
                      "use --target cpu or --target ref",
                      t);
    else
        ir_diag_error(d, -1, 0, 0, "run: unknown target '%s' (known: ref, cpu, cuda, opencl)", t);
    return false;
}

/* Writes the outputs: float outputs as F64 under f64 precision, else each in its own dtype. */
static bool write_outputs(const char *path, const ir_named_tensor *outs, int n, ir_precision prec,
                          ir_diag *d)
{
    rt_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    if (!e || !bufs)
        ir_unreachable("out of memory");
    for (int i = 0; i < n; i++) {
        const ir_tensor *t = outs[i].t;
        ir_dtype dt = prec == IR_PREC_F64 && ir_dtype_is_float(t->dtype) ? DT_F64 : t->dtype;
        size_t count = (size_t)ir_shape_numel(&t->shape);
        bufs[i] = malloc(count * (size_t)ir_dtype_size(dt) + 1);
        if (!bufs[i])
            ir_unreachable("out of memory");
        rt_convert_from_f64(dt, t->data, bufs[i], count);
        e[i] = (rt_st_entry){outs[i].name, dt, t->shape, bufs[i]};
    }
    rt_st_meta meta[] = {{"format", "pt"}, {"loom.precision", prec == IR_PREC_F64 ? "f64" : "f32"}};
    bool ok = rt_st_write(path, e, n, meta, 2, NULL, NULL, d);
    if (ok) {
        printf("wrote");
        for (int i = 0; i < n; i++) {
            char ty[300];
            printf("%s %s %s", i ? "," : "", e[i].name, ir_type_str(e[i].dtype, &e[i].shape, ty, sizeof ty));
        }
        printf("%s to %s\n", n ? "" : " no outputs", path);
    }
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    return ok;
}

int cmd_run(const cli_opts *o)
{
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

    int n_params = 0, n_inputs = 0, n_required = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        n_params += g->nodes[i]->op == OP_param;
        n_inputs += g->nodes[i]->op == OP_input;
        n_required += g->nodes[i]->op == OP_input && !g->nodes[i]->optional;
    }
    if (n_params && !o->weights)
        ir_diag_error(&d, -1, 0, 0,
                      "run: missing --weights FILE.safetensors (the model has %d parameters; "
                      "`loom init` writes a fresh set)",
                      n_params);
    if (n_required && !o->inputs)
        ir_diag_error(&d, -1, 0, 0, "run: missing --inputs FILE.safetensors (the model has %d inputs)",
                      n_required);

    rt_st_file wf = {0}, inf = {0};
    bool have_w = false, have_i = false;
    if (ir_diag_ok(&d) && o->weights)
        have_w = rt_st_open(o->weights, &wf, &d);
    if (ir_diag_ok(&d) && o->inputs)
        have_i = rt_st_open(o->inputs, &inf, &d);

    ir_named_tensor *vals = calloc((size_t)(n_params + n_inputs) + 1, sizeof *vals);
    int n_vals = 0;
    if (!vals)
        ir_unreachable("out of memory");
    if (ir_diag_ok(&d)) {
        bind(g, &PARAMS, have_w ? &wf : NULL, prec, vals, &n_vals, &d);
        bind(g, &INPUTS, have_i ? &inf : NULL, prec, vals, &n_vals, &d);
    }
    /* the mapped files are no longer needed once their tensors are converted */
    if (have_w)
        rt_st_close(&wf);
    if (have_i)
        rt_st_close(&inf);

    ir_named_tensor *outs = NULL;
    int n_outs = 0;
    bool ran = false;
    if (ir_diag_ok(&d)) {
        if (strcmp(target_of(o), "cpu") == 0)
            ran = cli_run_cpu(g, vals, n_vals, o->stats, &outs, &n_outs, &d);
        else
            ran = ir_interp_run(g, prec, vals, n_vals, &outs, &n_outs, &d);
    }
    if (ran)
        write_outputs(o->outputs, outs, n_outs, prec, &d);
    if (outs)
        ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    ir_graph_free(g);
    return cli_finish(&d);
}
