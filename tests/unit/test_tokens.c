/* test_tokens.c — runtime/tokens: token-file round trips (uint16, uint32, empty), every rule of
 * the reader (asserting the message), the writer's checks and atomicity, the byte tokenizer,
 * SplitMix64's known outputs, and the batch loader: targets are the next tokens, splits do not
 * mix, the same (seed, batch index) gives the same batch in any order (resume), sequential
 * batches tile the split.
 */
#include "test_check.h"
#include "text/tokens.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/loom-test-tokens-XXXXXX";

static char *path_in(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void test_round_trip(void)
{
    enum { N = 70000 };
    uint32_t *ids = malloc(N * sizeof *ids);
    for (uint32_t i = 0; i < N; i++)
        ids[i] = (i * 2654435761u) % 50257;
    ir_diag d;
    ir_diag_init(&d);
    const uint32_t vocabs[] = {50257, 65536, 65537, 1u << 31};
    const long sizes[] = {32 + 2 * N, 32 + 2 * N, 32 + 4 * N, 32 + 4 * N};
    for (int k = 0; k < 4; k++) {
        char *p = path_in("a.tok");
        CHECK(rt_tok_write(p, ids, N, vocabs[k], &d), "write vocab %u", vocabs[k]);
        FILE *f = fopen(p, "rb");
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        CHECK(size == sizes[k], "vocab %u: file of %ld bytes, expected %ld", vocabs[k], size, sizes[k]);
        rt_tokens t;
        CHECK(rt_tok_read(p, &t, &d), "read back");
        CHECK(t.n == N && t.vocab_size == vocabs[k] && memcmp(t.ids, ids, N * sizeof *ids) == 0, "same tokens");
        rt_tok_free(&t);
        CHECK(access(path_in("a.tok.tmp"), F_OK) != 0, "no .tmp left behind");
    }
    /* empty */
    CHECK(rt_tok_write(path_in("e.tok"), NULL, 0, 256, &d), "write empty");
    rt_tokens t;
    CHECK(rt_tok_read(path_in("e.tok"), &t, &d) && t.n == 0 && t.vocab_size == 256, "read empty");
    rt_tok_free(&t);
    /* the header, byte for byte */
    uint32_t three[] = {1, 258, 65535};
    CHECK(rt_tok_write(path_in("h.tok"), three, 3, 65536, &d), "write three");
    unsigned char want[] = {'L', 'O', 'O', 'M', 'T', 'O', 'K', '1', 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                            0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0xFF, 0xFF};
    unsigned char got[64];
    FILE *f = fopen(path_in("h.tok"), "rb");
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    CHECK(n == sizeof want && memcmp(got, want, n) == 0, "header layout (%zu bytes)", n);
    CHECK(ir_diag_ok(&d), "no errors so far");
    ir_diag_free(&d);

    /* writer errors: a token out of range; an unwritable place (path untouched, no .tmp) */
    ir_diag_init(&d);
    three[1] = 65536;
    CHECK(!rt_tok_write(path_in("h.tok"), three, 3, 65536, &d) && d.n_msg &&
              strstr(d.msg[0].msg, "token 1 is 65536, not below the vocab size 65536"),
          "writer rejects a token >= vocab");
    CHECK(!rt_tok_write(path_in("no/such/dir.tok"), three, 1, 65536, &d) && d.n_msg == 2 &&
              strstr(d.msg[1].msg, "cannot create"),
          "unwritable path: %s", d.n_msg > 1 ? d.msg[1].msg : "");
    CHECK(!rt_tok_write(path_in("z.tok"), three, 1, 0, &d), "vocab 0");
    ir_diag_free(&d);
    unlink(path_in("a.tok"));
    unlink(path_in("e.tok"));
    unlink(path_in("h.tok"));
    free(ids);
}

/* A file in memory: header fields, then body_len body bytes (each 1). */
static unsigned char *make(const char *magic, uint32_t version, uint32_t dt, uint32_t vocab, uint32_t reserved,
                           uint64_t count, size_t body_len, size_t *len)
{
    unsigned char *b = calloc(32 + body_len + 1, 1);
    memcpy(b, magic, 8);
    uint32_t f32[] = {version, dt, vocab, reserved};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++)
            b[8 + 4 * k + i] = (unsigned char)(f32[k] >> 8 * i);
    for (int i = 0; i < 8; i++)
        b[24 + i] = (unsigned char)(count >> 8 * i);
    memset(b + 32, 1, body_len);
    *len = 32 + body_len;
    return b;
}

