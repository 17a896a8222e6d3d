/* test_ops.c — every op of ir/ops.def against hand-computed values (reference interpreter in
 * f64 mode, tolerance 1e-12 relative to max(1, |expected|)), the exact text of shape-rule
 * errors, and the cost model. Each case builds a tiny graph of input nodes and one op node,
 * runs ir_infer on it and then ir_interp_run. Expected values are worked out in the comments.
 * Prints one line per case ("matmul: ok (max abs err 0)") and returns nonzero on any failure. */
#include "ir/interp.h"
#include "ir/ir.h"
#include "test_graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_cases, n_failed;
static const ir_loc LOC = {-1, 3, 7};

/* Adds a source node (input or param) named x0, x1, ... of type dt[s] with value data (may be
 * NULL: zeros). */
static ir_node *tc_source(tcase *t, ir_opcode op, ir_dtype dt, ir_shape s, const double *data)
{
    if (t->n_vals == (int)(sizeof t->vals / sizeof *t->vals))
        abort();
    char name[16];
    snprintf(name, sizeof name, "x%d", t->n_vals);
    ir_node *n = ir_node_add(t->g, op, 0, NULL, LOC);
    n->name = ir_graph_strdup(t->g, name);
    n->dtype = dt;
    n->shape = s;
    ir_tensor *v = ir_tensor_new(dt, &s);
    if (data)
        memcpy(v->data, data, sizeof(double) * (size_t)ir_shape_numel(&s));
    t->vals[t->n_vals++] = (ir_named_tensor){strdup(name), v};
    return n;
}

static ir_node *tc_in(tcase *t, ir_dtype dt, ir_shape s, const double *data)
{
    return tc_source(t, OP_input, dt, s, data);
}

/* Adds op applied to n_in operands (ir_node *...); attributes are left at their defaults. */
static ir_node *tc_op(tcase *t, ir_opcode op, int n_in, ...)
{
    ir_node *in[8];
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in; i++)
        in[i] = va_arg(ap, ir_node *);
    va_end(ap);
    return ir_node_add(t->g, op, n_in, in, LOC);
}

static void fail_line(const char *label, const char *what)
{
    printf("%s: FAIL: %s\n", label, what);
    n_failed++;
}

/* Infers n, checks its type is dt[s], evaluates the graph in f64 and compares n's value with
 * want; then frees the case. */
static void tc_expect(tcase *t, const char *label, ir_node *n, ir_dtype dt, ir_shape s, const double *want)
{
    n_cases++;
    ir_diag d;
    ir_diag_init(&d);
    char msg[600], a[200], b[200];
    ir_named_tensor *outs = NULL;
    int n_outs = 0;
    if (!ir_infer(n, &d)) {
        fail_line(label, d.n_msg ? d.msg[0].msg : "infer failed");
        goto done;
    }
    if (n->dtype != dt || !ir_shape_eq(&n->shape, &s)) {
        snprintf(msg, sizeof msg, "type %s, expected %s", ir_type_str(n->dtype, &n->shape, a, sizeof a),
                 ir_type_str(dt, &s, b, sizeof b));
        fail_line(label, msg);
        goto done;
    }
    ir_node *out = ir_node_add(t->g, OP_output, 1, &n, LOC);
    out->name = "out";
    ir_infer(out, &d);
    if (!ir_interp_run(t->g, IR_PREC_F64, t->vals, t->n_vals, &outs, &n_outs, &d) || n_outs != 1) {
        fail_line(label, d.n_msg ? d.msg[0].msg : "no output");
        goto done;
    }
    double max_err = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < ir_shape_numel(&s); i++) {
        double got = outs[0].t->data[i], err = fabs(got - want[i]);
        if (got == want[i]) /* also equal infinities */
            err = 0;
        else if (isnan(err))
            err = INFINITY;
        max_err = err > max_err ? err : max_err;
        if (err > 1e-12 * fmax(1.0, fabs(want[i])) && bad < 0)
            bad = i;
    }
    if (bad >= 0) {
        snprintf(msg, sizeof msg, "element %lld is %.17g, expected %.17g (max abs err %g)", (long long)bad,
                 outs[0].t->data[bad], want[bad], max_err);
        fail_line(label, msg);
    } else {
        printf("%s: ok (max abs err %g)\n", label, max_err);
    }
done:
    ir_named_tensors_free(outs, n_outs);
    ir_diag_free(&d);
    tc_end(t);
}

/* Infers n and expects it to fail with exactly `want` as the first message; frees the case. */
static void tc_error(tcase *t, const char *label, ir_node *n, const char *want)
{
    n_cases++;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = ir_infer(n, &d);
    char msg[800];
    if (ok || d.n_msg == 0) {
        fail_line(label, "shape rule accepted an invalid node");
    } else if (strcmp(d.msg[0].msg, want) != 0) {
        snprintf(msg, sizeof msg, "message '%s', expected '%s'", d.msg[0].msg, want);
        fail_line(label, msg);
    } else if (d.msg[0].line != LOC.line || d.msg[0].col != LOC.col) {
        fail_line(label, "error not at the node's location");
    } else {
        printf("%s: ok (%s)\n", label, want);
    }
    ir_diag_free(&d);
    tc_end(t);
}

/* ---- sources ---------------------------------------------------------------------------- */

static void test_sources(void)
{
    tcase t;
    ir_node *n;

    /* input passes its value through */
    tc_begin(&t);
    n = tc_in(&t, DT_F32, shp(2, 1, 3), (double[]){1, -2, 3.5});
    tc_expect(&t, "input", n, DT_F32, shp(2, 1, 3), (double[]){1, -2, 3.5});

    tc_begin(&t);
    n = tc_source(&t, OP_param, DT_F32, shp(1, 2), (double[]){0.25, -4});
    ir_attr_set_str(t.g, n, "init", "normal");
    ir_attr_set_float(n, "scale", 0.02);
    tc_expect(&t, "param", n, DT_F32, shp(1, 2), (double[]){0.25, -4});

    /* const {value = 1.5}: every element 1.5; an i32 const truncates 2.7 to 2 */
    tc_begin(&t);
    n = tc_op(&t, OP_const, 0);
    n->dtype = DT_F32;
    n->shape = shp(2, 2, 2);
    ir_attr_set_float(n, "value", 1.5);
    tc_expect(&t, "const", n, DT_F32, shp(2, 2, 2), (double[]){1.5, 1.5, 1.5, 1.5});

    tc_begin(&t);
    n = tc_op(&t, OP_const, 0);
    n->dtype = DT_I32;
    n->shape = shp(1, 2);
    ir_attr_set_float(n, "value", -2.7);
    tc_expect(&t, "const (i32)", n, DT_I32, shp(1, 2), (double[]){-2, -2});

    /* iota [2, 3] along axis 1: [[0 1 2] [0 1 2]]; along axis -2: [[0 0 0] [1 1 1]] */
    tc_begin(&t);
    n = tc_op(&t, OP_iota, 0);
    n->dtype = DT_I32;
    n->shape = shp(2, 2, 3);
    ir_attr_set_int(n, "axis", 1);
    tc_expect(&t, "iota", n, DT_I32, shp(2, 2, 3), (double[]){0, 1, 2, 0, 1, 2});

    tc_begin(&t);
    n = tc_op(&t, OP_iota, 0);
    n->dtype = DT_F32;
    n->shape = shp(2, 2, 3);
    ir_attr_set_int(n, "axis", -2);
    tc_expect(&t, "iota (axis -2)", n, DT_F32, shp(2, 2, 3), (double[]){0, 0, 0, 1, 1, 1});

    /* output: a rank-0 input straight to the output (tc_expect adds the output node) */
    tc_begin(&t);
    n = tc_in(&t, DT_I64, shp(0), (double[]){42});
    tc_expect(&t, "output", n, DT_I64, shp(0), (double[]){42});
}

