/* mesh_exec.c — mesh_exec.h: one rank's local graph run as segments between its
 * communication ops (docs/cluster.md, "Running").
 *
 * The communication ops split the rank's graph into segments: each segment is a program
 * (engine/program.h; compiled by the caller's mesh_compile_fn: for --target cpu, cuda or opencl,
 * or from kernels linked into a cluster executable) whose inputs are the values it needs from
 * earlier segments, kept in host memory (a device's values are staged through it); between
 * segments the communication op runs through collectives/coll.h, on a sub-communicator per
 * mesh axis (allreduce, allgather and reduce-scatter along any dim) or the world (send/recv
 * between pipeline stages). A training graph's segments are also cut where its backward half
 * begins, so micro-batches can run their halves in a pipeline schedule's order, and with V > 1
 * model chunks a stage (interleaved 1F1B) where a chunk's part of a half begins
 * (pipeline_chunks): a micro-batch then runs chunk by chunk, each a unit of the schedule.
 */
#include "runtime/clock.h"
#include "collectives/coll.h"
#include "passes/comm_match.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "passes/pass.h"
#include "engine/program.h"
#include "engine/profile.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int first, last;  /* node range [first, last] of the local graph; comm: first == last */
    bool comm;
    bool backward;    /* in a micro-batch's backward half */
    int chunk;        /* the stage's model chunk running it (interleaved 1F1B; else 0) */
    program *p;       /* segment: its CPU program (NULL when it computes nothing used later) */
    int *io;          /* segment: per node of p's graph, the local graph's node that a param,
                         input or output "v<ID>" stands for (-1: none), found once at compile */
} run_step;

struct mesh_run {
    ir_graph *g;      /* the rank's local graph */
    void **val;       /* per node: its value in the node's dtype (malloc'd), in the current slot */
    void ***slot;     /* per micro-batch slot, its values (params and the backward half's
                         values: one buffer shared by all, shared_value) */
    int n_slots;
    bool *backward;   /* per node: runs in the backward half (autodiff's nodes no forward needs) */
    int *chunk;       /* per node: the model chunk running it (pipeline_chunks; all 0 when V = 1) */
    bool *apart;      /* per node: a backward value another chunk reads (kept a slot each) */
    int n_chunks;     /* V */
    int cur_chunk;    /* the chunk whose backward just ran (mesh_exec_output); -1: all */
    bool *borrowed;   /* per node: a shared value whose buffer is not ours (a segment program's
                         output, or the caller's params: mesh_exec_bind) */
    run_step *steps;
    int n_steps;
    mesh_compile_fn compile; /* a segment's graph -> its program */
    void *compile_ctx;
    rt_pool *pool;
    coll_comm *world;
    coll_comm *axis[IR_MAX_MESH_AXES];
    pass_mesh mesh;
    double comm_ms;
    int64_t comm_bytes; /* bytes this rank sent into collectives */
    ir_diag *d;
    void (*on_step)(void *ctx, mesh_run *R, int step); /* mesh_exec_set_step_hook */
    void *on_step_ctx;
    bool hook_now;    /* the last micro-batch's backward half is running */
};

static size_t bytes_of(const ir_node *n) { return (size_t)ir_shape_numel(&n->shape) * (size_t)ir_dtype_size(n->dtype); }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Whether the inputs file (NULL: none given) holds name. */
static bool load_source(mesh_run *R, const ir_node *n, const rt_st_file *f, const char *option)
{
    char full[512];
    mesh_slice sl[MESH_MAX_SLICES];
    int n_sl = 0;
    mesh_slice_parse(n->name, full, sizeof full, sl, &n_sl);
    const rt_st_tensor *t = f ? rt_st_find(f, full) : NULL;
    if (!t) {
        ir_diag_error(R->d, -1, 0, 0, "%s: missing %s '%s'", f ? f->path : option,
                      n->op == OP_param ? "parameter" : "input", full);
        return false;
    }
    ir_shape want = mesh_slice_shape(&t->shape, sl, n_sl);
    bool same_class = ir_dtype_is_float(n->dtype) == ir_dtype_is_float(t->dtype);
    if (!same_class || !ir_shape_eq(&want, &n->shape)) {
        char a[300], b[300];
        ir_diag_error(R->d, -1, 0, 0, "%s: %s '%s': expected %s for this rank's part, got %s in the file", f->path,
                      n->op == OP_param ? "parameter" : "input", n->name, ir_type_str(n->dtype, &n->shape, a, sizeof a),
                      ir_type_str(t->dtype, &t->shape, b, sizeof b));
        return false;
    }
    int64_t total = ir_shape_numel(&t->shape), mine = ir_shape_numel(&n->shape);
    double *all = xmalloc(sizeof(double) * (size_t)total), *part = xmalloc(sizeof(double) * (size_t)mine);
    rt_convert_to_f64(t->dtype, t->data, all, (size_t)total);
    mesh_slice_extract(all, &t->shape, sl, n_sl, part);
    R->val[n->id] = xmalloc(bytes_of(n));
    rt_convert_from_f64(n->dtype, part, R->val[n->id], (size_t)mine);
    free(all);
    free(part);
    return true;
}

