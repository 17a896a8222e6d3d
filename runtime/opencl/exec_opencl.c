/* exec_opencl.c — the OpenCL executor (exec_opencl.h): device buffers from the memory plan,
 * one program for the plan's kernels and the executor's own, and a loop over the steps that
 * enqueues each on the device's in-order queue.
 */
#include "runtime/clock.h"
#include "runtime/trace.h"
#include "runtime/opencl/exec_opencl.h"
#include "runtime/cpu/exec_cpu.h" /* rt_attention_grad_f32: staged through the host */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct rt_ocl_exec {
    rt_ocl *o;
    const rt_plan *plan;
    rt_ocl_program *prog;
    rt_ocl_buf *arena;
    rt_ocl_buf **own;      /* per buffer: its own device buffer (param, input, output) */
    bool *bound;           /* per buffer: param/input uploaded */
    void **user;           /* per buffer: the caller's memory bound to an input (cache_write target) */
    void **host;           /* per buffer: host copy of an output */
    bool *fresh;           /* per buffer: host copy is from the last run */
    size_t *groups, *local; /* per step: launch geometry (kernel and attention steps) */
    char **fn;             /* per step: the OpenCL function (kernel and attention steps) */
    size_t *groups2;       /* per attention-grad step: the keys kernel's groups */
    rt_ocl_buf **stats;    /* per attention-grad step: row statistics scratch (NULL: host-staged) */
    rt_ocl_arg *args;      /* scratch: the widest kernel's arguments */
    int max_args;
    bool profile;
    double ms[RT_STEP_KIND_COUNT];
    rt_trace *trace;   /* with profile under --profile: each step a slice on the queue's track,
                          timed on the host around a finish of the queue (trace.h) */
    int *trace_desc;   /* per step: its interned description, -1 until first traced */
    size_t device_bytes;
};

static size_t buf_bytes(const rt_plan_buffer *b) { return (size_t)b->numel * (size_t)ir_dtype_size(b->dtype); }

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Appends s to the malloc'd string *dst. */
static void append(char **dst, size_t *len, const char *s)
{
    size_t n = strlen(s);
    *dst = realloc(*dst, *len + n + 1);
    if (!*dst)
        ir_unreachable("out of memory");
    memcpy(*dst + *len, s, n + 1);
    *len += n;
}

/* SUM_ROWS (plan.h): one work-item per column adds the rows in order (deterministic). */
static const char SUM_ROWS_SOURCE[] =
    "\n/* sum over rows (runtime/opencl/exec_opencl.c): dst[c] = sum of src[r * stride + c], r in order */\n"
    "__kernel void loomrt_sum_rows(__global float *dst, const long dst_off, __global const float *src,\n"
    "        const long src_off, const long rows, const long width, const long stride)\n"
    "{\n"
    "    dst += dst_off;\n"
    "    src += src_off;\n"
    "    for (long c = (long)get_global_id(0); c < width; c += (long)get_global_size(0)) {\n"
    "        float acc = 0.0f;\n"
    "        for (long r = 0; r < rows; r++)\n"
    "            acc += src[r * stride + c];\n"
    "        dst[c] = acc;\n"
    "    }\n"
    "}\n";

/* SCATTER_ADD (plan.h, embedding_grad): one work-item per column zeroes it and adds the src
 * rows in id order, so every sum has one order (deterministic, as exec_cpu.c). One kernel per
 * ids dtype. */
static const char SCATTER_SOURCE[] =
    "\n/* scatter-add over rows (runtime/opencl/exec_opencl.c): dst = 0; dst[ids[j]] += src row j, j in order */\n"
    "#define LOOMRT_SCATTER(NAME, T) \\\n"
    "__kernel void NAME(__global float *dst, const long dst_off, __global const float *src, const long src_off, \\\n"
    "        __global const T *ids, const long ids_off, const long n, const long width, const long rows, \\\n"
    "        const long stride) \\\n"
    "{ \\\n"
    "    dst += dst_off; \\\n"
    "    src += src_off; \\\n"
    "    ids += ids_off; \\\n"
    "    for (long c = (long)get_global_id(0); c < width; c += (long)get_global_size(0)) { \\\n"
    "        for (long r = 0; r < rows; r++) \\\n"
    "            dst[r * width + c] = 0.0f; \\\n"
    "        for (long j = 0; j < n; j++) { \\\n"
    "            const long r = (long)ids[j]; \\\n"
    "            if (r >= 0 && r < rows) \\\n"
    "                dst[r * width + c] += src[j * stride + c]; \\\n"
    "        } \\\n"
    "    } \\\n"
    "}\n"
    "LOOMRT_SCATTER(loomrt_scatter_add_i32, int)\n"
    "LOOMRT_SCATTER(loomrt_scatter_add_i64, long)\n"
    "LOOMRT_SCATTER(loomrt_scatter_add_u8, uchar)\n";

