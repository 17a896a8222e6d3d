/* json_file.h — a settings file next to a model, a vocabulary or a checkpoint
 * (DIR/tokenizer_config.json, DIR/sentence_bert_config.json, DIR/manifest.json), read whole and
 * parsed with cJSON. Absent, unreadable or invalid reads as NULL: the callers then keep their
 * defaults or say what is missing. */
#ifndef LOOM_IO_JSON_FILE_H
#define LOOM_IO_JSON_FILE_H

#include <cjson/cJSON.h>

/* DIR/NAME parsed as JSON (free with cJSON_Delete), or NULL. */
cJSON *rt_json_read(const char *dir, const char *name);

#endif
