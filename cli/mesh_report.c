/* mesh_report.c — `loom check MODEL --mesh dp=2,tp=2,pp=2 [--microbatches M]`: what each rank
 * of the mesh will hold and send, before anything runs (docs/cluster.md, "The communication
 * report").
 *
 * Every rank's graph is built with the same passes `loom run --mesh` runs (pipeline, shard,
 * dce). Per rank: parameter memory (its slices), activation memory (the peak of live values in
 * graph order, each value live from its definition to its last use, and the sum without reuse),
 * and per mesh axis and communication op the count, the payload and the bytes this rank sends in
 * one forward step under a bandwidth-optimal algorithm: ring allreduce 2(n-1)/n of the buffer,
 * allgather and reduce-scatter (n-1)/n of the full buffer, send its buffer. Training adds the
 * backward's mirror images (an allreduce's gradient is an identity, an allgather's a
 * reduce-scatter) and dp's gradient allreduce. With pp > 1 the GPipe and 1F1B schedules of M
 * microbatches (default 2·pp) follow, with their bubble fractions.
 */
#include "cli.h"
#include "mesh.h"
#include "pass.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

static int64_t bytes_of(const ir_node *n) { return ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype); }

/* Bytes one rank sends for communication node n (a ring for the collectives). */
static double sent_bytes(const ir_node *n)
{
    if (n->op == OP_send)
        return (double)bytes_of(n);
    if (n->op == OP_recv)
        return 0;
    double T = (double)ir_attr_int(n, "ranks");
    switch (n->op) {
    case OP_allreduce: return 2 * (T - 1) / T * (double)bytes_of(n);
    case OP_allgather: return (T - 1) / T * (double)bytes_of(n);
    case OP_reduce_scatter: return (T - 1) / T * (double)bytes_of(n->in[0]);
    default: return 0;
    }
}

typedef struct {
    const char *axis;
    ir_opcode op;
    int count;
    double payload, sent;
} comm_row;

static void report_rank(const ir_graph *g, const pass_mesh *m, int rank)
{
    int64_t params = 0, n_params = 0, unshared = 0, live = 0, peak = 0;
    int *last = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    comm_row rows[32];
    int n_rows = 0;
    for (int i = 0; i < g->n_nodes; i++)
        last[i] = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_in; k++)
            last[g->nodes[i]->in[k]->id] = i;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_param) {
            params += bytes_of(n);
            n_params += ir_shape_numel(&n->shape);
            continue;
        }
        if (n->op != OP_output && n->op != OP_input && ir_ops[n->op].kind != OK_SOURCE) {
            unshared += bytes_of(n);
            live += bytes_of(n);
            peak = live > peak ? live : peak;
        }
        for (int k = 0; k < n->n_in; k++) {
            const ir_node *x = n->in[k];
            if (last[x->id] == i && x->op != OP_param && x->op != OP_input && ir_ops[x->op].kind != OK_SOURCE)
                live -= bytes_of(x);
        }
        if (ir_ops[n->op].kind == OK_COMM) {
            const char *axis = n->op == OP_send || n->op == OP_recv ? "pp" : ir_attr_str(n, "axis");
            int r = 0;
            while (r < n_rows && !(rows[r].op == n->op && strcmp(rows[r].axis, axis) == 0))
                r++;
            if (r == n_rows && n_rows < 32)
                rows[n_rows++] = (comm_row){axis, n->op, 0, 0, 0};
            if (r < 32) {
                rows[r].count++;
                rows[r].payload += (double)bytes_of(n);
                rows[r].sent += sent_bytes(n);
            }
        }
    }
    printf("  rank %d (", rank);
    for (int a = 0; a < m->n_axes; a++)
        printf("%s%s %d", a ? ", " : "", m->axis[a], pass_mesh_coord(m, rank, a));
    printf("): params %.2f MiB (%" PRId64 "), activations %.2f MiB peak (%.2f MiB without reuse)\n", mib((double)params),
           n_params, mib((double)peak), mib((double)unshared));
    double total = 0;
    for (int r = 0; r < n_rows; r++) {
        printf("    %-3s %-15s %4d x, payload %9.3f MiB, sent %9.3f MiB a step\n", rows[r].axis,
               ir_ops[rows[r].op].mnemonic, rows[r].count, mib(rows[r].payload), mib(rows[r].sent));
        total += rows[r].sent;
    }
    printf("    sent in all: %.3f MiB a forward step\n", mib(total));
    free(last);
}

void cli_mesh_report(const ir_graph *g0, const cli_opts *o, ir_diag *d)
{
    pass_mesh m;
    if (!pass_mesh_parse(o->mesh, 0, g0, &m, d))
        return;
    int microbatches = 0;
    for (int i = 0; i < o->n_named; i++)
        if (strcmp(o->named_key[i], "--microbatches") == 0) {
            char *end;
            long v = strtol(o->named_value[i], &end, 10);
            if (*end || v < 1 || v > 4096) {
                ir_diag_error(d, -1, 0, 0, "check: --microbatches expects an integer in [1, 4096], got '%s'",
                              o->named_value[i]);
                return;
            }
            microbatches = (int)v;
        }
    char buf[128];
    printf("mesh %s: %d rank%s (rank = row-major over the axes, the last fastest); one forward step:\n",
           pass_mesh_str(&m, buf, sizeof buf), m.world, m.world == 1 ? "" : "s");
    for (int r = 0; r < m.world; r++) {
        ir_graph *g = ir_graph_clone(g0);
        m.rank = r;
        pass_options po = pass_options_default();
        po.mesh = &m;
        bool ok = pass_run_pipeline(g, "pipeline,shard,dce,cse", &po, d);
        if (ok)
            report_rank(g, &m, r);
        ir_graph_free(g);
        if (!ok)
            return;
    }
    int pp = pass_mesh_size(&m, "pp");
    if (pp > 1)
        pipeline_schedule_print(stdout, pp, microbatches ? microbatches : 2 * pp);
}
