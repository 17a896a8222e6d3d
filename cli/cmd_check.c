/* cmd_check.c — `loom check FILE [-D n=v]...`: builds and verifies a model, then summarizes it:
 * inputs and outputs, parameter count (total and per block instance), forward FLOPs per token,
 * and activation memory for the bound batch and sequence length; with --mesh (and --train), the
 * per-rank memory and communication report of engine/mesh_report.c. */
#include "cli/cli.h"
#include "engine/jobs.h"
#include "engine/run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

static int64_t node_bytes(const ir_node *n)
{
    return ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype);
}

/* Parameters grouped by the block instance that declared them, in order of first appearance. */
static void print_params(const ir_graph *g)
{
    int64_t total = 0, bytes = 0;
    int n_groups = 0;
    const char **group = calloc((size_t)g->n_nodes + 1, sizeof *group);
    int64_t *count = calloc((size_t)g->n_nodes + 1, sizeof *count);
    int *members = calloc((size_t)g->n_nodes + 1, sizeof *members);
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param)
            continue;
        int64_t k = ir_shape_numel(&n->shape);
        total += k;
        bytes += node_bytes(n);
        const char *scope = n->scope ? n->scope : "(model)";
        int j = 0;
        while (j < n_groups && strcmp(group[j], scope) != 0)
            j++;
        if (j == n_groups)
            group[n_groups++] = scope;
        count[j] += k;
        members[j]++;
    }
    printf("params: %" PRId64 "\n", total);
    printf("  %.1f MiB in their declared dtypes\n", mib((double)bytes));
    printf("  per block:\n");
    for (int j = 0; j < n_groups; j++)
        printf("    %-32s %12" PRId64 "  (%d tensors, %.2f%%)\n", group[j], count[j], members[j],
               total ? 100.0 * (double)count[j] / (double)total : 0.0);
    free(group);
    free(count);
    free(members);
}

/* Tokens a forward pass processes: the element count of the first integer input (token ids),
 * else 1. */
static int64_t tokens_per_pass(const ir_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_input && ir_dtype_is_int(g->nodes[i]->dtype))
            return ir_shape_numel(&g->nodes[i]->shape);
    return 1;
}

/* Activation memory: every intermediate value (what training keeps for the backward pass, before
 * any recomputation), and the peak with buffers freed after their last use (inference). Inputs
 * count; parameters do not. */
static void print_activations(const ir_graph *g)
{
    int *last_use = malloc(sizeof *last_use * ((size_t)g->n_nodes + 1));
    for (int i = 0; i < g->n_nodes; i++)
        last_use[i] = i;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            last_use[g->nodes[i]->in[k]->id] = i;
    int64_t all = 0, live = 0, peak = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_param || n->op == OP_output)
            continue;
        all += node_bytes(n);
        live += node_bytes(n);
        if (live > peak)
            peak = live;
        /* free operands whose last use is this node (and this node if nothing uses it) */
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *a = n->in[k];
            bool seen = false;
            for (int j = 0; j < k; j++)
                seen |= n->in[j] == a;
            if (!seen && last_use[a->id] == i && a->op != OP_param)
                live -= node_bytes(a);
        }
        if (last_use[i] == i)
            live -= node_bytes(n);
    }
    printf("activations: %.1f MiB for all intermediate values (kept for backward), "
           "peak %.1f MiB with reuse (forward only, unfused)\n",
           mib((double)all), mib((double)peak));
    free(last_use);
}

/* The CPU plan's arena (fused, lowered, memory-planned; eng_cpu_plan_peak): what `loom run
 * --stats` measures against. A graph the CPU path cannot lower gets the reason instead. */
static void print_cpu_plan_memory(const ir_graph *g)
{
    ir_diag d;
    ir_diag_init(&d);
    int64_t peak = 0, unshared = 0;
    if (eng_cpu_plan_peak(g, &peak, &unshared, &d))
        printf("activation memory (cpu plan): %.2f MiB (%.2f MiB without reuse)\n", mib((double)peak),
               mib((double)unshared));
    else
        printf("activation memory (cpu plan): not available (%s)\n", d.n_msg ? d.msg[0].msg : "no plan");
    ir_diag_free(&d);
}

int cmd_check(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = eng_load_graph(o, &d);
    if (!g)
        return cli_finish(&d);
    if (!ir_verify(g, &d)) {
        ir_graph_free(g);
        return cli_finish(&d);
    }
    /* --explain: every collective of the mesh with its time under a machine model */
    static const char *const explain_only[] = {"--bandwidth", "--latency", "--gpus-per-node"};
    for (size_t k = 0; k < sizeof explain_only / sizeof *explain_only; k++)
        if (eng_named(o, explain_only[k]) && !o->explain)
            ir_diag_error(&d, -1, 0, 0, "check: %s describes the time model of --explain: add --explain", explain_only[k]);
    if (o->explain && !o->mesh)
        ir_diag_error(&d, -1, 0, 0, "check: --explain lists the collectives of a mesh: add --mesh (e.g. --mesh tp=2)");
    else if (o->explain && o->json)
        ir_diag_error(&d, -1, 0, 0, "check: --explain prints a table; it does not go with --json");
    if (!ir_diag_ok(&d)) {
        ir_graph_free(g);
        return cli_finish(&d);
    }
    if (o->json) { /* engine/check_json.c */
        eng_check_json(g, o, &d);
        ir_graph_free(g);
        return cli_finish(&d);
    }
    char type[256];
    printf("model %s: %d nodes\n", g->name, g->n_nodes);
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input)
            printf("  input  %-20s %s%s\n", n->name, ir_type_str(n->dtype, &n->shape, type, sizeof type),
                   n->optional ? " (optional)" : "");
        if (n->op == OP_output)
            printf("  output %-20s %s\n", n->name,
                   ir_type_str(n->in[0]->dtype, &n->in[0]->shape, type, sizeof type));
    }
    if (g->n_axes) {
        printf("  mesh axes:");
        for (int i = 0; i < g->n_axes; i++)
            printf(" %s", g->axis_name[i]);
        printf("\n");
    }
    print_params(g);

    double flops = 0;
    for (int i = 0; i < g->n_nodes; i++)
        flops += ir_ops[g->nodes[i]->op].cost(g->nodes[i]);
    int64_t tokens = tokens_per_pass(g);
    printf("forward FLOPs: %.4g per pass, %.4g per token (%" PRId64 " tokens a pass)\n", flops,
           flops / (double)tokens, tokens);
    print_activations(g);
    print_cpu_plan_memory(g);
    if (o->mesh || o->train)
        eng_mesh_report(g, o, &d); /* engine/mesh_report.c */
    ir_graph_free(g);
    return cli_finish(&d);
}
