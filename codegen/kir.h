/* kir.h — the kernel IR: one description of one kernel, rendered by every backend.
 *
 * Lowering turns each fused group of graph ops into one cg_kernel; renderers turn a cg_kernel
 * into host LLVM IR (render_llvm.c), nvptx64 LLVM IR and OpenCL C text. A renderer sees only
 * this structure, never the graph.
 *
 * Shape of a kernel
 *  - args: buffers (storage dtype, access in/out/inout, element count) and i64 scalars.
 *  - grid: a parallel index space of n_dims sizes. Every grid point runs the body once, in any
 *    order, possibly concurrently; points never communicate. The renderer maps the grid:
 *    host: the function runs points [begin, end) of dim 0 (all of dims 1.. for each), so a
 *    thread pool splits dim 0; GPU/OpenCL: one thread per point for a kernel without loops,
 *    one block/work-group per point for a kernel with loops.
 *  - loops: n_loops sequential inner loops, each with a constant extent, run one after the
 *    other inside each grid point ("row" kernels: softmax, layernorm, reductions, ...). Their
 *    iterations are independent except through reductions, so a GPU renderer may spread a loop
 *    over the threads of a block and combine reductions with warp shuffles and shared memory,
 *    and the host renderer lets LLVM vectorize them (reductions are reassociable).
 *  - nodes: an SSA expression DAG in one array; operands always precede their user. Leaves are
 *    constants, grid indices (pidx), loop indices (lidx) and scalar args; then loads
 *    buf[index], arithmetic, float math, comparisons, select, casts; reduce (sum/max/min of a
 *    value over one loop), and store buf[index] = value (the only node with an effect).
 *
 * Where a node runs — its slot — follows from its operands and is computed by the builder:
 *    slot 0      grid point, before loop 0          (even slot 2k: after loop k-1, before loop k)
 *    slot 2k+1   inside loop k                      (the node depends on lidx k)
 *    slot 2L     after the last loop
 * A node's slot is the max of its operands' slots; lidx k is in slot 2k+1; reduce over loop k
 * is in slot 2k+2 and its value operand must be in slot <= 2k+1. A node may not use a loop-k
 * value (odd slot 2k+1) unless it is itself in slot 2k+1 — a loop's values die with the loop
 * except through a reduce. So softmax over [rows, C] is: grid [rows], loops [C, C, C];
 * m = reduce.max x over loop 0; s = reduce.sum exp(x - m) over loop 1; store
 * y = exp(x - m) / s in loop 2. Every renderer walks slots 0, 1, ..., 2L in order and emits
 * the nodes of a slot in array order, so stores keep their array order within a slot.
 *
 * Types
 *  - Values: bool, i32, i64, f32, f64 (cg_type). Index arithmetic is i64 (C semantics:
 *    division and remainder truncate toward zero); loads and stores take an i64 index counted
 *    in elements.
 *  - Buffers keep their storage dtype (ir_dtype): a load yields the buffer's compute type and
 *    a store converts back: f32/f16/bf16 → f32, f64 → f64, i32/u8 → i32, i64 → i64. So f16
 *    and bf16 are storage formats only; math runs in f32 (bf16 stores round to nearest even).
 *  - Binary ops need equal operand types; casts are explicit nodes. Integer arithmetic must
 *    not overflow (renderers may assume it). Float max/min, binary or reduce, propagate NaN
 *    (as the reference interpreter's maximum and max do); comparisons are false on NaN except
 *    ne. Float math may be contracted (FMA); reductions may be reassociated.
 *
 * Memory semantics: a load of an `in` buffer sees its contents at kernel start. An `inout`
 * element, if read, is read by the grid point that writes it before it writes it (in-place
 * updates such as optimizer steps). `out` buffers are never loaded. Nothing else is promised,
 * so any renderer may reorder loads freely and treat buffers as not aliasing.
 *
 * Why this shape: an index space + per-point body is what all three targets share (a CPU
 * loop nest, a CUDA grid, an OpenCL NDRange); the single level of sequential inner loops with
 * reductions covers every row op of the graph IR (softmax, layernorm, rmsnorm, cross-entropy,
 * sum/mean/max) and maps directly onto block-level reductions on GPUs, while keeping each
 * body a straight-line DAG (no control flow, select instead of branches) that LLVM vectorizes
 * and a C-like renderer prints line by line. Slots are derived, not declared, so a builder
 * cannot put a node in the wrong place; the validator re-derives and checks them.
 *
 * Sequential kernels (k->seq, cg_kernel_set_seq)
 *  The library steps (attention forward and backward, sum over rows, scatter-add, cache rows)
 *  need what row kernels do not have: loops inside loops, values carried from one iteration
 *  to the next (an online softmax's running max, sum and accumulators), loops whose trip
 *  count is a run-time value (the keys a causal row sees), and reads of a buffer the same
 *  grid point wrote before (scatter-add's rows). A sequential kernel has them, at the price of
 *  parallelism inside a grid point: every target runs one grid point on one thread (GPU and
 *  OpenCL: one thread / work-item per grid point, as for a kernel without loops), and its
 *  loops run in order on that thread.
 *  - Loops are opened and closed by the builder (cg_loop_open / cg_loop_close) in program
 *    order and nest; loop numbers follow the order of opening. A loop may have a bound, an i64
 *    node computed before it opens: it then runs iterations [0, min(extent, max(bound, 0))),
 *    possibly none; lidx k still ranges over [0, extent) for the validator.
 *  - Slots generalize: the opens and closes of all loops are 2L events in program order; slot
 *    g is the position after the g-th event (slot 0 before any), so lidx k is in slot
 *    open(k) + 1 and a value after loop k in slot close(k) + 1. For a kernel without nesting
 *    this is exactly the encoding above (open(k) = 2k, close(k) = 2k + 1). A node may use a
 *    value only where that value's loop is still open (the loop of the operand's slot encloses
 *    the user's).
 *  - carry(init) over loop k (cg_carry; its next value set by cg_carry_next) is the value at
 *    the start of each iteration: init at the first, the next value of the previous iteration
 *    after; last(carry) (cg_last, slot close(k) + 1) is its value after the loop (init when
 *    the loop ran no iteration). Carries are never shared by hash-consing. reduce is not used
 *    in sequential kernels (a carry does it, in order).
 *  - Memory is in program order per grid point: a store, and a load of a buffer the kernel
 *    writes (access out or inout), is placed at the builder's current position (not hoisted
 *    and never shared), so a load sees the grid point's earlier stores. Loads of `in` buffers
 *    are pure and hoisted as usual. Distinct grid points still must not touch an element
 *    another one writes.
 *
 * The builder (cg_*) does light local simplification: identical pure nodes are shared
 * (hash-consing), and integer arithmetic on constants and identities (x+0, x*1, x*0, x/1,
 * x%1) fold. It never fails: nonsense (a type mismatch, an operand out of range) is built as
 * given and reported by cg_kernel_validate, which lowering runs after building each kernel.
 */
