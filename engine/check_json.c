/* check_json.c — `loom check --json` (jobs.h): what `loom check` prints, as one JSON object for
 * tools and notebooks: the model's inputs and outputs, its params (total, bytes, per block
 * instance), forward FLOPs (ir/cost.c), activation memory (all values, the unfused peak, the
 * CPU plan's arena) and, with --mesh, every rank's memory and communication (mesh_report.c). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jobs.h"
#include "engine/metrics.h"
#include "engine/run.h"

static double bytes_of(const ir_node *n) { return (double)ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype); }

static void add_values(cJSON *to, const char *key, const ir_graph *g, ir_opcode op)
{
    cJSON *a = cJSON_AddArrayToObject(to, key);
    char ty[300];
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != op)
            continue;
        const ir_node *v = op == OP_output ? n->in[0] : n;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", n->name);
        cJSON_AddStringToObject(x, "type", ir_type_str(v->dtype, &v->shape, ty, sizeof ty));
        if (op == OP_input)
            cJSON_AddBoolToObject(x, "optional", n->optional);
        cJSON_AddItemToArray(a, x);
    }
}

static void add_params(cJSON *to, const ir_graph *g)
{
    double total = 0, bytes = 0;
    cJSON *p = cJSON_AddObjectToObject(to, "params"), *blocks = cJSON_CreateArray();
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_param)
            continue;
        double k = (double)ir_shape_numel(&n->shape);
        total += k;
        bytes += bytes_of(n);
        const char *scope = n->scope ? n->scope : "(model)";
        cJSON *b = NULL;
        for (cJSON *x = blocks->child; x && !b; x = x->next)
            if (strcmp(cJSON_GetObjectItem(x, "block")->valuestring, scope) == 0)
                b = x;
        if (!b) {
            b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "block", scope);
            cJSON_AddNumberToObject(b, "params", 0);
            cJSON_AddNumberToObject(b, "tensors", 0);
            cJSON_AddItemToArray(blocks, b);
        }
        cJSON *c = cJSON_GetObjectItem(b, "params"), *t = cJSON_GetObjectItem(b, "tensors");
        cJSON_SetNumberValue(c, c->valuedouble + k);
        cJSON_SetNumberValue(t, t->valuedouble + 1);
    }
    cJSON_AddNumberToObject(p, "count", total);
    cJSON_AddNumberToObject(p, "bytes", bytes);
    cJSON_AddItemToObject(p, "per_block", blocks);
}

/* every intermediate value, and the peak with buffers freed after their last use (unfused) */
static void add_activations(cJSON *to, const ir_graph *g, ir_diag *d)
{
    int *last = malloc(sizeof *last * ((size_t)g->n_nodes + 1));
    if (!last)
        ir_unreachable("out of memory");
    for (int i = 0; i < g->n_nodes; i++)
        last[i] = i;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            last[g->nodes[i]->in[k]->id] = i;
    double all = 0, live = 0, peak = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_param || n->op == OP_output)
            continue;
        all += bytes_of(n);
        live += bytes_of(n);
        peak = live > peak ? live : peak;
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *a = n->in[k];
            bool seen = false;
            for (int j = 0; j < k; j++)
                seen |= n->in[j] == a;
            if (!seen && last[a->id] == i && a->op != OP_param)
                live -= bytes_of(a);
        }
        if (last[i] == i)
            live -= bytes_of(n);
    }
    free(last);
    cJSON *m = cJSON_AddObjectToObject(to, "activations");
    cJSON_AddNumberToObject(m, "all_values_bytes", all);
    cJSON_AddNumberToObject(m, "peak_bytes_unfused", peak);
    ir_diag d1;
    ir_diag_init(&d1);
    int64_t arena = 0, unshared = 0;
    if (eng_cpu_plan_peak(g, &arena, &unshared, &d1)) {
        cJSON_AddNumberToObject(m, "cpu_plan_arena_bytes", (double)arena);
        cJSON_AddNumberToObject(m, "cpu_plan_unshared_bytes", (double)unshared);
    } else
        cJSON_AddStringToObject(m, "cpu_plan_error", d1.n_msg ? d1.msg[0].msg : "no plan");
    ir_diag_free(&d1);
    (void)d;
}

bool eng_check_json(const ir_graph *g, const eng_opts *o, ir_diag *d)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", g->name);
    cJSON_AddStringToObject(j, "file", o->file);
    cJSON_AddNumberToObject(j, "nodes", g->n_nodes);
    add_values(j, "inputs", g, OP_input);
    add_values(j, "outputs", g, OP_output);
    cJSON *axes = cJSON_AddArrayToObject(j, "mesh_axes");
    for (int a = 0; a < g->n_axes; a++)
        cJSON_AddItemToArray(axes, cJSON_CreateString(g->axis_name[a]));
    add_params(j, g);
    double flops = eng_graph_flops(g), tokens = 1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_input && ir_dtype_is_int(g->nodes[i]->dtype)) {
            tokens = (double)ir_shape_numel(&g->nodes[i]->shape);
            break;
        }
    cJSON *f = cJSON_AddObjectToObject(j, "forward_flops");
    cJSON_AddNumberToObject(f, "per_pass", flops);
    cJSON_AddNumberToObject(f, "per_token", flops / tokens);
    cJSON_AddNumberToObject(f, "tokens_per_pass", tokens);
    add_activations(j, g, d);
    if (o->mesh || o->train)
        eng_mesh_report_json(g, o, cJSON_AddObjectToObject(j, "mesh_report"), d);
    bool ok = ir_diag_ok(d);
    if (ok) {
        char *text = cJSON_Print(j);
        if (!text)
            ir_unreachable("out of memory");
        printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(j);
    return ok;
}
