/* test_grad.c — reverse-mode autodiff (passes/autodiff.c, ir/grad.c) against central finite
 * differences on the reference interpreter in f64.
 *
 * For every differentiable op, a graph loss = sum(op(params...) * w) with w a fixed random input
 * (so every gradient element is nontrivial) goes through pass_autodiff; the "grad/<param>"
 * outputs, evaluated in IR_PREC_F64, are compared with (L(p + h) - L(p - h)) / 2h, h = 1e-6, for
 * every param element; it passes when |err| <= 1e-6 * max(1, |g|). One line per case prints the
 * max abs and rel error. Also: hand-computed values of the backward ops, tied weights, params
 * with no path to the loss, optional inputs becoming required, the error without a 'loss', and
 * GPT-2 tiny (loss at init near ln(vocab), a random subset of parameter elements vs finite
 * differences).
 */
#include "frontend/frontend.h"
#include "io/init.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/pass.h"
#include "test_check.h"
#include "test_graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H_FD 1e-6
#define TOL 1e-6

static const ir_loc LOC = {-1, 1, 1};
static uint64_t rng_state = 0x243F6A8885A308D3ull;

static double urand(double lo, double hi)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1p-53;
}

/* A source node with a value: data when given, else uniform in [lo, hi). */
static ir_node *source(tcase *t, ir_opcode op, const char *name, ir_dtype dt, ir_shape s, const double *data,
                       double lo, double hi)
{
    if (t->n_vals == 64)
        abort();
    ir_node *n = ir_node_add(t->g, op, 0, NULL, LOC);
    n->name = ir_graph_strdup(t->g, name);
    n->dtype = dt;
    n->shape = s;
    ir_tensor *v = ir_tensor_new(dt, &s);
    for (int64_t i = 0; i < ir_shape_numel(&s); i++)
        v->data[i] = data ? data[i] : ir_dtype_is_int(dt) ? floor(urand(lo, hi)) : urand(lo, hi);
    t->is_param[t->n_vals] = op == OP_param;
    t->vals[t->n_vals++] = (ir_named_tensor){strdup(name), v};
    return n;
}

static ir_node *param(tcase *t, const char *name, ir_shape s, double lo, double hi)
{
    return source(t, OP_param, name, DT_F32, s, NULL, lo, hi);
}

static ir_node *input(tcase *t, const char *name, ir_dtype dt, ir_shape s, const double *data, double lo,
                      double hi)
{
    return source(t, OP_input, name, dt, s, data, lo, hi);
}

/* A node whose attributes the caller sets before fin(). */
static ir_node *nd(tcase *t, ir_opcode op, int n_in, ir_node *a, ir_node *b, ir_node *c, ir_node *e)
{
    ir_node *in[4] = {a, b, c, e};
    return ir_node_add(t->g, op, n_in, in, LOC);
}

static ir_node *fin(ir_node *n)
{
    ir_diag d;
    ir_diag_init(&d);
    if (!ir_infer(n, &d)) {
        ir_diag_print(&d, stderr);
        abort();
    }
    ir_diag_free(&d);
    return n;
}

static ir_node *u1(tcase *t, ir_opcode op, ir_node *x) { return fin(nd(t, op, 1, x, NULL, NULL, NULL)); }
static ir_node *b2(tcase *t, ir_opcode op, ir_node *x, ir_node *y) { return fin(nd(t, op, 2, x, y, NULL, NULL)); }

static ir_node *with_ints(tcase *t, ir_node *n, const char *attr, int count, ...)
{
    int64_t v[IR_MAX_RANK];
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++)
        v[i] = va_arg(ap, int);
    va_end(ap);
    ir_attr_set_ints(t->g, n, attr, count, v);
    return n;
}

static const ir_tensor *find_out(const ir_named_tensor *outs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(outs[i].name, name) == 0)
            return outs[i].t;
    return NULL;
}

/* Runs g in f64 and returns output `name`'s first element (NAN on error). */
static double run_scalar(const ir_graph *g, tcase *t, const char *name)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *outs;
    int n_outs;
    double v = NAN;
    if (ir_interp_run(g, IR_PREC_F64, t->vals, t->n_vals, &outs, &n_outs, &d)) {
        const ir_tensor *o = find_out(outs, n_outs, name);
        v = o ? o->data[0] : NAN;
        ir_named_tensors_free(outs, n_outs);
    } else {
        ir_diag_print(&d, stderr);
    }
    ir_diag_free(&d);
    return v;
}

typedef struct {
    double abs, rel;
} errs;

/* Differentiates t's graph (which has an output "loss") and compares every param's gradient
 * with finite differences: all elements, or `sample` random ones per param when sample > 0. */
