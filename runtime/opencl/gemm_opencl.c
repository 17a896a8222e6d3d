/* gemm_opencl.c — the OpenCL executor's GEMM step (exec_opencl.h: rt_ocl_gemm): CLBlast plus a
 * bias kernel, or a generated tiled kernel with the bias fused into its store, chosen per shape
 * by timing them on the device.
 *
 * C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] + bias as gemm.h defines it; a step's
 * activation is its epilogue kernel (plan.h), which the executor launches afterwards.
 * - CLBlast (row-major, element offsets into cl_mem buffers) computes alpha·AB + beta·C; a
 *   multi-dim batch runs as CLBlastSgemmStridedBatched over its innermost dim and a host loop
 *   over the others (CLBlast takes one stride per operand; stride 0 broadcasts A or B). The bias
 *   follows as one more kernel, in place — CLBlast has no epilogue hook.
 * - Generated: gemm_source.c's kernel, one variant of VARIANTS, over the same
 *   innermost batch dim and host loop, the bias added in the store.
 *
 * Choice (LOOM_OCL_GEMM=auto, the default): the first time a (device, M, N, K, trans, batch
 * count) runs, every candidate runs once to warm up (PoCL compiles at the first launch), then
 * once timed — three times when it takes under 20 ms — on the step's own operands (into C
 * itself when beta is 0, since the real run overwrites it, else into scratch), and the fastest
 * is kept for the process. Every candidate is correct; CLBlast and the generated kernels may
 * differ in the last bits (the generated variants agree with each other bit for bit, but g4
 * on transposed B), so two processes can differ there.
 * LOOM_OCL_GEMM=clblast or generated limits the candidates (generated:I forces variant I, for
 * tests); LOOM_OCL_GEMM_VERBOSE=1 prints each shape's timings and choice on stderr.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/opencl/gemm_source.h"
#include "runtime/opencl/exec_opencl.h"

/* CLBlast has no epilogue hook: the bias follows as this kernel, in place. */
static const char EPILOGUE_SOURCE[] =
    "\n/* GEMM bias (runtime/opencl/gemm_opencl.c): c += bias over nb matrices M x N */\n"
    "__kernel void " RT_OCL_EPILOGUE_KERNEL "(__global float *c, const long c_off, __global const float *bias,\n"
    "        const long bias_off, const long M, const long N, const long ldc, const long nb, const long stride_c)\n"
    "{\n"
    "    c += c_off;\n"
    "    bias += bias_off;\n"
    "    const long total = nb * M * N;\n"
    "    for (long i = (long)get_global_id(0); i < total; i += (long)get_global_size(0)) {\n"
    "        const long n = i % N, r = i / N, m = r % M, b = r / M;\n"
    "        c[b * stride_c + m * ldc + n] += bias[n];\n"
    "    }\n"
    "}\n";

/* The generated candidates: a small fixed set spanning CPU-friendly (no barriers, wide rows
 * of neighbouring columns per work-item group) and GPU-style (__local tiles) shapes. */
static const rt_ocl_gemm_variant VARIANTS[] = {
    /* tile_m, tile_n, tile_k, work_m, work_n, vector, local_tiles, dot_k */
    {64, 64, 16, 4, 4, 1, true, 0},   /* GPU style: __local tiles, 4x4 strided per work-item */
    {64, 64, 16, 4, 8, 4, true, 0},   /* the same with float4 rows */
    {6, 16, 16, 6, 16, 8, false, 0},  /* CPU style: one work-item per 6 x 2 float8 (AVX2's 6x16) */
    {8, 8, 16, 8, 8, 8, false, 0},    /* one work-item per 8 x float8 */
    {4, 2, 16, 4, 2, 1, false, 8},    /* transposed B: 4 x 2 dot products in float8 along k */
};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))
#define CHOICE_CLBLAST (-1)

static void variant_name(int i, char *buf, size_t n) { snprintf(buf, n, "loomrt_gemm_g%d", i); }

const char *rt_ocl_epilogue_source(void) { return EPILOGUE_SOURCE; }

char *rt_ocl_gemm_source(void)
{
    size_t len = strlen(EPILOGUE_SOURCE);
    char *src = malloc(len + 1);
    if (!src)
        ir_unreachable("out of memory");
    memcpy(src, EPILOGUE_SOURCE, len + 1);
    for (int i = 0; i < N_VARIANTS; i++) {
        char name[32];
        variant_name(i, name, sizeof name);
        char *k = rt_ocl_gemm_variant_source(&VARIANTS[i], name);
        size_t n = strlen(k);
        src = realloc(src, len + n + 1);
        if (!src)
            ir_unreachable("out of memory");
        memcpy(src + len, k, n + 1);
        len += n;
        free(k);
    }
    return src;
}

