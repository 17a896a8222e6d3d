/* objcache.c — compiled host objects on disk (objcache.h has the format and the key). */
#include "codegen/objcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan/plan_io.h"

#define MAGIC "LOOMOBJ1"
#define HEADER 32

/* mkdir -p; true when PATH is a directory afterwards. */
static bool make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST)
            return false;
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return false;
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK | X_OK) == 0;
}

char *cg_objcache_dir(void)
{
    const char *env = getenv("LOOM_CPU_CACHE");
    char buf[4096];
    if (env && *env) {
        if (strcmp(env, "0") == 0 || strcmp(env, "off") == 0)
            return NULL;
        snprintf(buf, sizeof buf, "%s", env);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(buf, sizeof buf, "%s/loom/cpu", xdg);
        else if (home && *home)
            snprintf(buf, sizeof buf, "%s/.cache/loom/cpu", home);
        else
            return NULL;
    }
    if (!make_dirs(buf))
        return NULL;
    return strdup(buf);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

cg_obj_lookup cg_objcache_load(const char *dir, uint64_t key, void **obj, size_t *n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%016llx.o", dir, (unsigned long long)key);
    FILE *f = fopen(path, "rb");
    if (!f)
        return CG_OBJ_MISS;
    unsigned char h[HEADER];
    cg_obj_lookup r = CG_OBJ_CORRUPT;
    void *data = NULL;
    struct stat st;
    if (fread(h, 1, HEADER, f) == HEADER && memcmp(h, MAGIC, 8) == 0 && get_u64(h + 8) == key &&
        fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size - HEADER == get_u64(h + 16) && st.st_size > HEADER) {
        size_t size = (size_t)get_u64(h + 16);
        data = malloc(size);
        if (data && fread(data, 1, size, f) == size && rt_fnv1a64(data, size) == get_u64(h + 24)) {
            *obj = data;
            *n = size;
            data = NULL;
            r = CG_OBJ_HIT;
        }
    }
    free(data);
    fclose(f);
    return r;
}

bool cg_objcache_store(const char *dir, uint64_t key, const void *obj, size_t n)
{
    char tmp[4200], path[4200];
    snprintf(path, sizeof path, "%s/%016llx.o", dir, (unsigned long long)key);
    snprintf(tmp, sizeof tmp, "%s/.%016llx.XXXXXX", dir, (unsigned long long)key);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return false;
    unsigned char h[HEADER];
    memcpy(h, MAGIC, 8);
    put_u64(h + 8, key);
    put_u64(h + 16, n);
    put_u64(h + 24, rt_fnv1a64(obj, n));
    FILE *f = fdopen(fd, "wb");
    bool ok = f && fwrite(h, 1, HEADER, f) == HEADER && fwrite(obj, 1, n, f) == n;
    if (f)
        ok &= fclose(f) == 0;
    else
        close(fd);
    ok = ok && chmod(tmp, 0644) == 0 && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    return ok;
}
