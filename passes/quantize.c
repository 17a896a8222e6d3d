/* quantize.c — weight-only quantization as a graph rewrite (docs/compression.md).
 *
 * A quantized param P f32 [R, C] becomes two params and a dequantize (ir/ops.def):
 *     P.qweight  i8 [R, C] (8 bits) or u8 [R, C/2] (4 bits, two codes a byte)
 *     P.scales   f16|f32 [groups, C] (axis 0) or [R, groups] (axis 1)
 *     dequantize(P.qweight, P.scales) {bits, axis} -> f32 [R, C], used wherever P was.
 * The names are those `loom quantize` writes, so the rewritten graph binds a quantized file by
 * name. The new nodes take P's place in the node order (sources first: the order stays a
 * topological one); P itself is dropped.
 *
 * pass_quantize_params rewrites the params a caller lists (engine/compress.c: those a weights
 * file holds quantized). The registered passes quantize-int8 and quantize-int4 pick the GEMM
 * weights themselves — rank-2 params used only as a matmul's second operand — with the axis the
 * matmul reduces over (per output channel for int8; groups of 32 along it for int4, or one
 * group where 32 does not divide it), f16 scales: the rewrite as lit tests show it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"

static bool qfail(ir_diag *d, const ir_node *p, const char *msg)
{
    ir_diag_error(d, p->loc.file, p->loc.line, p->loc.col, "quantize: param '%s' %s: %s", p->name,
                  ir_type_str(p->dtype, &p->shape, (char[64]){0}, 64), msg);
    return false;
}

static ir_node *new_param(ir_graph *g, const ir_node *p, const char *suffix, ir_dtype dt, int64_t d0, int64_t d1)
{
    ir_node *n = ir_node_add(g, OP_param, 0, NULL, p->loc);
    char name[512];
    snprintf(name, sizeof name, "%s%s", p->name, suffix);
    n->name = ir_graph_strdup(g, name);
    n->scope = p->scope;
    n->stage = p->stage;
    n->dtype = dt;
    n->shape.rank = 2;
    n->shape.dim[0] = d0;
    n->shape.dim[1] = d1;
    ir_attr_set_str(g, n, "init", "zeros");
    return n;
}

bool pass_quantize_params(ir_graph *g, const pass_qparam *qs, int n_q, ir_diag *d)
{
    int nn = g->n_nodes;
    const pass_qparam **spec = calloc((size_t)nn + 1, sizeof *spec);
    if (!spec)
        ir_unreachable("out of memory");
    bool ok = true;
    int n_found = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *p = g->nodes[i];
        if (p->op != OP_param)
            continue;
        for (int k = 0; k < n_q && !spec[i]; k++)
            if (strcmp(qs[k].name, p->name) == 0)
                spec[i] = &qs[k];
        if (!spec[i])
            continue;
        const pass_qparam *q = spec[i];
        if (p->shape.rank != 2 || !ir_dtype_is_float(p->dtype))
            ok = qfail(d, p, "only float matrices are quantized");
        else if ((q->bits != 8 && q->bits != 4) || (q->axis != 0 && q->axis != 1))
            ok = qfail(d, p, "bits must be 8 or 4 and the axis 0 or 1");
        else if (q->groups < 1 || p->shape.dim[q->axis] % q->groups != 0)
            ok = qfail(d, p, "the groups do not divide the quantized axis");
        else if (q->bits == 4 && p->shape.dim[1] % 2 != 0)
            ok = qfail(d, p, "int4 packs two columns a byte: the column count must be even");
        else if (q->scale_dtype != DT_F16 && q->scale_dtype != DT_F32)
            ok = qfail(d, p, "scales must be f16 or f32");
        n_found++;
    }
    if (!ok) {
        free(spec);
        return false;
    }
    ir_node **order = malloc(sizeof *order * ((size_t)nn + 3 * (size_t)n_found + 1));
    ir_node **repl = calloc((size_t)nn + 1, sizeof *repl);
    if (!order || !repl)
        ir_unreachable("out of memory");
    int m = 0;
    for (int i = 0; i < nn; i++) {
        ir_node *p = g->nodes[i];
        if (!spec[i]) {
            order[m++] = p;
            continue;
        }
        const pass_qparam *q = spec[i];
        int64_t R = p->shape.dim[0], C = p->shape.dim[1];
        ir_node *codes = new_param(g, p, PASS_QWEIGHT_SUFFIX, q->bits == 8 ? DT_I8 : DT_U8, R, q->bits == 8 ? C : C / 2);
        ir_node *scales = q->axis == 0 ? new_param(g, p, PASS_QSCALES_SUFFIX, q->scale_dtype, q->groups, C)
                                       : new_param(g, p, PASS_QSCALES_SUFFIX, q->scale_dtype, R, q->groups);
        ir_node *deq = ir_node_add(g, OP_dequantize, 2, (ir_node *[]){codes, scales}, p->loc);
        deq->scope = p->scope;
        deq->stage = p->stage;
        ir_attr_set_int(deq, "bits", q->bits);
        ir_attr_set_int(deq, "axis", q->axis);
        if (!ir_infer(codes, d) || !ir_infer(scales, d) || !ir_infer(deq, d))
            ir_unreachable("quantize: a rewrite that does not infer");
        order[m++] = codes;
        order[m++] = scales;
        order[m++] = deq;
        repl[i] = deq;
    }
    for (int i = 0; i < m; i++)
        for (int k = 0; k < order[i]->n_in; k++) {
            ir_node *x = order[i]->in[k];
            if (x->id < nn && g->nodes[x->id] == x && repl[x->id])
                order[i]->in[k] = repl[x->id];
        }
    g->n_nodes = m;
    for (int i = 0; i < m; i++) {
        g->nodes[i] = order[i];
        g->nodes[i]->id = i;
    }
    free(order);
    free(repl);
    free(spec);
    return true;
}

/* The GEMM weights of g with the axis each matmul reduces over: rank-2 float params every use
 * of which is a matmul's second operand (all with the same transpose_b). */