/* Nodes [first, last] as a graph of their own: values from outside become inputs "v<ID>"
 * (params and inputs keep their names), values used after `last` become outputs "v<ID>". */
static ir_graph *segment_graph(const ir_graph *L, int first, int last, bool *any_output)
{
    ir_graph *g = ir_graph_new(L->name);
    ir_node **map = calloc((size_t)L->n_nodes + 1, sizeof *map);
    bool *used_later = calloc((size_t)L->n_nodes + 1, sizeof *used_later);
    if (!map || !used_later)
        ir_unreachable("out of memory");
    for (int i = last + 1; i < L->n_nodes; i++)
        for (int k = 0; k < L->nodes[i]->n_in; k++)
            used_later[L->nodes[i]->in[k]->id] = true;
    for (int i = first; i <= last; i++) /* an output amid the segment (a training graph's loss) */
        if (L->nodes[i]->op == OP_output)
            used_later[L->nodes[i]->in[0]->id] = true;
    for (int i = first; i <= last; i++) {
        const ir_node *s = L->nodes[i];
        if (s->op == OP_param || s->op == OP_input || s->op == OP_output)
            continue; /* params and inputs come in as operands need them; outputs are the run's */
        ir_node *ins[64];
        for (int k = 0; k < s->n_in && k < 64; k++) {
            const ir_node *x = s->in[k];
            if (!map[x->id]) {
                ir_node *in = ir_node_add(g, x->op == OP_param ? OP_param : OP_input, 0, NULL, x->loc);
                in->dtype = x->dtype;
                in->shape = x->shape;
                char name[64];
                snprintf(name, sizeof name, "v%d", x->id);
                in->name = ir_graph_strdup(g, x->op == OP_param || x->op == OP_input ? x->name : name);
                if (x->op == OP_param)
                    ir_attr_set_str(g, in, "init", "zeros");
                map[x->id] = in;
            }
            ins[k] = map[x->id];
        }
        ir_node *n = ir_node_add(g, s->op, s->n_in, ins, s->loc);
        n->dtype = s->dtype;
        n->shape = s->shape;
        for (int k = 0; k < ir_op_nattrs(s->op); k++) {
            char an[64];
            ir_op_attr_name(s->op, k, an, sizeof an);
            n->attr[k] = s->attr[k];
            if (s->attr[k].kind == AK_STR && s->attr[k].s)
                n->attr[k].s = ir_graph_strdup(g, s->attr[k].s);
            if (s->attr[k].kind == AK_INTS)
                ir_attr_set_ints(g, n, an, s->attr[k].n, s->attr[k].ints);
        }
        map[i] = n;
    }
    *any_output = false;
    for (int i = first; i <= last; i++)
        if (used_later[i] && map[i]) {
            ir_node *o = ir_node_add(g, OP_output, 1, &map[i], L->nodes[i]->loc);
            char name[64];
            snprintf(name, sizeof name, "v%d", i);
            o->name = ir_graph_strdup(g, name);
            o->dtype = DT_VOID;
            *any_output = true;
        }
    free(map);
    free(used_later);
    return g;
}

static bool coll_dtype_of(ir_dtype dt, coll_dtype *out)
{
    switch (dt) {
    case DT_F32: *out = COLL_F32; return true;
    case DT_F64: *out = COLL_F64; return true;
    case DT_I32: *out = COLL_I32; return true;
    case DT_I64: *out = COLL_I64; return true;
    default: return false;
    }
}

/* outer = product of dims before d; chunk = bytes from d on */
static void split_at(const ir_node *x, int d, size_t *outer, size_t *chunk)
{
    *outer = 1;
    *chunk = (size_t)ir_dtype_size(x->dtype);
    for (int i = 0; i < x->shape.rank; i++)
        *(i < d ? outer : chunk) *= (size_t)x->shape.dim[i];
}

/* One buffer for every slot: a param, and a value of the backward half — micro-batches run
 * their backward halves (chunks' parts) one at a time and the caller reads the outputs right
 * after, so only the forward half's values (what a backward needs later) and backward values
 * read by another chunk take a slot each. */
static bool shared_value(const mesh_run *R, int id)
{
    return R->g->nodes[id]->op == OP_param || (R->backward && R->backward[id] && !(R->apart && R->apart[id]));
}

/* Points shared value id, in every slot, at memory someone else owns. */
static void borrow_shared(mesh_run *R, int id, void *p)
{
    if (!R->borrowed[id])
        free(R->val[id]);
    R->val[id] = p;
    for (int k = 0; k < R->n_slots; k++)
        R->slot[k][id] = p;
    R->borrowed[id] = true;
}

