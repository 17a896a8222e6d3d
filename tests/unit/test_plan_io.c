/* test_plan_io.c — the plan file (plan/plan_io.h): a plan using every step kind survives
 * serialize → deserialize → serialize byte for byte, blobs included; and the reader rejects,
 * with a message naming the problem, truncated and corrupt files, a future version, and plans
 * whose steps reach outside their buffers or the arena. */
#include <stdlib.h>
#include <string.h>

#include "plan/plan_io.h"
#include "test_check.h"

static int add_buf(rt_plan *p, const char *name, ir_dtype dt, int64_t numel, rt_buf_kind kind, int64_t offset)
{
    p->bufs = realloc(p->bufs, sizeof *p->bufs * (size_t)(p->n_bufs + 1));
    p->bufs[p->n_bufs] = (rt_plan_buffer){strdup(name), dt, numel, kind, offset};
    return p->n_bufs++;
}

static rt_plan_step *add_step(rt_plan *p, rt_step_kind kind)
{
    p->steps = realloc(p->steps, sizeof *p->steps * (size_t)(p->n_steps + 1));
    rt_plan_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

/* x[4, 8] (param), w[8, 8] (param), ids[4] (input), act arena buffers, out[4, 8] (output). */
static void make_plan(rt_plan *p)
{
    memset(p, 0, sizeof *p);
    int x = add_buf(p, "x", DT_F32, 32, RT_BUF_PARAM, 0);
    int w = add_buf(p, "w", DT_F32, 64, RT_BUF_PARAM, 0);
    int ids = add_buf(p, "ids", DT_I32, 4, RT_BUF_INPUT, 0);
    int h = add_buf(p, "h", DT_F32, 32, RT_BUF_ACTIVATION, 0);
    int a = add_buf(p, "a", DT_F32, 32, RT_BUF_ACTIVATION, 128);
    int out = add_buf(p, "out", DT_F32, 32, RT_BUF_OUTPUT, 0);
    int grad = add_buf(p, "grad", DT_F32, 64, RT_BUF_ACTIVATION, 256);
    int lse = add_buf(p, "lse", DT_F32, 8, RT_BUF_ACTIVATION, 512), delta = add_buf(p, "delta", DT_F32, 8, RT_BUF_ACTIVATION, 576);
    p->arena_bytes = 640;

    rt_plan_step *s = add_step(p, RT_STEP_CHECK_IDS);
    s->check = (rt_plan_check){{ids, 0}, 4, 0, 8, true, strdup("embedding")};
    s = add_step(p, RT_STEP_KERNEL);
    s->kernel.name = strdup("k1_add");
    s->kernel.n_args = 2;
    s->kernel.args = malloc(2 * sizeof *s->kernel.args);
    s->kernel.args[0] = (rt_plan_ref){x, 0};
    s->kernel.args[1] = (rt_plan_ref){h, 0};
    s->kernel.grid0 = 4;
    s->kernel.work = 8;
    s = add_step(p, RT_STEP_GEMM);
    s->gemm = (rt_plan_gemm){.M = 4, .N = 8, .K = 8, .lda = 8, .ldb = 8, .ldc = 8, .alpha = 1, .beta = 0.5,
                             .a = {h, 0}, .b = {w, 0}, .c = {a, 0}, .bias = {-1, 0}, .act = RT_ACT_GELU_TANH};
    s->gemm.epi = (rt_plan_kernel){strdup("k2_gelu_epilogue"), 1, malloc(sizeof(rt_plan_ref)), 4, 8, false};
    s->gemm.epi.args[0] = (rt_plan_ref){a, 0};
    s = add_step(p, RT_STEP_ATTENTION);
    s->attn = (rt_plan_attention){.q = {a, 0}, .k = {h, 0}, .v = {h, 0}, .mask = {-1, 0}, .out = {out, 0}, .lse = {lse, 0},
                                  .B = 1, .H = 2, .G = 1, .T = 4, .S = 4, .D = 4, .E = 4,
                                  .q_stride = {32, 4, 8}, .k_stride = {32, 0, 8}, .v_stride = {32, 0, 8},
                                  .out_stride = {32, 4, 8}, .causal = 1, .scale = 0.5};
    s = add_step(p, RT_STEP_COPY);
    s->copy = (rt_plan_copy){{a, 0}, {out, 0}, 128};
    s = add_step(p, RT_STEP_WRITE_ROWS);
    s->rows = (rt_plan_write_rows){{a, 0}, {h, 0}, {ids, 0}, DT_I32, 2, 4, 2, 16};
    s = add_step(p, RT_STEP_ATTENTION_GRAD);
    s->agrad.fwd = p->steps[3].attn;
    s->agrad.dy = (rt_plan_ref){a, 0};
    memcpy(s->agrad.dy_stride, (int64_t[]){32, 4, 8}, sizeof s->agrad.dy_stride);
    s->agrad.dq = (rt_plan_ref){grad, 0};
    s->agrad.dk = (rt_plan_ref){h, 0};
    s->agrad.dv = (rt_plan_ref){-1, 0};
    s->agrad.dmask = (rt_plan_ref){-1, 0};
    s->agrad.delta = (rt_plan_ref){delta, 0};
    /* the step as kernels (plan.h): two of them over its buffers */
    s->n_lib = 2;
    for (int l = 0; l < 2; l++) {
        s->lib[l] = (rt_plan_kernel){strdup(l ? "k6_attention_dq" : "k6_attention_stats"), 2, malloc(2 * sizeof(rt_plan_ref)),
                                     8, 32, true};
        s->lib[l].args[0] = (rt_plan_ref){lse, 0};
        s->lib[l].args[1] = (rt_plan_ref){l ? grad : delta, 0};
    }
    s = add_step(p, RT_STEP_SCATTER_ADD);
    s->scatter = (rt_plan_scatter){{ids, 0}, {h, 0}, {grad, 0}, DT_I32, 4, 8, 8, 8};
    s = add_step(p, RT_STEP_SUM_ROWS);
    s->sum_rows = (rt_plan_sum_rows){{h, 0}, {grad, 0}, 4, 8, 8};
}

static const rt_plan_blob BLOBS[] = {{"target", (uint8_t *)"cpu", 3}, {"empty", NULL, 0}};

/* Serializes p, parses it back; returns whether it parsed and the first error message. */
static bool roundtrip(const rt_plan *p, char *msg, size_t cap)
{
    size_t n;
    uint8_t *bytes = rt_plan_serialize(p, BLOBS, 2, &n);
    rt_plan q;
    rt_plan_blob *blobs;
    int nb;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = rt_plan_deserialize(bytes, n, "t", &q, &blobs, &nb, &d);
    msg[0] = 0;
    if (!ok && d.n_msg > 0)
        snprintf(msg, cap, "%s", d.msg[0].msg);
    if (ok) {
        rt_plan_clear(&q);
        rt_plan_blobs_free(blobs, nb);
    }
    ir_diag_free(&d);
    free(bytes);
    return ok;
}

/* Parses bytes; expects failure with `want` in the first message. */
static void expect_reject(const uint8_t *bytes, size_t n, const char *want, const char *what)
{
    rt_plan q;
    rt_plan_blob *blobs;
    int nb;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = rt_plan_deserialize(bytes, n, "t", &q, &blobs, &nb, &d);
    CHECK(!ok, "%s: accepted", what);
    CHECK(!ok && d.n_msg > 0 && strstr(d.msg[0].msg, want), "%s: message '%s', expected '%s'", what,
          d.n_msg ? d.msg[0].msg : "", want);
    if (ok) {
        rt_plan_clear(&q);
        rt_plan_blobs_free(blobs, nb);
    }
    ir_diag_free(&d);
}

static void test_roundtrip(void)
{
    rt_plan p;
    make_plan(&p);
    size_t n, n2;
    uint8_t *bytes = rt_plan_serialize(&p, BLOBS, 2, &n);
    rt_plan q;
    rt_plan_blob *blobs;
    int nb;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = rt_plan_deserialize(bytes, n, "t", &q, &blobs, &nb, &d);
    CHECK(ok, "a valid plan was rejected: %s", d.n_msg ? d.msg[0].msg : "");
    if (ok) {
        CHECK(q.n_bufs == p.n_bufs && q.n_steps == p.n_steps && q.arena_bytes == 640, "counts differ");
        CHECK(nb == 2 && blobs[0].size == 3 && memcmp(blobs[0].data, "cpu", 3) == 0 && blobs[1].size == 0,
              "blobs differ");
        CHECK(rt_plan_blob_find(blobs, nb, "target") == &blobs[0] && !rt_plan_blob_find(blobs, nb, "x"), "blob lookup");
        uint8_t *again = rt_plan_serialize(&q, blobs, nb, &n2);
        CHECK(n2 == n && memcmp(again, bytes, n) == 0, "re-serialized plan differs (%zu vs %zu bytes)", n2, n);
        free(again);
        rt_plan_clear(&q);
        rt_plan_blobs_free(blobs, nb);
    }
    printf("roundtrip: %d buffers, %d steps (every kind), %zu bytes\n", p.n_bufs, p.n_steps, n);

    /* damaged files */
    expect_reject(bytes, 20, "not a loom plan", "shorter than the header");
    expect_reject(bytes, n - 1, "truncated or padded plan", "one byte short");
    uint8_t *bad = malloc(n);
    memcpy(bad, bytes, n);
    bad[n / 2] ^= 1;
    expect_reject(bad, n, "checksum mismatch", "a flipped bit");
    memcpy(bad, bytes, n);
    bad[8] = RT_PLAN_FILE_VERSION + 1;
    char want[100];
    snprintf(want, sizeof want, "plan format version %d, this runtime reads version %d", RT_PLAN_FILE_VERSION + 1,
             RT_PLAN_FILE_VERSION);
    expect_reject(bad, n, want, "another version");
    memcpy(bad, bytes, n);
    bad[0] = 'X';
    expect_reject(bad, n, "not a loom plan", "bad magic");
    free(bad);
    free(bytes);
    rt_plan_clear(&p);
}

/* A step record that runs past the end of the file is reported, not a silent failure: one
 * kernel step whose name's length runs past the end (checksum right). rt_plan_deserialize used
 * to return false with no message here, and a `loom build` executable whose payload had a
 * damaged step count (tests/errors/build.test, COUNT) exited 0 without a word. */
static void test_step_past_end(void)
{
    rt_wbuf body = {0};
    rt_wbuf_i64(&body, 0);              /* arena */
    rt_wbuf_u32(&body, 0);              /* buffers */
    rt_wbuf_u32(&body, 1);              /* steps */
    rt_wbuf_u32(&body, RT_STEP_KERNEL); /* kind */
    rt_wbuf_u32(&body, 1000);           /* the name's length: past the end */
    rt_wbuf file = {0};
    rt_wbuf_bytes(&file, RT_PLAN_FILE_MAGIC, 8);
    rt_wbuf_u32(&file, RT_PLAN_FILE_VERSION);
    rt_wbuf_u32(&file, 0);
    rt_wbuf_u64(&file, body.n);
    rt_wbuf_u64(&file, rt_fnv1a64(body.data, body.n));
    rt_wbuf_bytes(&file, body.data, body.n);
    expect_reject(file.data, file.n, "malformed plan", "a step past the end");
    free(body.data);
    free(file.data);
}

/* One broken field at a time; each must be rejected naming the problem. */
static void test_validation(void)
{
    struct {
        const char *what, *want;
        void (*apply)(rt_plan *p);
    } cases[] = {
        {"gemm A past its buffer", "gemm A: reaches past the end", NULL},
        {"buffer ref out of range", "buffer reference out of range", NULL},
        {"activation outside the arena", "lies outside the arena", NULL},
        {"duplicate param name", "has the name of an earlier buffer", NULL},
        {"attention head groups", "bad sizes, head groups", NULL},
        {"copy too long", "copy src: reaches past the end", NULL},
        {"ids of a float buffer", "ids are not integers", NULL},
        {"scatter past dst", "scatter_add dst: reaches past the end", NULL},
        {"write_rows src past its end", "write_rows src: reaches past the end", NULL},
        {"kernel without a name", "missing name", NULL},
        {"sum_rows past src", "sum_rows src: reaches past the end", NULL},
        /* the executors once aborted on these ("internal compiler error ... gemm: leading dim
         * exceeds int"), segfaulted, or ran with OpenBLAS rejecting lda 0 (outputs wrong) */
        {"gemm leading dim beyond int", "gemm: a size or leading dimension beyond int", NULL},
        {"attention zero row stride", "attention: a row stride smaller than a row", NULL},
        {"attention_grad sizes overflow", "attention_grad dq: sizes whose product overflows", NULL},
        {"attention_grad dy zero row stride", "attention_grad dy: a row stride smaller than a row", NULL},
        {"epilogue not over C's rows", "an epilogue kernel that is not over C", NULL},
        {"activation without a kernel", "an activation without an epilogue kernel", NULL},
        {"epilogue without C", "an epilogue kernel that is not over C", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rt_plan p;
        make_plan(&p);
        switch (i) {
        case 0: p.steps[2].gemm.M = 5; break;
        case 1: p.steps[1].kernel.args[1].buf = 99; break;
        case 2: p.bufs[4].offset = 576; break;
        case 3: free(p.bufs[1].name), p.bufs[1].name = strdup("x"); break;
        case 4: p.steps[3].attn.G = 3; break;
        case 5: p.steps[4].copy.bytes = 129; break;
        case 6: p.steps[0].check.ids.buf = 3; break;
        case 7: p.steps[7].scatter.rows = 9; break;
        case 8: p.steps[5].rows.row_bytes = 33; break;
        case 9: p.steps[1].kernel.name[0] = 0; break;
        case 10: p.steps[8].sum_rows.rows = 5; break;
        case 11: p.steps[2].gemm.ldb = (int64_t)1 << 33; break;
        case 12: p.steps[3].attn.k_stride[2] = 0; break;
        case 13: { /* zero batch and head strides keep the operands in bounds; B·H·T·D overflows */
            rt_plan_attention_grad *g = &p.steps[6].agrad;
            g->fwd.B = (int64_t)1 << 40, g->fwd.H = (int64_t)1 << 24, g->fwd.G = 1;
            g->fwd.q_stride[0] = g->fwd.q_stride[1] = g->fwd.k_stride[0] = g->fwd.v_stride[0] = 0;
            g->dy_stride[0] = g->dy_stride[1] = 0;
            break;
        }
        case 14: p.steps[6].agrad.dy_stride[2] = 0; break;
        case 15: p.steps[2].gemm.epi.grid0 = 3; break;
        case 16: free(p.steps[2].gemm.epi.name), p.steps[2].gemm.epi.name = NULL; break;
        case 17: p.steps[2].gemm.epi.args[0].buf = 1; break;
        }
        char msg[512];
        bool ok = roundtrip(&p, msg, sizeof msg);
        CHECK(!ok && strstr(msg, cases[i].want), "%s: %s (message '%s', expected '%s')", cases[i].what,
              ok ? "accepted" : "wrong message", msg, cases[i].want);
        if (!ok)
            printf("rejected %-30s %s\n", cases[i].what, msg);
        rt_plan_clear(&p);
    }
}

/* Copies of nothing: zero bytes from an empty buffer are fine (a graph's empty value output
 * under two names: fuzz/corpus/diff/finding-empty-output-copy.lir); a byte is not. */
static void test_empty_copy(void)
{
    for (int bytes = 0; bytes < 2; bytes++) {
        rt_plan p;
        memset(&p, 0, sizeof p);
        int a = add_buf(&p, "a", DT_F32, 0, RT_BUF_OUTPUT, 0);
        int b = add_buf(&p, "b", DT_F32, 0, RT_BUF_OUTPUT, 0);
        rt_plan_step *s = add_step(&p, RT_STEP_COPY);
        s->copy = (rt_plan_copy){{a, 0}, {b, 0}, bytes};
        char msg[512];
        bool ok = roundtrip(&p, msg, sizeof msg);
        CHECK(ok == (bytes == 0), "a copy of %d bytes from an empty buffer: %s (%s)", bytes,
              ok ? "accepted" : "refused", msg);
        CHECK(ok || strstr(msg, "copy src: reaches past the end"), "message '%s'", msg);
        rt_plan_clear(&p);
    }
}

/* An empty forward attention (no queries, or no keys: rows of 0) is valid, its backward not
 * (fuzz/corpus/diff/finding-empty-attention.lir: loom build refused a graph loom run runs). */
static void test_empty_attention(void)
{
    for (int grad = 0; grad < 2; grad++)
        for (int which = 0; which < 2; which++) {
            rt_plan p;
            make_plan(&p);
            rt_plan_attention *a = grad ? &p.steps[6].agrad.fwd : &p.steps[3].attn;
            if (which == 0)
                a->T = 0;
            else
                a->S = 0;
            char msg[512];
            bool ok = roundtrip(&p, msg, sizeof msg);
            CHECK(ok == !grad, "%s with %s = 0: %s (%s)", grad ? "attention_grad" : "attention", which ? "S" : "T",
                  ok ? "accepted" : "refused", msg);
            rt_plan_clear(&p);
        }
}

int main(void)
{
    test_roundtrip();
    test_step_past_end();
    test_validation();
    test_empty_copy();
    test_empty_attention();
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("all plan file tests passed\n");
    return failures != 0;
}
