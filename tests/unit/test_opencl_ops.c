/* test_opencl_ops.c — the op suite (op_suite.h: every op of ir/ops.def on randomized shapes
 * against the reference interpreter at IR_PREC_F32, max errors printed, tolerance
 * |err| <= 1e-4 · max(1, |ref|); with the backward ops: SUM_ROWS, SCATTER_ADD and the
 * generated ATTENTION_GRAD kernels with GQA / masks / S != T) run by the OpenCL executor
 * (runtime/opencl/exec_opencl.c: kernels rendered by cg_opencl_source_offsets, GEMMs through CLBlast +
 * the epilogue kernel, the generated attention kernel, copies, id checks).
 * Device: argv[1] or $LOOM_TEST_OPENCL_TARGET (default "opencl": the first platform with a
 * device); no OpenCL platform prints "skipped". The program cache goes to a temporary dir.
 */
#include "op_suite.h"

#include "runtime/opencl/exec_opencl.h"
#include "runtime/opencl/opencl.h"

static rt_ocl *OCL;

typedef struct ocl_exec {
    char *src;
    rt_ocl_kernel_dims *dims;
    rt_ocl_exec *ex;
} ocl_exec;

static void ocl_close(void *p)
{
    ocl_exec *o = p;
    free(o->src);
    free(o->dims);
    rt_ocl_exec_free(o->ex);
    free(o);
}

static void *ocl_open(const cg_lowered *low, ir_diag *d)
{
    ocl_exec *o = calloc(1, sizeof *o);
    o->dims = calloc((size_t)low->n_kernels + 1, sizeof *o->dims);
    for (int i = 0; i < low->n_kernels; i++) {
        o->dims[i].name = low->kernels[i]->name;
        cg_opencl_launch_dims(low->kernels[i], &o->dims[i].groups, &o->dims[i].local);
    }
    bool ok = true;
    if (low->n_kernels > 0) {
        o->src = cg_opencl_source_offsets(low->kernels, low->n_kernels, d);
        ok = o->src != NULL;
    }
    if (ok)
        o->ex = rt_ocl_exec_new(OCL, &low->plan, o->src, o->dims, low->n_kernels, d);
    if (!o->ex) {
        ocl_close(o);
        return NULL;
    }
    return o;
}

static bool ocl_bind(void *p, const char *name, const void *data, ir_diag *d)
{
    return rt_ocl_exec_bind(((ocl_exec *)p)->ex, name, data, d);
}
/* twice: the second run must see the params and inputs still on the device */
static bool ocl_run(void *p, ir_diag *d)
{
    rt_ocl_exec *ex = ((ocl_exec *)p)->ex;
    return rt_ocl_exec_run(ex, d) && rt_ocl_exec_run(ex, d);
}
static const void *ocl_output(void *p, const char *name, ir_diag *d)
{
    return rt_ocl_exec_output(((ocl_exec *)p)->ex, name, d);
}

int main(int argc, char **argv)
{
    const char *target = argc > 1 ? argv[1] : getenv("LOOM_TEST_OPENCL_TARGET") ? getenv("LOOM_TEST_OPENCL_TARGET") : "opencl";
    ir_diag d;
    ir_diag_init(&d);
    OCL = rt_ocl_open(target, &d);
    if (!OCL) {
        bool skip = d.n_msg > 0 && (strstr(d.msg[0].msg, "no OpenCL platform") || strstr(d.msg[0].msg, "no OpenCL device"));
        ir_diag_print(&d, stdout);
        printf("%s", skip ? "skipped: no OpenCL platform\n" : "");
        ir_diag_free(&d);
        return skip ? 0 : 1;
    }
    ir_diag_free(&d);
    char dir[] = "/tmp/loom-ocl-ops-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    rt_ocl_set_cache_dir(OCL, dir);
    printf("device: %s\n", rt_ocl_device_name(OCL));
    static const op_backend ocl = {"opencl", ocl_open, ocl_bind, ocl_run, ocl_output, ocl_close, true};
    int failed = op_suite_run(&ocl, true);
    rt_ocl_close(OCL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failed ? 1 : 0;
}
