/* test_cuda_driver.c — the dlopen'ed CUDA driver shim (runtime/cuda/cuda_driver.h).
 *
 * Always (no GPU needed): a missing library gives "no CUDA driver found (PATH: <reason>)", the
 * path once (glibc's dlerror starts with it); a library without the entry points gives "CUDA
 * driver PATH lacks cuInit"; the CUDA toolkit's
 * stub libcuda.so (where installed) resolves every entry point and fails cuInit with
 * CUDA_ERROR_STUB_LIBRARY; RT_CU_CHECK formats
 * "file:line: call: NAME (string)" with the driver's own error name and string; the device
 * listing says "cuda: no CUDA driver found" where there is none. Where dlopen("libcuda.so.1")
 * itself fails, rt_cuda_load must fail with that dlerror text (asserted, never skipped).
 *
 * With a driver and a device: lists the devices, then renders kernels with cg_ptx (softmax
 * rows: reductions, shuffles, barriers; a scalar-argument kernel with an i64 output), loads
 * them with rt_cuda_load_ptx, launches them with cg_ptx_launch_dims's geometry and compares
 * with plain C (softmax rel 1e-5; the other exact). A broken PTX image must fail with the
 * JIT's log in the message. Without a device: "skipped: no CUDA device".
 */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cuda/cuda_driver.h"
#include "test_kir_kernels.h"
#include "test_kir_util.h"

/* ---- no GPU needed ------------------------------------------------------------------------ */

static rt_cu_result fake_name(rt_cu_result r, const char **s)
{
    *s = r == RT_CU_ERROR_OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY" : NULL;
    return *s ? RT_CU_SUCCESS : RT_CU_ERROR_INVALID_VALUE;
}

static rt_cu_result fake_string(rt_cu_result r, const char **s)
{
    *s = r == RT_CU_ERROR_OUT_OF_MEMORY ? "out of memory" : NULL;
    return *s ? RT_CU_SUCCESS : RT_CU_ERROR_INVALID_VALUE;
}

static rt_cu_result fake_alloc(rt_cu_deviceptr *p, size_t bytes)
{
    *p = 0;
    return bytes > 1000 ? RT_CU_ERROR_OUT_OF_MEMORY : RT_CU_SUCCESS;
}

static void test_check_macro(void)
{
    rt_cuda cu = {.GetErrorName = fake_name, .GetErrorString = fake_string, .MemAlloc = fake_alloc};
    char err[256] = "";
    rt_cu_deviceptr p;
    CHECK(RT_CU_CHECK(&cu, cu.MemAlloc(&p, 10), err, sizeof err) && err[0] == 0);
    int line = __LINE__ + 1;
    CHECK(!RT_CU_CHECK(&cu, cu.MemAlloc(&p, 5000), err, sizeof err));
    char want[256];
    snprintf(want, sizeof want, "%s:%d: cu.MemAlloc(&p, 5000): CUDA_ERROR_OUT_OF_MEMORY (out of memory)", __FILE__, line);
    if (strncmp(err, want, strlen(want)) != 0)
        fprintf(stderr, "got  %s\nwant %s\n", err, want);
    CHECK(strncmp(err, want, strlen(want)) == 0 && strstr(err, "hint:"));
    /* a code nobody can name; no driver table (the shim's own names then) */
    CHECK(!rt_cu_check(&cu, 12345, "cuFoo()", "x.c:1", err, sizeof err) && strcmp(err, "x.c:1: cuFoo(): CUDA error 12345") == 0);
    CHECK(!rt_cu_check(NULL, 700, "cuBar()", "y.c:2", err, sizeof err) &&
          strcmp(err, "y.c:2: cuBar(): CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)") == 0);
    printf("%-28s %s: OK\n", "RT_CU_CHECK", want);
}

