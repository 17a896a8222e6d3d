/* cmd_tokenize.c — `loom tokenize`: text to token ids and back.
 *
 *   loom tokenize --vocab DIR [--no-special] [-o OUT.tok] [FILE]   encode FILE (else stdin)
 *   loom tokenize --bytes [-o OUT.tok] [FILE]                      byte-level: id = byte
 *   loom tokenize --vocab DIR|--bytes --decode [-o OUT] [FILE]     ids back to text
 *
 * DIR holding encoder.json + vocab.bpe selects GPT-2 BPE (text/bpe.h); "<|endoftext|>" in
 * the text is the special token 50256 unless --no-special is given, when it is ordinary text.
 * DIR holding vocab.txt selects BERT WordPiece (text/wordpiece.h), lower-casing and
 * stripping accents as DIR/tokenizer_config.json says (do_lower_case, default true;
 * strip_accents, default as lower-casing: rt_wp_config_read, as `loom embed` reads them); the ids
 * start with [CLS] and end with [SEP], and "[CLS]" "[SEP]" "[UNK]" "[PAD]" "[MASK]" in the text
 * are those tokens unless --no-special is given. Encoding writes a token file with -o
 * (text/tokens.h), else the ids, space-separated, on one line. Decoding reads a token file or whitespace-separated decimal ids and writes the
 * text's bytes as they are (no newline added) to stdout or -o. Errors: "loom: error: ...", exit 1.
 */
#include "text/bpe.h"
#include "cli/cli.h"
#include "text/tokens.h"
#include "text/wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The tokenizer the options chose: exactly one of bpe, wp, or neither for bytes. */
typedef struct {
    rt_bpe *bpe;
    rt_wp *wp;
    uint32_t vocab_size;
} tokenizer;

