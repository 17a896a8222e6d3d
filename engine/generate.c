/* cmd_generate.c — `loom generate`: text in, text out, with a KV cache.
 *
 *   loom generate MODEL --weights W.safetensors --vocab DIR --prompt TEXT [--max-tokens N]
 *                 [--temperature T] [--top-k K] [--top-p P] [--seed S] [--ignore-eos] [-D ...]
 *
 * The prompt is encoded with GPT-2's BPE (DIR: encoder.json + vocab.bpe). The model is built
 * twice — seq = prompt length and seq = 1 — and rewritten by passes/kv_cache.c into a prefill
 * and a decode program that bind the same weights and the same per-layer K/V cache memory:
 * prefill runs once over the prompt and fills the caches for positions [0, T); each decode run
 * feeds one token at position p, writes its K/V row p and attends over the cache under a mask
 * that opens one more key per step. The prompt, then every token as it is sampled, goes to
 * stdout (flushed per token); tokens/s of prefill and decode go to stderr. Generation stops
 * after N tokens, or at <|endoftext|> unless --ignore-eos.
 *
 * Sampling: temperature 0 is argmax (lowest id on ties); otherwise softmax(logits / T)
 * restricted to the K most likely ids (--top-k, 0: all) and then to the smallest set whose
 * probability reaches P (--top-p, 1: all), drawn with a splitmix64 generator seeded by --seed.
 *
 * On a device (--target opencl[:P[:D]] or cuda) both programs are made on one program_device
 * (engine/program.h): the K/V caches and the mask are device buffers both bind, and a decoded
 * token costs its id and position (and one mask element) up and one logits row down; the
 * weights are uploaded once per program. --stats prints the bytes per decoded token.
 *
 * For tests: --recompute generates without the cache (the model built with seq = ctx runs
 * over the whole padded sequence for every token — causal attention makes the padding
 * irrelevant), and --dump-logits F writes, per generated token, its id (i32) and the logits
 * it was sampled from (V × f32).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "text/bpe.h"
#include "engine/jobs.h"
#include "engine/profile.h"
#include "engine/run_values.h"
#include "passes/kv_cache.h"
#include "passes/pass.h"
#include "engine/program.h"
#include "engine/weights.h"
#include "engine/compress.h"

typedef struct {
    const char *prompt, *dump;
    long long max_tokens, top_k;
    double temperature, top_p;
} gen_opts;

static bool number(const char *key, const char *v, double lo, double hi, bool integer, double *out, ir_diag *d)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi) || (integer && x != floor(x))) {
        ir_diag_error(d, -1, 0, 0, "generate: %s expects %s in [%.10g, %.10g], got '%s'", key, integer ? "an integer" : "a number",
                      lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_opts(const eng_opts *o, gen_opts *g, ir_diag *d)
{
    *g = (gen_opts){eng_named(o, "--prompt"), eng_named(o, "--dump-logits"), 32, 0, 1.0, 1.0};
    if (!o->file) {
        ir_diag_error(d, -1, 0, 0, "generate: no model file given");
        return false;
    }
    if (o->n_extra) {
        ir_diag_error(d, -1, 0, 0, "generate: unexpected argument '%s' (the prompt goes in --prompt)", o->extra[0]);
        return false;
    }
    if (!o->weights) {
        ir_diag_error(d, -1, 0, 0, "generate: --weights W.safetensors is required");
        return false;
    }
    if (!o->vocab) {
        ir_diag_error(d, -1, 0, 0, "generate: --vocab DIR (encoder.json and vocab.bpe) is required");
        return false;
    }
    if (!g->prompt || !*g->prompt) {
        ir_diag_error(d, -1, 0, 0, "generate: --prompt is %s", g->prompt ? "empty" : "required");
        return false;
    }
    if (o->target && strcmp(o->target, "cpu") != 0 && strncmp(o->target, "opencl", 6) != 0 &&
        strcmp(o->target, "cuda") != 0) {
        ir_diag_error(d, -1, 0, 0, "generate: --target %s is not supported (cpu, cuda or opencl[:P[:D]])", o->target);
        return false;
    }
    if (o->target && strcmp(o->target, "cpu") != 0 && o->recompute) {
        ir_diag_error(d, -1, 0, 0, "generate: --recompute runs on the CPU only (--target %s given)", o->target);
        return false;
    }
    static const char *const keys[] = {"--max-tokens", "--temperature", "--top-k", "--top-p"};
    static const double lo[] = {1, 0, 0, 0}, hi[] = {1 << 20, 100, 1 << 30, 1};
    double val[4] = {32, 1, 0, 1};
    for (int k = 0; k < 4; k++) {
        const char *v = eng_named(o, keys[k]);
        if (v && !number(keys[k], v, lo[k], hi[k], k == 0 || k == 2, &val[k], d))
            return false;
    }
    if (val[3] == 0) {
        ir_diag_error(d, -1, 0, 0, "generate: --top-p expects a number in (0, 1], got 0");
        return false;
    }
    g->max_tokens = (long long)val[0];
    g->temperature = val[1];
    g->top_k = (long long)val[2];
    g->top_p = val[3];
    return true;
}

/* ---- sampling ----------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    double p;
    int id;
} cand;

static int by_prob(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->p > y->p ? -1 : x->p < y->p ? 1 : x->id - y->id;
}

/* The next id from logits[0..V) (see the header comment); work holds V candidates. */
static int sample(const float *logits, int V, const gen_opts *g, uint64_t *rng, cand *work)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = i;
    if (g->temperature == 0)
        return best;
    double mx = logits[best], sum = 0;
    for (int i = 0; i < V; i++) {
        work[i] = (cand){exp(((double)logits[i] - mx) / g->temperature), i};
        sum += work[i].p;
    }
    int n = V;
    if ((g->top_k > 0 && g->top_k < V) || g->top_p < 1) {
        qsort(work, (size_t)V, sizeof *work, by_prob);
        if (g->top_k > 0 && g->top_k < n)
            n = (int)g->top_k;
        double kept = 0;
        for (int i = 0; i < n; i++)
            kept += work[i].p;
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += work[i].p;
            if (acc >= g->top_p * kept) {
                n = i + 1;
                break;
            }
        }
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += work[i].p;
    }
    double u = (double)(splitmix64(rng) >> 11) * 0x1.0p-53 * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += work[i].p;
        if (u < acc)
            return work[i].id;
    }
    return work[n - 1].id;
}

