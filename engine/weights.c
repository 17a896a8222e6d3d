/* weights.c — safetensors tensors bound to program params (weights.h). */
#include "engine/weights.h"

#include <stdlib.h>
#include <string.h>

#include "io/hf.h"
#include "io/safetensors.h"

struct eng_weights {
    rt_st_file f;
    void **converted;  /* per tensor of f: its data in the dtype a param asked for, or NULL */
    ir_dtype *as;      /* that dtype */
    program_buf **dev; /* per tensor: that data on the device (eng_weights_bind_device), or NULL */
};

eng_weights *eng_weights_open(const char *path, ir_diag *d)
{
    eng_weights *w = calloc(1, sizeof *w);
    if (!w)
        ir_unreachable("out of memory");
    if (!rt_hf_open_weights(path, &w->f, d)) {
        free(w);
        return NULL;
    }
    w->converted = calloc((size_t)w->f.n_tensors + 1, sizeof *w->converted);
    w->as = calloc((size_t)w->f.n_tensors + 1, sizeof *w->as);
    w->dev = calloc((size_t)w->f.n_tensors + 1, sizeof *w->dev);
    if (!w->converted || !w->as || !w->dev)
        ir_unreachable("out of memory");
    return w;
}

void eng_weights_free(eng_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->f.n_tensors; i++) {
        free(w->converted[i]);
        program_buf_free(w->dev[i]);
    }
    free(w->converted);
    free(w->dev);
    free(w->as);
    rt_st_close(&w->f);
    free(w);
}

/* Tensor t's data as dtype dt (f32 from any float; otherwise only the same dtype). */
static void *convert(eng_weights *w, int i, ir_dtype dt, const ir_node *param, ir_diag *d)
{
    const rt_st_tensor *t = &w->f.tensors[i];
    if (w->converted[i] && w->as[i] == dt)
        return w->converted[i];
    size_t n = (size_t)ir_shape_numel(&t->shape), bytes = n * (size_t)ir_dtype_size(dt);
    bool ok = dt == t->dtype || (dt == DT_F32 && ir_dtype_is_float(t->dtype));
    if (!ok) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s' is %s, param %s is %s", w->f.path, t->name, ir_dtype_name(t->dtype),
                      param->name, ir_dtype_name(dt));
        return NULL;
    }
    void *data = malloc(bytes + 1);
    if (!data)
        ir_unreachable("out of memory");
    if (dt == DT_F32)
        rt_convert_to_f32(t->dtype, t->data, data, n);
    else
        memcpy(data, t->data, bytes);
    free(w->converted[i]);
    w->converted[i] = data;
    w->as[i] = dt;
    return data;
}

/* The tensor for param n (reported when missing or of another shape), or -1. */
static int tensor_of(const eng_weights *w, const ir_node *n, ir_diag *d)
{
    char want[96];
    ir_shape_str(&n->shape, want, sizeof want);
    int i = 0;
    while (i < w->f.n_tensors && strcmp(w->f.tensors[i].name, n->name) != 0)
        i++;
    if (i == w->f.n_tensors) {
        ir_diag_error(d, -1, 0, 0, "%s: no tensor '%s' for param %s %s%s", w->f.path, n->name, n->name,
                      ir_dtype_name(n->dtype), want);
        return -1;
    }
    if (!ir_shape_eq(&w->f.tensors[i].shape, &n->shape)) {
        char got[96];
        ir_shape_str(&w->f.tensors[i].shape, got, sizeof got);
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s' has shape %s, the model's param has %s (are the model's -D "
                      "hyperparameters right?)",
                      w->f.path, n->name, got, want);
        return -1;
    }
    return i;
}

/* Tensor i as param n of a program on dev: its data in n's dtype, uploaded once into a device
 * buffer that every program bound on dev shares. */
static program_buf *device_copy(eng_weights *w, program_device *dev, int i, const ir_node *n, ir_diag *d)
{
    if (w->dev[i] && w->as[i] == n->dtype)
        return w->dev[i];
    void *data = convert(w, i, n->dtype, n, d);
    size_t bytes = (size_t)ir_shape_numel(&n->shape) * (size_t)ir_dtype_size(n->dtype);
    program_buf_free(w->dev[i]);
    if (!data || !(w->dev[i] = program_buf_new(dev, bytes ? bytes : 1, d)) ||
        !program_buf_write(w->dev[i], 0, data, bytes, d))
        return NULL;
    free(w->converted[i]); /* the device holds it now */
    w->converted[i] = NULL;
    return w->dev[i];
}

/* Every param of p from its tensor: host memory (dev NULL) or dev's buffers. */
static bool bind(eng_weights *w, program_device *dev, program *p, ir_diag *d)
{
    const ir_graph *g = program_graph(p);
    for (int k = 0; k < g->n_nodes; k++) {
        const ir_node *n = g->nodes[k];
        if (n->op != OP_param)
            continue;
        int i = tensor_of(w, n, d);
        if (i < 0)
            return false;
        if (dev) {
            program_buf *b = device_copy(w, dev, i, n, d);
            if (!b || !program_bind_buf(p, n->name, b, 0, d))
                return false;
        } else {
            void *data = convert(w, i, n->dtype, n, d);
            if (!data || !program_bind(p, n->name, data, d))
                return false;
        }
    }
    return true;
}

bool eng_weights_bind(eng_weights *w, program *p, ir_diag *d) { return bind(w, NULL, p, d); }

bool eng_weights_bind_device(eng_weights *w, program_device *dev, program *p, ir_diag *d) { return bind(w, dev, p, d); }
