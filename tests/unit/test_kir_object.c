/* test_kir_object.c — the host renderer's outputs other than the JIT: the LLVM IR text (the
 * ABI wrapper, the noalias body, and vector code after O3 for a plain elementwise kernel) and
 * a host object file (exists, is ELF, defines the kernel's symbol); then the object is linked
 * with a small C driver by the system C compiler, when there is one, and run.
 */
#include <string.h>
#include <unistd.h>

#include "test_kir_util.h"

static cg_kernel *build_axpy(void)
{
    cg_kernel *k = cg_kernel_new("loom_axpy");
    int x = cg_kernel_buffer(k, "x", DT_F32, CG_IN, 1024);
    int y = cg_kernel_buffer(k, "y", DT_F32, CG_INOUT, 1024);
    cg_kernel_dim(k, 1024);
    cg_val i = cg_pidx(k, 0);
    cg_val ax = cg_mul(k, cg_f32(k, 2.5), cg_load(k, x, i));
    cg_store(k, y, i, cg_add(k, ax, cg_load(k, y, i)));
    return k;
}

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    CHECK(p && fread(p, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

int main(void)
{
    cg_kernel *k = build_axpy();
    ir_diag d;
    ir_diag_init(&d);

    cg_host_options o0 = {.opt_level = 0};
    char *ir0 = cg_llvm_host_ir(&k, 1, &o0, &d);
    CHECK(ir0);
    CHECK(strstr(ir0, "define void @loom_axpy(ptr %args, i64 %0, i64 %1)") ||
          strstr(ir0, "define void @loom_axpy(ptr"));
    CHECK(strstr(ir0, "define internal void @loom_axpy.body(ptr noalias %x, ptr noalias %y, i64 %begin, i64 %end)"));
    char *ir3 = cg_llvm_host_ir(&k, 1, NULL, &d);
    CHECK(ir3);
    CHECK(strstr(ir3, "x float>")); /* vectorized */
    CHECK(!strstr(ir3, "@loom_axpy.body")); /* inlined into the entry point */
    printf("%-28s O0 has the ABI wrapper and noalias body; O3 is vectorized and inlined: OK\n", "LLVM IR text");
    free(ir0);
    free(ir3);

    char dir[] = "/tmp/loom_test_kir_XXXXXX";
    CHECK(mkdtemp(dir));
    char obj[96], src[96], exe[96], cmd[512];
    snprintf(obj, sizeof obj, "%s/axpy.o", dir);
    snprintf(src, sizeof src, "%s/main.c", dir);
    snprintf(exe, sizeof exe, "%s/main", dir);
    if (!cg_host_emit_object(&k, 1, NULL, obj, &d)) {
        ir_diag_print(&d, stderr);
        return 1;
    }
    size_t len = 0;
    char *bytes = read_all(obj, &len);
    CHECK(bytes && len > 64);
    CHECK(memcmp(bytes, "\x7f" "ELF", 4) == 0);
    CHECK(contains(bytes, len, "loom_axpy"));
    printf("%-28s %zu bytes, ELF, defines loom_axpy: OK\n", "host object file", len);
    free(bytes);

    /* link with a C driver and run, if a C compiler is at hand */
    FILE *f = fopen(src, "w");
    CHECK(f);
    fputs("#include <stdint.h>\n#include <stdio.h>\n"
          "void loom_axpy(void **args, int64_t begin, int64_t end);\n"
          "int main(void) {\n"
          "  static float x[1024], y[1024];\n"
          "  for (int i = 0; i < 1024; i++) x[i] = (float)i, y[i] = 1.0f;\n"
          "  void *args[] = {x, y};\n"
          "  loom_axpy(args, 0, 512); loom_axpy(args, 512, 1024);\n"
          "  for (int i = 0; i < 1024; i++) if (y[i] != 2.5f * (float)i + 1.0f) return 1;\n"
          "  return 0;\n}\n",
          f);
    fclose(f);
    if (system("cc --version >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "cc -o %s %s %s -lm && %s", exe, src, obj, exe);
        CHECK(system(cmd) == 0);
        printf("%-28s linked with cc and run, y = 2.5 x + y exact: OK\n", "host object file");
    } else {
        printf("%-28s no C compiler: link step skipped\n", "host object file");
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);

    ir_diag_free(&d);
    cg_kernel_free(k);
    return 0;
}
