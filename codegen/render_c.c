/* render_c.c — kernel IR → C-like kernel source text. One renderer, several dialects: a dialect
 * (cg_c_dialect below) is data only — the kernel qualifier, address-space qualifiers, barrier
 * statements, work-item id expressions, type names, per-storage-dtype load/store formats with
 * their f16/bf16 helpers, and op → format tables — in the manner of tinygrad's cstyle
 * renderer. OpenCL C is the dialect used now (cg_opencl_source); a CUDA C or plain C dialect
 * is another table of strings, not another walker.
 *
 * Mapping of kir.h's grid and loops (cg_opencl_launch_dims gives the launch that goes with it):
 *  - a kernel without loops: one work-item per grid point. The global id is the flattened
 *    (row-major) grid point, turned into grid indices by div/mod by the constant dims; a
 *    global-size-stride loop covers points beyond the launch, and its bound retires the
 *    padding work-items of the last group.
 *  - a kernel with loops: one work-group per grid point (group id flattened, stride over
 *    groups). Every work-item computes the even slots (values before, between and after the
 *    loops) redundantly, so they are uniform across the group; a store in an even slot is
 *    executed by local id 0 only. Loop k runs iterations lid, lid + lsz, ... in each
 *    work-item; a store inside it is executed by the work-item that owns the iteration. A
 *    reduce over loop k is a private accumulator, then a tree over a __local scratch array
 *    (any local size: halves rounded up), barrier(CLK_LOCAL_MEM_FENCE) between the phases,
 *    every work-item reading the result (uniform again), and a last barrier so the scratch can
 *    be reused by the next reduce or grid point. Where an `inout` buffer loaded by some
 *    work-items is later stored by others with no reduction barrier in between, a
 *    barrier(CLK_GLOBAL_MEM_FENCE) is emitted first: where cg_kernel_group_barriers (kir.h)
 *    says, the same places render_nvptx.c puts its bar.sync.
 *  Requirements: local size <= CG_OPENCL_MAX_LOCAL (the scratch arrays), 1-D launch.
 *
 * Values: every node is one `const T _vN = expr;` line (reduce accumulators are not const);
 * index arithmetic is `long`. Storage: f16 through vload_half/vstore_half_rte (no cl_khr_fp16
 * needed), bf16 as ushort with bit operations (round to nearest even, NaN kept quiet), u8 as
 * uchar; f64 enables cl_khr_fp64 (the runtime reports a device without it). Float max/min
 * propagate NaN by an explicit isnan select (fmax/fmin would drop it); sigmoid is
 * 1/(1+exp(-x)); the rest are OpenCL built-ins.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"

/* ---- dialects --------------------------------------------------------------------------------
 * Format strings: $0 $1 $2 the operands (already names, so repeating one is free), $T the C
 * name of the result type; in load/store formats $b the buffer, $i the index, $v the value. */
typedef struct {
    const char *name;                  /* for the header comment: "OpenCL C" */
    const char *kernel_qual;           /* before the kernel's name: "__kernel void " */
    const char *global_qual;           /* buffer parameters: "__global " */
    const char *local_qual;            /* reduction scratch: "__local " */
    const char *restrict_kw;           /* "restrict" */
    const char *local_barrier;         /* orders __local memory within a group */
    const char *global_barrier;        /* orders global memory within a group */
    const char *global_id, *global_size, *group_id, *num_groups, *local_id, *local_size;
    const char *type[CG_TYPE_COUNT];   /* value types: "float", "long", ... */
    const char *storage[DT_COUNT];     /* buffer element types: "half", "ushort", ... */
    const char *load[DT_COUNT];        /* load format per storage dtype (compute type result) */
    const char *store[DT_COUNT];       /* store statement per storage dtype, without ';' */
    const char *bf16_helpers;          /* defines loom_bf16_to_f32 and loom_f32_to_bf16 */
    const char *f16_helpers;           /* defines loom_round_f16 */
    const char *fp64_enable;           /* emitted when an f64 appears; NULL: nothing needed */
    const char *f32_suffix;            /* of f32 literals: "f" */
    const char *inf, *nan;             /* float infinity and NaN expressions */
    const char *const *float_ops;      /* op → format for float operands */
    const char *const *int_ops;        /* op → format for integer (and bool) operands */
} cg_c_dialect;

