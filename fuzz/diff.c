/* diff.c — a differential fuzzer of the compile pipeline: textual IR through the default passes
 * (dce, cse, fuse), lowering (codegen/lower.c), the host JIT and the CPU executor, against the
 * reference interpreter (ir/interp.c), the oracle of every backend.
 *
 * Feeds: the input as textual IR ("fuzz.lir"), or, when it does not parse as IR but holds the
 * word "model", as a .loom model ("fuzz.loom", built with its own hyperparameters); inputs
 * that are neither are left to fuzz/lir.c and fuzz/frontend.c.
 *  - Every graph is lowered as program_new lowers it (program_lower: passes, cg_lower, memory
 *    plan) — lowering may refuse a graph with an error (f64 values, collectives outside a
 *    mesh, an op the CPU lacks), never crash — and the plan it makes must pass the plan
 *    validator (rt_plan_validate), which `loom build` applies to what it writes.
 *  - A small graph (at most 96 nodes, 4096 elements a value, 65536 in all) then runs: every
 *    param and input filled from a hash of the printed graph (floats k/64 in [-2, 2], exact in
 *    every float dtype; integers 0..3), the interpreter in f64 and in f32 (rounded to each
 *    value's dtype after each op, as f32 storage does), and program_cpu_new + program_run.
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - when the reference runs, the CPU program (if it compiled) runs too, and every output
 *    element agrees. With r64 and r32 the interpreter's two answers, c the CPU's and n1..n3
 *    three runs of the f64 reference with every op's result perturbed by an f32-sized error
 *    (reference_noisy: up to 2^-20 · (|y| + the size of the op's operands), uniform):
 *        |c − r64| <= tol · (1 + |r64|) + 16 · |r32 − r64| + 8 · max_k |nk − r64|
 *    with tol 1e-3 for f32 (1e-2 for f16, 3e-2 for bf16, whose storage rounds every value).
 *    The last two terms measure how much f32 rounding — between ops (r32) and inside them (nk:
 *    gelu's 1 + tanh cancelling for large negative inputs, then divided by) — moves this
 *    graph's answer, so an ill-conditioned graph widens its own tolerance instead of making a
 *    false finding; the noisy runs are made only when the first two terms are not enough, and
 *    an element a perturbed run makes infinite or NaN is not compared. Elements where r64 or
 *    r32 is not finite or beyond 1e30 (f32 overflow) are not compared. Integer outputs agree
 *    exactly where r32 == r64 and |r64| < 2^24. NaN semantics are left out: where the
 *    reference meets a NaN or an infinity anywhere in the graph, a CPU element that is not
 *    finite is not compared (the interpreter's max, softmax and attention skip NaN scores by
 *    comparison — a row of NaN scores is "a row with no allowed key", 0 — where the kernels
 *    propagate them; ir.md does not say which is meant: docs/fuzzing.md). A mismatch prints
 *    the graph, the output, the element, the values and the tolerance, and aborts.
 * Triage: LOOM_FUZZ_DUMP=DIR writes the graph and its values for `loom run` (dump_run).
 * Speed: the JIT costs tens of ms a graph, so a graph already run (same printed text, so the
 * same values and the same answer) is not run again: mutations that only change spelling,
 * comments or value numbers cost a parse and a print. docs/fuzzing.md has the exec rates.
 */
#include "fuzz/fuzz.h"

#include <math.h>

#include "codegen/lower.h"
#include "engine/program.h"
#include "frontend/frontend.h"
#include "io/safetensors.h"
#include "ir/interp.h"
#include "passes/pass.h"
#include "plan/plan_io.h"

#define MAX_NODES 96
#define MAX_NUMEL 4096
#define MAX_TOTAL 65536
#define SEEN_CAP (1 << 16)
#define MAX_LOWER 4096

static uint64_t seen[SEEN_CAP];
/* how far inputs got, printed at exit (docs/fuzzing.md's rates) */
static long n_inputs, n_graphs, n_new, n_lowered, n_compiled, n_compared, n_mutations, n_graph_mutations,
    n_mut_unparsed, n_mut_failed;

static void print_counts(void)
{
    fprintf(stderr, "diff: %ld inputs: %ld graphs (%ld not seen before), %ld lowered, %ld compiled and run on the "
            "CPU, %ld compared with the reference; %ld of %ld mutations as graphs (%ld of text that did not parse, %ld "
            "where no change applied)\n", n_inputs, n_graphs, n_new, n_lowered, n_compiled, n_compared,
            n_graph_mutations, n_mutations, n_mut_unparsed, n_mut_failed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    atexit(print_counts);
    return 0;
}

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r) /* SplitMix64 (every bit good: xorshift's low bits repeat) */
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ z >> 27) * 0x94D049BB133111EBull;
    return z ^ z >> 31;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* true the first time h is seen (a full table forgets nothing: it just stops caching) */
static bool first_time(uint64_t h)
{
    h |= 1;
    for (size_t i = h % SEEN_CAP, k = 0; k < 64; i = (i + 1) % SEEN_CAP, k++) {
        if (seen[i] == h)
            return false;
        if (!seen[i]) {
            seen[i] = h;
            return true;
        }
    }
    return true;
}

