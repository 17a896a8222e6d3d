/* metrics.h — what a training step measured, as numbers a tool reads (docs/profiling.md,
 * "Metrics"): `loom train --log FILE` writes one row a step — JSON lines, or CSV when FILE ends
 * in .csv — and the step line shows the MFU computed here.
 *
 * MFU (model FLOPs utilization) = the FLOPs of one step of the whole model by the IR's cost
 * rules (ir/cost.c: forward and backward of the training graph, every rank's share together) /
 * the step's time / (the ranks × one device's peak). The peak is --peak-tflops when given,
 * else what loom knows for the device (eng_peak_flops), else unknown: no MFU.
 */
#ifndef LOOM_ENGINE_METRICS_H
#define LOOM_ENGINE_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"

/* The FLOPs of one run of g by the cost rules of ir/ops.def, recomputations not counted (the
 * model's FLOPs: MFU, not hardware FLOPs utilization). */
double eng_graph_flops(const ir_graph *g);

/* One device's peak in FLOP/s for target (cpu, cuda[:N], opencl...) at precision (f32, or the
 * half type of mixed precision) with `threads` CPU threads: cpu: threads × the clock (cpufreq's
 * maximum, else /proc/cpuinfo) × the f32 FLOPs a cycle of its widest FMA (AVX-512 or AVX2: 32,
 * AVX: 16, else 8; half precision is computed in f32 on the CPU); cuda: a table of data-centre
 * GPUs by name. 0 when unknown. *how: a few words on where the number came from. */
double eng_peak_flops(const char *target, ir_dtype precision, int threads, const char **how);

/* One row of the metrics log. NaN fields are left out (JSON) or empty (CSV). */
typedef struct {
    int64_t step, tokens;   /* tokens: trained on so far */
    double loss, lr, grad_norm, ms, tok_per_s, mfu, val_loss;
    double loss_scale;      /* fp16: the scale the next step uses; 0: not fp16 */
    bool skipped;           /* the step changed nothing (fp16 overflow, --on-nan skip) */
    int n_axes;             /* under a mesh: bytes this rank sent per axis */
    const char *axis[8];
    double bytes[8];
} eng_metrics_row;

/* Whether path is written as CSV (it ends in .csv) rather than JSON lines. */
bool eng_metrics_csv(const char *path);
/* The CSV header (the first seven columns are those loom has always written; the axes of
 * row's bytes follow); nothing for JSON lines. */
void eng_metrics_header(FILE *f, bool csv, const eng_metrics_row *row);
void eng_metrics_write(FILE *f, bool csv, const eng_metrics_row *row);

#endif
