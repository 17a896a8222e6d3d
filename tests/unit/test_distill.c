/* test_distill.c — the distillation loss (passes/distill.c) on the reference interpreter in f64.
 *
 * A student (embedding [V, C] then a matmul [C, V]: logits [B, T, V]) and a teacher of the same
 * shape but its own width (C2) and weights; pass_distill with alpha 0.3 and T 2.
 *  1. The value: the rewritten graph's "loss" against alpha · CE + (1 − alpha) · T² · KL
 *     computed here from the logits with plain loops (one target is -1: CE skips it, KL counts
 *     every position), |err| <= 1e-12.
 *  2. The gradient: pass_autodiff's grad/<param> of the student's params against central
 *     finite differences (h = 1e-6) of the loss, every element, |err| <= 1e-6 · max(1, |g|);
 *     the teacher's params are inputs "teacher/NAME" with no gradient output. With alpha = 0
 *     (KL only) as well, so the KL term's gradient is checked on its own.
 *  3. Errors: a teacher whose logits differ in shape; alpha outside [0, 1].
 */
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/pass.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 3, V = 5, C = 4, C2 = 6 };
static const ir_loc LOC = {-1, 1, 1};
static int n_failed;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1p-53 * 2 - 1;
}

static ir_node *source(ir_graph *g, ir_opcode op, const char *name, ir_dtype dt, int rank, int64_t d0, int64_t d1,
                       int64_t d2)
{
    ir_node *n = ir_node_add(g, op, 0, NULL, LOC);
    n->name = ir_graph_strdup(g, name);
    n->dtype = dt;
    n->shape = (ir_shape){rank, {d0, d1, d2}};
    return n;
}

static ir_node *add(ir_graph *g, ir_opcode op, int n_in, ir_node **in, ir_diag *d)
{
    ir_node *n = ir_node_add(g, op, n_in, in, LOC);
    if (!ir_infer(n, d)) {
        ir_diag_print(d, stderr);
        abort();
    }
    return n;
}

/* logits = embedding(emb, tokens) @ w, outputs "logits" and (student) "loss". */
static ir_graph *model(const char *emb_name, const char *w_name, int width, bool student, ir_diag *d)
{
    ir_graph *g = ir_graph_new(student ? "student" : "teacher");
    ir_node *tok = source(g, OP_input, "tokens", DT_I32, 2, B, T, 0);
    ir_node *tgt = student ? source(g, OP_input, "targets", DT_I32, 2, B, T, 0) : NULL;
    ir_node *emb = source(g, OP_param, emb_name, DT_F32, 2, V, width, 0);
    ir_node *w = source(g, OP_param, w_name, DT_F32, 2, width, V, 0);
    for (int i = 0; i < g->n_nodes; i++)
        if (!ir_infer(g->nodes[i], d))
            abort();
    ir_node *x = add(g, OP_embedding, 2, (ir_node *[]){emb, tok}, d);
    ir_node *logits = add(g, OP_matmul, 2, (ir_node *[]){x, w}, d);
    if (student) {
        ir_node *loss = add(g, OP_cross_entropy, 2, (ir_node *[]){logits, tgt}, d);
        ir_node *o = add(g, OP_output, 1, &loss, d);
        o->name = "loss";
    } else {
        ir_node *o = add(g, OP_output, 1, &logits, d);
        o->name = "logits";
    }
    return g;
}

typedef struct {
    double tok[B * T], tgt[B * T];
    double emb[V * C], w[C * V], temb[V * C2], tw[C2 * V];
} values;

static ir_named_tensor tensor(const char *name, ir_dtype dt, ir_shape s, const double *data)
{
    ir_tensor *t = ir_tensor_new(dt, &s);
    memcpy(t->data, data, sizeof(double) * (size_t)ir_shape_numel(&s));
    return (ir_named_tensor){name, t};
}