static errs check_loss_grads(tcase *t, const char *label, int sample)
{
    errs e = {0, 0};
    ir_graph *fwd = ir_graph_clone(t->g);
    ir_diag d;
    ir_diag_init(&d);
    bool ok = pass_autodiff(t->g, &d) && ir_verify(t->g, &d);
    ir_named_tensor *outs = NULL;
    int n_outs = 0;
    ok = ok && ir_interp_run(t->g, IR_PREC_F64, t->vals, t->n_vals, &outs, &n_outs, &d);
    if (!ok)
        ir_diag_print(&d, stderr);
    CHECK(ok, "%s: autodiff and evaluation", label);
    int checked = 0;
    for (int p = 0; ok && p < t->n_vals; p++) {
        if (!t->is_param[p])
            continue;
        char name[256];
        snprintf(name, sizeof name, "grad/%s", t->vals[p].name);
        const ir_tensor *gt = find_out(outs, n_outs, name), *pv = t->vals[p].t;
        CHECK(gt && ir_shape_eq(&gt->shape, &pv->shape), "%s: output %s with the param's shape", label, name);
        if (!gt)
            continue;
        int64_t n = ir_shape_numel(&pv->shape);
        for (int64_t s = 0; s < (sample > 0 ? sample : n); s++) {
            int64_t i = sample > 0 ? (int64_t)floor(urand(0, (double)n)) : s;
            double v0 = pv->data[i];
            pv->data[i] = v0 + H_FD;
            double lp = run_scalar(fwd, t, "loss");
            pv->data[i] = v0 - H_FD;
            double lm = run_scalar(fwd, t, "loss");
            pv->data[i] = v0;
            double fd = (lp - lm) / (2 * H_FD), g = gt->data[i], err = fabs(fd - g);
            double rel = err / fmax(1.0, fabs(g));
            e.abs = fmax(e.abs, err);
            e.rel = fmax(e.rel, rel);
            CHECK(rel <= TOL, "%s: %s[%lld]: autodiff %.12g, finite differences %.12g", label, name, (long long)i, g,
                  fd);
            checked++;
        }
    }
    CHECK(checked > 0, "%s: no gradient element checked", label);
    printf("%-40s max abs err %.3g, max rel err %.3g (%d elements)\n", label, e.abs, e.rel, checked);
    ir_named_tensors_free(outs, n_outs);
    ir_diag_free(&d);
    ir_graph_free(fwd);
    return e;
}

static double worst;

/* loss = sum(y * w) with w a random input of y's type, then the gradient check. */
static void check(tcase *t, const char *label, ir_node *y)
{
    ir_node *w = input(t, "w_fixed", y->dtype, y->shape, NULL, -1, 1);
    ir_node *l = nd(t, OP_sum, 1, b2(t, OP_mul, y, w), NULL, NULL, NULL);
    ir_attr_set_ints(t->g, l, "axes", 0, NULL);
    fin(l);
    ir_node *out = nd(t, OP_output, 1, l, NULL, NULL, NULL);
    out->name = ir_graph_strdup(t->g, "loss");
    fin(out);
    errs e = check_loss_grads(t, label, 0);
    worst = fmax(worst, e.rel);
    tc_end(t);
}

/* ---- per-op cases ------------------------------------------------------------------------------ */

static void unary_cases(void)
{
    static const struct {
        ir_opcode op;
        const char *approx;
        double lo, hi;
    } cs[] = {
        {OP_neg, NULL, -2, 2},    {OP_exp, NULL, -2, 2},   {OP_log, NULL, 0.5, 2},     {OP_sqrt, NULL, 0.5, 2},
        {OP_rsqrt, NULL, 0.5, 2}, {OP_recip, NULL, 0.5, 2}, {OP_abs, NULL, -2, 2},     {OP_tanh, NULL, -2, 2},
        {OP_sigmoid, NULL, -3, 3}, {OP_relu, NULL, -2, 2},  {OP_silu, NULL, -3, 3},    {OP_gelu, "tanh", -3, 3},
        {OP_gelu, "erf", -3, 3},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        tcase t;
        tc_begin(&t);
        ir_node *x = param(&t, "x", shp(2, 3, 4), cs[i].lo, cs[i].hi);
        ir_node *y = nd(&t, cs[i].op, 1, x, NULL, NULL, NULL);
        if (cs[i].approx)
            ir_attr_set_str(t.g, y, "approx", cs[i].approx);
        char label[64];
        snprintf(label, sizeof label, "%s%s%s", ir_ops[cs[i].op].mnemonic, cs[i].approx ? " " : "",
                 cs[i].approx ? cs[i].approx : "");
        check(&t, label, fin(y));
    }
    /* cast f32 -> f64 -> f32 */
    tcase t;
    tc_begin(&t);
    ir_node *x = param(&t, "x", shp(2, 2, 5), -2, 2);
    ir_node *c = nd(&t, OP_cast, 1, x, NULL, NULL, NULL);
    ir_attr_set_dtype(c, "to", DT_F64);
    ir_node *y = u1(&t, OP_exp, fin(c));
    ir_node *c2 = nd(&t, OP_cast, 1, y, NULL, NULL, NULL);
    ir_attr_set_dtype(c2, "to", DT_F32);
    check(&t, "cast (f32 -> f64 -> f32)", fin(c2));
}

