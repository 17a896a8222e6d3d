/* test_safetensors.c — runtime/safetensors and runtime/init: write/read round trips of every
 * dtype, each malformed-file rule of the reader (asserting the message), the f16/bf16/f32
 * conversions (exhaustively where that is cheap) and the determinism of parameter init. */
#include "io/init.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int n_checks, n_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        n_checks++;                                                                            \
        if (!(cond)) {                                                                         \
            n_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                                      \
    } while (0)

/* ---- building files in memory ------------------------------------------------------------- */
typedef struct {
    unsigned char *p;
    size_t len;
} blob;

/* 8-byte length (header_len, or strlen(json) when header_len is 0), json, then data_len bytes. */
static blob make_raw(const char *json, size_t json_len, uint64_t header_len, size_t data_len)
{
    blob b;
    b.len = 8 + json_len + data_len;
    b.p = calloc(b.len + 1, 1);
    uint64_t n = header_len ? header_len : json_len;
    for (int i = 0; i < 8; i++)
        b.p[i] = (unsigned char)(n >> (8 * i));
    memcpy(b.p + 8, json, json_len);
    for (size_t i = 0; i < data_len; i++)
        b.p[8 + json_len + i] = (unsigned char)i;
    return b;
}

static blob make(const char *json, size_t data_len) { return make_raw(json, strlen(json), 0, data_len); }

/* Parses b expecting failure with a message containing want; frees b. */
static void expect_error_at(int line, blob b, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_st_file f;
    bool ok = rt_st_parse("w.safetensors", b.p, b.len, &f, &d);
    n_checks++;
    const char *msg = d.n_msg ? d.msg[0].msg : "(no message)";
    if (ok || d.n_errors != 1 || !strstr(msg, want) || strncmp(msg, "w.safetensors: ", 15) != 0) {
        n_failed++;
        fprintf(stderr, "%s:%d: expected one error containing \"%s\"; got %s: %s\n", __FILE__, line,
                want, ok ? "success" : "failure", msg);
    }
    if (ok)
        rt_st_close(&f);
    ir_diag_free(&d);
    free(b.p);
}
#define EXPECT_ERROR(b, want) expect_error_at(__LINE__, b, want)

static void expect_ok_at(int line, blob b, int n_tensors)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_st_file f;
    bool ok = rt_st_parse("w.safetensors", b.p, b.len, &f, &d);
    n_checks++;
    if (!ok || f.n_tensors != n_tensors) {
        n_failed++;
        fprintf(stderr, "%s:%d: expected success with %d tensors; got %s\n", __FILE__, line,
                n_tensors, d.n_msg ? d.msg[0].msg : "a different count");
    }
    if (ok)
        rt_st_close(&f);
    ir_diag_free(&d);
    free(b.p);
}
#define EXPECT_OK(b, n) expect_ok_at(__LINE__, b, n)

