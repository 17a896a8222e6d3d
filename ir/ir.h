/* ir.h — the graph IR: typed SSA tensor values, one node per value, in a graph.
 *
 * Invariants (checked by ir_verify):
 *  - graph->nodes is in definition order: every operand of node i is a node j < i.
 *  - every node has exactly one result (dtype + static shape), except OP_output, whose result
 *    is void (rank 0, dtype DT_VOID) and which names a graph output.
 *  - input, param and output nodes carry a unique external name in `name`
 *    (inputs and outputs share one namespace; params have their own).
 *  - attributes follow the op's schema in ir/ops.def, position by position.
 *  - a sharding spec, when present, has one entry per dimension, each a mesh axis of the graph
 *    or IR_REPLICATED.
 * All memory of a graph (nodes, operand arrays, strings) lives in the graph's arena and is freed
 * with ir_graph_free.
 */
#ifndef LOOM_IR_H
#define LOOM_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/arena.h"
#include "ir/diag.h"

/* ---- dtypes --------------------------------------------------------------------------- */
typedef enum {
    DT_VOID,
    DT_F32,
    DT_F64,
    DT_F16,
    DT_BF16,
    DT_I32,
    DT_I64,
    DT_U8,
    DT_I8,                  /* signed bytes: quantized weights (docs/compression.md) */
    DT_COUNT
} ir_dtype;

const char *ir_dtype_name(ir_dtype dt);        /* "f32"; "void" for DT_VOID */
bool ir_dtype_parse(const char *s, ir_dtype *out);
int ir_dtype_size(ir_dtype dt);                /* bytes per element; 0 for DT_VOID */
bool ir_dtype_is_float(ir_dtype dt);
bool ir_dtype_is_int(ir_dtype dt);

/* ---- shapes ---------------------------------------------------------------------------- */
#define IR_MAX_RANK 8
typedef struct {
    int rank;
    int64_t dim[IR_MAX_RANK];
} ir_shape;

/* The most elements a tensor may have: every size computed from a shape (bytes, offsets,
 * strides times dims) then fits an int64 with room to spare. The front end, the IR parser and
 * every shape rule (ir_infer) refuse larger tensors, so ir_shape_numel cannot overflow. */
#define IR_MAX_NUMEL ((int64_t)1 << 56)
int64_t ir_shape_numel(const ir_shape *s);      /* 1 for rank 0 */
/* Whether every dim is >= 0 and their product at most IR_MAX_NUMEL (computed without overflow). */
bool ir_shape_fits(const ir_shape *s);
bool ir_shape_eq(const ir_shape *a, const ir_shape *b);
/* Writes "[2, 3, 4]" into buf (always NUL-terminated); returns buf. */
char *ir_shape_str(const ir_shape *s, char *buf, size_t cap);
/* "f32[2, 3]" */
char *ir_type_str(ir_dtype dt, const ir_shape *s, char *buf, size_t cap);

/* ---- source locations -------------------------------------------------------------------- */
/* file indexes diag's source table; line/col are 1-based; line 0 means "no location". */
typedef struct {
    int file, line, col;
} ir_loc;

/* ---- sharding ---------------------------------------------------------------------------- */
#define IR_MAX_MESH_AXES 4
#define IR_REPLICATED (-1)
typedef struct {
    bool present;
    int8_t axis[IR_MAX_RANK]; /* mesh axis index per dim, or IR_REPLICATED */
} ir_shard;

/* ---- attributes ------------------------------------------------------------------------- */
/* Kinds used by the schema strings of ops.def: i int, f float, s identifier/string,
 * d dtype, I list of ints. */
typedef enum { AK_INT = 'i', AK_FLOAT = 'f', AK_STR = 's', AK_DTYPE = 'd', AK_INTS = 'I' } ir_attr_kind;

#define IR_MAX_ATTRS 6
typedef struct {
    ir_attr_kind kind;
    int64_t i;          /* AK_INT */
    double f;           /* AK_FLOAT */
    const char *s;      /* AK_STR (arena string) */
    ir_dtype d;         /* AK_DTYPE */
    int n;              /* AK_INTS: count */
    int64_t *ints;      /* AK_INTS: arena array */
} ir_attr;