#ifndef LOOM_KIR_H
#define LOOM_KIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/arena.h"
#include "ir/diag.h"
#include "ir/ir.h"

/* ---- value types ------------------------------------------------------------------------ */
typedef enum { CG_VOID, CG_BOOL, CG_I32, CG_I64, CG_F32, CG_F64, CG_TYPE_COUNT } cg_type;

const char *cg_type_name(cg_type t);            /* "f32"; "void" */
bool cg_type_is_float(cg_type t);
bool cg_type_is_int(cg_type t);                  /* i32, i64 (not bool) */
/* The type a load of a buffer of storage dtype dt yields (CG_VOID if dt cannot be a buffer). */
cg_type cg_compute_type(ir_dtype dt);

/* ---- ops -------------------------------------------------------------------------------- */
/* X(id, name, n_in, class). Classes drive type rules (cg_kernel_validate) and renderers'
 * op tables:
 *   LEAF   no operands (const, pidx, lidx, scalar)
 *   MEM    load (in: index), store (in: index, value); `a` is the arg
 *   RED    reduce (in: value); `a` is the loop, `red` the combiner
 *   CAST   in: x; result type is the node's type
 *   UNUM   numeric unary, int or float, result = operand type
 *   UFLT   float unary, result = operand type
 *   BNUM   numeric binary, int or float, operands and result of one type
 *   BINT   integer binary
 *   BFLT   float binary
 *   CMP    numeric compare, result bool
 *   BBOOL  bool binary
 *   SEL    select(cond bool, a, b), a and b of one type = result
 *   LOOP   carry, last: values carried across the iterations of a loop (sequential kernels) */
