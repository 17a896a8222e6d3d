/* bpe.c — the GPT-2 byte-level BPE tokenizer: loading encoder.json and vocab.bpe, the
 * pre-tokenizer (GPT-2's regex by hand over UTF-8), the merge loop, decoding; plus UTF-8 and the
 * Unicode class look-ups over the generated tables (see bpe.h for the contracts).
 *
 * Internally a token is its raw bytes (the byte-to-unicode text of encoder.json is undone at
 * load time), so BPE runs on ids: the 256 single-byte tokens start every pre-token, and a merge
 * is a hash map (left id, right id) → (rank, merged id).
 */
#include "text/bpe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/ir.h"

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        ir_unreachable("out of memory");
    return q;
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */
int rt_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    *cp = RT_UTF8_INVALID;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 1;
    if ((size_t)len > n)
        return 1;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 1;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 1;
    *cp = v;
    return len;
}

int rt_utf8_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- Unicode classes ------------------------------------------------------------------------ */
static bool in_ranges(const rt_uni_range *r, int n, uint32_t cp)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid - 1;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool rt_uni_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(rt_uni_letter, rt_uni_letter_len, cp);
}
bool rt_uni_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return in_ranges(rt_uni_number, rt_uni_number_len, cp);
}
bool rt_uni_is_punct(uint32_t cp) { return in_ranges(rt_uni_punct, rt_uni_punct_len, cp); }
bool rt_uni_is_bert_control(uint32_t cp) { return in_ranges(rt_uni_bert_control, rt_uni_bert_control_len, cp); }
bool rt_uni_is_mark_nonspacing(uint32_t cp)
{
    return in_ranges(rt_uni_mark_nonspacing, rt_uni_mark_nonspacing_len, cp);
}

bool rt_uni_is_white_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t rt_uni_to_lower(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if (cp == 0x130)
        return 'i';
    int lo = 0, hi = rt_uni_lower_len - 1;
    while (lo <= hi) { /* the last run starting at or before cp */
        int mid = (lo + hi) / 2;
        if (rt_uni_lower[mid].first <= cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    if (hi < 0)
        return cp;
    const rt_uni_case_run *r = &rt_uni_lower[hi];
    uint32_t k = (cp - r->first) / (uint32_t)r->stride;
    if ((cp - r->first) % (uint32_t)r->stride == 0 && k < (uint32_t)r->count)
        return (uint32_t)((int64_t)cp + r->delta);
    return cp;
}

int rt_uni_strip_accents(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = cp;
        return 1;
    }
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: L V (T), all Lo */
        uint32_t s = cp - 0xAC00;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + s % 588 / 28;
        if (s % 28 == 0)
            return 2;
        out[2] = 0x11A7 + s % 28;
        return 3;
    }
    int lo = 0, hi = rt_uni_strip_map_len - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (rt_uni_strip_map[mid].cp < cp)
            lo = mid + 1;
        else if (rt_uni_strip_map[mid].cp > cp)
            hi = mid - 1;
        else {
            int n = 0;
            while (n < 3 && rt_uni_strip_map[mid].out[n])
                out[n] = rt_uni_strip_map[mid].out[n], n++;
            return n;
        }
    }
    if (rt_uni_is_mark_nonspacing(cp))
        return 0;
    out[0] = cp;
    return 1;
}

/* ---- hash maps ------------------------------------------------------------------------------ */
static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

static uint64_t hash_pair(uint64_t key)
{
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ key >> 31;
}

typedef struct {
    uint64_t key;          /* left << 32 | right */
    uint32_t rank, merged; /* rank UINT32_MAX: empty slot */
} pair_slot;

struct rt_bpe {
    uint32_t n_ids;
    uint8_t *bytes;        /* every token's bytes, back to back */
    size_t *off;           /* (n_ids + 1): token i is bytes[off[i] .. off[i+1]) */
    bool *present;         /* (n_ids) whether id i is a token */
    uint32_t *str_slots;   /* bytes → id, open addressing, UINT32_MAX empty */
    size_t str_mask;
    pair_slot *pairs;
    size_t pair_mask;
    uint32_t byte_id[256]; /* id of each single-byte token */
    uint32_t eot;
};