static void test_load_failures(void)
{
    char err[512];
    setenv("LOOM_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
    CHECK(rt_cuda_load(err, sizeof err) == NULL);
    CHECK(strncmp(err, "no CUDA driver found (/nonexistent/libcuda.so.1: ", 49) == 0 && strstr(err, "No such file") &&
          !strstr(err + 49, "libcuda.so.1"));
    printf("%-28s %s: OK\n", "missing library", err);
    setenv("LOOM_LIBCUDA", "libm.so.6", 1); /* a library, but not a CUDA driver */
    CHECK(rt_cuda_load(err, sizeof err) == NULL);
    CHECK(strcmp(err, "CUDA driver libm.so.6 lacks cuInit (driver too old?)") == 0);
    printf("%-28s %s: OK\n", "not a driver", err);
    CHECK(rt_cuda_load(NULL, 0) == NULL); /* no message buffer: still fails cleanly */
    /* The toolkit's link stub exports every entry point of a real driver (so this checks the
     * symbol names the shim resolves) and fails cuInit with CUDA_ERROR_STUB_LIBRARY. */
    const char *stubs[] = {"/usr/local/cuda/lib64/stubs/libcuda.so", "/usr/local/cuda/lib/stubs/libcuda.so"};
    bool stub = false;
    for (int i = 0; i < 2 && !stub; i++) {
        if (access(stubs[i], R_OK) != 0)
            continue;
        stub = true;
        setenv("LOOM_LIBCUDA", stubs[i], 1);
        CHECK(rt_cuda_load(err, sizeof err) == NULL);
        if (!strstr(err, "cuInit(0): CUDA_ERROR_STUB_LIBRARY (CUDA driver is a stub library); hint:"))
            fprintf(stderr, "got %s\n", err);
        CHECK(strstr(err, "cuInit(0): CUDA_ERROR_STUB_LIBRARY (CUDA driver is a stub library); hint:"));
        printf("%-28s %s: OK\n", "toolkit stub libcuda", err);
    }
    if (!stub)
        printf("%-28s skipped: no CUDA toolkit stub libcuda.so\n", "toolkit stub libcuda");
    unsetenv("LOOM_LIBCUDA");
}

/* ---- with a GPU ----------------------------------------------------------------------------- */

enum { ROWS = 33, COLS = 301, N = 1000 };

#define CU(call) CHECK(RT_CU_CHECK(cu, call, err, sizeof err) || (fprintf(stderr, "%s\n", err), 0))

static void launch(rt_cuda *cu, rt_cu_module mod, const cg_kernel *k, void **params)
{
    char err[512];
    rt_cu_function fn;
    unsigned g[3], b[3];
    cg_ptx_launch_dims(k, g, b);
    CU(cu->ModuleGetFunction(&fn, mod, k->name));
    CU(cu->LaunchKernel(fn, g[0], g[1], g[2], b[0], b[1], b[2], 0, NULL, params, NULL));
    CU(cu->CtxSynchronize());
}

static void test_gpu(rt_cuda *cu)
{
    char err[4096];
    rt_cuda_list_devices(stdout);
    rt_cu_device dev;
    rt_cu_context ctx;
    CU(cu->DeviceGet(&dev, 0));
    CU(cu->DevicePrimaryCtxRetain(&ctx, dev));
    CU(cu->CtxSetCurrent(ctx));

    rt_cu_module bad;
    CHECK(!rt_cuda_load_ptx(cu, ".version 7.5\n.target sm_80\n.address_size 64\nthis is not ptx\n", &bad, err, sizeof err));
    CHECK(strstr(err, "ModuleLoadDataEx") && strstr(err, "ptxas log:"));
    printf("%-28s rejected with the JIT log: OK\n", "broken PTX");

    cg_kernel *ks[2] = {kt_softmax_rows("softmax_rows", ROWS, COLS), kt_scale_by_n(N)};
    ir_diag d;
    ir_diag_init(&d);
    char *ptx = cg_ptx(ks, 2, NULL, &d);
    CHECK(ptx);
    ir_diag_free(&d);
    rt_cu_module mod;
    CHECK(rt_cuda_load_ptx(cu, ptx, &mod, err, sizeof err) || (fprintf(stderr, "%s\n", err), 0));
    free(ptx);

    /* softmax */
    float *x = kt_random(ROWS * COLS, -8, 8), *y = calloc(ROWS * COLS, sizeof *y), *ref = calloc(ROWS * COLS, sizeof *ref);
    for (int c = 0; c < COLS; c++) {
        x[1 * COLS + c] += 1000.0f;
        x[2 * COLS + c] = c == 17 ? 0.5f : -INFINITY;
    }
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x + r * COLS;
        double m = -INFINITY, s = 0;
        for (int c = 0; c < COLS; c++)
            m = xr[c] > m ? xr[c] : m;
        for (int c = 0; c < COLS; c++)
            s += exp(xr[c] - m);
        for (int c = 0; c < COLS; c++)
            ref[r * COLS + c] = (float)(exp(xr[c] - m) / s);
    }
    size_t bytes = ROWS * COLS * sizeof(float);
    rt_cu_deviceptr dx, dy;
    CU(cu->MemAlloc(&dx, bytes));
    CU(cu->MemAlloc(&dy, bytes));
    CU(cu->MemcpyHtoD(dx, x, bytes));
    void *p1[] = {&dx, &dy};
    launch(cu, mod, ks[0], p1);
    CU(cu->MemcpyDtoH(y, dy, bytes));
    CHECK(kt_compare("softmax f32 on the GPU", y, ref, ROWS * COLS, 1e-5, 1e-7));
    CHECK(y[2 * COLS + 17] == 1.0f && y[2 * COLS + 16] == 0.0f);
    CU(cu->MemFree(dx));
    CU(cu->MemFree(dy));

    /* scalar argument, i64 output */
    float *a = kt_random(N, -50, 50);
    int64_t nv = 3, res[N];
    rt_cu_deviceptr da, dout;
    CU(cu->MemAlloc(&da, N * sizeof(float)));
    CU(cu->MemAlloc(&dout, N * sizeof(int64_t)));
    CU(cu->MemcpyHtoD(da, a, N * sizeof(float)));
    void *p2[] = {&da, &nv, &dout};
    launch(cu, mod, ks[1], p2);
    CU(cu->MemcpyDtoH(res, dout, sizeof res));
    for (int i = 0; i < N; i++)
        CHECK(res[i] == (int64_t)(a[i] * 3.0f) + i);
    printf("%-28s n=%d exact: OK\n", "(i64)(a * n) + i on the GPU", N);
    CU(cu->MemFree(da));
    CU(cu->MemFree(dout));

    CU(cu->ModuleUnload(mod));
    CU(cu->DevicePrimaryCtxRelease(dev));
    free(x), free(y), free(ref), free(a);
    cg_kernel_free(ks[0]);
    cg_kernel_free(ks[1]);
}

