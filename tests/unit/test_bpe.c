/* test_bpe.c — the tokenizers: GPT-2 BPE (text/bpe.h) and BERT WordPiece (text/wordpiece.h).
 *
 * BPE: known encodings (ids from tiktoken's gpt2 on the same files), the special token on and
 * off, decode(encode(x)) == x on the whole of data/tinyshakespeare.txt (338,025 tokens) and on
 * 2,000 seeded random byte strings (invalid UTF-8, NULs, long whitespace and letter runs), each
 * loading error naming its file and line. UTF-8 decoding and the Unicode classes. WordPiece on a
 * small vocabulary: pieces, accents, CJK, [UNK] rules, special tokens, truncation, decode.
 * Run from the source root (ctest does): it reads data/.
 */
#include "text/bpe.h"
#include "test_check.h"
#include "text/wordpiece.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 12345;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ z >> 27) * 0x94D049BB133111EBull;
    return z ^ z >> 31;
}

/* Encodes s (len bytes) and checks the ids against want (n_want of them; n_want < 0: skip). */
static void expect_ids(int line, const rt_bpe *b, const char *s, size_t len, bool special, const uint32_t *want,
                       int n_want)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    rt_bpe_encode(b, s, len, special, &ids, &n, &cap);
    bool same = n == (size_t)n_want;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    CHECK(same, "line %d: encoding of \"%s\": got %zu ids, first %u", line, s, n, n ? ids[0] : 0);
    free(ids);
}
#define EXPECT_IDS(b, s, special, ...)                                                                     \
    do {                                                                                                   \
        static const uint32_t want_[] = {__VA_ARGS__};                                                     \
        expect_ids(__LINE__, b, s, strlen(s), special, want_, (int)(sizeof want_ / sizeof *want_));        \
    } while (0)

/* decode(encode(s)) == s; returns the number of ids. */
static size_t round_trip(const rt_bpe *b, const char *s, size_t len, bool special)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0, out_len = 0;
    rt_bpe_encode(b, s, len, special, &ids, &n, &cap);
    ir_diag d;
    ir_diag_init(&d);
    char *out = rt_bpe_decode(b, ids, n, &out_len, &d);
    CHECK(out && out_len == len && memcmp(out, s, len) == 0, "round trip of a %zu-byte string (%zu ids)", len, n);
    free(out);
    free(ids);
    ir_diag_free(&d);
    return n;
}

static void test_known(const rt_bpe *b)
{
    CHECK(rt_bpe_vocab_size(b) == 50257 && rt_bpe_eot(b) == 50256, "vocab %u eot %u", rt_bpe_vocab_size(b),
          rt_bpe_eot(b));
    EXPECT_IDS(b, "Hello world", true, 15496, 995);
    EXPECT_IDS(b, "Hello world<|endoftext|>  it's 2024!\n\n  yes   ", true, 15496, 995, 50256, 220, 340, 338, 48609, 0,
               628, 220, 3763, 220, 220, 220);
    EXPECT_IDS(b, " The quick brown fox", true, 383, 2068, 7586, 21831);
    EXPECT_IDS(b, "I'm can't we'll", true, 40, 1101, 460, 470, 356, 1183);
    EXPECT_IDS(b, "na\xc3\xafve caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80", true, 2616, 38776, 40304, 10545,
               251, 109, 12859, 105, 30325, 222);
    EXPECT_IDS(b, "   x", true, 220, 220, 2124);
    EXPECT_IDS(b, "\n\n", true, 628);
    EXPECT_IDS(b, "<|endoftext|>", false, 27, 91, 437, 1659, 5239, 91, 29);
    EXPECT_IDS(b, "<|endoftext|>", true, 50256);
    expect_ids(__LINE__, b, "", 0, true, NULL, 0);
    /* single bytes are tokens: 0xFF is id 187, NUL id 188 (GPT-2's byte map) */
    EXPECT_IDS(b, "\xff", true, 187);
    expect_ids(__LINE__, b, "\0", 1, true, (const uint32_t[]){188}, 1);
    size_t len;
    const uint8_t *t = rt_bpe_token_bytes(b, 15496, &len);
    CHECK(t && len == 5 && memcmp(t, "Hello", 5) == 0, "token 15496 is 'Hello'");
    CHECK(!rt_bpe_token_bytes(b, 50257, &len), "no token 50257");
    ir_diag d;
    ir_diag_init(&d);
    uint32_t bad[] = {15496, 60000};
    CHECK(!rt_bpe_decode(b, bad, 2, &len, &d) && d.n_msg && strstr(d.msg[0].msg, "id 60000 at position 1"),
          "decode of an out-of-range id: %s", d.n_msg ? d.msg[0].msg : "(none)");
    ir_diag_free(&d);
}

