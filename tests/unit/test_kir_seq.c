/* test_kir_seq.c — sequential kernels (kir.h, "Sequential kernels") on the host JIT: nested
 * loops, run-time bounds (an empty loop among them), carries that feed one another, and a
 * scatter-add whose loads see the grid point's earlier stores; each against a C reference,
 * bit for bit (the kernels add in the reference's order: carries fold in order), the grid
 * split in chunks as a thread pool splits it. Also the text form, dce of a kernel whose carry
 * comes before its next value, and the validator's errors for a carry that escapes its loop,
 * a value used outside its loop and an unclosed loop.
 */
#include <string.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

static int failures;

static void expect_same(const char *what, const void *got, const void *want, size_t bytes)
{
    bool same = memcmp(got, want, bytes) == 0;
    printf("%-40s %s\n", what, same ? "ok (bit-identical)" : "FAIL");
    failures += !same;
}

static void test_colsum(void)
{
    enum { R = 37, W = 301 };
    cg_kernel *k = kt_seq_colsum(R, W);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(R * W, -2, 2), out[W], ref[W];
    void *args[] = {x, out};
    kt_run(fn, args, W, 3);
    kt_seq_colsum_ref(x, ref, R, W);
    expect_same("colsum (one carry)", out, ref, sizeof out);
    free(x);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

static void test_nested(void)
{
    enum { N = 50, D = 7 };
    cg_kernel *k = kt_seq_nested(N, D);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *x = kt_random(N * D, -1, 1), tri[N], none[N], rtri[N], rnone[N];
    int64_t fib[N], rfib[N];
    void *args[] = {x, tri, none, fib};
    kt_run(fn, args, N, 4);
    kt_seq_nested_ref(x, rtri, rnone, rfib, N, D);
    /* the kernel may contract the product into an FMA: compare within rounding */
    failures += !kt_compare("nested loops with bounds", tri, rtri, N, 1e-5, 1e-5);
    expect_same("empty loop: last is init", none, rnone, sizeof none);
    expect_same("swapping carries (fibonacci)", fib, rfib, sizeof fib);
    free(x);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

static void test_scatter(void)
{
    enum { NI = 97, R = 11, W = 70 };
    cg_kernel *k = kt_seq_scatter(NI, R, W);
    cg_jit *jit;
    cg_host_fn fn = kt_jit(k, &jit);
    float *src = kt_random(NI * W, -1, 1), *dst = malloc(sizeof(float) * R * W), *ref = malloc(sizeof(float) * R * W);
    int32_t ids[NI];
    for (int j = 0; j < NI; j++)
        ids[j] = (int32_t)((j * 7 + j / 3) % R);
    for (int i = 0; i < R * W; i++)
        dst[i] = 123; /* zeroed by the kernel's first loop */
    void *args[] = {src, ids, dst};
    kt_run(fn, args, W, 5);
    kt_seq_scatter_ref(src, ids, ref, NI, R, W);
    expect_same("scatter-add (loads after stores)", dst, ref, sizeof(float) * R * W);
    free(src);
    free(dst);
    free(ref);
    cg_jit_free(jit);
    cg_kernel_free(k);
}

static char *text_of(const cg_kernel *k)
{
    char *t = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&t, &n);
    cg_kernel_print(k, f);
    fclose(f);
    return t;
}

static void test_text_and_dce(void)
{
    cg_kernel *k = kt_seq_colsum(4, 3);
    cg_f32(k, 42); /* dead */
    int before = k->n_nodes;
    int removed = cg_kernel_dce(k);
    ir_diag d;
    ir_diag_init(&d);
    bool valid = cg_kernel_validate(k, &d);
    char *t = text_of(k);
    bool ok = valid && removed == 1 && k->n_nodes == before - 1 && strstr(t, " seq {\n") && strstr(t, "  loop 0 [4] {\n") &&
              strstr(t, "carry %1, %") && strstr(t, "  }\n  %") && strstr(t, " = last %");
    printf("%-40s %s\n", "text form and dce", ok ? "ok" : "FAIL");
    if (!ok) {
        printf("%s", t);
        ir_diag_print(&d, stdout);
    }
    failures += !ok;
    free(t);
    ir_diag_free(&d);
    cg_kernel_free(k);
}

/* The validator's message for k contains want. */
static void expect_invalid(const char *what, cg_kernel *k, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    bool valid = cg_kernel_validate(k, &d);
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ir_diag_print(&d, f);
    fclose(f);
    bool ok = !valid && strstr(buf, want);
    printf("%-40s %s\n", what, ok ? "ok" : "FAIL");
    if (!ok)
        printf("  got: %s  want: %s\n", buf, want);
    failures += !ok;
    ir_diag_free(&d);
    cg_kernel_free(k);
}

static void test_invalid(void)
{
    /* a value of a loop used after it closed */
    cg_kernel *k = cg_kernel_new("escape");
    cg_kernel_set_seq(k);
    int out = cg_kernel_buffer(k, "out", DT_I64, CG_OUT, 4);
    cg_kernel_dim(k, 4);
    int l = cg_loop_open(k, 3, -1);
    cg_val v = cg_add(k, cg_lidx(k, l), cg_pidx(k, 0));
    cg_loop_close(k);
    cg_store(k, out, cg_pidx(k, 0), v);
    expect_invalid("a loop's value after the loop", k, "outside that loop");

    k = cg_kernel_new("open");
    cg_kernel_set_seq(k);
    out = cg_kernel_buffer(k, "out", DT_I64, CG_OUT, 4);
    cg_kernel_dim(k, 4);
    l = cg_loop_open(k, 3, -1);
    cg_store(k, out, cg_pidx(k, 0), cg_lidx(k, l));
    expect_invalid("a loop never closed", k, "never closed");

    k = cg_kernel_new("nonext");
    cg_kernel_set_seq(k);
    out = cg_kernel_buffer(k, "out", DT_I64, CG_OUT, 4);
    cg_kernel_dim(k, 4);
    l = cg_loop_open(k, 3, -1);
    cg_val c = cg_carry(k, l, cg_i64(k, 0));
    cg_loop_close(k);
    cg_store(k, out, cg_pidx(k, 0), cg_last(k, c));
    expect_invalid("a carry without a next value", k, "carry without a next value");

    k = cg_kernel_new("flat");
    out = cg_kernel_buffer(k, "out", DT_F32, CG_OUT, 4);
    cg_kernel_dim(k, 4);
    cg_kernel_loop(k, 3);
    cg_val r = cg_reduce(k, CG_RED_SUM, 0, cg_f32(k, 1));
    cg_store(k, out, cg_pidx(k, 0), r);
    k->nodes[r].op = CG_LAST; /* last in a kernel that is not sequential */
    expect_invalid("last outside a sequential kernel", k, "not sequential");
}

int main(void)
{
    test_colsum();
    test_nested();
    test_scatter();
    test_text_and_dce();
    test_invalid();
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures != 0;
}
