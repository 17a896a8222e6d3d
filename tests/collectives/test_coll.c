/* test_coll.c — the collectives layer against locally computed expectations, on any number of
 * ranks (run alone for the single backend, under mpiexec -np 1..8 for MPI).
 *
 * Every rank fills its buffers from a formula of (rank, index), so each rank can compute what
 * every collective must return without communicating. Checked: allreduce (sum, max, min; f32,
 * f64, i32, i64; backend, ring and tree; in place and not; counts 0, 1, not divisible by the
 * world size, larger than one eager message), allgather, reduce_scatter, broadcast from several
 * roots, barrier, send/recv and sendrecv rings, sub-communicators of a dp×tp×pp mesh (2×2×2 on
 * 8 ranks) and of a generic split, argument errors returned as values, launcher variables
 * (single backend), and that ring and tree give every rank the same bits.
 *
 * Tolerance: float sums are compared with the sum computed in long double in rank order:
 * |got − exp| ≤ tol · Σ|x_r| with tol = 4·p·2^-24 (f32), 4·p·2^-53 (f64) — the bound of any
 * summation order of p terms. Integer sums, max and min are exact. Prints the max error.
 *
 * Failure scenarios (--scenario=, checked by run_fail.sh): `timeout` — the last rank sleeps
 * 8 s before an allreduce with a 2 s timeout; `kill` — the last rank raises SIGKILL before it;
 * `exit` — the last rank calls exit(3) before it. The others must not hang. With the NCCL
 * backend on the fake driver and NCCL (tests/collectives/fake_cuda_nccl.c, whose environment
 * makes an operation hang or fail): `sync` — an allreduce that never completes, then coll_sync
 * (the caller's wait times out); `watchdog` — the same, then the rank sleeps 8 s in code that
 * knows nothing of the comm (the watchdog thread must end it); `async` — coll_sync after an
 * operation NCCL reports an asynchronous error for.
 *
 * --backend=nccl runs everything over NCCL: with host buffers (staged), or with
 * --device-buffers, where host memory stands for device memory (only on the fake driver,
 * whose streams run at once, so results can be read when a call returns). Device buffers
 * change three things, as coll.h says: ring and tree allreduce are refused, messages between
 * two ranks are matched by order (so the out-of-order receives are received in order), and
 * coll_sync completes the work. --gpu asks COLL_BACKEND_AUTO for GPU ranks;
 * --expect-backend=NAME checks what the comm got. In the single-process run, the backend
 * choice ($LOOM_COLL, opt.gpu) and the NCCL backend's errors without a driver, a device or the
 * library are checked line for line (with $LOOM_TEST_FAKE_CUDA, the fake library's path).
 */
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collectives/coll.h"

static int failures, checks, rank_, size_;
static bool dev_; /* the comm takes device buffers (NCCL, --device-buffers) */
static double max_err_f32, max_err_f64;

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        checks++;                                                                       \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "rank %d: %s:%d: FAIL %s: ", rank_, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                               \
            fprintf(stderr, "\n");                                                      \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

#define OK(call)                                                                        \
    do {                                                                                \
        coll_status st_ = (call);                                                       \
        if (st_ != COLL_OK) {                                                           \
            fprintf(stderr, "rank %d: %s:%d: %s returned %s: %s\n", rank_, __FILE__,    \
                    __LINE__, #call, coll_status_name(st_), coll_error_message(comm));  \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static const coll_dtype dtypes[] = {COLL_F32, COLL_F64, COLL_I32, COLL_I64};
static const coll_op ops[] = {COLL_SUM, COLL_MAX, COLL_MIN};
static const size_t counts[] = {0, 1, 2, 3, 5, 7, 8, 13, 64, 1000, 4099, 20011};
#define N_COUNTS (sizeof counts / sizeof counts[0])
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the data formula ---- */

static double fval(int r, size_t i)
{
    long k = (long)((r * 7919 + (long)i * 104729) % 2001) - 1000;
    return (double)k / 37.0 + 0.001 * r;
}

static int64_t ival(coll_dtype dt, int r, size_t i)
{
    if (dt == COLL_I32)
        return (int64_t)((r + 1) * 100003) - (int64_t)(i % 1009) * 997 * (r % 2 ? 1 : -1);
    /* beyond 2^53: a path through doubles would lose the low bits */
    return ((int64_t)(r + 1) << 52) + (int64_t)i * 3 - (int64_t)r * (int64_t)(i % 77) + 1;
}

static void fill(void *buf, coll_dtype dt, int r, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case COLL_F32: ((float *)buf)[i] = (float)fval(r, off + i); break;
        case COLL_F64: ((double *)buf)[i] = fval(r, off + i); break;
        case COLL_I32: ((int32_t *)buf)[i] = (int32_t)ival(dt, r, off + i); break;
        case COLL_I64: ((int64_t *)buf)[i] = ival(dt, r, off + i); break;
        default: break;
        }
    }
}

static bool is_float(coll_dtype dt) { return dt == COLL_F32 || dt == COLL_F64; }

static double getf(const void *buf, coll_dtype dt, size_t i)
{
    return dt == COLL_F32 ? (double)((const float *)buf)[i] : ((const double *)buf)[i];
}

static int64_t geti(const void *buf, coll_dtype dt, size_t i)
{
    return dt == COLL_I32 ? ((const int32_t *)buf)[i] : ((const int64_t *)buf)[i];
}

/* The value rank r contributes at index i, as the dtype stores it. */
static long double contrib_f(coll_dtype dt, int r, size_t i)
{
    return dt == COLL_F32 ? (long double)(float)fval(r, i) : (long double)fval(r, i);
}
static int64_t contrib_i(coll_dtype dt, int r, size_t i)
{
    return dt == COLL_I32 ? (int64_t)(int32_t)ival(dt, r, i) : ival(dt, r, i);
}

/* Checks got[i] (i < n) = op over ranks in `ranks` (nr of them) of contribution at index
 * off + i. Returns the number of bad elements. */
static int check_reduced(const char *what, const void *got, coll_dtype dt, coll_op op,
                         const int *ranks, int nr, size_t off, size_t n)
{
    int bad = 0;
    double tol = 4.0 * nr * (dt == COLL_F32 ? ldexp(1, -24) : ldexp(1, -53));
    double maxe = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = off + i;
        if (is_float(dt)) {
            long double acc = contrib_f(dt, ranks[0], k), mag = fabsl(acc);
            for (int j = 1; j < nr; j++) {
                long double x = contrib_f(dt, ranks[j], k);
                mag += fabsl(x);
                if (op == COLL_SUM) acc += x;
                else if (op == COLL_MAX) acc = x > acc ? x : acc;
                else acc = x < acc ? x : acc;
            }
            if (op != COLL_SUM)
                mag = 0; /* exact */
            double e = fabs(getf(got, dt, i) - (double)acc);
            if (e > maxe) maxe = e;
            if (!(e <= tol * (double)mag)) {
                if (bad++ < 3)
                    fprintf(stderr, "rank %d: %s: [%zu] = %.9g, expected %.9Lg\n", rank_, what, i,
                            getf(got, dt, i), acc);
            }
        } else {
            uint64_t acc = (uint64_t)contrib_i(dt, ranks[0], k);
            for (int j = 1; j < nr; j++) {
                int64_t x = contrib_i(dt, ranks[j], k);
                if (op == COLL_SUM) acc += (uint64_t)x;
                else if (op == COLL_MAX) acc = x > (int64_t)acc ? (uint64_t)x : acc;
                else acc = x < (int64_t)acc ? (uint64_t)x : acc;
            }
            int64_t want = dt == COLL_I32 ? (int64_t)(int32_t)(uint32_t)acc : (int64_t)acc;
            if (geti(got, dt, i) != want && bad++ < 3)
                fprintf(stderr, "rank %d: %s: [%zu] = %lld, expected %lld\n", rank_, what, i,
                        (long long)geti(got, dt, i), (long long)want);
        }
    }
    if (dt == COLL_F32 && maxe > max_err_f32) max_err_f32 = maxe;
    if (dt == COLL_F64 && maxe > max_err_f64) max_err_f64 = maxe;
    return bad;
}