/* Formats shared by C-family dialects (C99 operators, C math names overloaded by type). */
static const char *const c_float_ops[CG_OP_COUNT] = {
    [CG_NEG] = "(-$0)",
    [CG_ABS] = "fabs($0)",
    [CG_EXP] = "exp($0)",
    [CG_LOG] = "log($0)",
    [CG_SQRT] = "sqrt($0)",
    [CG_RSQRT] = "rsqrt($0)",
    [CG_RECIP] = "(($T)1 / $0)",
    [CG_TANH] = "tanh($0)",
    [CG_ERF] = "erf($0)",
    [CG_SIGMOID] = "(($T)1 / (($T)1 + exp(-$0)))",
    [CG_SIN] = "sin($0)",
    [CG_COS] = "cos($0)",
    [CG_RBF16] = "loom_bf16_to_f32(loom_f32_to_bf16($0))",
    [CG_RF16] = "loom_round_f16($0)",
    [CG_ADD] = "($0 + $1)",
    [CG_SUB] = "($0 - $1)",
    [CG_MUL] = "($0 * $1)",
    [CG_DIV] = "($0 / $1)",
    [CG_MAX] = "(($0 > $1 || isnan($0)) ? $0 : $1)", /* NaN in either: NaN */
    [CG_MIN] = "(($0 < $1 || isnan($0)) ? $0 : $1)",
    [CG_POW] = "pow($0, $1)",
    [CG_LT] = "($0 < $1)",
    [CG_LE] = "($0 <= $1)",
    [CG_GT] = "($0 > $1)",
    [CG_GE] = "($0 >= $1)",
    [CG_EQ] = "($0 == $1)",
    [CG_NE] = "($0 != $1)",
    [CG_SELECT] = "($0 ? $1 : $2)",
};

static const char *const c_int_ops[CG_OP_COUNT] = {
    [CG_NEG] = "(-$0)",
    [CG_ABS] = "($0 < 0 ? -$0 : $0)", /* OpenCL abs() returns an unsigned type */
    [CG_ADD] = "($0 + $1)",
    [CG_SUB] = "($0 - $1)",
    [CG_MUL] = "($0 * $1)",
    [CG_DIV] = "($0 / $1)",
    [CG_MOD] = "($0 % $1)",
    [CG_MAX] = "($0 > $1 ? $0 : $1)",
    [CG_MIN] = "($0 < $1 ? $0 : $1)",
    [CG_LT] = "($0 < $1)",
    [CG_LE] = "($0 <= $1)",
    [CG_GT] = "($0 > $1)",
    [CG_GE] = "($0 >= $1)",
    [CG_EQ] = "($0 == $1)",
    [CG_NE] = "($0 != $1)",
    [CG_AND] = "($0 && $1)",
    [CG_OR] = "($0 || $1)",
    [CG_SELECT] = "($0 ? $1 : $2)",
};

