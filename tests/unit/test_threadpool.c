/* test_threadpool.c — rt_pool_parallel_for: every index exactly once, chunks contiguous and
 * non-empty, many back-to-back calls (races), n below the thread count, n = 0, grain, nested
 * calls, a NULL pool, LOOM_NUM_THREADS. Meant to run under ASan (ctest) and, by hand, TSan. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/threadpool.h"

#include "test_check.h"

/* Marks each index it sees; sums indices; counts chunks and their sizes. */
typedef struct {
    int *hits;              /* [n] */
    atomic_llong sum;
    atomic_int chunks;
    atomic_int empty_chunks;
    atomic_llong min_chunk;
} cover_ctx;

static void cover_fn(void *p, int64_t begin, int64_t end) {
    cover_ctx *c = p;
    atomic_fetch_add(&c->chunks, 1);
    if (end <= begin) atomic_fetch_add(&c->empty_chunks, 1);
    long long len = end - begin, cur = atomic_load(&c->min_chunk);
    while (len < cur && !atomic_compare_exchange_weak(&c->min_chunk, &cur, len)) {}
    long long s = 0;
    for (int64_t i = begin; i < end; i++) {
        c->hits[i]++;  /* disjoint chunks: no two threads touch the same index */
        s += i;
    }
    atomic_fetch_add(&c->sum, s);
}

/* Runs one cover check; returns the number of chunks used. */
static int check_cover(rt_pool *pool, int64_t n, int64_t grain) {
    cover_ctx c;
    c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof *c.hits);
    atomic_init(&c.sum, 0);
    atomic_init(&c.chunks, 0);
    atomic_init(&c.empty_chunks, 0);
    atomic_init(&c.min_chunk, 1LL << 62);
    rt_pool_parallel_for_grain(pool, n, grain, cover_fn, &c);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += c.hits[i] != 1;
    long long want = n > 0 ? (long long)n * (n - 1) / 2 : 0;
    int chunks = atomic_load(&c.chunks);
    CHECK(bad == 0, "n=%lld grain=%lld: %d indices not hit exactly once", (long long)n,
          (long long)grain, bad);
    CHECK(atomic_load(&c.sum) == want, "n=%lld: sum %lld, want %lld", (long long)n,
          (long long)atomic_load(&c.sum), want);
    CHECK(atomic_load(&c.empty_chunks) == 0, "n=%lld: empty chunk", (long long)n);
    CHECK(chunks <= rt_pool_size(pool), "n=%lld: %d chunks > %d threads", (long long)n, chunks,
          rt_pool_size(pool));
    if (n > 0 && chunks > 1) {
        long long g = grain < 1 ? 1 : grain;
        CHECK(atomic_load(&c.min_chunk) >= g, "n=%lld: chunk of %lld < grain %lld",
              (long long)n, (long long)atomic_load(&c.min_chunk), g);
    }
    if (n == 0) CHECK(chunks == 0, "n=0 ran %d chunks", chunks);
    free(c.hits);
    return chunks;
}

/* Back-to-back calls: each adds its range length into a per-call counter. */
static void count_fn(void *p, int64_t begin, int64_t end) {
    atomic_fetch_add((atomic_llong *)p, end - begin);
}

static void check_back_to_back(rt_pool *pool, int calls) {
    atomic_llong total;
    atomic_init(&total, 0);
    long long want = 0;
    int bad = 0;
    for (int k = 0; k < calls; k++) {
        int64_t n = 1 + k % 37;
        atomic_llong here;
        atomic_init(&here, 0);
        rt_pool_parallel_for(pool, n, count_fn, &here);
        bad += atomic_load(&here) != n;
        atomic_fetch_add(&total, atomic_load(&here));
        want += n;
    }
    CHECK(bad == 0, "%d of %d back-to-back calls lost indices", bad, calls);
    CHECK(atomic_load(&total) == want, "total %lld want %lld", (long long)atomic_load(&total), want);
}

/* Nested: each outer index runs an inner parallel_for on the same pool (runs inline). */
typedef struct {
    rt_pool *pool;
    atomic_llong inner_total;
} nest_ctx;

static void nest_outer(void *p, int64_t begin, int64_t end) {
    nest_ctx *c = p;
    for (int64_t i = begin; i < end; i++) rt_pool_parallel_for(c->pool, 100, count_fn, &c->inner_total);
}

