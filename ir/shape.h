/* shape.h — shape helpers shared by the shape rules (ir/shape.c), the reference interpreter
 * and anyone else who reads axis-valued attributes.
 *
 * Attributes keep axes, starts and ends exactly as written (negative values count from the end);
 * every consumer normalizes with these helpers instead of rewriting the attributes. */
#ifndef LOOM_SHAPE_H
#define LOOM_SHAPE_H

#include "ir/ir.h"

/* Normalizes axis (negative counts from the end) against rank; -1 if out of [-rank, rank). */
int ir_axis_norm(int64_t axis, int rank);

/* NumPy broadcasting of a and b (shapes aligned on the right; a dim of 1 stretches).
 * Returns false (out untouched) when they do not broadcast. */
bool ir_broadcast_shapes(const ir_shape *a, const ir_shape *b, ir_shape *out);

/* True when x broadcasts (one way, as np.broadcast_to) to shape `to`. */
bool ir_broadcasts_to(const ir_shape *x, const ir_shape *to);

/* Normalizes a slice's [start, end) against dim (negative values count from the end).
 * Returns false when the normalized range is not 0 <= start <= end <= dim. */
bool ir_slice_range(int64_t start, int64_t end, int64_t dim, int64_t *lo, int64_t *hi);

/* Reduction axes of a sum/mean/max node over input rank `rank` as a mask: mask[a] is true when
 * axis a is reduced (an empty axes list reduces all). False on out-of-range or repeated axes. */
bool ir_reduce_mask(const ir_node *n, int rank, bool mask[IR_MAX_RANK]);

/* Number of (query i, key j) pairs attention scores for T queries and S keys: T*S, or with
 * `causal` those with j <= i + S - T. */
int64_t ir_attention_pairs(int64_t T, int64_t S, bool causal);

#endif