static int *all_ranks(int p)
{
    int *r = malloc(sizeof(int) * (size_t)p);
    for (int i = 0; i < p; i++) r[i] = i;
    return r;
}

/* ---- the tests ---- */

static void test_allreduce(coll_comm *comm, coll_algo algo)
{
    int p = coll_size(comm), me = coll_rank(comm);
    if (dev_ && algo != COLL_ALGO_BACKEND) {
        /* ring and tree need host buffers: refused, the comm still usable */
        float x = 1, y = 0;
        coll_set_allreduce_algo(comm, algo);
        coll_status st = coll_allreduce(comm, &x, &y, 1, COLL_F32, COLL_SUM);
        CHECK(st == COLL_ERR_UNSUPPORTED && strstr(coll_error_message(comm), "needs host buffers"),
              "%s allreduce on device buffers: %s '%s'", coll_algo_name(algo), coll_status_name(st),
              coll_error_message(comm));
        coll_set_allreduce_algo(comm, COLL_ALGO_BACKEND);
        return;
    }
    int *ranks = all_ranks(p);
    coll_set_allreduce_algo(comm, algo);
    size_t maxn = counts[N_COUNTS - 1];
    char *send = malloc(maxn * 8 + 8), *recv = malloc(maxn * 8 + 8);
    int calls = 0;
    for (size_t d = 0; d < LEN(dtypes); d++)
        for (size_t o = 0; o < LEN(ops); o++)
            for (size_t c = 0; c < N_COUNTS; c++) {
                coll_dtype dt = dtypes[d];
                size_t n = counts[c];
                bool in_place = (c + o) % 2 == 1;
                fill(send, dt, me, 0, n);
                if (in_place)
                    memcpy(recv, send, n * coll_dtype_size(dt));
                else
                    memset(recv, 0x5a, n * coll_dtype_size(dt));
                OK(coll_allreduce(comm, in_place ? recv : send, recv, n, dt, ops[o]));
                calls++;
                char what[96];
                snprintf(what, sizeof what, "allreduce %s %s %s n=%zu%s", coll_algo_name(algo),
                         coll_dtype_name(dt), coll_op_name(ops[o]), n, in_place ? " in place" : "");
                int bad = check_reduced(what, recv, dt, ops[o], ranks, p, 0, n);
                CHECK(bad == 0, "%s: %d elements wrong", what, bad);
            }
    /* ring and tree: every rank holds the same bits (compare with rank 0's by broadcast) */
    if (algo != COLL_ALGO_BACKEND) {
        for (size_t c = 0; c < N_COUNTS; c++) {
            size_t n = counts[c];
            fill(send, COLL_F32, me, 0, n);
            OK(coll_allreduce(comm, send, recv, n, COLL_F32, COLL_SUM));
            memcpy(send, recv, n * 4);
            OK(coll_broadcast(comm, send, n, COLL_F32, 0));
            CHECK(memcmp(send, recv, n * 4) == 0, "allreduce %s f32 n=%zu: bits differ from rank 0's",
                  coll_algo_name(algo), n);
            /* and the same bits again on a second call */
            fill(send, COLL_F32, me, 0, n);
            char *again = malloc(n * 4 + 4);
            OK(coll_allreduce(comm, send, again, n, COLL_F32, COLL_SUM));
            CHECK(memcmp(again, recv, n * 4) == 0, "allreduce %s f32 n=%zu: not deterministic",
                  coll_algo_name(algo), n);
            free(again);
        }
    }
    coll_set_allreduce_algo(comm, COLL_ALGO_BACKEND);
    free(send);
    free(recv);
    free(ranks);
    (void)calls;
}

