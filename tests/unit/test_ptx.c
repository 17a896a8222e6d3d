/* test_ptx.c — the NVPTX renderer without a GPU: every kernel the kernel IR tests build
 * (elementwise with broadcast, f64, scalar args, 2-D/3-D transposes with u8/i32/i64, softmax,
 * layernorm, f16/bf16 copies, f32 math) plus 64-bit and integer block reductions and a row
 * kernel over a 2-D grid, rendered to PTX for sm_80 and sm_90 and assembled by ptxas
 * (-arch=sm_80 / sm_90; "skipped: ptxas not found" and exit 0 when absent). Also: the launch
 * geometry rules, the PTX markers of each mapping (.entry, shfl.sync, bar.sync, .shared),
 * all kernels in one module, and the error for an op the GPU cannot lower (f64 tanh). Kernels
 * that lowering never produces (f64 arithmetic and block reductions, i64 scalar arguments)
 * are checked here; the FileCheck tests of tests/lit/ptx take the PTX of .lir graphs from
 * `loom dump --emit=ptx`.
 */
#include <string.h>
#include <unistd.h>

#include "test_kir_kernels.h"
#include "test_kir_util.h"

/* ---- the kernels ------------------------------------------------------------------------- */

static cg_kernel *k_gelu_bcast(void) { return kt_gelu_bcast("gelu_bcast", DT_F32, 37, 129); }

/* f64 elementwise with the ops the GPU has at f64: out = sqrt(a*a + b) / max(a, b) + rsqrt(b). */
static cg_kernel *k_f64_ops(void)
{
    cg_kernel *k = cg_kernel_new("f64_ops");
    int a = cg_kernel_buffer(k, "a", DT_F64, CG_IN, 1000);
    int b = cg_kernel_buffer(k, "b", DT_F64, CG_IN, 1000);
    int out = cg_kernel_buffer(k, "out", DT_F64, CG_OUT, 1000);
    cg_kernel_dim(k, 1000);
    cg_val i = cg_pidx(k, 0), x = cg_load(k, a, i), y = cg_load(k, b, i);
    cg_val s = cg_unary(k, CG_SQRT, cg_add(k, cg_mul(k, x, x), y));
    cg_val v = cg_add(k, cg_div(k, s, cg_binary(k, CG_MAX, x, y)), cg_unary(k, CG_RSQRT, y));
    cg_store(k, out, i, cg_select(k, cg_binary(k, CG_LT, x, y), cg_unary(k, CG_NEG, v), v));
    return k;
}

static cg_kernel *k_scale_by_n(void) { return kt_scale_by_n(100); }

static cg_kernel *k_transpose2d(void) { return kt_transpose2d(45, 67); }

static cg_kernel *k_permute3d(void) { return kt_permute3d(5, 6, 7); }

static cg_kernel *k_softmax(void) { return kt_softmax_rows("softmax_rows", 33, 301); }

static cg_kernel *k_layernorm(void) { return kt_layernorm_rows(19, 768, 1e-5); }

static cg_kernel *k_half_io(void) { return kt_half_io(65536); }

static cg_kernel *k_math(void)
{
    static const cg_op ops[] = {CG_EXP, CG_TANH, CG_SIGMOID, CG_LOG, CG_SQRT, CG_RSQRT, CG_ERF, CG_SIN, CG_COS,
                                CG_POW, CG_RECIP, CG_ABS};
    enum { NO = sizeof ops / sizeof *ops, N = 4096 };
    cg_kernel *k = cg_kernel_new("math_f32");
    int in = cg_kernel_buffer(k, "x", DT_F32, CG_IN, N);
    int out[NO];
    char nm[16];
    for (int c = 0; c < NO; c++) {
        snprintf(nm, sizeof nm, "y%d", c);
        out[c] = cg_kernel_buffer(k, nm, DT_F32, CG_OUT, N);
    }
    cg_kernel_dim(k, N);
    cg_val i = cg_pidx(k, 0), x = cg_load(k, in, i);
    for (int c = 0; c < NO; c++)
        cg_store(k, out[c], i, ops[c] == CG_POW ? cg_binary(k, CG_POW, x, cg_f32(k, 1.7)) : cg_unary(k, ops[c], x));
    return k;
}