/* Device buffer and element offset of plan reference r (buf NULL for r.buf < 0). */
static rt_ocl_ref ref_of(const rt_ocl_exec *e, rt_plan_ref r)
{
    if (r.buf < 0)
        return (rt_ocl_ref){NULL, 0};
    const rt_plan_buffer *b = &e->plan->bufs[r.buf];
    if (b->kind == RT_BUF_ACTIVATION)
        return (rt_ocl_ref){e->arena, (size_t)(b->offset / ir_dtype_size(b->dtype) + r.offset)};
    return (rt_ocl_ref){e->own[r.buf], (size_t)r.offset};
}

rt_ocl_exec *rt_ocl_exec_new(rt_ocl *o, const rt_plan *p, const char *kernel_source, const rt_ocl_kernel_dims *dims,
                             int n_dims, ir_diag *d)
{
    rt_ocl_exec *e = calloc(1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    e->o = o;
    e->plan = p;
    size_t nb = (size_t)p->n_bufs + 1, ns = (size_t)p->n_steps + 1;
    e->own = calloc(nb, sizeof *e->own);
    e->bound = calloc(nb, sizeof *e->bound);
    e->user = calloc(nb, sizeof *e->user);
    e->host = calloc(nb, sizeof *e->host);
    e->fresh = calloc(nb, sizeof *e->fresh);
    e->groups = calloc(ns, sizeof *e->groups);
    e->local = calloc(ns, sizeof *e->local);
    e->fn = calloc(ns, sizeof *e->fn);
    e->groups2 = calloc(ns, sizeof *e->groups2);
    e->stats = calloc(ns, sizeof *e->stats);
    if (!e->own || !e->bound || !e->user || !e->host || !e->fresh || !e->groups || !e->local || !e->fn ||
        !e->groups2 || !e->stats)
        ir_unreachable("out of memory");
    bool ok = true;
    e->arena = rt_ocl_alloc(o, (size_t)p->arena_bytes, d);
    ok = e->arena != NULL;
    e->device_bytes = (size_t)p->arena_bytes;
    for (int i = 0; ok && i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if (b->kind == RT_BUF_CONSTANT)
            ir_unreachable("exec_opencl: constant buffers are not produced by lowering yet");
        if (b->kind == RT_BUF_ACTIVATION)
            continue;
        e->own[i] = rt_ocl_alloc(o, buf_bytes(b), d);
        if (!e->own[i]) {
            ir_diag_note(d, -1, 0, 0, "allocating %zu bytes on %s for '%s'", buf_bytes(b), rt_ocl_device_name(o),
                         b->name);
            ok = false;
            break;
        }
        e->device_bytes += buf_bytes(b);
        if (b->kind == RT_BUF_OUTPUT) {
            e->host[i] = calloc(buf_bytes(b) + 1, 1);
            if (!e->host[i])
                ir_unreachable("out of memory");
        }
    }
    /* the program: plan kernels, then the epilogue and one attention kernel per attention step */
    char *src = NULL;
    size_t len = 0;
    append(&src, &len, kernel_source ? kernel_source : "/* loom: no generated kernels */\n");
    bool any_gemm = false, any_sum_rows = false, any_scatter = false;
    const char *host_agrad = getenv("LOOM_OCL_HOST_AGRAD");
    bool agrad_kernels = !(host_agrad && *host_agrad && strcmp(host_agrad, "0") != 0);
    for (int s = 0; ok && s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        /* a plan kernel: the step's, or a GEMM's epilogue kernel */
        const rt_plan_kernel *k = st->kind == RT_STEP_KERNEL ? &st->kernel
                                  : st->kind == RT_STEP_GEMM && st->gemm.epi.name ? &st->gemm.epi
                                                                                  : NULL;
        if (k) {
            const rt_ocl_kernel_dims *kd = NULL;
            for (int i = 0; i < n_dims && !kd; i++)
                if (strcmp(dims[i].name, k->name) == 0)
                    kd = &dims[i];
            if (!kd) {
                ir_diag_error(d, -1, 0, 0, "opencl: kernel '%s' has no launch dims", k->name);
                ok = false;
                break;
            }
            e->groups[s] = kd->groups;
            e->local[s] = kd->local;
            size_t n = strlen(RT_OCL_KERNEL_PREFIX) + strlen(k->name) + 1;
            e->fn[s] = malloc(n);
            if (!e->fn[s])
                ir_unreachable("out of memory");
            snprintf(e->fn[s], n, "%s%s", RT_OCL_KERNEL_PREFIX, k->name);
            if (2 * k->n_args > e->max_args)
                e->max_args = 2 * k->n_args;
        }
        if (st->kind == RT_STEP_GEMM) {
            any_gemm = true;
        } else if (st->kind == RT_STEP_SUM_ROWS) {
            any_sum_rows = true;
        } else if (st->kind == RT_STEP_SCATTER_ADD) {
            any_scatter = true;
        } else if (st->kind == RT_STEP_ATTENTION) {
            char name[64];
            snprintf(name, sizeof name, "loomrt_attention_%d", s);
            e->fn[s] = xstrdup(name);
            char *a = rt_ocl_attention_source(&st->attn, name, st->attn.mask.buf >= 0, &e->groups[s], &e->local[s]);
            append(&src, &len, a);
            free(a);
        } else if (st->kind == RT_STEP_ATTENTION_GRAD && agrad_kernels) {
            const rt_plan_attention *fa = &st->agrad.fwd;
            char name[64];
            snprintf(name, sizeof name, "loomrt_attention_grad_%d", s);
            e->fn[s] = xstrdup(name);
            char *a = rt_ocl_attention_grad_source(&st->agrad, name, &e->groups[s], &e->groups2[s], &e->local[s]);
            append(&src, &len, a);
            free(a);
            e->stats[s] = rt_ocl_alloc(o, (size_t)(3 * fa->B * fa->H * fa->T) * sizeof(float), d);
            ok = e->stats[s] != NULL;
        }
    }
    if (any_gemm) {
        char *gemm = rt_ocl_gemm_source();
        append(&src, &len, gemm);
        free(gemm);
        ok = ok && rt_ocl_gemm_check_env(d);
    }
    if (any_sum_rows)
        append(&src, &len, SUM_ROWS_SOURCE);
    if (any_scatter)
        append(&src, &len, SCATTER_SOURCE);
    if (ok) {
        e->prog = rt_ocl_build(o, src, "-cl-std=CL1.2", d);
        ok = e->prog != NULL;
    }
    free(src);
    e->args = calloc((size_t)e->max_args + 1, sizeof *e->args);
    if (!e->args)
        ir_unreachable("out of memory");
    if (!ok) {
        rt_ocl_exec_free(e);
        return NULL;
    }
    return e;
}

void rt_ocl_exec_free(rt_ocl_exec *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->plan->n_bufs; i++) {
        rt_ocl_free(e->own[i]);
        free(e->host[i]);
    }
    for (int s = 0; s < e->plan->n_steps; s++) {
        free(e->fn[s]);
        rt_ocl_free(e->stats[s]);
    }
    free(e->groups2);
    free(e->stats);
    free(e->trace_desc);
    rt_ocl_free(e->arena);
    free(e->own);
    free(e->bound);
    free(e->user);
    free(e->host);
    free(e->fresh);
    free(e->groups);
    free(e->local);
    free(e->fn);
    free(e->args);
    free(e);
}