static const cg_c_dialect dialect_opencl = {
    .name = "OpenCL C",
    .kernel_qual = "__kernel void ",
    .global_qual = "__global ",
    .local_qual = "__local ",
    .restrict_kw = "restrict",
    .local_barrier = "barrier(CLK_LOCAL_MEM_FENCE);",
    .global_barrier = "barrier(CLK_GLOBAL_MEM_FENCE);",
    .global_id = "(long)get_global_id(0)",
    .global_size = "(long)get_global_size(0)",
    .group_id = "(long)get_group_id(0)",
    .num_groups = "(long)get_num_groups(0)",
    .local_id = "(long)get_local_id(0)",
    .local_size = "(long)get_local_size(0)",
    .type = {[CG_VOID] = "void", [CG_BOOL] = "bool", [CG_I32] = "int", [CG_I64] = "long",
             [CG_F32] = "float", [CG_F64] = "double"},
    .storage = {[DT_F32] = "float", [DT_F64] = "double", [DT_F16] = "half", [DT_BF16] = "ushort",
                [DT_I32] = "int", [DT_I64] = "long", [DT_U8] = "uchar", [DT_I8] = "char"},
    .load = {[DT_F32] = "$b[$i]", [DT_F64] = "$b[$i]", [DT_F16] = "vload_half($i, $b)",
             [DT_BF16] = "loom_bf16_to_f32($b[$i])", [DT_I32] = "$b[$i]", [DT_I64] = "$b[$i]",
             [DT_U8] = "(int)$b[$i]", [DT_I8] = "(int)$b[$i]"},
    .store = {[DT_F32] = "$b[$i] = $v", [DT_F64] = "$b[$i] = $v", [DT_F16] = "vstore_half_rte($v, $i, $b)",
              [DT_BF16] = "$b[$i] = loom_f32_to_bf16($v)", [DT_I32] = "$b[$i] = $v", [DT_I64] = "$b[$i] = $v",
              [DT_U8] = "$b[$i] = (uchar)$v", [DT_I8] = "$b[$i] = (char)$v"},
    .bf16_helpers =
        "/* bf16 <-> f32 by bit operations: widening is exact; narrowing rounds to nearest even,\n"
        " * and a NaN stays a (quiet) NaN. */\n"
        "float loom_bf16_to_f32(ushort b) { return as_float((uint)b << 16); }\n"
        "ushort loom_f32_to_bf16(float f)\n"
        "{\n"
        "    uint u = as_uint(f);\n"
        "    if (isnan(f))\n"
        "        return (ushort)((u >> 16) | 0x40u);\n"
        "    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);\n"
        "}\n",
    .f16_helpers =
        "/* f32 rounded to the nearest f16 value, through half storage (no cl_khr_fp16 needed) */\n"
        "float loom_round_f16(float f)\n"
        "{\n"
        "    ushort h;\n"
        "    vstore_half_rte(f, 0, (__private half *)&h);\n"
        "    return vload_half(0, (__private const half *)&h);\n"
        "}\n",
    .fp64_enable = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n",
    .f32_suffix = "f",
    .inf = "INFINITY",
    .nan = "NAN",
    .float_ops = c_float_ops,
    .int_ops = c_int_ops,
};

/* Words an argument may not be called in OpenCL C (keywords, qualifiers, built-in types that
 * kernel IR names could plausibly take); such an argument gets a trailing '_'. */
static const char *const reserved[] = {
    "auto", "bool", "break", "case", "char", "const", "constant", "continue", "default", "do",
    "double", "else", "enum", "extern", "float", "for", "global", "goto", "half", "if", "image1d_t",
    "image2d_t", "image3d_t", "inline", "int", "kernel", "local", "long", "private", "read_only",
    "read_write", "register", "restrict", "return", "sampler_t", "short", "signed", "size_t",
    "sizeof", "static", "struct", "switch", "typedef", "uchar", "uint", "ulong", "union",
    "unsigned", "ushort", "void", "volatile", "while", "write_only", "event_t", "uniform",
    "pipe", "complex", "imaginary", "NULL", "true", "false",
};

/* ---- output buffer ---------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            ir_unreachable("out of memory");
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char small[256], *p = (size_t)n < sizeof small ? small : malloc((size_t)n + 1);
    if (!p)
        ir_unreachable("out of memory");
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    sb_putn(b, p, (size_t)n);
    if (p != small)
        free(p);
}

static void sb_indent(sbuf *b, int depth)
{
    for (int i = 0; i < depth; i++)
        sb_puts(b, "    ");
}

/* Expands a format: $0..$2 → ops[0..2], $T → type, $b/$i/$v → ops[0..2] as well. */
static void sb_format(sbuf *b, const char *fmt, const char *const ops[3], const char *type)
{
    for (const char *p = fmt; *p; p++) {
        if (*p != '$' || !p[1]) {
            sb_putn(b, p, 1);
            continue;
        }
        p++;
        switch (*p) {
        case '0': case 'b': sb_puts(b, ops[0]); break;
        case '1': case 'i': sb_puts(b, ops[1]); break;
        case '2': case 'v': sb_puts(b, ops[2]); break;
        case 'T': sb_puts(b, type); break;
        default: ir_unreachable("render_c: bad format directive");
        }
    }
}

/* ---- rendering state -------------------------------------------------------------------------- */

typedef struct {
    const cg_c_dialect *dl;
    const cg_kernel *k;
    sbuf *out;
    char **arg;         /* C names of the args */
    char (*val)[24];    /* C names of the nodes: "_v12" */
    bool row;           /* the kernel has loops: one work-group per grid point */
    bool *bar;          /* cg_kernel_group_barriers: a global barrier before node i / loop l */
} rc;

