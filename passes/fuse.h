/* fuse.h — the contract between the fusion pass (fuse.c) and lowering (codegen/lower.c):
 * what `group` ids mean, and the strided views both sides compute the same way.
 *
 * After `fuse`, node->group says which plan step computes a node:
 *  - input, param, output nodes: -1 (params and inputs are buffers bound by name);
 *  - other nodes with group -1 are *inlined*: every kernel that needs one of their elements
 *    recomputes it from its operands (elementwise ops, casts, gathers, rope, index remapping),
 *    and a library call (GEMM, attention) reads them as strided views of a buffer;
 *  - nodes with group g >= 0 are computed by step g (steps run in increasing g). A member of
 *    group g is *stored* (gets a buffer) when any consumer is not in group g, or it is output.
 * Each group is one of: a GEMM (matmul [+ bias add] [+ relu, gelu or silu: ir/unary.def's EPI
 * column]; only the last is stored), an attention (attention [+ a transpose of its result that keeps the last dim last,
 * which it then writes directly]), a row kernel (its last member a softmax, layernorm, rmsnorm
 * or cross_entropy; the other members are elementwise values of the row op's input shape
 * that the kernel also stores, e.g. a residual sum feeding a layernorm), a reduction (sum,
 * mean, max), a cache_write (its own WRITE_ROWS step; its operands are buffers), or an
 * elementwise kernel (one inlinable node, stored).
 *
 * Views: an inlined chain of reshape/transpose/slice/broadcast over a buffer is the buffer
 * read with other strides, when the strides exist (pass_view). GEMM operands need a matrix
 * layout BLAS accepts (pass_matrix_layout); attention's q/k/v need a contiguous last dim.
 * Where those fail, fuse stores the operand instead.
 */
#ifndef LOOM_PASS_FUSE_H
#define LOOM_PASS_FUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"
#include "ir/shape.h"

/* The deepest chain of inlined ops in one kernel (fuse.c stores a value past it). */
#define FUSE_MAX_DEPTH 128

/* Element (i0, .., i_{rank-1}) of the viewed value is element offset + Σ i_d·stride[d] of the
 * buffer of node `base`. */
typedef struct {
    const ir_node *base;
    int64_t offset;
    int rank;
    int64_t stride[IR_MAX_RANK];
} pass_view;

/* Does node n own a buffer? (fuse: decided so far; lowering: a param/input or a stored node) */
typedef bool (*pass_is_buffer_fn)(const ir_node *n, void *ctx);

static inline void pass_view_contiguous(const ir_node *n, pass_view *v)
{
    v->base = n;
    v->offset = 0;
    v->rank = n->shape.rank;
    int64_t s = 1;
    for (int d = n->shape.rank - 1; d >= 0; d--) {
        v->stride[d] = s;
        s *= n->shape.dim[d];
    }
}

/* Reshape of a strided view without copying (NumPy's attempt_nocopy_reshape): groups of old
 * dims whose product equals a group of new dims must be contiguous among themselves. */
static inline bool pass_view_reshape(const pass_view *x, const ir_shape *from, const ir_shape *to, pass_view *v)
{
    int64_t od[IR_MAX_RANK], os[IR_MAX_RANK];
    int on = 0, nn = to->rank;
    for (int d = 0; d < from->rank; d++) {
        if (from->dim[d] == 0)
            return false;
        if (from->dim[d] != 1) {
            od[on] = from->dim[d];
            os[on++] = x->stride[d];
        }
    }
    v->base = x->base;
    v->offset = x->offset;
    v->rank = nn;
    for (int d = 0; d < nn; d++)
        v->stride[d] = 0;
    int i = 0, j = 0;
    while (i < on && j < nn) {
        int64_t np = to->dim[j], op = od[i];
        int ni = j + 1, oi = i + 1;
        while (np != op) {
            if (np < op) {
                if (ni >= nn)
                    return false;
                np *= to->dim[ni++];
            } else {
                if (oi >= on)
                    return false;
                op *= od[oi++];
            }
        }
        for (int k = i; k < oi - 1; k++)
            if (os[k] != os[k + 1] * od[k + 1])
                return false;
        v->stride[ni - 1] = os[oi - 1];
        for (int k = ni - 1; k > j; k--)
            v->stride[k - 1] = v->stride[k] * to->dim[k];
        i = oi;
        j = ni;
    }
    return i == on; /* trailing new dims are 1s: stride 0 */
}

/* The view of n over buffers (is_buffer), following inlined reshape/transpose/slice/broadcast.
 * False when n is not a buffer or such a view of one. */
