/* threadpool.c — the persistent pthread pool behind rt_pool_parallel_for (see threadpool.h).
 *
 * Protocol. The caller publishes a job (fn, ctx, n, chunk count) under `mu`, bumps the
 * generation counter, resets `ticket` to (generation << 32 | 0) and `done` to 0, and broadcasts
 * `wake`. Everyone, the caller included, claims chunk indices by compare-and-swap on `ticket`,
 * which only succeeds while the ticket's generation is the claimer's and chunks are left; each
 * finished chunk increments `done`, and the thread finishing the last one signals `done_cv`. The
 * caller returns once done == nchunks. So:
 *  - the caller never waits for a worker that has not started a chunk (a sleepy or descheduled
 *    worker costs nothing: the caller and the awake ones take its share);
 *  - a worker that snapshots a job late (the call already returned) fails to claim, because the
 *    ticket carries the generation, and never runs a stale fn/ctx;
 *  - every increment of `done` belongs to the current generation, since a chunk can only be
 *    claimed while its generation is current and the caller waits for all claimed chunks.
 *
 * Memory ordering: job fields are written and read under `mu`; chunk results are published by
 * the release increment of `done` and acquired by the caller's load of it.
 */
#include "runtime/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* How long idle workers, and a caller waiting for the last chunks, spin before sleeping on a
 * condition variable. Waking a sleeping thread costs tens of microseconds, more than many of
 * the loops the pool runs; spinning this long keeps a run of back-to-back calls (the kernels of
 * one forward) on awake workers. */
#define SPIN_NS 100000

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

struct rt_pool {
    int nthreads;               /* participants: workers + the caller */
    pthread_t *threads;         /* [nthreads - 1] */

    pthread_mutex_t call_mu;    /* one parallel_for at a time */
    pthread_mutex_t mu;         /* guards the job fields, stop, and the condition variables */
    pthread_cond_t wake;        /* workers: a new generation or stop */
    pthread_cond_t done_cv;     /* caller: done reached nchunks */

    atomic_uint_fast64_t gen;   /* bumped once per published job (under mu) */
    atomic_bool stop;

    /* The job of generation `gen`: written under mu, read under mu. */
    rt_pool_fn fn;
    void *ctx;
    int64_t n, nchunks;

    atomic_uint_fast64_t ticket; /* (generation & 0xffffffff) << 32 | next unclaimed chunk */
    atomic_int_fast64_t done;    /* chunks of the current generation finished */
};

/* Set while a thread runs chunks of some pool: a nested parallel_for then runs inline. */
static _Thread_local bool tls_in_pool;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int64_t rt_pool_grain(int64_t work_per_index) {
    if (work_per_index < 1) work_per_index = 1;
    int64_t g = RT_POOL_MIN_CHUNK_WORK / work_per_index;
    return g < 1 ? 1 : g;
}

int rt_pool_default_threads(void) {
    long n = 0;
    const char *env = getenv("LOOM_NUM_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1) n = v;
    }
    if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > RT_POOL_MAX_THREADS) n = RT_POOL_MAX_THREADS;
    return (int)n;
}

int rt_pool_size(const rt_pool *pool) { return pool ? pool->nthreads : 1; }

/* Claims the next chunk of generation `gen`: false once its chunks are gone or the pool has
 * moved on to another generation. */
static bool claim(rt_pool *pool, uint32_t gen, int64_t nchunks, int64_t *chunk) {
    uint_fast64_t v = atomic_load_explicit(&pool->ticket, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (int64_t)(uint32_t)v >= nchunks) return false;
        if (atomic_compare_exchange_weak_explicit(&pool->ticket, &v, v + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *chunk = (int64_t)(uint32_t)v;
            return true;
        }
    }
}

/* Runs chunks of generation `gen` until none are left. Chunk c of nchunks over [0, n) is
 * contiguous; the first n % nchunks chunks get one extra index. */