/* ---- elementwise ------------------------------------------------------------------------- */

/* A unary op on a float vector. */
static void unary_case(const char *label, ir_opcode op, ir_dtype dt, int len, const double *x, const double *want)
{
    tcase t;
    tc_begin(&t);
    ir_node *n = tc_op(&t, op, 1, tc_in(&t, dt, shp(1, len), x));
    tc_expect(&t, label, n, dt, shp(1, len), want);
}

static void test_unary(void)
{
    const double ln3 = log(3.0);
    unary_case("neg", OP_neg, DT_F32, 3, (double[]){1, -2, 0.5}, (double[]){-1, 2, -0.5});
    unary_case("neg (i32)", OP_neg, DT_I32, 2, (double[]){3, -4}, (double[]){-3, 4});
    /* exp: e^0 = 1, e^1 = e, e^-1 = 1/e */
    unary_case("exp", OP_exp, DT_F32, 3, (double[]){0, 1, -1}, (double[]){1, M_E, 1 / M_E});
    /* log: ln 1 = 0, ln e = 1, ln 0.5 = -ln 2 */
    unary_case("log", OP_log, DT_F32, 3, (double[]){1, M_E, 0.5}, (double[]){0, 1, -M_LN2});
    unary_case("sqrt", OP_sqrt, DT_F32, 3, (double[]){4, 2, 0}, (double[]){2, M_SQRT2, 0});
    unary_case("rsqrt", OP_rsqrt, DT_F32, 2, (double[]){4, 0.25}, (double[]){0.5, 2});
    unary_case("recip", OP_recip, DT_F32, 3, (double[]){2, -0.5, 4}, (double[]){0.5, -2, 0.25});
    unary_case("abs", OP_abs, DT_F32, 3, (double[]){-1.5, 2, 0}, (double[]){1.5, 2, 0});
    unary_case("abs (i32)", OP_abs, DT_I32, 2, (double[]){-3, 5}, (double[]){3, 5});
    /* tanh(x) = (e^2x - 1)/(e^2x + 1): x = ln(3)/2 gives 2/4, x = ln 3 gives 8/10 */
    unary_case("tanh", OP_tanh, DT_F32, 3, (double[]){0, ln3 / 2, -ln3}, (double[]){0, 0.5, -0.8});
    /* sigmoid(ln 3) = 1/(1 + 1/3) = 3/4, sigmoid(-ln 3) = 1/4 */
    unary_case("sigmoid", OP_sigmoid, DT_F32, 3, (double[]){0, ln3, -ln3}, (double[]){0.5, 0.75, 0.25});
    unary_case("relu", OP_relu, DT_F32, 3, (double[]){-1, 0, 2.5}, (double[]){0, 0, 2.5});
    /* silu(x) = x sigmoid(x): 0, 0.75 ln 3, -0.25 ln 3 */
    unary_case("silu", OP_silu, DT_F32, 3, (double[]){0, ln3, -ln3}, (double[]){0, 0.75 * ln3, -0.25 * ln3});

    /* gelu tanh: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); at 1: 0.5(1 + tanh(0.7978845608 *
     * 1.044715)) = 0.8411919906082768; at -2: -(1 + tanh(-0.7978845608 * 2.35772)) = -0.0454023... */
    unary_case("gelu (tanh)", OP_gelu, DT_F32, 3, (double[]){0, 1, -2},
               (double[]){0, 0.8411919906082768, -0.04540230591222494});
    /* gelu erf: x Phi(x); Phi(1) = 0.8413447460685429, -1 * Phi(-1) = -0.15865525393145707 */
    tcase t;
    tc_begin(&t);
    ir_node *n = tc_op(&t, OP_gelu, 1, tc_in(&t, DT_F32, shp(1, 3), (double[]){0, 1, -1}));
    ir_attr_set_str(t.g, n, "approx", "erf");
    tc_expect(&t, "gelu (erf)", n, DT_F32, shp(1, 3), (double[]){0, 0.8413447460685429, -0.15865525393145707});

    /* cast f32 -> i32 truncates toward zero; i32 -> f64 is exact */
    tc_begin(&t);
    n = tc_op(&t, OP_cast, 1, tc_in(&t, DT_F32, shp(1, 4), (double[]){2.7, -2.7, 3, -0.5}));
    ir_attr_set_dtype(n, "to", DT_I32);
    tc_expect(&t, "cast (f32 to i32)", n, DT_I32, shp(1, 4), (double[]){2, -2, 3, 0});
    tc_begin(&t);
    n = tc_op(&t, OP_cast, 1, tc_in(&t, DT_I32, shp(1, 2), (double[]){7, -1}));
    ir_attr_set_dtype(n, "to", DT_F64);
    tc_expect(&t, "cast (i32 to f64)", n, DT_F64, shp(1, 2), (double[]){7, -1});
}

/* A binary op x [xs] op y [ys]. */
static void binary_case(const char *label, ir_opcode op, ir_dtype dt, ir_shape xs, const double *x, ir_shape ys,
                        const double *y, ir_shape out, const double *want)
{
    tcase t;
    tc_begin(&t);
    ir_node *n = tc_op(&t, op, 2, tc_in(&t, dt, xs, x), tc_in(&t, dt, ys, y));
    tc_expect(&t, label, n, dt, out, want);
}

static void test_binary(void)
{
    /* [2, 1] + [3] -> [2, 3]: x = [1, 2] down, y = [10, 20, 30] across */
    binary_case("add (broadcast [2, 1] + [3])", OP_add, DT_F32, shp(2, 2, 1), (double[]){1, 2}, shp(1, 3),
                (double[]){10, 20, 30}, shp(2, 2, 3), (double[]){11, 21, 31, 12, 22, 32});
    binary_case("add (i32)", OP_add, DT_I32, shp(1, 2), (double[]){5, -7}, shp(1, 2), (double[]){2, 3}, shp(1, 2),
                (double[]){7, -4});
    /* [[5 6 7] [8 9 10]] - [[1 2 3]] */
    binary_case("sub (broadcast [2, 3] - [1, 3])", OP_sub, DT_F32, shp(2, 2, 3), (double[]){5, 6, 7, 8, 9, 10},
                shp(2, 1, 3), (double[]){1, 2, 3}, shp(2, 2, 3), (double[]){4, 4, 4, 7, 7, 7});
    /* [2, 2] * scalar 3 */
    binary_case("mul (scalar)", OP_mul, DT_F32, shp(2, 2, 2), (double[]){1, 2, 3, 4}, shp(0), (double[]){3},
                shp(2, 2, 2), (double[]){3, 6, 9, 12});
    /* scalar [] * [2, 1, 2] (x has the lower rank) */
    binary_case("mul (scalar first)", OP_mul, DT_F64, shp(0), (double[]){-1}, shp(3, 2, 1, 2),
                (double[]){1, 2, 3, 4}, shp(3, 2, 1, 2), (double[]){-1, -2, -3, -4});
    binary_case("div", OP_div, DT_F32, shp(1, 2), (double[]){1, 3}, shp(1, 2), (double[]){2, 4}, shp(1, 2),
                (double[]){0.5, 0.75});
    /* integer division truncates toward zero: 7/2 = 3, -7/2 = -3 */
    binary_case("div (i32)", OP_div, DT_I32, shp(1, 2), (double[]){7, -7}, shp(1, 2), (double[]){2, 2}, shp(1, 2),
                (double[]){3, -3});
    /* 2^3 = 8, 9^0.5 = 3, 4^-1 = 0.25 */
    binary_case("pow", OP_pow, DT_F32, shp(1, 3), (double[]){2, 9, 4}, shp(1, 3), (double[]){3, 0.5, -1},
                shp(1, 3), (double[]){8, 3, 0.25});
    binary_case("maximum", OP_maximum, DT_F32, shp(1, 3), (double[]){1, 5, -2}, shp(1, 3), (double[]){3, 2, -2},
                shp(1, 3), (double[]){3, 5, -2});
    /* [2, 1] vs [1, 2]: min(x_i, y_j) over the [2, 2] grid, x = [1, 4], y = [2, 3] */
    binary_case("minimum (broadcast [2, 1] vs [1, 2])", OP_minimum, DT_I32, shp(2, 2, 1), (double[]){1, 4},
                shp(2, 1, 2), (double[]){2, 3}, shp(2, 2, 2), (double[]){1, 1, 2, 3});
}

