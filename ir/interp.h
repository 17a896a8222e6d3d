/* interp.h — the reference interpreter: naive, obviously correct evaluation of a graph.
 *
 * It is the oracle for every backend and pass. Every tensor holds doubles whatever its dtype;
 * in IR_PREC_F32 every result is rounded to its dtype after each op (f32 to float, f16/bf16 to
 * those formats, ints stay exact), so it models f32 storage; in IR_PREC_F64 nothing is rounded.
 * Integer semantics (cast to an int truncates toward zero, int division truncates) are part of
 * the ops themselves and hold in both modes.
 *
 * Run-time errors name the op and the value at the node's location, in these forms:
 *   missing value for input 'x'            missing value for param 'wte.weight'
 *   input 'tokens': expected i32[1, 64], got i32[1, 32]     (also "param 'w': ...")
 *   embedding: id 300 is outside [0, 256)  cross_entropy: target 12 is outside [0, 10)
 *   div: integer division by zero
 */
#ifndef LOOM_INTERP_H
#define LOOM_INTERP_H

#include "ir/ir.h"

typedef struct ir_tensor {
    ir_dtype dtype;
    ir_shape shape;
    double *data; /* row-major, ir_shape_numel(&shape) elements (malloc) */
} ir_tensor;

typedef enum { IR_PREC_F32, IR_PREC_F64 } ir_precision;

ir_tensor *ir_tensor_new(ir_dtype dt, const ir_shape *shape); /* zero-filled */
void ir_tensor_free(ir_tensor *t);
/* Rounds v to what dtype dt can hold (float, half, bfloat16 round-to-nearest-even; ints truncate). */
double ir_round_to(ir_dtype dt, double v);

typedef struct {
    const char *name;
    ir_tensor *t;
} ir_named_tensor;

/* Evaluates g. `values` gives every input and param by external name (not copied; optional
 * inputs may be absent, and then outputs that depend on them are skipped). On success
 * *outputs holds one freshly allocated tensor per output computed (free with
 * ir_named_tensors_free), in graph order. Errors (missing or mistyped inputs, out-of-range ids)
 * are reported through d naming the tensor. */
bool ir_interp_run(const ir_graph *g, ir_precision prec, const ir_named_tensor *values, int n_values,
                   ir_named_tensor **outputs, int *n_outputs, ir_diag *d);
void ir_named_tensors_free(ir_named_tensor *ts, int n);

/* Evaluates one node on given operand tensors (in[k] holds the value of n->in[k]) into out,
 * allocated by the caller with n's dtype and shape, then rounds as `prec` says. Sources: const
 * and iota evaluate; input and param report a missing value (ir_interp_run binds them). */
bool ir_interp_node(const ir_node *n, ir_precision prec, ir_tensor **in, ir_tensor *out, ir_diag *d);

#endif