static void test_shakespeare(const rt_bpe *b)
{
    FILE *f = fopen("data/tinyshakespeare.txt", "rb");
    CHECK(f, "data/tinyshakespeare.txt (run from the source root)");
    if (!f)
        return;
    char *buf = malloc(1 << 21);
    size_t len = fread(buf, 1, 1 << 21, f);
    fclose(f);
    CHECK(len == 1115394, "tinyshakespeare is %zu bytes", len);
    size_t n = round_trip(b, buf, len, true);
    CHECK(n == 338025, "tinyshakespeare: %zu tokens, expected 338025", n);
    free(buf);
}

/* 2,000 random byte strings of several kinds. */
static void test_random(const rt_bpe *b)
{
    static const char *const pieces[] = {" ",  "  ",   "\n",   "\t",       "'s", "'ll", "a",  "Z",  "9",  "!",
                                         "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc2\xa0", "\xe3\x80\x80",
                                         "\xcc\x81", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "\xff",
                                         "<|endoftext|>", "<|"};
    enum { N_PIECES = sizeof pieces / sizeof *pieces };
    char *s = malloc(100000);
    for (int k = 0; k < 2000; k++) {
        size_t len = 0;
        int kind = k % 5;
        size_t target = rng() % 200;
        if (kind == 0) { /* arbitrary bytes, NULs included */
            for (; len < target; len++)
                s[len] = (char)(rng() & 0xFF);
        } else if (kind == 1) { /* pieces of hard cases */
            while (len < target) {
                const char *p = pieces[rng() % N_PIECES];
                memcpy(s + len, p, strlen(p));
                len += strlen(p);
            }
        } else if (kind == 2) { /* long whitespace runs between words */
            for (int w = 0; w < 3; w++) {
                size_t run = rng() % (k < 1990 ? 300 : 30000);
                memset(s + len, rng() & 1 ? ' ' : '\n', run);
                len += run;
                s[len++] = (char)('a' + rng() % 26);
            }
        } else if (kind == 3) { /* a long word (the merge heap) */
            size_t run = k < 1990 ? rng() % 500 : 30000;
            for (size_t i = 0; i < run; i++)
                s[len++] = (char)("ab"[rng() & 1]);
        } else { /* ASCII text with NULs and controls */
            for (; len < target; len++) {
                uint64_t r = rng() % 100;
                s[len] = r < 3 ? 0 : r < 6 ? (char)(r) : (char)(' ' + rng() % 95);
            }
        }
        round_trip(b, s, len, k & 1);
    }
    free(s);
}