static const char *tname(const rc *c, cg_type t) { return c->dl->type[t]; }

/* Shortest text that reads back to v as a double (or as a float for f32), as a C literal. */
static void float_literal(const rc *c, double v, cg_type t, char *buf, size_t cap)
{
    const cg_c_dialect *dl = c->dl;
    if (isnan(v)) {
        snprintf(buf, cap, "%s", dl->nan);
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v < 0 ? "(-%s)" : "%s", dl->inf);
        return;
    }
    bool f32 = t == CG_F32;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (f32 ? (double)strtof(buf, NULL) == v : strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".e"))
        strncat(buf, ".0", cap - strlen(buf) - 1);
    if (f32)
        strncat(buf, dl->f32_suffix, cap - strlen(buf) - 1);
}

static void int_literal(const rc *c, int64_t v, cg_type t, char *buf, size_t cap)
{
    if (t == CG_BOOL)
        snprintf(buf, cap, "%d", v != 0);
    else if (t == CG_I32)
        snprintf(buf, cap, v == INT32_MIN ? "(-2147483647 - 1)" : "%" PRId64, v);
    else
        snprintf(buf, cap, v == INT64_MIN ? "(-9223372036854775807L - 1)" : "%" PRId64 "L", v);
}

/* The identity of a reduce's combiner (kir.h: 0, -inf / INT_MIN, +inf / INT_MAX). */
static void red_identity(const rc *c, cg_red red, cg_type t, char *buf, size_t cap)
{
    if (cg_type_is_float(t))
        float_literal(c, red == CG_RED_SUM ? 0.0 : red == CG_RED_MAX ? -INFINITY : INFINITY, t, buf, cap);
    else
        int_literal(c, red == CG_RED_SUM ? 0 : red == CG_RED_MAX ? (t == CG_I32 ? INT32_MIN : INT64_MIN)
                                                                 : (t == CG_I32 ? INT32_MAX : INT64_MAX),
                    t, buf, cap);
}

static const char *red_format(const rc *c, cg_red red, cg_type t)
{
    cg_op op = red == CG_RED_SUM ? CG_ADD : red == CG_RED_MAX ? CG_MAX : CG_MIN;
    return (cg_type_is_float(t) ? c->dl->float_ops : c->dl->int_ops)[op];
}

/* ---- nodes ------------------------------------------------------------------------------------- */

static void emit_store(rc *c, const cg_node *n, int depth)
{
    const cg_arg *a = &c->k->args[n->a];
    const char *ops[3] = {c->arg[n->a], c->val[n->in[0]], c->val[n->in[1]]};
    bool even = n->slot % 2 == 0;
    if (c->bar[n - c->k->nodes]) { /* others may still be reading this inout element */
        sb_indent(c->out, depth);
        sb_printf(c->out, "%s\n", c->dl->global_barrier);
    }
    sb_indent(c->out, depth);
    if (c->row && even)
        sb_puts(c->out, "if (_lid == 0) ");
    sb_format(c->out, c->dl->store[a->dtype], ops, "");
    sb_puts(c->out, ";\n");
}