static uint32_t str_lookup(const rt_bpe *b, const uint8_t *p, size_t n)
{
    for (size_t i = hash_bytes(p, n) & b->str_mask;; i = (i + 1) & b->str_mask) {
        uint32_t id = b->str_slots[i];
        if (id == UINT32_MAX)
            return UINT32_MAX;
        if (b->off[id + 1] - b->off[id] == n && memcmp(b->bytes + b->off[id], p, n) == 0)
            return id;
    }
}

static const pair_slot *pair_lookup(const rt_bpe *b, uint32_t left, uint32_t right)
{
    uint64_t key = (uint64_t)left << 32 | right;
    for (size_t i = hash_pair(key) & b->pair_mask;; i = (i + 1) & b->pair_mask) {
        const pair_slot *s = &b->pairs[i];
        if (s->rank == UINT32_MAX)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* ---- loading -------------------------------------------------------------------------------- */
/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to 256 + k. */
static void byte_to_unicode(uint32_t map[256])
{
    uint32_t next = 256;
    for (int c = 0; c < 256; c++) {
        bool keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        map[c] = keep ? (uint32_t)c : next++;
    }
}

static char *read_file(const char *path, size_t *len, ir_diag *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xrealloc(NULL, cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            buf = xrealloc(buf, cap *= 2);
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: read error", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (const char *p = text; p < at && *p; p++)
        line += *p == '\n';
    return line;
}

/* The line of the first occurrence of "key" in the JSON text (1 when it is not found verbatim,
 * e.g. because the file escapes it). */
static int key_line(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = strchr(text, '"'); p; p = strchr(p + 1, '"'))
        if (strncmp(p + 1, key, n) == 0 && p[n + 1] == '"')
            return line_of(text, p);
    return 1;
}

/* Converts a token's byte-to-unicode text s to its bytes: out[0..*n), at most strlen(s) of them.
 * False when s has a character outside the byte map. */
static bool unmap_token(const char *s, const uint32_t inv[512], uint8_t *out, size_t *n)
{
    size_t len = strlen(s);
    *n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = rt_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (cp >= 512 || inv[cp] == UINT32_MAX)
            return false;
        out[(*n)++] = (uint8_t)inv[cp];
        i += (size_t)k;
    }
    return true;
}

/* encoder.json's text (malloc'd, NUL-terminated, len bytes; freed here) from path. */
static bool load_encoder_text(rt_bpe *b, const char *path, char *text, size_t len, ir_diag *d)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = root ? text : (end ? end : cJSON_GetErrorPtr());
        ir_diag_error(d, -1, 0, 0, "%s:%d: %s", path, at ? line_of(text, at) : 1,
                      root ? "expected a JSON object mapping token text to id" : "invalid JSON");
        cJSON_Delete(root);
        free(text);
        return false;
    }
    uint32_t map[256], inv[512];
    byte_to_unicode(map);
    for (int i = 0; i < 512; i++)
        inv[i] = UINT32_MAX;
    for (int c = 0; c < 256; c++)
        inv[map[c]] = (uint32_t)c;

    /* pass 1: ids and sizes */
    uint32_t n_ids = 0;
    int n_items = 0;
    bool ok = true;
    for (cJSON *it = root->child; it && ok; it = it->next, n_items++) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!(v >= 0 && v < (double)(1u << 31) && v == (double)(uint32_t)v)) {
            ir_diag_error(d, -1, 0, 0, "%s:%d: token \"%s\": id is not an integer in [0, 2^31)", path,
                          key_line(text, it->string), it->string);
            ok = false;
        } else if ((uint32_t)v + 1 > n_ids)
            n_ids = (uint32_t)v + 1;
    }
    if (ok && n_items == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: no tokens", path);
        ok = false;
    }
    /* the tables below are indexed by id: ids with large gaps (one huge id in a tiny file)
     * would size them by the file's claim, not its contents */
    if (ok && n_ids > 2 * (uint32_t)n_items + 1024) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: the largest id is %u but there are only %d tokens (ids run from 0 up, without large gaps)",
                      path, n_ids - 1, n_items);
        ok = false;
    }
    if (ok) {
        b->n_ids = n_ids;
        b->off = xrealloc(NULL, ((size_t)n_ids + 1) * sizeof *b->off);
        b->present = xrealloc(NULL, n_ids * sizeof *b->present);
        memset(b->present, 0, n_ids * sizeof *b->present);
        size_t *lens = xrealloc(NULL, n_ids * sizeof *lens);
        memset(lens, 0, n_ids * sizeof *lens);
        uint8_t *tmp = xrealloc(NULL, 4096);
        size_t total = 0;
        /* pass 2: lengths (and validity) */
        for (cJSON *it = root->child; it && ok; it = it->next) {
            uint32_t id = (uint32_t)it->valuedouble;
            size_t n;
            tmp = xrealloc(tmp, strlen(it->string) + 1);
            if (!unmap_token(it->string, inv, tmp, &n)) {
                ir_diag_error(d, -1, 0, 0, "%s:%d: token \"%s\" (id %u) has a character outside GPT-2's byte map",
                              path, key_line(text, it->string), it->string, id);
                ok = false;
            } else if (b->present[id]) {
                ir_diag_error(d, -1, 0, 0, "%s:%d: id %u is given to two tokens (the second is \"%s\")", path,
                              key_line(text, it->string), id, it->string);
                ok = false;
            } else if (n == 0) {
                ir_diag_error(d, -1, 0, 0, "%s:%d: empty token (id %u)", path, key_line(text, it->string), id);
                ok = false;
            } else {
                b->present[id] = true;
                lens[id] = n;
                total += n;
            }
        }
        if (ok) {
            b->off[0] = 0;
            for (uint32_t i = 0; i < n_ids; i++)
                b->off[i + 1] = b->off[i] + lens[i];
            b->bytes = xrealloc(NULL, total);
            for (cJSON *it = root->child; it; it = it->next) {
                uint32_t id = (uint32_t)it->valuedouble;
                size_t n;
                unmap_token(it->string, inv, b->bytes + b->off[id], &n);
            }
        }
        free(tmp);
        free(lens);
    }
    cJSON_Delete(root);
    free(text);
    if (!ok)
        return false;

    /* the bytes → id table; a duplicate text is an error (two ids would encode the same) */
    size_t cap = 1;
    while (cap < (size_t)n_ids * 2)
        cap <<= 1;
    b->str_mask = cap - 1;
    b->str_slots = xrealloc(NULL, cap * sizeof *b->str_slots);
    memset(b->str_slots, 0xFF, cap * sizeof *b->str_slots);
    for (uint32_t id = 0; id < n_ids; id++) {
        if (!b->present[id])
            continue;
        const uint8_t *p = b->bytes + b->off[id];
        size_t n = b->off[id + 1] - b->off[id];
        uint32_t other = str_lookup(b, p, n);
        if (other != UINT32_MAX) {
            ir_diag_error(d, -1, 0, 0, "%s: ids %u and %u are the same token", path, other, id);
            return false;
        }
        size_t i = hash_bytes(p, n) & b->str_mask;
        while (b->str_slots[i] != UINT32_MAX)
            i = (i + 1) & b->str_mask;
        b->str_slots[i] = id;
    }
    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        b->byte_id[c] = str_lookup(b, &byte, 1);
        if (b->byte_id[c] == UINT32_MAX) {
            ir_diag_error(d, -1, 0, 0, "%s: byte 0x%02X has no token (a byte-level vocabulary has all 256)", path, c);
            return false;
        }
    }
    b->eot = str_lookup(b, (const uint8_t *)"<|endoftext|>", 13);
    return true;
}

