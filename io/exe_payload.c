/* exe_payload.c — reading the payload `loom build` appended to an executable (exe_payload.h),
 * for both kinds of executable: a model's (exe/standalone_main.c) and a cluster's
 * (exe/cluster_main.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan/plan_io.h"
#include "io/exe_payload.h"

uint8_t *rt_exe_read_payload(const char *prog, size_t *size, ir_diag *d)
{
    const char *self = "/proc/self/exe";
    int fd = open(self, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", self, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    uint8_t tr[RT_EXE_TRAILER_BYTES];
    uint64_t n = 0, sum = 0;
    bool have = st.st_size >= RT_EXE_TRAILER_BYTES &&
                pread(fd, tr, sizeof tr, st.st_size - RT_EXE_TRAILER_BYTES) == (ssize_t)sizeof tr &&
                memcmp(tr, RT_EXE_TRAILER_MAGIC, 8) == 0;
    for (int i = 0; have && i < 8; i++) {
        n |= (uint64_t)tr[8 + i] << (8 * i);
        sum |= (uint64_t)tr[16 + i] << (8 * i);
    }
    if (!have || n > (uint64_t)st.st_size - RT_EXE_TRAILER_BYTES) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: no loom payload at the end of this executable (truncated, or not written by "
                      "`loom build`)",
                      prog);
        close(fd);
        return NULL;
    }
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf)
        ir_unreachable("out of memory");
    off_t at = st.st_size - RT_EXE_TRAILER_BYTES - (off_t)n;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, (size_t)n - got, at + (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n || rt_fnv1a64(buf, (size_t)n) != sum) {
        ir_diag_error(d, -1, 0, 0, "%s: corrupt loom payload (%s)", prog, got != n ? "short read" : "checksum mismatch");
        free(buf);
        return NULL;
    }
    *size = (size_t)n;
    return buf;
}

bool rt_exe_load(const char *prog, rt_plan *plan, rt_plan_blob **blobs, int *n_blobs, ir_diag *d)
{
    size_t size = 0;
    uint8_t *payload = rt_exe_read_payload(prog, &size, d);
    bool ok = payload && rt_plan_deserialize(payload, size, prog, plan, blobs, n_blobs, d);
    free(payload);
    return ok;
}

const char *rt_exe_name(const char *argv0, const char *fallback)
{
    if (!argv0 || !argv0[0])
        return fallback;
    const char *slash = strrchr(argv0, '/');
    return slash ? slash + 1 : argv0;
}

int rt_exe_finish(ir_diag *d)
{
    ir_diag_print(d, stderr);
    int status = ir_diag_ok(d) ? 0 : 1;
    ir_diag_free(d);
    return status;
}

int rt_exe_option(int argc, char **argv, int *i, const char *const *names, int n, const char *prog, const char **value)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    int k = 0;
    while (k < n && (strlen(names[k]) != len || strncmp(a, names[k], len) != 0))
        k++;
    if (k == n) {
        fprintf(stderr, "%s: %s '%s' (see %s --help)\n", prog, a[0] == '-' ? "unknown option" : "unexpected argument", a,
                prog);
        return -1;
    }
    *value = eq ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    if (!*value) {
        fprintf(stderr, "%s: %s needs a value\n", prog, names[k]);
        return -1;
    }
    return k;
}
