/* test_interp.c — the reference interpreter as a whole: rounding to storage dtypes
 * (ir_round_to, IR_PREC_F32 vs IR_PREC_F64), binding of inputs and params by name with the
 * exact error texts, optional inputs, outputs (copies, graph order, names), run-time errors of
 * embedding / cross_entropy / integer division at the node's location, and freeing of
 * intermediates (run under ASan: no leaks, no use after free). */
#include "ir/interp.h"
#include "ir/ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_cases, n_failed;

static void check(bool ok, const char *label, const char *detail)
{
    n_cases++;
    if (ok) {
        printf("%s: ok\n", label);
    } else {
        printf("%s: FAIL: %s\n", label, detail);
        n_failed++;
    }
}

/* ---- ir_round_to ---------------------------------------------------------------------------- */

static void round_case(const char *label, ir_dtype dt, double v, double want)
{
    double got = ir_round_to(dt, v);
    char msg[160];
    snprintf(msg, sizeof msg, "ir_round_to(%s, %.17g) = %.17g, expected %.17g", ir_dtype_name(dt), v, got, want);
    check(got == want || (isnan(got) && isnan(want)), label, msg);
}

static void test_round(void)
{
    /* 1/3 = 0.0101...b: bf16 keeps 8 significant bits: 0.01010101|0101.. rounds up to
     * 171/512 = 0.333984375; f16 keeps 11: 1365.33/4096 rounds down to 1365/4096 */
    round_case("round bf16 1/3", DT_BF16, 1.0 / 3, 0.333984375);
    round_case("round f16 1/3", DT_F16, 1.0 / 3, 0.333251953125);
    round_case("round f32 1/3", DT_F32, 1.0 / 3, (double)(1.0f / 3));
    round_case("round f64 1/3", DT_F64, 1.0 / 3, 1.0 / 3);
    /* ties go to even: 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 -> 1;
     * 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> 1 + 2^-6 */
    round_case("round bf16 tie down", DT_BF16, 1 + 0x1p-8, 1);
    round_case("round bf16 tie up", DT_BF16, 1 + 3 * 0x1p-8, 1 + 0x1p-6);
    round_case("round f16 tie", DT_F16, 2049, 2048); /* f16 spacing 2 above 2048 */
    round_case("round f16 max", DT_F16, 65504, 65504);
    round_case("round f16 below overflow", DT_F16, 65519, 65504);
    round_case("round f16 overflow", DT_F16, 65520, INFINITY);
    round_case("round f16 negative overflow", DT_F16, -1e6, -INFINITY);
    /* f16 subnormals: spacing 2^-24; 2^-25 ties to 0, 3*2^-25 ties to 2*2^-24 */
    round_case("round f16 subnormal tie to zero", DT_F16, 0x1p-25, 0);
    round_case("round f16 subnormal tie to even", DT_F16, 3 * 0x1p-25, 0x1p-23);
    round_case("round f16 smallest subnormal", DT_F16, 0x1p-24, 0x1p-24);
    round_case("round bf16 large", DT_BF16, 3e38, 0x1.c4p+127); /* 3e38 = 1.7636..*2^127 -> 1.765625 */
    round_case("round f32 overflow", DT_F32, 1e39, INFINITY);
    round_case("round f32 0.1", DT_F32, 0.1, (double)0.1f);
    round_case("round i32 2.7", DT_I32, 2.7, 2);
    round_case("round i32 -2.7", DT_I32, -2.7, -2);
    round_case("round u8 3.9", DT_U8, 3.9, 3);
    round_case("round f16 nan", DT_F16, NAN, NAN);
    round_case("round bf16 -0", DT_BF16, -0.0, -0.0);
}

/* ---- graphs ----------------------------------------------------------------------------------- */

static const ir_loc LOC = {-1, 12, 5};

static ir_node *add_source(ir_graph *g, ir_opcode op, const char *name, ir_dtype dt, ir_shape s)
{
    ir_node *n = ir_node_add(g, op, 0, NULL, LOC);
    n->name = ir_graph_strdup(g, name);
    n->dtype = dt;
    n->shape = s;
    return n;
}

static ir_node *add_op(ir_graph *g, ir_opcode op, int n_in, ir_node *const *in)
{
    ir_node *n = ir_node_add(g, op, n_in, in, LOC);
    ir_diag d;
    ir_diag_init(&d);
    if (!ir_infer(n, &d)) {
        printf("setup: %s\n", d.msg[0].msg);
        exit(1);
    }
    ir_diag_free(&d);
    return n;
}