/* vocab.bpe's text (malloc'd, NUL-terminated, len bytes; freed here) from path. */
static bool load_merges_text(rt_bpe *b, const char *path, char *text, size_t len, ir_diag *d)
{
    size_t cap = 1;
    while (cap < (size_t)b->n_ids * 2 + 16)
        cap <<= 1;
    b->pair_mask = cap - 1;
    b->pairs = xrealloc(NULL, cap * sizeof *b->pairs);
    for (size_t i = 0; i < cap; i++)
        b->pairs[i].rank = UINT32_MAX;
    size_t n_pairs = 0;

    uint32_t inv[512], map[256];
    byte_to_unicode(map);
    for (int i = 0; i < 512; i++)
        inv[i] = UINT32_MAX;
    for (int c = 0; c < 256; c++)
        inv[map[c]] = (uint32_t)c;

    bool ok = true;
    uint32_t rank = 0;
    int line = 0;
    uint8_t *buf = xrealloc(NULL, len + 1);
    for (char *p = text; ok && p < text + len;) {
        char *eol = memchr(p, '\n', (size_t)(text + len - p));
        if (!eol)
            eol = text + len;
        line++;
        char *e = eol;
        if (e > p && e[-1] == '\r')
            e--;
        *e = 0;
        char *next = eol < text + len ? eol + 1 : eol;
        if ((line == 1 && p[0] == '#') || e == p) {
            p = next;
            continue;
        }
        char *sp = strchr(p, ' ');
        if (!sp || sp == p || !sp[1] || strchr(sp + 1, ' ')) {
            ir_diag_error(d, -1, 0, 0, "%s:%d: expected a merge 'LEFT RIGHT' (two tokens, one space), got '%s'", path,
                          line, p);
            ok = false;
            break;
        }
        *sp = 0;
        const char *parts[2] = {p, sp + 1};
        uint32_t ids[2];
        size_t lens[2];
        for (int k = 0; k < 2 && ok; k++) {
            if (!unmap_token(parts[k], inv, buf, &lens[k])) {
                ir_diag_error(d, -1, 0, 0, "%s:%d: '%s' has a character outside GPT-2's byte map", path, line,
                              parts[k]);
                ok = false;
            } else if ((ids[k] = str_lookup(b, buf, lens[k])) == UINT32_MAX) {
                ir_diag_error(d, -1, 0, 0, "%s:%d: merge '%s %s': '%s' is not a token of encoder.json", path, line,
                              parts[0], parts[1], parts[k]);
                ok = false;
            }
        }
        if (!ok)
            break;
        size_t l0 = b->off[ids[0] + 1] - b->off[ids[0]], l1 = b->off[ids[1] + 1] - b->off[ids[1]];
        memcpy(buf, b->bytes + b->off[ids[0]], l0);
        memcpy(buf + l0, b->bytes + b->off[ids[1]], l1);
        uint32_t merged = str_lookup(b, buf, l0 + l1);
        if (merged == UINT32_MAX) {
            ir_diag_error(d, -1, 0, 0, "%s:%d: merge '%s %s': '%s%s' is not a token of encoder.json", path, line,
                          parts[0], parts[1], parts[0], parts[1]);
            ok = false;
            break;
        }
        if (pair_lookup(b, ids[0], ids[1])) {
            ir_diag_error(d, -1, 0, 0, "%s:%d: merge '%s %s' appears twice", path, line, parts[0], parts[1]);
            ok = false;
            break;
        }
        if (2 * (n_pairs + 1) > cap) { /* grow and rehash */
            pair_slot *old = b->pairs;
            size_t old_cap = cap;
            cap *= 2;
            b->pair_mask = cap - 1;
            b->pairs = xrealloc(NULL, cap * sizeof *b->pairs);
            for (size_t i = 0; i < cap; i++)
                b->pairs[i].rank = UINT32_MAX;
            for (size_t i = 0; i < old_cap; i++)
                if (old[i].rank != UINT32_MAX) {
                    size_t j = hash_pair(old[i].key) & b->pair_mask;
                    while (b->pairs[j].rank != UINT32_MAX)
                        j = (j + 1) & b->pair_mask;
                    b->pairs[j] = old[i];
                }
            free(old);
        }
        uint64_t key = (uint64_t)ids[0] << 32 | ids[1];
        size_t j = hash_pair(key) & b->pair_mask;
        while (b->pairs[j].rank != UINT32_MAX)
            j = (j + 1) & b->pair_mask;
        b->pairs[j] = (pair_slot){key, rank++, merged};
        n_pairs++;
        p = next;
    }
    free(buf);
    free(text);
    return ok;
}

