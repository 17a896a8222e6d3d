/* fuzz.h — what the libFuzzer harnesses of fuzz/ share (docs/fuzzing.md): a finding (abort with
 * a message, so libFuzzer saves the input), the checks every reader's failure must pass (an
 * error was reported and it names the file), files of several parts in one input, a scratch
 * directory per process, the textual IR of a graph as a string, and a lower host-memory limit.
 *
 * A harness is one file fuzz/NAME.c defining LLVMFuzzerTestOneInput (and maybe
 * LLVMFuzzerInitialize); everything here is static so that each harness links on its own.
 *
 * LOOM_FUZZ_VERBOSE=1 prints each reader's verdict and messages (to see what a seed reaches).
 *
 * Multi-file inputs: the parts of one input are separated by the line FZ_SEP ("\n--8<--\n",
 * in every dictionary), so a mutation can grow, shrink, split or join files. Part k is
 * fz_part(&p, k) (empty when the input has fewer parts).
 */
#ifndef LOOM_FUZZ_H
#define LOOM_FUZZ_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/diag.h"
#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A finding: the message on stderr, then abort (libFuzzer writes the input as crash-*). */
static void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn, unused));
static void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: FINDING: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* The diagnostics of d on stderr (for a finding's report). */
static __attribute__((unused)) void fz_print_diag(const ir_diag *d) { ir_diag_print(d, stderr); }

/* A reader that failed must have said why, naming `what` (the file, or another name the
 * caller gave it) in its first message; one that succeeded must have reported nothing. */
static __attribute__((unused)) void fz_check_outcome(bool ok, const ir_diag *d, const char *what, const char *reader)
{
    if (getenv("LOOM_FUZZ_VERBOSE")) { /* what each input does: for writing seeds */
        fprintf(stderr, "fuzz: %s: %s\n", reader, ok ? "accepted" : "refused");
        fz_print_diag(d);
    }
    if (ok && d->n_errors) {
        fz_print_diag(d);
        fz_fail("%s succeeded but reported %d errors", reader, d->n_errors);
    }
    if (ok)
        return;
    if (d->n_errors == 0)
        fz_fail("%s failed without an error message", reader);
    if (what && d->n_msg > 0 && !strstr(d->msg[0].msg, what) &&
        !(d->msg[0].file >= 0 && d->msg[0].file < d->n_src && strstr(d->src[d->msg[0].file].name, what))) {
        fz_print_diag(d);
        fz_fail("%s's error does not name '%s'", reader, what);
    }
}

/* ---- parts of one input ----------------------------------------------------------------- */
#define FZ_SEP "\n--8<--\n"
#define FZ_MAX_PARTS 16

typedef struct {
    const uint8_t *p[FZ_MAX_PARTS];
    size_t n[FZ_MAX_PARTS];
    int count;
} fz_parts;

/* Splits data at each FZ_SEP; the last part takes the rest (FZ_SEP included) once there are
 * FZ_MAX_PARTS. */
static __attribute__((unused)) fz_parts fz_split(const uint8_t *data, size_t size)
{
    fz_parts ps = {{0}, {0}, 0};
    size_t sep = strlen(FZ_SEP), at = 0;
    while (ps.count < FZ_MAX_PARTS - 1) {
        const uint8_t *hit = NULL;
        for (size_t i = at; i + sep <= size; i++)
            if (data[i] == FZ_SEP[0] && memcmp(data + i, FZ_SEP, sep) == 0) {
                hit = data + i;
                break;
            }
        if (!hit)
            break;
        ps.p[ps.count] = data + at;
        ps.n[ps.count++] = (size_t)(hit - (data + at));
        at = (size_t)(hit - data) + sep;
    }
    ps.p[ps.count] = data + at;
    ps.n[ps.count++] = size - at;
    return ps;
}

/* Part k as a NUL-terminated malloc'd copy (*n its length without the NUL); empty if absent. */
static __attribute__((unused)) char *fz_part(const fz_parts *ps, int k, size_t *n)
{
    size_t len = k < ps->count ? ps->n[k] : 0;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    if (len)
        memcpy(s, ps->p[k], len);
    s[len] = 0;
    if (n)
        *n = len;
    return s;
}

/* ---- files ------------------------------------------------------------------------------ */
/* This process's scratch directory (made once under $TMPDIR or /tmp, removed at exit). */
static char fz_dir_path[512];

static void fz_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        for (struct dirent *e; dir && (e = readdir(dir));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            fz_rm_tree(sub);
        }
        if (dir)
            closedir(dir);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void fz_dir_remove(void) { fz_rm_tree(fz_dir_path); }

static __attribute__((unused)) const char *fz_dir(void)
{
    if (!fz_dir_path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/loom-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fz_dir_path)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fz_dir_remove);
    }
    return fz_dir_path;
}

/* Empties the scratch directory (between inputs). */
static __attribute__((unused)) void fz_dir_clear(void)
{
    const char *root = fz_dir();
    DIR *dir = opendir(root);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
        fz_rm_tree(sub);
    }
    if (dir)
        closedir(dir);
}

/* Writes n bytes to path (a harness's own scratch file: failure is the harness's problem). */
static __attribute__((unused)) void fz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* The whole file at path, malloc'd (NULL if unreadable); *n its size. */
static __attribute__((unused)) uint8_t *fz_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf)
        abort();
    *n = len;
    return buf;
}

/* ---- graphs ----------------------------------------------------------------------------- */
/* The textual IR of g (ir_print), malloc'd. */
static __attribute__((unused)) char *fz_print_graph(const ir_graph *g, size_t *n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    ir_print(g, f);
    fclose(f);
    if (n)
        *n = len;
    return text;
}

/* print → parse → print must give the same text (docs/ir.md: the text form round-trips), and
 * the parsed graph must verify. `text` is g's printed form; `what` names the harness step. */
static __attribute__((unused)) void fz_check_roundtrip(const char *text, size_t len, const char *what)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = ir_parse(&d, ir_diag_add_source(&d, "printed.lir", text, len));
    if (!g) {
        fprintf(stderr, "%s", text);
        fz_print_diag(&d);
        fz_fail("%s: the printed IR does not parse back", what);
    }
    if (!ir_verify(g, &d)) {
        fz_print_diag(&d);
        fz_fail("%s: the printed IR parses back to a graph that does not verify", what);
    }
    size_t len2;
    char *again = fz_print_graph(g, &len2);
    if (len2 != len || memcmp(text, again, len) != 0) {
        fprintf(stderr, "---- first print\n%s---- after parsing it back\n%s", text, again);
        fz_fail("%s: print -> parse -> print is not the identity", what);
    }
    free(again);
    ir_graph_free(g);
    ir_diag_free(&d);
}

/* ---- host memory -------------------------------------------------------------------------- */
/* Sizes read from inputs are held against rt_host_memory (runtime/memory.h); under the fuzzer
 * that is LOOM_HOST_MEMORY, 1 GiB, below libFuzzer's -malloc_limit_mb (2 GiB in
 * fuzz/run_fuzz.sh): an allocation the checks allow stays legal, and one they miss is
 * reported as a malloc over the limit. */
/* The CPU object cache (codegen/objcache.h) is off as well: every input would leave an entry. */
static __attribute__((unused)) void fz_limit_memory(void)
{
    setenv("LOOM_HOST_MEMORY", "1073741824", 1);
    setenv("LOOM_CPU_CACHE", "off", 1);
}

#endif
