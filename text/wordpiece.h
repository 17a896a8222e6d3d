/* wordpiece.h — BERT's WordPiece tokenizer (rt_wp_*), as Hugging Face tokenizers'
 * BertWordPieceTokenizer does it (BertNormalizer, BertPreTokenizer, WordPiece, [CLS]/[SEP]).
 *
 * Vocabulary: vocab.txt, one token a line; a token's id is its line number − 1 (trailing
 * whitespace and "\r" are trimmed; a token given twice keeps its last line's id, like the
 * reference). It must hold [UNK], [CLS] and [SEP].
 *
 * Encoding, in order:
 *  0. with allow_special, "[PAD]" "[UNK]" "[CLS]" "[SEP]" "[MASK]" (those in the vocabulary) are cut
 *     out of the raw text first and stand for their ids (as the reference's added tokens do);
 *  1. normalize (per code point): drop NUL, U+FFFD and control characters (Cc, Cs, Co and
 *     Unicode 8.0's Cf, except \t \n \r: rt_uni_is_bert_control), keep unassigned code points
 *     (a word holding one is [UNK] unless the vocabulary has it); every White_Space character becomes ' '; CJK ideographs get a space on each
 *     side; with strip_accents, NFD and drop nonspacing marks (Mn); with lowercase, the simple
 *     lower-case mapping (U+0130 İ gives "i" + U+0307 when accents are kept). Invalid UTF-8
 *     bytes count as U+FFFD, so they are dropped (the reference only ever sees valid text);
 *  2. split on spaces (dropped) and punctuation (ASCII punctuation and \p{P}; each one a word);
 *  3. each word: longer than max_chars code points (100) → [UNK]; else greedy longest match
 *     first from the left, continuation pieces prefixed "##"; a word with any unmatchable rest
 *     is one [UNK];
 *  4. [CLS] words... [SEP]; with max_len > 0 the word pieces are cut so that the whole has at
 *     most max_len ids ([SEP] stays last).
 */
#ifndef LOOM_RT_WORDPIECE_H
#define LOOM_RT_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"

typedef struct rt_wp rt_wp;

typedef struct {
    bool lowercase;     /* BERT uncased: true */
    int strip_accents;  /* 1 yes, 0 no, -1: as lowercase (the reference's default) */
    int max_chars;      /* longest word in code points before it is [UNK]; 0: 100 */
} rt_wp_config;

/* Loads vocab.txt at path. NULL after reporting one error through d ("PATH: no [UNK] token", ...). */
rt_wp *rt_wp_load(const char *path, rt_wp_config cfg, ir_diag *d);
void rt_wp_free(rt_wp *w);

uint32_t rt_wp_vocab_size(const rt_wp *w);
/* The id of token text (NUL-terminated), or UINT32_MAX. */
uint32_t rt_wp_token_id(const rt_wp *w, const char *text);
/* The text of id, or NULL when id >= vocab size. */
const char *rt_wp_token_text(const rt_wp *w, uint32_t id);

/* Appends [CLS], the word pieces of text[0..len) and [SEP] to *ids (malloc'd, *n ids, capacity
 * *cap; may start NULL/0). allow_special: step 0 above. max_len: 0 for no limit, else >= 2.
 * Never fails. */
void rt_wp_encode(const rt_wp *w, const char *text, size_t len, bool allow_special, size_t max_len, uint32_t **ids,
                  size_t *n, size_t *cap);

/* Joins the tokens of ids (skipping [CLS], [SEP] and [PAD]) with spaces, gluing "##" pieces to
 * the one before; malloc'd, NUL-terminated. NULL and an error through d for an id out of range. */
char *rt_wp_decode(const rt_wp *w, const uint32_t *ids, size_t n, ir_diag *d);

/* tokenizer_config.c: the settings DIR/tokenizer_config.json gives: do_lower_case (default
 * true) and strip_accents (default -1: as lower-casing), as Hugging Face's BertTokenizer. */
rt_wp_config rt_wp_config_read(const char *dir);

#endif
