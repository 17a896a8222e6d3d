/* tokens.h — token files, the byte-level tokenizer and the deterministic batch loader (rt_tok_*,
 * rt_loader_*).
 *
 * Token file (".tok", docs/data.md), all integers little-endian:
 *     offset  size  field
 *          0     8  magic "LOOMTOK1"
 *          8     4  version (1)
 *         12     4  dtype: bytes a token, 2 (uint16) or 4 (uint32)
 *         16     4  vocab size V (>= 1); every token is < V
 *         20     4  reserved, 0
 *         24     8  token count N
 *         32  N*dt  the tokens
 * The file is exactly 32 + N × dtype bytes. The writer picks uint16 when V <= 65536.
 *
 * Batch loader: the tokens split into train = the first n − floor(n × val_frac) tokens and
 * validation = the rest (val_frac 0.1 by default: the last 10%). A batch is inputs (B, T) and
 * targets (B, T), targets[b][t] = the token after inputs[b][t].
 *  - random batches (training): row b of batch i starts at offset
 *        off = floor(r × (n_split − T) / 2^64),  r = splitmix64_at(key, i × B + b)
 *    where splitmix64_at(key, k) is output k (from 0) of Vigna's SplitMix64 seeded with key:
 *        z = key + (k + 1) × 0x9E3779B97F4A7C15;
 *        z = (z ^ z >> 30) × 0xBF58476D1CE4E5B9;  z = (z ^ z >> 27) × 0x94D049BB133111EB;
 *        r = z ^ z >> 31
 *    and key = seed for train, seed ^ 0x76616C6964617465 ("validate") for validation. A batch
 *    depends only on (tokens, split, B, T, seed, i): a checkpoint that stores the next batch
 *    index resumes the stream exactly, and any batch can be drawn again in any order.
 *  - sequential batches (evaluation): batch i row b covers tokens [(i×B + b)×T, +T+1) of the
 *    split; there are floor((n_split − 1) / (B×T)) of them (a ragged tail is left out).
 */
#ifndef LOOM_RT_TOKENS_H
#define LOOM_RT_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"

#define RT_TOK_MAGIC "LOOMTOK1"
#define RT_TOK_VERSION 1
#define RT_TOK_HEADER 32

/* Tokens in memory, whatever their width on disk. */
typedef struct {
    uint32_t *ids;       /* (n) malloc'd */
    size_t n;
    uint32_t vocab_size;
} rt_tokens;

/* Reads and validates a token file. On failure reports one error "PATH: ..." through d (bad
 * magic, unknown version or dtype, truncated header or tokens, a count that disagrees with the
 * size, a token >= the vocab size naming its index) and leaves *t empty. */
bool rt_tok_read(const char *path, rt_tokens *t, ir_diag *d);
/* The same checks over a whole file already in memory; path only names it in messages. */
bool rt_tok_parse(const char *path, const void *buf, size_t len, rt_tokens *t, ir_diag *d);
void rt_tok_free(rt_tokens *t);

/* Writes n ids (each < vocab_size, else an error naming the first bad one) as a token file.
 * Atomic: PATH.tmp, fsync, rename over path; on error PATH.tmp is removed and path untouched. */
bool rt_tok_write(const char *path, const uint32_t *ids, size_t n, uint32_t vocab_size, ir_diag *d);

/* The byte-level tokenizer: id = byte value, vocab 256. ids has room for len. */
#define RT_TOK_BYTE_VOCAB 256
void rt_tok_bytes_encode(const void *text, size_t len, uint32_t *ids);

/* ---- batch loader --------------------------------------------------------------------------- */
#define RT_LOADER_VAL_FRAC 0.1

typedef enum { RT_SPLIT_TRAIN, RT_SPLIT_VAL } rt_split;

typedef struct {
    const uint32_t *tokens; /* not owned: the rt_tokens must outlive the loader */
    size_t n_train, n_val;  /* train = tokens[0, n_train), val = tokens[n_train, n_train + n_val) */
    int B, T;
    uint64_t seed;
} rt_loader;

/* Sets up a loader over t. val_frac in [0, 1); B, T >= 1. Each non-empty split must hold at
 * least T + 1 tokens (the train split must be non-empty); otherwise reports why through d and
 * returns false. */
bool rt_loader_init(rt_loader *l, const rt_tokens *t, double val_frac, int B, int T, uint64_t seed, ir_diag *d);

/* Output k (k = 0, 1, ...) of SplitMix64 seeded with key. */
uint64_t rt_splitmix64_at(uint64_t key, uint64_t k);

/* Random batch number `batch` of split s into inputs and targets (each B × T, row-major).
 * False (nothing written) when the split is empty. */
bool rt_loader_random(const rt_loader *l, rt_split s, uint64_t batch, int32_t *inputs, int32_t *targets);

/* How many sequential batches split s has. */
uint64_t rt_loader_seq_count(const rt_loader *l, rt_split s);
/* Sequential batch number `batch` of split s; false (nothing written) past the last one. */
bool rt_loader_seq(const rt_loader *l, rt_split s, uint64_t batch, int32_t *inputs, int32_t *targets);

#endif
