/* plan_print.c — the text form of an execution plan (plan_print.h). Every step kind has its
 * case in print_step's switch (no default: a new kind does not build until it prints). */
#include "plan/plan_print.h"

#include <inttypes.h>
#include <stdlib.h>

const char *rt_plan_buf_kind_name(rt_buf_kind k)
{
    switch (k) {
    case RT_BUF_PARAM: return "param";
    case RT_BUF_INPUT: return "input";
    case RT_BUF_OUTPUT: return "output";
    case RT_BUF_ACTIVATION: return "activation";
    case RT_BUF_CONSTANT: return "constant";
    }
    return "?";
}

const char *rt_plan_step_kind_name(rt_step_kind k)
{
    switch (k) {
    case RT_STEP_KERNEL: return "kernel";
    case RT_STEP_GEMM: return "gemm";
    case RT_STEP_ATTENTION: return "attention";
    case RT_STEP_COPY: return "copy";
    case RT_STEP_CHECK_IDS: return "check_ids";
    case RT_STEP_WRITE_ROWS: return "write_rows";
    case RT_STEP_ATTENTION_GRAD: return "attention_grad";
    case RT_STEP_SCATTER_ADD: return "scatter_add";
    case RT_STEP_SUM_ROWS: return "sum_rows";
    }
    return "?";
}

const char *rt_plan_act_name(int act)
{
    switch (act) {
    case RT_ACT_NONE: return "none";
    case RT_ACT_GELU_TANH: return "gelu_tanh";
    case RT_ACT_GELU_ERF: return "gelu_erf";
    case RT_ACT_RELU: return "relu";
    case RT_ACT_SILU: return "silu";
    }
    return "?";
}

/* A string in double quotes, with \" \\ and \xNN for anything unprintable. */
static void put_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* The shortest %g form of v that reads back as v. */
static void put_double(double v, FILE *out)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

static void put_ref(const char *key, rt_plan_ref r, FILE *out)
{
    if (key)
        fprintf(out, " %s=", key);
    if (r.buf < 0)
        fputs("none", out);
    else if (r.offset == 0)
        fprintf(out, "b%d", r.buf);
    else
        fprintf(out, "b%d+%" PRId64, r.buf, r.offset);
}

static void put_i64(const char *key, int64_t v, FILE *out) { fprintf(out, " %s=%" PRId64, key, v); }

static void put_list(const char *key, const int64_t *v, int n, FILE *out)
{
    fprintf(out, " %s=[", key);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%" PRId64, i ? ", " : "", v[i]);
    fputc(']', out);
}

/* q, k, v, mask, out, the shape, the strides (mask's only with a mask), causal and scale. */
static void put_attention(const rt_plan_attention *a, FILE *out)
{
    put_ref("q", a->q, out);
    put_ref("k", a->k, out);
    put_ref("v", a->v, out);
    put_ref("mask", a->mask, out);
    put_ref("out", a->out, out);
    if (a->lse.buf >= 0)
        put_ref("lse", a->lse, out);
    put_i64("B", a->B, out);
    put_i64("H", a->H, out);
    put_i64("G", a->G, out);
    put_i64("T", a->T, out);
    put_i64("S", a->S, out);
    put_i64("D", a->D, out);
    put_i64("E", a->E, out);
    put_list("q_stride", a->q_stride, 3, out);
    put_list("k_stride", a->k_stride, 3, out);
    put_list("v_stride", a->v_stride, 3, out);
    if (a->out.buf >= 0)
        put_list("out_stride", a->out_stride, 3, out);
    if (a->mask.buf >= 0)
        put_list("mask_stride", a->mask_stride, 4, out);
    put_i64("causal", a->causal, out);
    fputs(" scale=", out);
    put_double(a->scale, out);
}

/* " NAME(b1, b2+4) grid=G work=W" */
static void put_kernel(const rt_plan_kernel *k, FILE *out)
{
    fprintf(out, " %s(", k->name ? k->name : "?");
    for (int i = 0; i < k->n_args; i++) {
        if (i)
            fputs(", ", out);
        put_ref(NULL, k->args[i], out);
    }
    fputc(')', out);
    put_i64("grid", k->grid0, out);
    put_i64("work", k->work, out);
}

