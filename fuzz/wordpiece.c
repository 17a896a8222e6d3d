/* wordpiece.c — fuzzes BERT's WordPiece tokenizer (text/wordpiece.c): vocabulary loading and
 * encoding/decoding, as `loom embed --vocab vocab.txt` uses them.
 *
 * Feeds: an input of parts (fuzz.h's FZ_SEP): vocab.txt (written to the scratch directory and
 * loaded with rt_wp_load) and a text; the settings (lowercase, strip_accents, max_chars,
 * allow_special, max_len) come from a hash of the input.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused vocabulary got an error naming the file; an accepted one none, and has [UNK],
 *    [CLS] and [SEP] with rt_wp_token_text and rt_wp_token_id inverse on them;
 *  - an encoding starts with [CLS] and ends with [SEP], holds ids below the vocab size only,
 *    and at most max_len of them when max_len is set; it decodes without error;
 *  - re-encoding the decoded text (without specials) gives the same ids when the first
 *    encoding had no [UNK] and no special tokens (decode joins the word pieces the encoder
 *    split, so the words come back: encode ∘ decode ∘ encode = encode);
 *  - decoding an id past the vocabulary is an error, not a crash.
 */
#include "fuzz/fuzz.h"

#include "text/wordpiece.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    fz_parts ps = fz_split(data, size);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    rt_wp_config cfg = {.lowercase = h & 1, .strip_accents = (int)((h >> 1) % 3) - 1,
                        .max_chars = (h >> 3) & 1 ? 0 : (int)((h >> 4) % 12)};
    bool special = (h >> 8) & 1;
    size_t max_len = (h >> 9) & 1 ? 0 : 2 + (size_t)((h >> 10) % 16);

    char path[600];
    snprintf(path, sizeof path, "%s/vocab.txt", fz_dir());
    size_t n;
    char *vocab = fz_part(&ps, 0, &n);
    fz_write(path, vocab, n);
    free(vocab);
    ir_diag d;
    ir_diag_init(&d);
    rt_wp *w = rt_wp_load(path, cfg, &d);
    fz_check_outcome(w != NULL, &d, path, "rt_wp_load");
    if (w) {
        uint32_t V = rt_wp_vocab_size(w);
        static const char *const need[] = {"[UNK]", "[CLS]", "[SEP]"};
        uint32_t id[3];
        for (int k = 0; k < 3; k++) {
            id[k] = rt_wp_token_id(w, need[k]);
            if (id[k] >= V || strcmp(rt_wp_token_text(w, id[k]), need[k]) != 0)
                fz_fail("%s is not a token of the vocabulary loaded", need[k]);
        }
        if (rt_wp_token_text(w, V))
            fz_fail("a text for id %u, past the vocabulary", V);
        size_t len;
        char *text = fz_part(&ps, 1, &len);
        uint32_t *ids = NULL;
        size_t n_ids = 0, cap = 0;
        rt_wp_encode(w, text, len, special, max_len, &ids, &n_ids, &cap);
        if (n_ids < 2 || ids[0] != id[1] || ids[n_ids - 1] != id[2])
            fz_fail("the encoding does not start with [CLS] and end with [SEP]");
        if (max_len && n_ids > max_len)
            fz_fail("%zu ids, more than max_len %zu", n_ids, max_len);
        bool plain = true;
        for (size_t i = 0; i < n_ids; i++) {
            if (ids[i] >= V)
                fz_fail("id %u at %zu is not below the vocab size %u", ids[i], i, V);
            const char *t = rt_wp_token_text(w, ids[i]);
            if ((i > 0 && i + 1 < n_ids && (ids[i] == id[1] || ids[i] == id[2])) || ids[i] == id[0] ||
                (t[0] == '[' && (strcmp(t, "[PAD]") == 0 || strcmp(t, "[MASK]") == 0)))
                plain = false;
        }
        char *back = rt_wp_decode(w, ids, n_ids, &d);
        if (!back) {
            fz_print_diag(&d);
            fz_fail("decode refused the ids encode gave");
        }
        if (plain) {
            uint32_t *again = NULL;
            size_t n_again = 0, cap_again = 0;
            rt_wp_encode(w, back, strlen(back), false, max_len, &again, &n_again, &cap_again);
            if (n_again != n_ids || memcmp(again, ids, n_ids * sizeof *ids) != 0) {
                fprintf(stderr, "decoded: '%s'\nids:", back);
                for (size_t i = 0; i < n_ids; i++)
                    fprintf(stderr, " %u", ids[i]);
                fprintf(stderr, "\nagain:");
                for (size_t i = 0; i < n_again; i++)
                    fprintf(stderr, " %u", again[i]);
                fz_fail("\nencode(decode(encode(x))) != encode(x)");
            }
            free(again);
        }
        free(back);
        uint32_t bad[2] = {id[0], UINT32_MAX};
        back = rt_wp_decode(w, bad, 2, &d);
        if (back || d.n_errors != 1)
            fz_fail("decoding an id past the vocabulary did not fail with one error");
        free(ids);
        free(text);
        rt_wp_free(w);
    }
    ir_diag_free(&d);
    fz_dir_clear();
    return 0;
}
