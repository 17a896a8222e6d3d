/* test_ir_text.c — the textual IR: a graph built in C prints, parses back and prints to the same
 * text; floats round-trip bit for bit in the shortest form; parse errors carry the right
 * message, line and column; mutated and random input never crashes the parser (run under ASan);
 * the verifier catches a corrupted graph and names the node by its printed value number. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

#include "test_check.h"

/* ir_print into a malloc'd string. */
static char *print_str(const ir_graph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ir_print(g, f);
    fclose(f);
    return buf;
}

/* Parses text as source "t.lir"; NULL on error (messages stay in d). */
static ir_graph *parse_str(ir_diag *d, const char *text, size_t len)
{
    int file = ir_diag_add_source(d, "t.lir", text, len);
    return ir_parse(d, file);
}

static ir_node *source(ir_graph *g, ir_opcode op, const char *name, ir_dtype dt, int rank, const int64_t *dims)
{
    ir_node *n = ir_node_add(g, op, 0, NULL, (ir_loc){0, 0, 0});
    n->name = ir_graph_strdup(g, name);
    n->dtype = dt;
    n->shape.rank = rank;
    for (int i = 0; i < rank; i++)
        n->shape.dim[i] = dims[i];
    return n;
}

static ir_node *op(ir_graph *g, ir_diag *d, ir_opcode o, int n_in, ir_node *const *in)
{
    return ir_node_add(g, o, n_in, in, (ir_loc){0, 0, 0});
}

static void infer(ir_node *n, ir_diag *d)
{
    bool ok = ir_infer(n, d);
    CHECK(ok, "infer %s", ir_ops[n->op].mnemonic);
}

/* A small graph touching every attribute kind, names with escapes, mesh, shard and stage. */
static ir_graph *build(ir_diag *d)
{
    ir_graph *g = ir_graph_new("tiny");
    g->axis_name[g->n_axes++] = ir_graph_strdup(g, "dp");
    g->axis_name[g->n_axes++] = ir_graph_strdup(g, "tp");
    ir_node *x = source(g, OP_input, "x", DT_F32, 3, (int64_t[]){2, 4, 8});
    infer(x, d);
    ir_node *t = source(g, OP_input, "targets", DT_I32, 2, (int64_t[]){2, 4});
    t->optional = true;
    infer(t, d);
    ir_node *w = source(g, OP_param, "h.0.\"odd\"\\name\n", DT_F32, 2, (int64_t[]){8, 8});
    ir_attr_set_str(g, w, "init", "normal");
    ir_attr_set_float(w, "scale", 0.02);
    w->shard = (ir_shard){true, {IR_REPLICATED, 1}};
    infer(w, d);
    ir_node *mm = op(g, d, OP_matmul, 2, (ir_node *[]){x, w});
    mm->stage = 0;
    infer(mm, d);
    ir_node *ge = op(g, d, OP_gelu, 1, (ir_node *[]){mm});
    ir_attr_set_str(g, ge, "approx", "erf");
    infer(ge, d);
    ir_node *lw = source(g, OP_param, "ln.w", DT_F32, 1, (int64_t[]){8});
    ir_attr_set_str(g, lw, "init", "ones");
    infer(lw, d);
    ir_node *ln = op(g, d, OP_layernorm, 3, (ir_node *[]){ge, lw, lw});
    infer(ln, d);
    ir_node *rs = op(g, d, OP_reshape, 1, (ir_node *[]){ln});
    ir_attr_set_ints(g, rs, "shape", 2, (int64_t[]){8, -1});
    infer(rs, d);
    ir_node *tr = op(g, d, OP_transpose, 1, (ir_node *[]){rs});
    ir_attr_set_ints(g, tr, "perm", 2, (int64_t[]){1, 0});
    infer(tr, d);
    ir_node *ca = op(g, d, OP_cast, 1, (ir_node *[]){tr});
    ir_attr_set_dtype(ca, "to", DT_F16);
    infer(ca, d);
    ir_node *su = op(g, d, OP_sum, 1, (ir_node *[]){ln});
    ir_attr_set_ints(g, su, "axes", 0, NULL);
    infer(su, d);
    ir_node *c = source(g, OP_const, NULL, DT_F32, 0, NULL);
    c->name = NULL;
    ir_attr_set_float(c, "value", -INFINITY);
    infer(c, d);
    ir_node *ad = op(g, d, OP_add, 2, (ir_node *[]){su, c});
    infer(ad, d);
    ir_node *o1 = op(g, d, OP_output, 1, (ir_node *[]){ca});
    o1->name = ir_graph_strdup(g, "y");
    infer(o1, d);
    ir_node *o2 = op(g, d, OP_output, 1, (ir_node *[]){ad});
    o2->name = ir_graph_strdup(g, "loss");
    infer(o2, d);
    return g;
}