static bool quantize_gemm_weights(ir_graph *g, int bits, ir_diag *d)
{
    int nn = g->n_nodes;
    int *axis = malloc(sizeof(int) * ((size_t)nn + 1));
    if (!axis)
        ir_unreachable("out of memory");
    for (int i = 0; i < nn; i++)
        axis[i] = g->nodes[i]->op == OP_param && g->nodes[i]->shape.rank == 2 ? -1 : -2; /* -1 unused yet */
    for (int i = 0; i < nn; i++) {
        const ir_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int j = n->in[k]->id;
            if (axis[j] == -2)
                continue;
            int a = n->op == OP_matmul && k == 1 ? (ir_attr_int(n, "transpose_b") ? 1 : 0) : -2;
            axis[j] = axis[j] == -1 || axis[j] == a ? a : -2;
        }
    }
    pass_qparam *qs = calloc((size_t)nn + 1, sizeof *qs);
    if (!qs)
        ir_unreachable("out of memory");
    int n = 0;
    for (int i = 0; i < nn; i++) {
        const ir_node *p = g->nodes[i];
        if (axis[i] < 0 || !ir_dtype_is_float(p->dtype) || (bits == 4 && p->shape.dim[1] % 2))
            continue;
        int64_t len = p->shape.dim[axis[i]];
        int64_t groups = bits == 8 || len % 32 ? 1 : len / 32;
        qs[n++] = (pass_qparam){p->name, bits, axis[i], groups, DT_F16};
    }
    bool ok = pass_quantize_params(g, qs, n, d);
    free(qs);
    free(axis);
    return ok;
}

bool pass_quantize_int8(ir_graph *g, ir_diag *d) { return quantize_gemm_weights(g, 8, d); }
bool pass_quantize_int4(ir_graph *g, ir_diag *d) { return quantize_gemm_weights(g, 4, d); }
