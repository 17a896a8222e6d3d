/* tokenizer_config.c — the WordPiece settings of DIR/tokenizer_config.json (wordpiece.h:
 * rt_wp_config_read), which `loom tokenize` and `loom embed` share. */
#include "io/json_file.h"
#include "text/wordpiece.h"

rt_wp_config rt_wp_config_read(const char *dir)
{
    rt_wp_config c = {.lowercase = true, .strip_accents = -1};
    cJSON *j = rt_json_read(dir, "tokenizer_config.json");
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(j, "do_lower_case");
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "strip_accents");
    if (cJSON_IsBool(lc))
        c.lowercase = cJSON_IsTrue(lc);
    if (cJSON_IsBool(sa))
        c.strip_accents = cJSON_IsTrue(sa) ? 1 : 0;
    cJSON_Delete(j);
    return c;
}