#define CG_OPS(X)                                                                             \
    X(CONST, "const", 0, LEAF)   /* ival (bool, ints) or fval (floats) */                     \
    X(PIDX, "pidx", 0, LEAF)     /* index along grid dim a, i64 in [0, dim[a]) */             \
    X(LIDX, "lidx", 0, LEAF)     /* index of loop a, i64 in [0, loop[a]) */                   \
    X(SCALAR, "scalar", 0, LEAF) /* value of scalar arg a, i64 */                             \
    X(LOAD, "load", 1, MEM)                                                                   \
    X(STORE, "store", 2, MEM)                                                                 \
    X(REDUCE, "reduce", 1, RED)                                                               \
    X(CAST, "cast", 1, CAST)                                                                  \
    X(NEG, "neg", 1, UNUM)                                                                    \
    X(ABS, "abs", 1, UNUM)                                                                    \
    X(EXP, "exp", 1, UFLT)                                                                    \
    X(LOG, "log", 1, UFLT)                                                                    \
    X(SQRT, "sqrt", 1, UFLT)                                                                  \
    X(RSQRT, "rsqrt", 1, UFLT)                                                                \
    X(RECIP, "recip", 1, UFLT)                                                                \
    X(TANH, "tanh", 1, UFLT)                                                                  \
    X(ERF, "erf", 1, UFLT)                                                                    \
    X(SIGMOID, "sigmoid", 1, UFLT)                                                            \
    X(SIN, "sin", 1, UFLT)                                                                    \
    X(COS, "cos", 1, UFLT)                                                                    \
    X(RBF16, "round_bf16", 1, UFLT) /* f32 to the nearest bf16 (ties to even; NaN stays NaN) */  \
    X(RF16, "round_f16", 1, UFLT)   /* f32 to the nearest f16 (ties to even; overflow: inf) */   \
    X(ADD, "add", 2, BNUM)                                                                    \
    X(SUB, "sub", 2, BNUM)                                                                    \
    X(MUL, "mul", 2, BNUM)                                                                    \
    X(DIV, "div", 2, BNUM)                                                                    \
    X(MAX, "max", 2, BNUM)                                                                    \
    X(MIN, "min", 2, BNUM)                                                                    \
    X(MOD, "mod", 2, BINT)                                                                    \
    X(POW, "pow", 2, BFLT)                                                                    \
    X(LT, "lt", 2, CMP)                                                                       \
    X(LE, "le", 2, CMP)                                                                       \
    X(GT, "gt", 2, CMP)                                                                       \
    X(GE, "ge", 2, CMP)                                                                       \
    X(EQ, "eq", 2, CMP)                                                                       \
    X(NE, "ne", 2, CMP)                                                                       \
    X(AND, "and", 2, BBOOL)                                                                   \
    X(OR, "or", 2, BBOOL)                                                                     \
    X(SELECT, "select", 3, SEL)                                                               \
    X(CARRY, "carry", 2, LOOP)   /* sequential kernels: in[0] init, in[1] next; a = loop */   \
    X(LAST, "last", 1, LOOP)     /* in[0] a carry; a = its loop: its value after the loop */

typedef enum {
#define X(id, name, n_in, cls) CG_##id,
    CG_OPS(X)
#undef X
        CG_OP_COUNT
} cg_op;

typedef enum { CGC_LEAF, CGC_MEM, CGC_RED, CGC_CAST, CGC_UNUM, CGC_UFLT, CGC_BNUM, CGC_BINT,
               CGC_BFLT, CGC_CMP, CGC_BBOOL, CGC_SEL, CGC_LOOP } cg_op_class;

typedef struct {
    const char *name;
    int n_in;
    cg_op_class cls;
} cg_op_info;
extern const cg_op_info cg_ops[CG_OP_COUNT];

/* Combiner of a reduce; the identity is 0, -inf / INT_MIN, +inf / INT_MAX. */
typedef enum { CG_RED_SUM, CG_RED_MAX, CG_RED_MIN } cg_red;
const char *cg_red_name(cg_red r);               /* "sum" */

/* ---- kernels ---------------------------------------------------------------------------- */
#define CG_MAX_DIMS 8
#define CG_MAX_LOOPS 16

typedef enum { CG_IN = 1, CG_OUT = 2, CG_INOUT = 3 } cg_access; /* bit 1 read, bit 2 write */

typedef struct {
    const char *name;      /* arena string; a C identifier */
    bool scalar;           /* an i64 scalar rather than a buffer */
    ir_dtype dtype;        /* buffer storage dtype; DT_I64 for scalars */
    cg_access access;      /* buffers only */
    int64_t numel;         /* buffer element count, for the validator's bounds check; 0 unknown */
} cg_arg;

typedef int cg_val;        /* a node index; -1 for none */

