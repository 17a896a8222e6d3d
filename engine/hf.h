/* hf.h — `--hf DIR`: a Hugging Face folder as save_pretrained writes it (config.json, one or
 * several safetensors files, tokenizer files) turned into loom's options: the model file from
 * config.json's model_type, every -D from its fields, the weights (io/hf.h maps the names and
 * reads shards) and the tokenizer folder. docs/generation.md, "Hugging Face folders". */
#ifndef LOOM_ENGINE_HF_H
#define LOOM_ENGINE_HF_H

#include <stdbool.h>

#include "engine/options.h"
#include "ir/diag.h"

/* Fills o from o->hf for command cmd (run, generate, embed, train, check): o->file (unless one
 * is given; models/MODEL.loom, the folder $LOOM_MODELS or the source tree's models/), the -D
 * of every hyperparameter config.json determines (a -D given for one of them must agree: a
 * conflict is an error naming both), o->weights and o->vocab (unless given). An unknown
 * model_type, a missing or ill-typed field, a setting loom's model cannot express
 * (e.g. rope_scaling) are errors naming the file and the key. False after reporting. */
bool eng_hf_apply(eng_opts *o, const char *cmd, ir_diag *d);

#endif
