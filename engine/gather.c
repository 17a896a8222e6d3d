/* cmd_gather.c — `loom gather CKPT -o W.safetensors`: one safetensors file of the
 * whole params from a sharded checkpoint (what `loom train --mesh` with tp or pp writes:
 * CKPT/mesh.txt and one checkpoint per rank, CKPT/rank-NNNNN, of the rank's slices).
 *
 * Each rank's state file holds its params by rank-local name: the full name plus the slices
 * (passes/mesh.h), e.g. "h.0.attn.c_attn.weight{d1:1/2:3}". A param's full shape follows from
 * a slice's shape (the sliced dims times their parts); every slice is written into its place
 * (mesh_slice_insert), and the gathered tensor must be covered exactly once per distinct slice
 * (dp replicas and a tied param's stages repeat slices: the first is kept); the optimizer
 * state ("adam.m/X", ...) stays behind. The output loads like `loom init`'s:
 * `loom run --weights`, `loom generate --weights`.
 */
#include "engine/jobs.h"
#include "engine/run_values.h"
#include "io/checkpoint.h"
#include "passes/mesh.h"
#include "io/safetensors.h"
#include "runtime/memory.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    ir_shape shape;
    float *data;
    bool *filled;   /* per element: written by some slice */
    char **seen;    /* the slice suffixes written already */
    int n_seen;
} gathered;

typedef struct {
    gathered *t;
    int n, cap;
} table;

static gathered *lookup(table *tb, const char *name, const ir_shape *shape, const char *where, ir_diag *d)
{
    for (int i = 0; i < tb->n; i++)
        if (strcmp(tb->t[i].name, name) == 0) {
            if (!ir_shape_eq(&tb->t[i].shape, shape)) {
                char a[300], b[300];
                ir_type_str(DT_F32, &tb->t[i].shape, a, sizeof a);
                ir_type_str(DT_F32, shape, b, sizeof b);
                ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is %s here but %s in another rank's file", where, name, b, a);
                return NULL;
            }
            return &tb->t[i];
        }
    if (tb->n == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        gathered *g = realloc(tb->t, sizeof *g * (size_t)tb->cap);
        if (!g)
            ir_unreachable("out of memory");
        tb->t = g;
    }
    char what[5000];
    snprintf(what, sizeof what, "%.4200s: the whole tensor '%.600s'", where, name);
    if (!rt_host_alloc_ok(ir_shape_numel(shape) * (int64_t)(sizeof(float) + sizeof(bool)), what, d))
        return NULL;
    size_t n = (size_t)ir_shape_numel(shape);
    gathered *g = &tb->t[tb->n++];
    *g = (gathered){strdup(name), *shape, calloc(n + 1, sizeof(float)), calloc(n + 1, sizeof(bool)), NULL, 0};
    if (!g->name || !g->data || !g->filled)
        ir_unreachable("out of memory");
    return g;
}

/* Writes tensor t (rank-local name) of one rank's file into the table. */
static bool add_slice(table *tb, const rt_st_tensor *t, const char *where, ir_diag *d)
{
    char full[600];
    mesh_slice sl[MESH_MAX_SLICES];
    int n_sl = 0;
    if (!mesh_slice_parse(t->name, full, sizeof full, sl, &n_sl) && n_sl < 0) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s': its slice suffix is not {dD:P/N} or {dD:P/N:K} with 0 <= D < %d, "
                      "0 <= P < N",
                      where, t->name, IR_MAX_RANK);
        return false;
    }
    if (n_sl <= 0)
        snprintf(full, sizeof full, "%s", t->name);
    if (t->dtype != DT_F32) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is %s; a checkpoint holds f32", where, t->name,
                      ir_dtype_name(t->dtype));
        return false;
    }
    /* the whole tensor: each sliced dim times its parts; a slice of K blocks holds K equal
     * pieces, one of each block */
    ir_shape shape = t->shape;
    bool sliced[IR_MAX_RANK] = {false};
    for (int i = 0; i < n_sl; i++) {
        int k = sl[i].dim;
        if (k >= shape.rank || sliced[k] || shape.dim[k] % sl[i].blocks != 0 ||
            shape.dim[k] > IR_MAX_NUMEL / sl[i].parts) {
            ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': its slice does not fit its shape %s", where, t->name,
                          ir_shape_str(&t->shape, (char[300]){0}, 300));
            return false;
        }
        sliced[k] = true;
        shape.dim[k] *= sl[i].parts;
    }
    if (!ir_shape_fits(&shape)) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': the whole tensor would have more than 2^56 elements", where,
                      t->name);
        return false;
    }
    gathered *g = lookup(tb, full, &shape, where, d);
    if (!g)
        return false;
    const char *suffix = t->name + strlen(full);
    for (int i = 0; i < g->n_seen; i++)
        if (strcmp(g->seen[i], suffix) == 0)
            return true; /* a replica (dp, or a tied param's other stage) */
    char **seen = realloc(g->seen, sizeof *seen * (size_t)(g->n_seen + 1));
    if (!seen || !(seen[g->n_seen] = strdup(suffix)))
        ir_unreachable("out of memory");
    g->seen = seen;
    g->n_seen++;
    size_t n = (size_t)ir_shape_numel(&t->shape);
    float *src = malloc((n + 1) * sizeof *src);
    if (!src)
        ir_unreachable("out of memory");
    memcpy(src, t->data, n * sizeof *src);
    size_t total = (size_t)ir_shape_numel(&shape);
    float *mark = calloc(total + 1, sizeof *mark), *ones = malloc((n + 1) * sizeof *ones);
    if (!mark || !ones)
        ir_unreachable("out of memory");
    for (size_t i = 0; i < n; i++)
        ones[i] = 1;
    mesh_slice_insert(src, &shape, sl, n_sl, g->data);
    mesh_slice_insert(ones, &shape, sl, n_sl, mark);
    bool overlap = false;
    for (size_t i = 0; i < total; i++)
        if (mark[i] != 0) {
            overlap |= g->filled[i];
            g->filled[i] = true;
        }
    free(src);
    free(mark);
    free(ones);
    if (overlap) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' overlaps another slice of '%s'", where, t->name, full);
        return false;
    }
    return true;
}