/* Lowering is slow under the sanitizers on long chains (~2 s for 10,000 nodes): graphs of
 * more than MAX_LOWER nodes are not lowered here (finding-lower-elem-chain.loom, 20,000 adds,
 * is lowered by tests/errors/sizes/long_chain.test in the gcc builds). */
static bool too_big_to_lower(const ir_graph *g)
{
    return g->n_nodes > MAX_LOWER;
}

/* The word "model" somewhere in the input: worth building as .loom source. */
static bool holds_model(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 5 <= n; i++)
        if (memcmp(p + i, "model", 5) == 0)
            return true;
    return false;
}

static double tolerance(ir_dtype dt)
{
    return dt == DT_F16 ? 1e-2 : dt == DT_BF16 ? 3e-2 : 1e-3;
}

static const ir_tensor *find_out(const ir_named_tensor *o, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(o[i].name, name) == 0)
            return o[i].t;
    return NULL;
}

static double max_abs(const ir_tensor *t)
{
    double m = 0;
    for (int64_t i = 0; t && i < ir_shape_numel(&t->shape); i++)
        if (isfinite(t->data[i]) && fabs(t->data[i]) > m)
            m = fabs(t->data[i]);
    return m;
}

/* The f64 reference once more, each op's result perturbed as an f32 kernel's rounding might
 * move it: element y of a result gets an error of up to NOISE · (|y| + M), uniform (of one
 * size for every element, errors of consecutive ops would cancel one time in two), M the size
 * of what the op computed it from (the largest operand; for matmul max|a|·max|b|·K, for sum
 * max|x|·the elements summed, for attention max|v|·(1 + max|q|·max|k|·D·scale)), so that an
 * answer made of cancelling terms (gelu's 1 + tanh for large negative inputs, a difference of
 * near-equal values) shows how far such errors carry. Outputs in graph order, like
 * ir_interp_run's; false when the reference fails. */
#define NOISE (1.0 / (1 << 20))
static bool reference_noisy(const ir_graph *g, const ir_named_tensor *vals, int n_vals, uint64_t seed,
                            ir_named_tensor **outs, int *n_outs)
{
    int nn = g->n_nodes;
    ir_tensor **val = calloc((size_t)nn + 1, sizeof *val);
    bool *own = calloc((size_t)nn + 1, sizeof *own);
    *outs = calloc((size_t)nn + 1, sizeof **outs);
    *n_outs = 0;
    if (!val || !own || !*outs)
        abort();
    ir_diag d;
    ir_diag_init(&d);
    bool ok = true;
    rng r = {fnv(&seed, sizeof seed, 0xcbf29ce484222325ull) | 1};
    for (int i = 0; ok && i < nn; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op == OP_input || n->op == OP_param) {
            for (int k = 0; k < n_vals && !val[i]; k++)
                if (strcmp(vals[k].name, n->name) == 0)
                    val[i] = vals[k].t;
            ok = val[i] != NULL;
            continue;
        }
        if (n->op == OP_output) {
            ir_tensor *c = ir_tensor_new(val[n->in[0]->id]->dtype, &val[n->in[0]->id]->shape);
            memcpy(c->data, val[n->in[0]->id]->data, sizeof(double) * (size_t)ir_shape_numel(&c->shape));
            char *name = strdup(n->name);
            if (!name)
                abort();
            (*outs)[(*n_outs)++] = (ir_named_tensor){name, c};
            continue;
        }
        ir_tensor *in[IR_MAX_ATTRS + 8] = {0}, *out = ir_tensor_new(n->dtype, &n->shape);
        double m = 0;
        for (int k = 0; k < n->n_in && k < IR_MAX_ATTRS + 8; k++) {
            in[k] = val[n->in[k]->id];
            m = fmax(m, max_abs(in[k]));
        }
        val[i] = out;
        own[i] = true;
        if (n->n_in > IR_MAX_ATTRS + 8 || !ir_interp_node(n, IR_PREC_F64, in, out, &d)) {
            ok = false;
            break;
        }
        int64_t cnt = ir_shape_numel(&out->shape);
        if (n->op == OP_matmul)
            m = max_abs(in[0]) * max_abs(in[1]) *
                (double)in[0]->shape.dim[in[0]->shape.rank - 1 - (ir_attr_int(n, "transpose_a") != 0)];
        else if (n->op == OP_sum && cnt > 0)
            m *= (double)(ir_shape_numel(&in[0]->shape) / cnt);
        else if (n->op == OP_attention)
            m = max_abs(in[2]) * (1 + max_abs(in[0]) * max_abs(in[1]) * (double)in[0]->shape.dim[3] *
                                      fmax(1, fabs(ir_attr_float(n, "scale"))));
        m = fmax(m, max_abs(out));
        if (ir_dtype_is_float(n->dtype))
            for (int64_t k = 0; k < cnt; k++)
                if (isfinite(out->data[k]))
                    out->data[k] += NOISE * (fabs(out->data[k]) + m) * ((double)(rnd(&r) >> 11) * 0x1p-52 - 1);
    }
    for (int i = 0; i < nn; i++)
        if (own[i])
            ir_tensor_free(val[i]);
    free(val);
    free(own);
    ir_diag_free(&d);
    if (!ok) {
        ir_named_tensors_free(*outs, *n_outs);
        *outs = NULL;
        *n_outs = 0;
    }
    return ok;
}

/* Whether the f64 reference meets a NaN or an infinity anywhere in g (every value made an
 * output of a clone). */
