/* json_file.c — a settings file next to a model's vocabulary (DIR/tokenizer_config.json,
 * DIR/sentence_bert_config.json), read whole and parsed with cJSON (cli.h: cli_read_json).
 * Absent, unreadable or invalid reads as NULL: the callers then keep their defaults.
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