/* Row reductions at 64-bit and integer types over a 2-D grid [4, 3] with one loop: f64 sum,
 * i64 max, i32 min, stored after the loop (thread 0), and a normalized copy inside a second
 * loop. */
static cg_kernel *k_reduce64(void)
{
    enum { P = 4, Q = 3, C = 1000 };
    cg_kernel *k = cg_kernel_new("reduce64");
    int x = cg_kernel_buffer(k, "x", DT_F64, CG_IN, P * Q * C);
    int ids = cg_kernel_buffer(k, "ids", DT_I64, CG_IN, P * Q * C);
    int small = cg_kernel_buffer(k, "small", DT_I32, CG_IN, P * Q * C);
    int sum = cg_kernel_buffer(k, "sum", DT_F64, CG_OUT, P * Q);
    int mx = cg_kernel_buffer(k, "mx", DT_I64, CG_OUT, P * Q);
    int mn = cg_kernel_buffer(k, "mn", DT_I32, CG_OUT, P * Q);
    int y = cg_kernel_buffer(k, "y", DT_F64, CG_OUT, P * Q * C);
    cg_kernel_dim(k, P);
    cg_kernel_dim(k, Q);
    int l0 = cg_kernel_loop(k, C), l1 = cg_kernel_loop(k, C);
    cg_val pt = cg_add(k, cg_mul(k, cg_pidx(k, 0), cg_i64(k, Q)), cg_pidx(k, 1));
    cg_val row = cg_mul(k, pt, cg_i64(k, C));
    cg_val at0 = cg_add(k, row, cg_lidx(k, l0));
    cg_val s = cg_reduce(k, CG_RED_SUM, l0, cg_load(k, x, at0));
    cg_val m = cg_reduce(k, CG_RED_MAX, l0, cg_load(k, ids, at0));
    cg_val n = cg_reduce(k, CG_RED_MIN, l0, cg_load(k, small, at0));
    cg_val at1 = cg_add(k, row, cg_lidx(k, l1));
    cg_store(k, y, at1, cg_div(k, cg_load(k, x, at1), s));
    cg_store(k, sum, pt, s);
    cg_store(k, mx, pt, m);
    cg_store(k, mn, pt, n);
    return k;
}

/* sequential kernels: one thread per grid point, nested loops with bounds, carries */
static cg_kernel *k_seq_colsum(void) { return kt_seq_colsum(37, 301); }
static cg_kernel *k_seq_nested(void) { return kt_seq_nested(50, 7); }
static cg_kernel *k_seq_scatter(void) { return kt_seq_scatter(97, 11, 70); }
static cg_kernel *k_inplace(void) { return kt_inplace_rows(7, 1000); }

typedef cg_kernel *(*builder)(void);
static const struct {
    const char *name;
    builder build;
} kernels[] = {
    {"gelu_bcast", k_gelu_bcast}, {"f64_ops", k_f64_ops},     {"scale_by_n", k_scale_by_n},
    {"transpose2d", k_transpose2d}, {"permute3d", k_permute3d}, {"softmax_rows", k_softmax},
    {"layernorm_rows", k_layernorm}, {"half_io", k_half_io},     {"math_f32", k_math},
    {"reduce64", k_reduce64},
    {"seq_colsum", k_seq_colsum}, {"seq_nested", k_seq_nested}, {"seq_scatter", k_seq_scatter},
    {"inplace_rows", k_inplace},
};
enum { NK = sizeof kernels / sizeof *kernels };

/* ---- helpers ----------------------------------------------------------------------------- */

static char *render(cg_kernel **ks, int n, int sm, bool ir)
{
    ir_diag d;
    ir_diag_init(&d);
    cg_ptx_options o = cg_ptx_defaults;
    o.sm = sm;
    char *text = ir ? cg_ptx_llvm_ir(ks, n, &o, &d) : cg_ptx(ks, n, &o, &d);
    if (!text) {
        ir_diag_print(&d, stderr);
        exit(1);
    }
    ir_diag_free(&d);
    return text;
}

static const char *ptxas_path(void)
{
    const char *env = getenv("LOOM_PTXAS");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    return access("/usr/local/cuda/bin/ptxas", X_OK) == 0 ? "/usr/local/cuda/bin/ptxas" : NULL;
}