static bool reference_nonfinite(const ir_graph *g, const ir_named_tensor *vals, int n_vals)
{
    ir_graph *c = ir_graph_clone(g);
    int n = c->n_nodes;
    for (int i = 0; i < n; i++) {
        ir_node *x = c->nodes[i];
        if (x->op == OP_output)
            continue;
        ir_node *o = ir_node_add(c, OP_output, 1, &x, (ir_loc){-1, 0, 0});
        char name[32];
        snprintf(name, sizeof name, "fz.all.%d", i);
        o->name = ir_graph_strdup(c, name);
    }
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *o = NULL;
    int n_o = 0;
    bool seen = false;
    if (ir_interp_run(c, IR_PREC_F64, vals, n_vals, &o, &n_o, &d))
        for (int i = 0; i < n_o && !seen; i++)
            for (int64_t k = 0; k < ir_shape_numel(&o[i].t->shape) && !seen; k++)
                seen = !isfinite(o[i].t->data[k]);
    ir_named_tensors_free(o, n_o);
    ir_diag_free(&d);
    ir_graph_free(c);
    return seen;
}

static void compare(const ir_graph *g, const char *text, program *p, const ir_named_tensor *o64,
                    const ir_named_tensor *o32, int n_out, const ir_named_tensor *vals, int n_vals, uint64_t h)
{
    int nonfinite = -1; /* reference_nonfinite, once needed */
    /* three noisy references, made once a difference needs them */
    ir_named_tensor *noisy[3] = {NULL, NULL, NULL};
    int n_noisy[3] = {0, 0, 0};
    bool have_noisy = false;
    for (int i = 0; i < n_out; i++) {
        const ir_tensor *r64 = o64[i].t, *r32 = find_out(o32, n_out, o64[i].name);
        const ir_node *out = program_find(p, OP_output, o64[i].name);
        const void *raw = program_output(p, o64[i].name);
        if (!r32 || !out || out->n_in != 1 || !raw)
            fz_fail("output '%s' missing from the f32 reference or the CPU program", o64[i].name);
        const ir_node *node = out->in[0]; /* an output node is void; its operand has the type */
        int64_t n = ir_shape_numel(&r64->shape);
        if (node->dtype != r64->dtype || !ir_shape_eq(&node->shape, &r64->shape))
            fz_fail("output '%s': the CPU program's type differs from the reference's", o64[i].name);
        double *c = malloc(((size_t)n + 1) * sizeof *c);
        if (!c)
            abort();
        rt_convert_to_f64(node->dtype, raw, c, (size_t)n);
        bool is_float = ir_dtype_is_float(node->dtype);
        for (int64_t k = 0; k < n; k++) {
            double a = r64->data[k], b = r32->data[k], x = c[k];
            if (!isfinite(a) || !isfinite(b) || fabs(a) > 1e30 || fabs(b) > 1e30)
                continue;
            bool bad;
            double tol = 0;
            if (is_float) {
                tol = tolerance(node->dtype) * (1 + fabs(a)) + 16 * fabs(b - a);
                bad = !(fabs(x - a) <= tol);
                if (bad && !have_noisy) {
                    have_noisy = true;
                    for (int s = 0; s < 3; s++)
                        if (!reference_noisy(g, vals, n_vals, h + (uint64_t)s, &noisy[s], &n_noisy[s]))
                            fz_fail("the reference fails when run node by node");
                }
                for (int s = 0; bad && s < 3; s++) {
                    const ir_tensor *y = find_out(noisy[s], n_noisy[s], o64[i].name);
                    if (!y)
                        fz_fail("output '%s' missing from the node-by-node reference", o64[i].name);
                    if (!isfinite(y->data[k]))
                        bad = false; /* an f32-sized error can overflow or NaN it: too ill-conditioned */
                    else
                        tol = fmax(tol, tolerance(node->dtype) * (1 + fabs(a)) + 16 * fabs(b - a) +
                                            8 * fabs(y->data[k] - a));
                    bad = bad && !(fabs(x - a) <= tol);
                }
            } else {
                bad = a == b && fabs(a) < 16777216.0 && x != a;
            }
            if (bad && !isfinite(x) && nonfinite < 0)
                nonfinite = reference_nonfinite(g, vals, n_vals);
            if (bad && !isfinite(x) && nonfinite)
                bad = false; /* NaN semantics (see the file comment) */
            if (bad) {
                fprintf(stderr, "%s", text);
                const ir_tensor *y0 = find_out(noisy[0], n_noisy[0], o64[i].name),
                                *y1 = find_out(noisy[1], n_noisy[1], o64[i].name),
                                *y2 = find_out(noisy[2], n_noisy[2], o64[i].name);
                fz_fail("output '%s' element %lld: cpu %.9g, reference f64 %.9g, f32 %.9g, perturbed %.9g %.9g %.9g "
                        "(tolerance %.3g)",
                        o64[i].name, (long long)k, x, a, b, y0 ? y0->data[k] : NAN, y1 ? y1->data[k] : NAN,
                        y2 ? y2->data[k] : NAN, tol);
            }
        }
        free(c);
    }
    for (int s = 0; s < 3; s++)
        ir_named_tensors_free(noisy[s], n_noisy[s]);
}