/* ---- layout ------------------------------------------------------------------------------- */

static void test_layout(void)
{
    tcase t;
    ir_node *n;
    const double x6[] = {1, 2, 3, 4, 5, 6};

    /* reshape [2, 3] -> [3, -1] = [3, 2], same row-major data */
    tc_begin(&t);
    n = tc_op(&t, OP_reshape, 1, tc_in(&t, DT_F32, shp(2, 2, 3), x6));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){3, -1});
    tc_expect(&t, "reshape", n, DT_F32, shp(2, 3, 2), x6);

    /* transpose [[1 2 3] [4 5 6]] with perm [1, 0] -> [[1 4] [2 5] [3 6]] */
    tc_begin(&t);
    n = tc_op(&t, OP_transpose, 1, tc_in(&t, DT_F32, shp(2, 2, 3), x6));
    ir_attr_set_ints(t.g, n, "perm", 2, (int64_t[]){1, 0});
    tc_expect(&t, "transpose", n, DT_F32, shp(2, 3, 2), (double[]){1, 4, 2, 5, 3, 6});

    /* x [2, 1, 3] with x[a, 0, c] = 10a + c; perm [-1, 0, 1] = [2, 0, 1] -> out [3, 2, 1],
     * out[c, a, 0] = x[a, 0, c]: [0 10 1 11 2 12] */
    tc_begin(&t);
    n = tc_op(&t, OP_transpose, 1, tc_in(&t, DT_I32, shp(3, 2, 1, 3), (double[]){0, 1, 2, 10, 11, 12}));
    ir_attr_set_ints(t.g, n, "perm", 3, (int64_t[]){-1, 0, 1});
    tc_expect(&t, "transpose (rank 3, negative perm)", n, DT_I32, shp(3, 3, 2, 1), (double[]){0, 10, 1, 11, 2, 12});

    /* x [2, 5] = 0..9; slice axis 1 [1, 3) -> [[1 2] [6 7]] */
    const double x10[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 2, 5), x10));
    ir_attr_set_int(n, "axis", 1);
    ir_attr_set_int(n, "start", 1);
    ir_attr_set_int(n, "end", 3);
    tc_expect(&t, "slice", n, DT_F32, shp(2, 2, 2), (double[]){1, 2, 6, 7});
    /* axis -1, start -2 (= 3), end 5 -> [[3 4] [8 9]] */
    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 2, 5), x10));
    ir_attr_set_int(n, "axis", -1);
    ir_attr_set_int(n, "start", -2);
    ir_attr_set_int(n, "end", 5);
    tc_expect(&t, "slice (negative axis and start)", n, DT_F32, shp(2, 2, 2), (double[]){3, 4, 8, 9});
    /* axis 0, [0, -1) = [0, 1) -> first row */
    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 2, 5), x10));
    ir_attr_set_int(n, "end", -1);
    tc_expect(&t, "slice (negative end)", n, DT_F32, shp(2, 1, 5), (double[]){0, 1, 2, 3, 4});

    /* concat axis -1: [[1] [2]] ++ [[3 4] [5 6]] -> [[1 3 4] [2 5 6]] */
    tc_begin(&t);
    n = tc_op(&t, OP_concat, 2, tc_in(&t, DT_F32, shp(2, 2, 1), (double[]){1, 2}),
              tc_in(&t, DT_F32, shp(2, 2, 2), (double[]){3, 4, 5, 6}));
    ir_attr_set_int(n, "axis", -1);
    tc_expect(&t, "concat (axis -1)", n, DT_F32, shp(2, 2, 3), (double[]){1, 3, 4, 2, 5, 6});
    /* concat axis 0 of three: [[1 2]] ++ [[3 4]] ++ [[5 6] [7 8]] */
    tc_begin(&t);
    n = tc_op(&t, OP_concat, 3, tc_in(&t, DT_I32, shp(2, 1, 2), (double[]){1, 2}),
              tc_in(&t, DT_I32, shp(2, 1, 2), (double[]){3, 4}),
              tc_in(&t, DT_I32, shp(2, 2, 2), (double[]){5, 6, 7, 8}));
    tc_expect(&t, "concat (three operands)", n, DT_I32, shp(2, 4, 2), (double[]){1, 2, 3, 4, 5, 6, 7, 8});

    /* broadcast [3] -> [2, 3]; [2, 1] -> [2, 3] */
    tc_begin(&t);
    n = tc_op(&t, OP_broadcast, 1, tc_in(&t, DT_F32, shp(1, 3), (double[]){1, 2, 3}));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){2, 3});
    tc_expect(&t, "broadcast ([3] to [2, 3])", n, DT_F32, shp(2, 2, 3), (double[]){1, 2, 3, 1, 2, 3});
    tc_begin(&t);
    n = tc_op(&t, OP_broadcast, 1, tc_in(&t, DT_F32, shp(2, 2, 1), (double[]){1, 2}));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){2, 3});
    tc_expect(&t, "broadcast ([2, 1] to [2, 3])", n, DT_F32, shp(2, 2, 3), (double[]){1, 1, 1, 2, 2, 2});
}

/* ---- reductions ---------------------------------------------------------------------------- */

/* op over x = [[1 2 3] [4 5 6]] with the given axes and keepdim. */
static void reduce_case(const char *label, ir_opcode op, ir_dtype dt, int n_axes, const int64_t *axes, int keep,
                        ir_shape out, const double *want)
{
    tcase t;
    tc_begin(&t);
    ir_node *n = tc_op(&t, op, 1, tc_in(&t, dt, shp(2, 2, 3), (double[]){1, 2, 3, 4, 5, 6}));
    ir_attr_set_ints(t.g, n, "axes", n_axes, axes);
    ir_attr_set_int(n, "keepdim", keep);
    tc_expect(&t, label, n, dt, out, want);
}

static void test_reduce(void)
{
    /* row sums 6, 15; column sums 5 7 9; total 21 */
    reduce_case("sum (axis 1)", OP_sum, DT_F32, 1, (int64_t[]){1}, 0, shp(1, 2), (double[]){6, 15});
    reduce_case("sum (axis 0, keepdim)", OP_sum, DT_F32, 1, (int64_t[]){0}, 1, shp(2, 1, 3), (double[]){5, 7, 9});
    reduce_case("sum (all axes)", OP_sum, DT_I32, 0, NULL, 0, shp(0), (double[]){21});
    reduce_case("sum (axes [-1, 0], keepdim)", OP_sum, DT_F32, 2, (int64_t[]){-1, 0}, 1, shp(2, 1, 1),
                (double[]){21});
    /* row means 2, 5; column means 2.5 3.5 4.5 */
    reduce_case("mean (axis -1)", OP_mean, DT_F32, 1, (int64_t[]){-1}, 0, shp(1, 2), (double[]){2, 5});
    reduce_case("mean (axis 0)", OP_mean, DT_F64, 1, (int64_t[]){0}, 0, shp(1, 3), (double[]){2.5, 3.5, 4.5});
    reduce_case("mean (all)", OP_mean, DT_F32, 0, NULL, 0, shp(0), (double[]){3.5});
    reduce_case("max (axis 0)", OP_max, DT_F32, 1, (int64_t[]){0}, 0, shp(1, 3), (double[]){4, 5, 6});
    reduce_case("max (axis 1, keepdim)", OP_max, DT_I32, 1, (int64_t[]){1}, 1, shp(2, 2, 1), (double[]){3, 6});

    /* max of negative numbers (initial value must be -inf, not 0) */
    tcase t;
    tc_begin(&t);
    ir_node *n = tc_op(&t, OP_max, 1, tc_in(&t, DT_F32, shp(1, 3), (double[]){-5, -2, -9}));
    tc_expect(&t, "max (negative values)", n, DT_F32, shp(0), (double[]){-2});
}

