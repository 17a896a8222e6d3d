/* plan.c — fuzzes the plan file reader and the CPU executor over what it accepts
 * (plan/plan_io.c, runtime/cpu/exec_cpu.c with its GEMM and attention routines): the payload
 * a `loom build` executable reads back from its own file (io/exe_payload.h) is a plan file.
 *
 * Feeds: the input as a plan file. Mutations would nearly always break its checksum, so the
 * input is also read with the header's body size and FNV-1a checksum made to fit (when it has a
 * whole header): both the raw and the fixed bytes go through rt_plan_deserialize. An accepted
 * plan runs once on the CPU executor (no thread pool), every kernel step resolved to a kernel
 * that does nothing (a plan names kernels that are compiled elsewhere), every param and input
 * bound to memory of its size holding small integers (so id checks and cache_write positions
 * both pass and fail) or zeros, unless its buffers need more than 64 MiB or its steps more
 * than ~2^27 multiply-adds (then it is only validated).
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - a refused plan got an error naming it; an accepted one none;
 *  - serialized again (rt_plan_serialize) an accepted plan reads back and serializes to the
 *    same bytes;
 *  - the executor either runs it or stops with an error (a failed id check, a cache_write
 *    position out of range) — never an internal error such as a GEMM descriptor it refuses.
 */
#include "fuzz/fuzz.h"

#include "plan/plan_io.h"
#include "runtime/cpu/exec_cpu.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

static void nothing(void **args, int64_t begin, int64_t end) {}
static rt_kernel_fn resolve(void *ctx, const char *name, ir_diag *d) { return nothing; }

/* The multiply-adds (or elements touched) of a step, saturating at 2^62. */
static double step_work(const rt_plan_step *s)
{
    double w = 0;
    switch (s->kind) {
    case RT_STEP_KERNEL: w = (double)s->kernel.grid0; break;
    case RT_STEP_GEMM: {
        w = (double)s->gemm.M * (double)s->gemm.N * (double)(s->gemm.K + 1);
        for (int i = 0; i < s->gemm.nbatch; i++)
            w *= (double)s->gemm.batch[i];
        break;
    }
    case RT_STEP_ATTENTION:
    case RT_STEP_ATTENTION_GRAD: {
        const rt_plan_attention *a = s->kind == RT_STEP_ATTENTION ? &s->attn : &s->agrad.fwd;
        w = (double)a->B * (double)a->H * (double)a->T * (double)a->S * (double)(a->D + a->E);
        break;
    }
    case RT_STEP_COPY: w = (double)s->copy.bytes; break;
    case RT_STEP_CHECK_IDS: w = (double)s->check.numel; break;
    case RT_STEP_WRITE_ROWS: w = (double)s->rows.outer * (double)s->rows.rows_dst * (double)s->rows.row_bytes; break;
    case RT_STEP_SCATTER_ADD: w = (double)s->scatter.n * (double)s->scatter.width + (double)s->scatter.rows * (double)s->scatter.width; break;
    case RT_STEP_SUM_ROWS: w = (double)s->sum_rows.rows * (double)s->sum_rows.width; break;
    }
    return w;
}

static void run(const rt_plan *p, uint64_t h)
{
    double bytes = (double)p->arena_bytes, work = 0;
    for (int i = 0; i < p->n_bufs; i++)
        bytes += (double)p->bufs[i].numel * ir_dtype_size(p->bufs[i].dtype);
    for (int s = 0; s < p->n_steps; s++)
        work += step_work(&p->steps[s]);
    if (bytes > 64.0 * (1 << 20) || work > (double)(1 << 27))
        return;
    ir_diag d;
    ir_diag_init(&d);
    rt_exec *e = rt_exec_new(p, resolve, NULL, NULL, &d);
    fz_check_outcome(e != NULL, &d, NULL, "rt_exec_new");
    void **mem = calloc((size_t)p->n_bufs + 1, sizeof *mem);
    if (!mem)
        abort();
    for (int i = 0; e && i < p->n_bufs; i++) {
        const rt_plan_buffer *b = &p->bufs[i];
        if (b->kind != RT_BUF_PARAM && b->kind != RT_BUF_INPUT)
            continue;
        /* the largest buffer of this name: bind gives every param and input of a name the memory */
        int64_t n = 0;
        for (int j = 0; j < p->n_bufs; j++)
            if ((p->bufs[j].kind == RT_BUF_PARAM || p->bufs[j].kind == RT_BUF_INPUT) &&
                strcmp(p->bufs[j].name, b->name) == 0 && p->bufs[j].numel * ir_dtype_size(p->bufs[j].dtype) > n)
                n = p->bufs[j].numel * ir_dtype_size(p->bufs[j].dtype);
        uint8_t *m = calloc((size_t)n + 64, 1);
        if (!m)
            abort();
        if (ir_dtype_is_int(b->dtype) && (h >> (i % 60)) & 1)
            for (int64_t k = 0; k < n; k++)
                m[k] = k % ir_dtype_size(b->dtype) == 0 ? (uint8_t)((h >> (k % 61)) & 3) : 0;
        mem[i] = m;
        if (!rt_exec_bind(e, b->name, m, &d))
            fz_fail("rt_exec_bind refused buffer '%s' of the plan", b->name);
    }
    if (e) {
        bool ok = rt_exec_run(e, &d);
        fz_check_outcome(ok, &d, NULL, "rt_exec_run");
        rt_exec_free(e);
    }
    for (int i = 0; i < p->n_bufs; i++)
        free(mem[i]);
    free(mem);
    ir_diag_free(&d);
}

static void read_plan(const uint8_t *data, size_t size)
{
    ir_diag d;
    ir_diag_init(&d);
    rt_plan p;
    rt_plan_blob *blobs;
    int n_blobs;
    bool ok = rt_plan_deserialize(data, size, "fuzz.plan", &p, &blobs, &n_blobs, &d);
    fz_check_outcome(ok, &d, "fuzz.plan", "rt_plan_deserialize");
    if (ok) {
        size_t n, n2;
        uint8_t *bytes = rt_plan_serialize(&p, blobs, n_blobs, &n);
        rt_plan q;
        rt_plan_blob *qb;
        int n_qb;
        if (!rt_plan_deserialize(bytes, n, "again", &q, &qb, &n_qb, &d)) {
            fz_print_diag(&d);
            fz_fail("an accepted plan, serialized again, does not read back");
        }
        uint8_t *again = rt_plan_serialize(&q, qb, n_qb, &n2);
        if (n != n2 || memcmp(bytes, again, n) != 0)
            fz_fail("an accepted plan serializes differently after a round trip");
        free(again);
        free(bytes);
        rt_plan_clear(&q);
        rt_plan_blobs_free(qb, n_qb);
        uint64_t h = rt_fnv1a64(data, size);
        run(&p, h);
        rt_plan_clear(&p);
        rt_plan_blobs_free(blobs, n_blobs);
    }
    ir_diag_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    read_plan(data, size);
    if (size >= RT_PLAN_HEADER_BYTES) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            abort();
        memcpy(fixed, data, size);
        uint64_t body = size - RT_PLAN_HEADER_BYTES, sum = rt_fnv1a64(fixed + RT_PLAN_HEADER_BYTES, body);
        for (int i = 0; i < 8; i++) {
            fixed[16 + i] = (uint8_t)(body >> (8 * i));
            fixed[24 + i] = (uint8_t)(sum >> (8 * i));
        }
        if (memcmp(fixed, data, RT_PLAN_HEADER_BYTES) != 0)
            read_plan(fixed, size);
        free(fixed);
    }
    return 0;
}
