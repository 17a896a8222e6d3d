/* api.c — include/loom.h over the engine: a loom_model is the options that build it (the file or
 * source and its -D) and the graph they built; a loom_program is engine/program.h's program
 * with its thread pool and any weights file bound; a loom_trainer is engine/train.h's trainer
 * with the options it was made from. Errors come from the engine's ir_diag, printed into the
 * status exactly as the `loom` command prints them.
 */
#include "include/loom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/options.h"
#include "engine/program.h"
#include "engine/run_values.h"
#include "engine/train.h"
#include "engine/weights.h"
#include "runtime/threadpool.h"

struct loom_status_s {
    char *message;
};

const char *loom_version(void) { return "0.5.0"; }

const char *loom_status_message(loom_status s) { return s ? s->message : "ok"; }

void loom_status_free(loom_status s)
{
    if (!s)
        return;
    free(s->message);
    free(s);
}

static char *xstrdup(const char *s)
{
    char *c = strdup(s ? s : "");
    if (!c)
        ir_unreachable("out of memory");
    return c;
}

/* A malloc'd string of the format. */
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s)
        ir_unreachable("out of memory");
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    va_end(ap);
    return s;
}

static loom_status status_text(const char *text)
{
    loom_status s = calloc(1, sizeof *s);
    if (!s)
        ir_unreachable("out of memory");
    s->message = xstrdup(text);
    return s;
}

/* d's errors as a status (NULL when there are none); frees d. */
static loom_status status_of(ir_diag *d)
{
    loom_status s = NULL;
    if (!ir_diag_ok(d)) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
            ir_unreachable("out of memory");
        ir_diag_print(d, f);
        fclose(f);
        while (len > 0 && text[len - 1] == '\n')
            text[--len] = 0;
        s = calloc(1, sizeof *s);
        if (!s)
            ir_unreachable("out of memory");
        s->message = text;
    }
    ir_diag_free(d);
    return s;
}

size_t loom_dtype_size(loom_dtype dtype)
{
    return dtype >= LOOM_F32 && dtype <= LOOM_U8 ? (size_t)ir_dtype_size((ir_dtype)dtype) : 0;
}

int64_t loom_tensor_numel(const loom_tensor_info *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

/* loom_dtype's values are ir_dtype's (checked here, at build time) */
_Static_assert((int)LOOM_F32 == DT_F32 && (int)LOOM_F64 == DT_F64 && (int)LOOM_F16 == DT_F16 &&
                   (int)LOOM_BF16 == DT_BF16 && (int)LOOM_I32 == DT_I32 && (int)LOOM_I64 == DT_I64 &&
                   (int)LOOM_U8 == DT_U8 && (int)LOOM_I8 == DT_I8,
               "loom_dtype follows ir_dtype");

/* ---- models ------------------------------------------------------------------------------ */

struct loom_model {
    eng_opts o;        /* file (or its text) and -D: what the trainer rebuilds it from */
    char *file, *text;
    ir_graph *g;
};

static loom_status model_new(const char *file, const char *text, const loom_define *defines, int n_defines,
                             loom_model **out)
{
    loom_model *m = calloc(1, sizeof *m);
    if (!m)
        ir_unreachable("out of memory");
    m->file = xstrdup(file);
    m->text = text ? xstrdup(text) : NULL;
    m->o.file = m->file;
    m->o.file_text = m->text;
    char why[512];
    for (int i = 0; i < n_defines; i++)
        if (!eng_opts_define(&m->o, defines[i].name, defines[i].value, why, sizeof why)) {
            loom_model_free(m);
            return status_text(why);
        }
    ir_diag d;
    ir_diag_init(&d);
    m->g = eng_load_graph(&m->o, &d);
    loom_status s = status_of(&d);
    if (s) {
        loom_model_free(m);
        return s;
    }
    *out = m;
    return NULL;
}

loom_status loom_model_load(const char *path, const loom_define *defines, int n_defines, loom_model **out)
{
    return model_new(path, NULL, defines, n_defines, out);
}

loom_status loom_model_parse(const char *name, const char *source, const loom_define *defines, int n_defines,
                             loom_model **out)
{
    return model_new(name, source, defines, n_defines, out);
}

void loom_model_free(loom_model *m)
{
    if (!m)
        return;
    ir_graph_free(m->g);
    free(m->file);
    free(m->text);
    free(m);
}

loom_status loom_model_keep_outputs(loom_model *m, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!eng_find_node(m->g, OP_output, names[i])) {
            char *msg = format("%s: the model has no output '%s'", m->file, names[i]);
            loom_status s = status_text(msg);
            free(msg);
            return s;
        }
    eng_prune_to_outputs(m->g, names, n);
    return NULL;
}

static const ir_opcode kind_op[] = {[LOOM_PARAM] = OP_param, [LOOM_INPUT] = OP_input, [LOOM_OUTPUT] = OP_output};

int loom_model_count(const loom_model *m, loom_kind kind)
{
    int n = 0;
    for (int i = 0; m && kind <= LOOM_OUTPUT && i < m->g->n_nodes; i++)
        n += m->g->nodes[i]->op == kind_op[kind];
    return n;
}

