/* run_exec.c — binding, running and reading back one model on a CPU executor, and the --stats
 * lines of such a run (run.h: eng_run_exec, eng_print_cpu_stats): what `loom run --target cpu`
 * and a `loom build` executable share. A file of its own so that an executable, which links
 * libloom.a, takes this without the compiler that run.c reaches. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run.h"
#include "io/safetensors.h"
#include "runtime/clock.h"

static char *xstrdup(const char *s)
{
    char *c = strdup(s);
    if (!c)
        ir_unreachable("out of memory");
    return c;
}

static const ir_tensor *find_value(const ir_named_tensor *vals, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (vals[i].name && strcmp(vals[i].name, name) == 0)
            return vals[i].t;
    return NULL;
}

bool eng_run_exec(rt_exec *e, const rt_io_sig *s, const ir_named_tensor *vals, int n_vals, int repeats,
                   bool profile, eng_run_times *times, ir_named_tensor **outs, int *n_outs, ir_diag *d)
{
    *outs = NULL;
    *n_outs = 0;
    memset(times, 0, sizeof *times);
    bool ok = true;
    void **bound = calloc((size_t)s->n + 1, sizeof *bound);
    if (!bound)
        ir_unreachable("out of memory");
    /* bind params and inputs in their declared dtypes */
    for (int i = 0; ok && i < s->n; i++) {
        const rt_io_slot *n = &s->slots[i];
        if (n->kind == RT_IO_OUTPUT)
            continue;
        const ir_tensor *t = find_value(vals, n_vals, n->name);
        if (!t) {
            ir_diag_error(d, -1, 0, 0, "missing value for %s '%s'", n->kind == RT_IO_PARAM ? "param" : "input",
                          n->name);
            ok = false;
            break;
        }
        size_t count = (size_t)ir_shape_numel(&n->shape);
        bound[i] = malloc(count * (size_t)ir_dtype_size(n->dtype) + 1);
        if (!bound[i])
            ir_unreachable("out of memory");
        rt_convert_from_f64(n->dtype, t->data, bound[i], count);
        ok = rt_exec_bind(e, n->name, bound[i], d);
    }
    double t0 = rt_now_ms();
    ok = ok && rt_exec_run(e, d);
    times->ms_first = rt_now_ms() - t0;
    double *ms = calloc((size_t)(repeats > 0 ? repeats : 0) + 1, sizeof *ms);
    if (!ms)
        ir_unreachable("out of memory");
    rt_exec_profile(e, profile);
    for (int r = 0; ok && r < repeats; r++) {
        double t = rt_now_ms();
        ok = rt_exec_run(e, d);
        ms[times->repeats++] = rt_now_ms() - t;
    }
    if (times->repeats) {
        rt_sort_doubles(ms, (size_t)times->repeats);
        times->ms_min = ms[0];
        int h = times->repeats / 2;
        times->ms_median = times->repeats % 2 ? ms[h] : (ms[h - 1] + ms[h]) / 2;
    }
    free(ms);
    if (ok) {
        *outs = calloc((size_t)s->n + 1, sizeof **outs);
        if (!*outs)
            ir_unreachable("out of memory");
        for (int i = 0; i < s->n; i++) {
            const rt_io_slot *o = &s->slots[i];
            if (o->kind != RT_IO_OUTPUT)
                continue;
            ir_tensor *t = ir_tensor_new(o->dtype, &o->shape);
            rt_convert_to_f64(o->dtype, rt_exec_output(e, o->name), t->data, (size_t)ir_shape_numel(&o->shape));
            (*outs)[(*n_outs)++] = (ir_named_tensor){xstrdup(o->name), t};
        }
    }
    for (int i = 0; i < s->n; i++)
        free(bound[i]);
    free(bound);
    return ok;
}

/* ---- stats ------------------------------------------------------------------------------- */
void eng_print_cpu_stats(const rt_plan *plan, const rt_exec *e, const rt_pool *pool, const rt_io_plan_info *info,
                           const eng_run_times *t)
{
    rt_exec_stats s = rt_exec_plan_stats(plan);
    printf("cpu: %d kernels, %d library calls (%d gemm, %d attention), %d copies, %d id checks per forward\n", s.kernels,
           s.gemms + s.attentions, s.gemms, s.attentions, s.copies, s.checks);
    if (info->layers > 0)
        printf("cpu: %d layers; kernels + library calls in layer 0: %d\n", info->layers, info->per_layer);
    double planned = (double)plan->arena_bytes, touched = (double)rt_exec_arena_touched(e);
    printf("cpu: arena %.2f MiB (%.2f MiB without reuse)\n", planned / 1048576.0,
           (double)info->unshared_bytes / 1048576.0);
    if (planned > 0)
        printf("cpu: activation peak planned %.2f MiB, measured %.2f MiB (arena pages touched: %.1f%% of the plan)\n",
               planned / 1048576.0, touched / 1048576.0, 100.0 * touched / planned);
    else
        printf("cpu: activation peak planned 0 MiB (no arena)\n");
    rt_exec_stats es = rt_exec_stats_get(e);
    int n = t->repeats > 0 ? t->repeats : 1;
    if (info->compile_ms >= 0)
        printf("cpu: compile %.1f ms, ", info->compile_ms);
    else
        printf("cpu: ");
    printf("forward %.2f ms (first), %.2f ms (median of %d more, profiled: kernels %.2f, gemm %.2f, attention %.2f, "
           "other %.2f), %d threads\n",
           t->ms_first, t->ms_median, t->repeats, es.ms_kernels / n, es.ms_gemms / n, es.ms_attentions / n,
           es.ms_other / n, rt_pool_size(pool));
}