static bool exists_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* tokenizer.json (Hugging Face tokenizers) of a byte-level BPE: its model's vocab and merges as
 * encoder.json's and vocab.bpe's texts, or false after saying why it is not GPT-2's kind. */
static bool from_tokenizer_json(const char *path, char **enc, size_t *enc_len, char **merges, size_t *merges_len,
                                ir_diag *d)
{
    size_t len;
    char *text = read_file(path, &len, d);
    if (!text)
        return false;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    const cJSON *pre_type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *fallback = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    const char *why = !j                                             ? "invalid JSON"
                      : !cJSON_IsString(type)                        ? "no model.type"
                      : strcmp(type->valuestring, "BPE") != 0        ? "model.type is not BPE"
                      : !cJSON_IsString(pre_type) || strcmp(pre_type->valuestring, "ByteLevel") != 0 ||
                              cJSON_IsFalse(regex)                   ? "the pre-tokenizer is not GPT-2's (ByteLevel with its regex)"
                      : cJSON_IsTrue(fallback)                       ? "model.byte_fallback is set (SentencePiece-style BPE)"
                      : !cJSON_IsObject(vocab) || !cJSON_IsArray(list) ? "no model.vocab object and model.merges list"
                                                                     : NULL;
    if (why) {
        ir_diag_error(d, -1, 0, 0, "%s: %s%s%s: loom's BPE is GPT-2's byte-level BPE", path, why,
                      cJSON_IsString(type) ? ", model type " : "", cJSON_IsString(type) ? type->valuestring : "");
        cJSON_Delete(j);
        return false;
    }
    *enc = cJSON_PrintUnformatted(vocab);
    if (!*enc)
        ir_unreachable("out of memory");
    *enc_len = strlen(*enc);
    size_t cap = 64, n = (size_t)snprintf(NULL, 0, "#version: tokenizer.json\n");
    char *m = xrealloc(NULL, cap);
    strcpy(m, "#version: tokenizer.json\n");
    bool ok = true;
    for (const cJSON *e = list->child; e && ok; e = e->next) {
        const char *a = NULL, *b2 = NULL, *ab = NULL;
        if (cJSON_IsString(e))
            ab = e->valuestring; /* "LEFT RIGHT" */
        else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                 cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b2 = e->child->next->valuestring;
        } else {
            ir_diag_error(d, -1, 0, 0, "%s: a merge of model.merges is neither \"LEFT RIGHT\" nor [LEFT, RIGHT]", path);
            ok = false;
            break;
        }
        size_t need = n + (ab ? strlen(ab) : strlen(a) + strlen(b2) + 1) + 2;
        while (need > cap)
            m = xrealloc(m, cap *= 2);
        n += (size_t)(ab ? snprintf(m + n, cap - n, "%s\n", ab) : snprintf(m + n, cap - n, "%s %s\n", a, b2));
    }
    cJSON_Delete(j);
    if (!ok) {
        free(m);
        cJSON_free(*enc);
        return false;
    }
    *merges = m;
    *merges_len = n;
    char *copy = xrealloc(NULL, *enc_len + 1); /* malloc'd like read_file's */
    memcpy(copy, *enc, *enc_len + 1);
    cJSON_free(*enc);
    *enc = copy;
    return true;
}

