/* cmd_init.c — `loom init MODEL [-D n=v]... -o W.safetensors [--seed N]`: writes every parameter
 * of the model, under its external name and in its dtype, initialized as its declaration says
 * (io/init.h: the values depend only on the seed and the parameter's name).
 * Prints one summary line: "wrote N parameters (E elements, B bytes) to W".
 */
#include "cli/cli.h"
#include "io/init.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const ir_node *const *params; /* params[i] belongs to entries[i] */
    const rt_st_entry *entries;
    uint64_t seed;
    rt_pool *pool;
} init_ctx;

/* Elements [first, first + count) of one parameter, on every thread (io/init.h). */
static bool fill_param(void *ctx_, const rt_st_entry *e, int64_t first, int64_t count, void *dst, ir_diag *d)
{
    (void)d;
    const init_ctx *ctx = ctx_;
    const ir_node *p = ctx->params[e - ctx->entries];
    rt_init_param_as(p, ctx->seed, (size_t)first, (size_t)count, p->dtype, dst, ctx->pool);
    return true;
}

int cmd_init(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    if (!o->out) {
        ir_diag_error(&d, -1, 0, 0, "init: missing -o FILE.safetensors (where to write the parameters)");
        return cli_finish(&d);
    }
    ir_graph *g = eng_load_graph(o, &d);
    if (!g)
        return cli_finish(&d);

    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += g->nodes[i]->op == OP_param;
    const ir_node **params = calloc((size_t)n + 1, sizeof *params);
    rt_st_entry *entries = calloc((size_t)n + 1, sizeof *entries);
    if (!params || !entries)
        ir_unreachable("out of memory");
    int k = 0;
    uint64_t elems = 0, bytes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *p = g->nodes[i];
        if (p->op != OP_param)
            continue;
        if (!rt_init_known(ir_attr_str(p, "init")))
            ir_diag_error(&d, p->loc.file, p->loc.line, p->loc.col,
                          "parameter '%s': unknown init '%s'", p->name, ir_attr_str(p, "init"));
        else if (!rt_st_dtype_name(p->dtype))
            ir_diag_error(&d, p->loc.file, p->loc.line, p->loc.col,
                          "parameter '%s': dtype %s cannot be stored in safetensors", p->name,
                          ir_dtype_name(p->dtype));
        params[k] = p;
        entries[k] = (rt_st_entry){p->name, p->dtype, p->shape, NULL};
        k++;
        elems += (uint64_t)ir_shape_numel(&p->shape);
        bytes += (uint64_t)ir_shape_numel(&p->shape) * (uint64_t)ir_dtype_size(p->dtype);
    }
    if (ir_diag_ok(&d)) {
        char seed[32];
        snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
        rt_st_meta meta[] = {{"format", "pt"}, {"loom.model", (char *)g->name}, {"loom.seed", seed}};
        init_ctx ctx = {params, entries, o->seed, rt_pool_new(0)};
        if (rt_st_write(o->out, entries, n, meta, 3, fill_param, &ctx, &d))
            printf("wrote %d parameters (%" PRIu64 " elements, %" PRIu64 " bytes) to %s\n", n, elems,
                   bytes, o->out);
        rt_pool_free(ctx.pool);
    }
    free(params);
    free(entries);
    ir_graph_free(g);
    return cli_finish(&d);
}