static ir_node *add_output(ir_graph *g, const char *name, ir_node *x)
{
    ir_node *n = add_op(g, OP_output, 1, &x);
    n->name = ir_graph_strdup(g, name);
    return n;
}

static ir_tensor *tensor(ir_dtype dt, ir_shape s, const double *data)
{
    ir_tensor *t = ir_tensor_new(dt, &s);
    if (data)
        memcpy(t->data, data, sizeof(double) * (size_t)ir_shape_numel(&s));
    return t;
}

/* Runs g; expects failure with first message `want` at LOC's line. */
static void expect_run_error(const char *label, const ir_graph *g, const ir_named_tensor *vals, int n_vals,
                             const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *outs = (ir_named_tensor *)1;
    int n_outs = -1;
    bool ok = ir_interp_run(g, IR_PREC_F64, vals, n_vals, &outs, &n_outs, &d);
    char msg[400];
    snprintf(msg, sizeof msg, "got '%s', expected '%s'", ok ? "success" : d.n_msg ? d.msg[0].msg : "", want);
    check(!ok && d.n_msg > 0 && strcmp(d.msg[0].msg, want) == 0 && d.msg[0].line == LOC.line && outs == NULL &&
              n_outs == 0,
          label, msg);
    ir_diag_free(&d);
}

/* f32 mode rounds every result to its dtype; f64 mode does not. */
static void test_precision(void)
{
    ir_graph *g = ir_graph_new("prec");
    ir_node *a = add_source(g, OP_input, "a", DT_F32, (ir_shape){1, {1}});
    ir_node *b = add_source(g, OP_input, "b", DT_F32, (ir_shape){1, {1}});
    ir_node *c = add_source(g, OP_input, "c", DT_F64, (ir_shape){1, {1}});
    ir_node *sum = add_op(g, OP_add, 2, (ir_node *[]){a, b});
    ir_node *cast = ir_node_add(g, OP_cast, 1, &c, LOC);
    ir_attr_set_dtype(cast, "to", DT_BF16);
    ir_diag d;
    ir_diag_init(&d);
    ir_infer(cast, &d);
    add_output(g, "sum", sum);
    add_output(g, "third", cast);
    add_output(g, "a", a);
    /* a = 0.1 is not an f32 value: f32 mode reads it as 0.1f */
    ir_tensor *ta = tensor(DT_F32, a->shape, (double[]){0.1}), *tb = tensor(DT_F32, b->shape, (double[]){0.2f});
    ir_tensor *tc = tensor(DT_F64, c->shape, (double[]){1.0 / 3});
    ir_named_tensor vals[] = {{"a", ta}, {"b", tb}, {"c", tc}};
    ir_named_tensor *outs;
    int n_outs;

    bool ok = ir_interp_run(g, IR_PREC_F32, vals, 3, &outs, &n_outs, &d);
    char msg[200];
    snprintf(msg, sizeof msg, "run failed or wrong outputs");
    /* 0.1f + 0.2f in float arithmetic is exactly the f32 rounding of the exact sum */
    ok = ok && n_outs == 3 && outs[0].t->data[0] == (double)(0.1f + 0.2f) && outs[1].t->data[0] == 0.333984375 &&
         outs[2].t->data[0] == (double)0.1f && ta->data[0] == 0.1;
    check(ok, "f32 mode rounds results and inputs (caller's tensor untouched)", msg);
    ir_named_tensors_free(outs, n_outs);

    ok = ir_interp_run(g, IR_PREC_F64, vals, 3, &outs, &n_outs, &d);
    ok = ok && n_outs == 3 && outs[0].t->data[0] == 0.1 + (double)0.2f && outs[1].t->data[0] == 1.0 / 3 &&
         outs[2].t->data[0] == 0.1;
    check(ok, "f64 mode does not round", msg);
    ir_named_tensors_free(outs, n_outs);

    for (int i = 0; i < 3; i++)
        ir_tensor_free(vals[i].t);
    ir_diag_free(&d);
    ir_graph_free(g);
}

