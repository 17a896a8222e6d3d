/* checkpoint.c — atomic training checkpoints: a safetensors state file and a JSON manifest
 * (format and crash safety in checkpoint.h). */
#include "io/checkpoint.h"
#include "runtime/progress.h"

#include "io/checksum.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "manifest.json"

static bool fsync_dir(const char *dir, ir_diag *d)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot sync the directory: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    return true;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        ir_unreachable("out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Writes text to dir/name through name.tmp, fsync, rename. */
static bool write_atomic(const char *dir, const char *name, const char *text, ir_diag *d)
{
    char *path = path_join(dir, name), tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0) {
        err = errno;
        ok = false;
    }
    if (!ok) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot write: %s", path, strerror(err));
        remove(tmp);
    }
    free(path);
    return ok;
}

/* Removes state files other than keep, and leftover temporary files, from dir. */
static void remove_stale(const char *dir, const char *keep)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    for (struct dirent *e; (e = readdir(dh));) {
        size_t n = strlen(e->d_name);
        bool state = strncmp(e->d_name, "state-", 6) == 0 && strcmp(e->d_name, keep) != 0;
        bool tmp = n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0;
        if (state || tmp) {
            char *p = path_join(dir, e->d_name);
            remove(p);
            free(p);
        }
    }
    closedir(dh);
}