loom_tensor_info loom_model_tensor(const loom_model *m, loom_kind kind, int i)
{
    loom_tensor_info t = {0};
    for (int k = 0; m && kind <= LOOM_OUTPUT && k < m->g->n_nodes; k++) {
        const ir_node *n = m->g->nodes[k];
        if (n->op != kind_op[kind] || i-- > 0)
            continue;
        const ir_node *v = n->op == OP_output ? n->in[0] : n; /* an output is its operand's value */
        t.name = n->name;
        t.dtype = (loom_dtype)v->dtype;
        t.rank = v->shape.rank;
        for (int j = 0; j < v->shape.rank; j++)
            t.dims[j] = v->shape.dim[j];
        break;
    }
    return t;
}

/* ---- programs ---------------------------------------------------------------------------- */

struct loom_program {
    program *p;
    rt_pool *pool;
    eng_weights *w;
};

loom_status loom_program_new(const loom_model *m, const char *target, loom_program **out)
{
    loom_program *lp = calloc(1, sizeof *lp);
    if (!lp)
        ir_unreachable("out of memory");
    lp->pool = rt_pool_new(0);
    ir_diag d;
    ir_diag_init(&d);
    lp->p = program_new(target ? target : "cpu", m->g, NULL, lp->pool, &d);
    loom_status s = status_of(&d);
    if (s) {
        loom_program_free(lp);
        return s;
    }
    *out = lp;
    return NULL;
}

loom_status loom_program_load_weights(loom_program *p, const char *path)
{
    ir_diag d;
    ir_diag_init(&d);
    eng_weights *w = eng_weights_open(path, &d);
    if (w && eng_weights_bind(w, p->p, &d)) {
        eng_weights_free(p->w);
        p->w = w;
    } else
        eng_weights_free(w);
    return status_of(&d);
}

loom_status loom_program_bind(loom_program *p, const char *name, const void *data)
{
    ir_diag d;
    ir_diag_init(&d);
    if (!program_find(p->p, OP_param, name) && !program_find(p->p, OP_input, name))
        ir_diag_error(&d, -1, 0, 0, "bind: the program has no param or input '%s'", name);
    else
        program_bind(p->p, name, data, &d);
    return status_of(&d);
}

loom_status loom_program_run(loom_program *p)
{
    ir_diag d;
    ir_diag_init(&d);
    program_run(p->p, &d);
    return status_of(&d);
}

const void *loom_program_output(loom_program *p, const char *name)
{
    return program_find(p->p, OP_output, name) ? program_output(p->p, name) : NULL;
}

void loom_program_free(loom_program *p)
{
    if (!p)
        return;
    program_free(p->p);
    eng_weights_free(p->w);
    rt_pool_free(p->pool);
    free(p);
}

/* ---- training ---------------------------------------------------------------------------- */

struct loom_trainer {
    eng_opts o;        /* loom train's options (strings in argv) */
    char **argv;
    int argc;
    char *file, *text;
    eng_trainer *t;
};

void loom_trainer_free(loom_trainer *t)
{
    if (!t)
        return;
    eng_trainer_free(t->t);
    for (int i = 0; i < t->argc; i++)
        free(t->argv[i]);
    free(t->argv);
    free(t->file);
    free(t->text);
    free(t);
}

loom_status loom_trainer_new(const loom_model *m, const loom_option *options, int n_options, loom_trainer **out)
{
    loom_trainer *t = calloc(1, sizeof *t);
    if (!t)
        ir_unreachable("out of memory");
    /* the options as `loom train MODEL --NAME VALUE ...` would give them, -D included */
    t->argv = calloc((size_t)(2 * n_options + 2 * m->o.n_defines + 2), sizeof *t->argv);
    if (!t->argv)
        ir_unreachable("out of memory");
    t->argv[t->argc++] = xstrdup(m->file);
    for (int i = 0; i < m->o.n_defines; i++) {
        t->argv[t->argc++] = xstrdup("-D");
        t->argv[t->argc++] = format("%s=%s", m->o.defines[i].name, m->o.defines[i].value);
    }
    for (int i = 0; i < n_options; i++) {
        t->argv[t->argc++] = format("--%s", options[i].name);
        t->argv[t->argc++] = xstrdup(options[i].value);
    }
    char why[512];
    if (!eng_opts_parse("train", t->argc, t->argv, &t->o, why, sizeof why)) {
        loom_trainer_free(t);
        return status_text(why);
    }
    if (m->text)
        t->o.file_text = t->text = xstrdup(m->text);
    ir_diag d;
    ir_diag_init(&d);
    t->t = eng_trainer_new(&t->o, true, &d);
    loom_status s = status_of(&d);
    if (s) {
        loom_trainer_free(t);
        return s;
    }
    *out = t;
    return NULL;
}

loom_status loom_trainer_step(loom_trainer *t, loom_step *out)
{
    ir_diag d;
    ir_diag_init(&d);
    eng_train_step s;
    if (eng_trainer_step(t->t, &s, &d))
        *out = (loom_step){.step = s.step, .loss = s.loss, .grad_norm = s.grad_norm, .lr = s.lr, .ms = s.ms};
    return status_of(&d);
}

loom_status loom_trainer_evaluate(loom_trainer *t, double *val_loss)
{
    ir_diag d;
    ir_diag_init(&d);
    eng_trainer_evaluate(t->t, val_loss, &d);
    return status_of(&d);
}

loom_status loom_trainer_save(loom_trainer *t, const char *dir)
{
    ir_diag d;
    ir_diag_init(&d);
    eng_trainer_save(t->t, dir, &d);
    return status_of(&d);
}