/* Allreduces started together (several counts and dtypes), advanced, then waited for: each
 * one's result as a blocking allreduce's. */
static void test_allreduce_start(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    int *ranks = all_ranks(p);
    enum { N = 6 };
    char *buf[N];
    for (int i = 0; i < N; i++) {
        size_t n = counts[(size_t)i % N_COUNTS];
        coll_dtype dt = dtypes[(size_t)i % LEN(dtypes)];
        buf[i] = malloc(n * 8 + 8);
        fill(buf[i], dt, me, 0, n);
        OK(coll_allreduce_start(comm, buf[i], n, dt, COLL_SUM));
        coll_progress(comm);
    }
    OK(coll_allreduce_wait(comm));
    for (int i = 0; i < N; i++) {
        size_t n = counts[(size_t)i % N_COUNTS];
        coll_dtype dt = dtypes[(size_t)i % LEN(dtypes)];
        char what[96];
        snprintf(what, sizeof what, "allreduce started %s n=%zu (%d of %d)", coll_dtype_name(dt), n, i + 1, N);
        int bad = check_reduced(what, buf[i], dt, COLL_SUM, ranks, p, 0, n);
        CHECK(bad == 0, "%s: %d elements wrong", what, bad);
        free(buf[i]);
    }
    OK(coll_allreduce_wait(comm)); /* nothing started: done at once */
    free(ranks);
}

static void test_allgather(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    size_t maxn = 4099;
    char *send = malloc(maxn * 8 + 8), *recv = malloc(maxn * 8 * (size_t)p + 8);
    for (size_t d = 0; d < LEN(dtypes); d++)
        for (size_t c = 0; c < N_COUNTS && counts[c] <= maxn; c++) {
            coll_dtype dt = dtypes[d];
            size_t n = counts[c], es = coll_dtype_size(dt);
            bool in_place = c % 2 == 1;
            memset(recv, 0x5a, n * es * (size_t)p);
            fill(in_place ? recv + (size_t)me * n * es : send, dt, me, 0, n);
            OK(coll_allgather(comm, in_place ? recv + (size_t)me * n * es : send, recv, n, dt));
            int bad = 0;
            for (int r = 0; r < p; r++) {
                char *want = malloc(n * es + 1);
                fill(want, dt, r, 0, n);
                bad += memcmp(want, recv + (size_t)r * n * es, n * es) != 0;
                free(want);
            }
            CHECK(bad == 0, "allgather %s n=%zu%s: %d ranks' blocks wrong", coll_dtype_name(dt), n,
                  in_place ? " in place" : "", bad);
        }
    free(send);
    free(recv);
}

static void test_reduce_scatter(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    int *ranks = all_ranks(p);
    size_t maxn = 4099;
    char *send = malloc(maxn * 8 * (size_t)p + 8), *recv = malloc(maxn * 8 + 8);
    for (size_t d = 0; d < LEN(dtypes); d++)
        for (size_t o = 0; o < 2; o++)
            for (size_t c = 0; c < N_COUNTS && counts[c] <= maxn; c++) {
                coll_dtype dt = dtypes[d];
                size_t n = counts[c];
                bool in_place = (c + o) % 2 == 1; /* the result into this rank's block of send */
                char *mine = send + (size_t)me * n * coll_dtype_size(dt);
                fill(send, dt, me, 0, n * (size_t)p);
                OK(coll_reduce_scatter(comm, send, in_place ? mine : recv, n, dt, ops[o]));
                char what[96];
                snprintf(what, sizeof what, "reduce_scatter %s %s n=%zu%s", coll_dtype_name(dt),
                         coll_op_name(ops[o]), n, in_place ? " in place" : "");
                int bad = check_reduced(what, in_place ? mine : recv, dt, ops[o], ranks, p, (size_t)me * n, n);
                CHECK(bad == 0, "%s: %d elements wrong", what, bad);
            }
    free(send);
    free(recv);
    free(ranks);
}

static void test_broadcast(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    int roots[] = {0, p - 1, p / 2};
    size_t maxn = counts[N_COUNTS - 1];
    char *buf = malloc(maxn * 8 + 8), *want = malloc(maxn * 8 + 8);
    for (size_t d = 0; d < LEN(dtypes); d++)
        for (size_t ri = 0; ri < LEN(roots); ri++)
            for (size_t c = 0; c < N_COUNTS; c++) {
                coll_dtype dt = dtypes[d];
                size_t n = counts[c], es = coll_dtype_size(dt);
                int root = roots[ri];
                fill(buf, dt, me, 0, n); /* non-roots' data must be overwritten */
                OK(coll_broadcast(comm, buf, n, dt, root));
                fill(want, dt, root, 0, n);
                CHECK(memcmp(buf, want, n * es) == 0, "broadcast %s n=%zu root %d: wrong data",
                      coll_dtype_name(dt), n, root);
            }
    free(buf);
    free(want);
}