/* ---- ops ------------------------------------------------------------------------------- */
typedef enum {
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad) OP_##id,
#include "ir/ops.def"
#undef OP
    OP_COUNT
} ir_opcode;

/* What an op is, for passes that treat families alike (fusion, autodiff, codegen). */
typedef enum {
    OK_SOURCE,    /* input, param, const, iota: no tensor operands */
    OK_SINK,      /* output */
    OK_UNARY,     /* elementwise, one operand */
    OK_BINARY,    /* elementwise, two operands, numpy broadcasting */
    OK_LAYOUT,    /* reshape, transpose, slice, concat, broadcast: data movement only */
    OK_REDUCE,    /* sum/mean/max over axes */
    OK_ROW,       /* row-wise fused ops: softmax, layernorm, rmsnorm, cross_entropy */
    OK_MATMUL,    /* matmul */
    OK_NN,        /* embedding, rope, attention: their own kernels */
    OK_COMM,      /* collectives and send/recv (later issues) */
} ir_op_kind;

struct ir_node;
struct ir_graph;
struct ir_tensor;

/* Shape rule: sets n->dtype and n->shape from its operands and attributes, or reports an error
 * at n->loc through d (naming both shapes on mismatch) and returns false. */
typedef bool (*ir_infer_fn)(struct ir_node *n, ir_diag *d);
/* Reference evaluation (ir/interp.c): out is allocated by the caller with n's shape. */
typedef bool (*ir_eval_fn)(const struct ir_node *n, struct ir_tensor **in, struct ir_tensor *out,
                           ir_diag *d);
/* Forward FLOPs of the node (multiply-adds count as 2). */
typedef double (*ir_cost_fn)(const struct ir_node *n);
/* Gradient rule (ir/grad.c, driven by passes/autodiff.c): given the gradient flowing into n's
 * result (ir_grad_of), emits backward nodes and accumulates a gradient into each operand that
 * needs one (ir_grad_wants / ir_grad_acc in ir/grad.h). False after reporting an error. */
struct ir_grad_ctx;
typedef bool (*ir_grad_fn)(struct ir_grad_ctx *c, const struct ir_node *n);

typedef struct {
    const char *mnemonic;
    int min_in, max_in;     /* operand count; max_in -1 = any */
    const char *attrs;      /* schema, e.g. "eps:f" or "axes:I,keepdim:i"; "" for none */
    ir_op_kind kind;
    ir_infer_fn infer;
    ir_eval_fn eval;
    ir_cost_fn cost;
    ir_grad_fn grad;
} ir_op_info;

extern const ir_op_info ir_ops[OP_COUNT];
/* The gradient rules named in the GRAD column (every op names one; defined in ir/grad.c). */
#define OP(id, mnemonic, min_in, max_in, attrs, kind, infer, eval, cost, grad)                  \
    bool grad(struct ir_grad_ctx *c, const struct ir_node *n);
#include "ir/ops.def"
#undef OP
/* Looks an op up by mnemonic; returns OP_COUNT if none. */
ir_opcode ir_op_lookup(const char *mnemonic);
/* Number of attributes in the op's schema, and the name/kind of attribute k. */
int ir_op_nattrs(ir_opcode op);
const char *ir_op_attr_name(ir_opcode op, int k, char *buf, size_t cap);
ir_attr_kind ir_op_attr_kind(ir_opcode op, int k);
int ir_op_attr_index(ir_opcode op, const char *name); /* -1 if the op has no such attribute */

/* The derivatives of the backward op unary_grad {fn} (ir/unary_grad.def), and their names. */
typedef enum {
#define UNARY_GRAD(fn) IR_DERIV_##fn,
#include "ir/unary_grad.def"
#undef UNARY_GRAD
    IR_DERIV_COUNT
} ir_deriv;
extern const char *const ir_deriv_names[IR_DERIV_COUNT];
/* The derivative called fn, or IR_DERIV_COUNT if none. */
ir_deriv ir_deriv_lookup(const char *fn);

