/* program.c — program.h's target-independent part: pipeline, lowering, memory plan, and the
 * calls into one backend (program_cpu.c, program_cuda.c, ...; program_targets.c picks it by
 * target name). No backend is referenced here, so a cluster executable links this file with
 * its own backend (program_table.c) and without LLVM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "codegen/codegen.h"
#include "codegen/lower.h"
#include "passes/pass.h"
#include "plan/plan_io.h"
#include "plan/plan_memory.h"
#include "engine/program.h"
#include "engine/profile.h"
#include "runtime/memory.h"
#include "runtime/progress.h"
#include "runtime/trace.h"

struct program_device {
    const program_backend *be;
    void *state;       /* the backend's device */
    char *target;
};

struct program_buf {
    program_device *dev;
    void *mem;
    size_t bytes;
    bool borrowed; /* the caller's host memory (program_buf_host): not freed here */
};

struct program {
    const program_backend *be;
    void *state;
    program_device *dev; /* NULL: the backend's old create path */
    bool own_dev;        /* program_new made dev for this program alone */
    ir_graph *g;
    cg_lowered low;
    double compile_ms;
    /* program_follow_host: the host memory of every bind, uploaded again before each run */
    bool follow_host;
    int n_follow;
    struct followed {
        char *name;
        const void *data;
    } *follow;
};

/* After each pass: --profile's compile slice, and the progress line on a terminal. */
static void on_pass(void *ctx, const char *pass, double t0, double t1)
{
    char name[96];
    snprintf(name, sizeof name, "pass %s", pass);
    eng_trace_span("compile", name, "", t0, t1);
    snprintf(name, sizeof name, "(pass %s done)", pass);
    rt_progress_update(ctx, name);
}

/* program_lower with a progress line to update (program_new_on's, which goes on into the JIT) */
static bool lower(const ir_graph *g, const char *pipeline, bool f32_library, ir_graph **fused, cg_lowered *low,
                  rt_progress *progress, ir_diag *d)
{
    *fused = ir_graph_clone(g);
    pass_options po = pass_options_default();
    po.f32_library = f32_library;
    po.on_pass = on_pass;
    po.on_pass_ctx = progress;
    bool ok = pass_run_pipeline(*fused, pipeline ? pipeline : pass_default_pipeline(), &po, d);
    rt_progress_update(progress, "(lowering to a plan)");
    double t0 = rt_now_ms();
    ok = ok && cg_lower(*fused, low, d);
    double t1 = rt_now_ms();
    if (ok)
        pass_plan_memory(&low->plan);
    if (ok && rt_trace_active()) {
        char args[96];
        snprintf(args, sizeof args, "\"steps\":%d,\"kernels\":%d", low->plan.n_steps, low->n_kernels);
        eng_trace_span("compile", "codegen: lower to plan and kernel IR", args, t0, t1);
        eng_trace_span("compile", "plan memory", "", t1, rt_now_ms());
    }
    return ok;
}

bool program_lower(const ir_graph *g, const char *pipeline, bool f32_library, ir_graph **fused, cg_lowered *low,
                   ir_diag *d)
{
    rt_progress progress;
    rt_progress_begin(&progress, "compiling");
    bool ok = lower(g, pipeline, f32_library, fused, low, &progress, d);
    rt_progress_end(&progress);
    return ok;
}

/* The arena and the output buffers a run allocates, against host memory (a device program
 * keeps host copies of its outputs too): a model too large for the machine is refused here,
 * by name, before anything is allocated. */
static bool fits_host(const rt_plan *plan, ir_diag *d)
{
    int64_t bytes = plan->arena_bytes;
    for (int i = 0; i < plan->n_bufs; i++)
        if (plan->bufs[i].kind == RT_BUF_OUTPUT)
            bytes += plan->bufs[i].numel * ir_dtype_size(plan->bufs[i].dtype);
    return rt_host_alloc_ok(bytes, "the activations and outputs of one run", d);
}

/* A program on be: on dev when given, else on a device of its own (backends with devices) or
 * through the backend's create path. */