static void test_round_trip(void)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = build(&d);
    CHECK(ir_verify(g, &d), "built graph verifies");
    char *t1 = print_str(g);
    ir_graph *g2 = parse_str(&d, t1, strlen(t1));
    CHECK(g2, "reparse of:\n%s", t1);
    if (g2) {
        CHECK(ir_verify(g2, &d), "parsed graph verifies");
        char *t2 = print_str(g2);
        CHECK(strcmp(t1, t2) == 0, "round trip differs:\n%s\n----\n%s", t1, t2);
        free(t2);
        /* a clone prints the same too */
        ir_graph *g3 = ir_graph_clone(g2);
        char *t3 = print_str(g3);
        CHECK(strcmp(t1, t3) == 0, "clone differs");
        free(t3);
        ir_graph_free(g3);
    }
    CHECK(strstr(t1, "  %2 = param \"h.0.\\\"odd\\\"\\\\name\\n\" {init = normal, scale = 0.02} : f32[8, 8] shard [_, tp]\n"),
          "param line in:\n%s", t1);
    CHECK(strstr(t1, "  %3 = matmul %0, %2 {transpose_a = 0, transpose_b = 0} : f32[2, 4, 8] stage 0\n"), "matmul");
    CHECK(strstr(t1, "{eps = 1e-05}"), "eps");
    CHECK(strstr(t1, "{shape = [8, -1]}"), "ints");
    CHECK(strstr(t1, "{axes = [], keepdim = 0}"), "empty ints");
    CHECK(strstr(t1, "{to = f16}"), "dtype attr");
    CHECK(strstr(t1, "{value = -inf}"), "-inf");
    CHECK(strstr(t1, "  output \"loss\" %12\n}\n"), "outputs");
    CHECK(strncmp(t1, "graph tiny {\n  mesh dp, tp\n  %0 = input \"x\" : f32[2, 4, 8]\n"
                      "  %1 = input \"targets\" optional : i32[2, 4]\n", 100) == 0, "head:\n%s", t1);
    ir_diag_print(&d, stderr);
    CHECK(ir_diag_ok(&d), "no diagnostics");
    free(t1);
    ir_graph_free(g);
    ir_graph_free(g2);
    ir_diag_free(&d);
}

/* Every float prints in the shortest form and reads back to the same bits. */
static void test_floats(void)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {1e-05, "1e-05"}, {0.02, "0.02"}, {10000, "10000"}, {0.5, "0.5"}, {0, "0"}, {-0.0, "-0"},
        {1.0 / 3, "0.3333333333333333"}, {1e16, "1e+16"}, {123456789, "123456789"}, {-2.5, "-2.5"},
        {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {0.1, "0.1"},
        {1e-12, "1e-12"}, {INFINITY, "inf"}, {NAN, "nan"},
    };
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = ir_graph_new("floats");
    int n = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; i < n; i++) {
        ir_node *c = source(g, OP_const, NULL, DT_F64, 0, NULL);
        ir_attr_set_float(c, "value", cases[i].v);
    }
    char *t = print_str(g);
    ir_graph *g2 = parse_str(&d, t, strlen(t));
    CHECK(g2 && g2->n_nodes == n, "parse floats:\n%s", t);
    for (int i = 0; g2 && i < n; i++) {
        char want[96];
        snprintf(want, sizeof want, "  %%%d = const {value = %s} : f64[]\n", i, cases[i].text);
        CHECK(strstr(t, want), "float %d printed as expected: %s", i, want);
        double back = g2->nodes[i]->attr[0].f;
        CHECK(memcmp(&back, &cases[i].v, sizeof back) == 0 || (isnan(back) && isnan(cases[i].v)),
              "float %s reads back as %.17g", cases[i].text, back);
    }
    free(t);
    ir_graph_free(g);
    ir_graph_free(g2);
    ir_diag_free(&d);
}