int main(void)
{
    test_check_macro();
    test_load_failures();

    char err[512];
    void *probe = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    char why[512] = "";
    if (!probe)
        snprintf(why, sizeof why, "%s", dlerror());
    rt_cuda *cu = rt_cuda_load(err, sizeof err);
    if (!probe) {
        /* no driver on this machine: the shim must say so, with the loader's reason */
        char want[600]; /* the path once: the loader's reason names it already */
        const char *prefix = strncmp(why, "libcuda.so.1: ", 14) ? "libcuda.so.1: " : "";
        snprintf(want, sizeof want, "no CUDA driver found (%s%s)", prefix, why);
        if (cu || strcmp(err, want) != 0)
            fprintf(stderr, "got  %s\nwant %s\n", cu ? "(loaded)" : err, want);
        CHECK(!cu && strcmp(err, want) == 0);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f);
        rt_cuda_list_devices(f);
        fclose(f);
        CHECK(strncmp(buf, "cuda: no CUDA driver found (libcuda.so.1: ", 42) == 0 &&
              !strstr(buf + 42, "libcuda.so.1"));
        printf("%-28s %s", "no driver", buf);
        free(buf);
        printf("skipped: no CUDA device\n");
        return 0;
    }
    dlclose(probe);
    if (!cu) {
        CHECK(strstr(err, "no CUDA device") || strstr(err, "cuInit"));
        printf("%-28s %s\nskipped: no CUDA device\n", "driver without a device", err);
        return 0;
    }
    test_gpu(cu);
    rt_cuda_unload(cu);
    return 0;
}
