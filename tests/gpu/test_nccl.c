/* test_nccl.c — the NCCL backend (collectives/coll_nccl.c) on a real GPU, in one run.
 *
 * Without a CUDA driver or device: prints why and "skipped: no CUDA device", exit 0. (The
 * backend's logic is tested without a GPU by tests/collectives: the fake driver and NCCL.)
 *
 * One rank (no launcher, or mpirun -np 1): an NCCL comm on device buffers of GPU 0 — in the
 * caller's context and on the caller's stream — against the same operation of a host-buffer
 * comm: the single backend, or with --mpi the MPI backend (run it under mpirun), bit for bit:
 * allreduce (sum, max, min; f32, f64, i32, i64; 1, 4099 and 2^20+3 elements; in place and
 * not), allgather (in place and not), reduce-scatter, broadcast, sendrecv to itself, three
 * coll_send_async then three coll_recv (one NCCL group), a split comm's allreduce, a comm
 * with a stream of its own (coll_stream), a host-buffer NCCL comm (staging), ring allreduce
 * refused on device buffers. Results are read after coll_sync.
 *
 * Two ranks sharing the GPU (mpirun -np 2): COLL_BACKEND_AUTO for GPU ranks must give MPI (NCCL
 * refuses two ranks on one device: "invalid usage"), with no device-buffer capability, and
 * its allreduce must sum both ranks.
 *
 * --scenario=hang: a send to itself that no receive matches, then coll_flush, with a 2 s
 * timeout: must end the process with "... did not complete within 2.0 s" (run it with
 * tests/collectives/run_fail.sh; tests/gpu/device_run.sh does).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/coll.h"
#include "runtime/cuda/cuda_driver.h"

static int failures, checks;
static rt_cuda *cu;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* a coll call that must succeed (else the run stops: later checks would only repeat it) */
#define OK(comm, call)                                                                   \
    do {                                                                                 \
        coll_status st_ = (call);                                                        \
        if (st_ != COLL_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,            \
                    coll_status_name(st_), coll_error_message(comm));                    \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

#define CU(call)                                                                         \
    do {                                                                                 \
        char e_[512];                                                                    \
        if (!RT_CU_CHECK(cu, call, e_, sizeof e_)) {                                     \
            fprintf(stderr, "%s\n", e_);                                                 \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static const coll_dtype dtypes[] = {COLL_F32, COLL_F64, COLL_I32, COLL_I64};
static const coll_op ops[] = {COLL_SUM, COLL_MAX, COLL_MIN};
static const size_t counts[] = {1, 4099, (1u << 20) + 3};

static void fill(void *buf, coll_dtype dt, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        long k = (long)((i * 104729u + seed * 7919u) % 2001u) - 1000;
        switch (dt) {
        case COLL_F32: ((float *)buf)[i] = (float)k / 37.0f; break;
        case COLL_F64: ((double *)buf)[i] = (double)k / 37.0; break;
        case COLL_I32: ((int32_t *)buf)[i] = (int32_t)(k * 1000003); break;
        default: ((int64_t *)buf)[i] = (int64_t)k * ((int64_t)1 << 40) + (int64_t)i; break;
        }
    }
}

static CUdeviceptr dalloc(size_t bytes)
{
    CUdeviceptr p;
    CU(cu->MemAlloc(&p, bytes ? bytes : 1));
    return p;
}

#define D(p) ((void *)(uintptr_t)(p))

/* One operation on device buffers through nc and on host buffers through ref, compared. */
typedef enum { ALLREDUCE, ALLREDUCE_IN_PLACE, ALLGATHER, ALLGATHER_IN_PLACE, REDUCE_SCATTER, BROADCAST } kind;
static const char *const kind_names[] = {"allreduce",      "allreduce in place", "allgather",
                                         "allgather in place", "reduce_scatter", "broadcast"};

static void compare(coll_comm *nc, coll_comm *ref, kind k, coll_dtype dt, coll_op op, size_t n)
{
    size_t bytes = n * coll_dtype_size(dt); /* one rank: every buffer holds n elements */
    bool in_place = k == ALLREDUCE_IN_PLACE || k == ALLGATHER_IN_PLACE || k == BROADCAST;
    void *in = malloc(bytes), *want = malloc(bytes), *got = malloc(bytes);
    fill(in, dt, n, (unsigned)(k * 31 + op * 7 + dt));
    memcpy(want, in, bytes);
    CUdeviceptr din = dalloc(bytes), dout = in_place ? din : dalloc(bytes);
    CU(cu->MemcpyHtoD(din, in, bytes));
    if (!in_place)
        CU(cu->MemsetD8(dout, 0x5a, bytes));
    switch (k) {
    case ALLREDUCE:
        OK(ref, coll_allreduce(ref, in, want, n, dt, op));
        OK(nc, coll_allreduce(nc, D(din), D(dout), n, dt, op));
        break;
    case ALLREDUCE_IN_PLACE:
        OK(ref, coll_allreduce(ref, want, want, n, dt, op));
        OK(nc, coll_allreduce(nc, D(din), D(din), n, dt, op));
        break;
    case ALLGATHER:
        OK(ref, coll_allgather(ref, in, want, n, dt));
        OK(nc, coll_allgather(nc, D(din), D(dout), n, dt));
        break;
    case ALLGATHER_IN_PLACE: /* this rank's block (rank 0: the start) is the send buffer */
        OK(ref, coll_allgather(ref, want, want, n, dt));
        OK(nc, coll_allgather(nc, D(din), D(din), n, dt));
        break;
    case REDUCE_SCATTER:
        OK(ref, coll_reduce_scatter(ref, in, want, n, dt, op));
        OK(nc, coll_reduce_scatter(nc, D(din), D(dout), n, dt, op));
        break;
    case BROADCAST:
        OK(ref, coll_broadcast(ref, want, n, dt, 0));
        OK(nc, coll_broadcast(nc, D(din), n, dt, 0));
        break;
    }
    OK(nc, coll_sync(nc));
    CU(cu->MemcpyDtoH(got, dout, bytes));
    CHECK(memcmp(got, want, bytes) == 0, "%s %s %s n=%zu: NCCL's result differs from %s's", kind_names[k],
          coll_dtype_name(dt), coll_op_name(op), n, coll_backend_name(coll_backend_of(ref)));
    CU(cu->MemFree(din));
    if (!in_place)
        CU(cu->MemFree(dout));
    free(in), free(want), free(got);
}

/* sendrecv to itself, and three started sends then three receives (one NCCL group) */
static void compare_p2p(coll_comm *nc, coll_comm *ref)
{
    size_t n = 200003, bytes = n * 8;
    double *h = malloc(bytes), *want = malloc(bytes), *got = malloc(bytes);
    CUdeviceptr s = dalloc(bytes), r = dalloc(bytes);
    fill(h, COLL_F64, n, 3);
    CU(cu->MemcpyHtoD(s, h, bytes));
    OK(ref, coll_sendrecv(ref, h, n, 0, want, n, 0, COLL_F64, 5));
    OK(nc, coll_sendrecv(nc, D(s), n, 0, D(r), n, 0, COLL_F64, 5));
    OK(nc, coll_sync(nc));
    CU(cu->MemcpyDtoH(got, r, bytes));
    CHECK(memcmp(got, want, bytes) == 0, "sendrecv to itself: wrong data");
    /* the send buffer is overwritten after each started send: the messages are copies */
    for (unsigned t = 0; t < 3; t++) {
        fill(h, COLL_F64, n, 10 + t);
        CU(cu->MemcpyHtoD(s, h, bytes));
        OK(nc, coll_send_async(nc, D(s), n, COLL_F64, 0, 40 + (int)t));
    }
    for (unsigned t = 0; t < 3; t++) {
        OK(nc, coll_recv(nc, D(r), n, COLL_F64, 0, 40 + (int)t));
        OK(nc, coll_sync(nc));
        CU(cu->MemcpyDtoH(got, r, bytes));
        fill(want, COLL_F64, n, 10 + t);
        CHECK(memcmp(got, want, bytes) == 0, "started send %u received in order: wrong data", t);
    }
    OK(nc, coll_flush(nc));
    CU(cu->MemFree(s));
    CU(cu->MemFree(r));
    free(h), free(want), free(got);
}

static int two_ranks_one_gpu(int rank)
{
    coll_options opt = {.gpu = true, .device_buffers = true};
    coll_error e;
    coll_comm *c = coll_init(COLL_BACKEND_AUTO, &opt, &e);
    if (!c) {
        fprintf(stderr, "test_nccl: rank %d: %s\n", rank, e.message);
        return 1;
    }
    CHECK(coll_backend_of(c) == COLL_BACKEND_MPI && coll_caps(c) == 0,
          "2 ranks on one GPU: backend %s caps %u, expected mpi 0", coll_backend_name(coll_backend_of(c)), coll_caps(c));
    int32_t x = 1 + coll_rank(c), y = 0;
    OK(c, coll_allreduce(c, &x, &y, 1, COLL_I32, COLL_SUM));
    CHECK(y == 3, "allreduce over MPI: %d", y);
    int32_t f[2] = {failures, checks}, all[2];
    OK(c, coll_allreduce(c, f, all, 2, COLL_I32, COLL_SUM));
    if (coll_rank(c) == 0)
        printf("test_nccl: %d ranks on one GPU: collectives over %s, %d checks, %d failed  %s\n", coll_size(c),
               coll_backend_name(coll_backend_of(c)), all[1], all[0], all[0] ? "FAIL" : "OK");
    coll_finalize(c);
    return all[0] ? 1 : 0;
}

int main(int argc, char **argv)
{
    bool use_mpi = false, hang = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mpi"))
            use_mpi = true;
        else if (!strcmp(argv[i], "--scenario=hang"))
            hang = true;
        else {
            fprintf(stderr, "usage: test_nccl [--mpi] [--scenario=hang]\n");
            return 2;
        }
    }
    char err[512];
    cu = rt_cuda_load(err, sizeof err);
    if (!cu) {
        printf("test_nccl: %s\nskipped: no CUDA device\n", err);
        return 0;
    }
    coll_launch l;
    coll_error e;
    if (!coll_launch_detect(&l, &e)) {
        fprintf(stderr, "test_nccl: %s\n", e.message);
        return 1;
    }
    if (l.size > 1)
        return two_ranks_one_gpu(l.rank);

    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CU(cu->DeviceGet(&dev, 0));
    CU(cu->DevicePrimaryCtxRetain(&ctx, dev));
    CU(cu->CtxSetCurrent(ctx));
    CU(cu->StreamCreate(&stream, 0));
    coll_options opt = {.timeout_s = hang ? 2 : 120, .device_buffers = true, .context = ctx, .stream = stream};
    coll_comm *nc = coll_init(COLL_BACKEND_NCCL, &opt, &e);
    if (!nc) {
        fprintf(stderr, "test_nccl: %s\n", e.message);
        return 1;
    }
    if (hang) {
        int32_t x = 1;
        CUdeviceptr d = dalloc(4);
        CU(cu->MemcpyHtoD(d, &x, 4));
        fprintf(stderr, "test_nccl: a send to itself that nothing receives, then coll_flush (2 s timeout)\n");
        OK(nc, coll_send_async(nc, D(d), 1, COLL_I32, 0, 1));
        OK(nc, coll_flush(nc));
        fprintf(stderr, "test_nccl: coll_flush returned, which it must not\n");
        return 0;
    }
    CHECK(coll_backend_of(nc) == COLL_BACKEND_NCCL && coll_caps(nc) == (COLL_CAP_DEVICE_BUFFERS | COLL_CAP_ASYNC) &&
              coll_stream(nc) == (void *)stream,
          "the NCCL comm: backend %s caps %u", coll_backend_name(coll_backend_of(nc)), coll_caps(nc));
    coll_comm *ref = coll_init(use_mpi ? COLL_BACKEND_MPI : COLL_BACKEND_SINGLE, NULL, &e);
    if (!ref) {
        fprintf(stderr, "test_nccl: %s\n", e.message);
        return 1;
    }
    int cases = 0;
    for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++)
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
                compare(nc, ref, ALLREDUCE, dtypes[d], ops[o], counts[c]);
                compare(nc, ref, ALLREDUCE_IN_PLACE, dtypes[d], ops[o], counts[c]);
                compare(nc, ref, REDUCE_SCATTER, dtypes[d], ops[o], counts[c]);
                cases += 3;
            }
            compare(nc, ref, ALLGATHER, dtypes[d], COLL_SUM, counts[c]);
            compare(nc, ref, ALLGATHER_IN_PLACE, dtypes[d], COLL_SUM, counts[c]);
            compare(nc, ref, BROADCAST, dtypes[d], COLL_SUM, counts[c]);
            cases += 3;
        }
    compare_p2p(nc, ref);
    printf("test_nccl: %d collectives and send/recv on device buffers vs the %s backend: %s\n", cases,
           coll_backend_name(coll_backend_of(ref)), failures ? "FAIL" : "OK");

    /* a split comm (NCCL again), its allreduce */
    coll_comm *sub = NULL;
    OK(nc, coll_split(nc, 0, 0, &sub));
    CHECK(sub && coll_size(sub) == 1 && coll_backend_of(sub) == COLL_BACKEND_NCCL, "split: %p", (void *)sub);
    if (sub) {
        compare(sub, ref, ALLREDUCE, COLL_F32, COLL_SUM, 4099);
        coll_finalize(sub);
    }
    /* ring allreduce needs host buffers */
    coll_set_allreduce_algo(nc, COLL_ALGO_RING);
    float one = 1;
    coll_status st = coll_allreduce(nc, &one, &one, 1, COLL_F32, COLL_SUM);
    CHECK(st == COLL_ERR_UNSUPPORTED && strstr(coll_error_message(nc), "needs host buffers"), "ring on device: %s",
          coll_error_message(nc));
    coll_finalize(nc);

    /* a stream (and the primary context) of the comm's own */
    coll_options own = {.timeout_s = 120, .device_buffers = true};
    nc = coll_init(COLL_BACKEND_NCCL, &own, &e);
    CHECK(nc && coll_stream(nc) && coll_stream(nc) != (void *)stream, "own stream: %s", nc ? "same stream" : e.message);
    if (nc) {
        compare(nc, ref, ALLREDUCE, COLL_F64, COLL_SUM, 4099);
        coll_finalize(nc);
    }
    /* host buffers (the mesh runner's): staged; one rank copies */
    coll_options host = {.timeout_s = 120, .gpu = true};
    nc = coll_init(COLL_BACKEND_AUTO, &host, &e);
    CHECK(nc && coll_backend_of(nc) == COLL_BACKEND_NCCL && coll_caps(nc) == 0, "host buffers: %s",
          nc ? coll_backend_name(coll_backend_of(nc)) : e.message);
    if (nc) {
        double x[3] = {1, 2, 3}, y[3] = {0};
        OK(nc, coll_allreduce(nc, x, y, 3, COLL_F64, COLL_SUM));
        CHECK(y[0] == 1 && y[2] == 3, "host-buffer allreduce: %g %g", y[0], y[2]);
        coll_finalize(nc);
    }
    coll_finalize(ref);
    CU(cu->StreamDestroy(stream));
    CU(cu->DevicePrimaryCtxRelease(dev));
    rt_cuda_unload(cu);
    printf("test_nccl: %d checks, %d failed  %s\n", checks, failures, failures ? "FAIL" : "OK");
    return failures ? 1 : 0;
}
