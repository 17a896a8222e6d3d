/* cmd_embed.c — `loom embed`: sentence embeddings from a BERT encoder (sentence-transformers'
 * mean pooling + normalization, as all-MiniLM-L6-v2 uses them).
 *
 *   loom embed models/bert.loom -D d_model=384 -D n_layer=6 -D n_head=12 -D d_ff=1536 \
 *       --weights model.safetensors --vocab vocab.txt "sentence" ...
 *
 * Each sentence is WordPiece-tokenized (text/wordpiece.h; --vocab is vocab.txt or its
 * directory; lower-casing and accent stripping as tokenizer_config.json next to it says:
 * do_lower_case, default true; strip_accents, default as lower-casing), cut to max_pos ids
 * (512, or -D max_pos; at most max_seq_length of sentence_bert_config.json there, 256 for
 * all-MiniLM-L6-v2, as sentence-transformers truncates), and the batch is padded with [PAD] to the longest sentence, with
 * attention_mask 1 on real tokens. The model is built with batch = number of sentences and
 * seq = that length, runs once on the CPU path, and each sentence's embedding is the mean of
 * last_hidden_state over its real tokens ([CLS] and [SEP] included), divided by its L2 norm
 * (at least 1e-12). Output: one line per sentence, the values separated by spaces (%.8g).
 * --stats prints tokenization and forward times to stderr.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime/clock.h"
#include "cli/cli.h"
#include "io/json_file.h"
#include "engine/program.h"
#include "engine/weights.h"
#include "text/wordpiece.h"

/* --vocab as vocab.txt's path and its directory (both malloc'd). */
static void vocab_paths(const char *vocab, char **file, char **dir)
{
    struct stat st;
    size_t n = strlen(vocab) + 16;
    *file = malloc(n);
    *dir = malloc(n);
    if (!*file || !*dir)
        ir_unreachable("out of memory");
    if (stat(vocab, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(*file, n, "%s/vocab.txt", vocab);
        snprintf(*dir, n, "%s", vocab);
        return;
    }
    snprintf(*file, n, "%s", vocab);
    snprintf(*dir, n, "%s", vocab);
    char *slash = strrchr(*dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(*dir, n, ".");
}

static ir_graph *build(const eng_opts *o, int file, int64_t batch, int64_t seq, ir_diag *d)
{
    fe_define defs[ENG_MAX_DEFINES + 2];
    int n = 0;
    for (int i = 0; i < o->n_defines; i++)
        if (strcmp(o->defines[i].name, "seq") != 0 && strcmp(o->defines[i].name, "batch") != 0)
            defs[n++] = o->defines[i];
    char bt[32], st[32];
    snprintf(bt, sizeof bt, "%lld", (long long)batch);
    snprintf(st, sizeof st, "%lld", (long long)seq);
    defs[n++] = (fe_define){"batch", bt};
    defs[n++] = (fe_define){"seq", st};
    return fe_build(d, file, defs, n);
}

/* The longest input: the model's positions (512, or -D max_pos), and no more than
 * sentence-transformers' max_seq_length (DIR/sentence_bert_config.json) when that is given. */
static int64_t max_positions(const eng_opts *o, const char *dir)
{
    int64_t m = 512;
    for (int i = 0; i < o->n_defines; i++)
        if (strcmp(o->defines[i].name, "max_pos") == 0 && atoll(o->defines[i].value) >= 2)
            m = atoll(o->defines[i].value);
    cJSON *j = rt_json_read(dir, "sentence_bert_config.json");
    const cJSON *msl = cJSON_GetObjectItemCaseSensitive(j, "max_seq_length");
    if (cJSON_IsNumber(msl) && msl->valuedouble >= 2 && msl->valuedouble < (double)m)
        m = (int64_t)msl->valuedouble;
    cJSON_Delete(j);
    return m;
}

int cmd_embed(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (!o->file)
        ir_diag_error(&d, -1, 0, 0, "embed: no model file given");
    else if (!o->weights)
        ir_diag_error(&d, -1, 0, 0, "embed: --weights W.safetensors is required");
    else if (!o->vocab)
        ir_diag_error(&d, -1, 0, 0, "embed: --vocab vocab.txt (BERT WordPiece) is required");
    else if (o->n_extra == 0)
        ir_diag_error(&d, -1, 0, 0, "embed: no sentences given (pass them after the model file)");
    else if (o->target && strcmp(o->target, "cpu") != 0)
        ir_diag_error(&d, -1, 0, 0, "embed: --target %s is not supported (cpu only)", o->target);
    if (!ir_diag_ok(&d))
        return cli_finish(&d);
    double t0 = rt_now_ms();
    char *vfile, *vdir;
    vocab_paths(o->vocab, &vfile, &vdir);
    rt_wp *wp = rt_wp_load(vfile, rt_wp_config_read(vdir), &d);
    size_t max_len = (size_t)max_positions(o, vdir);
    free(vfile);
    free(vdir);
    if (!wp)
        return cli_finish(&d);
    int B = o->n_extra;
    uint32_t **ids = calloc((size_t)B, sizeof *ids);
    size_t *len = calloc((size_t)B, sizeof *len), T = 0;
    if (!ids || !len)
        ir_unreachable("out of memory");
    for (int b = 0; b < B; b++) {
        size_t cap = 0;
        rt_wp_encode(wp, o->extra[b], strlen(o->extra[b]), true, max_len, &ids[b], &len[b], &cap);
        T = len[b] > T ? len[b] : T;
    }
    uint32_t pad = rt_wp_token_id(wp, "[PAD]");
    int32_t *input_ids = calloc((size_t)B * T, sizeof *input_ids), *mask = calloc((size_t)B * T, sizeof *mask);
    if (!input_ids || !mask)
        ir_unreachable("out of memory");
    for (int b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            input_ids[(size_t)b * T + t] = t < len[b] ? (int32_t)ids[b][t] : pad == UINT32_MAX ? 0 : (int32_t)pad;
            mask[(size_t)b * T + t] = t < len[b];
        }
    double t1 = rt_now_ms();
    int file = ir_diag_load_file(&d, o->file);
    ir_graph *g = file >= 0 ? build(o, file, B, (int64_t)T, &d) : NULL;
    rt_pool *pool = g ? rt_pool_new(0) : NULL;
    program *p = g && pool ? program_cpu_new(g, NULL, pool, &d) : NULL;
    ir_graph_free(g);
    const ir_node *out = p ? program_find(p, OP_output, "last_hidden_state") : NULL;
    if (p && (!out || out->in[0]->shape.rank != 3 || out->in[0]->dtype != DT_F32))
        ir_diag_error(&d, -1, 0, 0, "embed: the model has no f32 output 'last_hidden_state' [batch, seq, d_model]");
    eng_weights *w = ir_diag_ok(&d) ? eng_weights_open(o->weights, &d) : NULL;
    bool ok = w && eng_weights_bind(w, p, &d) && program_bind(p, "input_ids", input_ids, &d) &&
              program_bind(p, "attention_mask", mask, &d);
    double t2 = rt_now_ms();
    ok = ok && program_run(p, &d);
    double t3 = rt_now_ms();
    if (ok) {
        int64_t C = out->in[0]->shape.dim[2];
        const float *h = program_output(p, "last_hidden_state");
        double *e = malloc(sizeof *e * (size_t)C);
        if (!e)
            ir_unreachable("out of memory");
        for (int b = 0; b < B; b++) {
            for (int64_t c = 0; c < C; c++)
                e[c] = 0;
            for (size_t t = 0; t < len[b]; t++)
                for (int64_t c = 0; c < C; c++)
                    e[c] += h[((size_t)b * T + t) * (size_t)C + (size_t)c];
            double norm = 0;
            for (int64_t c = 0; c < C; c++) {
                e[c] /= (double)len[b];
                norm += e[c] * e[c];
            }
            norm = fmax(sqrt(norm), 1e-12);
            for (int64_t c = 0; c < C; c++)
                printf("%s%.8g", c ? " " : "", e[c] / norm);
            printf("\n");
        }
        free(e);
        if (o->stats)
            fprintf(stderr, "embed: %d sentences, %zu tokens max; tokenize %.1f ms, compile + load %.1f ms, forward %.1f ms\n",
                    B, T, t1 - t0, t2 - t1, t3 - t2);
    }
    for (int b = 0; b < B; b++)
        free(ids[b]);
    free(ids);
    free(len);
    free(input_ids);
    free(mask);
    eng_weights_free(w);
    program_free(p);
    rt_pool_free(pool);
    rt_wp_free(wp);
    return cli_finish(&d);
}