bool rt_ocl_exec_bind(rt_ocl_exec *e, const char *name, const void *data, ir_diag *d)
{
    bool found = false;
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if ((b->kind == RT_BUF_PARAM || b->kind == RT_BUF_INPUT) && strcmp(b->name, name) == 0) {
            found = true;
            if (!rt_ocl_write(e->o, e->own[i], 0, data, buf_bytes(b), d))
                return false;
            e->bound[i] = true;
            e->user[i] = (void *)data;
        }
    }
    if (!found)
        ir_diag_error(d, -1, 0, 0, "opencl: the plan has no parameter or input '%s'", name);
    return found;
}

void *rt_ocl_exec_output(rt_ocl_exec *e, const char *name, ir_diag *d)
{
    for (int i = 0; i < e->plan->n_bufs; i++) {
        const rt_plan_buffer *b = &e->plan->bufs[i];
        if (b->kind != RT_BUF_OUTPUT || strcmp(b->name, name) != 0)
            continue;
        if (!e->fresh[i]) {
            if (!rt_ocl_read(e->o, e->own[i], 0, e->host[i], buf_bytes(b), d))
                return NULL;
            e->fresh[i] = true;
        }
        return e->host[i];
    }
    return NULL;
}

/* Reads the ids back and checks them on the host. */
static bool check_ids(rt_ocl_exec *e, const rt_plan_check *c, ir_diag *d)
{
    ir_dtype dt = e->plan->bufs[c->ids.buf].dtype;
    size_t es = (size_t)ir_dtype_size(dt);
    rt_ocl_ref r = ref_of(e, c->ids);
    void *p = malloc((size_t)c->numel * es + 1);
    if (!p)
        ir_unreachable("out of memory");
    bool ok = rt_ocl_read(e->o, r.buf, r.offset * es, p, (size_t)c->numel * es, d);
    for (int64_t i = 0; ok && i < c->numel; i++) {
        int64_t x = dt == DT_I32 ? ((const int32_t *)p)[i] : dt == DT_I64 ? ((const int64_t *)p)[i] : ((const uint8_t *)p)[i];
        if (x < 0 && c->allow_negative)
            continue;
        if (x < c->lo || x >= c->hi) {
            ir_diag_error(d, -1, 0, 0, "%s: id %" PRId64 " is outside [%" PRId64 ", %" PRId64 ")", c->what, x, c->lo,
                          c->hi);
            ok = false;
        }
    }
    free(p);
    return ok;
}

