/* threadpool.h — a small persistent pool of pthreads for the CPU backend's data-parallel loops.
 *
 * A pool of P participants is the calling thread plus P - 1 worker threads, created once by
 * rt_pool_new and joined by rt_pool_free; no call creates threads. rt_pool_parallel_for splits an
 * index range [0, n) into at most P contiguous chunks of near-equal size, runs them on the
 * workers and the caller (chunks are claimed dynamically, so a slow or descheduled thread does
 * not hold the others back), and returns when every chunk is done. Everything fn wrote is
 * visible to the caller when the call returns.
 *
 * Invariants and limits:
 *  - One parallel_for runs at a time per pool: concurrent callers are serialized.
 *  - A parallel_for issued from inside a chunk (nested parallelism, any pool) runs serially on
 *    the calling thread; it never deadlocks.
 *  - Work is only split when each chunk gets at least `grain` indices; tiny ranges run inline
 *    on the caller with no synchronization at all.
 *  - Idle workers spin briefly (100 µs) on a generation counter, then sleep on a
 *    condition variable, so back-to-back calls are cheap and an idle pool costs no CPU.
 *  - The caller waits only for chunks that have been claimed: a worker that is slow to wake
 *    does not delay a call (the others take its chunks).
 */
#ifndef LOOM_RT_THREADPOOL_H
#define LOOM_RT_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

#define RT_POOL_MAX_THREADS 256

typedef struct rt_pool rt_pool;

/* A chunk of work: process indices [begin, end) of the range. ctx is the caller's pointer. */
typedef void (*rt_pool_fn)(void *ctx, int64_t begin, int64_t end);

/* The pool size a caller gets by asking for 0 threads: LOOM_NUM_THREADS when it holds an integer
 * ≥ 1, else the number of online CPUs; clamped to [1, RT_POOL_MAX_THREADS]. */
int rt_pool_default_threads(void);

/* Creates a pool of nthreads participants (the caller counts as one, so nthreads - 1 workers
 * are started); nthreads ≤ 0 means rt_pool_default_threads(). Returns NULL when memory or
 * thread creation fails (then nothing is left running). */
rt_pool *rt_pool_new(int nthreads);

/* Stops and joins the workers and frees the pool. NULL is allowed. Must not be called while a
 * parallel_for on this pool is running. */
void rt_pool_free(rt_pool *pool);

/* Number of participants (workers + the caller); 1 for a NULL pool. */
int rt_pool_size(const rt_pool *pool);

/* Runs fn over [0, n) in contiguous chunks of at least `grain` indices (grain < 1 counts as 1)
 * on the pool's threads and the caller; returns when all chunks are done. Every index is in
 * exactly one chunk; chunks are never empty. n ≤ 0 does nothing. pool may be NULL: then
 * fn(ctx, 0, n) runs on the caller. fn must be safe to run concurrently on disjoint chunks. */
void rt_pool_parallel_for_grain(rt_pool *pool, int64_t n, int64_t grain, rt_pool_fn fn, void *ctx);

/* Faults in the pages of bytes at p for writing, on the pool's threads (a byte a page written
 * back, contents unchanged; nothing may use the memory meanwhile): memory's first touch (the
 * kernel zeroing the page) done now, by every thread at once, instead of inside a timed run. */
void rt_pool_touch(rt_pool *pool, void *p, size_t bytes);

/* rt_pool_parallel_for_grain with grain 1: for ranges whose every index is substantial work
 * (a row block, a batch entry). Callers with cheap indices pick a grain (see rt_pool_grain). */
void rt_pool_parallel_for(rt_pool *pool, int64_t n, rt_pool_fn fn, void *ctx);

/* The grain-size heuristic: the number of indices per chunk so that a chunk holds at least
 * RT_POOL_MIN_CHUNK_WORK units of work when one index costs `work_per_index` units (units are
 * the caller's: elements touched, flops). Always ≥ 1. */
#define RT_POOL_MIN_CHUNK_WORK 32768
int64_t rt_pool_grain(int64_t work_per_index);

#endif