static void test_utf8(void)
{
    uint32_t cp;
    CHECK(rt_utf8_decode((const uint8_t *)"\xc3\xa9", 2, &cp) == 2 && cp == 0xE9, "e-acute");
    CHECK(rt_utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &cp) == 4 && cp == 0x1F600, "emoji");
    CHECK(rt_utf8_decode((const uint8_t *)"\xc0\x80", 2, &cp) == 1 && cp == RT_UTF8_INVALID, "overlong");
    CHECK(rt_utf8_decode((const uint8_t *)"\xe0\x80\x80", 3, &cp) == 1 && cp == RT_UTF8_INVALID, "overlong 3");
    CHECK(rt_utf8_decode((const uint8_t *)"\xed\xa0\x80", 3, &cp) == 1 && cp == RT_UTF8_INVALID, "surrogate");
    CHECK(rt_utf8_decode((const uint8_t *)"\xf4\x90\x80\x80", 4, &cp) == 1 && cp == RT_UTF8_INVALID, "> U+10FFFF");
    CHECK(rt_utf8_decode((const uint8_t *)"\xe2\x82", 2, &cp) == 1 && cp == RT_UTF8_INVALID, "truncated");
    CHECK(rt_utf8_decode((const uint8_t *)"\x80", 1, &cp) == 1 && cp == RT_UTF8_INVALID, "lone continuation");
    uint8_t out[4];
    for (uint32_t c = 0; c <= 0x10FFFF; c += 0x101) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        int n = rt_utf8_encode(c, out);
        CHECK(rt_utf8_decode(out, (size_t)n, &cp) == n && cp == c, "U+%04X round trip", c);
    }
    CHECK(rt_uni_is_letter(0xE9) && rt_uni_is_letter(0x4E2D) && rt_uni_is_letter(0x10400) && !rt_uni_is_letter('1'),
          "letters");
    CHECK(rt_uni_is_number(0x663) && rt_uni_is_number(0xBD) && rt_uni_is_number(0x216B) && !rt_uni_is_number('x'),
          "numbers");
    CHECK(rt_uni_is_white_space(0xA0) && rt_uni_is_white_space(0x3000) && rt_uni_is_white_space(0x85) &&
              !rt_uni_is_white_space(0x200B) && !rt_uni_is_white_space(0x1C),
          "white space");
    CHECK(rt_uni_is_punct(0x3002) && rt_uni_is_punct(0x2014) && !rt_uni_is_punct('$'), "punctuation");
    /* BERT's controls: Cc, Cf (of Unicode 8.0), Co; unassigned code points and Cf assigned after 8.0 are not */
    CHECK(rt_uni_is_bert_control(0x200B) && rt_uni_is_bert_control(0x7F) && rt_uni_is_bert_control(0xE000) &&
              rt_uni_is_bert_control(0x10FFFD) && !rt_uni_is_bert_control('a') && !rt_uni_is_bert_control(0x1FAE8) &&
              !rt_uni_is_bert_control(0x378) && !rt_uni_is_bert_control(0x890) && !rt_uni_is_bert_control(0x1343F),
          "BERT controls");
    /* letters of Unicode 15 and 16 (CJK extension H, Garay), a number of 16 (Garay digit) */
    CHECK(rt_uni_is_letter(0x31350) && rt_uni_is_letter(0x10D50) && rt_uni_is_number(0x10D40) &&
              rt_uni_to_lower(0x10D50) == 0x10D70 && rt_uni_to_lower(0x1C89) == 0x1C8A,
          "Unicode 16 letters and case");
    CHECK(rt_uni_to_lower('A') == 'a' && rt_uni_to_lower(0xC9) == 0xE9 && rt_uni_to_lower(0x410) == 0x430 &&
              rt_uni_to_lower(0x100) == 0x101 && rt_uni_to_lower(0x101) == 0x101 && rt_uni_to_lower(0x3A3) == 0x3C3 &&
              rt_uni_to_lower(0x2160) == 0x2170 && rt_uni_to_lower(0x10400) == 0x10428,
          "lower case");
    uint32_t parts[3];
    CHECK(rt_uni_strip_accents(0xE9, parts) == 1 && parts[0] == 'e', "strip e-acute");
    CHECK(rt_uni_strip_accents(0x301, parts) == 0, "a combining mark vanishes");
    CHECK(rt_uni_strip_accents(0xAC01, parts) == 3 && parts[0] == 0x1100 && parts[1] == 0x1161 && parts[2] == 0x11A8,
          "Hangul syllable");
    CHECK(rt_uni_strip_accents(0x1E9B, parts) == 1 && parts[0] == 0x17F, "long s with dot");
}

/* ---- loading errors ------------------------------------------------------------------------- */
static char tmp_dir[] = "/tmp/loom-test-bpe-XXXXXX";

