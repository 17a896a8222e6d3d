/* run_io.h — what `loom run` and a `loom build` executable share at run time: the signature of
 * a model (its params, inputs and outputs with dtypes and shapes), binding weights and inputs
 * from safetensors files with every check and message of `loom run`, and writing the outputs
 * (engine/run.c's eng_run_files does all three for both).
 *
 * Binding checks, each reported naming the file and the tensor (all of them, not just the
 * first): a parameter or required input absent from its file; a tensor the model has no use
 * for (Hugging Face's non-parameter buffers such as `.attn.bias` excepted in weights); a shape
 * different from the declared one; a float tensor for an integer value or the reverse. Float
 * tensors of another float dtype convert (rounded to the declared dtype at f32 precision);
 * integer tensors of another integer dtype convert when every element fits.
 */
#ifndef LOOM_RT_RUN_IO_H
#define LOOM_RT_RUN_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/diag.h"
#include "ir/interp.h"
#include "io/safetensors.h"
#include "ir/ir.h"
#include "plan/plan_io.h"

typedef enum { RT_IO_PARAM, RT_IO_INPUT, RT_IO_OUTPUT } rt_io_kind;

typedef struct {
    char *name;         /* external name (malloc) */
    rt_io_kind kind;
    ir_dtype dtype;
    ir_shape shape;
    bool optional;      /* inputs: may be absent */
} rt_io_slot;

typedef struct {
    int n;
    rt_io_slot *slots;  /* params, inputs and outputs in graph order */
} rt_io_sig;

/* The signature of g (outputs take their operand's dtype and shape). */
rt_io_sig rt_io_sig_from_graph(const ir_graph *g);
void rt_io_sig_free(rt_io_sig *s);
int rt_io_sig_count(const rt_io_sig *s, rt_io_kind kind, bool required_only);
/* The file options a run needs: "WHO: missing --weights ..." etc. (who: "run" for loom run). */
bool rt_io_check_options(const rt_io_sig *s, const char *who, const char *weights, const char *inputs,
                         const char *outputs, ir_diag *d);

/* Opens weights and inputs (either may be NULL when the model needs none), checks and converts
 * every param and input into *vals (doubles, as the reference interpreter takes them; names
 * point into s; free each .t with ir_tensor_free and the array with free). Optional inputs
 * absent from the file are left out. False if anything was reported. */
bool rt_io_load(const rt_io_sig *s, const char *weights, const char *inputs, ir_precision prec,
                ir_named_tensor **vals, int *n_vals, ir_diag *d);

/* The params and inputs of a run on a program target, each in its declared dtype: pointing
 * into the mapped safetensors file when the file holds it in that dtype (no copy: the files stay
 * open until rt_io_natives_free), else converted (floats rounded to nearest even, integers of
 * another width checked to fit). No f64 copy of the weights is ever made. */
typedef struct {
    const char *name;      /* points into the signature */
    const void *data;      /* the slot's dtype and shape */
    void *owned;           /* a converted copy (freed with the set), or NULL */
} rt_io_native;
typedef struct {
    rt_st_file w, i;
    bool have_w, have_i;
    int n;
    rt_io_native *v;
} rt_io_natives;
/* As rt_io_load, with every check and message, into *v. */
bool rt_io_load_native(const rt_io_sig *s, const char *weights, const char *inputs, rt_io_natives *v, ir_diag *d);
/* The value called name, or NULL (an optional input not given). */
const void *rt_io_native_find(const rt_io_natives *v, const char *name);
void rt_io_natives_free(rt_io_natives *v);

/* Writes entries as they are (data in their own dtypes) and prints "wrote NAME TYPE, ... to
 * PATH". */
bool rt_io_write_entries(const char *path, const rt_st_entry *e, int n, ir_diag *d);

/* Writes outputs (float outputs as F64 under f64 precision, else each in its own dtype) and
 * prints "wrote NAME TYPE, ... to PATH". */
bool rt_io_write_outputs(const char *path, const ir_named_tensor *outs, int n, ir_precision prec, ir_diag *d);

#endif