static void test_p2p(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    int right = (me + 1) % p, left = (me + p - 1) % p;
    size_t sizes[] = {0, 1, 1000, 200000 /* > eager limit: rendezvous */};
    for (size_t k = 0; k < LEN(sizes); k++) {
        size_t n = sizes[k];
        double *s = malloc(n * 8 + 8), *r = malloc(n * 8 + 8), *want = malloc(n * 8 + 8);
        fill(s, COLL_F64, me, 0, n);
        fill(want, COLL_F64, left, 0, n);
        int tag = (int)(k * 100 + 7);
        /* blocking ring: even ranks send first, odd ranks receive first (a chain, no cycle) */
        if (p > 1) {
            if (me % 2 == 0) {
                OK(coll_send(comm, s, n, COLL_F64, right, tag));
                OK(coll_recv(comm, r, n, COLL_F64, left, tag));
            } else {
                OK(coll_recv(comm, r, n, COLL_F64, left, tag));
                OK(coll_send(comm, s, n, COLL_F64, right, tag));
            }
            CHECK(memcmp(r, want, n * 8) == 0, "send/recv ring n=%zu: wrong data", n);
        }
        /* sendrecv ring, both directions */
        memset(r, 0, n * 8);
        OK(coll_sendrecv(comm, s, n, right, r, n, left, COLL_F64, tag + 1));
        CHECK(memcmp(r, want, n * 8) == 0, "sendrecv ring right n=%zu: wrong data", n);
        fill(want, COLL_F64, right, 0, n);
        OK(coll_sendrecv(comm, s, n, left, r, n, right, COLL_F64, tag + 2));
        CHECK(memcmp(r, want, n * 8) == 0, "sendrecv ring left n=%zu: wrong data", n);
        free(s);
        free(r);
        free(want);
    }
    /* tags: two messages to the right neighbour received in the order sent (small, eager) and
     * the user's tag 1..4 never matches the ring algorithm's internal traffic */
    if (p > 1) {
        int32_t a = 1000 + me, b = 2000 + me, ga = 0, gb = 0;
        OK(coll_sendrecv(comm, &a, 1, right, &ga, 1, left, COLL_I32, 1));
        OK(coll_sendrecv(comm, &b, 1, right, &gb, 1, left, COLL_I32, 2));
        CHECK(ga == 1000 + left && gb == 2000 + left, "tagged sendrecv: got %d %d", ga, gb);
    }
    /* sends that never wait: every rank first sends three large (rendezvous) messages to the
     * right, reusing one buffer, then receives from the left in reverse tag order — blocking
     * sends would deadlock the ring; then two with one tag arrive in the order sent */
    if (p > 1) {
        size_t n = 200000;
        double *s = malloc(n * 8), *r = malloc(n * 8);
        for (int t = 0; t < 3; t++) {
            fill(s, COLL_F64, me * 10 + t, 0, n);
            OK(coll_send_async(comm, s, n, COLL_F64, right, 40 + t));
        }
        for (int k = 0; k < 3; k++) {
            int t = dev_ ? k : 2 - k; /* NCCL matches by order: received in the order sent */
            OK(coll_recv(comm, r, n, COLL_F64, left, 40 + t));
            bool same = true;
            for (size_t i = 0; i < n && same; i++)
                same = r[i] == fval(left * 10 + t, i);
            CHECK(same, "send_async ring tag %d: wrong data", 40 + t);
        }
        int32_t a = 1, b = 2, ga = 0, gb = 0;
        OK(coll_send_async(comm, &a, 1, COLL_I32, right, 50));
        OK(coll_send_async(comm, &b, 1, COLL_I32, right, 50));
        OK(coll_recv(comm, &ga, 1, COLL_I32, left, 50));
        OK(coll_recv(comm, &gb, 1, COLL_I32, left, 50));
        CHECK(ga == 1 && gb == 2, "send_async order: got %d then %d", ga, gb);
        OK(coll_flush(comm));
        free(s);
        free(r);
    }
    OK(coll_barrier(comm));
}

/* Single backend: messages to itself, in any tag order; a receive with no send fails. */
static void test_single_mailbox(coll_comm *comm)
{
    int32_t a = 11, b = 22, x = 0, y = 0;
    OK(coll_send(comm, &a, 1, COLL_I32, 0, 5));
    OK(coll_send(comm, &b, 1, COLL_I32, 0, 6));
    OK(coll_recv(comm, &y, 1, COLL_I32, 0, 6));
    OK(coll_recv(comm, &x, 1, COLL_I32, 0, 5));
    CHECK(x == 11 && y == 22, "mailbox: got %d %d", x, y);
    coll_status st = coll_recv(comm, &x, 1, COLL_I32, 0, 5);
    CHECK(st == COLL_ERR_DEADLOCK, "recv with no send: %s", coll_status_name(st));
    CHECK(strstr(coll_error_message(comm), "tag 5") != NULL, "message: %s", coll_error_message(comm));
    OK(coll_send(comm, &a, 1, COLL_I32, 0, 9));
    int64_t big[2];
    st = coll_recv(comm, big, 2, COLL_I64, 0, 9);
    CHECK(st == COLL_ERR_ARG, "recv of the wrong size: %s", coll_status_name(st));
    /* a pending message is freed by coll_finalize (LSan checks) */
    OK(coll_send(comm, &a, 1, COLL_I32, 0, 10));
}

/* Sub-communicators: a dp×tp×pp mesh (2×2×2 on 8 ranks), rank = (d·TP + t)·PP + q. Each axis
 * group's allreduce sums only its members. */