/* Launches plan kernel k (step s's, or its GEMM's epilogue). */
static bool run_kernel(rt_ocl_exec *e, int s, const rt_plan_kernel *k, ir_diag *d)
{
    for (int a = 0; a < k->n_args; a++) {
        rt_ocl_ref r = ref_of(e, k->args[a]);
        e->args[2 * a] = rt_ocl_arg_buf(r.buf);
        e->args[2 * a + 1] = rt_ocl_arg_i64((int64_t)r.offset);
    }
    return rt_ocl_launch(e->o, e->prog, e->fn[s], e->args, 2 * k->n_args, e->groups[s], e->local[s], d);
}

static bool run_attention(rt_ocl_exec *e, int s, ir_diag *d)
{
    const rt_plan_attention *a = &e->plan->steps[s].attn;
    rt_ocl_ref r[5] = {ref_of(e, a->q), ref_of(e, a->k), ref_of(e, a->v), ref_of(e, a->mask), ref_of(e, a->out)};
    if (!r[3].buf) /* no mask: any buffer, never read */
        r[3] = r[0];
    rt_ocl_arg args[10];
    for (int i = 0; i < 5; i++) {
        args[2 * i] = rt_ocl_arg_buf(r[i].buf);
        args[2 * i + 1] = rt_ocl_arg_i64((int64_t)r[i].offset);
    }
    return rt_ocl_launch(e->o, e->prog, e->fn[s], args, 10, e->groups[s], e->local[s], d);
}

static bool run_copy(rt_ocl_exec *e, const rt_plan_copy *c, ir_diag *d)
{
    rt_ocl_ref src = ref_of(e, c->src), dst = ref_of(e, c->dst);
    size_t ss = (size_t)ir_dtype_size(e->plan->bufs[c->src.buf].dtype);
    size_t ds = (size_t)ir_dtype_size(e->plan->bufs[c->dst.buf].dtype);
    return rt_ocl_copy(e->o, src.buf, src.offset * ss, dst.buf, dst.offset * ds, (size_t)c->bytes, d);
}

/* A host copy of `count` elements of size es at r (malloc'd; NULL on a failed read). */
static void *stage_in(rt_ocl_exec *e, rt_plan_ref r, size_t count, ir_diag *d)
{
    size_t es = (size_t)ir_dtype_size(e->plan->bufs[r.buf].dtype);
    rt_ocl_ref x = ref_of(e, r);
    void *p = malloc(count * es + 1);
    if (!p)
        ir_unreachable("out of memory");
    if (!rt_ocl_read(e->o, x.buf, x.offset * es, p, count * es, d)) {
        free(p);
        return NULL;
    }
    return p;
}