static void emit_node(rc *c, int i, int depth)
{
    const cg_node *n = &c->k->nodes[i];
    const cg_c_dialect *dl = c->dl;
    if (n->op == CG_STORE) {
        emit_store(c, n, depth);
        return;
    }
    if (n->op == CG_REDUCE) /* accumulated in its loop, combined across the group after it */
        return;
    const char *ops[3] = {"", "", ""};
    for (int j = 0; j < cg_ops[n->op].n_in; j++)
        ops[j] = c->val[n->in[j]];
    sbuf *o = c->out;
    sb_indent(o, depth);
    sb_printf(o, "const %s %s = ", tname(c, n->type), c->val[i]);
    char lit[64];
    switch (cg_ops[n->op].cls) {
    case CGC_LEAF:
        switch (n->op) {
        case CG_CONST:
            if (cg_type_is_float(n->type))
                float_literal(c, n->fval, n->type, lit, sizeof lit);
            else
                int_literal(c, n->ival, n->type, lit, sizeof lit);
            sb_puts(o, lit);
            break;
        case CG_PIDX: sb_printf(o, "_p%d", n->a); break;
        case CG_LIDX: sb_printf(o, "_l%d", n->a); break;
        default: sb_puts(o, c->arg[n->a]); break; /* scalar */
        }
        break;
    case CGC_MEM: {
        const cg_arg *a = &c->k->args[n->a];
        const char *mops[3] = {c->arg[n->a], ops[0], ""};
        sb_format(o, dl->load[a->dtype], mops, "");
        break;
    }
    case CGC_CAST: /* C conversions: float → int truncates, int → float rounds */
        if (n->type == CG_BOOL)
            sb_printf(o, "(%s != 0)", ops[0]);
        else
            sb_printf(o, "(%s)%s", tname(c, n->type), ops[0]);
        break;
    default: {
        cg_type xt = c->k->nodes[n->in[cg_ops[n->op].cls == CGC_SEL ? 1 : 0]].type;
        const char *fmt = (cg_type_is_float(xt) ? dl->float_ops : dl->int_ops)[n->op];
        if (!fmt)
            ir_unreachable("render_c: op without a format (the validator admits it)");
        sb_format(o, fmt, ops, tname(c, n->type));
        break;
    }
    }
    sb_puts(o, ";\n");
}

static void emit_slot(rc *c, int slot, int depth)
{
    for (int i = 0; i < c->k->n_nodes; i++)
        if (c->k->nodes[i].slot == slot)
            emit_node(c, i, depth);
}

/* Combines reduce node i's per-work-item accumulator across the work-group. */
static void emit_group_reduce(rc *c, int i, int depth)
{
    const cg_node *n = &c->k->nodes[i];
    const cg_c_dialect *dl = c->dl;
    sbuf *o = c->out;
    const char *t = tname(c, n->type), *acc = c->val[i];
    char scratch[32];
    snprintf(scratch, sizeof scratch, "_red_%s", cg_type_name(n->type));
    const char *ops[3] = {"_a", "_b", ""};
    sb_indent(o, depth), sb_printf(o, "%s[_lid] = %s;\n", scratch, acc);
    sb_indent(o, depth), sb_printf(o, "%s\n", dl->local_barrier);
    sb_indent(o, depth), sb_puts(o, "for (long _s = _lsz; _s > 1;) {\n");
    sb_indent(o, depth + 1), sb_puts(o, "const long _h = (_s + 1) >> 1;\n");
    sb_indent(o, depth + 1), sb_puts(o, "if (_lid < _s - _h) {\n");
    sb_indent(o, depth + 2), sb_printf(o, "const %s _a = %s[_lid], _b = %s[_lid + _h];\n", t, scratch, scratch);
    sb_indent(o, depth + 2), sb_printf(o, "%s[_lid] = ", scratch);
    sb_format(o, red_format(c, n->red, n->type), ops, t);
    sb_puts(o, ";\n");
    sb_indent(o, depth + 1), sb_puts(o, "}\n");
    sb_indent(o, depth + 1), sb_printf(o, "%s\n", dl->local_barrier);
    sb_indent(o, depth + 1), sb_puts(o, "_s = _h;\n");
    sb_indent(o, depth), sb_puts(o, "}\n");
    sb_indent(o, depth), sb_printf(o, "%s = %s[0];\n", acc, scratch);
    sb_indent(o, depth), sb_printf(o, "%s\n", dl->local_barrier);
}