/* ---- building the programs ------------------------------------------------------------------ */

/* The model built with seq = seq and batch = 1 (after the user's -D, so these win). */
static ir_graph *build(const eng_opts *o, int file, long long seq, ir_diag *d)
{
    fe_define defs[ENG_MAX_DEFINES + 2];
    int n = 0;
    for (int i = 0; i < o->n_defines; i++)
        if (strcmp(o->defines[i].name, "seq") != 0 && strcmp(o->defines[i].name, "batch") != 0)
            defs[n++] = o->defines[i];
    char seq_text[32];
    snprintf(seq_text, sizeof seq_text, "%lld", seq);
    defs[n++] = (fe_define){"seq", seq_text};
    defs[n++] = (fe_define){"batch", "1"};
    ir_graph *g = fe_build(d, file, defs, n);
    if (g && !eng_dequantize_graph(g, o->weights, d)) { /* quantized weights: docs/compression.md */
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* The context (KV cache rows): the model's hyperparameter ctx (with -D) when it has one (llama's
 * rotary positions need no table), else 0: the position table's rows (kv_cache.h). -1 after
 * reporting an error. */
static int64_t context_of(const eng_opts *o, int file, ir_diag *d)
{
    fe_hparam_list hp;
    bool ok = fe_hparams(d, file, o->defines, o->n_defines, &hp);
    const fe_hparam *h = ok ? fe_hparam_find(&hp, "ctx") : NULL;
    int64_t ctx = h ? (int64_t)h->value : 0;
    if (h && (!h->is_int || ctx < 1)) {
        ir_diag_error(d, -1, 0, 0, "generate: the model's context ctx must be a positive integer, got %g", h->value);
        ok = false;
    }
    fe_hparams_free(&hp);
    return ok ? ctx : -1;
}

/* The logits output's node, checked to be [1, T, V]. */
static const ir_node *logits_of(const program *p, ir_diag *d)
{
    const ir_node *out = program_find(p, OP_output, "logits");
    if (!out || out->in[0]->shape.rank != 3 || out->in[0]->dtype != DT_F32) {
        ir_diag_error(d, -1, 0, 0, "generate: the model has no f32 output 'logits' [batch, seq, vocab]");
        return NULL;
    }
    return out->in[0];
}

typedef struct {
    program *prefill, *decode, *full;
    program_device *dev; /* --target opencl|cuda: the device both programs are made on */
    float **cache;       /* per cache input: the memory both programs bind (on the CPU) ... */
    program_buf **dcache; /* ... or on the device */
    program_buf *dmask;  /* on the device: the decode program's cache.mask */
    int n_cache;
    int64_t ctx;
} programs;

static void programs_free(programs *ps)
{
    program_free(ps->prefill);
    program_free(ps->decode);
    program_free(ps->full);
    for (int i = 0; i < ps->n_cache; i++) {
        free(ps->cache[i]);
        program_buf_free(ps->dcache[i]);
    }
    free(ps->cache);
    free(ps->dcache);
    program_buf_free(ps->dmask);
}

/* Binds one zeroed buffer per cache input ("cache.k.L", "cache.v.L") to both programs. */
static bool bind_caches(programs *ps, ir_diag *d)
{
    const ir_graph *g = program_graph(ps->decode);
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = g->nodes[i];
        if (n->op != OP_input || strncmp(n->name, "cache.", 6) != 0 ||
            (strncmp(n->name, "cache.k.", 8) != 0 && strncmp(n->name, "cache.v.", 8) != 0))
            continue;
        ps->cache = realloc(ps->cache, sizeof *ps->cache * (size_t)(ps->n_cache + 1));
        ps->dcache = realloc(ps->dcache, sizeof *ps->dcache * (size_t)(ps->n_cache + 1));
        if (!ps->cache || !ps->dcache)
            ir_unreachable("out of memory");
        size_t bytes = (size_t)ir_shape_numel(&n->shape) * ir_dtype_size(n->dtype);
        ps->cache[ps->n_cache] = NULL;
        ps->dcache[ps->n_cache] = NULL;
        if (ps->dev) {
            program_buf *b = ps->dcache[ps->n_cache++] = program_buf_new(ps->dev, bytes ? bytes : 1, d);
            if (!b || !program_bind_buf(ps->decode, n->name, b, 0, d) || !program_bind_buf(ps->prefill, n->name, b, 0, d))
                return false;
            continue;
        }
        float *mem = calloc(bytes + 1, 1);
        if (!mem)
            ir_unreachable("out of memory");
        ps->cache[ps->n_cache++] = mem;
        if (!program_bind(ps->decode, n->name, mem, d) || !program_bind(ps->prefill, n->name, mem, d))
            return false;
    }
    return true;
}

