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
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tiny_bert  # noqa: E402
import test_tiny_gpt  # noqa: E402
import test_tiny_llama  # noqa: E402

REL = 1e-4


def run(loom, model, defines, wpath, ipath, opath, target, extra=()):
    cmd = [loom, "run", os.path.join(harness.REPO, "models", model)]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", wpath, "--inputs", ipath, "--outputs", opath, "--target", target]
    cmd += list(extra)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    for line in proc.stdout.splitlines():
        if line.startswith("cpu:"):
            print("   ", line)
    return harness.read_safetensors(opath), dt


def compare(name, got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        print(f"  {name}: shape {got.shape}, expected {want.shape} FAIL")
        return False
    err = np.abs(got - want)
    abs_err = float(err.max()) if err.size else 0.0
    rel_err = float((err / np.maximum(1.0, np.abs(want))).max()) if err.size else 0.0
    ok = bool(np.all(np.isfinite(got))) and rel_err <= REL
    print(f"  {name}: max abs err {abs_err:.2e}, max rel err {rel_err:.2e} (tol {REL:g} rel to max(1, |ref|)) "
          f"{'OK' if ok else 'FAIL'}")
    return ok


def check(title, loom, model, defines, weights_path, inputs, tmp, drop=()):
    """Runs ref and cpu on the same files and compares every output of ref."""
    ipath = os.path.join(tmp, "inputs.safetensors")
    harness.write_safetensors(ipath, {k: v for k, v in inputs.items() if k not in drop})
    ref, t_ref = run(loom, model, defines, weights_path, ipath, os.path.join(tmp, "ref.safetensors"), "ref",
                     ["--precision", "f32"])
    cpu, t_cpu = run(loom, model, defines, weights_path, ipath, os.path.join(tmp, "cpu.safetensors"), "cpu",
                     ["--stats"])
    print(f"{title}: ref {t_ref:.2f} s, cpu {t_cpu:.2f} s (whole command)")
    ok = set(ref) == set(cpu)
    if not ok:
        print(f"  outputs differ: ref {sorted(ref)}, cpu {sorted(cpu)} FAIL")
    for name in sorted(ref):
        if name in cpu:
            ok &= compare(name, cpu[name], ref[name])
    return ok


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
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_cpu_") as tmp:
        for title, model, cfg, w, inputs, optional in tiny_cases(tmp):
            wpath = os.path.join(tmp, "weights.safetensors")
            harness.write_safetensors(wpath, w)
            ok &= check(title, loom, model, cfg, wpath, inputs, tmp)
            for name in optional:
                ok &= check(f"{title} without {name}", loom, model, cfg, wpath, inputs, tmp, drop=[name])

        # GPT-2 small, weights from `loom init --seed 1`, seq 64
        defines = {"seq": 64}
        if is_sanitized(loom) and os.environ.get("LOOM_TEST_FULL") != "1":
            defines["vocab"] = 2048
            defines["n_layer"] = 2
        wpath = os.path.join(tmp, "gpt2.safetensors")
        cmd = [loom, "init", os.path.join(harness.REPO, "models", "gpt2.loom"), "--seed", "1", "-o", wpath]
        for k, v in defines.items():
            cmd += ["-D", f"{k}={v}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(f"FAILED: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
            sys.exit(1)
        vocab = defines.get("vocab", 50257)
        rng = np.random.default_rng(64)
        stream = rng.integers(0, vocab, (1, 65))
        inputs = {"tokens": stream[:, :-1].astype(np.int32), "targets": stream[:, 1:].astype(np.int32)}
        ok &= check(f"GPT-2 small {defines}", loom, "gpt2.loom", defines, wpath, inputs, tmp)
    if not ok:
        print("FAILED")
        sys.exit(1)
    print("all CPU model outputs match the reference")


if __name__ == "__main__":
    main()