/* ---- malformed files ---------------------------------------------------------------------- */
static void test_malformed(void)
{
    /* sizes and lengths */
    {
        blob b = make_raw("", 0, 0, 0);
        b.len = 0;
        EXPECT_ERROR(b, "0 bytes, too short for the 8-byte header length");
    }
    EXPECT_ERROR(make_raw("", 0, 0, 0), "header is not valid JSON"); /* N = 0: empty JSON */
    {
        blob b = make_raw("", 0, 0, 5);
        b.len = 5;
        EXPECT_ERROR(b, "5 bytes, too short");
    }
    EXPECT_ERROR(make_raw("{}", 2, 100000001, 0), "header length 100000001 exceeds the limit of 100000000 bytes");
    EXPECT_ERROR(make_raw("{}", 2, 0xFFFFFFFFFFFFFFFFull, 0), "exceeds the limit");
    EXPECT_ERROR(make_raw("{\"a\":1}", 7, 1234, 85),
                 "truncated: header says 1234 bytes of JSON but the file has 92 bytes after the 8-byte length");

    /* text */
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\",", 0), "header is not valid JSON");
    EXPECT_ERROR(make("{} x", 0), "header is not valid JSON");
    EXPECT_ERROR(make("[1, 2]", 0), "header must be a JSON object");
    EXPECT_ERROR(make("{\"\xff\": 1}", 0), "header is not valid UTF-8 (at header byte 2)");
    EXPECT_ERROR(make("{\"\xc0\xaf\": 1}", 0), "not valid UTF-8");          /* overlong '/' */
    EXPECT_ERROR(make("{\"\xed\xa0\x80\": 1}", 0), "not valid UTF-8");      /* surrogate */
    EXPECT_ERROR(make("{\"\xf4\x90\x80\x80\": 1}", 0), "not valid UTF-8");  /* > U+10FFFF */
    EXPECT_ERROR(make("{\"\xe2\x82\": 1}", 0), "not valid UTF-8");          /* cut short */
    EXPECT_ERROR(make_raw("{}\0{\"x\":1}", 10, 0, 0), "NUL byte at header byte 2");
    EXPECT_OK(make("{\"\xc3\xa9t\xc3\xa9\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2), 1);
    EXPECT_OK(make("{}      ", 0), 0); /* padded with spaces, no tensors */

    /* entries */
    EXPECT_ERROR(make("{\"a\": 3}", 0), "tensor 'a': expected an object with dtype, shape and data_offsets");
    EXPECT_ERROR(make("{\"a\": {\"shape\": [], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': missing \"dtype\"");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4), "tensor 'a': missing \"shape\"");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": []}}", 4), "tensor 'a': missing \"data_offsets\"");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": 7, \"shape\": [], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': dtype must be a string");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F31\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': unknown dtype 'F31'");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"BOOL\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': unsupported dtype 'BOOL' (loom reads F64, F32, F16, BF16, I64, I32, U8 and I8)");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"I16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4), "unsupported dtype 'I16'");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 4]}}", 4), "tensor 'a': shape must be a list of non-negative integers");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': shape entry 0 is not a non-negative integer");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [1, 1.5], \"data_offsets\": [0, 4]}}", 4), "tensor 'a': shape entry 1 is not");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4), "shape entry 0 is not");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 1), "tensor 'a': shape has rank 9; loom supports at most 8");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4), "tensor 'a': data_offsets must be [begin, end]");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4), "tensor 'a': data_offsets must be");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", 4), "tensor 'a': data_offsets must be");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 1e300]}}", 4), "tensor 'a': data_offsets must be");

    /* sizes */
    EXPECT_ERROR(make("{\"h.0.attn.c_attn.weight\": {\"dtype\": \"F32\", \"shape\": [768, 2304], \"data_offsets\": [0, 100]}}", 100),
                 "w.safetensors: tensor 'h.0.attn.c_attn.weight': shape [768, 2304] (F32) needs 7077888 bytes but data_offsets give 100");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 4]}}", 4), "shape [3] (BF16) needs 6 bytes but data_offsets give 4");
    EXPECT_ERROR(make("{\"big\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 4]}}", 4),
                 "tensor 'big': shape [4294967296, 4294967296, 16] (F32) is too large: its size in bytes overflows 64 bits");
    EXPECT_ERROR(make("{\"big\": {\"dtype\": \"F64\", \"shape\": [9007199254740992, 4096], \"data_offsets\": [0, 8]}}", 8), "overflows 64 bits");
    EXPECT_OK(make("{\"empty\": {\"dtype\": \"F32\", \"shape\": [0, 1000000000000], \"data_offsets\": [0, 0]}}", 0), 1);

    /* names */
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
                      " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 2),
                 "duplicate tensor name 'a'");

    /* tiling */
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]}}", 6),
                 "tensors 'a' [0, 4) and 'b' [2, 6) overlap");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4),
                 "overlap");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [6, 10]}}", 10),
                 "hole in the data: bytes [4, 6) between tensors 'a' and 'b' belong to no tensor");
    EXPECT_ERROR(make("{\"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]}}", 6),
                 "hole in the data: bytes [0, 2) before tensor 'b' belong to no tensor");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 7),
                 "the tensors end at data byte 4 but the file has 7 bytes of data: 3 trailing bytes belong to no tensor");
    EXPECT_ERROR(make("{}", 3), "3 trailing bytes belong to no tensor");
    EXPECT_ERROR(make("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                      " \"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [4, 20]}}", 12),
                 "truncated: tensor 'w' ends at data byte 20 but the file has only 12 bytes of data");
    /* out of order in the header, tiling in the data: fine; zero-size tensors anywhere */
    EXPECT_OK(make("{\"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]},"
                   " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                   " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 6), 3);

    /* metadata */
    EXPECT_ERROR(make("{\"__metadata__\": [\"x\"]}", 0), "__metadata__ must be an object mapping strings to strings");
    EXPECT_ERROR(make("{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", 0), "__metadata__: the value of 'step' must be a string");
    {
        blob b = make("{\"__metadata__\": {\"format\": \"pt\"}, \"a\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]}}", 1);
        ir_diag d;
        ir_diag_init(&d);
        rt_st_file f;
        CHECK(rt_st_parse("m.safetensors", b.p, b.len, &f, &d));
        CHECK(f.n_tensors == 1 && f.n_meta == 1);
        CHECK(rt_st_meta_get(&f, "format") && strcmp(rt_st_meta_get(&f, "format"), "pt") == 0);
        CHECK(rt_st_find(&f, "__metadata__") == NULL);
        CHECK(rt_st_find(&f, "a") && rt_st_find(&f, "a")->shape.rank == 0);
        rt_st_close(&f);
        ir_diag_free(&d);
        free(b.p);
    }
}