/* Outputs come in graph order, named by the output node, as copies the caller frees. */
static void test_outputs(void)
{
    ir_graph *g = ir_graph_new("outs");
    ir_node *x = add_source(g, OP_input, "x", DT_F32, (ir_shape){1, {2}});
    ir_node *n = add_op(g, OP_neg, 1, &x);
    ir_node *e = add_op(g, OP_exp, 1, &n); /* dead: nobody uses it (must still be freed) */
    (void)e;
    add_output(g, "second", x);
    add_output(g, "first", n);
    ir_node *m = add_op(g, OP_mul, 2, (ir_node *[]){n, n}); /* n used after an output of it */
    add_output(g, "third", m);
    ir_tensor *tx = tensor(DT_F32, x->shape, (double[]){1, -2});
    ir_named_tensor vals[] = {{"x", tx}};
    ir_named_tensor *outs;
    int n_outs;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = ir_interp_run(g, IR_PREC_F64, vals, 1, &outs, &n_outs, &d);
    ok = ok && n_outs == 3 && strcmp(outs[0].name, "second") == 0 && strcmp(outs[1].name, "first") == 0 &&
         strcmp(outs[2].name, "third") == 0 && outs[0].t != tx && outs[0].t->data[1] == -2 &&
         outs[1].t->data[0] == -1 && outs[1].t->data[1] == 2 && outs[2].t->data[1] == 4 &&
         outs[2].t->dtype == DT_F32 && outs[2].t->shape.rank == 1 && outs[2].t->shape.dim[0] == 2;
    check(ok, "outputs in graph order, named, copied", "wrong outputs");
    ir_named_tensors_free(outs, n_outs);
    ir_tensor_free(tx);
    ir_diag_free(&d);
    ir_graph_free(g);
}

/* Missing and mistyped values; optional inputs. */
static void test_binding(void)
{
    ir_graph *g = ir_graph_new("bind");
    ir_node *tok = add_source(g, OP_input, "tokens", DT_I32, (ir_shape){2, {1, 64}});
    ir_node *w = add_source(g, OP_param, "wte.weight", DT_F32, (ir_shape){2, {256, 8}});
    ir_node *emb = add_op(g, OP_embedding, 2, (ir_node *[]){w, tok});
    add_output(g, "h", emb);

    ir_tensor *short_tok = ir_tensor_new(DT_I32, &(ir_shape){2, {1, 32}});
    ir_tensor *tok_ok = ir_tensor_new(DT_I32, &tok->shape);
    ir_tensor *wt = ir_tensor_new(DT_F32, &w->shape);
    ir_tensor *w_f16 = ir_tensor_new(DT_F16, &w->shape);
    expect_run_error("input shape mismatch", g, (ir_named_tensor[]){{"tokens", short_tok}, {"wte.weight", wt}}, 2,
                     "input 'tokens': expected i32[1, 64], got i32[1, 32]");
    expect_run_error("param dtype mismatch", g, (ir_named_tensor[]){{"tokens", tok_ok}, {"wte.weight", w_f16}}, 2,
                     "param 'wte.weight': expected f32[256, 8], got f16[256, 8]");
    expect_run_error("missing param", g, (ir_named_tensor[]){{"tokens", tok_ok}}, 1,
                     "missing value for param 'wte.weight'");
    expect_run_error("missing input", g, (ir_named_tensor[]){{"wte.weight", wt}}, 1, "missing value for input 'tokens'");

    /* run-time id check: id 300 with V = 256 */
    tok_ok->data[5] = 300;
    expect_run_error("embedding id out of range", g, (ir_named_tensor[]){{"tokens", tok_ok}, {"wte.weight", wt}}, 2,
                     "embedding: id 300 is outside [0, 256)");
    tok_ok->data[5] = -1;
    expect_run_error("embedding negative id", g, (ir_named_tensor[]){{"tokens", tok_ok}, {"wte.weight", wt}}, 2,
                     "embedding: id -1 is outside [0, 256)");
    ir_tensor_free(short_tok);
    ir_tensor_free(tok_ok);
    ir_tensor_free(wt);
    ir_tensor_free(w_f16);
    ir_graph_free(g);

    /* optional input "mask" absent: y = x + mask is skipped, z = -x is produced */
    g = ir_graph_new("opt");
    ir_node *x = add_source(g, OP_input, "x", DT_F32, (ir_shape){1, {2}});
    ir_node *mask = add_source(g, OP_input, "mask", DT_F32, (ir_shape){1, {2}});
    mask->optional = true;
    ir_node *y = add_op(g, OP_add, 2, (ir_node *[]){x, mask});
    ir_node *y2 = add_op(g, OP_exp, 1, &y);
    add_output(g, "y", y2);
    add_output(g, "z", add_op(g, OP_neg, 1, &x));
    ir_tensor *tx = tensor(DT_F32, x->shape, (double[]){1, 2}), *tm = tensor(DT_F32, x->shape, (double[]){0, 0});
    ir_named_tensor *outs;
    int n_outs;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = ir_interp_run(g, IR_PREC_F64, (ir_named_tensor[]){{"x", tx}}, 1, &outs, &n_outs, &d);
    check(ok && n_outs == 1 && strcmp(outs[0].name, "z") == 0 && outs[0].t->data[1] == -2,
          "optional input absent: dependent outputs skipped", "wrong outputs");
    ir_named_tensors_free(outs, n_outs);
    ok = ir_interp_run(g, IR_PREC_F64, (ir_named_tensor[]){{"x", tx}, {"mask", tm}}, 2, &outs, &n_outs, &d);
    check(ok && n_outs == 2 && strcmp(outs[0].name, "y") == 0 && outs[0].t->data[0] == M_E,
          "optional input present: all outputs", "wrong outputs");
    ir_named_tensors_free(outs, n_outs);
    ir_tensor_free(tx);
    ir_tensor_free(tm);
    ir_diag_free(&d);
    ir_graph_free(g);
}