static bool stage_out(rt_ocl_exec *e, rt_plan_ref r, const void *p, size_t count, ir_diag *d)
{
    size_t es = (size_t)ir_dtype_size(e->plan->bufs[r.buf].dtype);
    rt_ocl_ref x = ref_of(e, r);
    return rt_ocl_write(e->o, x.buf, x.offset * es, p, count * es, d);
}

/* cache_write: the position read back, then one device copy per outer block. An INPUT
 * destination is also read back into the caller's bound memory (plan.h: the run updates it). */
static bool write_rows(rt_ocl_exec *e, const rt_plan_write_rows *w, ir_diag *d)
{
    int64_t pos[1] = {0};
    void *pp = stage_in(e, w->pos, 1, d);
    if (!pp)
        return false;
    pos[0] = w->pos_dtype == DT_I32 ? *(const int32_t *)pp : w->pos_dtype == DT_I64 ? *(const int64_t *)pp
                                                                                    : *(const uint8_t *)pp;
    free(pp);
    int64_t p = pos[0];
    if (p < 0 || w->rows_src > w->rows_dst || p > w->rows_dst - w->rows_src) { /* no p + rows: p may be INT64_MAX */
        ir_diag_error(d, -1, 0, 0, "cache_write: position %" PRId64 " with %" PRId64 " rows is outside the cache of %" PRId64,
                      p, w->rows_src, w->rows_dst);
        return false;
    }
    rt_ocl_ref dst = ref_of(e, w->dst), src = ref_of(e, w->src);
    size_t des = (size_t)ir_dtype_size(e->plan->bufs[w->dst.buf].dtype);
    size_t ses = (size_t)ir_dtype_size(e->plan->bufs[w->src.buf].dtype);
    int64_t block = w->rows_src * w->row_bytes;
    for (int64_t o = 0; o < w->outer; o++)
        if (!rt_ocl_copy(e->o, src.buf, src.offset * ses + (size_t)(o * block), dst.buf,
                         dst.offset * des + (size_t)((o * w->rows_dst + p) * w->row_bytes), (size_t)block, d))
            return false;
    const rt_plan_buffer *db = &e->plan->bufs[w->dst.buf];
    if (db->kind == RT_BUF_INPUT && e->user[w->dst.buf])
        return rt_ocl_read(e->o, dst.buf, 0, e->user[w->dst.buf], buf_bytes(db), d);
    return true;
}

/* Elements a strided 3-D view (b, h, t) with a contiguous last dim of n reaches. */
static size_t span3(const int64_t *stride, int64_t B, int64_t H, int64_t T, int64_t n)
{
    return (size_t)((B - 1) * stride[0] + (H - 1) * stride[1] + (T - 1) * stride[2] + n);
}

/* attention_grad through host staging: operands read back, attention_grad_cpu.c on this
 * thread, results written back (training on OpenCL is correct first, fast later). */
static bool attention_grad(rt_ocl_exec *e, const rt_plan_attention_grad *g, ir_diag *d)
{
    const rt_plan_attention *a = &g->fwd;
    size_t nq = span3(a->q_stride, a->B, a->H, a->T, a->D), nk = span3(a->k_stride, a->B, a->G, a->S, a->D);
    size_t nv = span3(a->v_stride, a->B, a->G, a->S, a->E), ny = span3(g->dy_stride, a->B, a->H, a->T, a->E);
    size_t nm = a->mask.buf >= 0 ? span3(a->mask_stride, a->B, a->H, a->T, (a->S - 1) * a->mask_stride[3] + 1) : 0;
    float *q = stage_in(e, a->q, nq, d), *k = q ? stage_in(e, a->k, nk, d) : NULL;
    float *v = k ? stage_in(e, a->v, nv, d) : NULL, *dy = v ? stage_in(e, g->dy, ny, d) : NULL;
    float *mask = dy && nm ? stage_in(e, a->mask, nm, d) : NULL;
    bool ok = dy && (!nm || mask);
    size_t n_out[4] = {(size_t)(a->B * a->H * a->T * a->D), (size_t)(a->B * a->G * a->S * a->D),
                       (size_t)(a->B * a->G * a->S * a->E), (size_t)(a->B * a->H * a->T * a->S)};
    rt_plan_ref refs[4] = {g->dq, g->dk, g->dv, g->dmask};
    float *outs[4] = {0};
    for (int i = 0; i < 4; i++)
        if (refs[i].buf >= 0 && !(outs[i] = calloc(n_out[i] + 1, sizeof(float))))
            ir_unreachable("out of memory");
    if (ok)
        rt_attention_grad_f32(g, q, k, v, mask, dy, NULL, outs[0], outs[1], outs[2], outs[3], NULL);
    for (int i = 0; i < 4; i++) {
        if (ok && outs[i])
            ok = stage_out(e, refs[i], outs[i], n_out[i], d);
        free(outs[i]);
    }
    free(q), free(k), free(v), free(dy), free(mask);
    return ok;
}