rt_bpe *rt_bpe_load(const char *dir, ir_diag *d)
{
    rt_bpe *b = xrealloc(NULL, sizeof *b);
    memset(b, 0, sizeof *b);
    size_t n = strlen(dir) + 32;
    char *enc_path = xrealloc(NULL, n), *merges_path = xrealloc(NULL, n);
    /* OpenAI's names, Hugging Face's, or Hugging Face's tokenizer.json alone */
    bool hf = !exists_in(dir, "encoder.json") && exists_in(dir, "vocab.json");
    bool json = !exists_in(dir, "encoder.json") && !hf && exists_in(dir, "tokenizer.json");
    snprintf(enc_path, n, "%s/%s", dir, json ? "tokenizer.json" : hf ? "vocab.json" : "encoder.json");
    snprintf(merges_path, n, "%s/%s", dir, json ? "tokenizer.json" : hf ? "merges.txt" : "vocab.bpe");
    char *enc = NULL, *merges = NULL;
    size_t enc_len = 0, merges_len = 0;
    bool ok = json ? from_tokenizer_json(enc_path, &enc, &enc_len, &merges, &merges_len, d)
                   : (enc = read_file(enc_path, &enc_len, d)) != NULL;
    ok = ok && load_encoder_text(b, enc_path, enc, enc_len, d);
    if (!ok && json)
        free(merges);
    if (ok && !json)
        ok = (merges = read_file(merges_path, &merges_len, d)) != NULL;
    ok = ok && load_merges_text(b, merges_path, merges, merges_len, d);
    free(enc_path);
    free(merges_path);
    if (!ok) {
        rt_bpe_free(b);
        return NULL;
    }
    return b;
}

