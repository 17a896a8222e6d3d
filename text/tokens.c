/* tokens.c — token files (read with full validation, atomic write), the byte-level tokenizer
 * and the batch loader; the formats and the RNG are specified in tokens.h. Byte order on disk is
 * little-endian, assembled byte by byte so the host's order does not matter.
 */
#include "text/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/ir.h"

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> 8 * i);
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- reading -------------------------------------------------------------------------------- */
bool rt_tok_parse(const char *path, const void *buf, size_t len, rt_tokens *t, ir_diag *d)
{
    memset(t, 0, sizeof *t);
    const uint8_t *p = buf;
    if (len < RT_TOK_HEADER) {
        ir_diag_error(d, -1, 0, 0, "%s: truncated header: %zu bytes, a token file starts with %d", path, len,
                      RT_TOK_HEADER);
        return false;
    }
    if (memcmp(p, RT_TOK_MAGIC, 8) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: bad magic: not a loom token file (expected \"%s\")", path, RT_TOK_MAGIC);
        return false;
    }
    uint32_t version = get32(p + 8), dt = get32(p + 12), vocab = get32(p + 16), reserved = get32(p + 20);
    uint64_t count = get64(p + 24);
    if (version != RT_TOK_VERSION) {
        ir_diag_error(d, -1, 0, 0, "%s: version %u is not supported (this reader knows %d)", path, version,
                      RT_TOK_VERSION);
        return false;
    }
    if (dt != 2 && dt != 4) {
        ir_diag_error(d, -1, 0, 0, "%s: dtype %u: expected 2 (uint16) or 4 (uint32)", path, dt);
        return false;
    }
    if (vocab == 0 || (dt == 2 && vocab > 65536)) {
        ir_diag_error(d, -1, 0, 0, "%s: vocab size %u does not fit dtype uint%u", path, vocab, dt * 8);
        return false;
    }
    if (reserved != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: reserved header field is %u, expected 0", path, reserved);
        return false;
    }
    size_t body = len - RT_TOK_HEADER;
    if (count > body / dt || body != count * dt) {
        char bytes[40] = "more than 2^64 bytes"; /* a count from the file: its size may overflow */
        uint64_t b;
        if (!__builtin_mul_overflow(count, (uint64_t)dt, &b))
            snprintf(bytes, sizeof bytes, "%llu bytes", (unsigned long long)b);
        ir_diag_error(d, -1, 0, 0, "%s: header says %llu tokens (%s) but %zu bytes follow the header%s", path,
                      (unsigned long long)count, bytes, body, count > body / dt ? " (truncated file)" : "");
        return false;
    }
    uint32_t *ids = malloc(count ? count * sizeof *ids : 1);
    if (!ids)
        ir_unreachable("out of memory");
    const uint8_t *q = p + RT_TOK_HEADER;
    for (size_t i = 0; i < count; i++) {
        ids[i] = dt == 2 ? (uint32_t)(q[2 * i] | q[2 * i + 1] << 8) : get32(q + 4 * i);
        if (ids[i] >= vocab) {
            ir_diag_error(d, -1, 0, 0, "%s: token %zu is %u, not below the vocab size %u", path, i, ids[i], vocab);
            free(ids);
            return false;
        }
    }
    t->ids = ids;
    t->n = count;
    t->vocab_size = vocab;
    return true;
}

bool rt_tok_read(const char *path, rt_tokens *t, ir_diag *d)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (!buf)
        ir_unreachable("out of memory");
    bool err = ferror(f);
    fclose(f);
    bool ok = false;
    if (err)
        ir_diag_error(d, -1, 0, 0, "cannot read %s: read error", path);
    else
        ok = rt_tok_parse(path, buf, n, t, d);
    free(buf);
    return ok;
}