/* ---- files ---------------------------------------------------------------------------------- */
static void test_open_errors(void)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_st_file f;
    CHECK(!rt_st_open("/nonexistent/w.safetensors", &f, &d));
    CHECK(d.n_errors == 1 && strstr(d.msg[0].msg, "cannot read /nonexistent/w.safetensors"));
    ir_diag_free(&d);
    ir_diag_init(&d);
    CHECK(!rt_st_open("/tmp", &f, &d));
    CHECK(d.n_errors == 1 && strstr(d.msg[0].msg, "it is a directory"));
    ir_diag_free(&d);

    char path[] = "/tmp/loom_st_emptyXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ir_diag_init(&d);
    CHECK(!rt_st_open(path, &f, &d));
    CHECK(d.n_errors == 1 && strstr(d.msg[0].msg, "0 bytes, too short"));
    ir_diag_free(&d);
    unlink(path);
}

static void test_round_trip(void)
{
    float f32[6] = {1.5f, -2.25f, 3e-38f, 1e30f, 0.0f, -0.0f};
    double f64[3] = {M_PI, -1e-300, 1e300};
    double halfs[4] = {1.0, -0.5, 65504.0, 0x1p-24};
    uint16_t f16[4], bf16[4];
    for (int i = 0; i < 4; i++) {
        f16[i] = rt_f64_to_f16(halfs[i]);
        bf16[i] = rt_f64_to_bf16(halfs[i]);
    }
    int32_t i32[4] = {0, -1, 2147483647, -2147483647 - 1};
    int64_t i64[2] = {-5, 1ll << 40};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    float scalar = 42.0f;
    rt_st_entry e[] = {
        {"w.f32", DT_F32, {2, {2, 3}}, f32},     {"b.f64", DT_F64, {1, {3}}, f64},
        {"h.f16", DT_F16, {2, {2, 2}}, f16},     {"h.bf16", DT_BF16, {1, {4}}, bf16},
        {"ids.i32", DT_I32, {1, {4}}, i32},      {"ids.i64", DT_I64, {2, {1, 2}}, i64},
        {"bytes", DT_U8, {1, {5}}, u8},          {"loss", DT_F32, {0, {0}}, &scalar},
        {"empty", DT_F32, {2, {0, 7}}, NULL},
    };
    int n = (int)(sizeof e / sizeof *e);
    e[n - 1].data = "";
    rt_st_meta meta[] = {{"format", "pt"}, {"note", "quote \" and \\ and \n"}};
    char path[] = "/tmp/loom_st_rtXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ir_diag d;
    ir_diag_init(&d);
    CHECK(rt_st_write(path, e, n, meta, 2, NULL, NULL, &d));
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0); /* renamed away */

    rt_st_file f;
    CHECK(rt_st_open(path, &f, &d));
    CHECK(ir_diag_ok(&d));
    if (!ir_diag_ok(&d)) {
        ir_diag_print(&d, stderr);
        ir_diag_free(&d);
        return;
    }
    CHECK(f.n_tensors == n);
    CHECK(rt_st_meta_get(&f, "note") && strcmp(rt_st_meta_get(&f, "note"), "quote \" and \\ and \n") == 0);
    /* header length is a multiple of 8 */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | ((const uint8_t *)f.map)[i];
    CHECK(hlen % 8 == 0);
    for (int i = 0; i < n; i++) {
        const rt_st_tensor *t = rt_st_find(&f, e[i].name);
        CHECK(t != NULL);
        if (!t)
            continue;
        CHECK(t->dtype == e[i].dtype && ir_shape_eq(&t->shape, &e[i].shape));
        size_t bytes = (size_t)ir_shape_numel(&t->shape) * (size_t)ir_dtype_size(t->dtype);
        CHECK(t->end - t->begin == bytes && memcmp(t->data, e[i].data, bytes) == 0);
    }
    /* data is in name order, so the file does not depend on the order of entries */
    for (int i = 1; i < f.n_tensors; i++)
        CHECK(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0);

    /* conversions to double */
    double out[6];
    rt_convert_to_f64(DT_F32, rt_st_find(&f, "w.f32")->data, out, 6);
    for (int i = 0; i < 6; i++)
        CHECK(out[i] == (double)f32[i]);
    rt_convert_to_f64(DT_F64, rt_st_find(&f, "b.f64")->data, out, 3);
    CHECK(out[0] == M_PI && out[1] == -1e-300 && out[2] == 1e300);
    rt_convert_to_f64(DT_F16, rt_st_find(&f, "h.f16")->data, out, 4);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == halfs[i]);
    rt_convert_to_f64(DT_BF16, rt_st_find(&f, "h.bf16")->data, out, 4);
    CHECK(out[0] == 1.0 && out[1] == -0.5 && out[2] == 65536.0 && out[3] == 0x1p-24);
    rt_convert_to_f64(DT_I32, rt_st_find(&f, "ids.i32")->data, out, 4);
    CHECK(out[1] == -1 && out[2] == 2147483647.0 && out[3] == -2147483648.0);
    rt_convert_to_f64(DT_I64, rt_st_find(&f, "ids.i64")->data, out, 2);
    CHECK(out[0] == -5 && out[1] == 0x1p40);
    rt_convert_to_f64(DT_U8, rt_st_find(&f, "bytes")->data, out, 5);
    CHECK(out[4] == 255);

    /* writing the same tensors in reverse order gives the same bytes */
    rt_st_entry rev[16];
    for (int i = 0; i < n; i++)
        rev[i] = e[n - 1 - i];
    char path2[] = "/tmp/loom_st_rt2XXXXXX";
    fd = mkstemp(path2);
    close(fd);
    CHECK(rt_st_write(path2, rev, n, meta, 2, NULL, NULL, &d));
    rt_st_file f2;
    CHECK(rt_st_open(path2, &f2, &d));
    CHECK(f2.map_len == f.map_len && memcmp(f2.map, f.map, f.map_len) == 0);
    rt_st_close(&f2);
    rt_st_close(&f);

    /* duplicate names are refused, and the target file is left alone */
    rt_st_entry dup[] = {{"a", DT_U8, {1, {1}}, u8}, {"a", DT_U8, {1, {1}}, u8}};
    CHECK(!rt_st_write(path2, dup, 2, NULL, 0, NULL, NULL, &d));
    CHECK(d.n_errors == 1 && strstr(d.msg[0].msg, "two tensors are named 'a'"));
    CHECK(rt_st_open(path2, &f2, &d) == false || (rt_st_close(&f2), true));
    unlink(path);
    unlink(path2);
    ir_diag_free(&d);
}

