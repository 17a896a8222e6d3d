/* hf.h — Hugging Face model folders as transformers' save_pretrained writes them: config.json,
 * the weights in model.safetensors or in shards listed by model.safetensors.index.json, and the
 * tensor names transformers gives (docs/generation.md, "Hugging Face folders").
 *
 * Names: a checkpoint of a model with a head keeps its body under a prefix (GPT2LMHeadModel's
 * "transformer.h.0...", BertForMaskedLM's "bert.encoder..."); loom's models use the body's names
 * ("h.0...", "encoder..."), so the prefix is dropped where the shorter name is not taken. A LLaMA
 * checkpoint with tied embeddings (tie_word_embeddings) has no "lm_head.weight": it is then a
 * second name for "model.embed_tokens.weight" (the same data, an alias).
 */
#ifndef LOOM_IO_HF_H
#define LOOM_IO_HF_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"

#define RT_HF_INDEX "model.safetensors.index.json"

/* Opens the weights at path — a safetensors file, a model.safetensors.index.json (the shards it
 * names, next to it), or a folder holding model.safetensors or that index — as one file whose
 * tensors have loom's names (above). Errors name the file and the tensor: a shard listed but
 * missing, a tensor the index maps to a shard that lacks it, a tensor in two shards, an index
 * that is not {"weight_map": {name: file}}. False after reporting one; *f is then empty. */
bool rt_hf_open_weights(const char *path, rt_st_file *f, ir_diag *d);

/* True when path is a folder. */
bool rt_hf_is_dir(const char *path);

/* DIR/config.json parsed (free with cJSON_Delete); NULL after reporting a missing, unreadable or
 * invalid file, or one that is not a JSON object. */
cJSON *rt_hf_config(const char *dir, ir_diag *d);

#endif
