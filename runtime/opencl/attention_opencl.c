/* attention_opencl.c — the OpenCL executor's attention kernel, generated as OpenCL C text per
 * attention step (exec_opencl.h: rt_ocl_attention_source).
 *
 * Same semantics as attention_cpu.c: for every (b, h, query row i), scores s_j = scale · q_i·k_j
 * + mask[b, h, i, j] over the allowed keys j (all S, or j <= i + S - T when causal),
 * out_i = softmax(s) · v; head h reads kv head h / (H / G); a row with no allowed key, or only
 * -inf scores, is 0.
 *
 * Mapping: one work-group per (b, h, block of QB query rows), one work-item per row holding
 * its scaled q (D floats) and accumulator (E floats) in private memory. The group walks the
 * keys the block's last row may see in tiles of TS: the tile's K and V rows are loaded
 * cooperatively into __local memory, then every work-item runs the online softmax over the
 * tile (running max m, sum l, accumulator rescaled when m grows) up to its own causal limit.
 * No T×S buffer exists; K and V are read once per query block. Sizes, strides, the scale and
 * the causal flag are constants in the text, so the compiler unrolls the D and E loops.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/opencl/exec_opencl.h"

typedef struct {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            ir_unreachable("attention_opencl: formatting failed");
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        if (!t->s)
            ir_unreachable("out of memory");
    }
}

char *rt_ocl_attention_source(const rt_plan_attention *a, const char *name, bool with_mask, size_t *groups,
                              size_t *local)
{
    int64_t QB = a->T > 32 ? 64 : 32;
    int64_t TS = 4096 / (a->D + a->E);
    TS = TS < 1 ? 1 : TS > 64 ? 64 : TS;
    int64_t nqb = (a->T + QB - 1) / QB, ngrp = a->B * a->H * nqb;
    *local = (size_t)QB;
    *groups = (size_t)(ngrp < 65536 ? ngrp : 65536);
    text t = {0};
    put(&t, "\n/* attention (runtime/opencl/attention_opencl.c): B %" PRId64 " H %" PRId64 " G %" PRId64 " T %" PRId64
            " S %" PRId64 " D %" PRId64 " E %" PRId64 "%s%s */\n",
        a->B, a->H, a->G, a->T, a->S, a->D, a->E, a->causal ? ", causal" : "", with_mask ? ", mask" : "");
    put(&t, "__kernel void %s(__global const float *q, const long q_off, __global const float *k, const long k_off,\n"
            "        __global const float *v, const long v_off, __global const float *mask, const long mask_off,\n"
            "        __global float *out, const long out_off)\n{\n", name);
    put(&t, "    __local float ks[%" PRId64 "], vs[%" PRId64 "];\n", TS * a->D, TS * a->E);
    put(&t, "    q += q_off;\n    k += k_off;\n    v += v_off;\n    mask += mask_off;\n    out += out_off;\n");
    put(&t, "    const long lid = (long)get_local_id(0);\n");
    put(&t, "    for (long grp = (long)get_group_id(0); grp < %" PRId64 "L; grp += (long)get_num_groups(0)) {\n", ngrp);
    put(&t, "        const long qb = grp %% %" PRId64 "L, bh = grp / %" PRId64 "L;\n", nqb, nqb);
    put(&t, "        const long h = bh %% %" PRId64 "L, b = bh / %" PRId64 "L, g = h / %" PRId64 "L;\n", a->H, a->H,
        a->H / a->G);
    put(&t, "        const long t = qb * %" PRId64 "L + lid;\n", QB);
    put(&t, "        const bool active = t < %" PRId64 "L;\n", a->T);
    put(&t, "        float qv[%" PRId64 "], acc[%" PRId64 "];\n", a->D, a->E);
    put(&t, "        float m = -INFINITY, l = 0.0f;\n");
    put(&t, "        __global const float *qr = q + b * %" PRId64 "L + h * %" PRId64 "L + t * %" PRId64 "L;\n",
        a->q_stride[0], a->q_stride[1], a->q_stride[2]);
    put(&t, "        for (int d = 0; d < %" PRId64 "; d++)\n            qv[d] = active ? qr[d] * %.9ef : 0.0f;\n", a->D,
        (double)(float)a->scale);
    put(&t, "        for (int e = 0; e < %" PRId64 "; e++)\n            acc[e] = 0.0f;\n", a->E);
    /* keys [0, jend) for the block (its last row sees the most), [0, lim) for this row */
    int64_t shift = a->S - a->T + 1;
    put(&t, "        const long tlast = min(qb * %" PRId64 "L + %" PRId64 "L, %" PRId64 "L) - 1;\n", QB, QB, a->T);
    if (a->causal) {
        put(&t, "        const long jend = clamp(tlast + %" PRId64 "L, 0L, %" PRId64 "L);\n", shift, a->S);
        put(&t, "        const long lim = active ? clamp(t + %" PRId64 "L, 0L, %" PRId64 "L) : 0L;\n", shift, a->S);
    } else {
        put(&t, "        const long jend = %" PRId64 "L;\n", a->S);
        put(&t, "        const long lim = active ? %" PRId64 "L : 0L;\n", a->S);
    }
    put(&t, "        __global const float *kb = k + b * %" PRId64 "L + g * %" PRId64 "L;\n", a->k_stride[0],
        a->k_stride[1]);
    put(&t, "        __global const float *vb = v + b * %" PRId64 "L + g * %" PRId64 "L;\n", a->v_stride[0],
        a->v_stride[1]);
    if (with_mask)
        put(&t, "        __global const float *mr = mask + b * %" PRId64 "L + h * %" PRId64 "L + t * %" PRId64 "L;\n",
            a->mask_stride[0], a->mask_stride[1], a->mask_stride[2]);
    put(&t, "        for (long j0 = 0; j0 < jend; j0 += %" PRId64 "L) {\n", TS);
    put(&t, "            const long n = min(%" PRId64 "L, jend - j0);\n", TS);
    put(&t, "            barrier(CLK_LOCAL_MEM_FENCE);\n");
    put(&t, "            for (long x = lid; x < n * %" PRId64 "L; x += %" PRId64 "L)\n", a->D, QB);
    put(&t, "                ks[x] = kb[(j0 + x / %" PRId64 "L) * %" PRId64 "L + x %% %" PRId64 "L];\n", a->D,
        a->k_stride[2], a->D);
    put(&t, "            for (long x = lid; x < n * %" PRId64 "L; x += %" PRId64 "L)\n", a->E, QB);
    put(&t, "                vs[x] = vb[(j0 + x / %" PRId64 "L) * %" PRId64 "L + x %% %" PRId64 "L];\n", a->E,
        a->v_stride[2], a->E);
    put(&t, "            barrier(CLK_LOCAL_MEM_FENCE);\n");
    put(&t, "            const long nn = min(n, lim - j0);\n");
    put(&t, "            for (long jj = 0; jj < nn; jj++) {\n");
    put(&t, "                float s = 0.0f;\n");
    put(&t, "                for (int d = 0; d < %" PRId64 "; d++)\n                    s += qv[d] * ks[jj * %" PRId64
            "L + d];\n", a->D, a->D);
    if (with_mask)
        put(&t, "                s += mr[(j0 + jj) * %" PRId64 "L];\n", a->mask_stride[3]);
    put(&t, "                if (s == -INFINITY)\n                    continue;\n");
    put(&t, "                if (s > m) {\n");
    put(&t, "                    const float corr = exp(m - s);\n");
    put(&t, "                    l *= corr;\n");
    put(&t, "                    for (int e = 0; e < %" PRId64 "; e++)\n                        acc[e] *= corr;\n", a->E);
    put(&t, "                    m = s;\n                }\n");
    put(&t, "                const float p = exp(s - m);\n");
    put(&t, "                l += p;\n");
    put(&t, "                for (int e = 0; e < %" PRId64 "; e++)\n                    acc[e] += p * vs[jj * %" PRId64
            "L + e];\n", a->E, a->E);
    put(&t, "            }\n        }\n");
    put(&t, "        if (active) {\n");
    put(&t, "            const float inv = l > 0.0f ? 1.0f / l : 0.0f;\n");
    put(&t, "            __global float *orow = out + b * %" PRId64 "L + h * %" PRId64 "L + t * %" PRId64 "L;\n",
        a->out_stride[0], a->out_stride[1], a->out_stride[2]);
    put(&t, "            for (int e = 0; e < %" PRId64 "; e++)\n                orow[e] = acc[e] * inv;\n", a->E);
    put(&t, "        }\n    }\n}\n");
    return t.s;
}

