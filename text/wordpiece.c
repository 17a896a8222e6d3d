/* wordpiece.c — BERT WordPiece: vocab.txt loading, the normalizer and pre-tokenizer over code
 * points, greedy longest-match-first pieces (see wordpiece.h for the contract).
 *
 * The vocabulary is a hash map from token bytes to id (open addressing); the normalized text is
 * an array of code points, split into words, and each word is matched as UTF-8 bytes.
 */
#include "text/wordpiece.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json_file.h"
#include "text/bpe.h"
#include "ir/ir.h"

struct rt_wp {
    rt_wp_config cfg;
    uint32_t n_ids;
    char **text;       /* (n_ids) token texts, NUL-terminated */
    uint32_t *slots;   /* text → id, UINT32_MAX empty */
    size_t mask;
    uint32_t unk, cls, sep, pad;
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        ir_unreachable("out of memory");
    return q;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h ^ h >> 29;
}

/* The slot of text p[0..n): holding its id, or the empty slot where it would go. */
static size_t find_slot(const rt_wp *w, const char *p, size_t n)
{
    size_t i = hash_bytes(p, n) & w->mask;
    while (w->slots[i] != UINT32_MAX) {
        const char *t = w->text[w->slots[i]];
        if (strncmp(t, p, n) == 0 && t[n] == 0)
            break;
        i = (i + 1) & w->mask;
    }
    return i;
}

static uint32_t lookup(const rt_wp *w, const char *p, size_t n) { return w->slots[find_slot(w, p, n)]; }

/* DIR/tokenizer.json's WordPiece vocabulary as vocab.txt's text (one token a line, by id), or
 * NULL after reporting why it is not one. */
static char *vocab_from_tokenizer_json(const char *json_path, size_t *len, ir_diag *d)
{
    cJSON *j = rt_json_read(".", json_path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece") != 0 || !cJSON_IsObject(vocab)) {
        ir_diag_error(d, -1, 0, 0, "%s: %s", json_path,
                      !j ? "cannot read it as JSON"
                         : "model.type is not WordPiece with a model.vocab object (loom's WordPiece is BERT's)");
        cJSON_Delete(j);
        return NULL;
    }
    int n = cJSON_GetArraySize(vocab);
    const char **by_id = calloc((size_t)n + 1, sizeof *by_id);
    size_t total = 1;
    bool ok = by_id != NULL;
    for (const cJSON *e = vocab->child; e && ok; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < n && v == (double)(int)v) || by_id[(int)v] || strchr(e->string, '\n')) {
            ir_diag_error(d, -1, 0, 0, "%s: model.vocab[\"%s\"]: ids must be 0..%d, each once", json_path, e->string,
                          n - 1);
            ok = false;
            break;
        }
        by_id[(int)v] = e->string;
        total += strlen(e->string) + 1;
    }
    char *text = ok ? malloc(total) : NULL;
    size_t at = 0;
    for (int i = 0; text && i < n; i++)
        at += (size_t)sprintf(text + at, "%s\n", by_id[i]);
    if (ok && !text)
        ir_unreachable("out of memory");
    free(by_id);
    cJSON_Delete(j);
    *len = at;
    return text;
}