typedef struct {
    cg_op op;
    cg_type type;          /* result type; CG_VOID for store */
    int in[3];             /* operand node indices, -1 where unused */
    int a;                 /* pidx: dim; lidx: loop; scalar/load/store: arg; reduce: loop */
    cg_red red;            /* reduce: combiner */
    int64_t ival;          /* const of type bool/i32/i64 */
    double fval;           /* const of type f32/f64 */
    int slot;              /* where it runs (see top of file); set by the builder */
} cg_node;

typedef struct cg_kernel {
    ir_arena arena;        /* names */
    const char *name;      /* a C identifier, unique within a module */
    int n_args, cap_args;
    cg_arg *args;
    int n_dims;
    int64_t dim[CG_MAX_DIMS];    /* grid sizes, each >= 1 */
    int n_loops;
    int64_t loop[CG_MAX_LOOPS];  /* loop extents, each >= 1 */
    int n_nodes, cap_nodes;
    cg_node *nodes;
    /* sequential kernels (see the top of this file); for others open = 2k, close = 2k + 1 */
    bool seq;
    int loop_parent[CG_MAX_LOOPS];   /* the enclosing loop, -1 */
    cg_val loop_bound[CG_MAX_LOOPS]; /* an i64 node bounding the trip count, -1 */
    int loop_open[CG_MAX_LOOPS], loop_close[CG_MAX_LOOPS]; /* event numbers */
    int n_events;                    /* builder: events so far (sequential kernels) */
    int n_open;                      /* builder: loops open now, innermost last */
    int open_loops[CG_MAX_LOOPS];
} cg_kernel;

cg_kernel *cg_kernel_new(const char *name);
void cg_kernel_free(cg_kernel *k);

/* Adds a buffer argument; returns its index. numel 0 means unknown. */
int cg_kernel_buffer(cg_kernel *k, const char *name, ir_dtype dt, cg_access acc, int64_t numel);
/* Adds an i64 scalar argument; returns its index. */
int cg_kernel_scalar(cg_kernel *k, const char *name);
/* Adds a grid dimension (outermost first) / an inner loop; returns its index. */
int cg_kernel_dim(cg_kernel *k, int64_t size);
int cg_kernel_loop(cg_kernel *k, int64_t extent);

/* Number of slots: 2 * n_loops + 1. */
static inline int cg_kernel_nslots(const cg_kernel *k) { return 2 * k->n_loops + 1; }

/* ---- sequential kernels ------------------------------------------------------------------
 * cg_kernel_set_seq makes a new kernel (before its first loop or node) sequential. A loop is
 * opened inside the innermost open loop; cg_loop_close closes that one. Every loop must be
 * closed before the kernel is validated. bound: -1, or an i64 node of a slot before the open. */
void cg_kernel_set_seq(cg_kernel *k);
int cg_loop_open(cg_kernel *k, int64_t extent, cg_val bound);
void cg_loop_close(cg_kernel *k);
/* The loop whose body slot s lies in (innermost), -1 for the top level. */
int cg_kernel_slot_loop(const cg_kernel *k, int s);
/* The loop that event e opens or closes (*opens says which), -1 when there is none. */
int cg_kernel_event_loop(const cg_kernel *k, int e, bool *opens);
/* A carry over open loop `loop` starting at init (of a slot before the loop opens); its next
 * value is set by cg_carry_next before the loop closes; cg_last is its value after the loop. */
cg_val cg_carry(cg_kernel *k, int loop, cg_val init);
void cg_carry_next(cg_kernel *k, cg_val carry, cg_val next);
cg_val cg_last(cg_kernel *k, cg_val carry);

/* ---- builder: each returns the (possibly shared) node index --------------------------------- */
cg_val cg_const_int(cg_kernel *k, cg_type t, int64_t v);      /* bool, i32, i64 */
cg_val cg_const_float(cg_kernel *k, cg_type t, double v);     /* f32 (v rounded to float), f64 */
static inline cg_val cg_i64(cg_kernel *k, int64_t v) { return cg_const_int(k, CG_I64, v); }
static inline cg_val cg_f32(cg_kernel *k, double v) { return cg_const_float(k, CG_F32, v); }
cg_val cg_pidx(cg_kernel *k, int dim);
cg_val cg_lidx(cg_kernel *k, int loop);
cg_val cg_scalar(cg_kernel *k, int arg);
cg_val cg_load(cg_kernel *k, int arg, cg_val index);
cg_val cg_store(cg_kernel *k, int arg, cg_val index, cg_val value);
cg_val cg_reduce(cg_kernel *k, cg_red red, int loop, cg_val value);
cg_val cg_cast(cg_kernel *k, cg_type to, cg_val x);           /* no node if x already has type to */
cg_val cg_unary(cg_kernel *k, cg_op op, cg_val x);
cg_val cg_binary(cg_kernel *k, cg_op op, cg_val x, cg_val y);
cg_val cg_select(cg_kernel *k, cg_val cond, cg_val a, cg_val b);

