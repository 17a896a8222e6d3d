/* standalone_device.c — the device half of a `loom build --target opencl|cuda` executable
 * (standalone.h), shared by both targets: bind the loaded params and inputs, run once, read
 * the outputs back. standalone_opencl.c and standalone_cuda.c open the executor from the
 * payload. They live in libloom_standalone.a beside standalone_main.c, which reaches them
 * through weak references: a cpu executable pulls in neither (no OpenCL or CUDA libraries),
 * and cmd_build.c forces in the one its target needs (-u SYMBOL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "io/safetensors.h"
#include "io/exe_payload.h"

static const ir_tensor *find_value(const ir_named_tensor *vals, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(vals[i].name, name) == 0)
            return vals[i].t;
    return NULL;
}

const rt_plan_blob *rt_standalone_need_blob(const rt_plan_blob *b, int n, const char *name, const char *who, ir_diag *d)
{
    const rt_plan_blob *x = rt_plan_blob_find(b, n, name);
    if (!x)
        ir_diag_error(d, -1, 0, 0, "%s: the payload has no '%s' record", who, name);
    return x;
}

char *rt_standalone_blob_text(const rt_plan_blob *b)
{
    if (!b)
        return NULL;
    char *s = malloc(b->size + 1);
    if (!s)
        ir_unreachable("out of memory");
    memcpy(s, b->data, b->size);
    s[b->size] = 0;
    return s;
}

bool rt_standalone_run_exec(const rt_standalone_exec *dev, const char *target, const rt_plan *plan,
                            const rt_io_sig *sig, const ir_named_tensor *vals, int n_vals, bool stats,
                            ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    bool ok = dev->ex != NULL;
    for (int i = 0; ok && i < sig->n; i++) {
        const rt_io_slot *n = &sig->slots[i];
        if (n->kind == RT_IO_OUTPUT)
            continue;
        const ir_tensor *t = find_value(vals, n_vals, n->name);
        if (!t) {
            ir_diag_error(d, -1, 0, 0, "missing value for %s '%s'", n->kind == RT_IO_PARAM ? "param" : "input", n->name);
            ok = false;
            break;
        }
        size_t count = (size_t)ir_shape_numel(&n->shape);
        void *buf = malloc(count * (size_t)ir_dtype_size(n->dtype) + 1);
        if (!buf)
            ir_unreachable("out of memory");
        rt_convert_from_f64(n->dtype, t->data, buf, count);
        ok = dev->bind(dev->ex, n->name, buf, d); /* the device keeps its copy */
        free(buf);
    }
    double t0 = rt_now_ms();
    ok = ok && dev->run(dev->ex, d);
    if (ok && stats)
        printf("%s: %d steps; first run %.3f ms\n", target, plan->n_steps, rt_now_ms() - t0);
    if (ok) {
        *outs = calloc((size_t)sig->n + 1, sizeof **outs);
        if (!*outs)
            ir_unreachable("out of memory");
        for (int i = 0; ok && i < sig->n; i++) {
            const rt_io_slot *o = &sig->slots[i];
            if (o->kind != RT_IO_OUTPUT)
                continue;
            const void *host = dev->output(dev->ex, o->name);
            if (!host) {
                ir_diag_error(d, -1, 0, 0, "%s: cannot read output '%s'", target, o->name);
                ok = false;
                break;
            }
            ir_tensor *t = ir_tensor_new(o->dtype, &o->shape);
            rt_convert_to_f64(o->dtype, host, t->data, (size_t)ir_shape_numel(&o->shape));
            char *name = strdup(o->name);
            if (!name)
                ir_unreachable("out of memory");
            (*outs)[(*n_outs)++] = (ir_named_tensor){name, t};
        }
    }
    return ok;
}