/* ---- conversions ------------------------------------------------------------------------ */
static void test_conversions(void)
{
    /* every finite half and bfloat16 value survives half -> double -> half */
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        double v = rt_f16_to_f64((uint16_t)h);
        if (!isnan(v) && rt_f64_to_f16(v) != h)
            bad16++;
        double w = rt_bf16_to_f64((uint16_t)h);
        if (!isnan(w) && rt_f64_to_bf16(w) != h)
            badbf++;
    }
    CHECK(bad16 == 0);
    CHECK(badbf == 0);
    /* rounding: to nearest, ties to even; overflow to inf; subnormals */
    CHECK(rt_f64_to_f16(65519.0) == 0x7BFF);            /* 65504 */
    CHECK(rt_f64_to_f16(65520.0) == 0x7C00);            /* tie at max -> even -> inf */
    CHECK(rt_f64_to_f16(-1e10) == 0xFC00);
    CHECK(rt_f64_to_f16(1.0 + 0x1p-11) == 0x3C00);      /* tie -> even (1.0) */
    CHECK(rt_f64_to_f16(1.0 + 3 * 0x1p-11) == 0x3C02);  /* tie -> even (1 + 2^-9) */
    CHECK(rt_f64_to_f16(1.0 + 0x1p-11 + 0x1p-30) == 0x3C01);
    CHECK(rt_f64_to_f16(0x1p-25) == 0x0000);            /* half the smallest subnormal: tie -> 0 */
    CHECK(rt_f64_to_f16(3 * 0x1p-25) == 0x0002);        /* 1.5 quanta -> 2 */
    CHECK(rt_f64_to_f16(0x1p-14 - 0x1p-26) == 0x0400);  /* rounds up into the normals */
    CHECK(rt_f64_to_f16(-0.0) == 0x8000);
    CHECK((rt_f64_to_f16(NAN) & 0x7C00) == 0x7C00 && (rt_f64_to_f16(NAN) & 0x3FF));
    CHECK(rt_f64_to_bf16(1.0 + 0x1p-8) == 0x3F80);
    CHECK(rt_f64_to_bf16(1.0 + 3 * 0x1p-8) == 0x3F82);
    CHECK(rt_f64_to_bf16(3.0e38) == 0x7F62);
    CHECK(rt_f64_to_bf16(3.4e38) == 0x7F80);            /* above (2 - 2^-8)·2^127 */
    CHECK(rt_f64_to_bf16(0x1p-133) == 0x0001);
    CHECK(isnan(rt_bf16_to_f64(rt_f64_to_bf16(NAN))));
    /* from double to f32 and ints */
    float f;
    double big[3] = {0x1.fffffep127, 0x1.ffffffp127, 1.0 / 3.0};
    uint8_t buf[16];
    rt_convert_from_f64(DT_F32, big, buf, 3);
    memcpy(&f, buf, 4);
    CHECK(f == 0x1.fffffep127f);
    memcpy(&f, buf + 4, 4);
    CHECK(isinf(f));
    memcpy(&f, buf + 8, 4);
    CHECK(f == 1.0f / 3.0f);
    float f4[3];
    rt_convert_to_f32(DT_F64, big, f4, 3);
    CHECK(f4[0] == 0x1.fffffep127f && isinf(f4[1]) && f4[2] == 1.0f / 3.0f);
    uint16_t h4[3] = {0x3C00, 0xC000, 0x0001};
    rt_convert_to_f32(DT_F16, h4, f4, 3);
    CHECK(f4[0] == 1.0f && f4[1] == -2.0f && f4[2] == 0x1p-24f);
    rt_convert_to_f32(DT_BF16, h4, f4, 1);
    CHECK(f4[0] == 0x1p-7f); /* bf16 0x3C00 = 2^-7 */
    /* F32 bit for bit: a signaling NaN (fuzz/corpus/checkpoint/finding-snan-param) stays one */
    const uint8_t snan[4] = {0x0f, 0x92, 0xb9, 0xff};
    uint32_t bits;
    rt_convert_to_f32(DT_F32, snan, f4, 1);
    memcpy(&bits, f4, 4);
    CHECK(bits == 0xffb9920fu);
    double ints[4] = {-2.7, 3e10, NAN, 300};
    int32_t i32[3];
    rt_convert_from_f64(DT_I32, ints, i32, 3);
    CHECK(i32[0] == -2 && i32[1] == 2147483647 && i32[2] == 0);
    uint8_t u8[4];
    rt_convert_from_f64(DT_U8, ints, u8, 4);
    CHECK(u8[0] == 0 && u8[3] == 255);
}