static void expect_error(int line, unsigned char *buf, size_t len, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_tokens t;
    bool ok = rt_tok_parse("x.tok", buf, len, &t, &d);
    const char *msg = d.n_msg ? d.msg[0].msg : "(no message)";
    CHECK(!ok && d.n_errors == 1 && strncmp(msg, "x.tok: ", 7) == 0 && strstr(msg, want) && !t.ids,
          "line %d: expected \"%s\", got %s", line, want, msg);
    ir_diag_free(&d);
    free(buf);
}

/* make(...) then expect_error, in that order (a function call's arguments have none). */
#define EXPECT_ERROR(want, ...)                                                                    \
    do {                                                                                           \
        size_t len_;                                                                               \
        unsigned char *b_ = make(__VA_ARGS__, &len_);                                              \
        expect_error(__LINE__, b_, len_, want);                                                    \
    } while (0)

static void test_malformed(void)
{
    size_t len;
    unsigned char *b = make("LOOMTOK1", 1, 2, 300, 0, 2, 4, &len);
    ir_diag d;
    ir_diag_init(&d);
    rt_tokens t;
    CHECK(rt_tok_parse("x.tok", b, len, &t, &d) && t.n == 2 && t.ids[0] == 257 && t.ids[1] == 257, "valid");
    rt_tok_free(&t);
    ir_diag_free(&d);
    expect_error(__LINE__, b, 31, "truncated header: 31 bytes");
    b = make("LOOMTOK1", 1, 2, 300, 0, 0, 0, &len);
    expect_error(__LINE__, b, 0, "truncated header: 0 bytes");
    EXPECT_ERROR("bad magic", "LOOMTOK2", 1, 2, 300, 0, 2, 4);
    EXPECT_ERROR("bad magic", "GPT2TOKS", 1, 2, 300, 0, 2, 4);
    EXPECT_ERROR("version 2 is not supported", "LOOMTOK1", 2, 2, 300, 0, 2, 4);
    EXPECT_ERROR("dtype 3", "LOOMTOK1", 1, 3, 300, 0, 2, 6);
    EXPECT_ERROR("dtype 8", "LOOMTOK1", 1, 8, 300, 0, 2, 16);
    EXPECT_ERROR("vocab size 0", "LOOMTOK1", 1, 2, 0, 0, 2, 4);
    EXPECT_ERROR("vocab size 70000 does not fit dtype uint16", "LOOMTOK1", 1, 2, 70000, 0, 2, 4);
    EXPECT_ERROR("reserved header field is 7", "LOOMTOK1", 1, 2, 300, 7, 2, 4);
    EXPECT_ERROR("header says 3 tokens (6 bytes) but 4 bytes follow the header (truncated file)", "LOOMTOK1", 1, 2,
                 300, 0, 3, 4);
    EXPECT_ERROR("(truncated file)", "LOOMTOK1", 1, 4, 300, 0, 2, 7);
    EXPECT_ERROR("header says 1 tokens (2 bytes) but 4 bytes follow the header", "LOOMTOK1", 1, 2, 300, 0, 1, 4);
    EXPECT_ERROR("(truncated file)", "LOOMTOK1", 1, 2, 300, 0, UINT64_MAX / 2, 4);
    /* a count whose size in bytes overflows is said so, not wrapped ("(0 bytes)") */
    EXPECT_ERROR("header says 9223372036854775808 tokens (more than 2^64 bytes)", "LOOMTOK1", 1, 2, 300, 0,
                 (uint64_t)1 << 63, 4);
    EXPECT_ERROR("token 0 is 257, not below the vocab size 257", "LOOMTOK1", 1, 2, 257, 0, 2, 4);
    b = make("LOOMTOK1", 1, 4, 1000, 0, 3, 12, &len);
    memset(b + 32, 0, 8);
    b[32 + 8] = 0xE8, b[32 + 9] = 0x03, b[32 + 10] = 0, b[32 + 11] = 0; /* 1000 */
    expect_error(__LINE__, b, len, "token 2 is 1000, not below the vocab size 1000");

    ir_diag_init(&d);
    CHECK(!rt_tok_read(path_in("missing.tok"), &t, &d) && d.n_msg && strstr(d.msg[0].msg, "cannot read"),
          "missing file");
    ir_diag_free(&d);
}