static void binary_cases(void)
{
    static const struct {
        ir_opcode op;
        ir_shape a, b;
        double alo, ahi, blo, bhi;
    } cs[] = {
        {OP_add, {3, {2, 3, 4}}, {2, {3, 1}}, -2, 2, -2, 2},
        {OP_sub, {1, {4}}, {3, {2, 3, 4}}, -2, 2, -2, 2},
        {OP_mul, {3, {2, 1, 4}}, {2, {3, 1}}, -2, 2, -2, 2},
        {OP_div, {2, {3, 4}}, {3, {2, 1, 4}}, -2, 2, 0.5, 2},
        {OP_pow, {2, {3, 4}}, {1, {4}}, 0.5, 2, -2, 2},
        {OP_maximum, {2, {3, 4}}, {3, {2, 1, 4}}, -2, 2, -2, 2},
        {OP_minimum, {3, {2, 3, 1}}, {1, {4}}, -2, 2, -2, 2},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        tcase t;
        tc_begin(&t);
        ir_node *a = param(&t, "a", cs[i].a, cs[i].alo, cs[i].ahi);
        ir_node *b = param(&t, "b", cs[i].b, cs[i].blo, cs[i].bhi);
        char label[64];
        snprintf(label, sizeof label, "%s (broadcast)", ir_ops[cs[i].op].mnemonic);
        check(&t, label, b2(&t, cs[i].op, a, b));
    }
    /* one operand an input: only the param gets a gradient */
    tcase t;
    tc_begin(&t);
    ir_node *a = param(&t, "a", shp(2, 2, 3), -2, 2);
    ir_node *x = input(&t, "x", DT_F32, shp(1, 3), NULL, 0.5, 2);
    check(&t, "div (input divisor)", b2(&t, OP_div, a, x));
}

static void layout_cases(void)
{
    tcase t;
    tc_begin(&t);
    ir_node *x = param(&t, "x", shp(3, 2, 3, 4), -2, 2);
    check(&t, "reshape", fin(with_ints(&t, nd(&t, OP_reshape, 1, x, NULL, NULL, NULL), "shape", 2, 4, -1)));

    tc_begin(&t);
    x = param(&t, "x", shp(3, 2, 3, 4), -2, 2);
    ir_node *tr = nd(&t, OP_transpose, 1, x, NULL, NULL, NULL);
    check(&t, "transpose [2, 0, 1]", fin(with_ints(&t, tr, "perm", 3, 2, 0, 1)));

    tc_begin(&t);
    x = param(&t, "x", shp(3, 2, 5, 3), -2, 2);
    ir_node *s = nd(&t, OP_slice, 1, x, NULL, NULL, NULL);
    ir_attr_set_int(s, "axis", 1);
    ir_attr_set_int(s, "start", 1);
    ir_attr_set_int(s, "end", 3);
    check(&t, "slice (middle)", fin(s));

    tc_begin(&t);
    x = param(&t, "x", shp(2, 3, 6), -2, 2);
    s = nd(&t, OP_slice, 1, x, NULL, NULL, NULL);
    ir_attr_set_int(s, "axis", -1);
    ir_attr_set_int(s, "start", -4);
    ir_attr_set_int(s, "end", 6);
    check(&t, "slice (negative start, to the end)", fin(s));

    tc_begin(&t);
    ir_node *a = param(&t, "a", shp(3, 2, 1, 3), -2, 2), *b = param(&t, "b", shp(3, 2, 3, 3), -2, 2);
    ir_node *c = param(&t, "c", shp(3, 2, 2, 3), -2, 2);
    ir_node *cc = nd(&t, OP_concat, 3, a, b, c, NULL);
    ir_attr_set_int(cc, "axis", 1);
    check(&t, "concat (3 operands)", fin(cc));

    tc_begin(&t);
    x = param(&t, "x", shp(2, 3, 1), -2, 2);
    check(&t, "broadcast [3, 1] -> [2, 3, 4]",
          fin(with_ints(&t, nd(&t, OP_broadcast, 1, x, NULL, NULL, NULL), "shape", 3, 2, 3, 4)));
}

