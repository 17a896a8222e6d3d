/* test_cache_write.c — the cache_write op (the KV cache's write, passes/kv_cache.c) against
 * hand-computed values, in the reference interpreter and on the CPU path:
 *  - cache [2, 5, 3] = 100 + i, rows x [2, 2, 3] = i, pos 2: rows 2 and 3 of each block are x,
 *    the rest the cache; y = 2 · result;
 *  - on the CPU, a cache input used only by cache_write is written in place: the caller's bound
 *    memory holds the result after the run (the contract plan.h documents for WRITE_ROWS);
 *    a cache input with another user is copied first and stays unchanged;
 *  - pos 4 (4 + 2 > 5) and pos -1 are run-time errors naming cache_write, in both; so is an i64
 *    position of INT64_MAX (and INT64_MAX - 1), whose pos + rows overflowed the check once and
 *    let memcpy write far outside the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cpu/exec_cpu.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "codegen/lower.h"
#include "passes/pass.h"
#include "plan/plan_memory.h"
#include "test_check.h"
#include "test_graph.h"

static const char *IR_IN_PLACE = "graph t {\n"
                                 "  %0 = input \"cache\" : f32[2, 5, 3]\n"
                                 "  %1 = input \"x\" : f32[2, 2, 3]\n"
                                 "  %2 = input \"pos\" : i32[1]\n"
                                 "  %3 = cache_write %0, %1, %2 : f32[2, 5, 3]\n"
                                 "  %4 = add %3, %3 : f32[2, 5, 3]\n"
                                 "  output \"y\" %4\n"
                                 "}\n";

/* The same, but the cache is also read by another output: no writing in place. */
static const char *IR_COPY = "graph t {\n"
                             "  %0 = input \"cache\" : f32[2, 5, 3]\n"
                             "  %1 = input \"x\" : f32[2, 2, 3]\n"
                             "  %2 = input \"pos\" : i32[1]\n"
                             "  %3 = cache_write %0, %1, %2 : f32[2, 5, 3]\n"
                             "  %4 = add %3, %3 : f32[2, 5, 3]\n"
                             "  %5 = neg %0 : f32[2, 5, 3]\n"
                             "  output \"y\" %4\n"
                             "  output \"z\" %5\n"
                             "}\n";

static double expected(int b, int s, int c, int pos)
{
    bool written = s >= pos && s < pos + 2;
    double v = written ? (double)((b * 2 + (s - pos)) * 3 + c) : 100.0 + (double)((b * 5 + s) * 3 + c);
    return 2 * v;
}

static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d) { return (rt_kernel_fn)cg_jit_lookup(ctx, name, d); }

static void check_reference(int pos, bool want_ok)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = tg_parse(IR_IN_PLACE, &d);
    ir_shape sc = {3, {2, 5, 3}}, sx = {3, {2, 2, 3}}, sp = {1, {1}};
    ir_tensor *cache = ir_tensor_new(DT_F32, &sc), *x = ir_tensor_new(DT_F32, &sx), *p = ir_tensor_new(DT_I32, &sp);
    for (int i = 0; i < 30; i++)
        cache->data[i] = 100 + i;
    for (int i = 0; i < 12; i++)
        x->data[i] = i;
    p->data[0] = pos;
    ir_named_tensor vals[3] = {{"cache", cache}, {"x", x}, {"pos", p}}, *outs = NULL;
    int n_outs = 0;
    bool ok = ir_interp_run(g, IR_PREC_F32, vals, 3, &outs, &n_outs, &d);
    CHECK(ok == want_ok, "reference at pos %d: ok %d", pos, ok);
    if (ok && want_ok) {
        double err = 0;
        for (int b = 0; b < 2; b++)
            for (int s = 0; s < 5; s++)
                for (int c = 0; c < 3; c++) {
                    double e = outs[0].t->data[(b * 5 + s) * 3 + c] - expected(b, s, c, pos);
                    err = e > err ? e : -e > err ? -e : err;
                }
        printf("reference pos %d: max abs error %g\n", pos, err);
        CHECK(err == 0, "reference at pos %d: max abs error %g", pos, err);
    }
    if (!want_ok) {
        CHECK(d.n_msg > 0 && strstr(d.msg[0].msg, "cache_write: position") != NULL, "reference at pos %d: message '%s'",
              pos, d.n_msg ? d.msg[0].msg : "");
        printf("reference pos %d: %s\n", pos, d.n_msg ? d.msg[0].msg : "(no message)");
    }
    ir_named_tensors_free(outs, n_outs);
    ir_tensor_free(cache);
    ir_tensor_free(x);
    ir_tensor_free(p);
    ir_graph_free(g);
    ir_diag_free(&d);
}