/* Node id's buffer in the current slot, allocated on first use (a shared one for all slots). */
static void *value_buffer(mesh_run *R, int id)
{
    if (!R->val[id]) {
        R->val[id] = xmalloc(bytes_of(R->g->nodes[id]));
        for (int k = 0; shared_value(R, id) && k < R->n_slots; k++)
            R->slot[k][id] = R->val[id];
    }
    return R->val[id];
}

static bool run_comm(mesh_run *R, const ir_node *n)
{
    const ir_node *x = n->n_in ? n->in[0] : n;
    coll_dtype dt;
    if (!coll_dtype_of(n->dtype, &dt)) {
        ir_diag_error(R->d, -1, 0, 0, "%s of %s values is not supported", ir_ops[n->op].mnemonic, ir_dtype_name(n->dtype));
        return false;
    }
    value_buffer(R, n->id);
    size_t count = (size_t)ir_shape_numel(&x->shape);
    coll_comm *c = R->world;
    int T = 1;
    if (n->op != OP_send && n->op != OP_recv) {
        int a = pass_mesh_axis(&R->mesh, ir_attr_str(n, "axis"));
        c = a >= 0 ? R->axis[a] : NULL;
        T = a >= 0 ? R->mesh.size[a] : 0;
        if (!c || T != ir_attr_int(n, "ranks"))
            ir_unreachable("run_mesh: a collective over an axis the mesh lacks");
    }
    coll_status st = COLL_OK;
    double t0 = rt_now_ms();
    switch (n->op) {
    case OP_allreduce: {
        const char *op = ir_attr_str(n, "op");
        st = coll_allreduce(c, R->val[x->id], R->val[n->id], count, dt,
                            strcmp(op, "max") == 0 ? COLL_MAX : strcmp(op, "min") == 0 ? COLL_MIN : COLL_SUM);
        break;
    }
    case OP_allgather: {
        /* gathered as [rank][outer][chunk], wanted as [outer][rank][chunk] */
        size_t outer, chunk;
        split_at(x, (int)ir_attr_int(n, "dim") < 0 ? (int)ir_attr_int(n, "dim") + x->shape.rank : (int)ir_attr_int(n, "dim"),
                 &outer, &chunk);
        char *tmp = xmalloc(bytes_of(n));
        st = coll_allgather(c, R->val[x->id], tmp, count, dt);
        for (int r = 0; r < T; r++)
            for (size_t o = 0; o < outer; o++)
                memcpy((char *)R->val[n->id] + (o * (size_t)T + (size_t)r) * chunk, tmp + ((size_t)r * outer + o) * chunk,
                       chunk);
        free(tmp);
        break;
    }
    case OP_reduce_scatter: {
        /* block r of dim d contiguous first: [outer][rank][part] -> [rank][outer][part] */
        size_t outer, chunk;
        int d = (int)ir_attr_int(n, "dim");
        split_at(x, d < 0 ? d + x->shape.rank : d, &outer, &chunk);
        size_t part = chunk / (size_t)T;
        char *tmp = xmalloc(bytes_of(x));
        for (int r = 0; r < T; r++)
            for (size_t o = 0; o < outer; o++)
                memcpy(tmp + ((size_t)r * outer + o) * part, (char *)R->val[x->id] + o * chunk + (size_t)r * part, part);
        st = coll_reduce_scatter(c, tmp, R->val[n->id], count / (size_t)T, dt, COLL_SUM);
        free(tmp);
        break;
    }
    case OP_send:
        memcpy(R->val[n->id], R->val[x->id], bytes_of(n));
        st = coll_send_async(c, R->val[x->id], count, dt, (int)ir_attr_int(n, "peer"), (int)ir_attr_int(n, "tag"));
        break;
    case OP_recv:
        st = coll_recv(c, R->val[n->id], (size_t)ir_shape_numel(&n->shape), dt, (int)ir_attr_int(n, "peer"),
                       (int)ir_attr_int(n, "tag"));
        break;
    default: ir_unreachable("run_mesh: not a communication op");
    }
    R->comm_ms += rt_now_ms() - t0;
    R->comm_bytes += (int64_t)bytes_of(x);
    if (st != COLL_OK) {
        ir_diag_error(R->d, -1, 0, 0, "rank %d: %s failed: %s", R->mesh.rank, ir_ops[n->op].mnemonic,
                      coll_error_message(c));
        return false;
    }
    return true;
}

/* The backward half: autodiff's nodes (and the communication of their values) that no
 * forward node needs — a forward node needs its operands in the forward half, so one sweep
 * from the end moves what CSE may have shared back to the forward. Per node, malloc'd. */
bool *mesh_exec_backward_half(const ir_graph *L) { return comm_backward_half(L); }