static void test_mesh(coll_comm *comm)
{
    int p = coll_size(comm), me = coll_rank(comm);
    int PP = p % 2 == 0 ? 2 : 1, rest = p / PP, TP = rest % 2 == 0 ? 2 : 1, DP = rest / TP;
    int dims[3] = {DP, TP, PP};
    int coord[3] = {me / (TP * PP), (me / PP) % TP, me % PP};
    const char *names[3] = {"dp", "tp", "pp"};
    for (int axis = 0; axis < 3; axis++) {
        int color = 0;
        for (int a = 0; a < 3; a++)
            if (a != axis)
                color = color * dims[a] + coord[a];
        coll_comm *sub;
        OK(coll_split(comm, color, coord[axis], &sub));
        coll_set_name(sub, names[axis]);
        CHECK(sub && coll_size(sub) == dims[axis], "%s group size %d, expected %d", names[axis],
              sub ? coll_size(sub) : -1, dims[axis]);
        CHECK(sub && coll_rank(sub) == coord[axis], "%s group rank %d, expected %d", names[axis],
              sub ? coll_rank(sub) : -1, coord[axis]);
        /* members: vary this axis's coordinate */
        int members[64], nm = 0;
        for (int v = 0; v < dims[axis] && nm < 64; v++) {
            int c3[3] = {coord[0], coord[1], coord[2]};
            c3[axis] = v;
            members[nm++] = (c3[0] * TP + c3[1]) * PP + c3[2];
        }
        for (int algo = COLL_ALGO_BACKEND; algo <= (dev_ ? COLL_ALGO_BACKEND : COLL_ALGO_TREE); algo++) {
            coll_set_allreduce_algo(sub, (coll_algo)algo);
            int64_t mine = (int64_t)1 << (me * 4), sum = 0;
            OK(coll_allreduce(sub, &mine, &sum, 1, COLL_I64, COLL_SUM));
            int64_t want = 0;
            for (int j = 0; j < nm; j++) want += (int64_t)1 << (members[j] * 4);
            CHECK(sum == want, "%s group (%s) of world rank %d: sum %llx, expected %llx",
                  names[axis], coll_algo_name((coll_algo)algo), me, (unsigned long long)sum,
                  (unsigned long long)want);
            float v[37];
            fill(v, COLL_F32, me, 0, 37);
            OK(coll_allreduce(sub, v, v, 37, COLL_F32, COLL_SUM));
            int bad = check_reduced("mesh allreduce", v, COLL_F32, COLL_SUM, members, nm, 0, 37);
            CHECK(bad == 0, "%s group f32 allreduce (%s): %d wrong", names[axis],
                  coll_algo_name((coll_algo)algo), bad);
        }
        /* a split of a split: the tp group split again into singletons */
        if (axis == 1) {
            coll_comm *one;
            OK(coll_split(sub, coll_rank(sub), 0, &one));
            CHECK(one && coll_size(one) == 1, "split of split: size %d", one ? coll_size(one) : -1);
            int32_t x = 5, y = 0;
            OK(coll_allreduce(one, &x, &y, 1, COLL_I32, COLL_SUM));
            CHECK(y == 5, "singleton allreduce: %d", y);
            coll_finalize(one);
        }
        coll_finalize(sub);
    }
    /* generic split: odd/even ranks, key reverses the order; rank 0 joins none */
    coll_comm *sub;
    OK(coll_split(comm, me == 0 ? COLL_UNDEFINED : me % 2, -me, &sub));
    if (me == 0) {
        CHECK(sub == NULL, "COLL_UNDEFINED gave a communicator");
    } else {
        int n = 0, pos = 0;
        for (int r = p - 1; r >= 1; r--)
            if (r % 2 == me % 2) {
                if (r == me) pos = n;
                n++;
            }
        CHECK(sub && coll_size(sub) == n && coll_rank(sub) == pos, "odd/even split: %d/%d, expected %d/%d",
              coll_rank(sub), coll_size(sub), pos, n);
        int64_t x = me, s = 0;
        OK(coll_allreduce(sub, &x, &s, 1, COLL_I64, COLL_SUM));
        int64_t want = 0;
        for (int r = 1; r < p; r++)
            if (r % 2 == me % 2) want += r;
        CHECK(s == want, "odd/even split allreduce: %lld, expected %lld", (long long)s, (long long)want);
        coll_finalize(sub);
    }
}

/* Argument errors are values; the comm stays usable. */
static void test_errors(coll_comm *comm)
{
    int p = coll_size(comm);
    float buf[8] = {0};
    coll_status st = coll_send(comm, buf, 1, COLL_F32, p, 0);
    CHECK(st == COLL_ERR_ARG && strstr(coll_error_message(comm), "dest"), "send to rank %d: %s '%s'",
          p, coll_status_name(st), coll_error_message(comm));
    st = coll_recv(comm, buf, 1, COLL_F32, 0, -1);
    CHECK(st == COLL_ERR_ARG && strstr(coll_error_message(comm), "tag"), "tag -1: %s", coll_status_name(st));
    st = coll_allreduce(comm, buf, buf + 1, 4, COLL_F32, COLL_SUM);
    CHECK(st == COLL_ERR_ARG && strstr(coll_error_message(comm), "overlap"), "overlap: %s",
          coll_status_name(st));
    if (p > 1 && p <= 8) { /* a receive buffer inside another rank's block */
        float *rs = calloc((size_t)p, sizeof *rs);
        st = coll_reduce_scatter(comm, rs, rs + (coll_rank(comm) + 1) % p, 1, COLL_F32, COLL_SUM);
        CHECK(st == COLL_ERR_ARG && strstr(coll_error_message(comm), "other than at this rank's block"),
              "reduce_scatter overlap: %s '%s'", coll_status_name(st), coll_error_message(comm));
        free(rs);
    }
    st = coll_allreduce(comm, buf, buf + 4, 1, (coll_dtype)99, COLL_SUM);
    CHECK(st == COLL_ERR_ARG, "bad dtype: %s", coll_status_name(st));
    st = coll_allreduce(comm, buf, buf + 4, 1, COLL_F32, (coll_op)99);
    CHECK(st == COLL_ERR_ARG, "bad op: %s", coll_status_name(st));
    st = coll_broadcast(comm, buf, 1, COLL_F32, -1);
    CHECK(st == COLL_ERR_ARG, "bad root: %s", coll_status_name(st));
    st = coll_allreduce(comm, NULL, buf, 3, COLL_F32, COLL_SUM);
    CHECK(st == COLL_ERR_ARG, "NULL buffer: %s", coll_status_name(st));
    int32_t one = 1, total = 0;
    OK(coll_allreduce(comm, &one, &total, 1, COLL_I32, COLL_SUM));
    CHECK(total == p, "allreduce after errors: %d", total);

    coll_algo a;
    coll_backend b;
    CHECK(coll_algo_parse("ring", &a) && a == COLL_ALGO_RING, "parse ring");
    CHECK(coll_algo_parse("tree", &a) && a == COLL_ALGO_TREE, "parse tree");
    CHECK(coll_algo_parse("backend", &a) && a == COLL_ALGO_BACKEND, "parse backend");
    CHECK(!coll_algo_parse("rings", &a), "parse rings");
    CHECK(coll_backend_parse("mpi", &b) && b == COLL_BACKEND_MPI, "parse mpi");
    CHECK(!coll_backend_parse("gloo", &b), "parse gloo");
}