/* LOOM_FUZZ_DUMP=DIR: the graph and the values of a run as files, so that `loom run
 * DIR/graph.lir --weights DIR/weights.safetensors --inputs DIR/inputs.safetensors --target
 * ref|cpu --outputs O.safetensors` repeats it (docs/fuzzing.md: triage). */
static void dump_run(const char *dir, const ir_graph *g, const char *text, void *const *raw)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/graph.lir", dir);
    fz_write(path, text, strlen(text));
    for (int kind = 0; kind < 2; kind++) {
        rt_st_entry *e = calloc((size_t)g->n_nodes + 1, sizeof *e);
        if (!e)
            abort();
        int n = 0;
        for (int i = 0; i < g->n_nodes; i++)
            if (raw[i] && g->nodes[i]->op == (kind ? OP_input : OP_param))
                e[n++] = (rt_st_entry){g->nodes[i]->name, g->nodes[i]->dtype, g->nodes[i]->shape, raw[i]};
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, kind ? "inputs" : "weights");
        ir_diag d;
        ir_diag_init(&d);
        if (!rt_st_write(path, e, n, NULL, 0, NULL, NULL, &d))
            fz_print_diag(&d);
        ir_diag_free(&d);
        free(e);
    }
}

static void run_small(const ir_graph *g, const char *text, uint64_t h)
{
    /* values */
    int n_vals = 0;
    ir_named_tensor *vals = calloc((size_t)g->n_nodes + 1, sizeof *vals);
    void **raw = calloc((size_t)g->n_nodes + 1, sizeof *raw);
    if (!vals || !raw)
        abort();
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_input && n->op != OP_param)
            continue;
        ir_tensor *t = ir_tensor_new(n->dtype, &n->shape);
        int64_t numel = ir_shape_numel(&n->shape);
        for (int64_t k = 0; k < numel; k++) {
            uint64_t r = fnv(&k, sizeof k, fnv(&i, sizeof i, h));
            t->data[k] = ir_dtype_is_float(n->dtype) ? (double)((int)(r % 257) - 128) / 64 : (double)(r % 4);
        }
        vals[n_vals++] = (ir_named_tensor){n->name, t};
        raw[i] = malloc((size_t)numel * (size_t)ir_dtype_size(n->dtype) + 8);
        if (!raw[i])
            abort();
        rt_convert_from_f64(n->dtype, t->data, raw[i], (size_t)numel);
    }

    const char *dump = getenv("LOOM_FUZZ_DUMP");
    if (dump)
        dump_run(dump, g, text, raw);

    /* the reference, twice */
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *o64 = NULL, *o32 = NULL;
    int n64 = 0, n32 = 0;
    bool ok64 = ir_interp_run(g, IR_PREC_F64, vals, n_vals, &o64, &n64, &d);
    fz_check_outcome(ok64, &d, NULL, "ir_interp_run f64");
    bool ok32 = ok64 && ir_interp_run(g, IR_PREC_F32, vals, n_vals, &o32, &n32, &d);
    if (ok64 && (!ok32 || n32 != n64)) {
        fz_print_diag(&d);
        fz_fail("the reference runs in f64 but not in f32");
    }

    /* the CPU */
    ir_diag dc;
    ir_diag_init(&dc);
    program *p = program_cpu_new(g, NULL, NULL, &dc);
    fz_check_outcome(p != NULL, &dc, NULL, "program_cpu_new");
    if (p) {
        bool bound = true;
        for (int i = 0; i < g->n_nodes; i++)
            if (raw[i] && program_find(p, g->nodes[i]->op, g->nodes[i]->name))
                bound &= program_bind(p, g->nodes[i]->name, raw[i], &dc);
        if (!bound) {
            fz_print_diag(&dc);
            fz_fail("the CPU program refused a param or input of the graph");
        }
        bool ran = program_run(p, &dc);
        fz_check_outcome(ran, &dc, NULL, "program_run");
        if (ok64 && !ran) {
            fprintf(stderr, "%s", text);
            fz_print_diag(&dc);
            fz_fail("the reference runs this graph but the CPU program fails");
        }
        n_compiled++;
        if (ok64 && ran) {
            compare(g, text, p, o64, o32, n64, vals, n_vals, h);
            n_compared++;
        }
        program_free(p);
    }
    ir_diag_free(&dc);
    ir_named_tensors_free(o64, n64);
    ir_named_tensors_free(o32, n32);
    ir_diag_free(&d);
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    for (int i = 0; i < g->n_nodes; i++)
        free(raw[i]);
    free(vals);
    free(raw);
}

/* The graph of an input: textual IR, else (holding "model") a .loom model; NULL if neither. */
static ir_graph *parse_any(const uint8_t *data, size_t size)
{
    ir_diag d;
    ir_diag_init(&d);
    ir_graph *g = ir_parse(&d, ir_diag_add_source(&d, "fuzz.lir", (const char *)data, size));
    if (!g && holds_model(data, size)) {
        ir_diag_free(&d);
        ir_diag_init(&d);
        g = fe_build(&d, ir_diag_add_source(&d, "fuzz.loom", (const char *)data, size), NULL, 0);
    }
    ir_diag_free(&d);
    return g;
}

/* The printed text of the last graphs run, for the mutator to start from when an input is not
 * a graph (libFuzzer keeps such inputs in the corpus for the parser coverage they reach). */