/* Assembles ptx with ptxas for sm_SM; true if it accepts it. */
static bool ptxas_ok(const char *ptxas, const char *ptx, int sm, const char *tag)
{
    char path[] = "/tmp/loom_test_ptx_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f && fputs(ptx, f) >= 0 && fclose(f) == 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -arch=sm_%d -O3 %s -o /dev/null", ptxas, sm, path);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "ptxas -arch=sm_%d rejected %s (status %d); PTX kept in %s\n", sm, tag, rc, path);
    else
        unlink(path);
    return rc == 0;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_launch_dims(void)
{
    unsigned g[3], b[3];
    cg_kernel *k = k_gelu_bcast(); /* 37 * 129 = 4773 points, no loops */
    cg_ptx_launch_dims(k, g, b);
    CHECK(b[0] == 256 && g[0] == (4773 + 255) / 256 && g[1] == 1 && g[2] == 1 && b[1] == 1 && b[2] == 1);
    cg_kernel_free(k);
    k = k_scale_by_n(); /* 100 points: one block of 128 */
    cg_ptx_launch_dims(k, g, b);
    CHECK(b[0] == 128 && g[0] == 1);
    cg_kernel_free(k);
    k = k_softmax(); /* 33 rows, loops of 301: one block of 256 per row */
    cg_ptx_launch_dims(k, g, b);
    CHECK(g[0] == 33 && b[0] == 256);
    cg_kernel_free(k);
    k = cg_kernel_new("tiny_rows"); /* loops of 40: blocks of 64 */
    cg_kernel_dim(k, 7);
    cg_kernel_dim(k, 5);
    cg_kernel_loop(k, 40);
    cg_kernel_loop(k, 3);
    cg_ptx_launch_dims(k, g, b);
    CHECK(g[0] == 35 && b[0] == 64);
    cg_kernel_free(k);
    k = k_seq_nested(); /* sequential: one thread per grid point, whatever its loops */
    cg_ptx_launch_dims(k, g, b);
    CHECK(g[0] == 1 && b[0] == 64);
    cg_kernel_free(k);
    k = cg_kernel_new("huge"); /* 2^40 points: the grid is capped, the kernel strides */
    cg_kernel_dim(k, (int64_t)1 << 40);
    cg_ptx_launch_dims(k, g, b);
    CHECK(b[0] == 256 && g[0] == (unsigned)INT32_MAX);
    cg_kernel_free(k);
    printf("%-28s OK\n", "launch geometry");
}

/* Every kernel alone, for sm_80 and sm_90: markers in the PTX, then ptxas. */
static int test_render_all(const char *ptxas, int sm, int *assembled)
{
    int rendered = 0;
    for (int i = 0; i < NK; i++) {
        cg_kernel *k = kernels[i].build();
        char *ptx = render(&k, 1, sm, false);
        char entry[64], target[32];
        snprintf(entry, sizeof entry, ".visible .entry %s(", k->name);
        snprintf(target, sizeof target, ".target sm_%d", sm);
        CHECK(strstr(ptx, entry) && strstr(ptx, target));
        CHECK(strstr(ptx, ".maxntid 256, 1, 1"));
        CHECK(!strstr(ptx, "call.uni") && !strstr(ptx, ".extern .func")); /* no libcalls */
        if (k->n_loops > 0 && !k->seq) {
            CHECK(strstr(ptx, "shfl.sync.bfly.b32") && strstr(ptx, "bar.sync") && strstr(ptx, ".shared"));
        } else {
            CHECK(!strstr(ptx, "bar.sync") && !strstr(ptx, ".shared"));
        }
        rendered++;
        if (ptxas && ptxas_ok(ptxas, ptx, sm, k->name))
            (*assembled)++;
        free(ptx);
        cg_kernel_free(k);
    }
    /* all kernels in one module */
    cg_kernel *ks[NK];
    for (int i = 0; i < NK; i++)
        ks[i] = kernels[i].build();
    char *ptx = render(ks, NK, sm, false);
    CHECK(count(ptx, ".visible .entry") == NK);
    rendered++;
    if (ptxas && ptxas_ok(ptxas, ptx, sm, "the module of all kernels"))
        (*assembled)++;
    free(ptx);
    for (int i = 0; i < NK; i++)
        cg_kernel_free(ks[i]);
    return rendered;
}