/* ---- nodes and graphs ------------------------------------------------------------------- */
typedef struct ir_node {
    int id;                 /* index in graph->nodes; renumbered by ir_graph_compact */
    ir_opcode op;
    int n_in;
    struct ir_node **in;    /* operands */
    ir_dtype dtype;
    ir_shape shape;
    ir_attr attr[IR_MAX_ATTRS];
    ir_shard shard;
    int stage;              /* pipeline stage hint; -1 when none */
    int group;              /* fusion group (passes/fuse.c): the step that computes it; -1 none */
    bool optional;          /* input: may be absent at run time */
    bool backward;          /* made by autodiff: a pipeline stage runs it in a micro-batch's
                               backward half (engine/run_mesh.c) */
    bool recomputed;        /* a forward value computed again for the backward
                               (passes/recompute.c): CSE keeps it apart from the original */
    const char *name;       /* external name of input/param/output; NULL otherwise */
    const char *scope;      /* block instance that built it, e.g. "block(l=3)"; NULL at top */
    ir_loc loc;
} ir_node;

typedef struct ir_graph {
    ir_arena arena;
    const char *name;
    int n_nodes, cap_nodes;
    ir_node **nodes;
    int n_axes;
    const char *axis_name[IR_MAX_MESH_AXES];
} ir_graph;

ir_graph *ir_graph_new(const char *name);
void ir_graph_free(ir_graph *g);
/* Copies s into the graph's arena. */
const char *ir_graph_strdup(ir_graph *g, const char *s);
/* Appends a node with the given operands; attributes zeroed with kinds from the schema, type
 * unset (DT_VOID, rank 0), stage -1. The caller sets attributes, then calls ir_infer. */
ir_node *ir_node_add(ir_graph *g, ir_opcode op, int n_in, ir_node *const *in, ir_loc loc);
/* Runs the op's shape rule. */
bool ir_infer(ir_node *n, ir_diag *d);
/* Index of a mesh axis by name, -1 if absent. */
int ir_graph_axis(const ir_graph *g, const char *name);
/* Drops nodes marked dead (dead[i] true) and renumbers ids; operands of live nodes must be live. */
void ir_graph_compact(ir_graph *g, const bool *dead);
/* A copy of node s (of any graph) appended to g with operands in (g's nodes): type, flags,
 * names and attributes copied into g's arena. */
ir_node *ir_node_copy(ir_graph *g, const ir_node *s, ir_node *const *in);
/* Deep copy into a fresh arena. */
ir_graph *ir_graph_clone(const ir_graph *g);

/* Attribute access by schema name; abort (compiler bug) if the op has no such attribute. */
int64_t ir_attr_int(const ir_node *n, const char *name);
double ir_attr_float(const ir_node *n, const char *name);
const char *ir_attr_str(const ir_node *n, const char *name);
ir_dtype ir_attr_dtype(const ir_node *n, const char *name);
const ir_attr *ir_attr_get(const ir_node *n, const char *name);
void ir_attr_set_int(ir_node *n, const char *name, int64_t v);
void ir_attr_set_float(ir_node *n, const char *name, double v);
void ir_attr_set_str(ir_graph *g, ir_node *n, const char *name, const char *s);
void ir_attr_set_dtype(ir_node *n, const char *name, ir_dtype dt);
void ir_attr_set_ints(ir_graph *g, ir_node *n, const char *name, int count, const int64_t *v);

/* ---- text form (ir/print.c, ir/parse.c) ---------------------------------------------------- */
#include <stdio.h>
void ir_print(const ir_graph *g, FILE *out);
/* Parses textual IR from a source registered in d (see ir_diag_add_source); NULL on error,
 * with every error reported through d. */
ir_graph *ir_parse(ir_diag *d, int file);

/* ---- verifier (ir/verify.c) --------------------------------------------------------------- */
/* Checks every invariant at the top of this file and re-runs shape rules; reports through d. */
bool ir_verify(const ir_graph *g, ir_diag *d);

/* Compiler bug: print file:line and abort. Never for user errors. */
#define ir_unreachable(msg) ir_die(__FILE__, __LINE__, msg)
_Noreturn void ir_die(const char *file, int line, const char *msg);

#endif
