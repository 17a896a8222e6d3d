/* test_kir_validate.c — cg_kernel_validate rejects each kind of malformed kernel with a message
 * naming the kernel and the node, and accepts the well-formed base kernel. Each case builds
 * the base kernel (grid [4], loop [8], x in f32[32], y out f32[32]) plus one mistake.
 */
#include <string.h>

#include "test_kir_util.h"

typedef struct {
    cg_kernel *k;
    int x, y, w; /* w: an i32 buffer, in */
    cg_val row, l;
} base;

static base make(void)
{
    base b;
    b.k = cg_kernel_new("bad");
    b.x = cg_kernel_buffer(b.k, "x", DT_F32, CG_IN, 32);
    b.y = cg_kernel_buffer(b.k, "y", DT_F32, CG_OUT, 32);
    b.w = cg_kernel_buffer(b.k, "w", DT_I32, CG_IN, 4);
    cg_kernel_dim(b.k, 4);
    cg_kernel_loop(b.k, 8);
    b.row = cg_mul(b.k, cg_pidx(b.k, 0), cg_i64(b.k, 8));
    b.l = cg_add(b.k, b.row, cg_lidx(b.k, 0));
    return b;
}

/* Validates b.k, expecting failure with `want` in the first message (or success if NULL). */
static void expect(base b, const char *want)
{
    ir_diag d;
    ir_diag_init(&d);
    bool ok = cg_kernel_validate(b.k, &d);
    if (!want) {
        if (!ok) {
            ir_diag_print(&d, stderr);
            exit(1);
        }
    } else if (ok || !strstr(d.msg[0].msg, want) || !strstr(d.msg[0].msg, "kernel bad:")) {
        fprintf(stderr, "expected an error containing '%s', got %s\n", want, ok ? "success" : d.msg[0].msg);
        cg_kernel_print(b.k, stderr);
        exit(1);
    } else {
        printf("  rejected: %s\n", d.msg[0].msg);
    }
    ir_diag_free(&d);
    cg_kernel_free(b.k);
}

int main(void)
{
    base b = make();
    cg_store(b.k, b.y, b.l, cg_load(b.k, b.x, b.l));
    expect(b, NULL);

    b = make(); /* f32 + i64 */
    cg_store(b.k, b.y, b.l, cg_add(b.k, cg_load(b.k, b.x, b.l), b.l));
    expect(b, "add of f32 and i64");

    b = make(); /* a loop value after its loop: x[l] - max(x) outside loop 0 */
    cg_val v = cg_load(b.k, b.x, b.l);
    cg_val m = cg_reduce(b.k, CG_RED_MAX, 0, v);
    cg_store(b.k, b.y, b.row, cg_sub(b.k, v, m));
    expect(b, "a value of loop 0, outside that loop");

    b = make(); /* reduce over loop 1 of a loop-0 value */
    cg_kernel_loop(b.k, 8);
    cg_store(b.k, b.y, b.row, cg_reduce(b.k, CG_RED_SUM, 1, cg_load(b.k, b.x, b.l)));
    expect(b, "a value of loop 0");

    b = make(); /* load from an out buffer */
    cg_store(b.k, b.y, b.l, cg_load(b.k, b.y, b.l));
    expect(b, "not readable");

    b = make(); /* store to an in buffer */
    cg_store(b.k, b.x, b.l, cg_f32(b.k, 1));
    expect(b, "not writable");

    b = make(); /* f64 value into an f32 buffer */
    cg_store(b.k, b.y, b.l, cg_const_float(b.k, CG_F64, 1));
    expect(b, "value is f64, expected f32");

    b = make(); /* index out of bounds: row + l + 1 reaches 32 */
    cg_store(b.k, b.y, cg_add(b.k, b.l, cg_i64(b.k, 1)), cg_f32(b.k, 1));
    expect(b, "index range [1, 32] is outside [0, 32)");

    b = make(); /* an i32 index (loaded ids must be cast to i64) */
    cg_store(b.k, b.y, cg_load(b.k, b.w, cg_pidx(b.k, 0)), cg_f32(b.k, 1));
    expect(b, "index must be i64, not i32");

    b = make(); /* float math on integers */
    cg_store(b.k, b.y, b.l, cg_cast(b.k, CG_F32, cg_unary(b.k, CG_EXP, b.l)));
    expect(b, "exp of i64");

    b = make(); /* a grid dim that does not exist */
    cg_store(b.k, b.y, cg_pidx(b.k, 1), cg_f32(b.k, 1));
    expect(b, "pidx 1: the grid has 1 dims");

    b = make(); /* select on a non-bool */
    cg_store(b.k, b.y, b.l, cg_select(b.k, b.l, cg_f32(b.k, 1), cg_f32(b.k, 2)));
    expect(b, "select condition is i64");

    b = make(); /* duplicate argument names */
    cg_kernel_buffer(b.k, "x", DT_F32, CG_IN, 1);
    expect(b, "duplicate name 'x'");

    b = make(); /* zero-sized loop */
    cg_kernel_loop(b.k, 0);
    expect(b, "loop 1 has extent 0");
    printf("%-28s 13 malformed kernels rejected, the base accepted: OK\n", "kernel validate");
    return 0;
}