/* ---- row ops --------------------------------------------------------------------------------- */

static void test_rows(void)
{
    tcase t;
    ir_node *n;
    const double l2 = M_LN2, l5 = log(5.0);

    /* softmax: row [0, ln 2, ln 5] -> e^x = [1 2 5] / 8; row [1000, 1000, 1000 + ln 2] ->
     * [1 1 2] / 4 (needs the max subtracted: e^1000 overflows) */
    tc_begin(&t);
    n = tc_op(&t, OP_softmax, 1, tc_in(&t, DT_F32, shp(2, 2, 3), (double[]){0, l2, l5, 1000, 1000, 1000 + l2}));
    tc_expect(&t, "softmax", n, DT_F32, shp(2, 2, 3), (double[]){0.125, 0.25, 0.625, 0.25, 0.25, 0.5});

    /* layernorm eps 0.75: row [1 2 3 4]: mean 2.5, biased var (2.25+0.25+0.25+2.25)/4 = 1.25,
     * den = sqrt(1.25 + 0.75) = sqrt 2; normalized [-1.5 -0.5 0.5 1.5]/sqrt 2 = s*[-1.5 -0.5 0.5 1.5]
     * with s = sqrt(1/2); times w [1 2 1 2] plus b [0 0 1 -1]: [-1.5s, -s, 0.5s + 1, 3s - 1].
     * Row [5 5 5 5]: x - mean = 0, so the output is b. */
    const double s = sqrt(0.5);
    tc_begin(&t);
    n = tc_op(&t, OP_layernorm, 3, tc_in(&t, DT_F32, shp(2, 2, 4), (double[]){1, 2, 3, 4, 5, 5, 5, 5}),
              tc_in(&t, DT_F32, shp(1, 4), (double[]){1, 2, 1, 2}), tc_in(&t, DT_F32, shp(1, 4), (double[]){0, 0, 1, -1}));
    ir_attr_set_float(n, "eps", 0.75);
    tc_expect(&t, "layernorm", n, DT_F32, shp(2, 2, 4), (double[]){-1.5 * s, -s, 0.5 * s + 1, 3 * s - 1, 0, 0, 1, -1});

    /* layernorm with the default eps 1e-5 on [-1, 1]: mean 0, var 1 -> x / sqrt(1 + 1e-5) */
    tc_begin(&t);
    n = tc_op(&t, OP_layernorm, 3, tc_in(&t, DT_F64, shp(1, 2), (double[]){-1, 1}),
              tc_in(&t, DT_F64, shp(1, 2), (double[]){1, 1}), tc_in(&t, DT_F64, shp(1, 2), (double[]){0, 0}));
    tc_expect(&t, "layernorm (default eps)", n, DT_F64, shp(1, 2),
              (double[]){-1 / sqrt(1 + 1e-5), 1 / sqrt(1 + 1e-5)});

    /* rmsnorm eps 11: row [1 7]: mean(x^2) = 25, den = sqrt(36) = 6 -> [1/6 7/6] * w [6 -12] = [1 -14];
     * row [5 5]: 25 + 11 = 36 -> [5/6 5/6] * w = [5 -10] */
    tc_begin(&t);
    n = tc_op(&t, OP_rmsnorm, 2, tc_in(&t, DT_F32, shp(2, 2, 2), (double[]){1, 7, 5, 5}),
              tc_in(&t, DT_F32, shp(1, 2), (double[]){6, -12}));
    ir_attr_set_float(n, "eps", 11);
    tc_expect(&t, "rmsnorm", n, DT_F32, shp(2, 2, 2), (double[]){1, -14, 5, -10});

    /* cross_entropy, V = 3: row 0 logits [0 0 0], target 1: -log(1/3) = ln 3; row 1 logits
     * [0, ln 2, ln 5] (softmax [1 2 5]/8), target 2: -log(5/8) = ln 1.6; row 2 target -1 and
     * row 3 target -100: ignored. Mean over 2 rows: (ln 3 + ln 1.6)/2 = ln(4.8)/2 */
    tc_begin(&t);
    n = tc_op(&t, OP_cross_entropy, 2,
              tc_in(&t, DT_F32, shp(2, 4, 3), (double[]){0, 0, 0, 0, l2, l5, 100, -3, 7, 1, 2, 3}),
              tc_in(&t, DT_I32, shp(1, 4), (double[]){1, 2, -1, -100}));
    tc_expect(&t, "cross_entropy (ignored targets)", n, DT_F32, shp(0), (double[]){0.5 * log(4.8)});

    /* rank-3 logits [1, 2, 2], targets [1, 2]: rows [ln 3, 0] target 0 -> -log(3/4);
     * [0, 1000] target 1 -> -log(1/(1 + e^-1000)) = 0 (to double precision); mean log(4/3)/2 */
    tc_begin(&t);
    n = tc_op(&t, OP_cross_entropy, 2, tc_in(&t, DT_F64, shp(3, 1, 2, 2), (double[]){log(3.0), 0, 0, 1000}),
              tc_in(&t, DT_I64, shp(2, 1, 2), (double[]){0, 1}));
    tc_expect(&t, "cross_entropy (rank 3)", n, DT_F64, shp(0), (double[]){0.5 * log(4.0 / 3.0)});

    /* all targets ignored: 0 */
    tc_begin(&t);
    n = tc_op(&t, OP_cross_entropy, 2, tc_in(&t, DT_F32, shp(2, 2, 2), (double[]){1, 2, 3, 4}),
              tc_in(&t, DT_I32, shp(1, 2), (double[]){-1, -1}));
    tc_expect(&t, "cross_entropy (all ignored)", n, DT_F32, shp(0), (double[]){0});
}

/* ---- matmul ----------------------------------------------------------------------------------- */

static void test_matmul(void)
{
    tcase t;
    ir_node *n;
    /* [[1 2 3] [4 5 6]] x [[7 8] [9 10] [11 12]] = [[58 64] [139 154]] */
    const double a[] = {1, 2, 3, 4, 5, 6}, b[] = {7, 8, 9, 10, 11, 12}, c[] = {58, 64, 139, 154};
    const double at[] = {1, 4, 2, 5, 3, 6}, bt[] = {7, 9, 11, 8, 10, 12}; /* transposes */

    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 2, 3), a), tc_in(&t, DT_F32, shp(2, 3, 2), b));
    tc_expect(&t, "matmul", n, DT_F32, shp(2, 2, 2), c);

    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 2, 3), a), tc_in(&t, DT_F32, shp(2, 2, 3), bt));
    ir_attr_set_int(n, "transpose_b", 1);
    tc_expect(&t, "matmul (transpose_b)", n, DT_F32, shp(2, 2, 2), c);

    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 3, 2), at), tc_in(&t, DT_F32, shp(2, 3, 2), b));
    ir_attr_set_int(n, "transpose_a", 1);
    tc_expect(&t, "matmul (transpose_a)", n, DT_F32, shp(2, 2, 2), c);

    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 3, 2), at), tc_in(&t, DT_F32, shp(2, 2, 3), bt));
    ir_attr_set_int(n, "transpose_a", 1);
    ir_attr_set_int(n, "transpose_b", 1);
    tc_expect(&t, "matmul (both transposed)", n, DT_F32, shp(2, 2, 2), c);

    /* a [2, 1, 2] (batches [1 2] and [3 4]) x b [2, 1] = [5 6]: [17] and [39] */
    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(3, 2, 1, 2), (double[]){1, 2, 3, 4}),
              tc_in(&t, DT_F32, shp(2, 2, 1), (double[]){5, 6}));
    tc_expect(&t, "matmul (rank 3 x rank 2)", n, DT_F32, shp(3, 2, 1, 1), (double[]){17, 39});

    /* batch dims [2, 1] and [3] broadcast to [2, 3]; 1x1 matrices a = [2 3], b = [5 7 11]:
     * out[i, j] = a_i b_j */
    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F64, shp(4, 2, 1, 1, 1), (double[]){2, 3}),
              tc_in(&t, DT_F64, shp(3, 3, 1, 1), (double[]){5, 7, 11}));
    tc_expect(&t, "matmul (batch broadcast [2, 1] x [3])", n, DT_F64, shp(4, 2, 3, 1, 1),
              (double[]){10, 14, 22, 15, 21, 33});
}