/* Parses text expecting failure with the first message at line:col equal to msg. */
static void expect_error(const char *text, int line, int col, const char *msg)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = parse_str(&d, text, strlen(text));
    CHECK(!g, "expected an error for:\n%s", text);
    CHECK(d.n_msg > 0 && d.msg[0].line == line && d.msg[0].col == col && strcmp(d.msg[0].msg, msg) == 0,
          "want %d:%d: %s, got %d:%d: %s", line, col, msg, d.n_msg ? d.msg[0].line : 0, d.n_msg ? d.msg[0].col : 0,
          d.n_msg ? d.msg[0].msg : "(none)");
    ir_graph_free(g);
    ir_diag_free(&d);
}

static void test_errors(void)
{
    expect_error("graph g {\n  %0 = input \"x\" : f32[2]\n  %1 = mull %0 : f32[2]\n}\n", 3, 8, "unknown op 'mull'");
    expect_error("graph g {\n  %0 = neg %7 : f32[2]\n}\n", 2, 12, "undefined value %7");
    expect_error("graph g {\n  %3 = input \"x\" : f32[2]\n  %3 = input \"y\" : f32[2]\n}\n", 3, 3,
                 "value %3 defined twice");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2, 2]\n  %1 = matmul %0, %0, %0 : f32[2, 2]\n}\n", 3, 8,
                 "matmul expects 2 operands, got 3");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2]\n  %1 = gelu %0 {approx = 1} : f32[2]\n}\n", 3, 26,
                 "attribute 'approx' of gelu expects an identifier");
    expect_error("graph g {\n  %0 = input \"x\" : i33[2]\n}\n", 2, 20, "unknown dtype 'i33'");
    expect_error("graph g {\n  mesh dp\n  %0 = input \"x\" : f32[2] shard [tp]\n}\n", 3, 34,
                 "unknown mesh axis 'tp' (mesh has dp)");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2] shard [_]\n  %1 = input \"x\" : f32[2]\n}\n", 3, 14,
                 "duplicate input name \"x\"");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp %0 : f32[3]\n}\n", 3, 17,
                 "%1: declared f32[3] but exp infers f32[2]");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp %0\n}\n", 3, 14,
                 "expected ':' and the result type at end of line");
    expect_error("", 1, 1, "expected 'graph', got end of file");
    expect_error("graph g {\n", 2, 1, "expected '}' to close graph g, got end of file");
    expect_error("graph g {\n  %0 = input \"x\" : f32[2]\n}\ntrailing\n", 4, 1,
                 "unexpected text after the end of the graph");
    expect_error("graph g {\n  %0 = input \"x\" : f32[99999999999999999999]\n}\n", 2, 24,
                 "integer 99999999999999999999 is out of range");
}

