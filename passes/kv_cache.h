/* kv_cache.h — the KV-cache rewrite of a causal language model (kv_cache.c).
 *
 * From one model graph, built with seq = T, the pass makes one of two programs that share
 * per-layer cache inputs "cache.k.L" and "cache.v.L" ([B, G, ctx, D], L = 0, 1, ... in the
 * order of the causal attentions):
 *  - prefill (T = the prompt length): as the model, and every layer also writes its K and V
 *    for positions [0, T) into the caches (cache_write, in place), its attention reading them
 *    back from there; an output "logits" [B, T, V] computed by a matmul keeps the last
 *    position only ([B, 1, V], the next token's logits);
 *  - decode (built with seq = 1): one token at the run-time position input "cache.position"
 *    (i32 [1]): the position table is read at that position (or arange(1) becomes it), each
 *    layer writes its K/V row at that position and attends over the whole cache with the
 *    additive mask input "cache.mask" (f32 [1, ctx]: 0 for keys <= position, -inf after).
 * Optional inputs (targets) and what depends on them are dropped. ctx is the position table's
 * first dim when ctx is 0.
 */
#ifndef LOOM_PASS_KV_CACHE_H
#define LOOM_PASS_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

typedef enum { PASS_KV_PREFILL, PASS_KV_DECODE } pass_kv_mode;

bool pass_kv_cache(ir_graph *g, pass_kv_mode mode, int64_t ctx, ir_diag *d);

/* The registry's forms (ctx from the position table): "kv-prefill", "kv-decode". */
bool pass_kv_prefill(ir_graph *g, ir_diag *d);
bool pass_kv_decode(ir_graph *g, ir_diag *d);

/* Drops optional inputs and everything that depends on them (both rewrites start with it). */
bool pass_kv_drop_optional(ir_graph *g, ir_diag *d);

/* The context length (cache rows) of a graph after either rewrite; 0 if it has no cache. */
int64_t pass_kv_context(const ir_graph *g);
/* The number of cached layers (pairs of cache inputs). */
int pass_kv_layers(const ir_graph *g);

#endif
