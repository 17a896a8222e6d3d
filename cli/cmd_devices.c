/* cmd_devices.c — `loom devices`: what each backend sees. The CPU (name, cores, its GEMM library), the CUDA
 * devices through the dlopen'd driver, the OpenCL platforms and devices through the ICD
 * loader. A backend without a driver or device prints one line saying why (e.g. "cuda: no
 * CUDA driver found (libcuda.so.1: ...)"); that is not an error, so the exit status is 0
 * unless listing itself fails. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/cpu/gemm_dnnl.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/opencl/opencl.h"

/* The "model name" line of /proc/cpuinfo, or the machine type. */
static void cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && strncmp(line, "model name", 10) == 0) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, cap, "%s", colon);
            break;
        }
    }
    fclose(f);
}

int cmd_devices(const eng_opts *o)
{
    (void)o;
    ir_diag d;
    ir_diag_init(&d);
    char name[256];
    cpu_name(name, sizeof name);
    printf("cpu: %s, %ld cores\n", name, sysconf(_SC_NPROCESSORS_ONLN));
    char gemm[512];
    rt_dnnl_describe(gemm, sizeof gemm);
    printf("cpu GEMM: %s\n", gemm);
    rt_cuda_list_devices(stdout);
    rt_ocl_list_devices(stdout, &d);
    fflush(stdout);
    return cli_finish(&d);
}