/* ---- LOOM_OCL_GEMM ---------------------------------------------------------------------- */

typedef struct {
    bool clblast, generated; /* candidates allowed */
    int forced;              /* generated:I → I; else -1 */
} gemm_mode;

static bool parse_mode(gemm_mode *m, ir_diag *d)
{
    const char *s = getenv("LOOM_OCL_GEMM");
    *m = (gemm_mode){true, true, -1};
    if (!s || !*s || strcmp(s, "auto") == 0)
        return true;
    if (strcmp(s, "clblast") == 0) {
        m->generated = false;
        return true;
    }
    if (strcmp(s, "generated") == 0) {
        m->clblast = false;
        return true;
    }
    if (strncmp(s, "generated:", 10) == 0) {
        char *end;
        long i = strtol(s + 10, &end, 10);
        if (s[10] && !*end && i >= 0 && i < N_VARIANTS) {
            m->clblast = false;
            m->forced = (int)i;
            return true;
        }
    }
    ir_diag_error(d, -1, 0, 0, "LOOM_OCL_GEMM='%s': expected auto, clblast, generated or generated:I (I in 0..%d)",
                  s, N_VARIANTS - 1);
    return false;
}

bool rt_ocl_gemm_check_env(ir_diag *d)
{
    gemm_mode m;
    return parse_mode(&m, d);
}

static bool verbose(void)
{
    const char *s = getenv("LOOM_OCL_GEMM_VERBOSE");
    return s && *s && strcmp(s, "0") != 0;
}

/* ---- the choice cache: per process, keyed by device + shape + allowed candidates ---------- */

typedef struct {
    void *device;
    int64_t M, N, K, count;
    int trans_a, trans_b;
    gemm_mode mode;
    int choice; /* CHOICE_CLBLAST or a variant index */
} choice_entry;

static pthread_mutex_t choice_lock = PTHREAD_MUTEX_INITIALIZER;
static choice_entry *choices;
static int n_choices, cap_choices;

static bool same_key(const choice_entry *e, const choice_entry *k)
{
    return e->device == k->device && e->M == k->M && e->N == k->N && e->K == k->K && e->count == k->count &&
           e->trans_a == k->trans_a && e->trans_b == k->trans_b && e->mode.clblast == k->mode.clblast &&
           e->mode.generated == k->mode.generated && e->mode.forced == k->mode.forced;
}

/* The cached choice for key k, or -2 when there is none. */
static int lookup_choice(const choice_entry *k)
{
    int c = -2;
    pthread_mutex_lock(&choice_lock);
    for (int i = 0; i < n_choices && c == -2; i++)
        if (same_key(&choices[i], k))
            c = choices[i].choice;
    pthread_mutex_unlock(&choice_lock);
    return c;
}

static void store_choice(const choice_entry *k)
{
    pthread_mutex_lock(&choice_lock);
    if (n_choices == cap_choices) {
        cap_choices = cap_choices ? 2 * cap_choices : 16;
        choices = realloc(choices, (size_t)cap_choices * sizeof *choices);
        if (!choices)
            ir_unreachable("out of memory");
    }
    choices[n_choices++] = *k;
    pthread_mutex_unlock(&choice_lock);
}

void rt_ocl_gemm_release(void)
{
    CLBlastClearCache();
    /* the choices name devices of the closed context; a later one measures again */
    pthread_mutex_lock(&choice_lock);
    free(choices);
    choices = NULL;
    n_choices = cap_choices = 0;
    pthread_mutex_unlock(&choice_lock);
}

/* ---- running one slice (one outer batch index) with a given candidate -------------------- */

static bool clblast_ok(CLBlastStatusCode s, const char *call, const rt_plan_gemm *g, ir_diag *d)
{
    if (s == CLBlastSuccess)
        return true;
    ir_diag_error(d, -1, 0, 0,
                  "CLBlast %s failed: status %d (M %" PRId64 ", N %" PRId64 ", K %" PRId64 ", trans %d/%d, ld %" PRId64
                  "/%" PRId64 "/%" PRId64 ")%s",
                  call, (int)s, g->M, g->N, g->K, g->trans_a, g->trans_b, g->lda, g->ldb, g->ldc,
                  s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure
                      ? "\n  ---> HINT: the device ran out of memory (a smaller batch or sequence may fit)"
                      : "");
    return false;
}

