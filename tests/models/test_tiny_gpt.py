#!/usr/bin/env python3
"""test_tiny_gpt.py LOOM — a tiny GPT-2 forward with fixed weights through `loom run --target ref`,
against the independent NumPy forward of gpt2_numpy.py (float64).

Weights: normal with a fixed NumPy seed, stored as F32 (both sides then use the same values);
LayerNorm weights perturbed from 1 and biases from 0 so that they matter. Targets are the next
tokens with a few positions set to -1 (ignored by the loss)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_numpy  # noqa: E402
from harness import check_model  # noqa: E402

CFG = dict(vocab=64, ctx=32, d_model=32, n_layer=2, n_head=4, batch=2, seq=16)


def make_weights(rng):
    V, P, C, L = CFG["vocab"], CFG["ctx"], CFG["d_model"], CFG["n_layer"]
    w = {"wte.weight": rng.normal(0, 0.5, (V, C)), "wpe.weight": rng.normal(0, 0.2, (P, C)),
         "ln_f.weight": 1 + rng.normal(0, 0.2, C), "ln_f.bias": rng.normal(0, 0.2, C)}
    for l in range(L):
        pre = f"h.{l}."
        w[pre + "ln_1.weight"] = 1 + rng.normal(0, 0.2, C)
        w[pre + "ln_1.bias"] = rng.normal(0, 0.2, C)
        w[pre + "ln_2.weight"] = 1 + rng.normal(0, 0.2, C)
        w[pre + "ln_2.bias"] = rng.normal(0, 0.2, C)
        w[pre + "attn.c_attn.weight"] = rng.normal(0, 0.3, (C, 3 * C))
        w[pre + "attn.c_attn.bias"] = rng.normal(0, 0.1, 3 * C)
        w[pre + "attn.c_proj.weight"] = rng.normal(0, 0.2, (C, C))
        w[pre + "attn.c_proj.bias"] = rng.normal(0, 0.1, C)
        w[pre + "mlp.c_fc.weight"] = rng.normal(0, 0.3, (C, 4 * C))
        w[pre + "mlp.c_fc.bias"] = rng.normal(0, 0.1, 4 * C)
        w[pre + "mlp.c_proj.weight"] = rng.normal(0, 0.15, (4 * C, C))
        w[pre + "mlp.c_proj.bias"] = rng.normal(0, 0.1, C)
    return {k: v.astype(np.float32) for k, v in w.items()}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_tiny_gpt.py LOOM")
    rng = np.random.default_rng(1234)
    weights = make_weights(rng)
    B, T, V = CFG["batch"], CFG["seq"], CFG["vocab"]
    stream = rng.integers(0, V, (B, T + 1))
    tokens = stream[:, :T].astype(np.int32)
    targets = stream[:, 1:].astype(np.int32)
    targets[0, 3] = targets[1, T - 1] = -1
    p64 = {k: v.astype(np.float64) for k, v in weights.items()}
    logits, loss = gpt2_numpy.forward(p64, tokens, targets, CFG["n_layer"], CFG["n_head"])
    print(f"tiny GPT-2 {CFG}: reference loss {loss:.6f}")
    check_model("tiny GPT-2", sys.argv[1], "gpt2.loom", CFG, weights,
                {"tokens": tokens, "targets": targets}, {"logits": logits, "loss": loss})


if __name__ == "__main__":
    main()
