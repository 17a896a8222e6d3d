/* json_file.c — a small JSON settings file read whole and parsed with cJSON (json_file.h). */
#include "io/json_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

cJSON *rt_json_read(const char *dir, const char *name)
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
