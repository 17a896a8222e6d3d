/* diag.c — diagnostic collection and printing (see diag.h). Long source lines (minified or
 * 1 MB single-line files) are shown as a window of at most 120 columns around the caret. */
#include "ir/diag.h"

#include "ir/arena.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void ir_diag_init(ir_diag *d)
{
    memset(d, 0, sizeof *d);
    d->max_errors = 50;
}

void ir_diag_free(ir_diag *d)
{
    for (int i = 0; i < d->n_src; i++) {
        free(d->src[i].name);
        free(d->src[i].text);
    }
    for (int i = 0; i < d->n_msg; i++)
        free(d->msg[i].msg);
    free(d->src);
    free(d->msg);
    memset(d, 0, sizeof *d);
}

int ir_diag_add_source(ir_diag *d, const char *name, const char *text, size_t len)
{
    ir_grow((void **)&d->src, &d->cap_src, d->n_src + 1, sizeof *d->src);
    ir_source *s = &d->src[d->n_src];
    s->name = strdup(name);
    s->text = malloc(len + 1);
    if (!s->name || !s->text) {
        fprintf(stderr, "loom: out of memory\n");
        abort();
    }
    memcpy(s->text, text, len);
    s->text[len] = 0;
    s->len = len;
    return d->n_src++;
}

int ir_diag_load_file(ir_diag *d, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        ir_diag_error(d, -1, 0, 0, "cannot read %s", path);
        return -1;
    }
    int id = ir_diag_add_source(d, path, buf, len);
    free(buf);
    return id;
}

static void add(ir_diag *d, ir_diag_level level, int file, int line, int col, const char *fmt,
                va_list ap)
{
    if (level == DIAG_ERROR)
        d->n_errors++;
    if (level == DIAG_ERROR && d->n_errors > d->max_errors)
        return;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *msg = malloc((size_t)n + 1);
    if (!msg)
        abort();
    vsnprintf(msg, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    /* a note said already (each rank of a mesh report finds the same): once */
    for (int i = 0; level == DIAG_NOTE && i < d->n_msg; i++)
        if (d->msg[i].level == DIAG_NOTE && d->msg[i].file == file && d->msg[i].line == line && d->msg[i].col == col &&
            strcmp(d->msg[i].msg, msg) == 0) {
            free(msg);
            return;
        }
    ir_grow((void **)&d->msg, &d->cap_msg, d->n_msg + 1, sizeof *d->msg);
    d->msg[d->n_msg++] = (ir_diag_msg){level, file, line, col, msg};
}

void ir_diag_error(ir_diag *d, int file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, DIAG_ERROR, file, line, col, fmt, ap);
    va_end(ap);
}

void ir_diag_note(ir_diag *d, int file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, DIAG_NOTE, file, line, col, fmt, ap);
    va_end(ap);
}

/* Prints source line `line` of s and a caret under column col (1-based, in bytes). */
static void print_context(const ir_source *s, int line, int col, FILE *out)
{
    const char *p = s->text, *end = s->text + s->len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n')
            l++;
    const char *eol = p;
    while (eol < end && *eol != '\n')
        eol++;
    size_t n = (size_t)(eol - p), c = col > 0 ? (size_t)col - 1 : 0;
    if (c > n)
        c = n;
    size_t from = 0, to = n;
    if (n > 120) { /* window around the caret */
        from = c > 60 ? c - 60 : 0;
        to = from + 120 < n ? from + 120 : n;
    }
    fputc(' ', out);
    if (from > 0)
        fputs("...", out);
    for (size_t i = from; i < to; i++) {
        unsigned char ch = (unsigned char)p[i];
        fputc(ch == '\t' ? ' ' : (ch < 32 || ch == 127) ? '?' : ch, out);
    }
    if (to < n)
        fputs("...", out);
    fputc('\n', out);
    fputc(' ', out);
    if (from > 0)
        fputs("   ", out);
    for (size_t i = from; i < c; i++)
        fputc(' ', out);
    fputs("^\n", out);
}

void ir_diag_print(const ir_diag *d, FILE *out)
{
    for (int i = 0; i < d->n_msg; i++) {
        const ir_diag_msg *m = &d->msg[i];
        const char *level = m->level == DIAG_ERROR ? "error" : "note";
        const ir_source *s = m->file >= 0 && m->file < d->n_src ? &d->src[m->file] : NULL;
        if (s && m->line > 0)
            fprintf(out, "%s:%d:%d: %s: %s\n", s->name, m->line, m->col, level, m->msg);
        else if (s)
            fprintf(out, "%s: %s: %s\n", s->name, level, m->msg);
        else
            fprintf(out, "loom: %s: %s\n", level, m->msg);
        if (s && m->line > 0)
            print_context(s, m->line, m->col, out);
    }
    if (d->n_errors > d->max_errors)
        fprintf(out, "loom: %d errors in all; the first %d are shown\n", d->n_errors, d->max_errors);
}

void ir_diag_quiet(ir_diag *d)
{
    int failed = d->n_errors > 0;
    ir_diag_free(d);
    ir_diag_init(d);
    d->n_errors = failed;
}
