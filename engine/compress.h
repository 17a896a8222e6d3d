/* compress.h — what model compression (engine/compress.c, docs/compression.md) gives the other
 * jobs: which tensors are GEMM weights, and a model's graph for a quantized weights file. */
#ifndef LOOM_ENGINE_COMPRESS_H
#define LOOM_ENGINE_COMPRESS_H

#include <stdbool.h>

#include "ir/diag.h"
#include "ir/ir.h"

/* Whether the tensor called name (dtype dt, shape s) is a GEMM weight, as Hugging Face names
 * them: a float matrix named *weight that names no embedding table (wte, wpe, embed, position,
 * token_type) and has no '/' (a loom checkpoint's optimizer state). *axis: the axis its matmul reduces over (0 for GPT-2's Conv1D [in, out]
 * weights c_attn, c_proj, c_fc; 1 for nn.Linear's [out, in]). */
bool eng_gemm_weight(const char *name, ir_dtype dt, const ir_shape *s, int *axis);

/* Rewrites the params of g that the safetensors file `weights` holds quantized (P.qweight and
 * P.scales instead of P) into codes, scales and a dequantize (passes/quantize.c), so that the
 * graph binds the file by name (weights: a file, a shard index or a folder, io/hf.h); a graph
 * with no such param is left as it is. NULL weights, or weights that do not open: nothing to do
 * (the binder reports those in its turn). False after reporting tensors that do not fit. */
bool eng_dequantize_graph(ir_graph *g, const char *weights, ir_diag *d);

#endif