static void check_cpu(const char *text, bool in_place, int64_t pos, bool want_ok)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = tg_parse(text, &d);
    pass_options po = pass_options_default();
    cg_lowered low = {0};
    bool ok = pass_run_pipeline(g, "dce,cse,fuse", &po, &d) && cg_lower(g, &low, &d);
    CHECK(ok, "lowering failed");
    if (!ok) {
        ir_diag_print(&d, stderr);
        exit(1);
    }
    pass_plan_memory(&low.plan);
    cg_jit *jit = cg_jit_new(&d);
    ok = jit && cg_jit_add(jit, low.kernels, low.n_kernels, NULL, &d);
    rt_exec *ex = ok ? rt_exec_new(&low.plan, resolve, jit, NULL, &d) : NULL;
    CHECK(ex != NULL, "executor");
    float cache[30], x[12];
    int32_t p = (int32_t)pos;
    int64_t p64 = pos;
    bool wide = strstr(text, "i64[1]") != NULL;
    for (int i = 0; i < 30; i++)
        cache[i] = (float)(100 + i);
    for (int i = 0; i < 12; i++)
        x[i] = (float)i;
    ok = ex && rt_exec_bind(ex, "cache", cache, &d) && rt_exec_bind(ex, "x", x, &d) && rt_exec_bind(ex, "pos", wide ? (void *)&p64 : (void *)&p, &d);
    ok = ok && rt_exec_run(ex, &d);
    CHECK(ok == want_ok, "cpu (%s) at pos %lld: ok %d", in_place ? "in place" : "copy", (long long)pos, ok);
    if (ok && want_ok) {
        const float *y = rt_exec_output(ex, "y");
        double err = 0, cache_err = 0;
        for (int b = 0; b < 2; b++)
            for (int s = 0; s < 5; s++)
                for (int c = 0; c < 3; c++) {
                    int i = (b * 5 + s) * 3 + c;
                    double e = y[i] - expected(b, s, c, (int)pos);
                    err = e > err ? e : -e > err ? -e : err;
                    /* in place: the bound cache now holds the result; else it is unchanged */
                    double want = in_place ? expected(b, s, c, (int)pos) / 2 : 100.0 + i;
                    double ce = cache[i] - want;
                    cache_err = ce > cache_err ? ce : -ce > cache_err ? -ce : cache_err;
                }
        printf("cpu (%s) pos %lld: max abs error %g, bound cache max abs error %g\n", in_place ? "in place" : "copy",
               (long long)pos, err, cache_err);
        CHECK(err == 0 && cache_err == 0, "cpu at pos %lld: errors %g %g", (long long)pos, err, cache_err);
    }
    if (!want_ok) {
        CHECK(d.n_msg > 0 && strstr(d.msg[0].msg, "cache_write: position") != NULL, "cpu at pos %lld: message '%s'",
              (long long)pos, d.n_msg ? d.msg[0].msg : "");
        printf("cpu pos %lld: %s\n", (long long)pos, d.n_msg ? d.msg[0].msg : "(no message)");
    }
    rt_exec_free(ex);
    cg_jit_free(jit);
    cg_lowered_free(&low);
    ir_graph_free(g);
    ir_diag_free(&d);
}

int main(void)
{
    for (int pos = 0; pos <= 3; pos++) {
        check_reference(pos, true);
        check_cpu(IR_IN_PLACE, true, pos, true);
        check_cpu(IR_COPY, false, pos, true);
    }
    check_reference(4, false);
    check_reference(-1, false);
    check_cpu(IR_IN_PLACE, true, 4, false);
    check_cpu(IR_COPY, false, -1, false);
    /* an i64 position near INT64_MAX */
    char wide[1024];
    snprintf(wide, sizeof wide, "%s", IR_IN_PLACE);
    memcpy(strstr(wide, "i32[1]"), "i64", 3);
    check_cpu(wide, true, 1, true);
    check_cpu(wide, true, INT64_MAX, false);
    check_cpu(wide, true, INT64_MAX - 1, false);
    printf(failures ? "FAILED (%d)\n" : "PASSED\n", failures);
    return failures != 0;
}