static void write_text(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* The 256 byte tokens as encoder.json lines (id = byte value), then extra. */
static char *byte_encoder(const char *extra)
{
    char *s = malloc(8192), *p = s;
    p += sprintf(p, "{\n");
    int next = 256;
    for (int c = 0; c < 256; c++) {
        bool keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        int cp = keep ? c : next++;
        uint8_t u[4];
        int n = rt_utf8_encode((uint32_t)cp, u);
        *p++ = '"';
        if (cp == '"' || cp == '\\')
            *p++ = '\\';
        memcpy(p, u, (size_t)n);
        p += n;
        p += sprintf(p, "\": %d,\n", c);
    }
    p += sprintf(p, "%s}\n", extra);
    return s;
}

static void expect_load_error(int line, const char *encoder, const char *merges, const char *want)
{
    write_text("encoder.json", encoder);
    write_text("vocab.bpe", merges);
    ir_diag d;
    ir_diag_init(&d);
    rt_bpe *b = rt_bpe_load(tmp_dir, &d);
    const char *msg = d.n_msg ? d.msg[0].msg : "(no message)";
    CHECK(!b && d.n_errors == 1 && strstr(msg, want), "line %d: expected an error with \"%s\", got %s", line, want,
          msg);
    rt_bpe_free(b);
    ir_diag_free(&d);
}

static void test_load_errors(void)
{
    CHECK(mkdtemp(tmp_dir), "mkdtemp");
    char *good = byte_encoder("\"ab\": 256,\n\"abc\": 257\n");
    /* a valid tiny vocabulary first */
    write_text("encoder.json", good);
    write_text("vocab.bpe", "#version: 0.2\na b\nab c\n");
    ir_diag d;
    ir_diag_init(&d);
    rt_bpe *b = rt_bpe_load(tmp_dir, &d);
    CHECK(b, "tiny vocabulary loads: %s", d.n_msg ? d.msg[0].msg : "");
    if (b) {
        EXPECT_IDS(b, "abcab", true, 257, 256);
        CHECK(rt_bpe_eot(b) == UINT32_MAX, "no end-of-text token");
        EXPECT_IDS(b, "<|endoftext|>", true, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>');
    }
    rt_bpe_free(b);
    ir_diag_free(&d);

    expect_load_error(__LINE__, "{\n\"a\": 1,\n\"b\" 2\n}", "", "encoder.json:3: invalid JSON");
    expect_load_error(__LINE__, "[1, 2]", "", "encoder.json:1: expected a JSON object");
    expect_load_error(__LINE__, "{\n\"a\": 1,\n\"b\": -2\n}", "", "encoder.json:3: token \"b\": id is not an integer");
    expect_load_error(__LINE__, "{\n\"a\": 1,\n\"\xe4\xb8\xad\": 2\n}", "", "encoder.json:3: token \"\xe4\xb8\xad\" (id 2) has a character outside");
    expect_load_error(__LINE__, "{\n\"a\": 1,\n\"b\": 1\n}", "", "encoder.json:3: id 1 is given to two tokens");
    expect_load_error(__LINE__, "{\n\"a\": 0\n}", "", "byte 0x00 has no token");
    /* 17 bytes that once asked for 23 GB of tables */
    expect_load_error(__LINE__, "{\"!\": 2147483647}", "",
                      "encoder.json: the largest id is 2147483647 but there are only 1 tokens");
    expect_load_error(__LINE__, good, "#version: 0.2\na b\nab\n", "vocab.bpe:3: expected a merge 'LEFT RIGHT'");
    expect_load_error(__LINE__, good, "#version: 0.2\na b\nab  c\n", "vocab.bpe:3: expected a merge");
    expect_load_error(__LINE__, good, "#version: 0.2\na b\nab d\n", "vocab.bpe:3: merge 'ab d': 'abd' is not a token");
    expect_load_error(__LINE__, good, "#version: 0.2\nab xy\n", "vocab.bpe:2: merge 'ab xy': 'xy' is not a token");
    expect_load_error(__LINE__, good, "a b\na b\n", "vocab.bpe:2: merge 'a b' appears twice");
    free(good);
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.bpe", tmp_dir);
    unlink(path);
    ir_diag_init(&d);
    b = rt_bpe_load(tmp_dir, &d);
    CHECK(!b && d.n_msg && strstr(d.msg[0].msg, "cannot read") && strstr(d.msg[0].msg, "vocab.bpe"), "missing file");
    ir_diag_free(&d);
    snprintf(path, sizeof path, "%s/encoder.json", tmp_dir);
    unlink(path);
    rmdir(tmp_dir);
}

/* ---- WordPiece ------------------------------------------------------------------------------ */
static const char *const wp_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "cafe", "naive", "hello", "world", ",", "!",
    "\xe4\xb8\xad", "\xe6\x96\x87", "a", "##a", "strasse", "stra\xc3\x9f" "e", "i", "##\xcc\x87", NULL};

static void expect_wp(int line, const rt_wp *w, const char *s, bool special, size_t max_len, const char *want)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    rt_wp_encode(w, s, strlen(s), special, max_len, &ids, &n, &cap);
    char got[512] = "", *p = got;
    for (size_t i = 0; i < n && p < got + 400; i++)
        p += sprintf(p, i ? " %s" : "%s", rt_wp_token_text(w, ids[i]));
    CHECK(strcmp(got, want) == 0, "line %d: \"%s\" gave \"%s\", expected \"%s\"", line, s, got, want);
    free(ids);
}