/* ---- neural-network ops ------------------------------------------------------------------------ */

static void test_nn(void)
{
    tcase t;
    ir_node *n;

    /* table rows [0 1] [10 11] [20 21]; ids [[2 0] [1 1]] */
    tc_begin(&t);
    n = tc_op(&t, OP_embedding, 2, tc_in(&t, DT_F32, shp(2, 3, 2), (double[]){0, 1, 10, 11, 20, 21}),
              tc_in(&t, DT_I32, shp(2, 2, 2), (double[]){2, 0, 1, 1}));
    tc_expect(&t, "embedding", n, DT_F32, shp(3, 2, 2, 2), (double[]){20, 21, 0, 1, 10, 11, 10, 11});

    /* rope, D = 4, theta 10000: frequencies f0 = 1, f1 = 10000^(-2/4) = 0.01.
     * Position 0 leaves [1 2 3 4] unchanged. Position 3 on [1 0 0 1]: pair (0, 2) turns by 3:
     * out0 = 1 cos 3 - 0 sin 3, out2 = 0 cos 3 + 1 sin 3; pair (1, 3) turns by 0.03:
     * out1 = 0 cos .03 - 1 sin .03, out3 = 1 cos .03 + 0 sin .03. A second leading row (head)
     * holds twice the first, so it gives twice the result. */
    const double c3 = cos(3.0), s3 = sin(3.0), cs = cos(0.03), ss = sin(0.03);
    tc_begin(&t);
    n = tc_op(&t, OP_rope, 2, tc_in(&t, DT_F32, shp(3, 2, 2, 4), (double[]){1, 2, 3, 4, 1, 0, 0, 1, 2, 4, 6, 8, 2, 0, 0, 2}),
              tc_in(&t, DT_I32, shp(1, 2), (double[]){0, 3}));
    tc_expect(&t, "rope (position 3)", n, DT_F32, shp(3, 2, 2, 4),
              (double[]){1, 2, 3, 4, c3, -ss, s3, cs, 2, 4, 6, 8, 2 * c3, -2 * ss, 2 * s3, 2 * cs});

    /* rope with theta 16, D = 4: f1 = 16^(-1/2) = 1/4; position 2 on [0 1 0 0] (i = 1 only,
     * angle 0.5): out1 = cos 0.5, out3 = sin 0.5; pair (0, 2) is zero */
    tc_begin(&t);
    n = tc_op(&t, OP_rope, 2, tc_in(&t, DT_F64, shp(2, 1, 4), (double[]){0, 1, 0, 0}),
              tc_in(&t, DT_I64, shp(1, 1), (double[]){2}));
    ir_attr_set_float(n, "theta", 16);
    tc_expect(&t, "rope (theta 16)", n, DT_F64, shp(2, 1, 4), (double[]){0, cos(0.5), 0, sin(0.5)});

    const double ln3 = log(3.0);
    /* attention B=H=T=1, S=2, D=E=1, default scale 1/sqrt(1): scores [1*0, 1*ln 3] ->
     * softmax [1/4 3/4]; v [4 8] -> 1 + 6 = 7 */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 1, 1, 1), (double[]){1}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 2, 1), (double[]){0, ln3}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 2, 1), (double[]){4, 8}));
    tc_expect(&t, "attention", n, DT_F32, shp(4, 1, 1, 1, 1), (double[]){7});

    /* GQA: H = 4 query heads on G = 2 kv heads: heads 0, 1 use kv 0 (k [0 1], v [4 8]),
     * heads 2, 3 use kv 1 (k [1 0], v [100 200]). q per head [0, ln 3, 0, ln 3]:
     * h0 uniform -> 6; h1 scores [0 ln 3] -> 4/4 + 24/4 = 7; h2 uniform -> 150;
     * h3 scores [ln 3, 0] -> 300/4 + 200/4 = 125 */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 4, 1, 1), (double[]){0, ln3, 0, ln3}),
              tc_in(&t, DT_F32, shp(4, 1, 2, 2, 1), (double[]){0, 1, 1, 0}),
              tc_in(&t, DT_F32, shp(4, 1, 2, 2, 1), (double[]){4, 8, 100, 200}));
    tc_expect(&t, "attention (GQA 4 heads on 2)", n, DT_F32, shp(4, 1, 4, 1, 1), (double[]){6, 7, 150, 125});

    /* causal with T = 2 < S = 3 (keys j <= i + 1), q = 0 so allowed keys weigh equally:
     * query 0 sees keys 0, 1: (3 + 6)/2 = 4.5; query 1 sees all: (3 + 6 + 12)/3 = 7.
     * Batch 2 repeats with v doubled: 9, 14. */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 2, 1, 2, 1), (double[]){0, 0, 0, 0}),
              tc_in(&t, DT_F32, shp(4, 2, 1, 3, 1), (double[]){1, 2, 3, 1, 2, 3}),
              tc_in(&t, DT_F32, shp(4, 2, 1, 3, 1), (double[]){3, 6, 12, 6, 12, 24}));
    ir_attr_set_int(n, "causal", 1);
    tc_expect(&t, "attention (causal, S > T)", n, DT_F32, shp(4, 2, 1, 2, 1), (double[]){4.5, 7, 9, 14});

    /* additive mask [T, S] = [3, 2] broadcast to [1, 1, 3, 2], q = 0, v [5 9]:
     * row 0 [0, -inf] -> v0 = 5; row 1 [ln 3, 0] -> 15/4 + 9/4 = 6; row 2 all -inf -> 0 */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 4, tc_in(&t, DT_F32, shp(4, 1, 1, 3, 1), (double[]){0, 0, 0}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 2, 1), (double[]){1, 2}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 2, 1), (double[]){5, 9}),
              tc_in(&t, DT_F32, shp(2, 3, 2), (double[]){0, -INFINITY, ln3, 0, -INFINITY, -INFINITY}));
    tc_expect(&t, "attention (mask, fully masked row)", n, DT_F32, shp(4, 1, 1, 3, 1), (double[]){5, 6, 0});

    /* scale 0.5, D = 2, E = 3: q [2 0], k [[0 0] [ln 3, 5]]: dots [0, 2 ln 3] * 0.5 = [0, ln 3]
     * -> [1/4 3/4]; v [[4 0 8] [8 4 0]] -> [1 + 6, 0 + 3, 2 + 0] = [7 3 2] */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F64, shp(4, 1, 1, 1, 2), (double[]){2, 0}),
              tc_in(&t, DT_F64, shp(4, 1, 1, 2, 2), (double[]){0, 0, ln3, 5}),
              tc_in(&t, DT_F64, shp(4, 1, 1, 2, 3), (double[]){4, 0, 8, 8, 4, 0}));
    ir_attr_set_float(n, "scale", 0.5);
    tc_expect(&t, "attention (scale, E != D)", n, DT_F64, shp(4, 1, 1, 1, 3), (double[]){7, 3, 2});

    /* causal with T = 2 > S = 1 (keys j <= i - 1): query 0 has no allowed key -> 0;
     * query 1 sees key 0 -> v0 = 5 */
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 1, 2, 1), (double[]){1, 1}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 1, 1), (double[]){1}),
              tc_in(&t, DT_F32, shp(4, 1, 1, 1, 1), (double[]){5}));
    ir_attr_set_int(n, "causal", 1);
    tc_expect(&t, "attention (causal, T > S, empty row)", n, DT_F32, shp(4, 1, 1, 2, 1), (double[]){0, 5});
}