#define N_RECENT 64
static char *recent[N_RECENT];
static int n_recent, next_recent;

static void remember(const char *text)
{
    char *t = strdup(text);
    if (!t)
        abort();
    free(recent[next_recent]);
    recent[next_recent] = t;
    next_recent = (next_recent + 1) % N_RECENT;
    if (n_recent < N_RECENT)
        n_recent++;
}

/* ---- the structure-aware mutator ---------------------------------------------------------
 * Text mutations of typed IR rarely parse (every result type must equal the inferred one), so
 * a graph that parses is mutated as a graph: an op swapped within its
 * family, an operand rewired to an earlier value, a source's shape or dtype changed, an
 * attribute changed, a new node appended (with new params or inputs where it needs them) and
 * made an output, or an output dropped (then dce). Every node's type is then inferred again,
 * the graph verified and printed; a mutation that breaks a shape rule is tried again. One time
 * in eight libFuzzer mutates the bytes instead, kept when they still parse. An input that is
 * not a graph (some seeds; byte mutations the corpus keeps for the parser paths they reach)
 * is mostly replaced by a mutation of one of the last graphs run. Byte-wise
 * cross-over of two graphs never parses, so "cross-over" mutates the first one instead. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t LLVMFuzzerCustomCrossOver(const uint8_t *data1, size_t size1, const uint8_t *data2, size_t size2, uint8_t *out,
                                 size_t max_out_size, unsigned int seed);

static int pick(rng *r, int n) { return n > 0 ? (int)(rnd(r) % (uint64_t)n) : 0; }

static const ir_opcode unary_ops[] = {OP_neg, OP_exp, OP_log, OP_sqrt, OP_rsqrt, OP_recip, OP_abs,
                                      OP_tanh, OP_sigmoid, OP_relu, OP_silu};
static const ir_opcode binary_ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_pow, OP_maximum, OP_minimum};
static const ir_opcode reduce_ops[] = {OP_sum, OP_mean, OP_max};
static const ir_dtype float_types[] = {DT_F32, DT_F32, DT_F32, DT_F16, DT_BF16};
#define N_OF(a) ((int)(sizeof a / sizeof *a))

static int index_of(const ir_opcode *ops, int n, ir_opcode op)
{
    for (int i = 0; i < n; i++)
        if (ops[i] == op)
            return i;
    return -1;
}

/* A random node that is not an output (with a type), or NULL. */
static ir_node *random_value(rng *r, ir_graph *g, int below)
{
    for (int tries = 0; tries < 16 && below > 0; tries++) {
        ir_node *n = g->nodes[pick(r, below)];
        if (n->op != OP_output)
            return n;
    }
    return NULL;
}

/* A name no node of g has: PREFIX + number. */
static const char *fresh_name(ir_graph *g, const char *prefix, rng *r)
{
    char buf[32];
    for (;;) {
        snprintf(buf, sizeof buf, "%s%d", prefix, pick(r, 100000));
        bool used = false;
        for (int i = 0; i < g->n_nodes && !used; i++)
            used = g->nodes[i]->name && strcmp(g->nodes[i]->name, buf) == 0;
        if (!used)
            return ir_graph_strdup(g, buf);
    }
}

static ir_node *new_source(ir_graph *g, ir_opcode op, ir_dtype dt, const ir_shape *s, rng *r)
{
    ir_node *n = ir_node_add(g, op, 0, NULL, (ir_loc){-1, 0, 0});
    n->dtype = dt;
    n->shape = *s;
    if (op == OP_param || op == OP_input)
        n->name = fresh_name(g, op == OP_param ? "fz.p" : "fz.i", r);
    return n;
}

static ir_shape last_dim(const ir_node *x)
{
    ir_shape s = {0};
    s.rank = 1;
    s.dim[0] = x->shape.rank ? x->shape.dim[x->shape.rank - 1] : 1;
    return s;
}

