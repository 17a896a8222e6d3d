/* gemm_dnnl.c — one GEMM through oneDNN's matmul primitive (its brgemm kernels): the CPU's f32
 * GEMM for every call that is not a GEMV or a small GEMM of a batch split over the pool, and its
 * GEMM over bf16/f16 operands.
 *
 * Why oneDNN: measured on the 2-core Zen 4 dev machine (docs/performance.md, "The GEMM chosen
 * by measurement"), its matmul beat OpenBLAS 0.3.21 and BLIS 0.9.0 on every GPT-2 shape of the
 * forward and the backward (5–29% less time; the LM head's 64 × 50257 × 768 the most), and it
 * has the AVX-512 BF16 kernels OpenBLAS lacks.
 *
 * oneDNN 2.x is opened with dlopen (libdnnl.so.2, or $LOOM_LIBDNNL), its types and prototypes from
 * its header: a machine without it, or a built executable copied to one, runs OpenBLAS instead.
 *
 * A primitive is built once per (M, N, K, transposes, leading dims, types, alpha, beta) — building
 * JIT-compiles its kernels — and kept in a small table for the life of the process; a call finds
 * its primitive, wraps A, B and C in memory objects (no copy) and runs it on the calling thread
 * and OpenMP's (oneDNN's threading runtime in Debian's build), as many as OpenBLAS would use.
 * alpha is the primitive's output scale, beta a sum post-op.
 */
#include "runtime/cpu/gemm_dnnl.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry points used, found with dlsym; each field's type is its prototype's (checked by
 * the assignments in load()). omp_set_num_threads is OpenMP's, from the libgomp oneDNN loads. */
static struct {
    dnnl_status_t (*engine_create)(dnnl_engine_t *, dnnl_engine_kind_t, size_t);
    dnnl_status_t (*stream_create)(dnnl_stream_t *, dnnl_engine_t, unsigned);
    dnnl_status_t (*md_by_strides)(dnnl_memory_desc_t *, int, const dnnl_dims_t, dnnl_data_type_t, const dnnl_dims_t);
    dnnl_status_t (*matmul_desc_init)(dnnl_matmul_desc_t *, const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                                      const dnnl_memory_desc_t *, const dnnl_memory_desc_t *);
    dnnl_status_t (*attr_create)(dnnl_primitive_attr_t *);
    dnnl_status_t (*attr_destroy)(dnnl_primitive_attr_t);
    dnnl_status_t (*attr_set_output_scales)(dnnl_primitive_attr_t, dnnl_dim_t, int, const float *);
    dnnl_status_t (*attr_set_post_ops)(dnnl_primitive_attr_t, const_dnnl_post_ops_t);
    dnnl_status_t (*post_ops_create)(dnnl_post_ops_t *);
    dnnl_status_t (*post_ops_destroy)(dnnl_post_ops_t);
    dnnl_status_t (*post_ops_append_sum)(dnnl_post_ops_t, float);
    dnnl_status_t (*pd_create)(dnnl_primitive_desc_t *, const_dnnl_op_desc_t, const_dnnl_primitive_attr_t,
                               dnnl_engine_t, const_dnnl_primitive_desc_t);
    dnnl_status_t (*pd_destroy)(dnnl_primitive_desc_t);
    dnnl_status_t (*pd_query)(const_dnnl_primitive_desc_t, dnnl_query_t, int, void *);
    dnnl_status_t (*primitive_create)(dnnl_primitive_t *, const_dnnl_primitive_desc_t);
    dnnl_status_t (*primitive_destroy)(dnnl_primitive_t);
    dnnl_status_t (*primitive_execute)(const_dnnl_primitive_t, dnnl_stream_t, int, const dnnl_exec_arg_t *);
    dnnl_status_t (*stream_wait)(dnnl_stream_t);
    dnnl_status_t (*memory_create)(dnnl_memory_t *, const dnnl_memory_desc_t *, dnnl_engine_t, void *);
    dnnl_status_t (*memory_destroy)(dnnl_memory_t);
    const dnnl_version_t *(*version)(void);
    void (*omp_set_num_threads)(int);
} dn;

#define CACHE_MAX 512

/* What a primitive is built for: the call less its pointers and threads. */
typedef struct {
    int64_t M, N, K, lda, ldb, ldc;
    int ta, tb;
    float alpha, beta;
    ir_dtype a_dt, b_dt, c_dt, bias_dt; /* bias_dt DT_VOID: no bias */
} mm_key;

typedef struct {
    mm_key key;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, b, c, bias;
} mm_entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* the table and the engine */
static pthread_mutex_t exec_mu = PTHREAD_MUTEX_INITIALIZER; /* one execution at a time: the
                                                               library-managed scratchpad is shared */
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static bool loaded, broken;         /* tried to load; no library or engine: every call falls back */
static char why[256];               /* why it is broken */
static mm_entry cache[CACHE_MAX];
static int ncache;

