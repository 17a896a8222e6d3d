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

#include "exec_opencl.h"

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
    put(&t, "\n/* attention (runtime/attention_opencl.c): B %" PRId64 " H %" PRId64 " G %" PRId64 " T %" PRId64
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