/* ---- shape-rule errors --------------------------------------------------------------------------- */

static void test_errors(void)
{
    tcase t;
    ir_node *n, *x;

    tc_begin(&t);
    n = tc_op(&t, OP_add, 2, tc_in(&t, DT_F32, shp(2, 2, 8), NULL), tc_in(&t, DT_F32, shp(2, 3, 8), NULL));
    tc_error(&t, "error add broadcast", n, "add: shapes [2, 8] and [3, 8] do not broadcast");
    tc_begin(&t);
    n = tc_op(&t, OP_add, 2, tc_in(&t, DT_F32, shp(1, 2), NULL), tc_in(&t, DT_I32, shp(1, 2), NULL));
    tc_error(&t, "error add dtype", n, "add: dtype mismatch: f32 and i32");
    tc_begin(&t);
    n = tc_op(&t, OP_pow, 2, tc_in(&t, DT_I32, shp(1, 2), NULL), tc_in(&t, DT_I32, shp(1, 2), NULL));
    tc_error(&t, "error pow ints", n, "pow: expects a float tensor, got i32");
    tc_begin(&t);
    n = tc_op(&t, OP_exp, 1, tc_in(&t, DT_I32, shp(1, 2), NULL));
    tc_error(&t, "error exp ints", n, "exp: expects a float tensor, got i32");
    tc_begin(&t);
    n = tc_op(&t, OP_softmax, 1, tc_in(&t, DT_F32, shp(0), NULL));
    tc_error(&t, "error softmax scalar", n, "softmax: operand needs rank >= 1, got []");

    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 2, 3), NULL), tc_in(&t, DT_F32, shp(2, 4, 5), NULL));
    tc_error(&t, "error matmul inner", n, "matmul: inner dimensions differ: [2, 3] x [4, 5] (3 vs 4)");
    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(1, 3), NULL), tc_in(&t, DT_F32, shp(2, 3, 4), NULL));
    tc_error(&t, "error matmul rank", n, "matmul: operands need rank >= 2, got [3]");
    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(3, 2, 3, 4), NULL), tc_in(&t, DT_F32, shp(3, 5, 4, 6), NULL));
    tc_error(&t, "error matmul batch", n, "matmul: batch dimensions of [2, 3, 4] and [5, 4, 6] do not broadcast");
    tc_begin(&t);
    n = tc_op(&t, OP_matmul, 2, tc_in(&t, DT_F32, shp(2, 2, 3), NULL), tc_in(&t, DT_F32, shp(2, 3, 4), NULL));
    ir_attr_set_int(n, "transpose_a", 1); /* a is [K, M] = [2, 3] */
    tc_error(&t, "error matmul transposed", n, "matmul: inner dimensions differ: [2, 3] x [3, 4] (2 vs 3)");

    tc_begin(&t);
    n = tc_op(&t, OP_reshape, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){4, 2});
    tc_error(&t, "error reshape count", n, "reshape: cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)");
    tc_begin(&t);
    n = tc_op(&t, OP_reshape, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){4, -1});
    tc_error(&t, "error reshape -1", n, "reshape: cannot reshape [2, 3] (6 elements) to [4, -1]");
    tc_begin(&t);
    n = tc_op(&t, OP_reshape, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){-1, -1});
    tc_error(&t, "error reshape two -1", n, "reshape: more than one -1 in [-1, -1]");

    tc_begin(&t);
    n = tc_op(&t, OP_transpose, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "perm", 3, (int64_t[]){1, 0, 0});
    tc_error(&t, "error transpose", n, "transpose: [1, 0, 0] is not a permutation of 2 axes");
    tc_begin(&t);
    n = tc_op(&t, OP_transpose, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "perm", 2, (int64_t[]){0, -2});
    tc_error(&t, "error transpose repeated", n, "transpose: [0, -2] is not a permutation of 2 axes");

    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 4, 5), NULL));
    ir_attr_set_int(n, "axis", 1);
    ir_attr_set_int(n, "start", 2);
    ir_attr_set_int(n, "end", 7);
    tc_error(&t, "error slice range", n, "slice: [2, 7) is out of range for axis 1 of [4, 5]");
    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 4, 5), NULL));
    ir_attr_set_int(n, "axis", 3);
    tc_error(&t, "error slice axis", n, "slice: axis 3 is out of range for [4, 5]");
    tc_begin(&t);
    n = tc_op(&t, OP_slice, 1, tc_in(&t, DT_F32, shp(2, 4, 5), NULL));
    ir_attr_set_int(n, "axis", -3);
    tc_error(&t, "error slice negative axis", n, "slice: axis -3 is out of range for [4, 5]");

    tc_begin(&t);
    n = tc_op(&t, OP_concat, 2, tc_in(&t, DT_F32, shp(2, 2, 3), NULL), tc_in(&t, DT_F32, shp(2, 4, 5), NULL));
    ir_attr_set_int(n, "axis", 1);
    tc_error(&t, "error concat dims", n, "concat: shapes [2, 3] and [4, 5] differ outside axis 1");
    tc_begin(&t);
    n = tc_op(&t, OP_concat, 2, tc_in(&t, DT_F32, shp(2, 2, 3), NULL), tc_in(&t, DT_F16, shp(2, 2, 3), NULL));
    tc_error(&t, "error concat dtype", n, "concat: dtype mismatch: f32 and f16");
    tc_begin(&t);
    n = tc_op(&t, OP_concat, 2, tc_in(&t, DT_F32, shp(2, 2, 3), NULL), tc_in(&t, DT_F32, shp(1, 3), NULL));
    tc_error(&t, "error concat rank", n, "concat: shapes [2, 3] and [3] differ in rank");

    tc_begin(&t);
    n = tc_op(&t, OP_broadcast, 1, tc_in(&t, DT_F32, shp(2, 3, 4), NULL));
    ir_attr_set_ints(t.g, n, "shape", 2, (int64_t[]){2, 5});
    tc_error(&t, "error broadcast", n, "broadcast: cannot broadcast [3, 4] to [2, 5]");

    tc_begin(&t);
    n = tc_op(&t, OP_sum, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "axes", 2, (int64_t[]){1, -1});
    tc_error(&t, "error sum repeated axis", n, "sum: axis 1 is repeated in [1, -1]");
    tc_begin(&t);
    n = tc_op(&t, OP_max, 1, tc_in(&t, DT_F32, shp(2, 2, 3), NULL));
    ir_attr_set_ints(t.g, n, "axes", 1, (int64_t[]){2});
    tc_error(&t, "error max axis", n, "max: axis 2 is out of range for [2, 3]");
    tc_begin(&t);
    n = tc_op(&t, OP_mean, 1, tc_in(&t, DT_I32, shp(1, 3), NULL));
    tc_error(&t, "error mean ints", n, "mean: expects a float tensor, got i32");

    tc_begin(&t);
    n = tc_op(&t, OP_layernorm, 3, tc_in(&t, DT_F32, shp(2, 2, 8), NULL), tc_in(&t, DT_F32, shp(1, 7), NULL),
              tc_in(&t, DT_F32, shp(1, 8), NULL));
    tc_error(&t, "error layernorm weight", n, "layernorm: weight shape [7] does not match the last axis of [2, 8]");
    tc_begin(&t);
    n = tc_op(&t, OP_layernorm, 3, tc_in(&t, DT_F32, shp(2, 2, 8), NULL), tc_in(&t, DT_F32, shp(1, 8), NULL),
              tc_in(&t, DT_F32, shp(2, 1, 8), NULL));
    tc_error(&t, "error layernorm bias", n, "layernorm: bias shape [1, 8] does not match the last axis of [2, 8]");
    tc_begin(&t);
    n = tc_op(&t, OP_rmsnorm, 2, tc_in(&t, DT_I32, shp(2, 2, 8), NULL), tc_in(&t, DT_I32, shp(1, 8), NULL));
    tc_error(&t, "error rmsnorm ints", n, "rmsnorm: expects a float tensor, got i32");
    tc_begin(&t);
    n = tc_op(&t, OP_rmsnorm, 2, tc_in(&t, DT_F32, shp(2, 2, 8), NULL), tc_in(&t, DT_BF16, shp(1, 8), NULL));
    tc_error(&t, "error rmsnorm dtype", n, "rmsnorm: dtype mismatch: f32 and bf16");

    tc_begin(&t);
    n = tc_op(&t, OP_cross_entropy, 2, tc_in(&t, DT_F32, shp(3, 2, 4, 10), NULL),
              tc_in(&t, DT_I32, shp(2, 2, 3), NULL));
    tc_error(&t, "error cross_entropy shapes", n,
             "cross_entropy: targets [2, 3] do not match logits [2, 4, 10] without the last axis");
    tc_begin(&t);
    n = tc_op(&t, OP_cross_entropy, 2, tc_in(&t, DT_F32, shp(2, 2, 10), NULL), tc_in(&t, DT_F32, shp(1, 2), NULL));
    tc_error(&t, "error cross_entropy targets dtype", n, "cross_entropy: targets must be integers, got f32");

    /* dequantize, bits 8, axis 0 (groups of 2 rows): codes [[1 -2] [3 4] [-127 0] [5 6]],
     * scales [[0.5 2] [0.25 -1]]: rows 0-1 times (0.5, 2), rows 2-3 times (0.25, -1) */
    tc_begin(&t);
    n = tc_op(&t, OP_dequantize, 2, tc_in(&t, DT_I8, shp(2, 4, 2), (double[]){1, -2, 3, 4, -127, 0, 5, 6}),
              tc_in(&t, DT_F32, shp(2, 2, 2), (double[]){0.5, 2, 0.25, -1}));
    tc_expect(&t, "dequantize int8 axis 0", n, DT_F32, shp(2, 4, 2), (double[]){0.5, -4, 1.5, 8, -31.75, 0, 1.25, -6});
    /* bits 4, axis 1 (groups of 2 columns): byte 0x9f = codes 15 (low, column 0) and 9 (high,
     * column 1): values 7, 1; byte 0x08: 0, -8; byte 0x31: -7, -5; byte 0x00: -8, -8.
     * Scales per row and column pair: [[2 3] [-1 0.5]] */
    tc_begin(&t);
    n = tc_op(&t, OP_dequantize, 2, tc_in(&t, DT_U8, shp(2, 2, 2), (double[]){0x9f, 0x08, 0x31, 0x00}),
              tc_in(&t, DT_F16, shp(2, 2, 2), (double[]){2, 3, -1, 0.5}));
    ir_attr_set_int(n, "bits", 4);
    ir_attr_set_int(n, "axis", 1);
    tc_expect(&t, "dequantize int4 axis 1", n, DT_F32, shp(2, 2, 4), (double[]){14, 2, 0, -24, 7, 5, -4, -4});
    tc_begin(&t);
    n = tc_op(&t, OP_dequantize, 2, tc_in(&t, DT_U8, shp(2, 4, 2), NULL), tc_in(&t, DT_F32, shp(2, 1, 2), NULL));
    tc_error(&t, "error dequantize codes", n, "dequantize: codes of 8 bits must be i8, got u8");
    tc_begin(&t);
    n = tc_op(&t, OP_dequantize, 2, tc_in(&t, DT_I8, shp(2, 6, 2), NULL), tc_in(&t, DT_F32, shp(2, 4, 2), NULL));
    tc_error(&t, "error dequantize groups", n, "dequantize: scales [4, 2] do not fit weights [6, 2] quantized along axis 0");

    tc_begin(&t);
    n = tc_op(&t, OP_embedding, 2, tc_in(&t, DT_F32, shp(2, 10, 4), NULL), tc_in(&t, DT_F32, shp(1, 3), NULL));
    tc_error(&t, "error embedding ids", n, "embedding: ids must be integers, got f32");
    tc_begin(&t);
    n = tc_op(&t, OP_embedding, 2, tc_in(&t, DT_F32, shp(1, 10), NULL), tc_in(&t, DT_I32, shp(1, 3), NULL));
    tc_error(&t, "error embedding table", n, "embedding: table must have rank 2 [V, C], got [10]");

    tc_begin(&t);
    n = tc_op(&t, OP_rope, 2, tc_in(&t, DT_F32, shp(3, 1, 4, 7), NULL), tc_in(&t, DT_I32, shp(1, 4), NULL));
    tc_error(&t, "error rope odd", n, "rope: last axis of [1, 4, 7] is odd");
    tc_begin(&t);
    n = tc_op(&t, OP_rope, 2, tc_in(&t, DT_F32, shp(4, 1, 2, 4, 8), NULL), tc_in(&t, DT_I32, shp(1, 5), NULL));
    tc_error(&t, "error rope positions", n, "rope: positions [5] do not match axis -2 of [1, 2, 4, 8]");

    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 12, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 5, 4, 8), NULL), tc_in(&t, DT_F32, shp(4, 1, 5, 4, 8), NULL));
    tc_error(&t, "error attention heads", n,
             "attention: 12 query heads are not a multiple of 5 key/value heads (q [1, 12, 4, 8], k [1, 5, 4, 8])");
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 4, tc_in(&t, DT_F32, shp(4, 1, 2, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL), tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL),
              tc_in(&t, DT_F32, shp(2, 3, 5), NULL));
    tc_error(&t, "error attention mask", n, "attention: mask [3, 5] does not broadcast to [1, 2, 4, 6]");
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 2, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 2, 6, 4), NULL), tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL));
    tc_error(&t, "error attention head dim", n,
             "attention: head dimensions differ: q [1, 2, 4, 8] and k [1, 2, 6, 4] (8 vs 4)");
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(4, 1, 2, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL), tc_in(&t, DT_F32, shp(4, 1, 2, 5, 8), NULL));
    tc_error(&t, "error attention k/v", n, "attention: k [1, 2, 6, 8] and v [1, 2, 5, 8] differ in [B, G, S]");
    tc_begin(&t);
    n = tc_op(&t, OP_attention, 3, tc_in(&t, DT_F32, shp(3, 2, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL), tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL));
    tc_error(&t, "error attention rank", n, "attention: q must have rank 4 [B, H, T, D], got [2, 4, 8]");

    tc_begin(&t);
    n = tc_op(&t, OP_attention, 2, tc_in(&t, DT_F32, shp(4, 1, 2, 4, 8), NULL),
              tc_in(&t, DT_F32, shp(4, 1, 2, 6, 8), NULL));
    tc_error(&t, "error attention operand count", n, "attention: expects 3 to 4 operands, got 2");
    tc_begin(&t);
    n = tc_op(&t, OP_add, 1, tc_in(&t, DT_F32, shp(1, 2), NULL));
    tc_error(&t, "error add operand count", n, "add: expects 2 operands, got 1");

    tc_begin(&t);
    n = tc_op(&t, OP_cast, 1, tc_in(&t, DT_F32, shp(1, 2), NULL));
    tc_error(&t, "error cast void", n, "cast: cannot cast f32 to void");
    tc_begin(&t);
    n = tc_op(&t, OP_gelu, 1, tc_in(&t, DT_F32, shp(1, 2), NULL));
    ir_attr_set_str(t.g, n, "approx", "foo");
    tc_error(&t, "error gelu approx", n, "gelu: approx must be tanh or erf, got 'foo'");

    tc_begin(&t);
    x = tc_source(&t, OP_param, DT_F32, shp(1, 2), NULL);
    ir_attr_set_str(t.g, x, "init", "foo");
    tc_error(&t, "error param init", x, "param: unknown initializer 'foo'");
    tc_begin(&t);
    x = tc_source(&t, OP_param, DT_I32, shp(1, 2), NULL);
    tc_error(&t, "error param ints", x, "param: expects a float tensor, got i32");
    tc_begin(&t);
    x = tc_in(&t, DT_F32, shp(2, 2, 1), NULL);
    x->shape.dim[1] = -1;
    tc_error(&t, "error input negative dim", x, "input: negative dimension in [2, -1]");
    tc_begin(&t);
    x = tc_in(&t, DT_F32, shp(0), NULL);
    x->dtype = DT_VOID;
    tc_error(&t, "error input void", x, "input: dtype void is not a tensor type");
    tc_begin(&t);
    x = tc_op(&t, OP_iota, 0);
    x->dtype = DT_I32;
    x->shape = shp(2, 4, 5);
    ir_attr_set_int(x, "axis", 2);
    tc_error(&t, "error iota axis", x, "iota: axis 2 is out of range for [4, 5]");
}