/* ---- the command ------------------------------------------------------------------------------ */

static void emit(const rt_bpe *bpe, uint32_t id)
{
    size_t len;
    const uint8_t *bytes = rt_bpe_token_bytes(bpe, id, &len);
    if (bytes)
        fwrite(bytes, 1, len, stdout);
    fflush(stdout);
}

static bool dump_row(FILE *f, int id, const float *logits, int V)
{
    int32_t id32 = id;
    return fwrite(&id32, sizeof id32, 1, f) == 1 && fwrite(logits, sizeof(float), (size_t)V, f) == (size_t)V;
}

static bool generate(const eng_opts *o, ir_diag *d)
{
    gen_opts g;
    if (!parse_opts(o, &g, d))
        return ir_diag_ok(d);
    rt_bpe *bpe = rt_bpe_load(o->vocab, d);
    if (!bpe)
        return ir_diag_ok(d);
    uint32_t *ids32 = NULL;
    size_t n_prompt = 0, cap = 0;
    rt_bpe_encode(bpe, g.prompt, strlen(g.prompt), true, &ids32, &n_prompt, &cap);
    int file = ir_diag_load_file(d, o->file);
    programs ps = {0};
    eng_weights *w = NULL;
    rt_pool *pool = NULL;
    int32_t *seq = NULL;
    float *mask = NULL;
    cand *work = NULL;
    FILE *dump = NULL;
    bool ok = file >= 0;
    /* decode first: it tells the context size */
    int64_t ctx_hp = ok ? context_of(o, file, d) : -1;
    ir_graph *gd = ctx_hp >= 0 ? build(o, file, 1, d) : NULL;
    ok = gd && pass_kv_cache(gd, PASS_KV_DECODE, ctx_hp, d);
    int64_t ctx = ok ? pass_kv_context(gd) : 0;
    if (ok && (int64_t)n_prompt > ctx) {
        ir_diag_error(d, -1, 0, 0, "generate: the prompt has %zu tokens, more than the model's context of %" PRId64, n_prompt,
                      ctx);
        ok = false;
    }
    if (ok && (int64_t)n_prompt + g.max_tokens - 1 > ctx) {
        ir_diag_error(d, -1, 0, 0,
                      "generate: %zu prompt tokens + --max-tokens %lld exceed the model's context of %" PRId64
                      " (at most %" PRId64 " new tokens)",
                      n_prompt, g.max_tokens, ctx, ctx - (int64_t)n_prompt + 1);
        ok = false;
    }
    ps.ctx = ctx;
    pool = ok ? rt_pool_new(0) : NULL;
    ok = ok && pool;
    double t_compile = rt_now_ms();
    if (ok && !o->recompute) {
        ir_graph *gp = build(o, file, (long long)n_prompt, d);
        ok = gp && pass_kv_cache(gp, PASS_KV_PREFILL, ctx, d);
        if (ok && o->target && strcmp(o->target, "cpu") != 0)
            ok = (ps.dev = program_device_open(o->target, d)) != NULL;
        ps.prefill = !ok ? NULL : ps.dev ? program_new_device(ps.dev, gp, NULL, pool, d) : program_cpu_new(gp, NULL, pool, d);
        ps.decode = !ps.prefill ? NULL
                    : ps.dev    ? program_new_device(ps.dev, gd, NULL, pool, d)
                                : program_cpu_new(gd, NULL, pool, d);
        ok = ps.decode && bind_caches(&ps, d);
        ir_graph_free(gp);
    } else if (ok) {
        ir_graph *gf = build(o, file, ctx, d);
        ok = gf && pass_kv_drop_optional(gf, d);
        ps.full = ok ? program_cpu_new(gf, NULL, pool, d) : NULL;
        ok = ps.full != NULL;
        ir_graph_free(gf);
    }
    ir_graph_free(gd);
    t_compile = rt_now_ms() - t_compile;
    program *first = ps.full ? ps.full : ps.prefill;
    const ir_node *lg = ok ? logits_of(first, d) : NULL;
    ok = lg != NULL;
    int V = ok ? (int)lg->shape.dim[2] : 0;
    if (ok && rt_bpe_vocab_size(bpe) > (uint32_t)V) {
        ir_diag_error(d, -1, 0, 0, "generate: the model's vocabulary (%d) is smaller than the tokenizer's (%u)", V,
                      rt_bpe_vocab_size(bpe));
        ok = false;
    }
    if (ok) {
        w = eng_weights_open(o->weights, d);
        if (ps.dev) /* one copy of the weights on the device, bound to both programs */
            ok = w && eng_weights_bind_device(w, ps.dev, first, d) && eng_weights_bind_device(w, ps.dev, ps.decode, d);
        else
            ok = w && eng_weights_bind(w, first, d) && (!ps.decode || eng_weights_bind(w, ps.decode, d));
    }
    if (ok && g.dump && !(dump = fopen(g.dump, "wb"))) {
        ir_diag_error(d, -1, 0, 0, "generate: cannot write %s: %s", g.dump, strerror(errno));
        ok = false;
    }
    /* ok: n_prompt + max_tokens - 1 <= ctx, so the sequence fits */
    seq = calloc((size_t)ctx + 1, sizeof *seq);
    mask = malloc(sizeof *mask * ((size_t)ctx + 1));
    work = malloc(sizeof *work * ((size_t)V + 1));
    if (!seq || !mask || !work)
        ir_unreachable("out of memory");
    for (size_t i = 0; ok && i < n_prompt; i++)
        seq[i] = (int32_t)ids32[i];
    for (int64_t j = 0; ok && j < ctx; j++)
        mask[j] = j < (int64_t)n_prompt ? 0.0f : -INFINITY;
    uint64_t rng = o->seed;
    uint32_t eot = rt_bpe_eot(bpe);
    int64_t len = (int64_t)n_prompt, produced = 0;
    double t_prefill = 0, t_decode = 0;
    if (ok) {
        fwrite(g.prompt, 1, strlen(g.prompt), stdout);
        fflush(stdout);
    }
    int32_t position = 0, token = 0;
    if (ok && ps.decode) {
        ok = program_bind(ps.prefill, "tokens", seq, d);
        if (ok && ps.dev) /* the mask lives on the device: a token opens one element of it */
            ok = (ps.dmask = program_buf_new(ps.dev, sizeof *mask * (size_t)ctx, d)) &&
                 program_buf_write(ps.dmask, 0, mask, sizeof *mask * (size_t)ctx, d) &&
                 program_bind_buf(ps.decode, "cache.mask", ps.dmask, 0, d);
        else if (ok)
            ok = program_bind(ps.decode, "tokens", &token, d) && program_bind(ps.decode, "cache.position", &position, d) &&
                 program_bind(ps.decode, "cache.mask", mask, d);
    } else if (ok)
        ok = program_bind(ps.full, "tokens", seq, d);
    if (ok && o->stats && ps.decode)
        program_profile(ps.decode, true);
    rt_xfer x0 = {0, 0}; /* the device's transfers before the first decoded token */
    while (ok && produced < g.max_tokens) {
        double t0 = rt_now_ms();
        const float *row;
        if (ps.full) {
            ok = program_run(ps.full, d);
            row = (const float *)program_output(ps.full, "logits") + (len - 1) * V;
        } else if (produced == 0) {
            ok = program_run(ps.prefill, d);
            row = program_output(ps.prefill, "logits"); /* the last position's (kv_cache.h) */
        } else {
            token = seq[len - 1];
            position = (int32_t)(len - 1);
            mask[len - 1] = 0.0f;
            if (ps.dev && produced == 1)
                x0 = program_device_xfer(ps.dev);
            /* on a device the binds copy: the id, the position and the one mask element */
            if (ps.dev)
                ok = program_bind(ps.decode, "tokens", &token, d) &&
                     program_bind(ps.decode, "cache.position", &position, d) &&
                     program_buf_write(ps.dmask, sizeof *mask * (size_t)(len - 1), &mask[len - 1], sizeof *mask, d);
            ok = ok && program_run(ps.decode, d);
            row = program_output(ps.decode, "logits");
        }
        if (!ok)
            break;
        int id = sample(row, V < (int)rt_bpe_vocab_size(bpe) ? V : (int)rt_bpe_vocab_size(bpe), &g, &rng, work);
        double dt = rt_now_ms() - t0;
        *(produced == 0 ? &t_prefill : &t_decode) += dt;
        if (rt_trace_active()) {
            char args[64];
            snprintf(args, sizeof args, "\"position\":%" PRId64 ",\"token\":%d", len, id);
            eng_trace_span("generate", produced == 0 && !ps.full ? "prefill" : "decode token", args, t0, t0 + dt);
        }
        if (dump && !dump_row(dump, id, row, V)) {
            ir_diag_error(d, -1, 0, 0, "generate: cannot write %s", g.dump);
            ok = false;
        }
        produced++;
        if ((uint32_t)id == eot && !o->ignore_eos)
            break;
        emit(bpe, (uint32_t)id);
        seq[len++] = id;
    }
    if (ok) {
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "generate: compile %.0f ms%s\n", t_compile, ps.full ? " (full recompute, no KV cache)" : "");
        fprintf(stderr, "generate: prefill %zu tokens in %.1f ms: %.1f tok/s\n", n_prompt, t_prefill,
                t_prefill > 0 ? 1e3 * (double)n_prompt / t_prefill : 0.0);
        fprintf(stderr, "generate: decode %" PRId64 " tokens in %.1f ms: %.1f tok/s\n", produced - 1, t_decode,
                t_decode > 0 ? 1e3 * (double)(produced - 1) / t_decode : 0.0);
        if (o->stats && ps.dev && produced > 1) {
            rt_xfer x1 = program_device_xfer(ps.dev);
            fprintf(stderr, "generate: before the first decoded token: %.0f bytes host->device (the weights, once)\n",
                    (double)x0.h2d);
            fprintf(stderr, "generate: per decoded token: %.1f bytes host->device, %.1f bytes device->host\n",
                    (double)(x1.h2d - x0.h2d) / (double)(produced - 1), (double)(x1.d2h - x0.d2h) / (double)(produced - 1));
        }
        if (o->stats && ps.decode) {
            rt_exec_stats es = program_stats(ps.decode);
            fprintf(stderr,
                    "generate: decode steps per token: %d kernels, %d gemm, %d attention, %d copies; ms over all "
                    "tokens: kernels %.1f, gemm %.1f, attention %.1f, other %.1f\n",
                    es.kernels, es.gemms, es.attentions, es.copies, es.ms_kernels, es.ms_gemms, es.ms_attentions,
                    es.ms_other);
        }
    }
    if (dump && fclose(dump) != 0 && ok) {
        ir_diag_error(d, -1, 0, 0, "generate: cannot write %s", g.dump);
        ok = false;
    }
    free(seq);
    free(mask);
    free(work);
    free(ids32);
    programs_free(&ps);
    eng_weights_free(w); /* its device buffers before the device */
    program_device_close(ps.dev);
    rt_pool_free(pool);
    rt_bpe_free(bpe);
    return ir_diag_ok(d);
}

bool eng_generate(const eng_opts *o, ir_diag *d)
{
    eng_profile *prof = eng_profile_start(o->profile, "loom generate", d);
    if (o->profile && !prof)
        return false;
    generate(o, d);
    eng_profile_finish(prof, d);
    return ir_diag_ok(d);
}