static void reduce_cases(void)
{
    static const struct {
        ir_opcode op;
        int n_axes, axes[2], keepdim;
        const char *label;
    } cs[] = {
        {OP_sum, 1, {1, 0}, 0, "sum axes [1]"},       {OP_sum, 0, {0, 0}, 0, "sum all"},
        {OP_sum, 2, {0, -1}, 1, "sum [0, -1] keepdim"}, {OP_mean, 2, {0, 2}, 0, "mean [0, 2]"},
        {OP_mean, 0, {0, 0}, 1, "mean all keepdim"},  {OP_max, 1, {-1, 0}, 0, "max [-1]"},
        {OP_max, 0, {0, 0}, 0, "max all"},            {OP_max, 1, {1, 0}, 1, "max [1] keepdim"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        tcase t;
        tc_begin(&t);
        ir_node *x = param(&t, "x", shp(3, 2, 3, 4), -2, 2);
        ir_node *r = nd(&t, cs[i].op, 1, x, NULL, NULL, NULL);
        int64_t axes[2] = {cs[i].axes[0], cs[i].axes[1]};
        ir_attr_set_ints(t.g, r, "axes", cs[i].n_axes, axes);
        ir_attr_set_int(r, "keepdim", cs[i].keepdim);
        check(&t, cs[i].label, fin(r));
    }
}

static void row_cases(void)
{
    tcase t;
    tc_begin(&t);
    ir_node *x = param(&t, "x", shp(2, 3, 5), -2, 2);
    check(&t, "softmax", u1(&t, OP_softmax, x));

    tc_begin(&t);
    x = param(&t, "x", shp(3, 2, 3, 6), -2, 2);
    ir_node *w = param(&t, "w", shp(1, 6), 0.5, 1.5), *b = param(&t, "b", shp(1, 6), -1, 1);
    ir_node *ln = nd(&t, OP_layernorm, 3, x, w, b, NULL);
    ir_attr_set_float(ln, "eps", 1e-3);
    check(&t, "layernorm", fin(ln));

    tc_begin(&t);
    x = param(&t, "x", shp(3, 2, 3, 6), -2, 2);
    w = param(&t, "w", shp(1, 6), 0.5, 1.5);
    ir_node *rn = nd(&t, OP_rmsnorm, 2, x, w, NULL, NULL);
    ir_attr_set_float(rn, "eps", 1e-3);
    check(&t, "rmsnorm", fin(rn));

    /* cross_entropy: the loss itself; one position ignored (-1) */
    tc_begin(&t);
    x = param(&t, "logits", shp(3, 2, 3, 7), -2, 2);
    double tg[6] = {0, 6, -1, 3, 2, 2};
    ir_node *ce = b2(&t, OP_cross_entropy, x, input(&t, "targets", DT_I32, shp(2, 2, 3), tg, 0, 0));
    ir_node *two = nd(&t, OP_const, 0, NULL, NULL, NULL, NULL);
    two->dtype = DT_F32;
    ir_attr_set_float(two, "value", 2.5);
    fin(two);
    check(&t, "cross_entropy (ignored target)", b2(&t, OP_mul, ce, two));
}

static void matmul_case(const char *label, ir_shape as, ir_shape bs, int ta, int tb, bool b_param)
{
    tcase t;
    tc_begin(&t);
    ir_node *a = param(&t, "a", as, -1, 1);
    ir_node *b = b_param ? param(&t, "b", bs, -1, 1) : input(&t, "b", DT_F32, bs, NULL, -1, 1);
    ir_node *m = nd(&t, OP_matmul, 2, a, b, NULL, NULL);
    ir_attr_set_int(m, "transpose_a", ta);
    ir_attr_set_int(m, "transpose_b", tb);
    check(&t, label, fin(m));
}

static void matmul_cases(void)
{
    matmul_case("matmul", shp(2, 3, 4), shp(2, 4, 5), 0, 0, true);
    matmul_case("matmul transpose_a", shp(2, 4, 3), shp(2, 4, 5), 1, 0, true);
    matmul_case("matmul transpose_b", shp(2, 3, 4), shp(2, 5, 4), 0, 1, true);
    matmul_case("matmul transpose_a transpose_b", shp(2, 4, 3), shp(2, 5, 4), 1, 1, true);
    matmul_case("matmul batch broadcast [2,1,3,4]x[3,4,2]", shp(4, 2, 1, 3, 4), shp(3, 3, 4, 2), 0, 0, true);
    matmul_case("matmul batch broadcast ta tb", shp(3, 1, 4, 3), shp(3, 2, 2, 4), 1, 1, true);
    matmul_case("matmul x@w [2,3,4]x[4,5]", shp(3, 2, 3, 4), shp(2, 4, 5), 0, 0, true);
    matmul_case("matmul x@w^T [2,3,4]x[5,4]", shp(3, 2, 3, 4), shp(2, 5, 4), 0, 1, true);
    matmul_case("matmul w@x [3,4]x[2,4,5]", shp(2, 3, 4), shp(3, 2, 4, 5), 0, 0, true);
    matmul_case("matmul (b an input)", shp(3, 2, 3, 4), shp(2, 4, 2), 0, 0, false);
}

static void nn_cases(void)
{
    tcase t;
    tc_begin(&t);
    ir_node *tab = param(&t, "table", shp(2, 6, 4), -1, 1);
    double ids[10] = {0, 5, 2, 2, 0, 1, 5, 5, 3, 0};
    check(&t, "embedding (repeated ids)", b2(&t, OP_embedding, tab, input(&t, "ids", DT_I32, shp(2, 2, 5), ids, 0, 0)));

    tc_begin(&t);
    ir_node *x = param(&t, "x", shp(4, 2, 2, 4, 6), -1, 1);
    double pos[4] = {0, 1, 2, 7};
    ir_node *r = nd(&t, OP_rope, 2, x, input(&t, "pos", DT_I32, shp(1, 4), pos, 0, 0), NULL, NULL);
    ir_attr_set_float(r, "theta", 100);
    check(&t, "rope", fin(r));

    static const struct {
        const char *label;
        int H, G, T, S, causal, mask;
        double scale;
    } cs[] = {
        {"attention", 2, 2, 3, 4, 0, 0, 0},
        {"attention causal GQA (H=4, G=2, T=3, S=5)", 4, 2, 3, 5, 1, 0, 0},
        {"attention causal MQA (H=3, G=1, T=S=4)", 3, 1, 4, 4, 1, 0, 0.7},
        {"attention GQA + param mask [1,1,T,S]", 4, 2, 3, 4, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        tc_begin(&t);
        ir_node *q = param(&t, "q", shp(4, 2, cs[i].H, cs[i].T, 4), -1, 1);
        ir_node *k = param(&t, "k", shp(4, 2, cs[i].G, cs[i].S, 4), -1, 1);
        ir_node *v = param(&t, "v", shp(4, 2, cs[i].G, cs[i].S, 3), -1, 1);
        ir_node *m = cs[i].mask ? param(&t, "mask", shp(4, 1, 1, cs[i].T, cs[i].S), -1, 1) : NULL;
        ir_node *a = nd(&t, OP_attention, m ? 4 : 3, q, k, v, m);
        ir_attr_set_int(a, "causal", cs[i].causal);
        ir_attr_set_float(a, "scale", cs[i].scale);
        check(&t, cs[i].label, fin(a));
    }
}

/* ---- structure ---------------------------------------------------------------------------------- */

/* A param used several times (twice in one matmul, once more in a mul) gets the sum; a param
 * with no path to the loss gets zeros; an optional input the loss needs becomes required. */
static void structure_cases(void)
{
    tcase t;
    tc_begin(&t);
    ir_node *p = param(&t, "p", shp(2, 3, 3), -1, 1);
    ir_node *unused = param(&t, "unused", shp(1, 4), -1, 1);
    ir_node *opt = input(&t, "opt", DT_F32, shp(2, 3, 3), NULL, -1, 1);
    opt->optional = true;
    (void)unused;
    ir_node *y = b2(&t, OP_add, b2(&t, OP_matmul, p, p), b2(&t, OP_mul, p, opt));
    ir_node *w = input(&t, "w_fixed", DT_F32, y->shape, NULL, -1, 1);
    ir_node *l = nd(&t, OP_sum, 1, b2(&t, OP_mul, y, w), NULL, NULL, NULL);
    ir_attr_set_ints(t.g, l, "axes", 0, NULL);
    ir_node *out = nd(&t, OP_output, 1, fin(l), NULL, NULL, NULL);
    out->name = ir_graph_strdup(t.g, "loss");
    fin(out);
    /* check_loss_grads checks "unused" against finite differences (0) as well */
    errs e = check_loss_grads(&t, "tied weight (p used 3 times)", 0);
    worst = fmax(worst, e.rel);
    CHECK(!opt->optional, "the optional input the loss needs became required");
    tc_end(&t);

    /* no 'loss', a non-scalar 'loss': errors */
    static const char *const msgs[] = {"no output 'loss'", "non-scalar 'loss'"};
    for (int k = 0; k < 2; k++) {
        tc_begin(&t);
        ir_node *x = param(&t, "x", shp(1, 3), -1, 1);
        ir_node *o = nd(&t, OP_output, 1, u1(&t, OP_exp, x), NULL, NULL, NULL);
        o->name = ir_graph_strdup(t.g, k == 0 ? "y" : "loss");
        fin(o);
        ir_diag d;
        ir_diag_init(&d);
        bool ok = pass_autodiff(t.g, &d);
        CHECK(!ok && d.n_msg == 1 && strcmp(d.msg[0].msg, "autodiff: the graph has no scalar output 'loss'") == 0,
              "%s: expected the error, got %s", msgs[k], d.n_msg ? d.msg[0].msg : "none");
        ir_diag_free(&d);
        tc_end(&t);
    }
}

/* ---- the backward ops by hand -------------------------------------------------------------------- */

/* Evaluates node y (built in t) and compares with want[]. */
static void hand(tcase *t, const char *label, ir_node *y, const double *want)
{
    ir_node *o = nd(t, OP_output, 1, y, NULL, NULL, NULL);
    o->name = ir_graph_strdup(t->g, "y");
    fin(o);
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *outs;
    int n_outs;
    bool ok = ir_interp_run(t->g, IR_PREC_F64, t->vals, t->n_vals, &outs, &n_outs, &d);
    CHECK(ok, "%s: evaluation", label);
    double maxerr = 0;
    for (int64_t i = 0; ok && i < ir_shape_numel(&y->shape); i++) {
        double err = fabs(outs[0].t->data[i] - want[i]);
        maxerr = fmax(maxerr, err);
        CHECK(err <= 1e-12 * fmax(1, fabs(want[i])), "%s[%lld] = %.17g, expected %.17g", label, (long long)i,
              outs[0].t->data[i], want[i]);
    }
    printf("%-40s max abs err %.3g (hand-computed)\n", label, maxerr);
    if (ok)
        ir_named_tensors_free(outs, n_outs);
    ir_diag_free(&d);
    tc_end(t);
}

static void hand_cases(void)
{
    tcase t;
    /* dy rows [1,2], [3,4], [5,6] into ids 0, 2, 0 of a 3-row table */
    tc_begin(&t);
    double dy[6] = {1, 2, 3, 4, 5, 6}, ids[3] = {0, 2, 0};
    ir_node *e = nd(&t, OP_embedding_grad, 2, input(&t, "dy", DT_F32, shp(2, 3, 2), dy, 0, 0),
                    input(&t, "ids", DT_I32, shp(1, 3), ids, 0, 0), NULL, NULL);
    ir_attr_set_int(e, "vocab", 3);
    hand(&t, "embedding_grad", fin(e), (double[]){6, 8, 0, 0, 3, 4});

    /* rows [0, 0] (target 1) and [0, ln 3] (target 0), dloss 2, count 2: scale 1;
     * softmax [1/2, 1/2] - [0, 1]; softmax [1/4, 3/4] - [1, 0]; a third row ignored */
    tc_begin(&t);
    double lg[6] = {0, 0, 0, log(3.0), 7, -7}, tg[3] = {1, 0, -1}, two = 2;
    ir_node *x = nd(&t, OP_cross_entropy_grad, 3, input(&t, "lg", DT_F64, shp(2, 3, 2), lg, 0, 0),
                    input(&t, "tg", DT_I32, shp(1, 3), tg, 0, 0), input(&t, "dl", DT_F64, shp(0), &two, 0, 0), NULL);
    hand(&t, "cross_entropy_grad", fin(x), (double[]){0.5, -0.5, -0.75, 0.75, 0, 0});

    /* dy = 5 at x = -1, 0, 2: relu' = 0, 0, 1; abs' = -1, 0, 1; gelu'(0) = 1/2 (both forms);
     * gelu_erf'(2) = Phi(2) + 2 phi(2) */
    static const char *const fns[] = {"relu", "abs", "gelu_erf", "gelu_tanh"};
    double phi2 = exp(-2.0) / sqrt(2 * M_PI), Phi2 = 0.5 * (1 + erf(2 / sqrt(2.0)));
    double c = sqrt(2 / M_PI), t2 = tanh(c * (2 + 0.044715 * 8));
    double wants[4][3] = {{0, 0, 5},
                          {-5, 0, 5},
                          {5 * (0.5 * (1 + erf(-1 / sqrt(2.0))) - exp(-0.5) / sqrt(2 * M_PI)), 2.5,
                           5 * (Phi2 + 2 * phi2)},
                          {0, 2.5, 5 * (0.5 * (1 + t2) + (1 - t2 * t2) * c * (1 + 3 * 0.044715 * 4))}};
    for (int k = 0; k < 4; k++) {
        tc_begin(&t);
        double xs[3] = {-1, 0, 2}, dys[3] = {5, 5, 5};
        ir_node *ug = nd(&t, OP_unary_grad, 2, input(&t, "x", DT_F64, shp(1, 3), xs, 0, 0),
                         input(&t, "dy", DT_F64, shp(1, 3), dys, 0, 0), NULL, NULL);
        ir_attr_set_str(t.g, ug, "fn", fns[k]);
        char label[64];
        snprintf(label, sizeof label, "unary_grad %s", fns[k]);
        if (k == 3) { /* gelu_tanh'(-1) by the same formula */
            double tm = tanh(c * (-1 - 0.044715));
            wants[3][0] = 5 * (0.5 * (1 + tm) - 0.5 * (1 - tm * tm) * c * (1 + 3 * 0.044715));
        }
        hand(&t, label, fin(ug), wants[k]);
    }

    /* layernorm of x = [0, 1, 2], eps 0: mean 1, var 2/3, r = sqrt(3/2), xhat = [-a, 0, a], a = r;
     * w = 1, dy = [1, 0, 0]: mean(e) = 1/3, mean(e xhat) = -a/3, a^2 = 3/2:
     * dx = r [1 - 1/3 - 1/2, -1/3, -1/3 + 1/2] = r [1/6, -1/3, 1/6]; dw = dy xhat = [-a, 0, 0] */
    double r = sqrt(1.5);
    for (int wrt = 0; wrt < 2; wrt++) {
        tc_begin(&t);
        double xs[3] = {0, 1, 2}, ws[3] = {1, 1, 1}, dys[3] = {1, 0, 0};
        ir_node *lg2 = nd(&t, OP_layernorm_grad, 3, input(&t, "x", DT_F64, shp(2, 1, 3), xs, 0, 0),
                          input(&t, "w", DT_F64, shp(1, 3), ws, 0, 0), input(&t, "dy", DT_F64, shp(2, 1, 3), dys, 0, 0),
                          NULL);
        ir_attr_set_float(lg2, "eps", 0);
        ir_attr_set_int(lg2, "wrt", wrt);
        hand(&t, wrt ? "layernorm_grad wrt=1" : "layernorm_grad wrt=0", fin(lg2),
             wrt ? (double[]){-r, 0, 0} : (double[]){r / 6, -r / 3, r / 6});
    }
    /* rmsnorm of x = [3, 4], eps 0: ms = 12.5, r = 1/sqrt(12.5), xhat = r x; w = [1, 2],
     * dy = [1, 1]: e = [1, 2], mean(e xhat) = r (3 + 8) / 2 = 5.5 r;
     * dx = r (e - xhat 5.5 r) = r ([1, 2] - [3, 4] 5.5 / 12.5) */
    for (int wrt = 0; wrt < 2; wrt++) {
        tc_begin(&t);
        double xs[2] = {3, 4}, ws[2] = {1, 2}, dys[2] = {1, 1}, rr = 1 / sqrt(12.5);
        ir_node *rg = nd(&t, OP_rmsnorm_grad, 3, input(&t, "x", DT_F64, shp(1, 2), xs, 0, 0),
                         input(&t, "w", DT_F64, shp(1, 2), ws, 0, 0),
                         input(&t, "dy", DT_F64, shp(1, 2), dys, 0, 0), NULL);
        ir_attr_set_float(rg, "eps", 0);
        ir_attr_set_int(rg, "wrt", wrt);
        hand(&t, wrt ? "rmsnorm_grad wrt=1" : "rmsnorm_grad wrt=0", fin(rg),
             wrt ? (double[]){3 * rr, 4 * rr} : (double[]){rr * (1 - 3 * 5.5 / 12.5), rr * (2 - 4 * 5.5 / 12.5)});
    }
    /* attention, one query, two keys, q = 0 (equal scores: p = [1/2, 1/2]), scale 1,
     * k = I, v = [[1], [3]], dy = [1]: dp = [1, 3], p.dp = 2, ds = [-1/2, 1/2];
     * dq = ds . k = [-1/2, 1/2]; dk = ds q = 0; dv = p dy = [1/2, 1/2]; dscores = ds */
    static const double want_att[4][4] = {{-0.5, 0.5}, {0, 0, 0, 0}, {0.5, 0.5}, {-0.5, 0.5}};
    for (int wrt = 0; wrt < 4; wrt++) {
        tc_begin(&t);
        double q[2] = {0, 0}, k[4] = {1, 0, 0, 1}, v[2] = {1, 3}, dyv = 1, mz[2] = {0, 0};
        ir_node *ag = nd(&t, OP_attention_grad, 4, input(&t, "q", DT_F64, shp(4, 1, 1, 1, 2), q, 0, 0),
                         input(&t, "k", DT_F64, shp(4, 1, 1, 2, 2), k, 0, 0),
                         input(&t, "v", DT_F64, shp(4, 1, 1, 2, 1), v, 0, 0),
                         input(&t, "dy", DT_F64, shp(4, 1, 1, 1, 1), &dyv, 0, 0));
        if (wrt == 3) { /* with a (zero) mask operand */
            ir_node *mk = input(&t, "m", DT_F64, shp(2, 1, 2), mz, 0, 0);
            ir_node *in5[5] = {ag->in[0], ag->in[1], ag->in[2], ag->in[3], mk};
            ag->n_in = 5;
            ag->in = ir_arena_alloc(&t.g->arena, sizeof in5);
            memcpy(ag->in, in5, sizeof in5);
        }
        ir_attr_set_float(ag, "scale", 1);
        ir_attr_set_int(ag, "wrt", wrt);
        char label[64];
        snprintf(label, sizeof label, "attention_grad wrt=%d", wrt);
        hand(&t, label, fin(ag), want_att[wrt]);
    }
}

/* ---- GPT-2 tiny -------------------------------------------------------------------------------- */

static void gpt2_case(void)
{
    ir_diag d;
    ir_diag_init(&d);
    int file = ir_diag_load_file(&d, "models/gpt2.loom");
    fe_define defs[] = {{"vocab", "64"}, {"d_model", "32"}, {"n_layer", "2"}, {"n_head", "4"},
                        {"ctx", "16"},   {"seq", "8"},      {"batch", "2"}};
    tcase t;
    memset(&t, 0, sizeof t);
    t.g = file >= 0 ? fe_build(&d, file, defs, (int)(sizeof defs / sizeof *defs)) : NULL;
    if (!t.g) {
        ir_diag_print(&d, stderr);
        CHECK(false, "gpt2: build");
        ir_diag_free(&d);
        return;
    }
    ir_diag_free(&d);
    /* values: tokens and targets random; params as `loom init` would (seed 1) */
    for (int i = 0; i < t.g->n_nodes; i++) {
        ir_node *n = t.g->nodes[i];
        if (n->op != OP_input && n->op != OP_param)
            continue;
        ir_tensor *v = ir_tensor_new(n->dtype, &n->shape);
        int64_t numel = ir_shape_numel(&n->shape);
        if (n->op == OP_param)
            rt_init_param(n, 1, 0, (size_t)numel, v->data);
        else
            for (int64_t j = 0; j < numel; j++)
                v->data[j] = floor(urand(0, 64));
        t.is_param[t.n_vals] = n->op == OP_param;
        t.vals[t.n_vals++] = (ir_named_tensor){strdup(n->name), v};
    }
    /* the model's init (std 0.02: logits of std ~0.1, and the input token's own logit
     * correlates with its embedding), then normal inits scaled by 1/10: loss -> ln(64) */
    double lnv = log(64.0), loss = run_scalar(t.g, &t, "loss");
    printf("%-40s loss at init %.6f, ln(64) = %.6f\n", "gpt2 tiny", loss, lnv);
    CHECK(fabs(loss - lnv) < 0.1, "gpt2: loss at init %.6f is not close to ln(64) = %.6f", loss, lnv);
    for (int i = 0, p = 0; i < t.g->n_nodes; i++) {
        ir_node *n = t.g->nodes[i];
        if (n->op != OP_input && n->op != OP_param)
            continue;
        if (n->op == OP_param && strcmp(ir_attr_str(n, "init"), "normal") == 0)
            for (int64_t j = 0; j < ir_shape_numel(&n->shape); j++)
                t.vals[p].t->data[j] *= 0.1;
        p++;
    }
    loss = run_scalar(t.g, &t, "loss");
    printf("%-40s loss at init %.6f, ln(64) = %.6f\n", "gpt2 tiny (init std / 10)", loss, lnv);
    CHECK(fabs(loss - lnv) < 0.01, "gpt2: loss at small init %.6f is not close to ln(64) = %.6f", loss, lnv);
    /* gradients at a perturbed point (so norms, biases and attention all matter) */
    for (int p = 0; p < t.n_vals; p++)
        if (t.is_param[p])
            for (int64_t j = 0; j < ir_shape_numel(&t.vals[p].t->shape); j++)
                t.vals[p].t->data[j] += urand(-0.2, 0.2);
    errs e = check_loss_grads(&t, "gpt2 tiny (3 elements per param)", 3);
    worst = fmax(worst, e.rel);
    tc_end(&t);
}

int main(void)
{
    unary_cases();
    binary_cases();
    layout_cases();
    reduce_cases();
    row_cases();
    matmul_cases();
    nn_cases();
    structure_cases();
    hand_cases();
    gpt2_case();
    printf("worst relative error %.3g (tolerance %.0e)\n", worst, TOL);
    if (failures)
        fprintf(stderr, "test_grad: %d failures\n", failures);
    return failures != 0;
}