/* attention_grad on the device: the rows kernel (dq, dmask, row statistics), then the keys
 * kernel (dk, dv), in queue order. */
static bool attention_grad_kernels(rt_ocl_exec *e, int s, ir_diag *d)
{
    const rt_plan_attention_grad *g = &e->plan->steps[s].agrad;
    rt_ocl_ref r[10] = {ref_of(e, g->fwd.q), ref_of(e, g->fwd.k), ref_of(e, g->fwd.v), ref_of(e, g->fwd.mask),
                        ref_of(e, g->dy),    {e->stats[s], 0},    ref_of(e, g->dq),    ref_of(e, g->dk),
                        ref_of(e, g->dv),    ref_of(e, g->dmask)};
    rt_ocl_arg args[20];
    for (int i = 0; i < 10; i++) {
        if (!r[i].buf) /* not wanted or absent: any buffer, never touched */
            r[i] = r[0];
        args[2 * i] = rt_ocl_arg_buf(r[i].buf);
        args[2 * i + 1] = rt_ocl_arg_i64((int64_t)r[i].offset);
    }
    char name[80];
    snprintf(name, sizeof name, "%s_rows", e->fn[s]);
    if (!rt_ocl_launch(e->o, e->prog, name, args, 20, e->groups[s], e->local[s], d))
        return false;
    snprintf(name, sizeof name, "%s_keys", e->fn[s]);
    return rt_ocl_launch(e->o, e->prog, name, args, 20, e->groups2[s], e->local[s], d);
}

/* embedding_grad: the scatter kernel of the ids' dtype, one work-item per column. */
static bool scatter_add(rt_ocl_exec *e, const rt_plan_scatter *s, ir_diag *d)
{
    rt_ocl_ref dst = ref_of(e, s->dst), src = ref_of(e, s->src), ids = ref_of(e, s->ids);
    const char *fn = s->ids_dtype == DT_I32 ? "loomrt_scatter_add_i32"
                     : s->ids_dtype == DT_I64 ? "loomrt_scatter_add_i64" : "loomrt_scatter_add_u8";
    rt_ocl_arg args[10] = {rt_ocl_arg_buf(dst.buf), rt_ocl_arg_i64((int64_t)dst.offset), rt_ocl_arg_buf(src.buf),
                           rt_ocl_arg_i64((int64_t)src.offset), rt_ocl_arg_buf(ids.buf),
                           rt_ocl_arg_i64((int64_t)ids.offset), rt_ocl_arg_i64(s->n), rt_ocl_arg_i64(s->width),
                           rt_ocl_arg_i64(s->rows), rt_ocl_arg_i64(s->src_stride)};
    size_t groups = (size_t)((s->width + 63) / 64);
    return rt_ocl_launch(e->o, e->prog, fn, args, 10, groups < 65536 ? groups : 65536, 64, d);
}

static bool sum_rows(rt_ocl_exec *e, const rt_plan_sum_rows *r, ir_diag *d)
{
    rt_ocl_ref dst = ref_of(e, r->dst), src = ref_of(e, r->src);
    rt_ocl_arg args[7] = {rt_ocl_arg_buf(dst.buf), rt_ocl_arg_i64((int64_t)dst.offset), rt_ocl_arg_buf(src.buf),
                          rt_ocl_arg_i64((int64_t)src.offset), rt_ocl_arg_i64(r->rows), rt_ocl_arg_i64(r->width),
                          rt_ocl_arg_i64(r->src_stride)};
    size_t groups = (size_t)((r->width + 63) / 64);
    return rt_ocl_launch(e->o, e->prog, "loomrt_sum_rows", args, 7, groups < 65536 ? groups : 65536, 64, d);
}