/* Runs g on v; returns output `name`'s first element (and the whole tensor in *out if asked). */
static double run(const ir_graph *g, const values *v, const char *name, ir_tensor **out)
{
    ir_named_tensor in[] = {
        tensor("tokens", DT_I32, (ir_shape){2, {B, T}}, v->tok),
        tensor("targets", DT_I32, (ir_shape){2, {B, T}}, v->tgt),
        tensor("emb", DT_F32, (ir_shape){2, {V, C}}, v->emb),
        tensor("w", DT_F32, (ir_shape){2, {C, V}}, v->w),
        tensor("teacher/temb", DT_F32, (ir_shape){2, {V, C2}}, v->temb),
        tensor("teacher/tw", DT_F32, (ir_shape){2, {C2, V}}, v->tw),
    };
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *outs = NULL;
    int n_outs = 0;
    if (!ir_interp_run(g, IR_PREC_F64, in, 6, &outs, &n_outs, &d)) {
        ir_diag_print(&d, stderr);
        abort();
    }
    double r = NAN;
    for (int i = 0; i < n_outs; i++)
        if (strcmp(outs[i].name, name) == 0) {
            r = outs[i].t->data[0];
            if (out) {
                *out = outs[i].t;
                outs[i].t = ir_tensor_new(DT_F32, &(ir_shape){0, {0}});
            }
        }
    ir_named_tensors_free(outs, n_outs);
    for (int i = 0; i < 6; i++)
        ir_tensor_free(in[i].t);
    ir_diag_free(&d);
    return r;
}

/* logits of embedding(emb [V, width], tokens) @ w [width, V] at position p */
static void logits_at(const double *emb, const double *w, int width, int tok, double *z)
{
    for (int j = 0; j < V; j++) {
        z[j] = 0;
        for (int k = 0; k < width; k++)
            z[j] += emb[tok * width + k] * w[k * V + j];
    }
}

static double lse(const double *z, double scale)
{
    double m = -INFINITY, s = 0;
    for (int j = 0; j < V; j++)
        m = fmax(m, z[j] * scale);
    for (int j = 0; j < V; j++)
        s += exp(z[j] * scale - m);
    return m + log(s);
}

static double expected(const values *v, double alpha, double temp)
{
    double ce = 0, kl = 0;
    int n_ce = 0;
    for (int p = 0; p < B * T; p++) {
        double zs[V], zt[V];
        logits_at(v->emb, v->w, C, (int)v->tok[p], zs);
        logits_at(v->temb, v->tw, C2, (int)v->tok[p], zt);
        if (v->tgt[p] >= 0) {
            ce += lse(zs, 1) - zs[(int)v->tgt[p]];
            n_ce++;
        }
        double ls = lse(zs, 1 / temp), lt = lse(zt, 1 / temp);
        for (int j = 0; j < V; j++) {
            double lpt = zt[j] / temp - lt, lps = zs[j] / temp - ls;
            kl += exp(lpt) * (lpt - lps);
        }
    }
    return alpha * (n_ce ? ce / n_ce : 0) + (1 - alpha) * temp * temp * kl / (B * T);
}