/* Specific lowerings: f16 through cvt, bf16 by bit operations, u8 loads, the non-coherent
 * path for `in` buffers, 64-bit shuffles as two 32-bit ones, stores after the loops by
 * thread 0 (a predicated branch), no libdevice math. */
static void test_lowerings(void)
{
    cg_kernel *k = k_half_io();
    char *ptx = render(&k, 1, 80, false);
    /* f16 widened twice (h_in, round_f16), narrowed once (the store and round_f16 share it) */
    CHECK(count(ptx, "cvt.f32.f16") >= 2 && strstr(ptx, "cvt.rn.f16.f32"));
    CHECK(strstr(ptx, "ld.global.nc.u16") || strstr(ptx, "ld.global.nc.b16"));
    free(ptx);
    cg_kernel_free(k);

    k = k_reduce64();
    ptx = render(&k, 1, 80, false);
    CHECK(count(ptx, "shfl.sync.bfly.b32") >= 5 * 2 * (2 + 2 + 1)); /* f64, i64: two halves; i32 */
    CHECK(strstr(ptx, "mov.b64 {tmp, %r"));                          /* the halves of a 64-bit value */
    CHECK(strstr(ptx, "max.s64") && strstr(ptx, "min.s32") && strstr(ptx, "add.rn.f64"));
    CHECK(strstr(ptx, ".shared .align 8 .b8 reduce64_$_red[192];")); /* 3 reduces x 8 warps x 8 bytes */
    /* y inside loop 1, then the three results after the barrier, in store order */
    const char *bar = strstr(ptx, "bar.sync"), *f64 = strstr(ptx, "st.global.f64");
    const char *u64 = f64 ? strstr(f64 + 1, "st.global.u64") : NULL, *u32 = u64 ? strstr(u64, "st.global.u32") : NULL;
    CHECK(bar && f64 && bar < f64 && u64 && u32);
    free(ptx);
    char *ir = render(&k, 1, 80, true);
    CHECK(strstr(ir, "target triple = \"nvptx64-nvidia-cuda\"") && strstr(ir, "ptx_kernel void @reduce64("));
    CHECK(strstr(ir, "addrspace(3) global [24 x i64]")); /* 3 reduces x 8 warps */
    CHECK(strstr(ir, "@llvm.nvvm.barrier0"));
    free(ir);
    cg_kernel_free(k);

    k = k_math();
    ptx = render(&k, 1, 90, false);
    CHECK(strstr(ptx, "ex2.approx.f32") && strstr(ptx, "lg2.approx.f32") && strstr(ptx, "rsqrt.approx.f32"));
    CHECK(strstr(ptx, "sin.approx.f32") && strstr(ptx, "cos.approx.f32") && strstr(ptx, "sqrt.rn.f32"));
    free(ptx);
    cg_kernel_free(k);

    k = k_permute3d();
    ptx = render(&k, 1, 80, false);
    CHECK(strstr(ptx, "ld.global.nc.u8") && strstr(ptx, "st.global.u32") && strstr(ptx, "st.global.u64"));
    free(ptx);
    cg_kernel_free(k);
    printf("%-28s f16 cvt, bf16 bits, u8, ld.global.nc, 64-bit shuffles, NVVM math: OK\n", "lowerings");
}

/* Errors: an op without a GPU lowering, an invalid kernel, an unsupported sm. */
static void test_errors(void)
{
    cg_kernel *k = cg_kernel_new("tanh64");
    int a = cg_kernel_buffer(k, "a", DT_F64, CG_IN, 8);
    int y = cg_kernel_buffer(k, "y", DT_F64, CG_OUT, 8);
    cg_kernel_dim(k, 8);
    cg_store(k, y, cg_pidx(k, 0), cg_unary(k, CG_TANH, cg_load(k, a, cg_pidx(k, 0))));
    ir_diag d;
    ir_diag_init(&d);
    CHECK(cg_ptx(&k, 1, NULL, &d) == NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f);
    ir_diag_print(&d, f);
    fclose(f);
    if (!strstr(buf, "kernel tanh64: %2: f64 tanh has no nvptx lowering"))
        fprintf(stderr, "%s", buf);
    CHECK(strstr(buf, "kernel tanh64: %2: f64 tanh has no nvptx lowering"));
    free(buf);
    ir_diag_free(&d);

    ir_diag_init(&d);
    cg_ptx_options o = cg_ptx_defaults;
    o.sm = 70;
    cg_kernel_free(k);
    k = k_scale_by_n();
    CHECK(cg_ptx(&k, 1, &o, &d) == NULL && d.n_errors == 1);
    ir_diag_free(&d);
    cg_kernel_free(k);
    printf("%-28s f64 tanh, sm_70: reported: OK\n", "errors");
}