bool mesh_exec_match(const ir_graph *L, const pass_mesh *m, int micro, bool one_f_one_b, coll_comm *world,
                     ir_diag *d)
{
    comm_seq mine = comm_seq_of(L, m, micro, one_f_one_b);
    int W = m->world;
    int64_t n = mine.n, *counts = xmalloc(sizeof(int64_t) * (size_t)W), most = 0;
    bool ok = coll_allgather(world, &n, counts, 1, COLL_I64) == COLL_OK;
    for (int r = 0; ok && r < W; r++)
        most = counts[r] > most ? counts[r] : most;
    size_t words = (size_t)(most ? most : 1) * COMM_EVENT_WORDS;
    int64_t *sendbuf = xmalloc(sizeof(int64_t) * words), *all = ok ? xmalloc(sizeof(int64_t) * words * (size_t)W) : NULL;
    memset(sendbuf, 0, sizeof(int64_t) * words);
    if (mine.n)
        memcpy(sendbuf, mine.ev, sizeof(comm_event) * (size_t)mine.n);
    ok = ok && coll_allgather(world, sendbuf, all, words, COLL_I64) == COLL_OK;
    if (!ok)
        ir_diag_error(d, -1, 0, 0, "rank %d: collective matching: %s", m->rank, coll_error_message(world));
    if (ok) {
        comm_seq *seqs = xmalloc(sizeof *seqs * (size_t)W);
        for (int r = 0; r < W; r++)
            seqs[r] = (comm_seq){(comm_event *)(void *)(all + (size_t)r * words), (int)counts[r]};
        ok = comm_match(seqs, m, d);
        free(seqs);
    }
    free(all);
    free(sendbuf);
    free(counts);
    comm_seq_free(&mine);
    return ok;
}

/* Called for each step in order: a communication op (segment NULL), or a segment with its
 * graph (NULL when it computes nothing used later). */
typedef bool (*step_fn)(void *ctx, run_step step, const ir_graph *segment);

/* Splits the local graph into steps: a segment ends at a communication op, at the end, and
 * where the backward half or another model chunk begins. */
static bool walk_steps(const ir_graph *L, const bool *backward, const int *chunk, step_fn fn, void *ctx)
{
    int start = -1;
    for (int i = 0; i <= L->n_nodes; i++) {
        const ir_node *n = i < L->n_nodes ? L->nodes[i] : NULL;
        bool compute = n && ir_ops[n->op].kind != OK_COMM && n->op != OP_param && n->op != OP_input &&
                       n->op != OP_output;
        bool boundary = !n || ir_ops[n->op].kind == OK_COMM ||
                        (compute && start >= 0 && (backward[i] != backward[start] || chunk[i] != chunk[start]));
        if (boundary && start >= 0) {
            int last = i - 1;
            while (last > start && (L->nodes[last]->op == OP_output || L->nodes[last]->op == OP_param ||
                                    L->nodes[last]->op == OP_input))
                last--;
            bool any;
            ir_graph *sg = segment_graph(L, start, last, &any);
            bool ok = fn(ctx, (run_step){start, last, false, backward[start], chunk[start], NULL, NULL}, any ? sg : NULL);
            ir_graph_free(sg);
            if (!ok)
                return false;
            start = -1;
        }
        if (n && ir_ops[n->op].kind == OK_COMM && !fn(ctx, (run_step){i, i, true, backward[i], chunk[i], NULL, NULL}, NULL))
            return false;
        if (compute && start < 0)
            start = i;
    }
    return true;
}

/* Per node of a segment's program graph pg, the node of the local graph L it binds to: params
 * and inputs by name, "v<ID>" inputs and outputs by their id; -1 for the rest. */
static int *segment_io(const ir_graph *L, const ir_graph *pg)
{
    int *io = xmalloc(sizeof *io * (size_t)pg->n_nodes);
    for (int i = 0; i < pg->n_nodes; i++) {
        const ir_node *n = pg->nodes[i];
        int id = -1;
        if (n->op == OP_output) {
            if (sscanf(n->name, "v%d", &id) != 1)
                id = -1;
        } else if (n->op == OP_input && n->name[0] == 'v' && !strchr(n->name, '.') && sscanf(n->name + 1, "%d", &id) == 1)
            ;
        else if (n->op == OP_param || n->op == OP_input) {
            for (int j = 0; j < L->n_nodes && id < 0; j++)
                if (L->nodes[j]->op == n->op && strcmp(L->nodes[j]->name, n->name) == 0)
                    id = j;
            if (id < 0)
                ir_unreachable("run_mesh: a segment input is not in the rank's graph");
        }
        io[i] = id;
    }
    return io;
}

/* walk_steps' fn for mesh_exec_new: the step, its segment compiled. */
static bool add_step(void *ctx, run_step step, const ir_graph *segment)
{
    mesh_run *R = ctx;
    if (segment && !(step.p = R->compile(R->compile_ctx, segment, R->pool, R->d)))
        return false;
    if (step.p)
        step.io = segment_io(R->g, program_graph(step.p));
    R->steps[R->n_steps++] = step;
    return true;
}

