/* mesh.c — the device mesh of `--mesh` and `--rank` (mesh.h), and parameter slices. */
#include "passes/mesh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const automatic_axes[] = {"dp", "tp", "pp"};

bool pass_mesh_parse(const char *spec, int rank, const ir_graph *g, pass_mesh *m, ir_diag *d)
{
    memset(m, 0, sizeof *m);
    if (g->n_axes) {
        m->n_axes = g->n_axes;
        for (int i = 0; i < g->n_axes; i++)
            snprintf(m->axis[i], sizeof m->axis[i], "%s", g->axis_name[i]);
    } else {
        m->n_axes = 3;
        for (int i = 0; i < 3; i++)
            snprintf(m->axis[i], sizeof m->axis[i], "%s", automatic_axes[i]);
    }
    for (int i = 0; i < m->n_axes; i++)
        m->size[i] = 1;
    char known[128] = "";
    for (int i = 0; i < m->n_axes; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", m->axis[i]);
    bool seen[IR_MAX_MESH_AXES] = {false};
    for (const char *p = spec ? spec : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char name[64];
        size_t nlen = eq ? (size_t)(eq - p) : len;
        snprintf(name, sizeof name, "%.*s", (int)(nlen < 60 ? nlen : 60), p);
        if (!eq) {
            ir_diag_error(d, -1, 0, 0, "--mesh: expected AXIS=SIZE, got '%.*s'", (int)(len < 60 ? len : 60), p);
            return false;
        }
        int a = pass_mesh_axis(m, name);
        if (a < 0) {
            ir_diag_error(d, -1, 0, 0, "--mesh: unknown axis '%s' (the model's mesh axes: %s)", name, known);
            return false;
        }
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (end != p + len || eq + 1 == end || v < 1 || v > 4096) {
            ir_diag_error(d, -1, 0, 0, "--mesh: size of axis '%s' must be an integer in [1, 4096], got '%.*s'", name,
                          (int)(p + len - eq - 1), eq + 1);
            return false;
        }
        if (seen[a]) {
            ir_diag_error(d, -1, 0, 0, "--mesh: axis '%s' given twice", name);
            return false;
        }
        seen[a] = true;
        m->size[a] = (int)v;
        if (!comma)
            break;
        p = comma + 1;
    }
    m->world = 1;
    for (int i = 0; i < m->n_axes; i++)
        m->world *= m->size[i];
    m->rank = rank;
    m->break_rank = -1;
    const char *hook = getenv("LOOM_TEST_BREAK_SHARD"), *colon = hook ? strchr(hook, ':') : NULL;
    if (colon && colon > hook) {
        m->break_rank = atoi(hook);
        snprintf(m->break_param, sizeof m->break_param, "%s", colon + 1);
    }
    if (rank < 0 || rank >= m->world) {
        char buf[128];
        ir_diag_error(d, -1, 0, 0, "--rank %d is outside the mesh %s of %d rank%s", rank,
                      pass_mesh_str(m, buf, sizeof buf), m->world, m->world == 1 ? "" : "s");
        return false;
    }
    return true;
}

int pass_mesh_axis(const pass_mesh *m, const char *name)
{
    for (int i = 0; i < m->n_axes; i++)
        if (strcmp(m->axis[i], name) == 0)
            return i;
    return -1;
}

int pass_mesh_size(const pass_mesh *m, const char *name)
{
    int a = pass_mesh_axis(m, name);
    return a < 0 ? 1 : m->size[a];
}

/* stride of axis a in the rank numbering */
static int stride(const pass_mesh *m, int a)
{
    int s = 1;
    for (int i = m->n_axes - 1; i > a; i--)
        s *= m->size[i];
    return s;
}

int pass_mesh_coord(const pass_mesh *m, int rank, int a) { return rank / stride(m, a) % m->size[a]; }

int pass_mesh_with(const pass_mesh *m, int rank, int a, int c)
{
    return rank + (c - pass_mesh_coord(m, rank, a)) * stride(m, a);
}

const char *pass_mesh_str(const pass_mesh *m, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < m->n_axes && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s=%d", i ? " x " : "", m->axis[i], m->size[i]);
    return buf;
}

/* ---- slices ---- */

/* A decimal number in [lo, hi] at *p (advancing it); false otherwise. */
static bool slice_int(const char **p, long lo, long hi, int *out)
{
    const char *s = *p;
    long v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++)
        if ((v = v * 10 + (*s - '0')) > hi)
            return false;
    if (v < lo)
        return false;
    *out = (int)v;
    *p = s;
    return true;
}