/* Group barriers (kir.h's cg_kernel_group_barriers, which render_c.c follows too): an inout
 * element loaded by the block's threads and then stored by one of them is stored after a
 * bar.sync, unless a reduction's bar.sync already lies between. */
static void test_group_barriers(void)
{
    /* y[r, 0] loaded by every thread, y[r, :] stored in loop 0: a barrier before loop 0; x is
     * loaded in loop 0 and stored in loop 1, after the reduction: none there */
    cg_kernel *k = k_inplace();
    bool *bar = calloc((size_t)(k->n_nodes + k->n_loops), sizeof *bar);
    cg_kernel_group_barriers(k, bar);
    int n_bar = 0;
    for (int i = 0; i < k->n_nodes + k->n_loops; i++)
        n_bar += bar[i];
    CHECK(bar[k->n_nodes + 0] && !bar[k->n_nodes + 1] && n_bar == 1);
    free(bar);
    char *ptx = render(&k, 1, 80, false);
    /* that barrier, the reduction's and the one ending each grid point; the first before y's
     * first store */
    const char *first = strstr(ptx, "bar.sync"), *store = strstr(ptx, "st.global.f32");
    CHECK(count(ptx, "bar.sync") == 3 && first && store && first < store);
    free(ptx);
    cg_kernel_free(k);

    /* no reduction: y[r] loaded by every thread (and used in loop 0, which writes z), stored
     * by thread 0 in an even slot: a barrier right before that store, none before the loop */
    k = cg_kernel_new("inplace_point");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, 4 * 64), z = cg_kernel_buffer(k, "z", DT_F32, CG_OUT, 4 * 64);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_INOUT, 4);
    cg_kernel_dim(k, 4);
    int l = cg_kernel_loop(k, 64);
    cg_val r = cg_pidx(k, 0), yr = cg_load(k, y, r);
    cg_val at = cg_add(k, cg_mul(k, r, cg_i64(k, 64)), cg_lidx(k, l));
    cg_store(k, z, at, cg_mul(k, cg_load(k, x, at), yr));
    cg_store(k, y, r, cg_add(k, yr, cg_f32(k, 1)));
    bar = calloc((size_t)(k->n_nodes + k->n_loops), sizeof *bar);
    cg_kernel_group_barriers(k, bar);
    int last = k->n_nodes - 1;
    if (!(bar[last] && k->nodes[last].op == CG_STORE && k->nodes[last].slot % 2 == 0 && !bar[k->n_nodes]))
        cg_kernel_print(k, stderr);
    CHECK(bar[last] && k->nodes[last].op == CG_STORE && k->nodes[last].slot % 2 == 0 && !bar[k->n_nodes]);
    free(bar);
    ptx = render(&k, 1, 90, false);
    CHECK(count(ptx, "bar.sync") == 1); /* no reductions: the store's only */
    free(ptx);
    cg_kernel_free(k);
    printf("%-28s OK\n", "group barriers");
}

int main(void)
{
    test_launch_dims();
    test_group_barriers();
    test_lowerings();
    test_errors();
    const char *ptxas = ptxas_path();
    const int sms[] = {80, 90};
    for (int s = 0; s < 2; s++) {
        int assembled = 0, rendered = test_render_all(ptxas, sms[s], &assembled);
        if (ptxas) {
            printf("sm_%d: %d modules rendered, %d accepted by ptxas: %s\n", sms[s], rendered, assembled,
                   assembled == rendered ? "OK" : "FAIL");
            CHECK(assembled == rendered);
        } else {
            printf("sm_%d: %d modules rendered\n", sms[s], rendered);
        }
    }
    if (!ptxas)
        printf("skipped: ptxas not found (set LOOM_PTXAS or install the CUDA toolkit)\n");
    return 0;
}