static void test_wordpiece(void)
{
    char path[] = "/tmp/loom-test-vocab-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; wp_vocab[i]; i++)
        fprintf(f, "%s\r\n", wp_vocab[i]);
    fclose(f);
    ir_diag d;
    ir_diag_init(&d);
    rt_wp *w = rt_wp_load(path, (rt_wp_config){.lowercase = true, .strip_accents = -1}, &d);
    CHECK(w, "vocab loads");
    if (w) {
        CHECK(rt_wp_vocab_size(w) == 22 && rt_wp_token_id(w, "[CLS]") == 2, "vocab size and ids");
        expect_wp(__LINE__, w, "Unaffable, hello WORLD!", true, 0, "[CLS] un ##aff ##able , hello world ! [SEP]");
        expect_wp(__LINE__, w, "Caf\xc3\xa9 NA\xc3\x8fVE", true, 0, "[CLS] cafe naive [SEP]");
        expect_wp(__LINE__, w, "x\xe4\xb8\xad\xe6\x96\x87", true, 0, "[CLS] [UNK] \xe4\xb8\xad \xe6\x96\x87 [SEP]");
        expect_wp(__LINE__, w, "aaa unaffablex", true, 0, "[CLS] a ##a ##a [UNK] [SEP]");
        char long_word[128];
        memset(long_word, 'a', 101);
        long_word[101] = 0;
        expect_wp(__LINE__, w, long_word, true, 0, "[CLS] [UNK] [SEP]");
        long_word[100] = 0;
        uint32_t *ids = NULL;
        size_t n = 0, cap = 0;
        rt_wp_encode(w, long_word, 100, true, 0, &ids, &n, &cap);
        CHECK(n == 102, "a 100-character word is pieces (%zu ids)", n);
        free(ids);
        expect_wp(__LINE__, w, "hello[SEP]world [MASK]", true, 0, "[CLS] hello [SEP] world [MASK] [SEP]");
        expect_wp(__LINE__, w, "hello[SEP]", false, 0, "[CLS] hello [UNK] [UNK] [UNK] [SEP]");
        expect_wp(__LINE__, w, "hello world hello world", true, 4, "[CLS] hello world [SEP]");
        expect_wp(__LINE__, w, "ctrl\x01\x7f\xef\xbf\xbdhello\xff", true, 0, "[CLS] [UNK] [SEP]");
        expect_wp(__LINE__, w, " \t\n ", true, 0, "[CLS] [SEP]");
        uint32_t dec[] = {2, 5, 6, 7, 12, 10, 3};
        char *text = rt_wp_decode(w, dec, 7, &d);
        CHECK(text && strcmp(text, "unaffable , hello") == 0, "decode: %s", text ? text : "(null)");
        free(text);
        dec[1] = 99;
        CHECK(!rt_wp_decode(w, dec, 7, &d) && d.n_msg, "decode of a bad id");
    }
    rt_wp_free(w);
    ir_diag_free(&d);
    /* cased, no accent stripping: İ lower-cases to i + U+0307 only when lowercase without stripping */
    ir_diag_init(&d);
    w = rt_wp_load(path, (rt_wp_config){.lowercase = true, .strip_accents = 0}, &d);
    if (w)
        expect_wp(__LINE__, w, "\xc4\xb0 stra\xc3\x9f" "e", true, 0, "[CLS] i ##\xcc\x87 stra\xc3\x9f" "e [SEP]");
    rt_wp_free(w);
    ir_diag_free(&d);
    /* a vocabulary without [UNK] */
    f = fopen(path, "w");
    fprintf(f, "[CLS]\n[SEP]\nhello\n");
    fclose(f);
    ir_diag_init(&d);
    w = rt_wp_load(path, (rt_wp_config){.lowercase = true, .strip_accents = -1}, &d);
    CHECK(!w && d.n_msg && strstr(d.msg[0].msg, "no [UNK] token"), "missing [UNK]: %s",
          d.n_msg ? d.msg[0].msg : "(none)");
    ir_diag_free(&d);
    unlink(path);
}

int main(void)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_bpe *b = rt_bpe_load("data/gpt2", &d);
    CHECK(b, "load data/gpt2: %s", d.n_msg ? d.msg[0].msg : "");
    ir_diag_free(&d);
    if (b) {
        test_known(b);
        test_shakespeare(b);
        test_random(b);
    }
    rt_bpe_free(b);
    test_utf8();
    test_load_errors();
    test_wordpiece();
    if (failures)
        fprintf(stderr, "test_bpe: %d failures\n", failures);
    else
        printf("test_bpe: ok\n");
    return failures != 0;
}