rt_wp *rt_wp_load(const char *path, rt_wp_config cfg, ir_diag *d)
{
    /* Hugging Face's tokenizer.json when the folder has no vocab.txt */
    char *json_path = NULL, *text = NULL;
    size_t text_len = 0;
    const char *slash = strrchr(path, '/');
    if (access(path, F_OK) != 0 && slash && strcmp(slash, "/vocab.txt") == 0) {
        json_path = xrealloc(NULL, strlen(path) + 16);
        snprintf(json_path, strlen(path) + 16, "%.*s/tokenizer.json", (int)(slash - path), path);
        if (access(json_path, F_OK) == 0) {
            text = vocab_from_tokenizer_json(json_path, &text_len, d);
            if (!text) {
                free(json_path);
                return NULL;
            }
            path = json_path;
        }
    }
    FILE *f = text ? fmemopen(text, text_len, "r") : fopen(path, "rb");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        free(json_path);
        free(text);
        return NULL;
    }
    rt_wp *w = xrealloc(NULL, sizeof *w);
    memset(w, 0, sizeof *w);
    if (cfg.strip_accents < 0)
        cfg.strip_accents = cfg.lowercase;
    if (cfg.max_chars <= 0)
        cfg.max_chars = 100;
    w->cfg = cfg;
    size_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        size_t n = (size_t)got;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        if (memchr(line, 0, n)) {
            ir_diag_error(d, -1, 0, 0, "%s:%u: NUL byte in a token", path, w->n_ids + 1);
            free(line);
            fclose(f);
            free(text);
            free(json_path);
            rt_wp_free(w);
            return NULL;
        }
        if (w->n_ids == cap) {
            cap = cap ? 2 * cap : 1024;
            w->text = xrealloc(w->text, cap * sizeof *w->text);
        }
        char *t = xrealloc(NULL, n + 1);
        memcpy(t, line, n);
        t[n] = 0;
        w->text[w->n_ids++] = t;
    }
    free(line);
    bool err = ferror(f);
    fclose(f);
    free(text);
    if (err || w->n_ids == 0) {
        ir_diag_error(d, -1, 0, 0, "%s: %s", path, err ? "read error" : "empty vocabulary");
        free(json_path);
        rt_wp_free(w);
        return NULL;
    }
    size_t slots = 1;
    while (slots < (size_t)w->n_ids * 2)
        slots <<= 1;
    w->mask = slots - 1;
    w->slots = xrealloc(NULL, slots * sizeof *w->slots);
    memset(w->slots, 0xFF, slots * sizeof *w->slots);
    for (uint32_t id = 0; id < w->n_ids; id++) /* a repeated token: the last line wins */
        w->slots[find_slot(w, w->text[id], strlen(w->text[id]))] = id;
    w->unk = rt_wp_token_id(w, "[UNK]");
    w->cls = rt_wp_token_id(w, "[CLS]");
    w->sep = rt_wp_token_id(w, "[SEP]");
    w->pad = rt_wp_token_id(w, "[PAD]");
    const char *missing = w->unk == UINT32_MAX ? "[UNK]" : w->cls == UINT32_MAX ? "[CLS]" : w->sep == UINT32_MAX ? "[SEP]" : NULL;
    if (missing) {
        ir_diag_error(d, -1, 0, 0, "%s: no %s token in the vocabulary", path, missing);
        free(json_path);
        rt_wp_free(w);
        return NULL;
    }
    free(json_path);
    return w;
}

void rt_wp_free(rt_wp *w)
{
    if (!w)
        return;
    for (uint32_t i = 0; i < w->n_ids; i++)
        free(w->text[i]);
    free(w->text);
    free(w->slots);
    free(w);
}

uint32_t rt_wp_vocab_size(const rt_wp *w) { return w->n_ids; }
uint32_t rt_wp_token_id(const rt_wp *w, const char *text) { return lookup(w, text, strlen(text)); }
const char *rt_wp_token_text(const rt_wp *w, uint32_t id) { return id < w->n_ids ? w->text[id] : NULL; }

/* ---- normalizing ---------------------------------------------------------------------------- */
typedef struct {
    uint32_t *cp;
    size_t n, cap;
} cps;

static void push(cps *c, uint32_t cp)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->cp = xrealloc(c->cp, c->cap * sizeof *c->cp);
    }
    c->cp[c->n++] = cp;
}

static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_punct(uint32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return true;
    return c >= 0x80 && rt_uni_is_punct(c);
}

/* Step 1 of wordpiece.h over the whole text. */
static void normalize(const rt_wp *w, const uint8_t *s, size_t len, cps *out)
{
    for (size_t i = 0; i < len;) {
        uint32_t c;
        i += (size_t)rt_utf8_decode(s + i, len - i, &c);
        if (c == RT_UTF8_INVALID || c == 0 || c == 0xFFFD)
            continue;
        if (c == '\t' || c == '\n' || c == '\r') {
            push(out, ' ');
            continue;
        }
        if (rt_uni_is_bert_control(c))
            continue;
        if (rt_uni_is_white_space(c)) {
            push(out, ' ');
            continue;
        }
        bool cjk = is_cjk(c); /* spaced, then normalized like any character (F900-FAFF decompose) */
        if (cjk)
            push(out, ' ');
        uint32_t parts[3];
        int k = 1;
        parts[0] = c;
        if (w->cfg.strip_accents)
            k = rt_uni_strip_accents(c, parts);
        for (int j = 0; j < k; j++) {
            if (w->cfg.lowercase && parts[j] == 0x130) {
                push(out, 'i');
                push(out, 0x307);
            } else
                push(out, w->cfg.lowercase ? rt_uni_to_lower(parts[j]) : parts[j]);
        }
        if (cjk)
            push(out, ' ');
    }
}

/* ---- word pieces ---------------------------------------------------------------------------- */
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

