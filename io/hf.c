/* hf.c — Hugging Face folders: config.json, sharded weights and tensor names (hf.h). */
#include "io/hf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_file.h"

static char *xstrdup(const char *s)
{
    char *c = strdup(s);
    if (!c)
        ir_unreachable("out of memory");
    return c;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        ir_unreachable("out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

bool rt_hf_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

cJSON *rt_hf_config(const char *dir, ir_diag *d)
{
    char *path = join(dir, "config.json");
    if (access(path, R_OK) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot read: %s (a Hugging Face folder has the config.json that "
                      "save_pretrained writes)", path, strerror(errno));
        free(path);
        return NULL;
    }
    cJSON *j = rt_json_read(dir, "config.json");
    if (!cJSON_IsObject(j)) {
        ir_diag_error(d, -1, 0, 0, "%s: not a JSON object", path);
        cJSON_Delete(j);
        j = NULL;
    }
    free(path);
    return j;
}

static void add_tensor(rt_st_file *f, int *cap, rt_st_tensor t)
{
    if (f->n_tensors == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        f->tensors = realloc(f->tensors, sizeof *f->tensors * (size_t)*cap);
        if (!f->tensors)
            ir_unreachable("out of memory");
    }
    f->tensors[f->n_tensors++] = t;
}

/* The shards of index (a model.safetensors.index.json) as one file. */
static bool open_index(const char *index, rt_st_file *f, ir_diag *d)
{
    char *dir = xstrdup(index);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    cJSON *j = rt_json_read(dir, slash ? strrchr(index, '/') + 1 : index);
    cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    bool ok = true;
    if (!cJSON_IsObject(map)) {
        ir_diag_error(d, -1, 0, 0, "%s: %s", index,
                      !j ? "cannot read it as JSON" : "no \"weight_map\" object (the index save_pretrained writes maps "
                                                     "each tensor to its shard)");
        ok = false;
    }
    memset(f, 0, sizeof *f);
    f->path = xstrdup(index);
    int cap = 0;
    for (cJSON *e = ok ? map->child : NULL; e && ok; e = e->next) {
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/')) {
            ir_diag_error(d, -1, 0, 0, "%s: weight_map[\"%s\"] is not a file name next to the index", index,
                          e->string);
            ok = false;
            break;
        }
        int k = 0; /* the shard, opened on first use */
        while (k < f->n_parts && strcmp(strrchr(f->parts[k].path, '/') + 1, e->valuestring) != 0)
            k++;
        if (k == f->n_parts) {
            char *path = join(dir, e->valuestring);
            if (access(path, R_OK) != 0) {
                ir_diag_error(d, -1, 0, 0, "%s: shard %s (listed for tensor '%s') is missing: %s: %s", index,
                              e->valuestring, e->string, path, strerror(errno));
                free(path);
                ok = false;
                break;
            }
            f->parts = realloc(f->parts, sizeof *f->parts * (size_t)(f->n_parts + 1));
            if (!f->parts)
                ir_unreachable("out of memory");
            ok = rt_st_open(path, &f->parts[f->n_parts], d);
            free(path);
            if (!ok)
                break;
            f->n_parts++;
        }
        const rt_st_tensor *t = rt_st_find(&f->parts[k], e->string);
        if (!t) {
            ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is in no shard (the index maps it to %s, which has no such "
                          "tensor)", index, e->string, f->parts[k].path);
            ok = false;
            break;
        }
        if (rt_st_find(f, e->string)) {
            ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is listed twice", index, e->string);
            ok = false;
            break;
        }
        rt_st_tensor copy = *t;
        copy.name = xstrdup(t->name);
        add_tensor(f, &cap, copy);
    }
    /* a tensor of a shard that the index does not list */
    for (int k = 0; ok && k < f->n_parts; k++)
        for (int i = 0; ok && i < f->parts[k].n_tensors; i++)
            if (!cJSON_GetObjectItemCaseSensitive(map, f->parts[k].tensors[i].name)) {
                ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' of %s is not in the index's weight_map", index,
                              f->parts[k].tensors[i].name, f->parts[k].path);
                ok = false;
            }
    cJSON_Delete(j);
    free(dir);
    if (!ok)
        rt_st_close(f);
    return ok;
}

/* hf.h's names: drop a head model's prefix; a tied head is an alias of the embeddings. */
static void hf_names(rt_st_file *f)
{
    static const char *const prefixes[] = {"transformer.", "bert."};
    for (int i = 0; i < f->n_tensors; i++)
        for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes; k++) {
            size_t n = strlen(prefixes[k]);
            char *name = f->tensors[i].name;
            if (strncmp(name, prefixes[k], n) == 0 && !rt_st_find(f, name + n))
                memmove(name, name + n, strlen(name + n) + 1);
        }
    const rt_st_tensor *embed = rt_st_find(f, "model.embed_tokens.weight");
    if (embed && !rt_st_find(f, "lm_head.weight")) {
        rt_st_tensor alias = *embed;
        alias.name = xstrdup("lm_head.weight");
        alias.alias = true;
        f->tensors = realloc(f->tensors, sizeof *f->tensors * (size_t)(f->n_tensors + 1));
        if (!f->tensors)
            ir_unreachable("out of memory");
        f->tensors[f->n_tensors++] = alias;
    }
}

bool rt_hf_open_weights(const char *path, rt_st_file *f, ir_diag *d)
{
    memset(f, 0, sizeof *f);
    bool ok;
    if (rt_hf_is_dir(path)) {
        char *single = join(path, "model.safetensors"), *index = join(path, RT_HF_INDEX);
        if (access(single, F_OK) == 0)
            ok = rt_st_open(single, f, d);
        else if (access(index, F_OK) == 0)
            ok = open_index(index, f, d);
        else {
            ir_diag_error(d, -1, 0, 0, "%s: no model.safetensors or %s in the folder", path, RT_HF_INDEX);
            ok = false;
        }
        free(single);
        free(index);
    } else if (ends_with(path, ".index.json")) {
        char *p = strchr(path, '/') ? xstrdup(path) : join(".", path);
        ok = open_index(p, f, d);
        free(p);
    } else
        ok = rt_st_open(path, f, d);
    if (ok)
        hf_names(f);
    return ok;
}