static bool key_eq(const mm_key *x, const mm_key *y) {
    return x->M == y->M && x->N == y->N && x->K == y->K && x->lda == y->lda && x->ldb == y->ldb &&
           x->ldc == y->ldc && x->ta == y->ta && x->tb == y->tb && x->alpha == y->alpha && x->beta == y->beta &&
           x->a_dt == y->a_dt && x->b_dt == y->b_dt && x->c_dt == y->c_dt && x->bias_dt == y->bias_dt;
}

bool rt_dnnl_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("LOOM_CPU_GEMM");
        on = !(e && strcmp(e, "openblas") == 0);
    }
    return on;
}

/* Opens oneDNN and makes its engine and stream (under mu); false when it cannot. */
static bool load(void) {
    /* oneDNN 2.x: 3.x replaced the op descriptors (dnnl_matmul_desc_init) by primitive-descriptor
     * constructors, so a 3.x library lacks a symbol below and the GEMMs stay on OpenBLAS */
    const char *names[] = {getenv("LOOM_LIBDNNL"), "libdnnl.so.2"};
    /* OpenMP's threads sleep as soon as a GEMM is done (libgomp reads this when it loads, with
     * oneDNN): spinning, they took the cores from the pool's kernels between GEMMs — GPT-2
     * small's bf16 training step 0.88–0.96 s spinning, 0.75–0.81 s passive, on 2 cores */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    void *lib = NULL;
    const char *opened = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++) {
        if (names[i] && *names[i]) lib = dlopen(opened = names[i], RTLD_NOW | RTLD_LOCAL);
        const char *err = lib ? NULL : dlerror(); /* (reading it frees the failure's message) */
        if (err && !why[0]) snprintf(why, sizeof why, "%s", err);
    }
    if (!lib) return false;
    struct {
        void **field;
        const char *sym;
    } e[] = {
#define E(field, fn) {(void **)&dn.field + 0 * sizeof(dn.field = fn), #fn}
        E(engine_create, dnnl_engine_create),
        E(stream_create, dnnl_stream_create),
        E(md_by_strides, dnnl_memory_desc_init_by_strides),
        E(matmul_desc_init, dnnl_matmul_desc_init),
        E(attr_create, dnnl_primitive_attr_create),
        E(attr_destroy, dnnl_primitive_attr_destroy),
        E(attr_set_output_scales, dnnl_primitive_attr_set_output_scales),
        E(attr_set_post_ops, dnnl_primitive_attr_set_post_ops),
        E(post_ops_create, dnnl_post_ops_create),
        E(post_ops_destroy, dnnl_post_ops_destroy),
        E(post_ops_append_sum, dnnl_post_ops_append_sum),
        E(pd_create, dnnl_primitive_desc_create),
        E(pd_destroy, dnnl_primitive_desc_destroy),
        E(pd_query, dnnl_primitive_desc_query),
        E(primitive_create, dnnl_primitive_create),
        E(primitive_destroy, dnnl_primitive_destroy),
        E(primitive_execute, dnnl_primitive_execute),
        E(stream_wait, dnnl_stream_wait),
        E(memory_create, dnnl_memory_create),
        E(memory_destroy, dnnl_memory_destroy),
        E(version, dnnl_version),
#undef E
        {(void **)&dn.omp_set_num_threads, "omp_set_num_threads"},
    };
    for (size_t i = 0; i < sizeof e / sizeof *e; i++) {
        *e[i].field = dlsym(lib, e[i].sym);
        if (!*e[i].field) { /* lib stays open: dlclose of a half-used library gains nothing */
            snprintf(why, sizeof why, "%s lacks %s (oneDNN 2.x needed)", opened, e[i].sym);
            return false;
        }
    }
    bool ok = dn.engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
              dn.stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success;
    if (!ok) snprintf(why, sizeof why, "oneDNN made no CPU engine");
    return ok;
}

/* Loads oneDNN once (under mu); false when it is broken. */
static bool ensure_loaded(void) {
    if (!loaded) {
        loaded = true;
        broken = !load();
    }
    return !broken;
}

void rt_dnnl_describe(char *buf, size_t cap) {
    if (!rt_dnnl_enabled()) {
        snprintf(buf, cap, "OpenBLAS (oneDNN off: LOOM_CPU_GEMM=openblas)");
        return;
    }
    pthread_mutex_lock(&mu);
    if (ensure_loaded()) {
        const dnnl_version_t *v = dn.version();
        snprintf(buf, cap, "oneDNN %d.%d.%d (matmul: f32 GEMMs on all threads, bf16/f16 operands), OpenBLAS (GEMVs, small GEMMs)",
                 v->major, v->minor, v->patch);
    } else {
        snprintf(buf, cap, "OpenBLAS (oneDNN not used: %s)", why);
    }
    pthread_mutex_unlock(&mu);
}

/* A row-major (rows, cols) matrix of dt with leading dim ld, stored transposed when trans. */
static bool desc(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t ld, int trans, ir_dtype dt) {
    dnnl_data_type_t t = dt == DT_F32 ? dnnl_f32 : dt == DT_BF16 ? dnnl_bf16 : dt == DT_F16 ? dnnl_f16 : dnnl_data_type_undef;
    if (t == dnnl_data_type_undef) return false;
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return dn.md_by_strides(md, 2, dims, t, strides) == dnnl_success;
}