/* ---- the backward: rt_ocl_attention_grad_source --------------------------------------------
 * attention_grad_cpu.c's math (s = scale·q·k + mask over the allowed keys, p = softmax(s),
 * dp = dy·v, Δ = Σ p·dp, ds = p·(dp − Δ); dq = scale·Σ ds·k, dk = scale·Σ ds·q, dv = Σ p·dy,
 * dmask = ds) in two kernels, each work-item owning what it writes (no atomics, one summation
 * order: deterministic):
 *   NAME_rows: one work-item per (b, h, query row): pass 1 the row's max m and sum l (online),
 *     pass 2 Δ, pass 3 dq and the dmask row; (m, l, Δ) go to the stats buffer.
 *   NAME_keys: one work-item per (b, kv head g, key j): over the query heads of g and the rows
 *     that see j, p and ds recomputed from the stats; dk and dv.
 * Score recomputation costs O(T·S·D) per head per kernel, as the forward's; sizes, strides,
 * the scale and causality are constants in the text. */
static void put_score(text *t, const rt_plan_attention *a, bool with_mask, const char *qrow, const char *krow,
                      const char *mrow)
{
    put(t, "            float s = 0.0f;\n");
    put(t, "            for (int d = 0; d < %" PRId64 "; d++)\n                s += %s[d] * %s[d];\n", a->D, qrow, krow);
    put(t, "            s *= %.9ef;\n", (double)(float)a->scale);
    if (with_mask)
        put(t, "            s += %s;\n", mrow);
}