static void check_case(const values *v0, double alpha, double temp)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *s = model("emb", "w", C, true, &d), *t = model("temb", "tw", C2, false, &d);
    if (!pass_distill(s, t, alpha, temp, &d) || !ir_verify(s, &d)) {
        ir_diag_print(&d, stderr);
        abort();
    }
    values v = *v0;
    double got = run(s, &v, "loss", NULL), want = expected(&v, alpha, temp);
    double err = fabs(got - want);
    bool ok = err <= 1e-12 * fmax(1, fabs(want));
    printf("distill alpha %g T %g: loss %.12f, by hand %.12f, err %.1e %s\n", alpha, temp, got, want, err,
           ok ? "ok" : "FAIL");
    n_failed += !ok;

    ir_graph *gg = ir_graph_clone(s);
    if (!pass_autodiff(gg, &d) || !ir_verify(gg, &d)) {
        ir_diag_print(&d, stderr);
        abort();
    }
    bool teacher_grad = false;
    for (int i = 0; i < gg->n_nodes; i++)
        teacher_grad |= gg->nodes[i]->op == OP_output && strncmp(gg->nodes[i]->name, "grad/teacher", 12) == 0;
    double max_abs = 0, max_rel = 0;
    const char *names[] = {"emb", "w"};
    double *params[] = {v.emb, v.w};
    int counts[] = {V * C, C * V};
    for (int p = 0; p < 2; p++) {
        char gname[32];
        snprintf(gname, sizeof gname, "grad/%s", names[p]);
        ir_tensor *g = NULL;
        run(gg, &v, gname, &g);
        for (int i = 0; i < counts[p]; i++) {
            double x = params[p][i], h = 1e-6;
            params[p][i] = x + h;
            double lp = run(s, &v, "loss", NULL);
            params[p][i] = x - h;
            double lm = run(s, &v, "loss", NULL);
            params[p][i] = x;
            double fd = (lp - lm) / (2 * h), e = fabs(g->data[i] - fd);
            max_abs = fmax(max_abs, e);
            max_rel = fmax(max_rel, e / fmax(1, fabs(fd)));
        }
        ir_tensor_free(g);
    }
    ok = max_rel <= 1e-6 && !teacher_grad;
    printf("distill alpha %g T %g: gradient vs finite differences, max abs %.1e rel %.1e; teacher without "
           "gradient: %s %s\n",
           alpha, temp, max_abs, max_rel, teacher_grad ? "no" : "yes", ok ? "ok" : "FAIL");
    n_failed += !ok;
    ir_graph_free(gg);
    ir_graph_free(s);
    ir_graph_free(t);
    ir_diag_free(&d);
}

static void check_error(const char *label, ir_graph *s, ir_graph *t, double alpha, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    bool ok = !pass_distill(s, t, alpha, 1, &d) && d.n_msg > 0 && strcmp(d.msg[0].msg, want) == 0;
    printf("%s: %s (%s)\n", label, ok ? "ok" : "FAIL", d.n_msg ? d.msg[0].msg : "no error");
    n_failed += !ok;
    ir_graph_free(s);
    ir_graph_free(t);
    ir_diag_free(&d);
}

int main(void)
{
    values v;
    for (int i = 0; i < B * T; i++) {
        v.tok[i] = (double)((i * 3) % V);
        v.tgt[i] = i == 2 ? -1 : (double)((i * 2 + 1) % V);
    }
    for (int i = 0; i < V * C; i++)
        v.emb[i] = urand(), v.w[i] = urand();
    for (int i = 0; i < V * C2; i++)
        v.temb[i] = 2 * urand(), v.tw[i] = 2 * urand();
    check_case(&v, 0.3, 2.0);
    check_case(&v, 0.0, 1.0);
    check_case(&v, 1.0, 4.0);

    ir_diag d;
    ir_diag_init(&d);
    ir_graph *wide = ir_graph_new("teacher");
    {
        ir_node *tok = source(wide, OP_input, "tokens", DT_I32, 2, B, T, 0);
        ir_node *emb = source(wide, OP_param, "temb", DT_F32, 2, V + 1, C, 0);
        ir_infer(tok, &d);
        ir_infer(emb, &d);
        ir_node *x = add(wide, OP_embedding, 2, (ir_node *[]){emb, tok}, &d);
        ir_node *o = add(wide, OP_output, 1, &x, &d);
        o->name = "logits";
    }
    check_error("distill error: teacher logits of another shape", model("emb", "w", C, true, &d), wide, 0.5,
                "distill: the teacher's logits are f32[2, 3, 4], the student's f32[2, 3, 5]");
    check_error("distill error: alpha", model("emb", "w", C, true, &d), model("temb", "tw", C2, false, &d), 1.5,
                "distill: alpha must be in [0, 1] and the temperature positive, got 1.5 and 1");
    ir_diag_free(&d);
    printf("%d failed\n", n_failed);
    return n_failed ? 1 : 0;
}