/* ---- init ------------------------------------------------------------------------------------ */

/* init.h's generator written from its specification, with libm's log, cos and sin: what
 * rt_init_fill's own polynomials (io/init.c) must agree with. */
static uint64_t spec_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double spec_normal(const char *name, uint64_t seed, uint64_t i)
{
    const uint64_t gamma = 0x9E3779B97F4A7C15ull;
    uint64_t h = 0xCBF29CE484222325ull;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001B3ull;
    uint64_t key = spec_mix64(h ^ spec_mix64(seed + gamma)), p = i / 2;
    double u1 = (double)(spec_mix64(key + (2 * p + 1) * gamma) >> 11) * 0x1p-53;
    double u2 = (double)(spec_mix64(key + (2 * p + 2) * gamma) >> 11) * 0x1p-53;
    double r = sqrt(-2.0 * log(1.0 - u1)), theta = 2.0 * M_PI * u2;
    return i % 2 ? r * sin(theta) : r * cos(theta);
}

/* The normal init against the specification with libm over 2^20 values: each within 4e-15 of
 * libm's relatively (measured 6.3e-16, ~3 ulp), and every one rounds to the same f32 (what params
 * store). */
static void test_init_libm(void)
{
    enum { N = 1 << 20 };
    double *a = malloc(N * sizeof *a);
    rt_init_fill("normal", 1.0, "h.3.mlp.c_fc.weight", 11, 0, N, a);
    double worst = 0;
    int f32_differ = 0;
    for (int i = 0; i < N; i++) {
        double want = spec_normal("h.3.mlp.c_fc.weight", 11, (uint64_t)i);
        worst = fmax(worst, fabs(a[i] - want) / fmax(fabs(want), 1e-300));
        f32_differ += (float)a[i] != (float)want;
    }
    printf("init normal vs libm: worst relative difference %.2e over %d values, %d differ in f32\n", worst, N,
           f32_differ);
    CHECK(worst < 4e-15 && f32_differ == 0);
    free(a);
}