/* Loop k (slot 2k+1): accumulators, the strided loop, then the group reductions. */
static void emit_loop(rc *c, int lk, int depth)
{
    const cg_kernel *k = c->k;
    sbuf *o = c->out;
    int slot = 2 * lk + 1;
    /* a store in this loop to an inout buffer other work-items loaded earlier: barrier first */
    if (c->bar[k->n_nodes + lk])
        sb_indent(o, depth), sb_printf(o, "%s\n", c->dl->global_barrier);
    char lit[64];
    for (int i = 0; i < k->n_nodes; i++) {
        const cg_node *n = &k->nodes[i];
        if (n->op != CG_REDUCE || n->a != lk)
            continue;
        red_identity(c, n->red, n->type, lit, sizeof lit);
        sb_indent(o, depth), sb_printf(o, "%s %s = %s; /* reduce.%s over loop %d */\n", tname(c, n->type),
                                       c->val[i], lit, cg_red_name(n->red), lk);
    }
    sb_indent(o, depth);
    sb_printf(o, "for (long _l%d = _lid; _l%d < %" PRId64 "; _l%d += _lsz) {\n", lk, lk, k->loop[lk], lk);
    emit_slot(c, slot, depth + 1);
    for (int i = 0; i < k->n_nodes; i++) {
        const cg_node *n = &k->nodes[i];
        if (n->op != CG_REDUCE || n->a != lk)
            continue;
        const char *ops[3] = {c->val[i], c->val[n->in[0]], ""};
        sb_indent(o, depth + 1), sb_printf(o, "%s = ", c->val[i]);
        sb_format(o, red_format(c, n->red, n->type), ops, tname(c, n->type));
        sb_puts(o, ";\n");
    }
    sb_indent(o, depth), sb_puts(o, "}\n");
    for (int i = 0; i < k->n_nodes; i++)
        if (k->nodes[i].op == CG_REDUCE && k->nodes[i].a == lk)
            emit_group_reduce(c, i, depth);
}

/* One grid point of a sequential kernel (kir.h): slot by slot, each loop a C for loop at its
 * events; a carry is a variable declared before its loop and assigned at the end of each
 * iteration (through temporaries, so that carries may feed one another), last its value
 * after the loop. */
static void emit_seq(rc *c, int depth)
{
    const cg_kernel *k = c->k;
    sbuf *o = c->out;
    int d = depth;
    for (int g = 0; g < cg_kernel_nslots(k); g++) {
        for (int i = 0; i < k->n_nodes; i++)
            if (k->nodes[i].slot == g && cg_ops[k->nodes[i].op].cls != CGC_LOOP)
                emit_node(c, i, d);
        bool opens = false;
        int j = g < 2 * k->n_loops ? cg_kernel_event_loop(k, g, &opens) : -1;
        if (j < 0)
            continue;
        if (opens) {
            for (int i = 0; i < k->n_nodes; i++) {
                const cg_node *n = &k->nodes[i];
                if (n->op == CG_CARRY && n->a == j)
                    sb_indent(o, d), sb_printf(o, "%s %s = %s; /* carry over loop %d */\n", tname(c, n->type),
                                               c->val[i], c->val[n->in[0]], j);
            }
            sb_indent(o, d);
            if (k->loop_bound[j] >= 0) {
                sb_printf(o, "const long _n%d = min(max(%s, 0L), %" PRId64 "L);\n", j, c->val[k->loop_bound[j]],
                          k->loop[j]);
                sb_indent(o, d);
                sb_printf(o, "for (long _l%d = 0; _l%d < _n%d; _l%d++) {\n", j, j, j, j);
            } else {
                sb_printf(o, "for (long _l%d = 0; _l%d < %" PRId64 "L; _l%d++) {\n", j, j, k->loop[j], j);
            }
            d++;
            continue;
        }
        for (int i = 0; i < k->n_nodes; i++) {
            const cg_node *n = &k->nodes[i];
            if (n->op == CG_CARRY && n->a == j)
                sb_indent(o, d), sb_printf(o, "const %s _t%d = %s;\n", tname(c, n->type), i, c->val[n->in[1]]);
        }
        for (int i = 0; i < k->n_nodes; i++) {
            const cg_node *n = &k->nodes[i];
            if (n->op == CG_CARRY && n->a == j)
                sb_indent(o, d), sb_printf(o, "%s = _t%d;\n", c->val[i], i);
        }
        d--;
        sb_indent(o, d), sb_puts(o, "}\n");
        for (int i = 0; i < k->n_nodes; i++) {
            const cg_node *n = &k->nodes[i];
            if (n->op == CG_LAST && n->a == j)
                sb_indent(o, d), sb_printf(o, "const %s %s = %s;\n", tname(c, n->type), c->val[i], c->val[n->in[0]]);
        }
    }
}