static void clear_launch_env(void)
{
    const char *v[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                       "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                       "MPI_LOCALNRANKS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                       "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_ID"};
    for (size_t i = 0; i < LEN(v); i++) unsetenv(v[i]);
}

/* Launcher variables (single-process runs only: it edits the environment). */
static void test_launch(void)
{
    coll_launch l;
    coll_error e;
    clear_launch_env();
    CHECK(coll_launch_detect(&l, &e) && !l.found && l.rank == 0 && l.size == 1, "no launcher");
    setenv("SLURM_PROCID", "3", 1);
    setenv("SLURM_NTASKS", "8", 1);
    setenv("SLURM_LOCALID", "1", 1);
    CHECK(coll_launch_detect(&l, &e) && !l.found, "slurm batch script (no step) counts as none");
    setenv("SLURM_STEP_ID", "0", 1);
    CHECK(coll_launch_detect(&l, &e) && l.found && !strcmp(l.launcher, "slurm") && l.rank == 3 &&
              l.size == 8 && l.local_rank == 1,
          "slurm: %s %d/%d local %d", l.launcher, l.rank, l.size, l.local_rank);
    setenv("RANK", "5", 1);
    setenv("WORLD_SIZE", "6", 1);
    setenv("LOCAL_RANK", "1", 1);
    setenv("LOCAL_WORLD_SIZE", "2", 1);
    CHECK(coll_launch_detect(&l, &e) && !strcmp(l.launcher, "torchrun") && l.rank == 5 &&
              l.size == 6 && l.local_rank == 1 && l.local_size == 2,
          "torchrun over slurm: %s %d/%d", l.launcher, l.rank, l.size);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1);
    CHECK(coll_launch_detect(&l, &e) && !strcmp(l.launcher, "openmpi") && l.rank == 2 && l.size == 4,
          "openmpi first: %s %d/%d", l.launcher, l.rank, l.size);
    setenv("OMPI_COMM_WORLD_RANK", "4", 1);
    CHECK(!coll_launch_detect(&l, &e) && strstr(e.message, "OMPI_COMM_WORLD_RANK='4'"),
          "rank ≥ size: %s", e.message);
    setenv("OMPI_COMM_WORLD_RANK", "x1", 1);
    CHECK(!coll_launch_detect(&l, &e) && strstr(e.message, "OMPI_COMM_WORLD_RANK"), "not a number: %s",
          e.message);
    clear_launch_env();
    setenv("PMI_RANK", "1", 1);
    setenv("PMI_SIZE", "2", 1);
    CHECK(coll_launch_detect(&l, &e) && !strcmp(l.launcher, "pmi") && l.rank == 1 && l.size == 2 &&
              l.local_size == -1,
          "pmi: %s %d/%d", l.launcher, l.rank, l.size);
    clear_launch_env();
    /* PBS/Torque: a job script sees the job's variables (PBS_JOBID, PBS_NODEFILE, PBS_NP) but
     * is one process: no launcher; the ranks its mpiexec starts carry the MPI's own variables,
     * read as anywhere else (OpenMPI's through the tm interface, MPICH's and Intel's PMI) */
    setenv("PBS_JOBID", "42.server", 1);
    setenv("PBS_NODEFILE", "/var/spool/pbs/aux/42.server", 1);
    setenv("PBS_NP", "8", 1);
    setenv("PBS_TASKNUM", "1", 1);
    CHECK(coll_launch_detect(&l, &e) && !l.found && l.rank == 0 && l.size == 1, "pbs job script counts as none");
    setenv("PMI_RANK", "5", 1);
    setenv("PMI_SIZE", "8", 1);
    setenv("MPI_LOCALRANKID", "1", 1);
    setenv("MPI_LOCALNRANKS", "4", 1);
    CHECK(coll_launch_detect(&l, &e) && !strcmp(l.launcher, "pmi") && l.rank == 5 && l.size == 8 &&
              l.local_rank == 1 && l.local_size == 4,
          "pbs + mpiexec (hydra): %s %d/%d local %d/%d", l.launcher, l.rank, l.size, l.local_rank, l.local_size);
    clear_launch_env();
    setenv("OMPI_COMM_WORLD_RANK", "6", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
    CHECK(coll_launch_detect(&l, &e) && !strcmp(l.launcher, "openmpi") && l.rank == 6 && l.local_rank == 2,
          "pbs + mpiexec (openmpi, tm): %s %d/%d", l.launcher, l.rank, l.size);
    clear_launch_env();
    unsetenv("PBS_JOBID");
    unsetenv("PBS_NODEFILE");
    unsetenv("PBS_NP");
    unsetenv("PBS_TASKNUM");
    /* AUTO with no launcher: single */
    coll_comm *c = coll_init(COLL_BACKEND_AUTO, NULL, &e);
    CHECK(c && coll_backend_of(c) == COLL_BACKEND_SINGLE && coll_timeout(c) > 0, "auto → single");
    coll_finalize(c);
    setenv("RANK", "1", 1);
    setenv("WORLD_SIZE", "nope", 1);
    c = coll_init(COLL_BACKEND_AUTO, NULL, &e);
    CHECK(!c && strstr(e.message, "WORLD_SIZE"), "auto with a bad WORLD_SIZE: %s", e.message);
    clear_launch_env();
}