static void test_init(void)
{
    enum { N = 200001 };
    double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    /* chunking does not change values */
    rt_init_fill("normal", 0.02, "h.0.attn.c_attn.weight", 7, 0, N, a);
    rt_init_fill("normal", 0.02, "h.0.attn.c_attn.weight", 7, 0, 1001, b);
    rt_init_fill("normal", 0.02, "h.0.attn.c_attn.weight", 7, 1001, 1, b + 1001);
    rt_init_fill("normal", 0.02, "h.0.attn.c_attn.weight", 7, 1002, N - 1002, b + 1002);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    /* statistics of normal(0.02) */
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++)
        s += a[i], s2 += a[i] * a[i];
    double mean = s / N, sd = sqrt(s2 / N - mean * mean);
    CHECK(fabs(mean) < 0.0002 && fabs(sd - 0.02) < 0.0002);
    /* another name or seed: other values */
    rt_init_fill("normal", 0.02, "h.1.attn.c_attn.weight", 7, 0, 16, b);
    CHECK(memcmp(a, b, 16 * sizeof *a) != 0);
    rt_init_fill("normal", 0.02, "h.0.attn.c_attn.weight", 8, 0, 16, b);
    CHECK(memcmp(a, b, 16 * sizeof *a) != 0);
    /* uniform(a) stays in [-a, a) and fills it */
    rt_init_fill("uniform", 0.5, "u", 0, 0, N, a);
    double lo = 1, hi = -1;
    s = 0;
    for (int i = 0; i < N; i++) {
        lo = fmin(lo, a[i]);
        hi = fmax(hi, a[i]);
        s += a[i];
    }
    CHECK(lo >= -0.5 && hi < 0.5 && lo < -0.499 && hi > 0.499 && fabs(s / N) < 0.005);
    rt_init_fill("const", 0.25, "c", 0, 0, 3, a);
    CHECK(a[0] == 0.25 && a[2] == 0.25);
    rt_init_fill("ones", 0.25, "o", 0, 0, 3, a);
    CHECK(a[0] == 1 && a[2] == 1);
    rt_init_fill("zeros", 0.25, "z", 0, 0, 3, a);
    CHECK(a[0] == 0 && a[2] == 0);
    CHECK(rt_init_known("normal") && !rt_init_known("xavier"));
    free(a);
    free(b);
}

int main(void)
{
    test_malformed();
    test_open_errors();
    test_round_trip();
    test_conversions();
    test_init();
    test_init_libm();
    printf("test_safetensors: %d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