static inline cg_val cg_add(cg_kernel *k, cg_val x, cg_val y) { return cg_binary(k, CG_ADD, x, y); }
static inline cg_val cg_sub(cg_kernel *k, cg_val x, cg_val y) { return cg_binary(k, CG_SUB, x, y); }
static inline cg_val cg_mul(cg_kernel *k, cg_val x, cg_val y) { return cg_binary(k, CG_MUL, x, y); }
static inline cg_val cg_div(cg_kernel *k, cg_val x, cg_val y) { return cg_binary(k, CG_DIV, x, y); }
static inline cg_val cg_mod(cg_kernel *k, cg_val x, cg_val y) { return cg_binary(k, CG_MOD, x, y); }

/* Removes nodes that no store depends on (e.g. constants left behind by folding), keeping the
 * order of the rest and renumbering operands. Returns the number removed. Indices held by the
 * caller are invalid afterwards. */
int cg_kernel_dce(cg_kernel *k);

/* ---- work-group kernels ------------------------------------------------------------------
 * A kernel with loops that is not sequential runs on a GPU as one work-group (CUDA block) per
 * grid point: every work-item computes the even slots, an even slot's store is made by one
 * work-item, a loop's iterations are spread over the work-items (render_c.c, render_nvptx.c).
 * An inout element may then be loaded by some work-items and stored by another: the store must
 * wait for every work-item's load (the memory semantics above: the grid point reads it before
 * it writes it). A group reduction's barriers order everything before them; elsewhere a group
 * barrier is needed.
 * cg_kernel_group_barriers fills bar (n_nodes + n_loops entries): bar[i] — a barrier right
 * before node i (an even slot's store of an inout buffer loaded since the last barrier);
 * bar[n_nodes + l] — one before loop l starts (a store inside it of such a buffer). All false
 * for kernels without loops and for sequential ones (one work-item per grid point). Both GPU
 * renderers emit exactly these barriers, so OpenCL and CUDA agree on them. */
void cg_kernel_group_barriers(const cg_kernel *k, bool *bar);

/* ---- identical kernels ------------------------------------------------------------------------
 * Two kernels have the same body when everything but their names and their args' names is
 * equal (args' dtypes, access and sizes, grid, loops, nodes): they compile to the same code, so
 * a JIT compiles one and points the other's name at it (codegen/jit.c; a model's layers make
 * most of a program's kernels this way). cg_kernel_body_hash is equal for same bodies. */
uint64_t cg_kernel_body_hash(const cg_kernel *k);
bool cg_kernel_same_body(const cg_kernel *a, const cg_kernel *b);

/* ---- checking and printing ---------------------------------------------------------------- */
/* Checks: names are C identifiers and unique; grid/loop sizes >= 1; operands precede users
 * and exist; ops' type rules (see CG_OPS); loads/stores name buffers with read/write access
 * and an i64 index whose value range (by interval arithmetic over pidx/lidx/consts) lies in
 * [0, numel) when numel is known; stored values have the buffer's compute type; slots as the
 * top of this file says. Reports through d as "kernel NAME: %N: message"; returns false on
 * any error. Renderers require a valid kernel. */
bool cg_kernel_validate(const cg_kernel *k, ir_diag *d);

/* Writes the kernel's text form, e.g.
 *   kernel add1(in f32 x[8], out f32 y[8]) grid [8] {
 *     %0 = pidx 0 : i64
 *     %1 = load x[%0] : f32
 *     %2 = const 1 : f32
 *     %3 = add %1, %2 : f32
 *     store y[%0], %3
 *   }
 * Loops print as "loops [C, C]" after the grid; reduce as "reduce.max %5 loop 0 : f32";
 * cast as "cast %3 : f32"; float constants in the shortest form that reads back to the same
 * value of their type (0.1 for an f32 0.1). Nodes inside
 * a loop are indented one more step. Never fails, even on an invalid kernel. */
void cg_kernel_print(const cg_kernel *k, FILE *out);

#endif