char *rt_ocl_attention_grad_source(const rt_plan_attention_grad *g, const char *name, size_t *row_groups,
                                   size_t *key_groups, size_t *local)
{
    const rt_plan_attention *a = &g->fwd;
    bool with_mask = a->mask.buf >= 0;
    int64_t rows = a->B * a->H * a->T, keys = a->B * a->G * a->S, hpg = a->H / a->G, shift = a->S - a->T + 1;
    *local = 64;
    int64_t rg = (rows + 63) / 64, kg = (keys + 63) / 64;
    *row_groups = (size_t)(rg < 65536 ? rg : 65536);
    *key_groups = (size_t)(kg < 65536 ? kg : 65536);
    text t = {0};
    const char *params =
        "(__global const float *q, const long q_off, __global const float *k, const long k_off,\n"
        "        __global const float *v, const long v_off, __global const float *mask, const long mask_off,\n"
        "        __global const float *dy, const long dy_off, __global float *stats, const long stats_off,\n"
        "        __global float *dq, const long dq_off, __global float *dk, const long dk_off,\n"
        "        __global float *dv, const long dv_off, __global float *dmask, const long dmask_off)\n{\n"
        "    q += q_off;\n    k += k_off;\n    v += v_off;\n    mask += mask_off;\n    dy += dy_off;\n"
        "    stats += stats_off;\n    dq += dq_off;\n    dk += dk_off;\n    dv += dv_off;\n    dmask += dmask_off;\n";
    put(&t, "\n/* attention gradient (runtime/opencl/attention_opencl.c): B %" PRId64 " H %" PRId64 " G %" PRId64 " T %" PRId64
            " S %" PRId64 " D %" PRId64 " E %" PRId64 "%s%s */\n",
        a->B, a->H, a->G, a->T, a->S, a->D, a->E, a->causal ? ", causal" : "", with_mask ? ", mask" : "");

    /* rows */
    put(&t, "__kernel void %s_rows%s", name, params);
    put(&t, "    for (long r = (long)get_global_id(0); r < %" PRId64 "L; r += (long)get_global_size(0)) {\n", rows);
    put(&t, "        const long i = r %% %" PRId64 "L, bh = r / %" PRId64 "L;\n", a->T, a->T);
    put(&t, "        const long h = bh %% %" PRId64 "L, b = bh / %" PRId64 "L, g = h / %" PRId64 "L;\n", a->H, a->H, hpg);
    put(&t, "        __global const float *qi = q + b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L;\n",
        a->q_stride[0], a->q_stride[1], a->q_stride[2]);
    put(&t, "        __global const float *dyi = dy + b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L;\n",
        g->dy_stride[0], g->dy_stride[1], g->dy_stride[2]);
    put(&t, "        __global const float *kb = k + b * %" PRId64 "L + g * %" PRId64 "L;\n", a->k_stride[0], a->k_stride[1]);
    put(&t, "        __global const float *vb = v + b * %" PRId64 "L + g * %" PRId64 "L;\n", a->v_stride[0], a->v_stride[1]);
    put(&t, "        __global const float *mr = mask + b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L;\n",
        a->mask_stride[0], a->mask_stride[1], a->mask_stride[2]);
    if (a->causal)
        put(&t, "        const long lim = clamp(i + %" PRId64 "L, 0L, %" PRId64 "L);\n", shift, a->S);
    else
        put(&t, "        const long lim = %" PRId64 "L;\n", a->S);
    char mexpr[96];
    snprintf(mexpr, sizeof mexpr, "mr[j * %" PRId64 "L]", a->mask_stride[3]);
    char kexpr[64];
    snprintf(kexpr, sizeof kexpr, "(kb + j * %" PRId64 "L)", a->k_stride[2]);
    put(&t, "        float m = -INFINITY, l = 0.0f, delta = 0.0f;\n");
    put(&t, "        for (long j = 0; j < lim; j++) {\n");
    put_score(&t, a, with_mask, "qi", kexpr, mexpr);
    put(&t, "            if (s == -INFINITY)\n                continue;\n");
    put(&t, "            if (s > m) {\n                l = l * exp(m - s) + 1.0f;\n                m = s;\n            } else\n"
            "                l += exp(s - m);\n        }\n");
    put(&t, "        const float inv = l > 0.0f ? 1.0f / l : 0.0f;\n");
    /* pass 2: Δ */
    put(&t, "        for (long j = 0; j < lim; j++) {\n");
    put_score(&t, a, with_mask, "qi", kexpr, mexpr);
    put(&t, "            if (s == -INFINITY)\n                continue;\n");
    put(&t, "            const float p = exp(s - m) * inv;\n");
    put(&t, "            __global const float *vj = vb + j * %" PRId64 "L;\n", a->v_stride[2]);
    put(&t, "            float dp = 0.0f;\n");
    put(&t, "            for (int e = 0; e < %" PRId64 "; e++)\n                dp += dyi[e] * vj[e];\n", a->E);
    put(&t, "            delta += p * dp;\n        }\n");
    put(&t, "        stats[3 * r] = m;\n        stats[3 * r + 1] = inv;\n        stats[3 * r + 2] = delta;\n");
    /* pass 3: dq, dmask */
    put(&t, "        float acc[%" PRId64 "];\n", a->D);
    put(&t, "        for (int d = 0; d < %" PRId64 "; d++)\n            acc[d] = 0.0f;\n", a->D);
    put(&t, "        for (long j = 0; j < %" PRId64 "L; j++) {\n", a->S);
    put(&t, "            float ds = 0.0f;\n");
    put(&t, "            if (j < lim) {\n");
    put(&t, "            __global const float *kj = kb + j * %" PRId64 "L;\n", a->k_stride[2]);
    put_score(&t, a, with_mask, "qi", "kj", mexpr);
    put(&t, "            if (s != -INFINITY) {\n");
    put(&t, "                const float p = exp(s - m) * inv;\n");
    put(&t, "                __global const float *vj = vb + j * %" PRId64 "L;\n", a->v_stride[2]);
    put(&t, "                float dp = 0.0f;\n");
    put(&t, "                for (int e = 0; e < %" PRId64 "; e++)\n                    dp += dyi[e] * vj[e];\n", a->E);
    put(&t, "                ds = p * (dp - delta);\n");
    put(&t, "                for (int d = 0; d < %" PRId64 "; d++)\n                    acc[d] += ds * kj[d];\n", a->D);
    put(&t, "            }\n            }\n");
    if (g->dmask.buf >= 0)
        put(&t, "            dmask[r * %" PRId64 "L + j] = ds;\n", a->S);
    put(&t, "        }\n");
    if (g->dq.buf >= 0)
        put(&t, "        for (int d = 0; d < %" PRId64 "; d++)\n            dq[r * %" PRId64 "L + d] = acc[d] * %.9ef;\n",
            a->D, a->D, (double)(float)a->scale);
    put(&t, "    }\n}\n");

    /* keys */
    put(&t, "__kernel void %s_keys%s", name, params);
    put(&t, "    for (long r = (long)get_global_id(0); r < %" PRId64 "L; r += (long)get_global_size(0)) {\n", keys);
    put(&t, "        const long j = r %% %" PRId64 "L, bg = r / %" PRId64 "L;\n", a->S, a->S);
    put(&t, "        const long g = bg %% %" PRId64 "L, b = bg / %" PRId64 "L;\n", a->G, a->G);
    put(&t, "        __global const float *kj = k + b * %" PRId64 "L + g * %" PRId64 "L + j * %" PRId64 "L;\n",
        a->k_stride[0], a->k_stride[1], a->k_stride[2]);
    put(&t, "        __global const float *vj = v + b * %" PRId64 "L + g * %" PRId64 "L + j * %" PRId64 "L;\n",
        a->v_stride[0], a->v_stride[1], a->v_stride[2]);
    put(&t, "        float ak[%" PRId64 "], av[%" PRId64 "];\n", a->D, a->E);
    put(&t, "        for (int d = 0; d < %" PRId64 "; d++)\n            ak[d] = 0.0f;\n", a->D);
    put(&t, "        for (int e = 0; e < %" PRId64 "; e++)\n            av[e] = 0.0f;\n", a->E);
    put(&t, "        for (long h = g * %" PRId64 "L; h < (g + 1) * %" PRId64 "L; h++)\n", hpg, hpg);
    /* rows that see key j: all, or i >= j - shift when causal */
    if (a->causal)
        put(&t, "        for (long i = max(j - %" PRId64 "L, 0L); i < %" PRId64 "L; i++) {\n", shift - 1, a->T);
    else
        put(&t, "        for (long i = 0; i < %" PRId64 "L; i++) {\n", a->T);
    put(&t, "            const long row = (b * %" PRId64 "L + h) * %" PRId64 "L + i;\n", a->H, a->T);
    put(&t, "            const float inv = stats[3 * row + 1];\n");
    put(&t, "            if (inv == 0.0f)\n                continue;\n");
    put(&t, "            __global const float *qi = q + b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L;\n",
        a->q_stride[0], a->q_stride[1], a->q_stride[2]);
    put(&t, "            __global const float *dyi = dy + b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L;\n",
        g->dy_stride[0], g->dy_stride[1], g->dy_stride[2]);
    snprintf(mexpr, sizeof mexpr, "mask[b * %" PRId64 "L + h * %" PRId64 "L + i * %" PRId64 "L + j * %" PRId64 "L]",
             a->mask_stride[0], a->mask_stride[1], a->mask_stride[2], a->mask_stride[3]);
    put_score(&t, a, with_mask, "qi", "kj", mexpr);
    put(&t, "            if (s == -INFINITY)\n                continue;\n");
    put(&t, "            const float p = exp(s - stats[3 * row]) * inv;\n");
    put(&t, "            float dp = 0.0f;\n");
    put(&t, "            for (int e = 0; e < %" PRId64 "; e++)\n                dp += dyi[e] * vj[e];\n", a->E);
    put(&t, "            const float ds = p * (dp - stats[3 * row + 2]);\n");
    put(&t, "            for (int d = 0; d < %" PRId64 "; d++)\n                ak[d] += ds * qi[d];\n", a->D);
    put(&t, "            for (int e = 0; e < %" PRId64 "; e++)\n                av[e] += p * dyi[e];\n", a->E);
    put(&t, "        }\n");
    if (g->dk.buf >= 0)
        put(&t, "        for (int d = 0; d < %" PRId64 "; d++)\n            dk[r * %" PRId64 "L + d] = ak[d] * %.9ef;\n",
            a->D, a->D, (double)(float)a->scale);
    if (g->dv.buf >= 0)
        put(&t, "        for (int e = 0; e < %" PRId64 "; e++)\n            dv[r * %" PRId64 "L + e] = av[e];\n", a->E, a->E);
    put(&t, "    }\n}\n");
    return t.s;
}