static void run_chunks(rt_pool *pool, uint32_t gen, rt_pool_fn fn, void *ctx, int64_t n,
                       int64_t nchunks) {
    int64_t base = n / nchunks, extra = n % nchunks, c;
    while (claim(pool, gen, nchunks, &c)) {
        int64_t begin = c * base + (c < extra ? c : extra);
        int64_t end = begin + base + (c < extra ? 1 : 0);
        fn(ctx, begin, end);
        if (atomic_fetch_add_explicit(&pool->done, 1, memory_order_acq_rel) + 1 == nchunks) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

static void *worker_main(void *p) {
    rt_pool *pool = p;
    uint_fast64_t seen = 0;
    tls_in_pool = true;
    for (;;) {
        int64_t spin_end = now_ns() + SPIN_NS;
        for (int i = 1;; i++) {
            if (atomic_load_explicit(&pool->gen, memory_order_acquire) != seen ||
                atomic_load_explicit(&pool->stop, memory_order_relaxed))
                break;
            if (i % 64 == 0 && now_ns() > spin_end) break;
            cpu_relax();
        }
        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->gen, memory_order_relaxed) == seen &&
               !atomic_load_explicit(&pool->stop, memory_order_relaxed))
            pthread_cond_wait(&pool->wake, &pool->mu);
        if (atomic_load_explicit(&pool->stop, memory_order_relaxed)) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&pool->gen, memory_order_relaxed);
        rt_pool_fn fn = pool->fn;
        void *ctx = pool->ctx;
        int64_t n = pool->n, nchunks = pool->nchunks;
        pthread_mutex_unlock(&pool->mu);
        run_chunks(pool, (uint32_t)seen, fn, ctx, n, nchunks);
    }
}

rt_pool *rt_pool_new(int nthreads) {
    if (nthreads <= 0) nthreads = rt_pool_default_threads();
    if (nthreads > RT_POOL_MAX_THREADS) nthreads = RT_POOL_MAX_THREADS;
    rt_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->nthreads = nthreads;
    int nw = nthreads - 1;
    if (nw > 0) {
        pool->threads = calloc((size_t)nw, sizeof *pool->threads);
        if (!pool->threads) {
            free(pool);
            return NULL;
        }
    }
    pthread_mutex_init(&pool->call_mu, NULL);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->stop, false);
    atomic_init(&pool->ticket, 0);
    atomic_init(&pool->done, 0);
    for (int i = 0; i < nw; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
            pool->nthreads = i + 1;  /* rt_pool_free joins the i workers started so far */
            rt_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void rt_pool_free(rt_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store_explicit(&pool->stop, true, memory_order_relaxed);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nthreads - 1; i++) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    pthread_mutex_destroy(&pool->call_mu);
    free(pool->threads);
    free(pool);
}

void rt_pool_parallel_for_grain(rt_pool *pool, int64_t n, int64_t grain, rt_pool_fn fn,
                                void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t nchunks = n / grain;  /* every chunk gets ≥ grain indices */
    if (pool && nchunks > pool->nthreads) nchunks = pool->nthreads;
    if (!pool || nchunks <= 1 || tls_in_pool) {
        fn(ctx, 0, n);
        return;
    }

    pthread_mutex_lock(&pool->call_mu);
    tls_in_pool = true;
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n = n;
    pool->nchunks = nchunks;
    uint32_t gen = (uint32_t)(atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->ticket, (uint_fast64_t)gen << 32, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);

    run_chunks(pool, gen, fn, ctx, n, nchunks);

    int64_t spin_end = now_ns() + SPIN_NS;
    for (int i = 1;; i++) {
        if (atomic_load_explicit(&pool->done, memory_order_acquire) == nchunks) break;
        if (i % 64 == 0 && now_ns() > spin_end) break;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->mu);
    while (atomic_load_explicit(&pool->done, memory_order_acquire) != nchunks)
        pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
    tls_in_pool = false;
    pthread_mutex_unlock(&pool->call_mu);
}

void rt_pool_parallel_for(rt_pool *pool, int64_t n, rt_pool_fn fn, void *ctx) {
    rt_pool_parallel_for_grain(pool, n, 1, fn, ctx);
}

#define TOUCH_CHUNK ((int64_t)1 << 21) /* bytes a chunk of rt_pool_touch */
#define TOUCH_STRIDE 4096               /* a byte written back per page */

typedef struct {
    char *p;
    size_t bytes;
} touch_job;

/* An atomic or of 0 is one write access: a page never touched faults in writable at once (a
 * plain read then write maps the shared zero page first and then copies it on write, which
 * flushes the other threads' TLBs: an interrupt to every CPU per page). */
static void touch_chunks(void *ctx, int64_t lo, int64_t hi)
{
    const touch_job *t = ctx;
    size_t a = (size_t)lo * TOUCH_CHUNK, b = (size_t)hi * TOUCH_CHUNK;
    for (size_t i = a; i < b && i < t->bytes; i += TOUCH_STRIDE)
        __atomic_fetch_or(t->p + i, 0, __ATOMIC_RELAXED);
}

void rt_pool_touch(rt_pool *pool, void *p, size_t bytes)
{
    touch_job t = {p, bytes};
    rt_pool_parallel_for(pool, (int64_t)((bytes + TOUCH_CHUNK - 1) / TOUCH_CHUNK), touch_chunks, &t);
}
