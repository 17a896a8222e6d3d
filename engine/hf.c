/* hf.c — --hf DIR: config.json to a model file and its -D (hf.h). */
#include "engine/hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "io/hf.h"

#ifndef LOOM_MODELS_DIR
#define LOOM_MODELS_DIR "models"
#endif

/* One hyperparameter from config.json: the first key present of keys (NULL-terminated list of
 * up to 3), or dflt when none is and dflt is not NAN; must_int: an integer. */
typedef struct {
    const char *hparam;
    const char *keys[3];
    double dflt;
    bool must_int;
} field;

typedef struct {
    const char *model_type, *file;
    field fields[16];
    /* settings that must hold (key, required string value or NULL: must be absent/null/false) */
    const char *require[8][2];
} family;

#define END {NULL, {NULL}, 0, false}
static const family families[] = {
    {"gpt2", "gpt2.loom",
     {{"vocab", {"vocab_size"}, NAN, true}, {"ctx", {"n_positions", "n_ctx"}, NAN, true},
      {"d_model", {"n_embd", "hidden_size"}, NAN, true}, {"n_layer", {"n_layer", "num_hidden_layers"}, NAN, true},
      {"n_head", {"n_head", "num_attention_heads"}, NAN, true}, {"eps", {"layer_norm_epsilon"}, 1e-5, false}, END},
     {{"activation_function", "gelu_new"}, {"n_inner", NULL}, {"scale_attn_by_inverse_layer_idx", NULL},
      {"reorder_and_upcast_attn", NULL}, {NULL, NULL}}},
    {"llama", "llama.loom",
     {{"vocab", {"vocab_size"}, NAN, true}, {"d_model", {"hidden_size"}, NAN, true},
      {"n_layer", {"num_hidden_layers"}, NAN, true}, {"n_head", {"num_attention_heads"}, NAN, true},
      {"n_kv_head", {"num_key_value_heads", "num_attention_heads"}, NAN, true},
      {"d_ff", {"intermediate_size"}, NAN, true}, {"ctx", {"max_position_embeddings"}, NAN, true},
      {"eps", {"rms_norm_eps"}, 1e-6, false}, {"theta", {"rope_theta", "rope_parameters.rope_theta"}, 10000.0, false},
      {"head_dim", {"head_dim"}, NAN, true}, END},
     {{"hidden_act", "silu"}, {"rope_scaling", NULL}, {"attention_bias", NULL}, {"mlp_bias", NULL},
      {"rope_parameters.rope_type", "default"}, {NULL, NULL}}},
    {"bert", "bert.loom",
     {{"vocab", {"vocab_size"}, NAN, true}, {"max_pos", {"max_position_embeddings"}, NAN, true},
      {"type_vocab", {"type_vocab_size"}, 2, true}, {"d_model", {"hidden_size"}, NAN, true},
      {"n_layer", {"num_hidden_layers"}, NAN, true}, {"n_head", {"num_attention_heads"}, NAN, true},
      {"d_ff", {"intermediate_size"}, NAN, true}, {"eps", {"layer_norm_eps"}, 1e-12, false}, END},
     {{"hidden_act", "gelu"}, {"position_embedding_type", "absolute"}, {NULL, NULL}}},
};

/* config's item at key, "a.b" looking into object a; NULL when absent or null. */
static const cJSON *item(const cJSON *config, const char *key)
{
    char head[64];
    const char *dot = strchr(key, '.');
    if (dot && (size_t)(dot - key) < sizeof head) {
        snprintf(head, sizeof head, "%.*s", (int)(dot - key), key);
        return item(cJSON_GetObjectItemCaseSensitive(config, head), dot + 1);
    }
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(config, key);
    return cJSON_IsNull(j) ? NULL : j;
}

static bool set_define(eng_opts *o, const char *name, const char *value, const char *key, const char *config,
                       ir_diag *d)
{
    for (int i = 0; i < o->n_defines; i++)
        if (strcmp(o->defines[i].name, name) == 0) {
            char *end;
            double given = strtod(o->defines[i].value, &end), want = strtod(value, NULL);
            if (*end || given != want) {
                ir_diag_error(d, -1, 0, 0, "-D %s=%s conflicts with %s: %s is %s", name, o->defines[i].value, config,
                              key, value);
                return false;
            }
            return true;
        }
    char why[300];
    if (!eng_opts_define(o, name, value, why, sizeof why)) {
        ir_diag_error(d, -1, 0, 0, "%s", why);
        return false;
    }
    return true;
}