/* An optimizer state tensor ("adam.m/X{...}"): a '/' before the slices (which hold '/' too). */
static bool is_state(const char *name)
{
    const char *slash = strchr(name, '/'), *brace = strchr(name, '{');
    return slash && (!brace || slash < brace);
}

bool eng_gather(const eng_opts *o, ir_diag *d)
{
    if (!o->file || !o->out) {
        ir_diag_error(d, -1, 0, 0, "gather: usage: loom gather CHECKPOINT_DIR -o W.safetensors");
        return ir_diag_ok(d);
    }
    char path[4200], line[256] = "";
    snprintf(path, sizeof path, "%s/mesh.txt", o->file);
    FILE *f = fopen(path, "r");
    int world = 0;
    if (!f || !fgets(line, sizeof line, f) || !strstr(line, ", ") ||
        sscanf(strrchr(line, ',') + 1, " %d ranks", &world) != 1 || world < 1) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: not a sharded checkpoint (no readable mesh.txt: `loom train --mesh` with tp or pp writes "
                      "one; a whole checkpoint needs no gathering)",
                      o->file);
        if (f)
            fclose(f);
        return ir_diag_ok(d);
    }
    fclose(f);
    table tb = {0};
    bool ok = true;
    for (int r = 0; ok && r < world; r++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/rank-%05d", o->file, r);
        rt_st_file st = {0};
        bool opened = rt_ckpt_open_state(dir, &st, d); /* checksum verified */
        ok = opened;
        for (int i = 0; ok && i < st.n_tensors; i++)
            if (!is_state(st.tensors[i].name))
                ok = add_slice(&tb, &st.tensors[i], st.path, d);
        if (opened)
            rt_st_close(&st);
    }
    for (int i = 0; ok && i < tb.n; i++)
        for (int64_t j = 0; j < ir_shape_numel(&tb.t[i].shape); j++)
            if (!tb.t[i].filled[j]) {
                ir_diag_error(d, -1, 0, 0, "%s: no rank holds element %" PRId64 " of '%s' (a rank's files missing?)",
                              o->file, j, tb.t[i].name);
                ok = false;
                break;
            }
    rt_st_entry *e = calloc((size_t)tb.n + 1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    for (int i = 0; i < tb.n; i++)
        e[i] = (rt_st_entry){tb.t[i].name, DT_F32, tb.t[i].shape, tb.t[i].data};
    rt_st_meta meta[] = {{"format", "pt"}};
    if (ok && rt_st_write(o->out, e, tb.n, meta, 1, NULL, NULL, d))
        printf("gathered %d tensors from %d ranks of %s into %s\n", tb.n, world, o->file, o->out);
    free(e);
    for (int i = 0; i < tb.n; i++) {
        for (int k = 0; k < tb.t[i].n_seen; k++)
            free(tb.t[i].seen[k]);
        free(tb.t[i].seen);
        free(tb.t[i].name);
        free(tb.t[i].data);
        free(tb.t[i].filled);
    }
    free(tb.t);
    return ir_diag_ok(d);
}
