/* metrics.c — metrics.h: step FLOPs, device peaks and the rows of the metrics log. */
#include "engine/metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cuda_driver.h"

double eng_graph_flops(const ir_graph *g)
{
    double f = 0;
    for (int i = 0; i < g->n_nodes; i++)
        f += g->nodes[i]->recomputed ? 0 : ir_ops[g->nodes[i]->op].cost(g->nodes[i]);
    return f;
}

/* The CPU's clock in Hz as its cores run now, or 0: a chain of dependent adds (one a cycle on
 * every x86-64 core) timed over ~5 ms. /proc/cpuinfo's "cpu MHz" is the base clock on VMs (2.6
 * GHz on the dev machine, whose cores run at ~3.7 GHz), which put MFU above 100%. */
static double cpu_hz_measured(void)
{
#if defined(__x86_64__)
    for (int round = 0; round < 2; round++) { /* the first round wakes the core up */
        uint64_t x = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 2000000; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                             : "+r"(x));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (round == 1 && s > 0)
            return (double)x / s;
    }
#endif
    return 0;
}

/* The CPU's top clock in Hz, or 0: the larger of what the kernel says and what is measured. */
static double cpu_hz(void)
{
    double measured = cpu_hz_measured();
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    double khz = 0;
    if (f) {
        if (fscanf(f, "%lf", &khz) != 1)
            khz = 0;
        fclose(f);
        if (khz > 0)
            return khz * 1e3 > measured ? khz * 1e3 : measured;
    }
    f = fopen("/proc/cpuinfo", "r");
    char line[512];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "cpu MHz", 7) == 0 && strchr(line, ':')) {
            double x = atof(strchr(line, ':') + 1);
            mhz = x > mhz ? x : mhz;
        }
    if (f)
        fclose(f);
    return mhz * 1e6 > measured ? mhz * 1e6 : measured;
}

/* Peak dense TFLOP/s of data-centre GPUs (the vendors' data sheets: f32 without tensor cores;
 * bf16/fp16 with them, dense). */
static const struct {
    const char *name;
    double f32, half;
} gpus[] = {
    {"H200", 67, 989}, {"H100", 67, 989}, {"A100", 19.5, 312}, {"L40S", 91.6, 362},
    {"L4", 30.3, 121}, {"V100", 15.7, 125}, {"A10", 31.2, 125},
};

double eng_peak_flops(const char *target, ir_dtype precision, int threads, const char **how)
{
    *how = "unknown";
    if (!target || strcmp(target, "cpu") == 0) {
        double hz = cpu_hz();
        int per_cycle = 8;
#if defined(__x86_64__)
        __builtin_cpu_init();
        per_cycle = __builtin_cpu_supports("avx512f") || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                        ? 32
                    : __builtin_cpu_supports("avx") ? 16
                                                    : 8;
#endif
        if (hz <= 0 || threads <= 0)
            return 0;
        *how = "threads x clock x f32 FLOPs a cycle";
#if defined(__x86_64__)
        if (precision == DT_BF16 && __builtin_cpu_supports("avx512bf16")) { /* vdpbf16ps: twice f32's */
            per_cycle *= 2;
            *how = "threads x clock x bf16 FLOPs a cycle";
        }
#endif
        return threads * hz * per_cycle;
    }
    if (strncmp(target, "cuda", 4) == 0) {
        char err[256], name[256] = "";
        rt_cuda *cu = rt_cuda_load(err, sizeof err);
        rt_cu_device dev;
        int ordinal = target[4] == ':' ? atoi(target + 5) : 0;
        if (cu && cu->DeviceGet(&dev, ordinal) == 0)
            cu->DeviceGetName(name, sizeof name, dev);
        rt_cuda_unload(cu);
        for (size_t i = 0; i < sizeof gpus / sizeof *gpus; i++)
            if (strstr(name, gpus[i].name)) {
                *how = "the GPU's data sheet";
                return 1e12 * (precision == DT_BF16 || precision == DT_F16 ? gpus[i].half : gpus[i].f32);
            }
    }
    return 0;
}

bool eng_metrics_csv(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".csv") == 0;
}

void eng_metrics_header(FILE *f, bool csv, const eng_metrics_row *row)
{
    if (!csv)
        return;
    fprintf(f, "step,loss,lr,grad_norm,ms,tok_per_s,val_loss,tokens,mfu,loss_scale,skipped");
    for (int k = 0; k < row->n_axes; k++)
        fprintf(f, ",bytes_%s", row->axis[k]);
    fprintf(f, "\n");
}

/* A number as JSON (NaN and infinities as null) or CSV (empty). */
static void num(FILE *f, bool csv, const char *fmt, double x)
{
    if (isfinite(x))
        fprintf(f, fmt, x);
    else if (!csv)
        fprintf(f, "null");
}

void eng_metrics_write(FILE *f, bool csv, const eng_metrics_row *r)
{
    if (csv) {
        fprintf(f, "%lld,", (long long)r->step);
        num(f, true, "%.6f", r->loss);
        fprintf(f, ",%.6e,", r->lr);
        num(f, true, "%.6f", r->grad_norm);
        fprintf(f, ",%.3f,%.1f,", r->ms, r->tok_per_s);
        num(f, true, "%.6f", r->val_loss);
        fprintf(f, ",%lld,", (long long)r->tokens);
        num(f, true, "%.6f", r->mfu);
        fprintf(f, ",%g,%d", r->loss_scale, r->skipped);
        for (int k = 0; k < r->n_axes; k++)
            fprintf(f, ",%.0f", r->bytes[k]);
        fprintf(f, "\n");
        return;
    }
    fprintf(f, "{\"step\":%lld,\"tokens\":%lld,\"loss\":", (long long)r->step, (long long)r->tokens);
    num(f, false, "%.6f", r->loss);
    fprintf(f, ",\"lr\":%.6e,\"grad_norm\":", r->lr);
    num(f, false, "%.6f", r->grad_norm);
    fprintf(f, ",\"ms\":%.3f,\"tok_per_s\":%.1f", r->ms, r->tok_per_s);
    if (isfinite(r->mfu)) {
        fprintf(f, ",\"mfu\":");
        num(f, false, "%.6f", r->mfu);
    }
    if (isfinite(r->val_loss))
        fprintf(f, ",\"val_loss\":%.6f", r->val_loss);
    if (r->loss_scale > 0)
        fprintf(f, ",\"loss_scale\":%g", r->loss_scale);
    if (r->loss_scale > 0 || r->skipped)
        fprintf(f, ",\"skipped\":%s", r->skipped ? "true" : "false");
    if (r->n_axes) {
        fprintf(f, ",\"bytes_sent\":{");
        for (int k = 0; k < r->n_axes; k++)
            fprintf(f, "%s\"%s\":%.0f", k ? "," : "", r->axis[k], r->bytes[k]);
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
}