static char *read_all(FILE *f, const char *name, size_t *len, ir_diag *d)
{
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (!buf)
        ir_unreachable("out of memory");
    if (ferror(f)) {
        ir_diag_error(d, -1, 0, 0, "tokenize: cannot read %s: %s", name, strerror(errno));
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool file_exists(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        ir_unreachable("out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    bool ok = access(p, R_OK) == 0;
    free(p);
    return ok;
}

static bool open_tokenizer(const eng_opts *o, tokenizer *t, ir_diag *d)
{
    memset(t, 0, sizeof *t);
    if (o->bytes == (o->vocab != NULL)) {
        ir_diag_error(d, -1, 0, 0, "tokenize: give either --vocab DIR (GPT-2 BPE or BERT WordPiece) or --bytes");
        return false;
    }
    if (o->bytes) {
        t->vocab_size = RT_TOK_BYTE_VOCAB;
        return true;
    }
    bool bpe = file_exists(o->vocab, "encoder.json");
    if (!bpe && !file_exists(o->vocab, "vocab.txt")) {
        ir_diag_error(d, -1, 0, 0, "tokenize: %s has neither encoder.json + vocab.bpe (GPT-2 BPE) nor vocab.txt (WordPiece)",
                      o->vocab);
        return false;
    }
    if (bpe) {
        t->bpe = rt_bpe_load(o->vocab, d);
        if (t->bpe)
            t->vocab_size = rt_bpe_vocab_size(t->bpe);
        return t->bpe != NULL;
    }
    size_t n = strlen(o->vocab) + 16;
    char *p = malloc(n);
    if (!p)
        ir_unreachable("out of memory");
    snprintf(p, n, "%s/vocab.txt", o->vocab);
    t->wp = rt_wp_load(p, rt_wp_config_read(o->vocab), d);
    free(p);
    if (t->wp)
        t->vocab_size = rt_wp_vocab_size(t->wp);
    return t->wp != NULL;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Parses whitespace-separated decimal ids, or a token file when text starts with its magic. */
static bool parse_ids(const char *text, size_t len, const char *name, uint32_t **ids, size_t *n, ir_diag *d)
{
    if (len >= 8 && memcmp(text, RT_TOK_MAGIC, 8) == 0) {
        rt_tokens t;
        if (!rt_tok_parse(name, text, len, &t, d))
            return false;
        *ids = t.ids;
        *n = t.n;
        return true;
    }
    size_t cap = 256, k = 0;
    uint32_t *out = malloc(cap * sizeof *out);
    if (!out)
        ir_unreachable("out of memory");
    for (size_t i = 0; i < len;) {
        if (is_space(text[i])) {
            i++;
            continue;
        }
        size_t j = i;
        unsigned long long v = 0;
        while (j < len && text[j] >= '0' && text[j] <= '9' && v <= UINT32_MAX)
            v = v * 10 + (unsigned)(text[j++] - '0');
        if (j == i || v > UINT32_MAX || (j < len && !is_space(text[j]))) {
            size_t e = i;
            while (e < len && e - i < 20 && !is_space(text[e]))
                e++;
            ir_diag_error(d, -1, 0, 0, "tokenize: %s: '%.*s' (byte %zu) is not a token id", name, (int)(e - i),
                          text + i, i);
            free(out);
            return false;
        }
        if (k == cap) {
            uint32_t *no = realloc(out, (cap *= 2) * sizeof *out);
            if (!no)
                ir_unreachable("out of memory");
            out = no;
        }
        out[k++] = (uint32_t)v;
        i = j;
    }
    *ids = out;
    *n = k;
    return true;
}

static bool write_out(const char *path, const char *buf, size_t len, ir_diag *d)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f || fwrite(buf, 1, len, f) != len || (path ? fclose(f) : fflush(f)) != 0) {
        ir_diag_error(d, -1, 0, 0, "tokenize: cannot write %s: %s", path ? path : "standard output", strerror(errno));
        return false;
    }
    return true;
}

static bool decode(const eng_opts *o, const tokenizer *t, const char *in, size_t len, const char *name, ir_diag *d)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    if (!parse_ids(in, len, name, &ids, &n, d))
        return false;
    char *text = NULL;
    size_t tlen = 0;
    if (t->bpe)
        text = rt_bpe_decode(t->bpe, ids, n, &tlen, d);
    else if (t->wp) {
        text = rt_wp_decode(t->wp, ids, n, d);
        tlen = text ? strlen(text) : 0;
    } else {
        text = malloc(n + 1);
        if (!text)
            ir_unreachable("out of memory");
        for (size_t i = 0; i < n && text; i++) {
            if (ids[i] >= RT_TOK_BYTE_VOCAB) {
                ir_diag_error(d, -1, 0, 0, "tokenize: id %u at position %zu is not a byte", ids[i], i);
                free(text);
                text = NULL;
            } else
                text[i] = (char)ids[i];
        }
        tlen = n;
    }
    bool ok = text && write_out(o->out, text, tlen, d);
    free(text);
    free(ids);
    return ok;
}

static bool encode(const eng_opts *o, const tokenizer *t, const char *in, size_t len, ir_diag *d)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (t->bpe)
        rt_bpe_encode(t->bpe, in, len, !o->no_special, &ids, &n, &cap);
    else if (t->wp)
        rt_wp_encode(t->wp, in, len, !o->no_special, 0, &ids, &n, &cap);
    else {
        ids = malloc((len ? len : 1) * sizeof *ids);
        if (!ids)
            ir_unreachable("out of memory");
        rt_tok_bytes_encode(in, len, ids);
        n = len;
    }
    bool ok;
    if (o->out)
        ok = rt_tok_write(o->out, ids, n, t->vocab_size, d);
    else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %u" : "%u", ids[i]);
        printf("\n");
        ok = fflush(stdout) == 0;
        if (!ok)
            ir_diag_error(d, -1, 0, 0, "tokenize: cannot write standard output: %s", strerror(errno));
    }
    free(ids);
    return ok;
}

int cmd_tokenize(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    tokenizer t;
    if (o->n_extra > 0) {
        ir_diag_error(&d, -1, 0, 0, "tokenize: one input file at most (got '%s' after '%s')", o->extra[0], o->file);
        return cli_finish(&d);
    }
    if (!open_tokenizer(o, &t, &d))
        return cli_finish(&d);
    const char *name = o->file ? o->file : "standard input";
    FILE *f = o->file ? fopen(o->file, "rb") : stdin;
    size_t len = 0;
    char *in = NULL;
    if (!f)
        ir_diag_error(&d, -1, 0, 0, "tokenize: cannot read %s: %s", o->file, strerror(errno));
    else {
        in = read_all(f, name, &len, &d);
        if (o->file)
            fclose(f);
    }
    if (in) {
        if (o->decode)
            decode(o, &t, in, len, name, &d);
        else
            encode(o, &t, in, len, &d);
    }
    free(in);
    rt_bpe_free(t.bpe);
    rt_wp_free(t.wp);
    return cli_finish(&d);
}
