/* json_file.c — a settings file next to a model's vocabulary (DIR/tokenizer_config.json,
 * DIR/sentence_bert_config.json), read whole and parsed with cJSON (cli.h: cli_read_json).
 * Absent, unreadable or invalid reads as NULL: the callers then keep their defaults. Also the
 * WordPiece settings of tokenizer_config.json, which `loom tokenize` and `loom embed` share.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

cJSON *cli_read_json(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path)
        ir_unreachable("out of memory");
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *grown = realloc(text, cap *= 2);
            if (!grown)
                free(text);
            text = grown;
        }
    }
    if (!text)
        ir_unreachable("out of memory");
    cJSON *j = ferror(f) ? NULL : cJSON_ParseWithLength(text, len);
    fclose(f);
    free(text);
    return j;
}

rt_wp_config cli_wp_config(const char *dir)
{
    rt_wp_config c = {.lowercase = true, .strip_accents = -1};
    cJSON *j = cli_read_json(dir, "tokenizer_config.json");
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(j, "do_lower_case");
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "strip_accents");
    if (cJSON_IsBool(lc))
        c.lowercase = cJSON_IsTrue(lc);
    if (cJSON_IsBool(sa))
        c.strip_accents = cJSON_IsTrue(sa) ? 1 : 0;
    cJSON_Delete(j);
    return c;
}
