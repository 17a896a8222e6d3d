#!/usr/bin/env python3
"""test_tiny_llama.py LOOM — a tiny LLaMA (RMSNorm, rotate-half rope, SwiGLU, grouped-query
attention with n_kv_head < n_head) through `loom run --target ref`, against the independent NumPy
forward of llama_numpy.py (float64)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_numpy  # noqa: E402
from harness import check_model  # noqa: E402

CFG = dict(vocab=64, d_model=32, n_layer=2, n_head=4, n_kv_head=2, d_ff=48, batch=2, seq=16)


def make_weights(rng):
    V, C, F = CFG["vocab"], CFG["d_model"], CFG["d_ff"]
    D = C // CFG["n_head"]
    KV = CFG["n_kv_head"] * D
    w = {"model.embed_tokens.weight": rng.normal(0, 0.5, (V, C)),
         "model.norm.weight": 1 + rng.normal(0, 0.2, C),
         "lm_head.weight": rng.normal(0, 0.3, (V, C))}
    for l in range(CFG["n_layer"]):
        pre = f"model.layers.{l}."
        w[pre + "input_layernorm.weight"] = 1 + rng.normal(0, 0.2, C)
        w[pre + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.2, C)
        w[pre + "self_attn.q_proj.weight"] = rng.normal(0, 0.3, (C, C))
        w[pre + "self_attn.k_proj.weight"] = rng.normal(0, 0.3, (KV, C))
        w[pre + "self_attn.v_proj.weight"] = rng.normal(0, 0.3, (KV, C))
        w[pre + "self_attn.o_proj.weight"] = rng.normal(0, 0.2, (C, C))
        w[pre + "mlp.gate_proj.weight"] = rng.normal(0, 0.3, (F, C))
        w[pre + "mlp.up_proj.weight"] = rng.normal(0, 0.3, (F, C))
        w[pre + "mlp.down_proj.weight"] = rng.normal(0, 0.2, (C, F))
    return {k: v.astype(np.float32) for k, v in w.items()}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_tiny_llama.py LOOM")
    rng = np.random.default_rng(777)
    weights = make_weights(rng)
    B, T, V = CFG["batch"], CFG["seq"], CFG["vocab"]
    stream = rng.integers(0, V, (B, T + 1))
    tokens = stream[:, :T].astype(np.int32)
    targets = stream[:, 1:].astype(np.int32)
    targets[1, 0] = -1
    p64 = {k: v.astype(np.float64) for k, v in weights.items()}
    logits, loss = llama_numpy.forward(p64, tokens, targets, CFG["n_layer"], CFG["n_head"],
                                       CFG["n_kv_head"])
    print(f"tiny LLaMA {CFG}: reference loss {loss:.6f}")
    check_model("tiny LLaMA", sys.argv[1], "llama.loom", CFG, weights,
                {"tokens": tokens, "targets": targets}, {"logits": logits, "loss": loss})


if __name__ == "__main__":
    main()
