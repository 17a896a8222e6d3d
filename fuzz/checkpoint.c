/* checkpoint.c — fuzzes checkpoint loading and saving (io/checkpoint.c), as `loom train
 * --resume` reads a checkpoint directory.
 *
 * Feeds: an input of parts (fuzz.h's FZ_SEP): manifest.json, the state file, and optionally
 * the tensors the model wants, one a line ("NAME D0 D1 ..."; without it: every tensor of the
 * state file, as parsed). The state file is written under the name the manifest's "state"
 * gives (when it is a plain file name), else as state-00000001.safetensors.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused checkpoint got an error naming the directory (or a file in it); an accepted one
 *    none;
 *  - an accepted checkpoint has the manifest's ranges (step, batch, seq, accum, the optimizer
 *    name's length) and each wanted tensor holds the state file's bytes;
 *  - saved again (rt_ckpt_save) and loaded, it gives the same info and tensors.
 */
#include "fuzz/fuzz.h"

#include <cjson/cJSON.h>

#include "io/checkpoint.h"
#include "io/safetensors.h"

#define MAX_WANTED 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

/* The wanted tensors: from the list text, else every tensor of the state bytes. */
static int wanted(const char *list, const uint8_t *state, size_t n_state, rt_ckpt_tensor *t, char names[][64])
{
    int n = 0;
    if (list[0]) {
        for (const char *p = list; *p && n < MAX_WANTED;) {
            const char *eol = strchr(p, '\n');
            size_t len = eol ? (size_t)(eol - p) : strlen(p);
            char line[256];
            snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
            p += len + (eol != NULL);
            char *save, *tok = strtok_r(line, " ", &save);
            if (!tok)
                continue;
            snprintf(names[n], 64, "%s", tok);
            ir_shape s = {0};
            bool good = true;
            while ((tok = strtok_r(NULL, " ", &save))) {
                long v = strtol(tok, NULL, 10);
                if (s.rank == IR_MAX_RANK || v < 0 || v > 4096)
                    good = false;
                else
                    s.dim[s.rank++] = v;
            }
            for (int k = 0; k < n; k++)
                good &= strcmp(names[k], names[n]) != 0; /* callers never want a tensor twice */
            if (good && ir_shape_numel(&s) <= (1 << 16)) {
                t[n] = (rt_ckpt_tensor){names[n], s, NULL};
                n++;
            }
        }
        return n;
    }
    rt_st_file f;
    ir_diag d;
    ir_diag_init(&d);
    if (rt_st_parse("state", state, n_state, &f, &d)) {
        for (int i = 0; i < f.n_tensors && n < MAX_WANTED; i++) {
            snprintf(names[n], 64, "%s", f.tensors[i].name);
            t[n] = (rt_ckpt_tensor){names[n], f.tensors[i].shape, NULL};
            n++;
        }
        rt_st_close(&f);
    }
    ir_diag_free(&d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    fz_parts ps = fz_split(data, size);
    size_t n_man, n_state;
    char *manifest = fz_part(&ps, 0, &n_man), *state = fz_part(&ps, 1, &n_state), *list = fz_part(&ps, 2, NULL);
    char dir[600], path[1200];
    snprintf(dir, sizeof dir, "%s/ckpt", fz_dir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    fz_write(path, manifest, n_man);
    cJSON *j = cJSON_Parse(manifest);
    const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "state") : NULL;
    const char *sname = cJSON_IsString(s) && strlen(s->valuestring) < 200 && !strchr(s->valuestring, '/') &&
                                strcmp(s->valuestring, ".") != 0 && strcmp(s->valuestring, "..") != 0 &&
                                s->valuestring[0]
                            ? s->valuestring
                            : "state-00000001.safetensors";
    snprintf(path, sizeof path, "%s/%s", dir, sname);
    fz_write(path, state, n_state);
    cJSON_Delete(j);

    rt_ckpt_tensor t[MAX_WANTED];
    static char names[MAX_WANTED][64];
    int n = wanted(list, (const uint8_t *)state, n_state, t, names);
    for (int i = 0; i < n; i++) {
        t[i].data = malloc(((size_t)ir_shape_numel(&t[i].shape) + 1) * sizeof(float));
        if (!t[i].data)
            abort();
    }
    ir_diag d;
    ir_diag_init(&d);
    rt_ckpt_info info;
    bool ok = rt_ckpt_load(dir, &info, t, n, &d);
    fz_check_outcome(ok, &d, dir, "rt_ckpt_load");
    if (ok) {
        if (info.step < 0 || info.batch < 1 || info.seq < 1 || info.accum < 1 ||
            strnlen(info.optimizer, sizeof info.optimizer) == sizeof info.optimizer)
            fz_fail("rt_ckpt_load accepted a manifest with values out of range");
        rt_st_file f;
        ir_diag ds;
        ir_diag_init(&ds);
        if (!rt_st_parse("state", state, n_state, &f, &ds))
            fz_fail("rt_ckpt_load accepted a state file rt_st_parse refuses");
        for (int i = 0; i < n; i++) {
            const rt_st_tensor *x = rt_st_find(&f, t[i].name);
            if (!x || x->dtype != DT_F32 || memcmp(x->data, t[i].data, (size_t)(x->end - x->begin)) != 0)
                fz_fail("tensor '%s' is not the state file's", t[i].name);
        }
        rt_st_close(&f);
        ir_diag_free(&ds);

        /* saved again, loaded again */
        char dir2[600];
        snprintf(dir2, sizeof dir2, "%s/again", fz_dir());
        ir_diag d2;
        ir_diag_init(&d2);
        if (!rt_ckpt_save(dir2, &info, t, n, &d2)) {
            fz_print_diag(&d2);
            fz_fail("rt_ckpt_save refused a checkpoint rt_ckpt_load accepted");
        }
        rt_ckpt_tensor u[MAX_WANTED];
        for (int i = 0; i < n; i++) {
            u[i] = t[i];
            u[i].data = malloc(((size_t)ir_shape_numel(&t[i].shape) + 1) * sizeof(float));
            if (!u[i].data)
                abort();
        }
        rt_ckpt_info info2;
        if (!rt_ckpt_load(dir2, &info2, u, n, &d2)) {
            fz_print_diag(&d2);
            fz_fail("rt_ckpt_load refuses the checkpoint rt_ckpt_save wrote");
        }
        if (info2.step != info.step || info2.next_batch != info.next_batch || info2.seed != info.seed ||
            info2.rng != info.rng || strcmp(info2.optimizer, info.optimizer) != 0 || info2.batch != info.batch ||
            info2.seq != info.seq || info2.accum != info.accum || info2.loss_scale != info.loss_scale ||
            info2.good_steps != info.good_steps)
            fz_fail("the checkpoint saved again has another manifest");
        for (int i = 0; i < n; i++) {
            if (memcmp(u[i].data, t[i].data, (size_t)ir_shape_numel(&t[i].shape) * sizeof(float)) != 0)
                fz_fail("tensor '%s' changed through save and load", t[i].name);
            free(u[i].data);
        }
        ir_diag_free(&d2);
    }
    for (int i = 0; i < n; i++)
        free(t[i].data);
    ir_diag_free(&d);
    free(manifest);
    free(state);
    free(list);
    fz_dir_clear();
    return 0;
}
