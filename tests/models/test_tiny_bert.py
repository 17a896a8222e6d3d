#!/usr/bin/env python3
"""test_tiny_bert.py LOOM — a tiny BERT encoder (post-norm, erf GELU, padding mask) through
`loom run --target ref`, against the independent NumPy forward of bert_numpy.py (float64).
The second sequence ends in padding, so the additive mask matters."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_numpy  # noqa: E402
from harness import check_model  # noqa: E402

CFG = dict(vocab=64, max_pos=32, type_vocab=2, d_model=32, n_layer=2, n_head=4, d_ff=64,
           batch=2, seq=16)


def make_weights(rng):
    V, P, C, F = CFG["vocab"], CFG["max_pos"], CFG["d_model"], CFG["d_ff"]

    def ln(name):
        return {name + ".weight": 1 + rng.normal(0, 0.2, C), name + ".bias": rng.normal(0, 0.2, C)}

    def dense(name, n_out, n_in, std):
        return {name + ".weight": rng.normal(0, std, (n_out, n_in)), name + ".bias": rng.normal(0, 0.1, n_out)}

    w = {"embeddings.word_embeddings.weight": rng.normal(0, 0.5, (V, C)),
         "embeddings.position_embeddings.weight": rng.normal(0, 0.2, (P, C)),
         "embeddings.token_type_embeddings.weight": rng.normal(0, 0.2, (CFG["type_vocab"], C))}
    w.update(ln("embeddings.LayerNorm"))
    w.update(dense("pooler.dense", C, C, 0.2))
    for l in range(CFG["n_layer"]):
        pre = f"encoder.layer.{l}."
        for part in ("query", "key", "value"):
            w.update(dense(pre + "attention.self." + part, C, C, 0.3))
        w.update(dense(pre + "attention.output.dense", C, C, 0.2))
        w.update(ln(pre + "attention.output.LayerNorm"))
        w.update(dense(pre + "intermediate.dense", F, C, 0.3))
        w.update(dense(pre + "output.dense", C, F, 0.15))
        w.update(ln(pre + "output.LayerNorm"))
    return {k: v.astype(np.float32) for k, v in w.items()}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_tiny_bert.py LOOM")
    rng = np.random.default_rng(4321)
    weights = make_weights(rng)
    B, T = CFG["batch"], CFG["seq"]
    ids = rng.integers(0, CFG["vocab"], (B, T)).astype(np.int32)
    mask = np.ones((B, T), dtype=np.int32)
    mask[1, T - 5:] = 0
    ids[1, T - 5:] = 0
    p64 = {k: v.astype(np.float64) for k, v in weights.items()}
    hidden, pooled = bert_numpy.forward(p64, ids, mask, CFG["n_layer"], CFG["n_head"])
    check_model("tiny BERT", sys.argv[1], "bert.loom", CFG, weights,
                {"input_ids": ids, "attention_mask": mask},
                {"last_hidden_state": hidden, "pooler_output": pooled})


if __name__ == "__main__":
    main()