bool eng_hf_apply(eng_opts *o, const char *cmd, ir_diag *d)
{
    static const char *const cmds[] = {"run", "generate", "embed", "train", "check"};
    bool known = false;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        ir_diag_error(d, -1, 0, 0, "%s: --hf is for run, generate, embed, train and check", cmd);
        return false;
    }
    if (!rt_hf_is_dir(o->hf)) {
        ir_diag_error(d, -1, 0, 0, "%s: --hf %s: not a folder", cmd, o->hf);
        return false;
    }
    snprintf(o->hf_config, sizeof o->hf_config, "%s/config.json", o->hf);
    cJSON *config = rt_hf_config(o->hf, d);
    if (!config)
        return false;
    const cJSON *mt = item(config, "model_type");
    const family *fam = NULL;
    for (size_t i = 0; cJSON_IsString(mt) && i < sizeof families / sizeof *families; i++)
        if (strcmp(mt->valuestring, families[i].model_type) == 0)
            fam = &families[i];
    bool ok = true;
    if (!fam) {
        if (cJSON_IsString(mt))
            ir_diag_error(d, -1, 0, 0, "%s: model_type '%s' is not supported (loom reads gpt2, llama and bert)",
                          o->hf_config, mt->valuestring);
        else
            ir_diag_error(d, -1, 0, 0, "%s: no \"model_type\" string", o->hf_config);
        ok = false;
    }
    for (int r = 0; ok && fam->require[r][0]; r++) {
        const cJSON *j = item(config, fam->require[r][0]);
        const char *want = fam->require[r][1];
        bool fine = want ? !j || (cJSON_IsString(j) && strcmp(j->valuestring, want) == 0) : !j || cJSON_IsFalse(j);
        if (!fine) {
            char *text = cJSON_PrintUnformatted(j);
            ir_diag_error(d, -1, 0, 0, "%s: %s is %s; loom's %s supports only %s", o->hf_config, fam->require[r][0],
                          text ? text : "?", fam->file, want ? want : "none");
            cJSON_free(text);
            ok = false;
        }
    }
    /* the model file first: only its hyperparameters are set */
    if (ok && o->file && strstr(o->file, ".loom") == NULL && strstr(o->file, ".lir") == NULL &&
        o->n_extra < 64) { /* embed's first sentence, not a model file */
        memmove(o->extra + 1, o->extra, sizeof *o->extra * (size_t)o->n_extra);
        o->extra[0] = (char *)o->file;
        o->n_extra++;
        o->file = NULL;
    }
    if (ok && !o->file) {
        const char *dir = getenv("LOOM_MODELS");
        snprintf(o->hf_model, sizeof o->hf_model, "%s/%s", dir && *dir ? dir : LOOM_MODELS_DIR, fam->file);
        if (access(o->hf_model, R_OK) != 0) {
            ir_diag_error(d, -1, 0, 0, "%s: model_type '%s' needs %s, which is not there (set LOOM_MODELS to the "
                          "folder of loom's models, or name the model file)", o->hf_config, fam->model_type,
                          o->hf_model);
            ok = false;
        }
        o->file = o->hf_model;
    }
    fe_hparam_list hp = {0};
    if (ok) {
        int file = ir_diag_load_file(d, o->file);
        ok = file >= 0 && fe_hparams(d, file, NULL, 0, &hp);
    }
    for (int f = 0; ok && fam->fields[f].hparam; f++) {
        const field *fl = &fam->fields[f];
        const cJSON *j = NULL;
        const char *key = fl->keys[0];
        for (int k = 0; k < 3 && fl->keys[k] && !j; k++)
            if ((j = item(config, fl->keys[k])))
                key = fl->keys[k];
        if (!fe_hparam_find(&hp, fl->hparam))
            continue; /* a model file without it (another one named by hand) */
        if (!j && isnan(fl->dflt)) {
            if (strcmp(fl->hparam, "head_dim") == 0)
                continue; /* llama: d_model / n_head */
            ir_diag_error(d, -1, 0, 0, "%s: no \"%s\" (needed for -D %s of %s)", o->hf_config, key, fl->hparam,
                          o->file);
            ok = false;
            break;
        }
        double v = j ? j->valuedouble : fl->dflt;
        if (j && (!cJSON_IsNumber(j) || (fl->must_int && (v != floor(v) || v < 1 || v > 1e12)))) {
            char *text = cJSON_PrintUnformatted(j);
            ir_diag_error(d, -1, 0, 0, "%s: %s is %s, expected %s", o->hf_config, key, text ? text : "?",
                          fl->must_int ? "a positive integer" : "a number");
            cJSON_free(text);
            ok = false;
            break;
        }
        char value[64];
        if (fl->must_int)
            snprintf(value, sizeof value, "%.0f", v);
        else
            snprintf(value, sizeof value, "%.17g%s", v, v == floor(v) && fabs(v) < 1e15 ? ".0" : "");
        ok = set_define(o, fl->hparam, value, key, o->hf_config, d);
    }
    /* the default sequence may be longer than the checkpoint's positions (GPT-2's 1024, BERT's
     * 128 against a smaller table): cut to them unless -D seq says */
    const fe_hparam *seq = ok ? fe_hparam_find(&hp, "seq") : NULL;
    bool seq_given = false;
    for (int i = 0; i < o->n_defines; i++)
        seq_given |= strcmp(o->defines[i].name, "seq") == 0;
    for (int i = 0; seq && !seq_given && i < o->n_defines; i++)
        if ((strcmp(o->defines[i].name, "ctx") == 0 || strcmp(o->defines[i].name, "max_pos") == 0) &&
            atof(o->defines[i].value) < seq->value) {
            char why[300];
            ok = eng_opts_define(o, "seq", o->defines[i].value, why, sizeof why);
            if (!ok)
                ir_diag_error(d, -1, 0, 0, "%s", why);
            break;
        }
    fe_hparams_free(&hp);
    cJSON_Delete(config);
    if (ok && !o->weights)
        o->weights = o->hf;
    if (ok && !o->vocab)
        o->vocab = o->hf;
    return ok;
}