static bool plan_steps(mesh_run *R)
{
    const ir_graph *L = R->g;
    R->backward = mesh_exec_backward_half(L);
    R->n_chunks = R->mesh.virtual_stages > 1 ? R->mesh.virtual_stages : 1;
    R->chunk = pipeline_chunks(L, R->backward, R->n_chunks);
    R->cur_chunk = -1;
    R->apart = pipeline_chunk_apart(L, R->backward, R->chunk);
    R->steps = calloc((size_t)L->n_nodes + 1, sizeof *R->steps);
    if (!R->steps)
        ir_unreachable("out of memory");
    return walk_steps(L, R->backward, R->chunk, add_step, R);
}

typedef struct {
    bool (*fn)(void *ctx, const ir_graph *segment, ir_diag *d);
    void *ctx;
    ir_diag *d;
} segment_visit;

static bool visit_segment(void *ctx, run_step step, const ir_graph *segment)
{
    const segment_visit *v = ctx;
    return !segment || v->fn(v->ctx, segment, v->d);
}

bool mesh_exec_each_segment(const ir_graph *L, int V, bool (*fn)(void *ctx, const ir_graph *segment, ir_diag *d),
                            void *ctx, ir_diag *d)
{
    bool *backward = mesh_exec_backward_half(L);
    int *chunk = pipeline_chunks(L, backward, V);
    segment_visit v = {fn, ctx, d};
    bool ok = walk_steps(L, backward, chunk, visit_segment, &v);
    free(chunk);
    free(backward);
    return ok;
}

/* Runs the steps of one half (backward false: the forward half) of model chunk `chunk` (-1:
 * every chunk, in graph order) in the current slot. */
static bool run_half(mesh_run *R, bool backward, int chunk)
{
    const ir_graph *L = R->g;
    for (int k = 0; k < R->n_steps; k++) {
        run_step *s = &R->steps[k];
        if (s->backward != backward || (chunk >= 0 && s->chunk != chunk))
            continue;
        if (k > 0 && R->hook_now && R->on_step)
            R->on_step(R->on_step_ctx, R, k - 1); /* step k - 1 (of this half) is done */
        if (s->comm) {
            if (!run_comm(R, L->nodes[s->first]))
                return false;
            continue;
        }
        if (!s->p)
            continue;
        const ir_graph *pg = program_graph(s->p);
        for (int i = 0; i < pg->n_nodes; i++) {
            const ir_node *n = pg->nodes[i];
            int id = s->io[i];
            if (n->op != OP_param && n->op != OP_input)
                continue;
            if (!R->val[id])
                ir_unreachable("run_mesh: a segment input has no value");
            if (!program_bind(s->p, n->name, R->val[id], R->d))
                return false;
        }
        if (!program_run(s->p, R->d))
            return false;
        double t0 = rt_now_ms();
        for (int i = 0; i < pg->n_nodes; i++) {
            const ir_node *n = pg->nodes[i];
            int id = s->io[i];
            if (n->op != OP_output || id < 0)
                continue;
            void *out = program_output(s->p, n->name);
            if (!out)
                ir_unreachable("run_mesh: a segment output is missing");
            /* a shared value is read before its program runs again (the next micro-batch's
             * backward): no copy; a forward value outlives that run in its slot: a copy */
            if (shared_value(R, id))
                borrow_shared(R, id, out);
            else
                memcpy(value_buffer(R, id), out, bytes_of(L->nodes[id]));
        }
        eng_trace_span("host", "keep segment outputs", "", t0, rt_now_ms());
    }
    return true;
}

/* One micro-batch through the whole graph, then every started send completed. */
static bool run_steps(mesh_run *R)
{
    if (!run_half(R, false, -1) || !run_half(R, true, -1))
        return false;
    if (coll_flush(R->world) != COLL_OK) {
        ir_diag_error(R->d, -1, 0, 0, "rank %d: %s", R->mesh.rank, coll_error_message(R->world));
        return false;
    }
    return true;
}

/* Frees the step programs and every slot's values (a param's buffer once). */
static void release(mesh_run *R)
{
    for (int k = 0; k < R->n_steps; k++) {
        program_free(R->steps[k].p);
        free(R->steps[k].io);
    }
    free(R->steps);
    int n_tables = R->n_slots ? R->n_slots : 1;
    for (int t = 0; t < n_tables; t++) {
        void **v = R->n_slots ? R->slot[t] : R->val;
        for (int i = 0; v && i < R->g->n_nodes; i++)
            if (t == 0 ? !R->borrowed[i] : !shared_value(R, i))
                free(v[i]);
        free(v);
    }
    free(R->slot);
    free(R->backward);
    free(R->chunk);
    free(R->apart);
    free(R->borrowed);
}

