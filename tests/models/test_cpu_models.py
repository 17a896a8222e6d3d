#!/usr/bin/env python3
"""test_cpu_models.py LOOM — whole models through `loom run --target cpu` (fusion, JIT kernels,
OpenBLAS, fused attention) against the reference interpreter (`--target ref --precision f32`),
every output compared with the max abs / rel error printed; tolerance: |cpu - ref| <= 1e-4 ·
max(1, |ref|) elementwise.

Cases: tiny GPT-2, tiny LLaMA (grouped-query attention, rope, rmsnorm, swiglu) and tiny BERT
(padding mask, erf GELU, post-norm) with the weights of their own model tests (LayerNorm
weights perturbed so they matter), each with and without the optional targets; and GPT-2 small
(124M parameters, `loom init --seed 1`) at seq 64. The reference interpreter takes about a
minute on GPT-2 small under AddressSanitizer, so when the loom binary is a sanitizer build that
case keeps GPT-2 small's widths but runs 2 layers and a 2048-token vocabulary
(LOOM_TEST_FULL=1 forces the full model)."""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tiny_bert  # noqa: E402
import test_tiny_gpt  # noqa: E402
import test_tiny_llama  # noqa: E402

# what other backend tests import from here (tests/opencl, tests/gpu, test_build.py)
run = harness.run_target
compare = harness.compare_backend


def tiny_cases(tmp):
    """(title, model, defines, weights, inputs, optional input names) of the three tiny models."""
    cases = []
    rng = np.random.default_rng(1234)
    w = test_tiny_gpt.make_weights(rng)
    cfg = test_tiny_gpt.CFG
    stream = rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"] + 1))
    targets = stream[:, 1:].astype(np.int32)
    targets[0, 3] = -1
    cases.append(("tiny GPT-2", "gpt2.loom", cfg, w,
                  {"tokens": stream[:, :-1].astype(np.int32), "targets": targets}, ["targets"]))

    rng = np.random.default_rng(777)
    w = test_tiny_llama.make_weights(rng)
    cfg = test_tiny_llama.CFG
    stream = rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"] + 1))
    targets = stream[:, 1:].astype(np.int32)
    targets[1, 0] = -1
    cases.append(("tiny LLaMA (GQA)", "llama.loom", cfg, w,
                  {"tokens": stream[:, :-1].astype(np.int32), "targets": targets}, ["targets"]))

    rng = np.random.default_rng(4321)
    w = test_tiny_bert.make_weights(rng)
    cfg = test_tiny_bert.CFG
    ids = rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"])).astype(np.int32)
    mask = np.ones((cfg["batch"], cfg["seq"]), dtype=np.int32)
    mask[1, -5:] = 0
    ids[1, -5:] = 0
    cases.append(("tiny BERT (padding mask)", "bert.loom", cfg, w, {"input_ids": ids, "attention_mask": mask}, []))
    return cases


def check_tiny_models(loom, tmp, want, got):
    """check_targets (harness.py) on every tiny case, with and without its optional inputs."""
    ok = True
    for title, model, cfg, w, inputs, optional in tiny_cases(tmp):
        wpath = os.path.join(tmp, "weights.safetensors")
        harness.write_safetensors(wpath, w)
        ok &= harness.check_targets(title, loom, model, cfg, wpath, inputs, tmp, want, got)
        for name in optional:
            ok &= harness.check_targets(f"{title} without {name}", loom, model, cfg, wpath, inputs, tmp, want, got,
                                        drop=[name])
    return ok


def check_gpt2_small(loom, tmp, defines, batch, want, got):
    """check_targets on GPT-2 small (weights from `loom init --seed 1` with the defines) over
    `batch` random rows of 64 tokens and their next-token targets."""
    wpath = os.path.join(tmp, "gpt2.safetensors")
    harness.init_weights(loom, "gpt2.loom", defines, 1, wpath)
    rng = np.random.default_rng(64)
    stream = rng.integers(0, defines.get("vocab", 50257), (batch, 65))
    inputs = {"tokens": stream[:, :-1].astype(np.int32), "targets": stream[:, 1:].astype(np.int32)}
    return harness.check_targets(f"GPT-2 small {defines}", loom, "gpt2.loom", defines, wpath, inputs, tmp, want, got)


def is_sanitized(loom):
    """True when the loom binary links AddressSanitizer (a Debug/ASan build)."""
    try:
        with open(loom, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_cpu_models.py LOOM")
    loom = sys.argv[1]
    want, got = ("ref", ["--precision", "f32"]), ("cpu", ["--stats"])
    with tempfile.TemporaryDirectory(prefix="loom_cpu_") as tmp:
        ok = check_tiny_models(loom, tmp, want, got)

        # GPT-2 small, weights from `loom init --seed 1`, seq 64
        defines = {"seq": 64}
        if is_sanitized(loom) and os.environ.get("LOOM_TEST_FULL") != "1":
            defines["vocab"] = 2048
            defines["n_layer"] = 2
        ok &= check_gpt2_small(loom, tmp, defines, 1, want, got)
    if not ok:
        print("FAILED")
        sys.exit(1)
    print("all CPU model outputs match the reference")


if __name__ == "__main__":
    main()