/* One slice: `count` GEMMs along the innermost batch dim from element offsets oa/ob/oc, with
 * strides sa/sb/sc between them, leading dims lda/ldb/ldc (resolved), alpha and beta. */
typedef struct {
    size_t oa, ob, oc, lda, ldb, ldc;
    int64_t count, sa, sb, sc;
    double alpha, beta;
} slice;

static bool run_clblast(rt_ocl *o, rt_ocl_program *prog, const rt_plan_gemm *g, const slice *s, rt_ocl_buf *a,
                        rt_ocl_buf *b, rt_ocl_buf *c, rt_ocl_ref bias, ir_diag *d)
{
    CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    cl_command_queue *queue = rt_ocl_queue_ptr(o);
    cl_mem ma = rt_ocl_buf_mem(a), mb = rt_ocl_buf_mem(b), mc = rt_ocl_buf_mem(c);
    CLBlastStatusCode st;
    if (s->count == 1) {
        st = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)g->M, (size_t)g->N, (size_t)g->K, (float)s->alpha,
                          ma, s->oa, s->lda, mb, s->ob, s->ldb, (float)s->beta, mc, s->oc, s->ldc, queue, NULL);
        if (!clblast_ok(st, "CLBlastSgemm", g, d))
            return false;
    } else {
        st = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, (size_t)g->M, (size_t)g->N, (size_t)g->K,
                                        (float)s->alpha, ma, s->oa, s->lda, (size_t)s->sa, mb, s->ob, s->ldb,
                                        (size_t)s->sb, (float)s->beta, mc, s->oc, s->ldc, (size_t)s->sc,
                                        (size_t)s->count, queue, NULL);
        if (!clblast_ok(st, "CLBlastSgemmStridedBatched", g, d))
            return false;
    }
    if (!bias.buf)
        return true;
    int64_t total = s->count * g->M * g->N;
    size_t local = 256, groups = (size_t)((total + 255) / 256);
    if (groups > 65536)
        groups = 65536;
    rt_ocl_arg args[9] = {
        rt_ocl_arg_buf(c),
        rt_ocl_arg_i64((int64_t)s->oc),
        rt_ocl_arg_buf(bias.buf),
        rt_ocl_arg_i64((int64_t)bias.offset),
        rt_ocl_arg_i64(g->M),
        rt_ocl_arg_i64(g->N),
        rt_ocl_arg_i64((int64_t)s->ldc),
        rt_ocl_arg_i64(s->count),
        rt_ocl_arg_i64(s->sc),
    };
    return rt_ocl_launch(o, prog, RT_OCL_EPILOGUE_KERNEL, args, 9, groups, local, d);
}

