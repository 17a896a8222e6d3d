/* diag.h — user-facing diagnostics: a table of sources and a list of messages.
 *
 * Errors are values: every phase reports into an ir_diag and returns failure; one place
 * (the driver) prints them all with ir_diag_print, in the form
 *     file:line:col: error: message
 *      source line
 *          ^
 * A location with line 0 prints as "file: error: message" (or "loom: error:" with no file). */
#ifndef LOOM_DIAG_H
#define LOOM_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    char *name;   /* as given on the command line */
    char *text;   /* NUL-terminated contents (embedded NULs are reported by the lexer) */
    size_t len;
} ir_source;

typedef enum { DIAG_ERROR, DIAG_NOTE } ir_diag_level;

typedef struct {
    ir_diag_level level;
    int file, line, col; /* file -1: none */
    char *msg;
} ir_diag_msg;

typedef struct {
    ir_source *src;
    int n_src, cap_src;
    ir_diag_msg *msg;
    int n_msg, cap_msg;
    int n_errors;
    int max_errors; /* further errors are counted, not stored; default 50 */
} ir_diag;

void ir_diag_init(ir_diag *d);
void ir_diag_free(ir_diag *d);
/* Registers a source (copied); returns its file index. */
int ir_diag_add_source(ir_diag *d, const char *name, const char *text, size_t len);
/* Reads a file into the source table; on failure reports "cannot read FILE: reason" and returns -1. */
int ir_diag_load_file(ir_diag *d, const char *path);
void ir_diag_error(ir_diag *d, int file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void ir_diag_note(ir_diag *d, int file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Prints every stored message with source line and caret, then "N errors" if more than were kept. */
void ir_diag_print(const ir_diag *d, FILE *out);
/* Drops every message but keeps the failure: a rank of a job that finds the same error as
 * rank 0 stays silent (only rank 0 says it) and still fails. */
void ir_diag_quiet(ir_diag *d);
static inline bool ir_diag_ok(const ir_diag *d) { return d->n_errors == 0; }

#endif