/* Run-time errors of cross_entropy and integer division, reported at the node. */
static void test_runtime_errors(void)
{
    ir_graph *g = ir_graph_new("xent");
    ir_node *lg = add_source(g, OP_input, "logits", DT_F32, (ir_shape){2, {2, 10}});
    ir_node *tg = add_source(g, OP_input, "targets", DT_I32, (ir_shape){1, {2}});
    add_output(g, "loss", add_op(g, OP_cross_entropy, 2, (ir_node *[]){lg, tg}));
    ir_tensor *tl = ir_tensor_new(DT_F32, &lg->shape), *tt = tensor(DT_I32, tg->shape, (double[]){3, 10});
    expect_run_error("cross_entropy target out of range", g, (ir_named_tensor[]){{"logits", tl}, {"targets", tt}}, 2,
                     "cross_entropy: target 10 is outside [0, 10)");
    ir_tensor_free(tl);
    ir_tensor_free(tt);
    ir_graph_free(g);

    g = ir_graph_new("div");
    ir_node *a = add_source(g, OP_input, "a", DT_I32, (ir_shape){1, {2}});
    ir_node *b = add_source(g, OP_input, "b", DT_I32, (ir_shape){1, {2}});
    add_output(g, "q", add_op(g, OP_div, 2, (ir_node *[]){a, b}));
    ir_tensor *ta = tensor(DT_I32, a->shape, (double[]){1, 2}), *tb = tensor(DT_I32, b->shape, (double[]){1, 0});
    expect_run_error("integer division by zero", g, (ir_named_tensor[]){{"a", ta}, {"b", tb}}, 2,
                     "div: integer division by zero");
    ir_tensor_free(ta);
    ir_tensor_free(tb);
    ir_graph_free(g);
}

/* A long chain with fan-out: intermediates are freed at their last use (ASan checks there is
 * no leak and no use after free); x -> x*2 repeated 40 times with a side branch every step. */
static void test_chain(void)
{
    ir_graph *g = ir_graph_new("chain");
    ir_node *x = add_source(g, OP_input, "x", DT_F64, (ir_shape){2, {3, 4}});
    ir_node *two = ir_node_add(g, OP_const, 0, NULL, LOC);
    two->dtype = DT_F64;
    two->shape = (ir_shape){0, {0}};
    ir_attr_set_float(two, "value", 2);
    ir_node *cur = x, *acc = NULL;
    for (int i = 0; i < 40; i++) {
        cur = add_op(g, OP_mul, 2, (ir_node *[]){cur, two});
        ir_node *side = add_op(g, OP_sum, 1, &cur); /* sum of all 12 elements */
        if (i % 10 == 9)
            acc = acc ? add_op(g, OP_add, 2, (ir_node *[]){acc, side}) : side;
    }
    add_output(g, "y", cur);
    add_output(g, "acc", acc);
    ir_tensor *tx = ir_tensor_new(DT_F64, &x->shape);
    for (int i = 0; i < 12; i++)
        tx->data[i] = 1;
    ir_named_tensor *outs;
    int n_outs;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = ir_interp_run(g, IR_PREC_F64, (ir_named_tensor[]){{"x", tx}}, 1, &outs, &n_outs, &d);
    /* y = 2^40 everywhere; acc = 12 * (2^10 + 2^20 + 2^30 + 2^40) */
    double want_acc = 12 * (0x1p10 + 0x1p20 + 0x1p30 + 0x1p40);
    check(ok && n_outs == 2 && outs[0].t->data[11] == 0x1p40 && outs[1].t->data[0] == want_acc,
          "chain of 40 nodes with side branches", "wrong values");
    ir_named_tensors_free(outs, n_outs);
    ir_tensor_free(tx);
    ir_diag_free(&d);
    ir_graph_free(g);
}

int main(void)
{
    test_round();
    test_precision();
    test_outputs();
    test_binding();
    test_runtime_errors();
    test_chain();
    printf("%d cases, %d failed\n", n_cases, n_failed);
    return n_failed != 0;
}