/* Appends a node computing something of x (and maybe other values) and an output of it. */
static bool append_node(rng *r, ir_graph *g, ir_node *x)
{
    ir_node *y = random_value(r, g, g->n_nodes), *n = NULL;
    int rank = x->shape.rank;
    switch (pick(r, 16)) {
    case 0:
    case 1: n = ir_node_add(g, unary_ops[pick(r, N_OF(unary_ops))], 1, &x, (ir_loc){-1, 0, 0}); break;
    case 2:
    case 3: {
        ir_node *in[2] = {x, y && pick(r, 3) ? y : x};
        if (pick(r, 2)) {
            in[0] = in[1];
            in[1] = x;
        }
        n = ir_node_add(g, binary_ops[pick(r, N_OF(binary_ops))], 2, in, (ir_loc){-1, 0, 0});
        break;
    }
    case 4:
        n = ir_node_add(g, OP_cast, 1, &x, (ir_loc){-1, 0, 0});
        ir_attr_set_dtype(n, "to", pick(r, 3) ? float_types[pick(r, N_OF(float_types))] : DT_I32);
        break;
    case 5: {
        n = ir_node_add(g, reduce_ops[pick(r, N_OF(reduce_ops))], 1, &x, (ir_loc){-1, 0, 0});
        int64_t axes[IR_MAX_RANK];
        int k = 0;
        for (int a = 0; a < rank; a++)
            if (pick(r, 2))
                axes[k++] = pick(r, 4) ? a : a - rank;
        ir_attr_set_ints(g, n, "axes", k, axes);
        ir_attr_set_int(n, "keepdim", pick(r, 2));
        break;
    }
    case 6: n = ir_node_add(g, OP_softmax, 1, &x, (ir_loc){-1, 0, 0}); break;
    case 7: {
        n = ir_node_add(g, OP_transpose, 1, &x, (ir_loc){-1, 0, 0});
        int64_t perm[IR_MAX_RANK];
        for (int a = 0; a < rank; a++)
            perm[a] = a;
        for (int a = rank - 1; a > 0; a--) {
            int b = pick(r, a + 1);
            int64_t t = perm[a];
            perm[a] = perm[b];
            perm[b] = t;
        }
        ir_attr_set_ints(g, n, "perm", rank, perm);
        break;
    }
    case 8: {
        n = ir_node_add(g, pick(r, 2) ? OP_reshape : OP_broadcast, 1, &x, (ir_loc){-1, 0, 0});
        int64_t numel = ir_shape_numel(&x->shape), shape[3];
        int k = pick(r, 3) + 1;
        if (n->op == OP_reshape) {
            int64_t a = 1 + pick(r, 4);
            shape[0] = numel % a == 0 ? a : 1;
            shape[1] = -1;
            shape[2] = 1;
        } else {
            for (int i = 0; i < 3; i++)
                shape[i] = 1 + pick(r, 3);
            for (int i = 0; i < rank && i < k; i++)
                shape[k - 1 - i] = pick(r, 3) ? x->shape.dim[rank - 1 - i] : 1 + pick(r, 3);
        }
        ir_attr_set_ints(g, n, "shape", k, shape);
        break;
    }
    case 9: {
        if (!rank)
            return false;
        int a = pick(r, rank);
        int64_t d = x->shape.dim[a];
        n = ir_node_add(g, OP_slice, 1, &x, (ir_loc){-1, 0, 0});
        int64_t st = pick(r, (int)d + 1), en = st + pick(r, (int)(d - st) + 1);
        ir_attr_set_int(n, "axis", pick(r, 2) ? a : a - rank);
        ir_attr_set_int(n, "start", st);
        ir_attr_set_int(n, "end", en);
        break;
    }
    case 10: {
        ir_node *in[3] = {x, y ? y : x, x};
        n = ir_node_add(g, OP_concat, 2 + pick(r, 2), in, (ir_loc){-1, 0, 0});
        ir_attr_set_int(n, "axis", rank ? pick(r, rank) : 0);
        break;
    }
    case 11: {
        ir_shape ws = {0};
        ws.rank = 2;
        ws.dim[0] = x->shape.rank ? x->shape.dim[x->shape.rank - 1] : 1;
        ws.dim[1] = 1 + pick(r, 6);
        int ta = pick(r, 4) == 0, tb = pick(r, 2);
        if (tb) {
            int64_t t = ws.dim[0];
            ws.dim[0] = ws.dim[1];
            ws.dim[1] = t;
        }
        ir_node *w = y && pick(r, 4) == 0 ? y : new_source(g, pick(r, 2) ? OP_param : OP_input, x->dtype, &ws, r);
        ir_node *in[2] = {x, w};
        n = ir_node_add(g, OP_matmul, 2, in, (ir_loc){-1, 0, 0});
        ir_attr_set_int(n, "transpose_a", ta);
        ir_attr_set_int(n, "transpose_b", tb);
        break;
    }
    case 12: {
        ir_shape ws = last_dim(x);
        ir_node *in[3] = {x, new_source(g, OP_param, x->dtype, &ws, r), NULL};
        if (pick(r, 2)) {
            in[2] = new_source(g, OP_param, x->dtype, &ws, r);
            n = ir_node_add(g, OP_layernorm, 3, in, (ir_loc){-1, 0, 0});
            ir_attr_set_float(n, "eps", pick(r, 2) ? 1e-5 : 0.5);
        } else {
            n = ir_node_add(g, OP_rmsnorm, 2, in, (ir_loc){-1, 0, 0});
            ir_attr_set_float(n, "eps", pick(r, 2) ? 1e-6 : 0.25);
        }
        break;
    }
    case 13: {
        /* gelu, or rope over positions 0..T-1 */
        if (pick(r, 2) || rank < 2) {
            n = ir_node_add(g, OP_gelu, 1, &x, (ir_loc){-1, 0, 0});
            ir_attr_set_str(g, n, "approx", pick(r, 2) ? "tanh" : "erf");
        } else {
            ir_shape ps = {0};
            ps.rank = 1;
            ps.dim[0] = x->shape.dim[rank - 2];
            ir_node *in[2] = {x, new_source(g, OP_iota, DT_I32, &ps, r)};
            n = ir_node_add(g, OP_rope, 2, in, (ir_loc){-1, 0, 0});
            ir_attr_set_float(n, "theta", pick(r, 2) ? 10000 : 10);
        }
        break;
    }
    case 14: {
        /* attention over x (q, k, v of one shape; maybe a mask) */
        ir_node *in[4] = {x, x, x, NULL};
        int k = 3;
        if (rank == 4 && pick(r, 3) == 0) {
            ir_shape ms = {0};
            ms.rank = 2;
            ms.dim[0] = ms.dim[1] = x->shape.dim[2];
            in[3] = new_source(g, OP_input, x->dtype, &ms, r);
            k = 4;
        }
        n = ir_node_add(g, OP_attention, k, in, (ir_loc){-1, 0, 0});
        ir_attr_set_int(n, "causal", pick(r, 2));
        ir_attr_set_float(n, "scale", pick(r, 2) ? 0 : 0.5);
        break;
    }
    case 15: {
        /* embedding of new ids, or cross_entropy of x against new targets */
        if (pick(r, 2)) {
            ir_shape ts = x->shape;
            if (!ts.rank)
                return false;
            ts.rank--;
            ir_node *in[2] = {x, new_source(g, OP_input, DT_I32, &ts, r)};
            n = ir_node_add(g, OP_cross_entropy, 2, in, (ir_loc){-1, 0, 0});
        } else {
            ir_shape ts = {0}, ws = {0};
            ts.rank = 1 + pick(r, 2);
            for (int i = 0; i < ts.rank; i++)
                ts.dim[i] = 1 + pick(r, 4);
            ws.rank = 2;
            ws.dim[0] = 2 + pick(r, 6);
            ws.dim[1] = 1 + pick(r, 6);
            ir_node *in[2] = {new_source(g, OP_param, float_types[pick(r, N_OF(float_types))], &ws, r),
                              new_source(g, OP_input, DT_I32, &ts, r)};
            n = ir_node_add(g, OP_embedding, 2, in, (ir_loc){-1, 0, 0});
        }
        break;
    }
    }
    if (!n)
        return false;
    ir_node *out = ir_node_add(g, OP_output, 1, &n, (ir_loc){-1, 0, 0});
    out->name = fresh_name(g, "fz.o", r);
    return true;
}