static program *new_program(const program_backend *be, program_device *dev, const char *target, const ir_graph *g,
                            const char *pipeline, rt_pool *pool, ir_diag *d)
{
    double t0 = rt_now_ms();
    program *p = calloc(1, sizeof *p);
    if (!p)
        ir_unreachable("out of memory");
    p->be = be;
    rt_progress progress;
    rt_progress_begin(&progress, "compiling");
    bool ok = lower(g, pipeline, be->f32_library, &p->g, &p->low, &progress, d) && fits_host(&p->low.plan, d);
    double t1 = rt_now_ms();
    char detail[96];
    snprintf(detail, sizeof detail, "(%d kernels for %s)", p->low.n_kernels, target ? target : be->target);
    rt_progress_update(&progress, detail);
    if (ok && be->supported)
        ok = be->supported(&p->low.plan, d);
    if (ok && !dev && be->create_dev) {
        ok = (dev = program_device_open_on(be, target, d)) != NULL;
        p->own_dev = ok;
    }
    p->dev = dev;
    if (ok) {
        p->state = dev ? be->create_dev(dev->state, &p->low.plan, p->low.kernels, p->low.n_kernels, pool, d)
                   : be->create_on ? be->create_on(target, &p->low.plan, p->low.kernels, p->low.n_kernels, d)
                                   : be->create(&p->low.plan, p->low.kernels, p->low.n_kernels, pool, d);
        ok = p->state != NULL;
    }
    rt_progress_end(&progress);
    if (!ok) {
        program_free(p);
        return NULL;
    }
    double t2 = rt_now_ms();
    p->compile_ms = t2 - t0;
    if (rt_trace_active()) {
        /* --profile: the compile phases as slices, and every run of the program profiled */
        char name[96], args[96];
        snprintf(name, sizeof name, "kernels: %s (JIT or load)", target ? target : be->target);
        snprintf(args, sizeof args, "\"kernels\":%d", p->low.n_kernels);
        eng_trace_span("compile", name, args, t1, t2);
        snprintf(name, sizeof name, "compile %s", target ? target : be->target);
        eng_trace_span("compile", name, args, t0, t2);
        program_profile(p, true);
    }
    return p;
}

program *program_new_on(const program_backend *be, const char *target, const ir_graph *g, const char *pipeline,
                        rt_pool *pool, ir_diag *d)
{
    return new_program(be, NULL, target, g, pipeline, pool, d);
}

program *program_new_device(program_device *dev, const ir_graph *g, const char *pipeline, rt_pool *pool, ir_diag *d)
{
    return new_program(dev->be, dev, dev->target, g, pipeline, pool, d);
}

/* ---- devices ---------------------------------------------------------------------------------- */

program_device *program_device_open_on(const program_backend *be, const char *target, ir_diag *d)
{
    if (!be->dev_open) {
        ir_diag_error(d, -1, 0, 0, "target '%s': programs cannot share its memory", target);
        return NULL;
    }
    void *state = be->dev_open(target, d);
    if (!state)
        return NULL;
    program_device *dev = calloc(1, sizeof *dev);
    if (!dev || !(dev->target = strdup(target)))
        ir_unreachable("out of memory");
    dev->be = be;
    dev->state = state;
    return dev;
}

program_device *program_device_open(const char *target, ir_diag *d)
{
    const program_backend *be = program_backend_of(target, d);
    return be ? program_device_open_on(be, target, d) : NULL;
}

void program_device_close(program_device *dev)
{
    if (!dev)
        return;
    dev->be->dev_close(dev->state);
    free(dev->target);
    free(dev);
}

const char *program_device_target(const program_device *dev) { return dev->target; }
bool program_device_is_host(const program_device *dev) { return dev->be->exec != NULL; }
bool program_device_sync(program_device *dev, ir_diag *d) { return dev->be->dev_sync(dev->state, d); }
rt_xfer program_device_xfer(const program_device *dev) { return dev->be->dev_xfer(dev->state); }

program_buf *program_buf_new(program_device *dev, size_t bytes, ir_diag *d)
{
    void *mem = dev->be->buf_alloc(dev->state, bytes, d);
    if (!mem)
        return NULL;
    program_buf *b = calloc(1, sizeof *b);
    if (!b)
        ir_unreachable("out of memory");
    *b = (program_buf){dev, mem, bytes, false};
    return b;
}

program_buf *program_buf_host(program_device *dev, void *host, size_t bytes)
{
    if (!program_device_is_host(dev))
        return NULL;
    program_buf *b = calloc(1, sizeof *b);
    if (!b)
        ir_unreachable("out of memory");
    *b = (program_buf){dev, host, bytes, true};
    return b;
}

void program_buf_free(program_buf *b)
{
    if (!b)
        return;
    if (!b->borrowed)
        b->dev->be->buf_free(b->dev->state, b->mem);
    free(b);
}

size_t program_buf_size(const program_buf *b) { return b->bytes; }

static bool buf_range(const program_buf *b, size_t off, size_t bytes)
{
    if (off > b->bytes || bytes > b->bytes - off)
        ir_unreachable("program_buf: a copy outside the buffer");
    return true;
}

bool program_buf_write(program_buf *b, size_t off, const void *src, size_t bytes, ir_diag *d)
{
    return buf_range(b, off, bytes) && b->dev->be->buf_write(b->dev->state, (rt_mem){b->mem, off}, src, bytes, false, d);
}