bool rt_ckpt_save(const char *dir, const rt_ckpt_info *info, const rt_ckpt_tensor *t, int n, ir_diag *d)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot create the checkpoint directory: %s", dir, strerror(errno));
        return false;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ir_diag_error(d, -1, 0, 0, "%s: not a directory", dir);
        return false;
    }
    char state[64];
    snprintf(state, sizeof state, "state-%08" PRId64 ".safetensors", info->step);
    rt_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e)
        ir_unreachable("out of memory");
    for (int i = 0; i < n; i++)
        e[i] = (rt_st_entry){t[i].name, DT_F32, t[i].shape, t[i].data};
    char *spath = path_join(dir, state), step_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, info->step);
    rt_st_meta meta[] = {{"format", "loom-checkpoint"}, {"step", step_s}};
    uint64_t sum = 0;
    bool ok = rt_st_write_sum(spath, e, n, meta, 2, NULL, NULL, &sum, d);
    char sum_s[24];
    rt_sum_str(sum, sum_s);
    free(e);
    free(spath);

    char u[3][32];
    snprintf(u[0], sizeof u[0], "%" PRIu64, info->seed);
    snprintf(u[1], sizeof u[1], "%" PRIu64, info->rng);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "loom-checkpoint");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddNumberToObject(j, "step", (double)info->step);
    cJSON_AddNumberToObject(j, "next_batch", (double)info->next_batch);
    cJSON_AddStringToObject(j, "seed", u[0]);
    cJSON_AddStringToObject(j, "rng", u[1]);
    cJSON_AddStringToObject(j, "optimizer", info->optimizer);
    cJSON_AddNumberToObject(j, "batch", info->batch);
    cJSON_AddNumberToObject(j, "seq", info->seq);
    cJSON_AddNumberToObject(j, "accum", info->accum);
    cJSON_AddStringToObject(j, "state", state);
    cJSON_AddStringToObject(j, "state_sum", sum_s);
    if (info->loss_scale > 0) {
        cJSON_AddNumberToObject(j, "loss_scale", info->loss_scale);
        cJSON_AddNumberToObject(j, "loss_scale_good_steps", (double)info->good_steps);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        ir_unreachable("out of memory");
    /* the state file must be durable before the manifest that names it */
    ok = ok && fsync_dir(dir, d) && write_atomic(dir, MANIFEST, text, d) && fsync_dir(dir, d);
    cJSON_free(text);
    if (ok)
        remove_stale(dir, state);
    return ok;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* A number in [lo, hi] (an integer when integer): checked as a double, never cast first (a cast
 * of 1e20 to an integer is undefined). */
static bool get_num(const cJSON *j, const char *key, double lo, double hi, bool integer, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        (integer && floor(v->valuedouble) != v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

/* An integer in [lo, hi]; hi at most 2^53, where doubles still hold every integer. */
static bool get_int(const cJSON *j, const char *key, double lo, double hi, double *out)
{
    return get_num(j, key, lo, hi, true, out);
}

static bool get_u64(const cJSON *j, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v->valuestring, &end, 10);
    if (*end || errno || v->valuestring[0] == '-')
        return false;
    *out = x;
    return true;
}

static char *read_text(const char *path, ir_diag *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "%s: no checkpoint here (%s)", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t got; s && (got = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            if (cap > (1u << 20))
                break; /* a manifest is tiny: don't read a huge file */
            char *ns = realloc(s, cap * 2);
            if (!ns)
                free(s);
            s = ns;
            cap *= 2;
        }
    }
    fclose(f);
    if (!s)
        ir_unreachable("out of memory");
    s[n] = 0;
    return s;
}

/* The state file's checksum against the manifest's "state_sum" (absent in checkpoints of
 * older loom: not checked). */
static bool check_sum(const char *spath, const rt_st_file *f, const cJSON *want, ir_diag *d)
{
    if (!cJSON_IsString(want))
        return true;
    rt_sum s;
    rt_sum_init(&s);
    rt_sum_add(&s, f->map, f->map_len);
    char got[24];
    rt_sum_str(rt_sum_final(&s), got);
    if (strcmp(got, want->valuestring) == 0)
        return true;
    ir_diag_error(d, -1, 0, 0,
                  "%s: its checksum is %s but the manifest says %s: the file changed after it was written (a "
                  "flipped bit, a torn copy)",
                  spath, got, want->valuestring);
    return false;
}

int64_t rt_ckpt_step(const char *dir)
{
    ir_diag quiet;
    ir_diag_init(&quiet);
    char *mpath = path_join(dir, MANIFEST);
    char *text = read_text(mpath, &quiet);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    double step = -1;
    if (!j || !get_int(j, "step", 0, 9e15, &step))
        step = -1;
    cJSON_Delete(j);
    free(text);
    free(mpath);
    ir_diag_free(&quiet);
    return (int64_t)step;
}

bool rt_ckpt_open_state(const char *dir, rt_st_file *f, ir_diag *d)
{
    char *mpath = path_join(dir, MANIFEST);
    char *text = read_text(mpath, d);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *state = j ? cJSON_GetObjectItemCaseSensitive(j, "state") : NULL;
    bool ok = cJSON_IsString(state) && strncmp(state->valuestring, "state-", 6) == 0 && !strchr(state->valuestring, '/');
    if (!ok && (text || j))
        ir_diag_error(d, -1, 0, 0, "%s: not JSON, or without a \"state\" file name", mpath);
    char *spath = ok ? path_join(dir, state->valuestring) : NULL;
    ok = ok && rt_st_open(spath, f, d);
    if (ok && !check_sum(spath, f, cJSON_GetObjectItemCaseSensitive(j, "state_sum"), d)) {
        rt_st_close(f);
        ok = false;
    }
    free(spath);
    free(mpath);
    cJSON_Delete(j);
    return ok;
}

bool rt_ckpt_load(const char *dir, rt_ckpt_info *info, rt_ckpt_tensor *t, int n, ir_diag *d)
{
    memset(info, 0, sizeof *info);
    struct stat st;
    errno = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ir_diag_error(d, -1, 0, 0, "%s: not a checkpoint directory (%s)", dir,
                      errno ? strerror(errno) : "not a directory");
        return false;
    }
    char *mpath = path_join(dir, MANIFEST);
    char *text = read_text(mpath, d);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    bool ok = j != NULL;
    if (text && !j)
        ir_diag_error(d, -1, 0, 0, "%s: not valid JSON", mpath);
    const char *bad = NULL;
    double step = 0, next = 0, ver = 0, b = 0, s = 0, a = 0, ls = 0, good = 0;
    const cJSON *fmt = ok ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    const cJSON *opt = ok ? cJSON_GetObjectItemCaseSensitive(j, "optimizer") : NULL;
    const cJSON *state = ok ? cJSON_GetObjectItemCaseSensitive(j, "state") : NULL;
    if (!ok)
        ;
    else if (!cJSON_IsObject(j) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "loom-checkpoint") != 0)
        bad = "\"format\" is not \"loom-checkpoint\"";
    else if (!get_int(j, "version", 1, 1, &ver))
        bad = "unsupported \"version\" (this loom reads version 1)";
    else if (!get_int(j, "step", 0, 9e15, &step))
        bad = "\"step\" missing or not a non-negative integer";
    else if (!get_int(j, "next_batch", 0, 9e15, &next))
        bad = "\"next_batch\" missing or not a non-negative integer";
    else if (!get_u64(j, "seed", &info->seed) || !get_u64(j, "rng", &info->rng))
        bad = "\"seed\" and \"rng\" must be decimal strings";
    else if (!cJSON_IsString(opt) || strlen(opt->valuestring) >= sizeof info->optimizer)
        bad = "\"optimizer\" missing";
    else if (!get_int(j, "batch", 1, 1e9, &b) || !get_int(j, "seq", 1, 1e9, &s) || !get_int(j, "accum", 1, 1e9, &a))
        bad = "\"batch\", \"seq\" and \"accum\" must be positive integers";
    else if (!cJSON_IsString(state) || strncmp(state->valuestring, "state-", 6) != 0 || strchr(state->valuestring, '/'))
        bad = "\"state\" must name a state-*.safetensors file in the directory";
    else if (cJSON_GetObjectItemCaseSensitive(j, "state_sum") &&
             !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "state_sum")))
        bad = "\"state_sum\" must be a string (sum64:HEX)";
    else if (cJSON_GetObjectItemCaseSensitive(j, "loss_scale") &&
             (!get_num(j, "loss_scale", 1, 1e30, false, &ls) || !get_int(j, "loss_scale_good_steps", 0, 1e15, &good)))
        bad = "\"loss_scale\" must be a number in [1, 1e30] and \"loss_scale_good_steps\" a non-negative integer";
    if (bad) {
        ir_diag_error(d, -1, 0, 0, "%s: %s", mpath, bad);
        ok = false;
    }
    rt_st_file f = {0};
    char *spath = NULL;
    if (ok) {
        info->step = (int64_t)step;
        info->next_batch = (uint64_t)next;
        info->batch = (int)b;
        info->seq = (int)s;
        info->accum = (int)a;
        info->loss_scale = ls;
        info->good_steps = (int64_t)good;
        strcpy(info->optimizer, opt->valuestring);
        spath = path_join(dir, state->valuestring);
        ok = rt_st_open(spath, &f, d) &&
             check_sum(spath, &f, cJSON_GetObjectItemCaseSensitive(j, "state_sum"), d);
    }
    rt_progress progress;
    rt_progress_begin(&progress, "loading checkpoint");
    for (int i = 0; ok && i < n; i++) {
        const rt_st_tensor *x = rt_st_find(&f, t[i].name);
        char want[96], got[96];
        char detail[64];
        snprintf(detail, sizeof detail, "(tensor %d of %d)", i + 1, n);
        rt_progress_update(&progress, detail);
        if (!x) {
            ir_diag_error(d, -1, 0, 0, "%s: no tensor '%s' (the checkpoint is of another model or optimizer)", spath,
                          t[i].name);
            ok = false;
        } else if (x->dtype != DT_F32 || !ir_shape_eq(&x->shape, &t[i].shape)) {
            ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is %s, the model wants %s", spath, t[i].name,
                          ir_type_str(x->dtype, &x->shape, got, sizeof got),
                          ir_type_str(DT_F32, &t[i].shape, want, sizeof want));
            ok = false;
        } else {
            rt_convert_to_f32(DT_F32, x->data, t[i].data, (size_t)ir_shape_numel(&x->shape));
        }
    }
    rt_progress_end(&progress);
    if (ok && f.n_tensors != n) {
        for (int k = 0; k < f.n_tensors; k++) {
            bool known = false;
            for (int i = 0; i < n && !known; i++)
                known = strcmp(f.tensors[k].name, t[i].name) == 0;
            if (!known) {
                ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is not part of this model's training state", spath,
                              f.tensors[k].name);
                break;
            }
        }
        ok = false;
    }
    rt_st_close(&f);
    free(spath);
    free(mpath);
    cJSON_Delete(j);
    return ok;
}