/* Shape rules that accept: results of the trickier rules, without evaluation. */
static void test_infer_ok(void)
{
    tcase t;
    ir_diag d;
    ir_diag_init(&d);
    int failed = n_failed;
    tc_begin(&t);
    /* output nodes have a void rank-0 result */
    ir_node *x = tc_in(&t, DT_F32, shp(2, 2, 3), NULL);
    ir_node *o = tc_op(&t, OP_output, 1, x);
    o->name = "y";
    n_cases++;
    if (!ir_infer(o, &d) || o->dtype != DT_VOID || o->shape.rank != 0)
        fail_line("infer output", "not void");
    /* sum over all axes without keepdim is a scalar; with keepdim [1, 1] */
    ir_node *s = tc_op(&t, OP_sum, 1, x);
    ir_attr_set_int(s, "keepdim", 1);
    n_cases++;
    if (!ir_infer(s, &d) || !ir_shape_eq(&s->shape, &(ir_shape){2, {1, 1}}))
        fail_line("infer sum keepdim", "wrong shape");
    /* inputs and params validate without changing the declared type */
    n_cases++;
    if (!ir_infer(x, &d) || x->dtype != DT_F32 || !ir_shape_eq(&x->shape, &(ir_shape){2, {2, 3}}))
        fail_line("infer input", "declared type changed");
    /* attention with a [B, 1, 1, S] padding mask and E != D */
    ir_node *q = tc_in(&t, DT_BF16, shp(4, 2, 8, 5, 16), NULL), *k = tc_in(&t, DT_BF16, shp(4, 2, 2, 7, 16), NULL);
    ir_node *v = tc_in(&t, DT_BF16, shp(4, 2, 2, 7, 32), NULL), *m = tc_in(&t, DT_BF16, shp(4, 2, 1, 1, 7), NULL);
    ir_node *a = tc_op(&t, OP_attention, 4, q, k, v, m);
    n_cases++;
    if (!ir_infer(a, &d) || a->dtype != DT_BF16 || !ir_shape_eq(&a->shape, &(ir_shape){4, {2, 8, 5, 32}}))
        fail_line("infer attention", "wrong type");
    if (n_failed == failed)
        printf("infer (output, keepdim, sources, attention): ok\n");
    ir_diag_free(&d);
    tc_end(&t);
}