bool program_buf_write_async(program_buf *b, size_t off, const void *src, size_t bytes, ir_diag *d)
{
    return buf_range(b, off, bytes) && b->dev->be->buf_write(b->dev->state, (rt_mem){b->mem, off}, src, bytes, true, d);
}

bool program_buf_read(const program_buf *b, size_t off, void *dst, size_t bytes, ir_diag *d)
{
    return buf_range(b, off, bytes) && b->dev->be->buf_read(b->dev->state, (rt_mem){b->mem, off}, dst, bytes, d);
}

static rt_walker *walker_of(program *p)
{
    if (!p->be->walker)
        ir_unreachable("program: this backend has no plan walker");
    return p->be->walker(p->state);
}

/* b is on p's device (a program without one of its own cannot take device buffers). */
static bool same_device(const program *p, const program_buf *b, const char *name, ir_diag *d)
{
    if (p->dev && p->dev == b->dev)
        return true;
    ir_diag_error(d, -1, 0, 0, "program: binding '%s' to a buffer of another device", name);
    return false;
}

bool program_bind_buf(program *p, const char *name, program_buf *b, size_t off, ir_diag *d)
{
    return same_device(p, b, name, d) && rt_walker_bind_mem(walker_of(p), name, false, (rt_mem){b->mem, off}, d);
}

/* The buffer of kind k called name in plan p, -1. */
static int plan_buf(const rt_plan *p, rt_buf_kind k, const char *name)
{
    for (int i = 0; i < p->n_bufs; i++)
        if (p->bufs[i].kind == k && strcmp(p->bufs[i].name, name) == 0)
            return i;
    return -1;
}

/* Kernel k (plan kernel pk) reads buffer x, and only at index nodes where it stores y. */
static bool reads_where_it_writes(const cg_kernel *k, const rt_plan_kernel *pk, int x, int y)
{
    if (k->n_loops > 0 || k->seq)
        return false;
    bool any = false;
    for (int i = 0; i < k->n_nodes; i++) {
        const cg_node *n = &k->nodes[i];
        if (n->op != CG_LOAD || pk->args[n->a].buf != x)
            continue;
        bool same = false; /* a store of y at this very index node */
        for (int j = 0; j < k->n_nodes; j++) {
            const cg_node *s = &k->nodes[j];
            same |= s->op == CG_STORE && pk->args[s->a].buf == y && pk->args[s->a].offset == pk->args[n->a].offset &&
                    s->in[0] == n->in[0];
        }
        if (!same)
            return false;
        any = true;
    }
    return any;
}

bool program_in_place(const program *p, const char *name)
{
    const rt_plan *pl = &p->low.plan;
    int x = plan_buf(pl, RT_BUF_PARAM, name), y = plan_buf(pl, RT_BUF_OUTPUT, name);
    if (x < 0 || y < 0 || pl->bufs[x].dtype != pl->bufs[y].dtype || pl->bufs[x].numel != pl->bufs[y].numel)
        return false;
    for (int s = 0; s < pl->n_steps; s++) {
        const rt_plan_step *st = &pl->steps[s];
        const rt_plan_kernel *ks[RT_PLAN_MAX_LIB + 1];
        int nk = rt_plan_step_kernels(st, ks); /* a library step's kernels name all its buffers */
        bool reads = (st->kind == RT_STEP_GEMM && (st->gemm.a.buf == x || st->gemm.b.buf == x || st->gemm.c.buf == x ||
                                                   st->gemm.bias.buf == x || st->gemm.b_scales.buf == x)) ||
                     (st->kind == RT_STEP_COPY && (st->copy.src.buf == x || st->copy.dst.buf == x)) ||
                     (st->kind == RT_STEP_CHECK_IDS && st->check.ids.buf == x);
        for (int i = 0; i < nk; i++)
            for (int a = 0; a < ks[i]->n_args; a++)
                reads |= ks[i]->args[a].buf == x;
        if (!reads)
            continue;
        if (st->kind != RT_STEP_KERNEL)
            return false;
        const cg_kernel *k = NULL;
        for (int j = 0; j < p->low.n_kernels && !k; j++)
            if (strcmp(p->low.kernels[j]->name, st->kernel.name) == 0)
                k = p->low.kernels[j];
        if (!k || !reads_where_it_writes(k, &st->kernel, x, y))
            return false;
    }
    return true;
}

bool program_bind_output_buf(program *p, const char *name, program_buf *b, size_t off, ir_diag *d)
{
    return same_device(p, b, name, d) && rt_walker_bind_mem(walker_of(p), name, true, (rt_mem){b->mem, off}, d);
}