/* coll_init must fail with exactly want. */
static void expect_init_error(const char *what, coll_backend b, const coll_options *opt, const char *want)
{
    coll_error e;
    coll_comm *c = coll_init(b, opt, &e);
    CHECK(!c && strcmp(e.message, want) == 0, "%s:\n  got  '%s'\n  want '%s'", what, c ? "(a comm)" : e.message, want);
    if (c)
        coll_finalize(c);
    else
        printf("%-40s %s: OK\n", what, e.message);
}

/* The backend choice ($LOOM_COLL, GPU ranks) and the NCCL backend's errors without a driver, a
 * device or the library (single-process runs: it edits the environment). */
static void test_choice(void)
{
    coll_options gpu = {.gpu = true}, none = {0};
    coll_error e;
    clear_launch_env();
    unsetenv("LOOM_LIBNCCL");
    setenv("LOOM_COLL", "gloo", 1);
    expect_init_error("LOOM_COLL=gloo", COLL_BACKEND_AUTO, NULL,
                      "coll: LOOM_COLL='gloo' is not a collectives backend: choose mpi or nccl (or leave it unset: "
                      "nccl for --target cuda ranks, else mpi)");
    coll_comm *c = coll_init(COLL_BACKEND_SINGLE, NULL, &e); /* an explicit backend is kept */
    CHECK(c && coll_backend_of(c) == COLL_BACKEND_SINGLE, "explicit single under LOOM_COLL=gloo: %s", e.message);
    coll_finalize(c);
    /* LOOM_COLL=nccl, GPU ranks, or NCCL asked for, without a driver: the same line */
    setenv("LOOM_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
    const char *nodriver = "coll: NCCL backend: no CUDA driver found (/nonexistent/libcuda.so.1: cannot open shared "
                           "object file: No such file or directory)";
    setenv("LOOM_COLL", "nccl", 1);
    expect_init_error("LOOM_COLL=nccl, no driver", COLL_BACKEND_AUTO, NULL, nodriver);
    setenv("LOOM_COLL", "auto", 1);
    expect_init_error("LOOM_COLL=auto, GPU ranks, no driver", COLL_BACKEND_AUTO, &gpu, nodriver);
    unsetenv("LOOM_COLL");
    expect_init_error("GPU ranks, no driver", COLL_BACKEND_AUTO, &gpu, nodriver);
    expect_init_error("NCCL, no driver", COLL_BACKEND_NCCL, NULL, nodriver);
    c = coll_init(COLL_BACKEND_AUTO, &none, &e); /* CPU ranks, no launcher: single */
    CHECK(c && coll_backend_of(c) == COLL_BACKEND_SINGLE, "auto for CPU ranks: %s", e.message);
    coll_finalize(c);
    const char *fake = getenv("LOOM_TEST_FAKE_CUDA");
    if (!fake || !*fake) {
        printf("%-40s skipped: no LOOM_TEST_FAKE_CUDA\n", "NCCL past the driver");
        unsetenv("LOOM_LIBCUDA");
        return;
    }
    /* a driver (the fake) but no NCCL, or a library that is not NCCL, or no device */
    setenv("LOOM_LIBCUDA", fake, 1);
    setenv("LOOM_LIBNCCL", "/nonexistent/libnccl.so.2", 1);
    expect_init_error("no libnccl", COLL_BACKEND_AUTO, &gpu,
                      "coll: NCCL backend: no NCCL library found (/nonexistent/libnccl.so.2: cannot open shared "
                      "object file: No such file or directory; set LOOM_LIBNCCL to its path)");
    setenv("LOOM_LIBNCCL", "libm.so.6", 1);
    expect_init_error("not NCCL", COLL_BACKEND_NCCL, NULL,
                      "coll: NCCL backend: NCCL library libm.so.6 lacks ncclGetVersion (NCCL older than 2.7?)");
    setenv("LOOM_LIBNCCL", fake, 1);
    setenv("LOOM_FAKE_CUDA_DEVICES", "0", 1);
    expect_init_error("no device", COLL_BACKEND_NCCL, NULL, "coll: NCCL backend: no CUDA device");
    unsetenv("LOOM_FAKE_CUDA_DEVICES");
    /* both: a one-rank NCCL comm; host buffers (no caps, no stream) or device buffers */
    c = coll_init(COLL_BACKEND_AUTO, &gpu, &e);
    CHECK(c && coll_backend_of(c) == COLL_BACKEND_NCCL && coll_caps(c) == 0 && !coll_stream(c),
          "GPU ranks on the fake: %s", c ? coll_backend_name(coll_backend_of(c)) : e.message);
    coll_finalize(c);
    coll_options dev = {.gpu = true, .device_buffers = true};
    c = coll_init(COLL_BACKEND_AUTO, &dev, &e);
    CHECK(c && coll_caps(c) == (COLL_CAP_DEVICE_BUFFERS | COLL_CAP_ASYNC) && coll_stream(c),
          "device buffers on the fake: %s", c ? "caps" : e.message);
    if (c) {
        int32_t x = 7, y = 0;
        CHECK(coll_allreduce(c, &x, &y, 1, COLL_I32, COLL_SUM) == COLL_OK && coll_sync(c) == COLL_OK && y == 7,
              "one-rank NCCL allreduce: %d", y);
        coll_finalize(c);
    }
    printf("%-40s nccl, caps 0 / device buffers + async: OK\n", "GPU ranks on the fake");
    unsetenv("LOOM_LIBCUDA");
    unsetenv("LOOM_LIBNCCL");
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- failure scenarios ---- */

static int scenario_fail(coll_comm *comm, const char *what)
{
    int p = coll_size(comm), me = coll_rank(comm);
    float x[16] = {1}, y[16];
    if (!strcmp(what, "sync") || !strcmp(what, "watchdog") || !strcmp(what, "async")) {
        /* NCCL on the fake, whose environment makes this allreduce hang or fail */
        OK(coll_allreduce(comm, x, y, 16, COLL_F32, COLL_SUM));
        if (!strcmp(what, "watchdog")) {
            fprintf(stderr, "rank %d: sleeping 8 s where no collective is called\n", me);
            sleep(8);
        }
        OK(coll_sync(comm));
        fprintf(stderr, "rank %d: the allreduce completed, which it must not\n", me);
        return 0;
    }
    OK(coll_barrier(comm)); /* everyone is up */
    if (me == p - 1) {
        if (!strcmp(what, "timeout")) {
            fprintf(stderr, "rank %d: sleeping 8 s before the allreduce\n", me);
            sleep(8);
        } else if (!strcmp(what, "kill")) {
            fprintf(stderr, "rank %d: raising SIGKILL before the allreduce\n", me);
            raise(SIGKILL);
        } else {
            fprintf(stderr, "rank %d: calling exit(3) before the allreduce\n", me);
            exit(3);
        }
    }
    OK(coll_allreduce(comm, x, y, 16, COLL_F32, COLL_SUM));
    fprintf(stderr, "rank %d: the allreduce returned, which it must not\n", me);
    return 0;
}

int main(int argc, char **argv)
{
    coll_backend backend = COLL_BACKEND_AUTO;
    const char *scenario = "all", *algos = "all", *expect = NULL;
    double timeout = 30;
    bool gpu = false, device_buffers = false;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--backend=", 10) && coll_backend_parse(argv[i] + 10, &backend))
            continue;
        if (!strcmp(argv[i], "--gpu") || !strcmp(argv[i], "--device-buffers")) {
            *(argv[i][2] == 'g' ? &gpu : &device_buffers) = true;
            continue;
        }
        if (!strncmp(argv[i], "--expect-backend=", 17)) {
            expect = argv[i] + 17;
            continue;
        }
        if (!strncmp(argv[i], "--allreduce=", 12)) {
            algos = argv[i] + 12;
            continue;
        }
        if (!strncmp(argv[i], "--scenario=", 11)) {
            scenario = argv[i] + 11;
            continue;
        }
        if (!strncmp(argv[i], "--timeout=", 10)) {
            timeout = atof(argv[i] + 10);
            continue;
        }
        fprintf(stderr, "usage: test_coll [--backend=auto|single|mpi|nccl] [--allreduce=all|backend|ring|tree]\n"
                        "                 [--scenario=all|timeout|kill|exit|sync|watchdog|async] [--timeout=S]\n"
                        "                 [--gpu] [--device-buffers] [--expect-backend=NAME]\n");
        return 2;
    }
    coll_error err;
    coll_options opt = {.timeout_s = timeout, .gpu = gpu, .device_buffers = device_buffers};
    coll_comm *comm = coll_init(backend, &opt, &err);
    if (!comm) {
        fprintf(stderr, "test_coll: %s\n", err.message);
        return 1;
    }
    rank_ = coll_world_rank(comm);
    size_ = coll_size(comm);
    dev_ = (coll_caps(comm) & COLL_CAP_DEVICE_BUFFERS) != 0;
    CHECK(!expect || !strcmp(expect, coll_backend_name(coll_backend_of(comm))), "backend %s, expected %s",
          coll_backend_name(coll_backend_of(comm)), expect);
    if (strcmp(scenario, "all") != 0) {
        coll_set_timeout(comm, 2.0);
        return scenario_fail(comm, scenario);
    }

    double t0 = now_s();
    for (int a = COLL_ALGO_BACKEND; a <= COLL_ALGO_TREE; a++) {
        coll_algo want;
        if (strcmp(algos, "all") != 0 && (!coll_algo_parse(algos, &want) || want != (coll_algo)a))
            continue;
        test_allreduce(comm, (coll_algo)a);
    }
    test_allgather(comm);
    test_reduce_scatter(comm);
    test_allreduce_start(comm);
    test_broadcast(comm);
    test_p2p(comm);
    test_mesh(comm);
    test_errors(comm);
    OK(coll_sync(comm));
    if (coll_backend_of(comm) == COLL_BACKEND_SINGLE) {
        test_single_mailbox(comm);
        test_launch();
        test_choice();
    } else {
        coll_launch l;
        coll_error e;
        bool launched = coll_launch_detect(&l, &e) && l.found;
        CHECK(launched || coll_backend_of(comm) == COLL_BACKEND_NCCL, "MPI without a launcher");
        CHECK(!launched || (l.rank == coll_rank(comm) && l.size == size_), "launcher %s says %d/%d, comm %d/%d",
              l.launcher, l.rank, l.size, coll_rank(comm), size_);
        CHECK(!launched || coll_local_rank(comm) == l.local_rank, "local rank %d vs launcher %d",
              coll_local_rank(comm), l.local_rank);
    }

    int32_t counts_local[2] = {failures, checks}, counts_all[2] = {0, 0};
    OK(coll_allreduce(comm, counts_local, counts_all, 2, COLL_I32, COLL_SUM));
    double maxe[2] = {max_err_f32, max_err_f64}, maxe_all[2];
    OK(coll_allreduce(comm, maxe, maxe_all, 2, COLL_F64, COLL_MAX));
    OK(coll_sync(comm));
    if (coll_rank(comm) == 0)
        printf("test_coll: backend %s%s, %d ranks: %d checks, %d failed; max abs err f32 %.3g, f64 %.3g; "
               "%.2f s  %s\n",
               coll_backend_name(coll_backend_of(comm)), dev_ ? " (device buffers)" : "", size_, counts_all[1], counts_all[0],
               maxe_all[0], maxe_all[1], now_s() - t0, counts_all[0] ? "FAIL" : "OK");
    coll_finalize(comm);
    return counts_all[0] ? 1 : 0;
}
