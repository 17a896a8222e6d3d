/* tokens.c — fuzzes token files and the data loader (text/tokens.c, text/data.c): what
 * `loom train --data` and `loom tokenize` read.
 *
 * Feeds: the input as a whole file: parsed as a token file (rt_tok_parse) and loaded as a
 * training corpus from the scratch directory (rt_data_load: a token file when it starts with
 * the magic, else its bytes). The batch loader then runs over the corpus with B, T, the
 * validation fraction and the seed taken from a hash of the input.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused file got an error naming it; an accepted one none;
 *  - rt_data_load agrees with rt_tok_parse on files with the magic, and gives the bytes
 *    (vocab 256) otherwise;
 *  - every token is below the vocab size; written back (rt_tok_write) and read again
 *    (rt_tok_read) the tokens and vocab size are the same;
 *  - the loader either refuses the sizes with an error or gives batches (random, both splits,
 *    and the first and last sequential ones) whose ids are tokens of the split and whose
 *    targets are the inputs shifted by one.
 */
#include "fuzz/fuzz.h"

#include "text/data.h"
#include "text/tokens.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

static void check_batch(const rt_loader *l, const rt_tokens *t, const int32_t *in, const int32_t *tg, const char *what)
{
    for (int b = 0; b < l->B; b++)
        for (int k = 0; k < l->T; k++) {
            int32_t x = in[b * l->T + k], y = tg[b * l->T + k];
            if (x < 0 || (uint32_t)x >= t->vocab_size || y < 0 || (uint32_t)y >= t->vocab_size)
                fz_fail("%s: id %d or %d outside the vocab of %u", what, x, y, t->vocab_size);
            if (k + 1 < l->T && tg[b * l->T + k] != in[b * l->T + k + 1])
                fz_fail("%s: row %d: targets are not the inputs shifted by one", what, b);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    ir_diag d;
    ir_diag_init(&d);
    rt_tokens t;
    bool ok = rt_tok_parse("fuzz.tok", data, size, &t, &d);
    fz_check_outcome(ok, &d, "fuzz.tok", "rt_tok_parse");

    char path[600];
    snprintf(path, sizeof path, "%s/fuzz.tok", fz_dir());
    fz_write(path, data, size);
    ir_diag dl;
    ir_diag_init(&dl);
    rt_tokens c;
    bool okc = rt_data_load(path, &c, &dl);
    fz_check_outcome(okc, &dl, path, "rt_data_load");
    bool magic = size >= 8 && memcmp(data, RT_TOK_MAGIC, 8) == 0;
    if (magic && (okc != ok || (ok && (c.n != t.n || c.vocab_size != t.vocab_size ||
                                       (t.n && memcmp(c.ids, t.ids, t.n * sizeof *t.ids) != 0)))))
        fz_fail("rt_data_load and rt_tok_parse disagree on a token file");
    if (!magic && (okc != (size > 0) || (okc && (c.n != size || c.vocab_size != RT_TOK_BYTE_VOCAB))))
        fz_fail("rt_data_load did not give the bytes of a file without the magic");
    if (okc)
        for (size_t i = 0; i < c.n; i++)
            if (c.ids[i] >= c.vocab_size)
                fz_fail("token %zu is %u, vocab size %u", i, c.ids[i], c.vocab_size);

    if (ok) { /* written back, read again */
        char out[600];
        snprintf(out, sizeof out, "%s/written.tok", fz_dir());
        ir_diag dw;
        ir_diag_init(&dw);
        if (!rt_tok_write(out, t.ids, t.n, t.vocab_size, &dw)) {
            fz_print_diag(&dw);
            fz_fail("rt_tok_write refused tokens rt_tok_parse accepted");
        }
        rt_tokens back;
        if (!rt_tok_read(out, &back, &dw)) {
            fz_print_diag(&dw);
            fz_fail("rt_tok_write wrote a file rt_tok_read refuses");
        }
        if (back.n != t.n || back.vocab_size != t.vocab_size ||
            (t.n && memcmp(back.ids, t.ids, t.n * sizeof *t.ids) != 0))
            fz_fail("the token file written back reads differently");
        rt_tok_free(&back);
        ir_diag_free(&dw);
    }

    if (okc) { /* the loader over the corpus */
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < size; i++)
            h = (h ^ data[i]) * 0x100000001b3ull;
        static const double fracs[] = {0, 0.1, 0.5, 0.9};
        int B = 1 + (int)(h % 4), T = 1 + (int)((h >> 8) % 64);
        rt_loader l;
        ir_diag dd;
        ir_diag_init(&dd);
        bool okl = rt_loader_init(&l, &c, fracs[(h >> 16) % 4], B, T, h >> 20, &dd);
        fz_check_outcome(okl, &dd, "loader", "rt_loader_init");
        if (okl) {
            int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
            if (!in || !tg)
                abort();
            for (uint64_t i = 0; i < 3; i++) {
                if (!rt_loader_random(&l, RT_SPLIT_TRAIN, i * 1000003u, in, tg))
                    fz_fail("no random train batch");
                check_batch(&l, &c, in, tg, "random train batch");
                if (rt_loader_random(&l, RT_SPLIT_VAL, i, in, tg) != (l.n_val > 0))
                    fz_fail("a random validation batch exists iff the split is not empty");
                if (l.n_val > 0)
                    check_batch(&l, &c, in, tg, "random validation batch");
            }
            for (int s = 0; s < 2; s++) {
                uint64_t n = rt_loader_seq_count(&l, (rt_split)s);
                for (uint64_t i = 0; i < n && i < 2; i++) {
                    if (!rt_loader_seq(&l, (rt_split)s, i ? n - 1 : 0, in, tg))
                        fz_fail("sequential batch missing");
                    check_batch(&l, &c, in, tg, "sequential batch");
                }
                if (rt_loader_seq(&l, (rt_split)s, n, in, tg))
                    fz_fail("a sequential batch past the last one");
            }
            free(in);
            free(tg);
        }
        ir_diag_free(&dd);
    }
    rt_tok_free(&t);
    rt_tok_free(&c);
    ir_diag_free(&d);
    ir_diag_free(&dl);
    fz_dir_clear();
    return 0;
}