static bool write_outputs(mesh_run *R, const char *path)
{
    const ir_graph *L = R->g;
    rt_st_entry *e = calloc((size_t)L->n_nodes + 1, sizeof *e);
    int n = 0;
    for (int i = 0; i < L->n_nodes; i++) {
        const ir_node *o = L->nodes[i];
        if (o->op == OP_output)
            e[n++] = (rt_st_entry){o->name, o->in[0]->dtype, o->in[0]->shape, R->val[o->in[0]->id]};
    }
    rt_st_meta meta[] = {{"format", "pt"}, {"loom.precision", "f32"}};
    bool ok = rt_st_write(path, e, n, meta, 2, NULL, NULL, R->d);
    if (ok) {
        char mesh[128];
        printf("wrote");
        for (int i = 0; i < n; i++) {
            char ty[300];
            printf("%s %s %s", i ? "," : "", e[i].name, ir_type_str(e[i].dtype, &e[i].shape, ty, sizeof ty));
        }
        printf(" to %s (mesh %s, %d ranks)\n", path, pass_mesh_str(&R->mesh, mesh, sizeof mesh), R->mesh.world);
    }
    free(e);
    return ok;
}

mesh_run *mesh_exec_new(ir_graph *g, mesh_compile_fn compile, void *compile_ctx, const pass_mesh *m,
                        coll_comm *world, coll_comm *const *axis, rt_pool *pool, ir_diag *d)
{
    mesh_run *R = calloc(1, sizeof *R);
    if (!R)
        ir_unreachable("out of memory");
    R->g = g;
    R->compile = compile;
    R->compile_ctx = compile_ctx;
    R->pool = pool;
    R->mesh = *m;
    R->world = world;
    for (int a = 0; a < m->n_axes; a++)
        R->axis[a] = axis[a];
    R->d = d;
    R->val = calloc((size_t)g->n_nodes + 1, sizeof *R->val);
    R->borrowed = calloc((size_t)g->n_nodes + 1, sizeof *R->borrowed);
    if (!R->val || !R->borrowed)
        ir_unreachable("out of memory");
    if (!plan_steps(R)) {
        mesh_exec_free(R);
        return NULL;
    }
    return R;
}

const ir_graph *mesh_exec_graph(const mesh_run *R) { return R->g; }

void *mesh_exec_value(mesh_run *R, const ir_node *n) { return value_buffer(R, n->id); }

void mesh_exec_bind(mesh_run *R, const ir_node *n, void *data)
{
    if (n->op != OP_param)
        ir_unreachable("mesh_exec_bind: not a param");
    borrow_shared(R, n->id, data);
}

bool mesh_exec_run(mesh_run *R) { return run_steps(R); }

/* At least n slots of values; the first is the table R->val had, params shared by all. */
static void ensure_slots(mesh_run *R, int n)
{
    if (!R->n_slots) {
        R->slot = calloc(1, sizeof *R->slot);
        if (!R->slot)
            ir_unreachable("out of memory");
        R->slot[0] = R->val;
        R->n_slots = 1;
    }
    if (n <= R->n_slots)
        return;
    void ***s = realloc(R->slot, sizeof *s * (size_t)n);
    if (!s)
        ir_unreachable("out of memory");
    R->slot = s;
    for (int k = R->n_slots; k < n; k++) {
        R->slot[k] = calloc((size_t)R->g->n_nodes + 1, sizeof **R->slot);
        if (!R->slot[k])
            ir_unreachable("out of memory");
        for (int i = 0; i < R->g->n_nodes; i++)
            if (shared_value(R, i))
                R->slot[k][i] = R->slot[0][i];
    }
    R->n_slots = n;
}

bool mesh_exec_schedule_parse(const char *s, mesh_schedule *out)
{
    if (strcmp(s, "gpipe") == 0)
        *out = MESH_GPIPE;
    else if (strcmp(s, "1f1b") == 0)
        *out = MESH_1F1B;
    else
        return false;
    return true;
}

/* --profile: a micro-batch's forward (F) or backward (B) half on pipeline stage `stage` (of
 * model chunk `chunk` of V: "F3.1") as a slice of the schedule. */
static void trace_micro(const mesh_run *R, bool forward, int micro, int stage, int chunk, double t0)
{
    if (!rt_trace_active())
        return;
    char name[64], args[128];
    if (R->n_chunks > 1)
        snprintf(name, sizeof name, "%s%d.%d", forward ? "F" : "B", micro, chunk);
    else
        snprintf(name, sizeof name, "%s%d", forward ? "F" : "B", micro);
    snprintf(args, sizeof args, "\"micro_batch\":%d,\"stage\":%d,\"chunk\":%d,\"half\":\"%s\"", micro, stage, chunk,
             forward ? "forward" : "backward");
    eng_trace_span("schedule", name, args, t0, rt_now_ms());
}

bool mesh_exec_run_forward(mesh_run *R, int M, mesh_micro_fn feed, mesh_micro_fn done, void *ctx)
{
    ensure_slots(R, 1);
    bool ok = true;
    int a = pass_mesh_axis(&R->mesh, "pp"), stage = a >= 0 ? pass_mesh_coord(&R->mesh, R->mesh.rank, a) : 0;
    for (int micro = 0; ok && micro < M; micro++) {
        double t0 = rt_now_ms();
        ok = (!feed || feed(ctx, R, micro)) && run_half(R, false, -1) && (!done || done(ctx, R, micro));
        trace_micro(R, true, micro, stage, 0, t0);
    }
    if (ok && coll_flush(R->world) != COLL_OK) {
        ir_diag_error(R->d, -1, 0, 0, "rank %d: %s", R->mesh.rank, coll_error_message(R->world));
        ok = false;
    }
    return ok;
}