bool rt_ocl_exec_run(rt_ocl_exec *e, ir_diag *d)
{
    const rt_plan *p = e->plan;
    bool ok = true;
    for (int i = 0; i < p->n_bufs; i++) {
        e->fresh[i] = false;
        if ((p->bufs[i].kind == RT_BUF_PARAM || p->bufs[i].kind == RT_BUF_INPUT) && !e->bound[i]) {
            ir_diag_error(d, -1, 0, 0, "opencl: %s '%s' is not bound",
                          p->bufs[i].kind == RT_BUF_PARAM ? "parameter" : "input", p->bufs[i].name);
            ok = false;
        }
    }
    for (int s = 0; ok && s < p->n_steps; s++) {
        const rt_plan_step *st = &p->steps[s];
        double t0 = e->profile ? rt_now_ms() : 0;
        switch (st->kind) {
        case RT_STEP_KERNEL: ok = run_kernel(e, s, &st->kernel, d); break;
        case RT_STEP_GEMM: {
            /* with an epilogue kernel, it adds the bias (plan.h) */
            const rt_plan_gemm *g = &st->gemm;
            rt_ocl_ref bias = g->epi.name ? (rt_ocl_ref){NULL, 0} : ref_of(e, g->bias);
            ok = rt_ocl_gemm(e->o, e->prog, g, ref_of(e, g->a), ref_of(e, g->b), ref_of(e, g->c), bias, d) &&
                 (!g->epi.name || run_kernel(e, s, &g->epi, d));
            break;
        }
        case RT_STEP_ATTENTION: ok = run_attention(e, s, d); break;
        case RT_STEP_COPY: ok = run_copy(e, &st->copy, d); break;
        case RT_STEP_CHECK_IDS: ok = check_ids(e, &st->check, d); break;
        case RT_STEP_WRITE_ROWS: ok = write_rows(e, &st->rows, d); break;
        case RT_STEP_ATTENTION_GRAD:
            ok = e->stats[s] ? attention_grad_kernels(e, s, d) : attention_grad(e, &st->agrad, d);
            break;
        case RT_STEP_SCATTER_ADD: ok = scatter_add(e, &st->scatter, d); break;
        case RT_STEP_SUM_ROWS: ok = sum_rows(e, &st->sum_rows, d); break;
        }
        if (ok && e->profile) {
            ok = rt_ocl_finish(e->o, d);
            double t1 = rt_now_ms();
            e->ms[st->kind] += t1 - t0;
            if (e->trace) {
                if (e->trace_desc[s] < 0)
                    e->trace_desc[s] = rt_trace_plan_step(e->trace, p, s);
                rt_trace_slice(e->trace, RT_TRACE_DEVICE, e->trace_desc[s], t0, t1);
            }
        }
        if (!ok)
            ir_diag_note(d, -1, 0, 0, "in step %d of the plan on %s", s, rt_ocl_device_name(e->o));
    }
    return rt_ocl_finish(e->o, d) && ok;
}

void rt_ocl_exec_profile(rt_ocl_exec *e, bool on)
{
    e->profile = on;
    e->trace = on ? rt_trace_active() : NULL;
    if (e->trace && !e->trace_desc) {
        e->trace_desc = malloc(sizeof *e->trace_desc * ((size_t)e->plan->n_steps + 1));
        if (!e->trace_desc)
            ir_unreachable("out of memory");
        for (int s = 0; s < e->plan->n_steps; s++)
            e->trace_desc[s] = -1;
        rt_trace_track_name(e->trace, RT_TRACE_DEVICE, "opencl queue");
    }
}

rt_exec_stats rt_ocl_exec_stats_get(const rt_ocl_exec *e)
{
    rt_exec_stats s = rt_exec_plan_stats(e->plan);
    s.ms_kernels = e->ms[RT_STEP_KERNEL] + e->ms[RT_STEP_SUM_ROWS];
    s.ms_gemms = e->ms[RT_STEP_GEMM];
    s.ms_attentions = e->ms[RT_STEP_ATTENTION] + e->ms[RT_STEP_ATTENTION_GRAD];
    s.ms_other = e->ms[RT_STEP_COPY] + e->ms[RT_STEP_CHECK_IDS] + e->ms[RT_STEP_WRITE_ROWS];
    s.ms_scatters = e->ms[RT_STEP_SCATTER_ADD];
    return s;
}

size_t rt_ocl_exec_device_bytes(const rt_ocl_exec *e) { return e->device_bytes; }
