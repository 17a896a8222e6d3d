/* gather.c — fuzzes `loom gather` (engine/gather.c with passes/mesh.c's slice names): a sharded
 * checkpoint made whole.
 *
 * Feeds: an input of parts (fuzz.h's FZ_SEP): CKPT/mesh.txt, then for each rank r = 0, 1, ...
 * two parts, CKPT/rank-NNNNN/manifest.json and its state file (written under the name the
 * manifest's "state" gives when it is a plain file name, else state.safetensors). Then
 * eng_gather(CKPT, -o CKPT/whole.safetensors) as the command runs it.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused checkpoint got an error naming the checkpoint or a file in it; an accepted one
 *    none;
 *  - an accepted one wrote a file that reads back (rt_st_open), all f32, holding every param
 *    tensor of the rank files (optimizer state "x/..." left out) by its full name, with the
 *    values of each of rank 0's tensors that has no slice suffix (the first replica is kept).
 */
#include "fuzz/fuzz.h"

#include <cjson/cJSON.h>

#include "engine/jobs.h"
#include "io/safetensors.h"
#include "passes/mesh.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    if (!freopen("/dev/null", "w", stdout)) /* "gathered N tensors ..." */
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    fz_parts ps = fz_split(data, size);
    char dir[600], path[1400];
    snprintf(dir, sizeof dir, "%s/ckpt", fz_dir());
    mkdir(dir, 0755);
    size_t n;
    char *text = fz_part(&ps, 0, &n);
    snprintf(path, sizeof path, "%s/mesh.txt", dir);
    fz_write(path, text, n);
    free(text);
    int ranks = (ps.count - 1) / 2;
    for (int r = 0; r < ranks; r++) {
        char rdir[800];
        snprintf(rdir, sizeof rdir, "%s/rank-%05d", dir, r);
        mkdir(rdir, 0755);
        text = fz_part(&ps, 1 + 2 * r, &n);
        snprintf(path, sizeof path, "%s/manifest.json", rdir);
        fz_write(path, text, n);
        cJSON *j = cJSON_Parse(text);
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "state") : NULL;
        snprintf(path, sizeof path, "%s/%s", rdir,
                 cJSON_IsString(s) && s->valuestring[0] && strlen(s->valuestring) < 200 &&
                         !strchr(s->valuestring, '/') && strcmp(s->valuestring, ".") != 0 &&
                         strcmp(s->valuestring, "..") != 0
                     ? s->valuestring
                     : "state.safetensors");
        cJSON_Delete(j);
        free(text);
        text = fz_part(&ps, 2 + 2 * r, &n);
        fz_write(path, text, n);
        free(text);
    }
    char out[800];
    snprintf(out, sizeof out, "%s/whole.safetensors", dir);
    eng_opts o;
    memset(&o, 0, sizeof o);
    o.file = dir;
    o.out = out;
    ir_diag d;
    ir_diag_init(&d);
    bool ok = eng_gather(&o, &d);
    fz_check_outcome(ok, &d, dir, "eng_gather");
    if (ok) {
        rt_st_file w;
        if (!rt_st_open(out, &w, &d)) {
            fz_print_diag(&d);
            fz_fail("loom gather wrote a file that does not read back");
        }
        for (int i = 0; i < w.n_tensors; i++)
            if (w.tensors[i].dtype != DT_F32)
                fz_fail("gathered tensor '%s' is not f32", w.tensors[i].name);
        for (int r = 0; r < ranks; r++) {
            text = fz_part(&ps, 2 + 2 * r, &n);
            rt_st_file f;
            ir_diag ds;
            ir_diag_init(&ds);
            if (rt_st_parse("rank", text, n, &f, &ds)) {
                for (int i = 0; i < f.n_tensors; i++) {
                    const rt_st_tensor *x = &f.tensors[i];
                    const char *slash = strchr(x->name, '/'), *brace = strchr(x->name, '{');
                    if (slash && (!brace || slash < brace))
                        continue; /* optimizer state */
                    char full[600];
                    mesh_slice sl[MESH_MAX_SLICES];
                    int n_sl = 0;
                    bool sliced = mesh_slice_parse(x->name, full, sizeof full, sl, &n_sl);
                    const rt_st_tensor *y = rt_st_find(&w, sliced ? full : x->name);
                    if (!y)
                        fz_fail("rank %d's tensor '%s' is not in the gathered file", r, x->name);
                    if (!sliced && r == 0 && (!ir_shape_eq(&x->shape, &y->shape) ||
                                    memcmp(x->data, y->data, (size_t)(x->end - x->begin)) != 0))
                        fz_fail("tensor '%s' was gathered with other values", x->name);
                }
                rt_st_close(&f);
            }
            ir_diag_free(&ds);
            free(text);
        }
        rt_st_close(&w);
    }
    ir_diag_free(&d);
    fz_dir_clear();
    return 0;
}