bool mesh_exec_run_micro(mesh_run *R, int M, mesh_schedule sched, mesh_micro_fn feed, mesh_micro_fn done, void *ctx)
{
    int a = pass_mesh_axis(&R->mesh, "pp"), V = R->n_chunks;
    int P = a >= 0 ? R->mesh.size[a] : 1, s = a >= 0 ? pass_mesh_coord(&R->mesh, R->mesh.rank, a) : 0;
    int *order = malloc(sizeof *order * (size_t)(2 * M * V));
    if (!order)
        ir_unreachable("out of memory");
    pipeline_order(P, s, M, V, sched == MESH_1F1B, order);
    /* micro-batches start and finish in order (a micro-batch's last backward is its chunk 0's),
     * so those in flight (GPipe: M; 1F1B: at most P-s) can take slots round robin */
    int n_slots = pipeline_in_flight(P, s, M, V, sched == MESH_1F1B);
    ensure_slots(R, n_slots);
    bool ok = true;
    for (int k = 0; ok && k < 2 * M * V; k++) {
        int u = (order[k] > 0 ? order[k] : -order[k]) - 1, micro = u / V, chunk = u % V;
        R->val = R->slot[micro % n_slots];
        double t0 = rt_now_ms();
        if (order[k] > 0)
            ok = (chunk > 0 || !feed || feed(ctx, R, micro)) && run_half(R, false, chunk);
        else {
            R->hook_now = micro == M - 1 && V == 1; /* the step hook in the last backward */
            ok = run_half(R, true, chunk);
            if (ok && R->hook_now && R->on_step)
                R->on_step(R->on_step_ctx, R, R->n_steps - 1);
            R->hook_now = false;
            R->cur_chunk = chunk; /* done reads the outputs this chunk's backward made */
            ok = ok && (!done || done(ctx, R, micro));
            R->cur_chunk = -1;
        }
        trace_micro(R, order[k] > 0, micro, s, chunk, t0);
    }
    free(order);
    R->val = R->slot[0];
    if (ok && coll_flush(R->world) != COLL_OK) {
        ir_diag_error(R->d, -1, 0, 0, "rank %d: %s", R->mesh.rank, coll_error_message(R->world));
        ok = false;
    }
    return ok;
}

void mesh_exec_set_step_hook(mesh_run *R, void (*fn)(void *ctx, mesh_run *R, int step), void *ctx)
{
    R->on_step = fn;
    R->on_step_ctx = ctx;
}

int mesh_exec_output_step(const mesh_run *R, const char *name)
{
    for (int i = 0; i < R->g->n_nodes; i++) {
        const ir_node *o = R->g->nodes[i];
        if (o->op != OP_output || strcmp(o->name, name) != 0)
            continue;
        int v = o->in[0]->id;
        for (int k = 0; k < R->n_steps; k++)
            if (R->steps[k].first <= v && v <= R->steps[k].last && R->steps[k].backward)
                return k;
    }
    return -1;
}

const void *mesh_exec_output(const mesh_run *R, const char *name)
{
    for (int i = 0; i < R->g->n_nodes; i++) {
        const ir_node *o = R->g->nodes[i];
        if (o->op == OP_output && strcmp(o->name, name) == 0)
            return R->cur_chunk < 0 || R->chunk[o->in[0]->id] == R->cur_chunk ? R->val[o->in[0]->id] : NULL;
    }
    return NULL;
}

void mesh_exec_comm(mesh_run *R, double *ms, int64_t *bytes)
{
    *ms = R->comm_ms;
    *bytes = R->comm_bytes;
    R->comm_ms = 0;
    R->comm_bytes = 0;
}

mesh_memory mesh_exec_memory(const mesh_run *R)
{
    mesh_memory m = {0};
    int n_tables = R->n_slots ? R->n_slots : 1;
    for (int t = 0; t < n_tables; t++) {
        void **v = R->n_slots ? R->slot[t] : R->val;
        for (int i = 0; i < R->g->n_nodes; i++)
            if (v[i] && (t == 0 ? !R->borrowed[i] : !shared_value(R, i)))
                *(R->g->nodes[i]->op == OP_param ? &m.params : &m.values) += (double)bytes_of(R->g->nodes[i]);
    }
    for (int k = 0; k < R->n_steps; k++) {
        if (!R->steps[k].p)
            continue;
        const rt_plan *plan = program_plan(R->steps[k].p);
        m.segments++;
        m.arenas += (double)plan->arena_bytes;
        for (int b = 0; b < plan->n_bufs; b++)
            if (plan->bufs[b].kind == RT_BUF_OUTPUT)
                m.outputs += (double)plan->bufs[b].numel * ir_dtype_size(plan->bufs[b].dtype);
    }
    m.slots = n_tables;
    return m;
}