/* Grid indices _p0.._p{n-1} from the flattened point `flat` (row-major). */
static void emit_grid_indices(rc *c, const char *flat, int depth)
{
    const cg_kernel *k = c->k;
    sbuf *o = c->out;
    if (k->n_dims == 1) {
        sb_indent(o, depth), sb_printf(o, "const long _p0 = %s;\n", flat);
        return;
    }
    sb_indent(o, depth), sb_printf(o, "long _t = %s;\n", flat);
    for (int d = k->n_dims - 1; d >= 1; d--) {
        sb_indent(o, depth), sb_printf(o, "const long _p%d = _t %% %" PRId64 ";\n", d, k->dim[d]);
        sb_indent(o, depth), sb_printf(o, "_t /= %" PRId64 ";\n", k->dim[d]);
    }
    sb_indent(o, depth), sb_puts(o, "const long _p0 = _t;\n");
}

static bool is_reserved(const char *s)
{
    if (strncmp(s, "loom_", 5) == 0 || s[0] == '_')
        return true;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcmp(s, reserved[i]) == 0)
            return true;
    return false;
}

static int64_t grid_points(const cg_kernel *k)
{
    int64_t p = 1;
    for (int d = 0; d < k->n_dims; d++)
        p *= k->dim[d];
    return p;
}

static void render_kernel(const cg_c_dialect *dl, const cg_kernel *k, bool offsets, sbuf *o)
{
    rc c = {.dl = dl, .k = k, .out = o, .row = k->n_loops > 0 && !k->seq};
    c.arg = calloc((size_t)k->n_args + 1, sizeof *c.arg);
    c.val = calloc((size_t)k->n_nodes + 1, sizeof *c.val);
    c.bar = calloc((size_t)(k->n_nodes + k->n_loops) + 1, sizeof *c.bar);
    if (!c.arg || !c.val || !c.bar)
        ir_unreachable("out of memory");
    cg_kernel_group_barriers(k, c.bar);
    for (int a = 0; a < k->n_args; a++) {
        size_t len = strlen(k->args[a].name);
        c.arg[a] = malloc(len + 2);
        if (!c.arg[a])
            ir_unreachable("out of memory");
        memcpy(c.arg[a], k->args[a].name, len + 1);
        if (is_reserved(c.arg[a]))
            strcat(c.arg[a], "_");
    }
    for (int i = 0; i < k->n_nodes; i++)
        snprintf(c.val[i], sizeof c.val[i], "_v%d", i);

    /* signature: buffers in kir order (pointer to their storage type), i64 scalars as long */
    sb_printf(o, "%s%s%s(", dl->kernel_qual, CG_OPENCL_PREFIX, k->name);
    for (int a = 0; a < k->n_args; a++) {
        const cg_arg *arg = &k->args[a];
        sb_puts(o, a ? ",\n        " : "");
        if (arg->scalar)
            sb_printf(o, "const %s %s", tname(&c, CG_I64), c.arg[a]);
        else
            sb_printf(o, "%s%s%s *%s %s", dl->global_qual, arg->access == CG_IN ? "const " : "",
                      dl->storage[arg->dtype], dl->restrict_kw, c.arg[a]);
        if (!arg->scalar && arg->numel > 0)
            sb_printf(o, " /* %s[%" PRId64 "] */", ir_dtype_name(arg->dtype), arg->numel);
        if (!arg->scalar && offsets)
            sb_printf(o, ",\n        const %s _off%d", tname(&c, CG_I64), a);
    }
    sb_puts(o, ")\n{\n");
    for (int a = 0; offsets && a < k->n_args; a++)
        if (!k->args[a].scalar)
            sb_printf(o, "    %s += _off%d;\n", c.arg[a], a);
    int64_t points = grid_points(k);
    if (!c.row) {
        sb_printf(o, "    for (long _gid = %s; _gid < %" PRId64 "; _gid += %s) {\n", dl->global_id, points,
                  dl->global_size);
        emit_grid_indices(&c, "_gid", 2);
        if (k->seq)
            emit_seq(&c, 2);
        else
            emit_slot(&c, 0, 2);
        sb_puts(o, "    }\n");
    } else {
        bool used[CG_TYPE_COUNT] = {0};
        for (int i = 0; i < k->n_nodes; i++)
            if (k->nodes[i].op == CG_REDUCE)
                used[k->nodes[i].type] = true;
        for (int t = 0; t < CG_TYPE_COUNT; t++)
            if (used[t])
                sb_printf(o, "    %s%s _red_%s[%d];\n", dl->local_qual, dl->type[t], cg_type_name((cg_type)t),
                          CG_OPENCL_MAX_LOCAL);
        sb_printf(o, "    const long _lid = %s, _lsz = %s;\n", dl->local_id, dl->local_size);
        sb_printf(o, "    for (long _grp = %s; _grp < %" PRId64 "; _grp += %s) {\n", dl->group_id, points,
                  dl->num_groups);
        emit_grid_indices(&c, "_grp", 2);
        for (int s = 0; s < cg_kernel_nslots(k); s++) {
            if (s % 2)
                emit_loop(&c, s / 2, 2);
            else
                emit_slot(&c, s, 2);
        }
        sb_puts(o, "    }\n");
    }
    sb_puts(o, "}\n");
    for (int a = 0; a < k->n_args; a++)
        free(c.arg[a]);
    free(c.arg);
    free(c.val);
    free(c.bar);
}

