/* test_kir_print.c — the kernel IR text form and the builder's local simplifications:
 * a row kernel (scalar arg, loops, reductions, casts, select) printed and compared with the
 * expected text; integer constant folding and identities (x*1, x+0), then dead-node removal,
 * leave no node behind; identical pure nodes are shared, stores never are.
 */
#include <string.h>

#include "test_kir_util.h"

static const char *expected =
    "kernel rowmax_scale(in f32 x[96], i64 n, out bf16 y[96], out i32 argmax[3]) grid [3] loops [32, 32] {\n"
    "  %0 = pidx 0 : i64\n"
    "  %1 = const 32 : i64\n"
    "  %2 = mul %0, %1 : i64\n"
    "    %3 = lidx 0 : i64\n"
    "    %4 = add %2, %3 : i64\n"
    "    %5 = load x[%4] : f32\n"
    "  %6 = reduce.max %5 loop 0 : f32\n"
    "    %7 = lidx 1 : i64\n"
    "    %8 = add %2, %7 : i64\n"
    "    %9 = load x[%8] : f32\n"
    "    %10 = eq %9, %6 : bool\n"
    "  %11 = const 32 : i32\n"
    "    %12 = cast %7 : i32\n"
    "    %13 = select %10, %12, %11 : i32\n"
    "  %14 = reduce.min %13 loop 1 : i32\n"
    "  store argmax[%0], %14\n"
    "  %16 = scalar n : i64\n"
    "  %17 = cast %16 : f32\n"
    "  %18 = const 0.1 : f32\n"
    "  %19 = mul %17, %18 : f32\n"
    "    %20 = sub %9, %6 : f32\n"
    "    %21 = exp %20 : f32\n"
    "    %22 = mul %21, %19 : f32\n"
    "    store y[%8], %22\n"
    "}\n";

static cg_kernel *build(void)
{
    cg_kernel *k = cg_kernel_new("rowmax_scale");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, 96);
    int n = cg_kernel_scalar(k, "n");
    int y = cg_kernel_buffer(k, "y", DT_BF16, CG_OUT, 96);
    int am = cg_kernel_buffer(k, "argmax", DT_I32, CG_OUT, 3);
    cg_kernel_dim(k, 3);
    int l0 = cg_kernel_loop(k, 32), l1 = cg_kernel_loop(k, 32);
    /* one node a statement: C leaves the order of evaluating arguments open */
    cg_val r = cg_pidx(k, 0);
    cg_val c8 = cg_i64(k, 8), c4 = cg_i64(k, 4), c32 = cg_mul(k, c8, c4); /* folds to 32 */
    cg_val row = cg_mul(k, r, c32);
    row = cg_mul(k, row, cg_i64(k, 1));                                   /* vanishes */
    cg_val at0 = cg_add(k, row, cg_lidx(k, l0));
    at0 = cg_add(k, at0, cg_i64(k, 0));                                   /* vanishes */
    cg_val m = cg_reduce(k, CG_RED_MAX, l0, cg_load(k, x, at0));
    cg_val c1 = cg_lidx(k, l1);
    cg_val at = cg_add(k, row, c1);
    cg_val v = cg_load(k, x, at);
    cg_val is_max = cg_binary(k, CG_EQ, v, m);
    cg_val none = cg_const_int(k, CG_I32, 32);
    cg_val first = cg_select(k, is_max, cg_cast(k, CG_I32, c1), none);
    cg_store(k, am, r, cg_reduce(k, CG_RED_MIN, l1, first));
    cg_val nf = cg_cast(k, CG_F32, cg_scalar(k, n));
    cg_val scale = cg_mul(k, nf, cg_f32(k, 0.1));
    cg_val e = cg_unary(k, CG_EXP, cg_sub(k, v, m));
    cg_store(k, y, at, cg_mul(k, e, scale));
    CHECK(cg_kernel_dce(k) == 4); /* the constants 8, 4, 1 and 0 */
    return k;
}

int main(void)
{
    cg_kernel *k = build();
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f);
    cg_kernel_print(k, f);
    fclose(f);
    if (strcmp(text, expected) != 0) {
        fprintf(stderr, "got:\n%s\nexpected:\n%s", text, expected);
        return 1;
    }
    ir_diag d;
    ir_diag_init(&d);
    CHECK(cg_kernel_validate(k, &d));
    ir_diag_free(&d);

    /* sharing: the same load twice is one node; a store is always new */
    int before = k->n_nodes;
    CHECK(cg_load(k, 0, cg_add(k, cg_mul(k, cg_pidx(k, 0), cg_i64(k, 32)), cg_lidx(k, 1))) == 9);
    CHECK(cg_cast(k, CG_F32, 5) == 5); /* no-op cast */
    CHECK(k->n_nodes == before);
    cg_val s1 = cg_store(k, 3, 0, 14), s2 = cg_store(k, 3, 0, 14);
    CHECK(s1 != s2);
    /* folding: i64 (7 / 2) % 3 = 0; i32 overflow is not folded */
    cg_val q = cg_mod(k, cg_div(k, cg_i64(k, 7), cg_i64(k, 2)), cg_i64(k, 3));
    CHECK(k->nodes[q].op == CG_CONST && k->nodes[q].ival == 0);
    cg_val big = cg_const_int(k, CG_I32, INT32_MAX);
    CHECK(k->nodes[cg_add(k, big, big)].op == CG_ADD);
    printf("%-28s matches the expected text; sharing and folding: OK\n", "kernel print");
    free(text);
    cg_kernel_free(k);
    return 0;
}
