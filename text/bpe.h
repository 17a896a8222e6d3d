/* bpe.h — the GPT-2 byte-level BPE tokenizer (rt_bpe_*), and the Unicode character classes the
 * tokenizers share (rt_uni_*, tables generated into unicode_tables.c).
 *
 * Vocabulary: a directory holding OpenAI's two files,
 *   encoder.json — a JSON object mapping each token's text to its id (50,257 for GPT-2), the text
 *                  written through GPT-2's byte-to-unicode map (each byte 0..255 is one printable
 *                  code point: the 188 printable Latin-1 bytes map to themselves, the other 68 to
 *                  U+0100.. in byte order);
 *   vocab.bpe    — a "#version" line, then one merge "LEFT RIGHT" a line, in rank order (rank 0
 *                  first); LEFT, RIGHT and LEFTRIGHT must all be tokens of encoder.json.
 * Loading reports the first problem as "PATH:LINE: message" (the JSON's line for encoder.json).
 *
 * Encoding is GPT-2's (and tiktoken's "gpt2"), id for id:
 *  1. with allow_special, the text is cut at each "<|endoftext|>", which becomes id 50256 (the
 *     encoder's id of that string); without it the string is ordinary text;
 *  2. each piece is pre-tokenized by the regex
 *       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     implemented by hand over UTF-8 code points (\s is Unicode White_Space; the space in " ?"
 *     is U+0020 only; the contractions are lower-case ASCII only);
 *  3. each match's bytes are merged by BPE: repeatedly the adjacent pair of lowest merge rank
 *     (leftmost on ties) is replaced by its merged token, until no pair has a rank.
 * Invalid UTF-8: the text is bytes. A byte that does not start a well-formed UTF-8 sequence
 * (strict: no overlongs, surrogates or code points above U+10FFFF; a truncated sequence counts
 * byte by byte) is one character of its own in the class [^\s\p{L}\p{N}] ("other", like
 * punctuation), so it joins the neighbouring punctuation run. Every byte string therefore
 * encodes, and decode(encode(x)) == x exactly for every x (the 256 single bytes are tokens).
 *
 * The merge loop is O(n log n) in the length of a pre-token (a heap of candidate pairs over a
 * linked list of symbols), so long runs without spaces or of whitespace stay fast.
 */
#ifndef LOOM_RT_BPE_H
#define LOOM_RT_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"

typedef struct rt_bpe rt_bpe; /* opaque: the vocabulary, the merges and their hash tables */

/* Loads DIR/encoder.json and DIR/vocab.bpe. Returns NULL after reporting one error through d
 * ("DIR/vocab.bpe:17: merge 'x y': 'y' is not a token of encoder.json", ...). */
rt_bpe *rt_bpe_load(const char *dir, ir_diag *d);
void rt_bpe_free(rt_bpe *b);

/* Number of ids (largest id + 1). */
uint32_t rt_bpe_vocab_size(const rt_bpe *b);
/* The id of "<|endoftext|>", or UINT32_MAX if the vocabulary has none. */
uint32_t rt_bpe_eot(const rt_bpe *b);

/* Appends the ids of text[0..len) to *ids (a malloc'd array of *n ids, capacity *cap; all may
 * start as NULL/0), growing it with realloc. allow_special: see step 1 above. Never fails on
 * any input (aborts only when out of memory). */
void rt_bpe_encode(const rt_bpe *b, const char *text, size_t len, bool allow_special, uint32_t **ids,
                   size_t *n, size_t *cap);

/* The bytes of token id (length in *len), or NULL when id is not a token. */
const uint8_t *rt_bpe_token_bytes(const rt_bpe *b, uint32_t id, size_t *len);

/* Decodes n ids to their bytes, concatenated, into a malloc'd buffer (NUL-terminated for
 * convenience, length in *len). Returns NULL and reports "id N at position P is not a token"
 * through d when an id is out of range. */
char *rt_bpe_decode(const rt_bpe *b, const uint32_t *ids, size_t n, size_t *len, ir_diag *d);

/* ---- UTF-8 ---------------------------------------------------------------------------------- */
/* Decodes one code point at s[0..n), n >= 1. Returns its length in bytes (1..4) and sets *cp; a
 * byte that does not start a well-formed sequence returns 1 with *cp = RT_UTF8_INVALID. */
#define RT_UTF8_INVALID 0xFFFFFFFFu
int rt_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Writes cp (<= 0x10FFFF) as UTF-8 to out (room for 4); returns the length. */
int rt_utf8_encode(uint32_t cp, uint8_t *out);

/* ---- Unicode classes (tables in unicode_tables.c: Unicode 16.0, tools/gen_unicode_tables.py) -- */
typedef struct {
    uint32_t lo, hi; /* inclusive */
} rt_uni_range;
/* lower(first + k*stride) = first + k*stride + delta, for k in [0, count) */
typedef struct {
    uint32_t first;
    int32_t count, delta, stride;
} rt_uni_case_run;
typedef struct {
    uint32_t cp;
    uint32_t out[3]; /* 0-padded */
} rt_uni_strip;

extern const rt_uni_range rt_uni_letter[], rt_uni_number[], rt_uni_punct[], rt_uni_bert_control[],
    rt_uni_mark_nonspacing[];
extern const int rt_uni_letter_len, rt_uni_number_len, rt_uni_punct_len, rt_uni_bert_control_len,
    rt_uni_mark_nonspacing_len;
extern const rt_uni_case_run rt_uni_lower[];
extern const int rt_uni_lower_len;
extern const rt_uni_strip rt_uni_strip_map[];
extern const int rt_uni_strip_map_len;

bool rt_uni_is_letter(uint32_t cp);       /* \p{L} */
bool rt_uni_is_number(uint32_t cp);       /* \p{N} */
bool rt_uni_is_punct(uint32_t cp);        /* \p{P} */
/* A control as BERT's normalizer drops it (Hugging Face tokenizers' BertNormalizer): Cc, Cs, Co
 * and Cf (Unicode 8.0's Cf: the few format characters assigned later are not); unassigned code
 * points are not controls. \t \n \r are in it: the caller maps them to spaces first. */
bool rt_uni_is_bert_control(uint32_t cp);
bool rt_uni_is_mark_nonspacing(uint32_t cp); /* \p{Mn} */
bool rt_uni_is_white_space(uint32_t cp);  /* the White_Space property (regex \s) */
/* The simple lower-case mapping (cp itself when it has none; U+0130 gives 'i'). */
uint32_t rt_uni_to_lower(uint32_t cp);
/* NFD decomposition of cp with nonspacing marks removed: writes 0..3 code points to out and
 * returns how many (cp itself when it has no decomposition and is not Mn; Hangul syllables
 * decompose to their jamo). */
int rt_uni_strip_accents(uint32_t cp, uint32_t out[3]);

#endif