/* ---- cost model ---------------------------------------------------------------------------------- */

static void cost_case(const char *label, const ir_node *n, double want)
{
    n_cases++;
    double got = ir_ops[n->op].cost(n);
    if (got != want) {
        char msg[120];
        snprintf(msg, sizeof msg, "%g FLOPs, expected %g", got, want);
        fail_line(label, msg);
    } else {
        printf("%s: ok (%g FLOPs)\n", label, got);
    }
}

static void test_cost(void)
{
    tcase t;
    ir_diag d;
    ir_diag_init(&d);
    tc_begin(&t);
    ir_node *a = tc_in(&t, DT_F32, shp(3, 4, 2, 3), NULL), *b = tc_in(&t, DT_F32, shp(2, 3, 5), NULL);
    ir_node *mm = tc_op(&t, OP_matmul, 2, a, b);
    ir_node *bt = tc_in(&t, DT_F32, shp(2, 5, 3), NULL);
    ir_node *mmt = tc_op(&t, OP_matmul, 2, a, bt);
    ir_attr_set_int(mmt, "transpose_b", 1);
    ir_node *add = tc_op(&t, OP_add, 2, a, tc_in(&t, DT_F32, shp(1, 3), NULL));
    ir_node *sum = tc_op(&t, OP_sum, 1, a);
    ir_node *sm = tc_op(&t, OP_softmax, 1, a);
    ir_node *rows = tc_in(&t, DT_F32, shp(1, 3), NULL);
    ir_node *ln = tc_op(&t, OP_layernorm, 3, a, rows, rows);
    ir_node *ids = tc_in(&t, DT_I32, shp(2, 4, 2), NULL);
    ir_node *xe = tc_op(&t, OP_cross_entropy, 2, a, ids);
    ir_node *q = tc_in(&t, DT_F32, shp(4, 2, 4, 3, 8), NULL), *k = tc_in(&t, DT_F32, shp(4, 2, 2, 5, 8), NULL);
    ir_node *v = tc_in(&t, DT_F32, shp(4, 2, 2, 5, 16), NULL);
    ir_node *att = tc_op(&t, OP_attention, 3, q, k, v);
    ir_node *attc = tc_op(&t, OP_attention, 3, q, k, v);
    ir_attr_set_int(attc, "causal", 1);
    ir_node *pos = tc_in(&t, DT_I32, shp(1, 3), NULL);
    ir_node *rp = tc_op(&t, OP_rope, 2, q, pos);
    ir_node *emb = tc_op(&t, OP_embedding, 2, tc_in(&t, DT_F32, shp(2, 10, 4), NULL), ids);
    for (int i = 0; i < t.g->n_nodes; i++)
        if (!ir_infer(t.g->nodes[i], &d))
            fail_line("cost setup", d.msg[d.n_msg - 1].msg);
    /* [4, 2, 3] x [3, 5]: batch 4, M 2, N 5, K 3: 2*4*2*5*3 = 240 (same with b transposed) */
    cost_case("cost matmul", mm, 240);
    cost_case("cost matmul (transpose_b)", mmt, 240);
    cost_case("cost add", add, 24);              /* numel(out) = 4*2*3 */
    cost_case("cost sum", sum, 24);              /* numel(input) */
    cost_case("cost softmax", sm, 5 * 24);
    cost_case("cost layernorm", ln, 8 * 24);
    cost_case("cost cross_entropy", xe, 5 * 24);
    cost_case("cost rope", rp, 6 * 2 * 4 * 3 * 8);
    cost_case("cost embedding", emb, 0);
    cost_case("cost input", a, 0);
    /* B*H = 8 (b, h) pairs, T = 3, S = 5, D = 8, E = 16: pairs 15: 8 * (2*15*8 + 2*15*16) = 5760;
     * causal keys j <= i + 2: 3 + 4 + 5 = 12 pairs: 8 * (2*12*8 + 2*12*16) = 4608 */
    cost_case("cost attention", att, 5760);
    cost_case("cost attention (causal)", attc, 4608);
    ir_diag_free(&d);
    tc_end(&t);
}

int main(void)
{
    test_sources();
    test_unary();
    test_binary();
    test_layout();
    test_reduce();
    test_rows();
    test_matmul();
    test_nn();
    test_errors();
    test_infer_ok();
    test_cost();
    printf("%d cases, %d failed\n", n_cases, n_failed);
    return n_failed != 0;
}