static void test_bytes_and_rng(void)
{
    uint32_t ids[4];
    rt_tok_bytes_encode("a\0\xff", 3, ids);
    CHECK(ids[0] == 'a' && ids[1] == 0 && ids[2] == 255, "byte tokens");
    /* SplitMix64 seeded with 0: its first outputs (Vigna's reference) */
    CHECK(rt_splitmix64_at(0, 0) == 0xE220A8397B1DCDAFull, "splitmix64(0)[0] = %llx",
          (unsigned long long)rt_splitmix64_at(0, 0));
    CHECK(rt_splitmix64_at(0, 1) == 0x6E789E6AA1B965F4ull, "splitmix64(0)[1]");
    CHECK(rt_splitmix64_at(42, 7) == 0xCCF635EE9E9E2FA4ull, "splitmix64(42)[7]");
}

static void test_loader(void)
{
    enum { N = 10000, B = 4, T = 16 };
    rt_tokens t = {malloc(N * sizeof(uint32_t)), N, N};
    for (uint32_t i = 0; i < N; i++)
        t.ids[i] = i; /* token = its position: offsets are visible */
    ir_diag d;
    ir_diag_init(&d);
    rt_loader a, b;
    CHECK(rt_loader_init(&a, &t, RT_LOADER_VAL_FRAC, B, T, 7, &d), "init");
    CHECK(a.n_train == 9000 && a.n_val == 1000, "last 10%% is validation: %zu/%zu", a.n_train, a.n_val);
    int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    int32_t saved_in[20][B * T];

    for (uint64_t k = 0; k < 20; k++) {
        CHECK(rt_loader_random(&a, RT_SPLIT_TRAIN, k, in, tg), "batch");
        memcpy(saved_in[k], in, sizeof in);
        for (int r = 0; r < B; r++)
            for (int j = 0; j < T; j++) {
                int32_t x = in[r * T + j];
                CHECK(tg[r * T + j] == x + 1, "target is the next token");
                CHECK(j == 0 || x == in[r * T + j - 1] + 1, "a row is contiguous");
                CHECK(x >= 0 && x + 1 < 9000, "train batches stay in the train split (%d)", x);
            }
    }
    CHECK(memcmp(saved_in[0], saved_in[1], sizeof in) != 0, "batches differ");
    /* resume: a fresh loader with the same seed draws batch 13 first and gets the same batch */
    CHECK(rt_loader_init(&b, &t, RT_LOADER_VAL_FRAC, B, T, 7, &d), "init b");
    for (uint64_t k = 13; k < 20; k++) {
        rt_loader_random(&b, RT_SPLIT_TRAIN, k, in2, tg2);
        CHECK(memcmp(in2, saved_in[k], sizeof in2) == 0, "batch %llu again after resume", (unsigned long long)k);
    }
    rt_loader_random(&b, RT_SPLIT_TRAIN, 2, in2, tg2);
    CHECK(memcmp(in2, saved_in[2], sizeof in2) == 0, "any order");
    CHECK(rt_loader_init(&b, &t, RT_LOADER_VAL_FRAC, B, T, 8, &d), "init seed 8");
    rt_loader_random(&b, RT_SPLIT_TRAIN, 0, in2, tg2);
    CHECK(memcmp(in2, saved_in[0], sizeof in2) != 0, "another seed, another batch");
    /* the offset formula (tokens.h) for row 1 of batch 3 */
    uint64_t r = rt_splitmix64_at(7, 3 * B + 1);
    uint64_t off = (uint64_t)(((unsigned __int128)r * (9000 - T)) >> 64);
    CHECK(saved_in[3][T] == (int32_t)off, "row offset %d, expected %llu", saved_in[3][T], (unsigned long long)off);
    /* offsets cover the whole train range over many batches */
    int32_t lo = N, hi = -1;
    for (uint64_t k = 0; k < 2000; k++) {
        rt_loader_random(&a, RT_SPLIT_TRAIN, k, in, tg);
        for (int r2 = 0; r2 < B; r2++) {
            lo = in[r2 * T] < lo ? in[r2 * T] : lo;
            hi = in[r2 * T] > hi ? in[r2 * T] : hi;
        }
    }
    CHECK(lo < 20 && hi > 9000 - T - 20 && hi <= 9000 - T - 1, "offsets span [0, n - T - 1]: %d..%d", lo, hi);
    /* validation: random and sequential stay in [9000, 10000) */
    CHECK(rt_loader_random(&a, RT_SPLIT_VAL, 0, in, tg), "val batch");
    for (int i = 0; i < B * T; i++)
        CHECK(in[i] >= 9000 && tg[i] < N, "val batch in the val split");
    uint64_t nseq = rt_loader_seq_count(&a, RT_SPLIT_VAL);
    CHECK(nseq == 999 / (B * T), "sequential batches: %llu", (unsigned long long)nseq);
    for (uint64_t k = 0; k < nseq; k++) {
        CHECK(rt_loader_seq(&a, RT_SPLIT_VAL, k, in, tg), "seq batch");
        for (int i = 0; i < B * T; i++)
            CHECK(in[i] == 9000 + (int32_t)(k * B * T) + i && tg[i] == in[i] + 1, "sequential contents");
    }
    CHECK(!rt_loader_seq(&a, RT_SPLIT_VAL, nseq, in, tg), "past the last sequential batch");
    CHECK(rt_loader_seq_count(&a, RT_SPLIT_TRAIN) == 8999 / (B * T), "train sequential count");
    /* no validation split */
    CHECK(rt_loader_init(&b, &t, 0, B, T, 1, &d) && b.n_val == 0 && !rt_loader_random(&b, RT_SPLIT_VAL, 0, in, tg) &&
              rt_loader_seq_count(&b, RT_SPLIT_VAL) == 0,
          "val_frac 0");
    CHECK(ir_diag_ok(&d), "no errors so far");
    /* errors */
    t.n = 100;
    CHECK(!rt_loader_init(&b, &t, 0.1, B, T, 1, &d) && d.n_msg && strstr(d.msg[0].msg, "10 validation"),
          "a validation split shorter than T + 1: %s", d.n_msg ? d.msg[0].msg : "");
    CHECK(!rt_loader_init(&b, &t, 1.0, B, T, 1, &d), "val_frac 1");
    CHECK(!rt_loader_init(&b, &t, 0.1, 0, T, 1, &d), "B 0");
    t.n = 16;
    CHECK(!rt_loader_init(&b, &t, 0, B, T, 1, &d), "train shorter than T + 1");
    t.n = 17;
    CHECK(rt_loader_init(&b, &t, 0, B, T, 1, &d) && rt_loader_random(&b, RT_SPLIT_TRAIN, 5, in, tg) && in[0] == 0,
          "exactly T + 1 tokens: one window");
    ir_diag_free(&d);
    free(t.ids);
}

int main(void)
{
    CHECK(mkdtemp(dir), "mkdtemp");
    test_round_trip();
    test_malformed();
    test_bytes_and_rng();
    test_loader();
    rmdir(dir);
    if (failures)
        fprintf(stderr, "test_tokens: %d failures\n", failures);
    else
        printf("test_tokens: ok\n");
    return failures != 0;
}