void rt_bpe_free(rt_bpe *b)
{
    if (!b)
        return;
    free(b->bytes);
    free(b->off);
    free(b->present);
    free(b->str_slots);
    free(b->pairs);
    free(b);
}

uint32_t rt_bpe_vocab_size(const rt_bpe *b) { return b->n_ids; }
uint32_t rt_bpe_eot(const rt_bpe *b) { return b->eot; }

const uint8_t *rt_bpe_token_bytes(const rt_bpe *b, uint32_t id, size_t *len)
{
    if (id >= b->n_ids || !b->present[id])
        return NULL;
    *len = b->off[id + 1] - b->off[id];
    return b->bytes + b->off[id];
}

/* ---- encoding ------------------------------------------------------------------------------- */
typedef struct {
    uint32_t rank, pos, left, right;
} heap_ent;

/* Scratch space of one encode call, grown to the longest pre-token. */
typedef struct {
    uint32_t *id;
    int32_t *prev, *next;
    heap_ent *heap;
    size_t cap, heap_cap, n_heap;
} work;

static bool heap_less(const heap_ent *a, const heap_ent *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(work *w, heap_ent e)
{
    if (w->n_heap == w->heap_cap) {
        w->heap_cap = w->heap_cap ? 2 * w->heap_cap : 64;
        w->heap = xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    size_t i = w->n_heap++;
    while (i > 0 && heap_less(&e, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = e;
}

static heap_ent heap_pop(work *w)
{
    heap_ent top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!heap_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static void push_pair(const rt_bpe *b, work *w, int32_t pos)
{
    if (pos < 0 || w->next[pos] < 0)
        return;
    const pair_slot *s = pair_lookup(b, w->id[pos], w->id[w->next[pos]]);
    if (s)
        heap_push(w, (heap_ent){s->rank, (uint32_t)pos, w->id[pos], w->id[w->next[pos]]});
}

typedef struct {
    uint32_t **ids;
    size_t *n, *cap;
} out_ids;

static void emit(out_ids *o, uint32_t id)
{
    if (*o->n == *o->cap) {
        *o->cap = *o->cap ? 2 * *o->cap : 256;
        *o->ids = xrealloc(*o->ids, *o->cap * sizeof **o->ids);
    }
    (*o->ids)[(*o->n)++] = id;
}

/* BPE over one pre-token's bytes. */
static void bpe_piece(const rt_bpe *b, work *w, const uint8_t *p, size_t n, out_ids *o)
{
    if (n == 1) {
        emit(o, b->byte_id[p[0]]);
        return;
    }
    if (n > w->cap) {
        w->cap = n > 2 * w->cap ? n : 2 * w->cap;
        w->id = xrealloc(w->id, w->cap * sizeof *w->id);
        w->prev = xrealloc(w->prev, w->cap * sizeof *w->prev);
        w->next = xrealloc(w->next, w->cap * sizeof *w->next);
    }
    for (size_t i = 0; i < n; i++) {
        w->id[i] = b->byte_id[p[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(b, w, (int32_t)i);
    while (w->n_heap) {
        heap_ent e = heap_pop(w);
        int32_t pos = (int32_t)e.pos, nx = w->next[pos];
        /* stale: pos was merged away (prev of a dead symbol is set to -2) or its pair changed */
        if (w->prev[pos] == -2 || nx < 0 || w->id[pos] != e.left || w->id[nx] != e.right)
            continue;
        w->id[pos] = pair_lookup(b, e.left, e.right)->merged;
        w->next[pos] = w->next[nx];
        if (w->next[nx] >= 0)
            w->prev[w->next[nx]] = pos;
        w->prev[nx] = -2;
        push_pair(b, w, w->prev[pos]);
        push_pair(b, w, pos);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        emit(o, w->id[i]);
}

enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER };

/* Class of the character at s[i] (i < n) and its length. */
static int char_class(const uint8_t *s, size_t n, size_t i, int *len)
{
    uint32_t cp;
    *len = rt_utf8_decode(s + i, n - i, &cp);
    if (cp == RT_UTF8_INVALID)
        return CL_OTHER;
    if (rt_uni_is_letter(cp))
        return CL_LETTER;
    if (rt_uni_is_number(cp))
        return CL_NUMBER;
    if (rt_uni_is_white_space(cp))
        return CL_SPACE;
    return CL_OTHER;
}

/* End of the run of class cl starting at i. */
static size_t run_end(const uint8_t *s, size_t n, size_t i, int cl)
{
    int len;
    while (i < n && char_class(s, n, i, &len) == cl)
        i += (size_t)len;
    return i;
}

/* Length of the pre-token at s[i..n) (i < n): GPT-2's regex, alternative by alternative. */
static size_t pretoken(const uint8_t *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) { /* 's|'t|'re|'ve|'m|'ll|'d */
        uint8_t c = s[i + 1], c2 = i + 2 < n ? s[i + 2] : 0;
        if (c == 's' || c == 't' || c == 'm' || c == 'd')
            return 2;
        if ((c == 'r' && c2 == 'e') || (c == 'v' && c2 == 'e') || (c == 'l' && c2 == 'l'))
            return 3;
    }
    int len;
    int cl = char_class(s, n, i, &len);
    if (cl != CL_SPACE) /* \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+ */
        return run_end(s, n, i, cl) - i;
    if (s[i] == ' ' && i + 1 < n) { /* " ?" then a letter, number or other run */
        int len2;
        int cl2 = char_class(s, n, i + 1, &len2);
        if (cl2 != CL_SPACE)
            return run_end(s, n, i + 1, cl2) - i;
    }
    /* \s+(?!\S) | \s+ : the whitespace run, less its last character when a non-space follows
     * and the run has more than one character */
    size_t j = i, last = i;
    while (j < n && char_class(s, n, j, &len) == CL_SPACE) {
        last = j;
        j += (size_t)len;
    }
    if (j < n && last > i)
        return last - i;
    return j - i;
}

static void encode_ordinary(const rt_bpe *b, work *w, const uint8_t *s, size_t n, out_ids *o)
{
    for (size_t i = 0; i < n;) {
        size_t k = pretoken(s, n, i);
        bpe_piece(b, w, s + i, k, o);
        i += k;
    }
}

void rt_bpe_encode(const rt_bpe *b, const char *text, size_t len, bool allow_special, uint32_t **ids,
                   size_t *n, size_t *cap)
{
    out_ids o = {ids, n, cap};
    work w = {0};
    const uint8_t *s = (const uint8_t *)text;
    static const char eot[] = "<|endoftext|>";
    size_t start = 0;
    if (allow_special && b->eot != UINT32_MAX && len >= sizeof eot - 1) {
        for (size_t i = 0; i + (sizeof eot - 1) <= len; i++) {
            if (s[i] == '<' && memcmp(s + i, eot, sizeof eot - 1) == 0) {
                encode_ordinary(b, &w, s + start, i - start, &o);
                emit(&o, b->eot);
                i += sizeof eot - 2;
                start = i + 1;
            }
        }
    }
    encode_ordinary(b, &w, s + start, len - start, &o);
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.heap);
}

char *rt_bpe_decode(const rt_bpe *b, const uint32_t *ids, size_t n, size_t *len, ir_diag *d)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= b->n_ids || !b->present[ids[i]]) {
            ir_diag_error(d, -1, 0, 0, "id %u at position %zu is not a token (vocabulary of %u)", ids[i], i,
                          b->n_ids);
            return NULL;
        }
        total += b->off[ids[i] + 1] - b->off[ids[i]];
    }
    char *out = xrealloc(NULL, total + 1), *p = out;
    for (size_t i = 0; i < n; i++) {
        size_t k = b->off[ids[i] + 1] - b->off[ids[i]];
        memcpy(p, b->bytes + b->off[ids[i]], k);
        p += k;
    }
    *p = 0;
    *len = total;
    return out;
}