static void print_step(const rt_plan_step *s, FILE *out)
{
    switch (s->kind) {
    case RT_STEP_KERNEL:
        put_kernel(&s->kernel, out);
        break;
    case RT_STEP_GEMM: {
        const rt_plan_gemm *g = &s->gemm;
        put_ref("a", g->a, out);
        put_ref("b", g->b, out);
        if (g->qbits) { /* B as codes: their width, the scales and the codes per scale */
            put_i64("qbits", g->qbits, out);
            put_ref("scales", g->b_scales, out);
            put_i64("qgroup", g->qgroup, out);
        }
        put_ref("c", g->c, out);
        put_ref("bias", g->bias, out);
        put_i64("M", g->M, out);
        put_i64("N", g->N, out);
        put_i64("K", g->K, out);
        put_i64("trans_a", g->trans_a, out);
        put_i64("trans_b", g->trans_b, out);
        put_i64("lda", g->lda, out);
        put_i64("ldb", g->ldb, out);
        put_i64("ldc", g->ldc, out);
        fputs(" alpha=", out);
        put_double(g->alpha, out);
        fputs(" beta=", out);
        put_double(g->beta, out);
        fprintf(out, " act=%s", rt_plan_act_name(g->act));
        if (g->nbatch > 0) {
            int n = g->nbatch < RT_PLAN_MAX_BATCH ? g->nbatch : RT_PLAN_MAX_BATCH;
            put_list("batch", g->batch, n, out);
            put_list("stride_a", g->stride_a, n, out);
            put_list("stride_b", g->stride_b, n, out);
            put_list("stride_c", g->stride_c, n, out);
        }
        if (g->epi.name) { /* the epilogue kernel (bias, activation) over C */
            fputs(" epilogue", out);
            put_kernel(&g->epi, out);
        }
        break;
    }
    case RT_STEP_ATTENTION:
        put_attention(&s->attn, out);
        break;
    case RT_STEP_COPY:
        put_ref("src", s->copy.src, out);
        put_ref("dst", s->copy.dst, out);
        put_i64("bytes", s->copy.bytes, out);
        break;
    case RT_STEP_CHECK_IDS:
        put_ref("ids", s->check.ids, out);
        put_i64("numel", s->check.numel, out);
        put_i64("lo", s->check.lo, out);
        put_i64("hi", s->check.hi, out);
        put_i64("allow_negative", s->check.allow_negative, out);
        fputs(" what=", out);
        put_quoted(s->check.what, out);
        break;
    case RT_STEP_WRITE_ROWS:
        put_ref("dst", s->rows.dst, out);
        put_ref("src", s->rows.src, out);
        put_ref("pos", s->rows.pos, out);
        fprintf(out, " pos_dtype=%s", ir_dtype_name(s->rows.pos_dtype));
        put_i64("outer", s->rows.outer, out);
        put_i64("rows_dst", s->rows.rows_dst, out);
        put_i64("rows_src", s->rows.rows_src, out);
        put_i64("row_bytes", s->rows.row_bytes, out);
        break;
    case RT_STEP_ATTENTION_GRAD:
        put_attention(&s->agrad.fwd, out);
        put_ref("dy", s->agrad.dy, out);
        put_list("dy_stride", s->agrad.dy_stride, 3, out);
        put_ref("dq", s->agrad.dq, out);
        put_ref("dk", s->agrad.dk, out);
        put_ref("dv", s->agrad.dv, out);
        put_ref("dmask", s->agrad.dmask, out);
        put_ref("delta", s->agrad.delta, out);
        if (s->agrad.lse_own)
            fputs(" lse_own", out);
        break;
    case RT_STEP_SCATTER_ADD:
        put_ref("ids", s->scatter.ids, out);
        put_ref("src", s->scatter.src, out);
        put_ref("dst", s->scatter.dst, out);
        fprintf(out, " ids_dtype=%s", ir_dtype_name(s->scatter.ids_dtype));
        put_i64("n", s->scatter.n, out);
        put_i64("width", s->scatter.width, out);
        put_i64("rows", s->scatter.rows, out);
        put_i64("src_stride", s->scatter.src_stride, out);
        break;
    case RT_STEP_SUM_ROWS:
        put_ref("src", s->sum_rows.src, out);
        put_ref("dst", s->sum_rows.dst, out);
        put_i64("rows", s->sum_rows.rows, out);
        put_i64("width", s->sum_rows.width, out);
        put_i64("src_stride", s->sum_rows.src_stride, out);
        break;
    }
    for (int i = 0; i < s->n_lib; i++) { /* the step as kernels (plan.h) */
        fputs(i ? "," : " kernels", out);
        put_kernel(&s->lib[i], out);
    }
}

void rt_plan_print(const rt_plan *p, FILE *out)
{
    fprintf(out, "plan arena=%" PRId64 " {\n", p->arena_bytes);
    for (int i = 0; i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        fprintf(out, "  b%d = %s ", i, rt_plan_buf_kind_name(b->kind));
        put_quoted(b->name, out);
        fprintf(out, " %s[%" PRId64 "]", ir_dtype_name(b->dtype), b->numel);
        if (b->kind == RT_BUF_ACTIVATION)
            fprintf(out, " bytes=%" PRId64 " offset=%" PRId64, b->numel * ir_dtype_size(b->dtype), b->offset);
        fputc('\n', out);
    }
    for (int i = 0; i < p->n_steps; i++) {
        fprintf(out, "  step %d %s", i, rt_plan_step_kind_name(p->steps[i].kind));
        print_step(&p->steps[i], out);
        fputc('\n', out);
    }
    fputs("}\n", out);
}