/* Builds the entry's primitive; false when oneDNN has no implementation for it. */
static bool build(mm_entry *e) {
    const mm_key *k = &e->key;
    if (!desc(&e->a, k->M, k->K, k->lda, k->ta, k->a_dt) || !desc(&e->b, k->K, k->N, k->ldb, k->tb, k->b_dt) ||
        !desc(&e->c, k->M, k->N, k->ldc, 0, k->c_dt) ||
        (k->bias_dt != DT_VOID && !desc(&e->bias, 1, k->N, k->N, 0, k->bias_dt)))
        return false;
    dnnl_matmul_desc_t md;
    if (dn.matmul_desc_init(&md, &e->a, &e->b, k->bias_dt != DT_VOID ? &e->bias : NULL, &e->c) != dnnl_success)
        return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = dn.attr_create(&attr) == dnnl_success;
    if (ok && k->alpha != 1.0f) ok = dn.attr_set_output_scales(attr, 1, 0, &k->alpha) == dnnl_success;
    if (ok && k->beta != 0.0f) {
        ok = dn.post_ops_create(&po) == dnnl_success && dn.post_ops_append_sum(po, k->beta) == dnnl_success &&
             dn.attr_set_post_ops(attr, po) == dnnl_success;
    }
    dnnl_primitive_desc_t pd = NULL;
    if (ok) ok = dn.pd_create(&pd, &md, attr, engine, NULL) == dnnl_success;
    /* oneDNN's reference kernels (plain loops: what it offers where the CPU lacks the
     * instructions, f16 on Zen 4 say) are far slower than widening for OpenBLAS */
    const char *impl = NULL;
    if (ok) ok = dn.pd_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl && strncmp(impl, "ref", 3) != 0;
    if (ok) ok = dn.primitive_create(&e->prim, pd) == dnnl_success;
    if (pd) dn.pd_destroy(pd);
    if (po) dn.post_ops_destroy(po);
    if (attr) dn.attr_destroy(attr);
    return ok;
}

/* The cached entry for key, built on first use; NULL when oneDNN cannot run it. A full table
 * builds into *spare, which the caller destroys after the call. */
static mm_entry *lookup(const mm_key *key, mm_entry *spare) {
    pthread_mutex_lock(&mu);
    mm_entry *e = NULL;
    ensure_loaded();
    for (int i = 0; !broken && i < ncache && !e; i++)
        if (key_eq(&cache[i].key, key)) e = &cache[i];
    if (!e && !broken) {
        e = ncache < CACHE_MAX ? &cache[ncache] : spare;
        memset(e, 0, sizeof *e);
        e->key = *key;
        if (!build(e)) e = NULL;
        else if (e != spare) ncache++;
    }
    pthread_mutex_unlock(&mu);
    return e;
}

bool rt_dnnl_gemm(const rt_dnnl_call *c) {
    /* oneDNN scales the bias with the product (alpha · (A·B + bias)): not this GEMM's definition */
    if (!rt_dnnl_enabled() || (c->bias && c->alpha != 1.0f)) return false;
    mm_key key = {c->M, c->N, c->K, c->lda, c->ldb, c->ldc, c->ta, c->tb, c->alpha, c->beta,
                  c->a_dt, c->b_dt, c->c_dt, c->bias ? c->bias_dt : DT_VOID};
    mm_entry spare;
    mm_entry *e = lookup(&key, &spare);
    if (!e) return false;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, mbias = NULL;
    bool ok = dn.memory_create(&ma, &e->a, engine, (void *)c->A) == dnnl_success &&
              dn.memory_create(&mb, &e->b, engine, (void *)c->B) == dnnl_success &&
              dn.memory_create(&mc, &e->c, engine, c->C) == dnnl_success &&
              (!c->bias || dn.memory_create(&mbias, &e->bias, engine, (void *)c->bias) == dnnl_success);
    if (ok) {
        static _Thread_local int set_threads;
        int threads = c->threads < 1 ? 1 : c->threads;
        if (threads != set_threads) {
            dn.omp_set_num_threads(threads);
            set_threads = threads;
        }
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_BIAS, mbias}};
        pthread_mutex_lock(&exec_mu);
        bool ran = dn.primitive_execute(e->prim, stream, c->bias ? 4 : 3, args) == dnnl_success &&
                   dn.stream_wait(stream) == dnnl_success;
        pthread_mutex_unlock(&exec_mu);
        if (!ran && c->beta != 0.0f) { /* C may be half updated: the fallback cannot redo it */
            fprintf(stderr, "loom: oneDNN failed to run a %lld x %lld x %lld GEMM that accumulates into C\n",
                    (long long)c->M, (long long)c->N, (long long)c->K);
            abort();
        }
        ok = ran;
    }
    if (ma) dn.memory_destroy(ma);
    if (mb) dn.memory_destroy(mb);
    if (mc) dn.memory_destroy(mc);
    if (mbias) dn.memory_destroy(mbias);
    if (e == &spare) dn.primitive_destroy(spare.prim);
    return ok;
}