static inline bool pass_view_of(const ir_node *n, pass_is_buffer_fn is_buffer, void *ctx, pass_view *v)
{
    if (is_buffer(n, ctx)) {
        pass_view_contiguous(n, v);
        return true;
    }
    pass_view x;
    if (ir_ops[n->op].kind != OK_LAYOUT || n->op == OP_concat || !pass_view_of(n->in[0], is_buffer, ctx, &x))
        return false;
    const ir_shape *xs = &n->in[0]->shape;
    int r = n->shape.rank;
    switch (n->op) {
    case OP_reshape: return pass_view_reshape(&x, xs, &n->shape, v);
    case OP_transpose: {
        const ir_attr *perm = ir_attr_get(n, "perm");
        *v = x;
        for (int i = 0; i < r; i++)
            v->stride[i] = x.stride[ir_axis_norm(perm->ints[i], r)];
        return true;
    }
    case OP_slice: {
        int ax = ir_axis_norm(ir_attr_int(n, "axis"), r);
        int64_t lo, hi;
        ir_slice_range(ir_attr_int(n, "start"), ir_attr_int(n, "end"), xs->dim[ax], &lo, &hi);
        *v = x;
        v->offset += lo * x.stride[ax];
        return true;
    }
    case OP_broadcast:
        v->base = x.base;
        v->offset = x.offset;
        v->rank = r;
        for (int i = 0; i < r; i++) {
            int j = i - (r - xs->rank);
            v->stride[i] = j >= 0 && xs->dim[j] == n->shape.dim[i] ? x.stride[j] : 0;
        }
        return true;
    default: return false;
    }
}

/* A (rows, cols) matrix read at base[r·rs + c·cs] as BLAS sees it: row-major with leading
 * dim *ld (trans 0), or its transpose stored row-major (trans 1). False if neither fits. */
static inline bool pass_matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int *trans, int64_t *ld)
{
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= cols)) {
        *trans = 0;
        *ld = rows == 1 ? cols : rs;
        return *ld >= 1;
    }
    if ((rows == 1 || rs == 1) && (cols == 1 || cs >= rows)) {
        *trans = 1;
        *ld = cols == 1 ? rows : cs;
        return *ld >= 1;
    }
    return false;
}

/* The logical (M, K) operand of a matmul input of rank r with view v: stored dims r-2, r-1,
 * swapped when transposed. Returns pass_matrix_layout of it. */
static inline bool pass_matmul_operand(const ir_node *x, const pass_view *v, bool transposed, int *trans, int64_t *ld)
{
    int r = x->shape.rank;
    int64_t rows = x->shape.dim[r - 2], cols = x->shape.dim[r - 1], rs = v->stride[r - 2], cs = v->stride[r - 1];
    if (transposed) {
        int64_t t = rows;
        rows = cols, cols = t, t = rs, rs = cs, cs = t;
    }
    return pass_matrix_layout(rows, cols, rs, cs, trans, ld);
}

/* Is view v over n ([..., C]) a sequence of rows of C contiguous elements, evenly spaced
 * (*row_stride elements apart; NULL: not wanted)? For embedding_grad's scatter-add. */
static inline bool pass_rows_view(const ir_node *n, const pass_view *v, int64_t *row_stride)
{
    int r = n->shape.rank;
    if (r < 1 || (n->shape.dim[r - 1] > 1 && v->stride[r - 1] != 1))
        return false;
    int64_t rs = n->shape.dim[r - 1], expect = -1;
    bool first = true;
    for (int d = r - 2; d >= 0; d--) {
        if (n->shape.dim[d] == 1)
            continue;
        if (first) {
            rs = v->stride[d];
            if (rs < n->shape.dim[r - 1])
                return false;
            expect = rs * n->shape.dim[d];
            first = false;
        } else {
            if (v->stride[d] != expect)
                return false;
            expect *= n->shape.dim[d];
        }
    }
    if (row_stride)
        *row_stride = rs;
    return true;
}

/* Is the buffer of a GEMM bias view v over n ([..., N]) a contiguous vector of N broadcast
 * over everything else? */
static inline bool pass_bias_view(const ir_node *n, const pass_view *v)
{
    int r = n->shape.rank;
    for (int d = 0; d < r - 1; d++)
        if (n->shape.dim[d] != 1)
            return false;
    return r >= 1 && (v->stride[r - 1] == 1 || n->shape.dim[r - 1] == 1);
}

#endif
