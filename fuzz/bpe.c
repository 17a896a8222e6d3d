/* bpe.c — fuzzes the GPT-2 byte-level BPE tokenizer (text/bpe.c): vocabulary loading and the
 * encode/decode round trip, as `loom tokenize --vocab DIR` and `loom generate` use them.
 *
 * Feeds, by the input's form:
 *  - without FZ_SEP (fuzz.h): the input is text, encoded with GPT-2's own vocabulary
 *    (data/gpt2, loaded once), with and without the special token;
 *  - with FZ_SEP: parts encoder.json, vocab.bpe and a text, the first two written to the
 *    scratch directory and loaded (rt_bpe_load), the text encoded with the result.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused vocabulary got an error naming its file; an accepted one none;
 *  - every id of an encoding is a token (rt_bpe_token_bytes) below the vocab size, and
 *    decode(encode(x)) == x byte for byte (bpe.h: every byte string encodes and round-trips);
 *    "<|endoftext|>" becomes the eot id only with allow_special;
 *  - decoding an id past the vocabulary is an error, not a crash.
 */
#include "fuzz/fuzz.h"

#include "text/bpe.h"

static rt_bpe *gpt2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    ir_diag d;
    ir_diag_init(&d);
    gpt2 = rt_bpe_load(LOOM_SOURCE_DIR "/data/gpt2", &d);
    if (!gpt2) {
        fz_print_diag(&d);
        fz_fail("cannot load the GPT-2 vocabulary of data/gpt2");
    }
    ir_diag_free(&d);
    return 0;
}

static void round_trip(const rt_bpe *b, const char *text, size_t len)
{
    for (int special = 0; special < 2; special++) {
        uint32_t *ids = NULL;
        size_t n = 0, cap = 0;
        rt_bpe_encode(b, text, len, special, &ids, &n, &cap);
        if (n > len)
            fz_fail("%zu ids for %zu bytes", n, len);
        for (size_t i = 0; i < n; i++) {
            size_t tl;
            if (ids[i] >= rt_bpe_vocab_size(b) || !rt_bpe_token_bytes(b, ids[i], &tl))
                fz_fail("encode gave id %u, not a token", ids[i]);
            if (!special && ids[i] == rt_bpe_eot(b))
                fz_fail("the eot id without allow_special");
        }
        ir_diag d;
        ir_diag_init(&d);
        size_t out_len;
        char *out = rt_bpe_decode(b, ids, n, &out_len, &d);
        if (!out) {
            fz_print_diag(&d);
            fz_fail("decode refused the ids encode gave");
        }
        if (out_len != len || memcmp(out, text, len) != 0)
            fz_fail("decode(encode(x)) != x (allow_special %d): %zu bytes back for %zu", special, out_len, len);
        free(out);
        uint32_t bad[2] = {ids && n ? ids[0] : 0, UINT32_MAX};
        out = rt_bpe_decode(b, bad, 2, &out_len, &d);
        if (out || d.n_errors != 1)
            fz_fail("decoding an id past the vocabulary did not fail with one error");
        ir_diag_free(&d);
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    fz_parts ps = fz_split(data, size);
    if (ps.count == 1) {
        round_trip(gpt2, (const char *)data, size);
        return 0;
    }
    char enc[600], merges[600];
    snprintf(enc, sizeof enc, "%s/encoder.json", fz_dir());
    snprintf(merges, sizeof merges, "%s/vocab.bpe", fz_dir());
    size_t n;
    char *text = fz_part(&ps, 0, &n);
    fz_write(enc, text, n);
    free(text);
    text = fz_part(&ps, 1, &n);
    fz_write(merges, text, n);
    free(text);
    ir_diag d;
    ir_diag_init(&d);
    rt_bpe *b = rt_bpe_load(fz_dir(), &d);
    fz_check_outcome(b != NULL, &d, fz_dir(), "rt_bpe_load");
    if (b) {
        text = fz_part(&ps, 2, &n);
        round_trip(b, text, n);
        free(text);
        rt_bpe_free(b);
    }
    ir_diag_free(&d);
    fz_dir_clear();
    return 0;
}