/* Whether kernel k has a buffer of dtype dt, or a node of type t or with op: what a module's
 * preamble (the f64 pragma, the bf16 or f16 helpers) is needed for. */
static bool uses(const cg_kernel *k, ir_dtype dt, cg_type t, int op)
{
    for (int a = 0; dt != DT_VOID && a < k->n_args; a++)
        if (!k->args[a].scalar && k->args[a].dtype == dt)
            return true;
    for (int i = 0; i < k->n_nodes; i++)
        if ((t != CG_VOID && k->nodes[i].type == t) || (int)k->nodes[i].op == op)
            return true;
    return false;
}

static char *render_module(const cg_c_dialect *dl, cg_kernel *const *ks, int n, bool offsets, ir_diag *d)
{
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok &= cg_kernel_validate(ks[i], d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(ks[i]->name, ks[j]->name) == 0) {
                ir_diag_error(d, -1, 0, 0, "two kernels named %s in one module", ks[i]->name);
                ok = false;
            }
    if (!ok)
        return NULL;
    sbuf o = {0};
    bool f64 = false, bf16 = false, f16 = false;
    for (int i = 0; i < n; i++) {
        f64 |= uses(ks[i], DT_F64, CG_F64, -1);
        bf16 |= uses(ks[i], DT_BF16, CG_VOID, CG_RBF16);
        f16 |= uses(ks[i], DT_VOID, CG_VOID, CG_RF16);
    }
    sb_printf(&o, "/* %s generated by loom: %d kernel%s */\n", dl->name, n, n == 1 ? "" : "s");
    if (f64 && dl->fp64_enable)
        sb_puts(&o, dl->fp64_enable);
    if (bf16)
        sb_puts(&o, dl->bf16_helpers);
    if (f16)
        sb_puts(&o, dl->f16_helpers);
    for (int i = 0; i < n; i++) {
        sb_puts(&o, "\n");
        render_kernel(dl, ks[i], offsets, &o);
    }
    return o.s;
}

char *cg_opencl_source(cg_kernel *const *ks, int n, ir_diag *d)
{
    return render_module(&dialect_opencl, ks, n, false, d);
}

char *cg_opencl_source_offsets(cg_kernel *const *ks, int n, ir_diag *d)
{
    return render_module(&dialect_opencl, ks, n, true, d);
}

/* Largest power of two <= v (v >= 1). */
static size_t pow2_floor(size_t v)
{
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

void cg_opencl_launch_dims(const cg_kernel *k, size_t *groups, size_t *local)
{
    int64_t points = grid_points(k);
    if (k->n_loops == 0 || k->seq) { /* one work-item per grid point */
        int64_t l = points >= CG_OPENCL_MAX_LOCAL ? CG_OPENCL_MAX_LOCAL : (points + 31) / 32 * 32;
        int64_t g = (points + l - 1) / l;
        *local = (size_t)l;
        *groups = (size_t)(g < CG_OPENCL_MAX_GROUPS ? g : CG_OPENCL_MAX_GROUPS);
        return;
    }
    int64_t ext = 1;
    for (int i = 0; i < k->n_loops; i++)
        ext = k->loop[i] > ext ? k->loop[i] : ext;
    size_t l = ext >= CG_OPENCL_MAX_LOCAL ? CG_OPENCL_MAX_LOCAL : pow2_floor((size_t)ext * 2 - 1);
    *local = l < 32 ? 32 : l;
    *groups = (size_t)(points < CG_OPENCL_MAX_GROUPS ? points : CG_OPENCL_MAX_GROUPS);
}
