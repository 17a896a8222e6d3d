/* data.c — loads a training corpus: a token file, or plain text as byte-level tokens. */
#include "text/data.h"

#include "ir/ir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool rt_data_load(const char *path, rt_tokens *t, ir_diag *d)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb)
                free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (!buf)
        ir_unreachable("out of memory");
    bool ok = false;
    if (err)
        ir_diag_error(d, -1, 0, 0, "%s: read error", path);
    else if (n == 0)
        ir_diag_error(d, -1, 0, 0, "%s: the file is empty", path);
    else if (n >= 8 && memcmp(buf, RT_TOK_MAGIC, 8) == 0)
        ok = rt_tok_parse(path, buf, n, t, d);
    else {
        t->ids = malloc(n * sizeof *t->ids);
        if (!t->ids)
            ir_unreachable("out of memory");
        rt_tok_bytes_encode(buf, n, t->ids);
        t->n = n;
        t->vocab_size = RT_TOK_BYTE_VOCAB;
        ok = true;
    }
    free(buf);
    return ok;
}