static int64_t f32_bits(double x)
{
    float f = (float)x;
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

static bool run_generated(rt_ocl *o, rt_ocl_program *prog, int v, const rt_plan_gemm *g, const slice *s,
                          rt_ocl_buf *a, rt_ocl_buf *b, rt_ocl_buf *c, rt_ocl_ref bias, ir_diag *d)
{
    const rt_ocl_gemm_variant *var = &VARIANTS[v];
    int64_t tiles = (g->M + var->tile_m - 1) / var->tile_m * ((g->N + var->tile_n - 1) / var->tile_n);
    char name[32];
    variant_name(v, name, sizeof name);
    int64_t flags = (g->trans_a ? 1 : 0) | (g->trans_b ? 2 : 0) | (bias.buf ? 4 : 0);
    rt_ocl_arg args[21] = {
        rt_ocl_arg_buf(a),           rt_ocl_arg_i64((int64_t)s->oa),
        rt_ocl_arg_buf(b),           rt_ocl_arg_i64((int64_t)s->ob),
        rt_ocl_arg_buf(c),           rt_ocl_arg_i64((int64_t)s->oc),
        rt_ocl_arg_buf(bias.buf ? bias.buf : c), rt_ocl_arg_i64((int64_t)bias.offset),
        rt_ocl_arg_i64(g->M),        rt_ocl_arg_i64(g->N),
        rt_ocl_arg_i64(g->K),        rt_ocl_arg_i64((int64_t)s->lda),
        rt_ocl_arg_i64((int64_t)s->ldb), rt_ocl_arg_i64((int64_t)s->ldc),
        rt_ocl_arg_i64(flags),
        rt_ocl_arg_i64(f32_bits(s->alpha)), rt_ocl_arg_i64(f32_bits(s->beta)),
        rt_ocl_arg_i64(s->count),    rt_ocl_arg_i64(s->sa),
        rt_ocl_arg_i64(s->sb),       rt_ocl_arg_i64(s->sc),
    };
    return rt_ocl_launch(o, prog, name, args, 21, (size_t)(s->count * tiles), rt_ocl_gemm_variant_local(var), d);
}

static bool run_choice(rt_ocl *o, rt_ocl_program *prog, int choice, const rt_plan_gemm *g, const slice *s,
                       rt_ocl_buf *a, rt_ocl_buf *b, rt_ocl_buf *c, rt_ocl_ref bias, ir_diag *d)
{
    return choice == CHOICE_CLBLAST ? run_clblast(o, prog, g, s, a, b, c, bias, d)
                                    : run_generated(o, prog, choice, g, s, a, b, c, bias, d);
}

static void choice_label(int choice, char *buf, size_t n)
{
    if (choice == CHOICE_CLBLAST) {
        snprintf(buf, n, "clblast");
        return;
    }
    const rt_ocl_gemm_variant *v = &VARIANTS[choice];
    snprintf(buf, n, "g%d(%dx%d,%dx%d,v%d%s%s)", choice, v->tile_m, v->tile_n, v->work_m, v->work_n, v->vector,
             v->local_tiles ? ",local" : "", v->dot_k ? ",dot" : "");
}

/* Times every allowed candidate on slice s (its C, or scratch when beta != 0) and returns the
 * fastest; -2 on an error. */
static int measure(rt_ocl *o, rt_ocl_program *prog, const rt_plan_gemm *g, const gemm_mode *mode, const slice *s0,
                   rt_ocl_buf *a, rt_ocl_buf *b, rt_ocl_buf *c, rt_ocl_ref bias, ir_diag *d)
{
    slice s = *s0;
    /* a big GEMM is timed on its first N columns only (the kernels' speed per column is flat
     * at that width): choosing costs ~0.1 s on PoCL, not seconds, for GPT-2's LM head */
    rt_plan_gemm gt = *g;
    int64_t full_n = g->N;
    const double budget = 1 << 27; /* multiply-adds per timed run */
    if ((double)s.count * (double)g->M * (double)g->N * (double)g->K > budget) {
        int64_t n = (int64_t)(budget / ((double)s.count * (double)g->M * (double)(g->K ? g->K : 1))) / 64 * 64;
        if (n < 64)
            n = 64;
        if (n < g->N)
            gt.N = n;
    }
    g = &gt;
    rt_ocl_buf *out = c, *scratch = NULL;
    if (s.beta != 0.0) { /* C is read: time into scratch, packed, beta 0 */
        scratch = rt_ocl_alloc(o, (size_t)(s.count * g->M * g->N) * sizeof(float), d);
        if (!scratch)
            return -2;
        out = scratch;
        s.oc = 0, s.ldc = (size_t)g->N, s.sc = g->M * g->N, s.beta = 0.0;
    }
    int cand[N_VARIANTS + 1], n = 0;
    for (int i = 0; mode->generated && i < N_VARIANTS; i++)
        cand[n++] = i;
    if (mode->clblast) /* last: its first call compiles CLBlast's kernels, often slow */
        cand[n++] = CHOICE_CLBLAST;
    double ms[N_VARIANTS + 1], best_ms = INFINITY;
    int best = -2;
    bool ok = rt_ocl_finish(o, d); /* earlier steps must not count */
    /* a candidate the device cannot run (say, a work-group size it lacks) drops out; its
     * error is kept only when no candidate runs */
    bool failed[N_VARIANTS + 1] = {0};
    ir_diag trial;
    ir_diag_init(&trial);
    /* warm-ups first: the first launch of a kernel may compile it (PoCL does), CLBlast's first
     * call builds its program; then timed runs */
    for (int i = 0; ok && i < n; i++) {
        double t0 = rt_now_ms();
        failed[i] = !run_choice(o, prog, cand[i], g, &s, a, b, out, bias, &trial);
        ok = rt_ocl_finish(o, d);
        ms[i] = rt_now_ms() - t0;
    }
    for (int i = 0; ok && i < n; i++) {
        int reps = failed[i] ? 0 : 1;
        for (int r = 0; ok && r < reps; r++) {
            double t0 = rt_now_ms();
            ok = run_choice(o, prog, cand[i], g, &s, a, b, out, bias, d) && rt_ocl_finish(o, d);
            double t = rt_now_ms() - t0;
            if (r == 0 || t < ms[i])
                ms[i] = t;
            /* cheap shapes get two more runs against noise, unless far behind the best */
            if (r == 0 && t < 20 && t < 4 * best_ms)
                reps = 3;
        }
        if (ok && !failed[i] && ms[i] < best_ms)
            best_ms = ms[i], best = cand[i];
    }
    if (ok && best == -2) { /* nothing ran: report why */
        for (int i = 0; i < trial.n_msg; i++)
            if (trial.msg[i].level == DIAG_NOTE)
                ir_diag_note(d, -1, 0, 0, "%s", trial.msg[i].msg);
            else
                ir_diag_error(d, -1, 0, 0, "%s", trial.msg[i].msg);
        ok = false;
    }
    ir_diag_free(&trial);
    rt_ocl_free(scratch);
    if (!ok)
        return -2;
    if (verbose()) {
        fprintf(stderr, "loom: opencl gemm M %" PRId64 " N %" PRId64 " K %" PRId64 " trans %d/%d batch %" PRId64, g->M,
                full_n, g->K, g->trans_a, g->trans_b, s.count);
        if (g->N < full_n)
            fprintf(stderr, " (timed on N %" PRId64 ")", g->N);
        fprintf(stderr, ":");
        for (int i = 0; i < n; i++) {
            char label[64];
            choice_label(cand[i], label, sizeof label);
            if (failed[i])
                fprintf(stderr, " %s failed%s", label, i + 1 < n ? "," : "");
            else
                fprintf(stderr, " %s %.3f ms%s", label, ms[i], i + 1 < n ? "," : "");
        }
        char label[64];
        choice_label(best, label, sizeof label);
        fprintf(stderr, " -> %s\n", label);
    }
    return best;
}

bool rt_ocl_gemm(rt_ocl *o, rt_ocl_program *prog, const rt_plan_gemm *g, rt_ocl_ref a, rt_ocl_ref b, rt_ocl_ref c,
                 rt_ocl_ref bias, ir_diag *d)
{
    gemm_mode mode;
    if (!parse_mode(&mode, d))
        return false;
    if (g->M == 0 || g->N == 0)
        return true;
    rt_ocl_on_close(o, rt_ocl_gemm_release); /* CLBlast's cached programs belong to o's context */
    int inner = g->nbatch - 1; /* the dim batched on the device; -1: none */
    int64_t outer = 1;
    for (int i = 0; i < inner; i++)
        outer *= g->batch[i];
    slice s = {
        .lda = (size_t)(g->lda ? g->lda : g->trans_a ? g->M : g->K),
        .ldb = (size_t)(g->ldb ? g->ldb : g->trans_b ? g->K : g->N),
        .ldc = (size_t)(g->ldc ? g->ldc : g->N),
        .count = inner >= 0 ? g->batch[inner] : 1,
        .sa = inner >= 0 ? g->stride_a[inner] : 0,
        .sb = inner >= 0 ? g->stride_b[inner] : 0,
        .sc = inner >= 0 ? g->stride_c[inner] : 0,
        .alpha = g->alpha,
        .beta = g->beta,
    };
    if (outer == 0 || s.count == 0)
        return true;
    choice_entry key = {rt_ocl_device_id(o), g->M, g->N, g->K, outer * s.count, g->trans_a, g->trans_b, mode, 0};
    int choice = mode.forced >= 0 ? mode.forced : lookup_choice(&key);
    if (g->K == 0 && choice == -2) /* CLBlast rejects K = 0 (C = beta·C + bias is still defined) */
        choice = 0;
    for (int64_t ob = 0; ob < outer; ob++) {
        /* offsets of outer batch index ob (row-major over dims 0..inner-1) */
        s.oa = a.offset, s.ob = b.offset, s.oc = c.offset;
        for (int64_t rest = ob, i = inner - 1; i >= 0; i--) {
            int64_t idx = rest % g->batch[i];
            rest /= g->batch[i];
            s.oa += (size_t)(idx * g->stride_a[i]);
            s.ob += (size_t)(idx * g->stride_b[i]);
            s.oc += (size_t)(idx * g->stride_c[i]);
        }
        if (choice == -2) {
            if (!mode.generated)
                choice = CHOICE_CLBLAST; /* nothing to choose from */
            else if ((choice = measure(o, prog, g, &mode, &s, a.buf, b.buf, c.buf, bias, d)) == -2)
                return false;
            key.choice = choice;
            store_choice(&key);
        }
        if (!run_choice(o, prog, choice, g, &s, a.buf, b.buf, c.buf, bias, d))
            return false;
    }
    return true;
}