/* One random change to g (types not yet inferred again). */
static bool mutate_once(rng *r, ir_graph *g)
{
    ir_node *n = g->nodes[pick(r, g->n_nodes)];
    switch (pick(r, 8)) {
    case 0: { /* swap an op within its family */
        int k;
        if ((k = index_of(unary_ops, N_OF(unary_ops), n->op)) >= 0)
            n->op = unary_ops[(k + 1 + pick(r, N_OF(unary_ops) - 1)) % N_OF(unary_ops)];
        else if ((k = index_of(binary_ops, N_OF(binary_ops), n->op)) >= 0)
            n->op = binary_ops[(k + 1 + pick(r, N_OF(binary_ops) - 1)) % N_OF(binary_ops)];
        else if ((k = index_of(reduce_ops, N_OF(reduce_ops), n->op)) >= 0)
            n->op = reduce_ops[(k + 1 + pick(r, N_OF(reduce_ops) - 1)) % N_OF(reduce_ops)];
        else
            return false;
        return true;
    }
    case 1: { /* rewire an operand to an earlier value */
        if (!n->n_in)
            return false;
        ir_node *m = random_value(r, g, n->id);
        if (!m)
            return false;
        n->in[pick(r, n->n_in)] = m;
        return true;
    }
    case 2: { /* a source's shape or dtype */
        if (ir_ops[n->op].kind != OK_SOURCE)
            return false;
        int c = pick(r, 4);
        if (c == 0 && n->shape.rank)
            n->shape.dim[pick(r, n->shape.rank)] = 1 + pick(r, 6);
        else if (c == 1 && n->shape.rank < 4)
            n->shape.dim[n->shape.rank++] = 1 + pick(r, 4);
        else if (c == 2 && n->shape.rank)
            n->shape.rank--;
        else if (n->op != OP_iota)
            n->dtype = ir_dtype_is_float(n->dtype) ? float_types[pick(r, N_OF(float_types))] : DT_I32;
        else
            return false;
        return true;
    }
    case 3: { /* an attribute */
        int na = ir_op_nattrs(n->op);
        if (!na || n->op == OP_param)
            return false;
        int k = pick(r, na);
        char name[64];
        ir_op_attr_name(n->op, k, name, sizeof name);
        switch (ir_op_attr_kind(n->op, k)) {
        case AK_INT: ir_attr_set_int(n, name, pick(r, 3) ? pick(r, 5) - 1 : n->attr[k].i + 1); break;
        case AK_FLOAT: {
            static const double v[] = {0, 0.5, 1e-5, -1, 2, 1e3, -0.125};
            ir_attr_set_float(n, name, v[pick(r, N_OF(v))]);
            break;
        }
        case AK_DTYPE: ir_attr_set_dtype(n, name, pick(r, 4) ? float_types[pick(r, N_OF(float_types))] : DT_I32); break;
        case AK_STR: ir_attr_set_str(g, n, name, pick(r, 2) ? "tanh" : "erf"); break;
        case AK_INTS: {
            int64_t v[IR_MAX_RANK];
            int cnt = n->attr[k].n;
            for (int i = 0; i < cnt; i++)
                v[i] = n->attr[k].ints[i];
            if (cnt && pick(r, 2))
                v[pick(r, cnt)] = pick(r, 6) - 1;
            else if (cnt && pick(r, 2))
                cnt--;
            else if (cnt < 4)
                v[cnt++] = pick(r, 4);
            ir_attr_set_ints(g, n, name, cnt, v);
            break;
        }
        }
        return true;
    }
    case 4:
    case 5:
    case 6: { /* something new of a value */
        ir_node *x = random_value(r, g, g->n_nodes);
        return x && append_node(r, g, x);
    }
    case 7: { /* one output fewer, and what only it needed */
        int outs = 0;
        for (int i = 0; i < g->n_nodes; i++)
            outs += g->nodes[i]->op == OP_output;
        if (n->op != OP_output || outs < 2)
            return false;
        bool *dead = calloc((size_t)g->n_nodes, 1);
        if (!dead)
            abort();
        dead[n->id] = true;
        ir_graph_compact(g, dead);
        free(dead);
        ir_diag d;
        ir_diag_init(&d);
        bool ok = pass_dce(g, &d);
        ir_diag_free(&d);
        return ok;
    }
    }
    return false;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    rng r = {seed * 0x9E3779B97F4A7C15ull + 1};
    n_mutations++;
    if (size > (1 << 16))
        return LLVMFuzzerMutate(data, size, max_size);
    ir_graph *g = parse_any(data, size);
    if (!g && n_recent && pick(&r, 4)) { /* not a graph: mutate a recent graph instead */
        const char *t = recent[pick(&r, n_recent)];
        g = parse_any((const uint8_t *)t, strlen(t));
    }
    if (!g || !g->n_nodes) {
        n_mut_unparsed++;
        ir_graph_free(g);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    ir_diag d;
    if (pick(&r, 8) == 0) { /* bytes, when they still parse (a number, a name, an attribute) */
        uint8_t *copy = malloc(max_size + 1);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        size_t n = LLVMFuzzerMutate(copy, size, max_size);
        ir_diag_init(&d);
        ir_graph *b = ir_parse(&d, ir_diag_add_source(&d, "mutate.lir", (const char *)copy, n));
        ir_diag_free(&d);
        if (b)
            memcpy(data, copy, n);
        free(copy);
        if (b) {
            ir_graph_free(b);
            ir_graph_free(g);
            return n;
        }
    }
    size_t out = 0;
    for (int attempt = 0; attempt < 16 && !out; attempt++) {
        ir_graph *m = ir_graph_clone(g);
        bool ok = true;
        for (int k = 1 + pick(&r, 3); ok && k > 0; k--) { /* each change: the first of 16 that applies */
            ok = false;
            for (int t = 0; t < 16 && !ok; t++)
                ok = mutate_once(&r, m);
        }
        ir_diag_init(&d);
        for (int i = 0; ok && i < m->n_nodes; i++)
            if (ir_ops[m->nodes[i]->op].kind != OK_SOURCE)
                ok = ir_infer(m->nodes[i], &d);
        for (int i = 0; ok && i < m->n_nodes; i++) /* stay runnable, mostly */
            ok = ir_shape_numel(&m->nodes[i]->shape) <= MAX_NUMEL || pick(&r, 16) == 0;
        ok = ok && ir_verify(m, &d);
        ir_diag_free(&d);
        if (ok) {
            size_t len;
            char *text = fz_print_graph(m, &len);
            if (len <= max_size) {
                memcpy(data, text, len);
                out = len;
            }
            free(text);
        }
        ir_graph_free(m);
    }
    ir_graph_free(g);
    n_graph_mutations += out > 0;
    n_mut_failed += out == 0;
    return out ? out : LLVMFuzzerMutate(data, size, max_size);
}

size_t LLVMFuzzerCustomCrossOver(const uint8_t *data1, size_t size1, const uint8_t *data2, size_t size2, uint8_t *out,
                                 size_t max_out_size, unsigned int seed)
{
    (void)data2, (void)size2;
    if (size1 > max_out_size)
        return 0;
    memcpy(out, data1, size1);
    return LLVMFuzzerCustomMutator(out, size1, max_out_size, seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    n_inputs++;
    ir_graph *g = parse_any(data, size);
    int64_t total = 0;
    for (int i = 0; g && i < g->n_nodes; i++) {
        int64_t numel = ir_shape_numel(&g->nodes[i]->shape);
        total += numel;
        if (numel > MAX_NUMEL)
            total = MAX_TOTAL + 1;
    }
    if (!g || too_big_to_lower(g)) {
        ir_graph_free(g);
        return 0;
    }
    size_t len;
    char *text = fz_print_graph(g, &len);
    uint64_t h = fnv(text, len, 0xcbf29ce484222325ull);
    n_graphs++;
    if (first_time(h)) {
        n_new++;
        /* lowered as program_new lowers it; the plan must be one the validator accepts */
        ir_graph *fused = NULL;
        cg_lowered low = {0};
        ir_diag dl;
        ir_diag_init(&dl);
        bool lowered = program_lower(g, NULL, false, &fused, &low, &dl);
        fz_check_outcome(lowered, &dl, NULL, "program_lower");
        n_lowered += lowered;
        if (lowered && !rt_plan_validate(&low.plan, "lowered plan", &dl)) {
            fprintf(stderr, "%s", text);
            fz_print_diag(&dl);
            fz_fail("lowering made a plan the plan validator refuses");
        }
        cg_lowered_free(&low);
        ir_graph_free(fused);
        ir_diag_free(&dl);
        if (lowered && g->n_nodes <= MAX_NODES && total <= MAX_TOTAL) {
            run_small(g, text, h);
            remember(text);
        }
    }
    free(text);
    ir_graph_free(g);
    return 0;
}