/* Pieces of the word cp[0..n) (n >= 1) into o. Scratch: buf holds 8n + 2 bytes (the word's
 * UTF-8, then "##" + a candidate piece), bound n + 1 offsets. */
static void word_pieces(const rt_wp *w, const uint32_t *cp, size_t n, char *buf, size_t *bound, out_ids *o)
{
    if (n > (size_t)w->cfg.max_chars) {
        emit(o, w->unk);
        return;
    }
    size_t at = 0; /* bound[k]: byte offset of code point k in the word's UTF-8 */
    for (size_t k = 0; k < n; k++) {
        bound[k] = at;
        at += (size_t)rt_utf8_encode(cp[k], (uint8_t *)buf + at);
    }
    bound[n] = at;
    char *cont = buf + at; /* "##" + piece */
    cont[0] = cont[1] = '#';
    size_t first = *o->n;
    for (size_t start = 0; start < n;) {
        size_t end = n;
        uint32_t id = UINT32_MAX;
        for (; end > start && id == UINT32_MAX; end--) {
            size_t len = bound[end] - bound[start];
            if (start == 0)
                id = lookup(w, buf, len);
            else {
                memcpy(cont + 2, buf + bound[start], len);
                id = lookup(w, cont, len + 2);
            }
        }
        if (id == UINT32_MAX) { /* an unmatchable rest: the whole word is [UNK] */
            *o->n = first;
            emit(o, w->unk);
            return;
        }
        emit(o, id);
        start = end + 1; /* the loop decremented end once past the match */
    }
}

/* The special tokens recognized in the text (as Hugging Face's added tokens: raw text, before
 * normalizing); in the normalized code points each stands as SPECIAL_CP + its index. */
static const char *const special_names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
enum { N_SPECIAL = 5, SPECIAL_CP = 0x110000 };

void rt_wp_encode(const rt_wp *w, const char *text, size_t len, bool allow_special, size_t max_len, uint32_t **ids,
                  size_t *n, size_t *cap)
{
    out_ids o = {ids, n, cap};
    cps c = {0};
    size_t start = 0;
    for (size_t i = 0; allow_special && i < len; i++) {
        if (text[i] != '[')
            continue;
        for (int k = 0; k < N_SPECIAL; k++) {
            size_t kl = strlen(special_names[k]);
            if (len - i >= kl && memcmp(text + i, special_names[k], kl) == 0 &&
                rt_wp_token_id(w, special_names[k]) != UINT32_MAX) {
                normalize(w, (const uint8_t *)text + start, i - start, &c);
                push(&c, SPECIAL_CP + (uint32_t)k);
                start = i + kl;
                i = start - 1;
                break;
            }
        }
    }
    normalize(w, (const uint8_t *)text + start, len - start, &c);
    char *buf = xrealloc(NULL, 8 * c.n + 8);
    size_t *bound = xrealloc(NULL, (c.n + 1) * sizeof *bound);
    size_t first = *n;
    emit(&o, w->cls);
    for (size_t i = 0; i < c.n;) {
        if (c.cp[i] == ' ') {
            i++;
            continue;
        }
        if (c.cp[i] >= SPECIAL_CP) {
            emit(&o, rt_wp_token_id(w, special_names[c.cp[i++] - SPECIAL_CP]));
            continue;
        }
        size_t j = i + 1;
        if (!is_punct(c.cp[i]))
            while (j < c.n && c.cp[j] != ' ' && c.cp[j] < SPECIAL_CP && !is_punct(c.cp[j]))
                j++;
        word_pieces(w, c.cp + i, j - i, buf, bound, &o);
        i = j;
    }
    if (max_len >= 2 && *n - first + 1 > max_len)
        *n = first + max_len - 1;
    emit(&o, w->sep);
    free(buf);
    free(bound);
    free(c.cp);
}

char *rt_wp_decode(const rt_wp *w, const uint32_t *ids, size_t n, ir_diag *d)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= w->n_ids) {
            ir_diag_error(d, -1, 0, 0, "id %u at position %zu is not a token (vocabulary of %u)", ids[i], i,
                          w->n_ids);
            return NULL;
        }
        total += strlen(w->text[ids[i]]) + 1;
    }
    char *out = xrealloc(NULL, total), *p = out;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id == w->cls || id == w->sep || id == w->pad)
            continue;
        const char *t = w->text[id];
        if (strncmp(t, "##", 2) == 0 && p > out)
            t += 2;
        else if (p > out)
            *p++ = ' ';
        size_t k = strlen(t);
        memcpy(p, t, k);
        p += k;
    }
    *p = 0;
    return out;
}