void mesh_exec_free(mesh_run *R)
{
    if (!R)
        return;
    release(R);
    ir_graph_free(R->g);
    free(R);
}

bool mesh_coll_options(const char *const *keys, const char *const *values, int n, const char *cmd,
                       coll_options *out, ir_diag *d)
{
    *out = (coll_options){0};
    for (int i = 0; i < n; i++) {
        const char *k = keys[i], *v = values[i];
        if (strcmp(k, "--allreduce") == 0 && !coll_algo_parse(v, &out->allreduce)) {
            ir_diag_error(d, -1, 0, 0, "%s: --allreduce expects backend, ring or tree, got '%s'", cmd, v);
            return false;
        }
        if (strcmp(k, "--timeout") == 0) {
            char *end;
            double s = strtod(v, &end);
            if (end == v || *end || !(s >= 0) || s > 1e7) {
                ir_diag_error(d, -1, 0, 0, "%s: --timeout expects seconds (0: none), got '%s'", cmd, v);
                return false;
            }
            out->timeout_s = s > 0 ? s : -1;
        }
    }
    return true;
}

coll_comm *mesh_coll_world(int world, const coll_options *opt, coll_error *err)
{
    coll_options o = *opt;
    o.gpu = o.gpu && world > 1; /* one rank talks to no one: no NCCL to open */
    return coll_init(COLL_BACKEND_AUTO, &o, err);
}

bool mesh_exec_job(ir_graph *L, const pass_mesh *m, const mesh_job *j, ir_diag *d)
{
    eng_profile *prof = eng_profile_start(j->profile, j->who, d);
    if (j->profile && !prof) {
        ir_graph_free(L);
        return false;
    }
    coll_error cerr;
    coll_comm *world = mesh_coll_world(m->world, &j->coll, &cerr), *axis[IR_MAX_MESH_AXES] = {0};
    if (!world) {
        ir_diag_error(d, -1, 0, 0, "%s: %s", j->who, cerr.message);
        ir_graph_free(L);
        eng_profile_finish(prof, d);
        return false;
    }
    eng_comm_meter meter = {0};
    eng_comm_watch(world, &meter, "pp");
    for (int a = 0; a < m->n_axes; a++) {
        /* color: the rank with this axis's coordinate 0 (the same for the whole group) */
        if (coll_split(world, pass_mesh_with(m, m->rank, a, 0), pass_mesh_coord(m, m->rank, a), &axis[a])) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s: cannot split the world communicator by mesh axis", j->who);
            coll_abort(world, 1, msg);
        }
        coll_set_name(axis[a], m->axis[a]);
        coll_set_allreduce_algo(axis[a], j->coll.allreduce);
    }
    if (!mesh_exec_match(L, m, 0, false, world, d)) {
        /* the same verdict on every rank: rank 0 says it, every rank ends with status 1 */
        if (m->rank > 0)
            ir_diag_quiet(d);
        for (int a = 0; a < m->n_axes; a++)
            coll_finalize(axis[a]);
        coll_finalize(world);
        ir_graph_free(L);
        eng_profile_finish(prof, d);
        return false;
    }
    rt_pool *pool = rt_pool_new(0);
    double t0 = rt_now_ms();
    mesh_run *R = mesh_exec_new(L, j->compile, j->compile_ctx, m, world, axis, pool, d);
    double t1 = rt_now_ms();
    bool ok = R != NULL;
    for (int i = 0; ok && i < L->n_nodes; i++) {
        const ir_node *n = L->nodes[i];
        if (n->op == OP_param)
            ok = load_source(R, n, j->weights, "--weights");
        else if (n->op == OP_input)
            ok = load_source(R, n, j->inputs, "--inputs");
    }
    double t2 = rt_now_ms();
    ok = ok && run_steps(R);
    double t3 = rt_now_ms();
    eng_trace_span("run", "forward", "", t2, t3);
    if (ok && j->stats)
        fprintf(stderr, "loom: rank %d: %d steps, compile %.1f ms, run %.1f ms (communication %.1f ms, %s)\n",
                m->rank, R->n_steps, t1 - t0, t3 - t2, R->comm_ms, coll_backend_name(coll_backend_of(world)));
    if (ok && m->rank == 0)
        ok = write_outputs(R, j->outputs);
    if (!ok) {
        /* a failure on one rank would leave the others waiting: say why, then end the job */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s: rank %d failed: %s", j->who, m->rank, d->n_msg ? d->msg[0].msg : "unknown error");
        ir_diag_print(d, stderr);
        coll_abort(world, 1, msg);
    }
    mesh_exec_free(R);
    rt_pool_free(pool);
    for (int a = 0; a < m->n_axes; a++)
        coll_finalize(axis[a]);
    coll_barrier(world);
    coll_finalize(world);
    return eng_profile_finish(prof, d) && ok;
}