/* Concurrency: each chunk waits (up to 10 s) until two chunks have started. That can only
 * happen if two threads run chunks at the same time, so it proves the workers take part. */
typedef struct {
    atomic_int started, timeouts;
} rendezvous_ctx;

static void rendezvous_fn(void *p, int64_t begin, int64_t end) {
    rendezvous_ctx *c = p;
    atomic_fetch_add(&c->started, 1);
    for (int i = 0; atomic_load(&c->started) < 2; i++) {
        if (i == 10000) {
            atomic_fetch_add(&c->timeouts, 1);
            return;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

int main(void) {
    /* NULL pool: serial on the caller, one chunk. */
    CHECK(rt_pool_size(NULL) == 1, "NULL pool size");
    CHECK(check_cover(NULL, 1000, 1) == 1, "NULL pool should run one chunk");
    check_cover(NULL, 0, 1);

    int sizes[] = {1, 2, 3, 4, 8};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int p = sizes[s];
        rt_pool *pool = rt_pool_new(p);
        CHECK(pool != NULL, "rt_pool_new(%d)", p);
        if (!pool) continue;
        CHECK(rt_pool_size(pool) == p, "size %d want %d", rt_pool_size(pool), p);

        /* sums over ranges, several lengths */
        int64_t ns[] = {0, 1, 2, 3, 7, 8, 9, 100, 1001, 65537};
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) check_cover(pool, ns[i], 1);
        int used = check_cover(pool, 1000, 1);
        CHECK(used == (p < 1000 ? p : 1000), "p=%d: 1000 indices used %d chunks", p, used);

        /* n smaller than the thread count: n chunks of one index */
        if (p > 2) CHECK(check_cover(pool, 2, 1) == 2, "p=%d: n=2 should give 2 chunks", p);

        /* grain: tiny work is not split; larger work keeps chunks ≥ grain */
        CHECK(check_cover(pool, 100, 1000) == 1, "p=%d: n < grain must run inline", p);
        check_cover(pool, 10000, 3000);
        check_cover(pool, 10000, 0);

        /* the workers really run chunks concurrently with the caller */
        if (p >= 2) {
            rendezvous_ctx rc;
            atomic_init(&rc.started, 0);
            atomic_init(&rc.timeouts, 0);
            rt_pool_parallel_for(pool, p, rendezvous_fn, &rc);
            CHECK(atomic_load(&rc.started) == p && atomic_load(&rc.timeouts) == 0,
                  "p=%d: no two chunks ran at once (%d started, %d timed out)", p,
                  atomic_load(&rc.started), atomic_load(&rc.timeouts));
        }

        /* races: many back-to-back calls */
        check_back_to_back(pool, 10000);

        /* nested parallel_for runs inline without deadlock */
        nest_ctx nc = {.pool = pool};
        atomic_init(&nc.inner_total, 0);
        rt_pool_parallel_for(pool, 16, nest_outer, &nc);
        CHECK(atomic_load(&nc.inner_total) == 1600, "nested total %lld",
              (long long)atomic_load(&nc.inner_total));

        rt_pool_free(pool);
    }

    /* the grain heuristic */
    CHECK(rt_pool_grain(1) == RT_POOL_MIN_CHUNK_WORK, "grain(1)");
    CHECK(rt_pool_grain(0) == RT_POOL_MIN_CHUNK_WORK, "grain(0)");
    CHECK(rt_pool_grain(1LL << 40) == 1, "grain(huge)");

    /* pool size from the environment, and a pool created then freed unused */
    setenv("LOOM_NUM_THREADS", "3", 1);
    CHECK(rt_pool_default_threads() == 3, "LOOM_NUM_THREADS=3 gave %d", rt_pool_default_threads());
    rt_pool *pool = rt_pool_new(0);
    CHECK(pool && rt_pool_size(pool) == 3, "rt_pool_new(0) with LOOM_NUM_THREADS=3");
    rt_pool_free(pool);
    setenv("LOOM_NUM_THREADS", "junk", 1);
    CHECK(rt_pool_default_threads() >= 1, "bad LOOM_NUM_THREADS falls back");
    unsetenv("LOOM_NUM_THREADS");
    rt_pool_free(NULL);

    if (failures) {
        fprintf(stderr, "test_threadpool: %d failures\n", failures);
        return 1;
    }
    printf("test_threadpool: OK\n");
    return 0;
}