/* One "{dD:P/N}" or "{dD:P/N:K}" at *p. */
static bool slice_one(const char **p, mesh_slice *x)
{
    const char *s = *p;
    enum { MAX = 1 << 20 };
    *x = (mesh_slice){0, 0, 1, 1};
    if (strncmp(s, "{d", 2) != 0)
        return false;
    s += 2;
    if (!slice_int(&s, 0, IR_MAX_RANK - 1, &x->dim) || *s++ != ':' || !slice_int(&s, 0, MAX, &x->part) ||
        *s++ != '/' || !slice_int(&s, 1, MAX, &x->parts) || x->part >= x->parts)
        return false;
    if (*s == ':' && (s++, !slice_int(&s, 1, MAX, &x->blocks)))
        return false;
    if (*s++ != '}')
        return false;
    *p = s;
    return true;
}

bool mesh_slice_parse(const char *name, char *full, size_t cap, mesh_slice *s, int *n)
{
    *n = 0;
    const char *brace = strstr(name, "{d");
    size_t base = brace ? (size_t)(brace - name) : strlen(name);
    snprintf(full, cap, "%.*s", (int)base, name);
    for (const char *p = brace; p && *p;) {
        if (*n == MESH_MAX_SLICES || !slice_one(&p, &s[*n])) {
            *n = -1; /* not this form: a name no pass made */
            return false;
        }
        (*n)++;
    }
    return *n > 0;
}

void mesh_slice_append(char *buf, size_t cap, const mesh_slice *s)
{
    size_t k = strlen(buf);
    if (s->blocks > 1)
        snprintf(buf + k, cap - k, "{d%d:%d/%d:%d}", s->dim, s->part, s->parts, s->blocks);
    else
        snprintf(buf + k, cap - k, "{d%d:%d/%d}", s->dim, s->part, s->parts);
}

ir_shape mesh_slice_shape(const ir_shape *full, const mesh_slice *s, int n)
{
    ir_shape r = *full;
    for (int i = 0; i < n; i++)
        r.dim[s[i].dim] /= s[i].parts;
    return r;
}

/* Index along a sliced dim of local index j: block c of K, then part p of N within it. */
static int64_t full_index(const mesh_slice *s, int64_t dim_full, int64_t j)
{
    int64_t block = dim_full / s->blocks, part = block / s->parts;
    return (j / part) * block + (int64_t)s->part * part + j % part;
}

/* The offset in the full tensor of element e of the slice (local shape loc). */
static int64_t full_offset(const ir_shape *full, const ir_shape *loc, const mesh_slice *s, int n, int64_t e)
{
    int64_t idx[IR_MAX_RANK];
    for (int k = loc->rank - 1; k >= 0; k--) {
        idx[k] = loc->dim[k] ? e % loc->dim[k] : 0;
        e = loc->dim[k] ? e / loc->dim[k] : 0;
    }
    for (int i = 0; i < n; i++)
        idx[s[i].dim] = full_index(&s[i], full->dim[s[i].dim], idx[s[i].dim]);
    int64_t off = 0;
    for (int k = 0; k < full->rank; k++)
        off = off * full->dim[k] + idx[k];
    return off;
}

void mesh_slice_insert(const float *src, const ir_shape *full, const mesh_slice *s, int n, float *dst)
{
    ir_shape loc = mesh_slice_shape(full, s, n);
    int64_t count = ir_shape_numel(&loc);
    for (int64_t e = 0; e < count; e++)
        dst[full_offset(full, &loc, s, n, e)] = src[e];
}

void mesh_slice_runs(const ir_shape *full, const mesh_slice *s, int n, void (*fn)(void *ctx, int64_t e, int64_t f, int64_t len),
                     void *ctx)
{
    ir_shape loc = mesh_slice_shape(full, s, n);
    int64_t count = ir_shape_numel(&loc), last = loc.rank > 0 ? loc.dim[loc.rank - 1] : 1;
    int64_t part = last; /* elements of a local row contiguous in the full tensor */
    for (int i = 0; i < n; i++)
        if (s[i].dim == loc.rank - 1)
            part = full->dim[s[i].dim] / s[i].blocks / s[i].parts;
    for (int64_t e = 0, len; e < count; e += len) {
        int64_t j = last ? e % last : 0;
        len = part - j % part < last - j ? part - j % part : last - j;
        fn(ctx, e, full_offset(full, &loc, s, n, e), len);
    }
}

void mesh_slice_extract(const double *src, const ir_shape *full, const mesh_slice *s, int n, double *dst)
{
    ir_shape loc = mesh_slice_shape(full, s, n);
    int64_t count = ir_shape_numel(&loc);
    for (int64_t e = 0; e < count; e++)
        dst[e] = src[full_offset(full, &loc, s, n, e)];
}