/* Several errors in one file: one per bad line, no cascade from poisoned values. */
static void test_recovery(void)
{
    const char *text = "graph g {\n"
                       "  %0 = input \"x\" : f32[2]\n"
                       "  %1 = mull %0 : f32[2]\n"     /* unknown op */
                       "  %2 = exp %1 : f32[2]\n"      /* uses poisoned %1: quiet */
                       "  %3 = exp %0 : f33[2]\n"      /* unknown dtype */
                       "  %4 = exp %0 : f32[2] junk\n" /* trailing junk */
                       "  output \"y\" %2\n"           /* poisoned: quiet */
                       "}\n";
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = parse_str(&d, text, strlen(text));
    CHECK(!g && d.n_errors == 3, "three errors, got %d", d.n_errors);
    ir_graph_free(g);
    ir_diag_free(&d);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mutated valid text and pure garbage: the parser either succeeds with a verified graph or
 * reports errors; it never crashes (ASan/UBSan abort otherwise). */
static void test_garbage(void)
{
    ir_diag d0;
    ir_diag_init(&d0);
    ir_graph *g = build(&d0);
    char *base = print_str(g);
    size_t n = strlen(base);
    char *buf = malloc(n + 64);
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(buf, base, n);
        size_t len = n;
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rng() % len;
            switch (rng() % 3) {
            case 0: buf[at] = (char)(rng() & 0xff); break;                          /* flip */
            case 1: memmove(buf + at, buf + at + 1, len - at - 1), len--; break;  /* delete */
            default: memmove(buf + at + 1, buf + at, len - at), buf[at] = "%{}[],:=\"0-_\n\0"[rng() % 14], len++;
            }
        }
        ir_diag d;
        ir_diag_init(&d);
        ir_graph *p = parse_str(&d, buf, len);
        if (p)
            CHECK(ir_verify(p, &d), "a parsed graph verifies");
        CHECK(!p == !ir_diag_ok(&d), "NULL exactly when errors");
        ir_graph_free(p);
        ir_diag_free(&d);
    }
    /* random bytes, a 1 MB line, many nested brackets */
    size_t big = 1 << 20;
    char *junk = malloc(big + 32);
    for (size_t i = 0; i < big; i++)
        junk[i] = (char)(rng() & 0xff);
    ir_diag d;
    ir_diag_init(&d);
    CHECK(!parse_str(&d, junk, big), "random bytes fail");
    ir_diag_free(&d);
    memcpy(junk, "graph g {\n  %0 = input \"x\" : f32[", 33);
    for (size_t i = 33; i < big; i++)
        junk[i] = i % 2 ? '1' : ',';
    ir_diag_init(&d);
    CHECK(!parse_str(&d, junk, big), "1 MB line fails");
    ir_diag_free(&d);
    memset(junk, '[', big);
    ir_diag_init(&d);
    CHECK(!parse_str(&d, junk, big), "brackets fail");
    ir_diag_free(&d);
    free(junk);
    free(buf);
    free(base);
    ir_graph_free(g);
    ir_diag_free(&d0);
}

/* A corrupted type and an operand used before its definition are reported with value numbers. */
static void test_verifier(void)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = build(&d);
    g->nodes[3]->shape.dim[2] = 9; /* %3 = matmul */
    CHECK(!ir_verify(g, &d), "bad type caught");
    bool found = false;
    for (int i = 0; i < d.n_msg; i++)
        found |= strcmp(d.msg[i].msg, "%3 = matmul: type f32[2, 4, 9] but matmul infers f32[2, 4, 8]") == 0;
    CHECK(found, "verifier message, first: %s", d.n_msg ? d.msg[0].msg : "(none)");
    ir_graph_free(g);
    ir_diag_free(&d);

    ir_diag_init(&d);
    g = build(&d);
    ir_node *tmp = g->nodes[3]; /* swap matmul and gelu: gelu now uses a later value */
    g->nodes[3] = g->nodes[4];
    g->nodes[4] = tmp;
    g->nodes[3]->id = 3;
    g->nodes[4]->id = 4;
    CHECK(!ir_verify(g, &d), "use before definition caught");
    CHECK(d.n_msg > 0 && strcmp(d.msg[0].msg, "%3 = gelu: operand 0 (%4) is not defined before its use") == 0,
          "got: %s", d.n_msg ? d.msg[0].msg : "(none)");
    ir_graph_free(g);
    ir_diag_free(&d);
}

int main(void)
{
    test_round_trip();
    test_floats();
    test_errors();
    test_recovery();
    test_garbage();
    test_verifier();
    if (failures) {
        fprintf(stderr, "test_ir_text: %d failures\n", failures);
        return 1;
    }
    printf("test_ir_text: OK\n");
    return 0;
}