bool program_bind_async(program *p, const char *name, const void *data, ir_diag *d)
{
    return rt_walker_bind_async(walker_of(p), name, data, d);
}

void program_set_async(program *p, bool on) { rt_walker_set_async(walker_of(p), on); }

void program_set_step_hook(program *p, void (*fn)(void *ctx, int step), void *ctx)
{
    rt_walker_set_step_hook(walker_of(p), fn, ctx);
}

int program_output_step(const program *p, const char *name)
{
    const rt_plan *plan = &p->low.plan;
    int *first = malloc(sizeof(int) * ((size_t)plan->n_bufs + 1)), *last = malloc(sizeof(int) * ((size_t)plan->n_bufs + 1));
    if (!first || !last)
        ir_unreachable("out of memory");
    rt_plan_live_ranges(plan, first, last);
    int step = -1;
    for (int i = 0; i < plan->n_bufs; i++)
        if (plan->bufs[i].kind == RT_BUF_OUTPUT && strcmp(plan->bufs[i].name, name) == 0)
            step = last[i];
    free(first);
    free(last);
    return step;
}

void program_free(program *p)
{
    if (!p)
        return;
    if (p->state)
        p->be->destroy(p->state);
    if (p->own_dev)
        program_device_close(p->dev);
    cg_lowered_free(&p->low);
    ir_graph_free(p->g);
    for (int i = 0; i < p->n_follow; i++)
        free(p->follow[i].name);
    free(p->follow);
    free(p);
}

const char *program_target(const program *p) { return p->be->target; }
const ir_graph *program_graph(const program *p) { return p->g; }
const rt_plan *program_plan(const program *p) { return &p->low.plan; }
rt_exec *program_exec(program *p) { return p->be->exec ? p->be->exec(p->state) : NULL; }
double program_compile_ms(const program *p) { return p->compile_ms; }

const ir_node *program_find(const program *p, ir_opcode op, const char *name)
{
    for (int i = 0; i < p->g->n_nodes; i++) {
        const ir_node *n = p->g->nodes[i];
        if (n->op == op && n->name && strcmp(n->name, name) == 0)
            return n;
    }
    return NULL;
}

void program_follow_host(program *p, bool on) { p->follow_host = on && !p->be->exec; }

static void remember_bind(program *p, const char *name, const void *data)
{
    for (int i = 0; i < p->n_follow; i++)
        if (strcmp(p->follow[i].name, name) == 0) {
            p->follow[i].data = data;
            return;
        }
    struct followed *f = realloc(p->follow, ((size_t)p->n_follow + 1) * sizeof *f);
    char *copy = strdup(name);
    if (!f || !copy)
        ir_unreachable("out of memory");
    p->follow = f;
    p->follow[p->n_follow++] = (struct followed){copy, data};
}

bool program_bind(program *p, const char *name, const void *data, ir_diag *d)
{
    if (!p->be->bind(p->state, name, data, d))
        return false;
    if (p->follow_host)
        remember_bind(p, name, data);
    return true;
}

bool program_run(program *p, ir_diag *d)
{
    for (int i = 0; i < p->n_follow; i++)
        if (!p->be->bind(p->state, p->follow[i].name, p->follow[i].data, d))
            return false;
    return p->be->run(p->state, d);
}

void *program_output(program *p, const char *name) { return p->be->output(p->state, name); }

void program_profile(program *p, bool on)
{
    if (p->be->profile)
        p->be->profile(p->state, on);
}

rt_exec_stats program_stats(const program *p)
{
    if (p->be->stats)
        return p->be->stats(p->state);
    return rt_exec_plan_stats(&p->low.plan);
}

void program_kernel_symbol(const cg_kernel *k, char *buf, size_t n)
{
    /* k's text with its arguments named by position (a0, a1, ...) instead of by plan buffer:
     * the same code whichever buffers a plan binds to it */
    cg_kernel copy = *k;
    copy.args = calloc((size_t)k->n_args + 1, sizeof *copy.args);
    char (*names)[16] = calloc((size_t)k->n_args + 1, sizeof *names);
    if (!copy.args || !names)
        ir_unreachable("out of memory");
    for (int a = 0; a < k->n_args; a++) {
        copy.args[a] = k->args[a];
        snprintf(names[a], sizeof names[a], "a%d", a);
        copy.args[a].name = names[a];
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        ir_unreachable("out of memory");
    cg_kernel_print(&copy, f);
    fclose(f);
    free(copy.args);
    free(names);
    /* the text starts "kernel NAME(": hash from the '(' on */
    const char *from = strchr(text, '(');
    from = from ? from : text;
    snprintf(buf, n, "lk_%016llx", (unsigned long long)rt_fnv1a64(from, len - (size_t)(from - text)));
    free(text);
}