void rt_tok_free(rt_tokens *t)
{
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* ---- writing -------------------------------------------------------------------------------- */
bool rt_tok_write(const char *path, const uint32_t *ids, size_t n, uint32_t vocab_size, ir_diag *d)
{
    if (vocab_size == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: vocab size must be at least 1", path);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= vocab_size) {
            ir_diag_error(d, -1, 0, 0, "%s: token %zu is %u, not below the vocab size %u", path, i, ids[i],
                          vocab_size);
            return false;
        }
    uint32_t dt = vocab_size <= 65536 ? 2 : 4;
    uint8_t header[RT_TOK_HEADER] = {0};
    memcpy(header, RT_TOK_MAGIC, 8);
    put32(header + 8, RT_TOK_VERSION);
    put32(header + 12, dt);
    put32(header + 16, vocab_size);
    put64(header + 24, n);

    size_t plen = strlen(path) + 5;
    char *tmp = malloc(plen);
    enum { CHUNK = 1 << 15 };
    uint8_t *chunk = malloc(CHUNK * 4);
    if (!tmp || !chunk)
        ir_unreachable("out of memory");
    snprintf(tmp, plen, "%s.tmp", path);
    const char *what = NULL, *whom = tmp;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        what = "cannot create";
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd >= 0 && !f) {
        close(fd);
        what = "cannot open";
    }
    if (f && fwrite(header, 1, sizeof header, f) != sizeof header)
        what = "cannot write";
    for (size_t at = 0; f && !what && at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        for (size_t i = 0; i < k; i++) {
            if (dt == 2) {
                chunk[2 * i] = (uint8_t)ids[at + i];
                chunk[2 * i + 1] = (uint8_t)(ids[at + i] >> 8);
            } else
                put32(chunk + 4 * i, ids[at + i]);
        }
        if (fwrite(chunk, dt, k, f) != k)
            what = "cannot write";
    }
    if (f && !what && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        what = "cannot write";
    if (f && fclose(f) != 0 && !what)
        what = "cannot write";
    if (!what && rename(tmp, path) != 0)
        what = "cannot rename onto", whom = path;
    if (what) {
        ir_diag_error(d, -1, 0, 0, "%s %s: %s", what, whom, strerror(errno));
        unlink(tmp);
    }
    free(chunk);
    free(tmp);
    return !what;
}

void rt_tok_bytes_encode(const void *text, size_t len, uint32_t *ids)
{
    const uint8_t *s = text;
    for (size_t i = 0; i < len; i++)
        ids[i] = s[i];
}

/* ---- batch loader --------------------------------------------------------------------------- */
uint64_t rt_splitmix64_at(uint64_t key, uint64_t k)
{
    uint64_t z = key + (k + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ z >> 27) * 0x94D049BB133111EBull;
    return z ^ z >> 31;
}

/* floor(a × m / 2^64), exactly, without 128-bit integers. */
static uint64_t mul_hi(uint64_t a, uint64_t m)
{
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, m_lo = (uint32_t)m, m_hi = m >> 32;
    uint64_t lo_lo = a_lo * m_lo, hi_lo = a_hi * m_lo, lo_hi = a_lo * m_hi, hi_hi = a_hi * m_hi;
    uint64_t mid = (lo_lo >> 32) + (uint32_t)hi_lo + (uint32_t)lo_hi;
    return hi_hi + (hi_lo >> 32) + (lo_hi >> 32) + (mid >> 32);
}

bool rt_loader_init(rt_loader *l, const rt_tokens *t, double val_frac, int B, int T, uint64_t seed, ir_diag *d)
{
    memset(l, 0, sizeof *l);
    if (!(val_frac >= 0 && val_frac < 1) || B < 1 || T < 1) {
        ir_diag_error(d, -1, 0, 0, "loader: need 0 <= val_frac < 1, B >= 1 and T >= 1 (got %g, %d, %d)", val_frac, B,
                      T);
        return false;
    }
    size_t n_val = (size_t)((double)t->n * val_frac);
    size_t n_train = t->n - n_val;
    if (n_train < (size_t)T + 1 || (n_val > 0 && n_val < (size_t)T + 1)) {
        ir_diag_error(d, -1, 0, 0,
                      "loader: %zu tokens split into %zu train and %zu validation, but a sequence of T = %d needs "
                      "%d tokens in each split",
                      t->n, n_train, n_val, T, T + 1);
        return false;
    }
    *l = (rt_loader){t->ids, n_train, n_val, B, T, seed};
    return true;
}

static const uint32_t *split_tokens(const rt_loader *l, rt_split s, size_t *n)
{
    *n = s == RT_SPLIT_TRAIN ? l->n_train : l->n_val;
    return s == RT_SPLIT_TRAIN ? l->tokens : l->tokens + l->n_train;
}

static void copy_row(const uint32_t *src, int T, int32_t *inputs, int32_t *targets)
{
    for (int t = 0; t < T; t++) {
        inputs[t] = (int32_t)src[t];
        targets[t] = (int32_t)src[t + 1];
    }
}

bool rt_loader_random(const rt_loader *l, rt_split s, uint64_t batch, int32_t *inputs, int32_t *targets)
{
    size_t n;
    const uint32_t *tok = split_tokens(l, s, &n);
    if (n == 0)
        return false;
    uint64_t key = s == RT_SPLIT_TRAIN ? l->seed : l->seed ^ 0x76616C6964617465ull;
    uint64_t windows = n - (size_t)l->T; /* offsets 0 .. n - T - 1 */
    for (int b = 0; b < l->B; b++) {
        uint64_t off = mul_hi(rt_splitmix64_at(key, batch * (uint64_t)l->B + (uint64_t)b), windows);
        copy_row(tok + off, l->T, inputs + (size_t)b * l->T, targets + (size_t)b * l->T);
    }
    return true;
}

uint64_t rt_loader_seq_count(const rt_loader *l, rt_split s)
{
    size_t n;
    split_tokens(l, s, &n);
    return n ? (n - 1) / ((uint64_t)l->B * (uint64_t)l->T) : 0;
}

bool rt_loader_seq(const rt_loader *l, rt_split s, uint64_t batch, int32_t *inputs, int32_t *targets)
{
    if (batch >= rt_loader_seq_count(l, s))
        return false;
    size_t n;
    const uint32_t *tok = split_tokens(l, s, &n);
    for (int b = 0; b < l->B; b++) {
        size_t off = (size_t)((batch * (uint64_t)l->B + (uint64_t)b) * (uint64_t)l->T);
        copy_row(tok + off, l->T, inputs + (size_t)b * l->T, targets + (size_t)b * l->T);
    }
    return true;
}
