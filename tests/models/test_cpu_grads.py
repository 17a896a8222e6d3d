#!/usr/bin/env python3
"""test_cpu_grads.py LOOM — a training step (forward + backward: `--passes=dce,cse,autodiff,fuse`)
through `loom run --target cpu`, against the reference interpreter running the same autodiff
graph (`--target ref --precision f32 --passes=dce,cse,autodiff`): the loss and EVERY parameter
gradient compared, max abs / rel error printed; tolerance |cpu - ref| <= 1e-4 · max|ref| per
tensor (relative to the tensor's largest magnitude, so that small gradients are not let
through by an absolute floor). The first case's CPU step runs again with the same thread count
and must be bit-identical (no atomics, fixed partitioning: resuming training reproduces it).

Cases: tiny GPT-2 (tied LM head: embedding_grad + GEMM, attention_grad over the strided qkv
buffer, layernorm_grad, gelu's unary_grad, slice/concat gradients) with the perturbed weights of
test_tiny_gpt.py and some ignored targets; tiny LLaMA (GQA attention_grad, rope with negated
positions, rmsnorm_grad, silu composition) with test_tiny_llama.py's weights; and GPT-2 at the
training demo's widths with `loom init` weights (not in sanitizer builds, to stay within a few
seconds there). BERT has no loss output: nothing to train."""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tiny_gpt  # noqa: E402
import test_tiny_llama  # noqa: E402

REL = 1e-4
TRAIN = "dce,cse,autodiff"


def run(loom, model, defines, wpath, ipath, opath, extra):
    cmd = [loom, "run", os.path.join(harness.REPO, "models", model)]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", wpath, "--inputs", ipath, "--outputs", opath] + extra
    env = dict(os.environ, LOOM_NUM_THREADS="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    for line in proc.stdout.splitlines():
        if line.startswith("cpu:"):
            print("   ", line)
    with open(opath, "rb") as f:
        raw = f.read()
    return harness.read_safetensors(opath), raw


def check(title, loom, model, defines, weights, inputs, rerun=False):
    """weights: {name: array} or a path written by `loom init`. Returns True when every
    output is within tolerance (and, with rerun, a second CPU run is bit-identical)."""
    print(f"{title} {defines}:")
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_grads_") as tmp:
        wpath = weights if isinstance(weights, str) else os.path.join(tmp, "w.safetensors")
        if not isinstance(weights, str):
            harness.write_safetensors(wpath, weights)
        ipath = os.path.join(tmp, "in.safetensors")
        harness.write_safetensors(ipath, inputs)
        ref, _ = run(loom, model, defines, wpath, ipath, os.path.join(tmp, "ref.safetensors"),
                     ["--target", "ref", "--precision", "f32", f"--passes={TRAIN}"])
        got, raw1 = run(loom, model, defines, wpath, ipath, os.path.join(tmp, "cpu1.safetensors"),
                        ["--target", "cpu", f"--passes={TRAIN},fuse", "--stats"])
        raw2 = raw1
        if rerun:
            _, raw2 = run(loom, model, defines, wpath, ipath, os.path.join(tmp, "cpu2.safetensors"),
                          ["--target", "cpu", f"--passes={TRAIN},fuse"])
        grads = [k for k in ref if k.startswith("grad/")]
        if "loss" not in ref or not grads:
            print("  the reference has no loss or no gradients FAIL")
            return False
        worst = (0.0, "")
        for name in ["loss"] + grads:
            if name not in got:
                print(f"  {name}: missing from the cpu outputs FAIL")
                ok = False
                continue
            g = np.asarray(got[name], dtype=np.float64)
            r = np.asarray(ref[name], dtype=np.float64)
            if g.shape != r.shape:
                print(f"  {name}: shape {g.shape}, expected {r.shape} FAIL")
                ok = False
                continue
            err = float(np.abs(g - r).max()) if r.size else 0.0
            scale = float(np.abs(r).max()) if r.size else 0.0
            rel = err / scale if scale > 0 else err
            good = bool(np.all(np.isfinite(g))) and rel <= REL
            worst = max(worst, (rel, name))
            if not good or name == "loss":
                print(f"  {name}: max abs err {err:.2e}, max rel err {rel:.2e} (tol {REL:g}) "
                      f"{'OK' if good else 'FAIL'}")
            ok &= good
        print(f"  {len(grads)} gradients + loss: worst rel err {worst[0]:.2e} ({worst[1]})")
        if rerun:
            same = raw1 == raw2
            print(f"  second cpu run bit-identical: {'yes' if same else 'NO'}")
            ok &= same
    print(f"{title}: {'OK' if ok else 'FAILED'}")
    return ok


def is_sanitized(loom):
    with open(loom, "rb") as f:
        return b"__asan_init" in f.read()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_cpu_grads.py LOOM")
    loom = sys.argv[1]
    ok = True

    rng = np.random.default_rng(1234)
    cfg = test_tiny_gpt.CFG
    B, T, V = cfg["batch"], cfg["seq"], cfg["vocab"]
    weights = test_tiny_gpt.make_weights(rng)
    stream = rng.integers(0, V, (B, T + 1))
    tg = stream[:, 1:].astype(np.int32)
    tg[0, 3] = tg[1, T - 1] = -1
    ok &= check("tiny GPT-2", loom, "gpt2.loom", cfg, weights,
                {"tokens": stream[:, :T].astype(np.int32), "targets": tg}, rerun=True)

    rng = np.random.default_rng(4321)
    cfg = test_tiny_llama.CFG
    B, T, V = cfg["batch"], cfg["seq"], cfg["vocab"]
    weights = test_tiny_llama.make_weights(rng)
    stream = rng.integers(0, V, (B, T + 1))
    tg = stream[:, 1:].astype(np.int32)
    tg[1, 0] = -1
    ok &= check("tiny LLaMA", loom, "llama.loom", cfg, weights,
                {"tokens": stream[:, :T].astype(np.int32), "targets": tg})

    if is_sanitized(loom):  # a few seconds per case under AddressSanitizer: the tiny ones suffice
        print("GPT-2 at the demo widths: skipped in a sanitizer build")
        print("OK" if ok else "FAILED")
        sys.exit(0 if ok else 1)
    cfg = dict(n_layer=2, d_model=64, n_head=4, vocab=256, seq=32, batch=2)
    with tempfile.TemporaryDirectory(prefix="loom_grads_init_") as tmp:
        wpath = os.path.join(tmp, "init.safetensors")
        cmd = [loom, "init", os.path.join(harness.REPO, "models", "gpt2.loom")]
        for k, v in cfg.items():
            cmd += ["-D", f"{k}={v}"]
        proc = subprocess.run(cmd + ["-o", wpath, "--seed", "7"], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"FAILED: {' '.join(cmd)}\n{proc.stderr}")
        rng = np.random.default_rng(99)
        stream = rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"] + 1))
        ok &= check("GPT-2 (demo widths, loom init)", loom, "gpt2.loom", cfg, wpath,
                    {"tokens": stream[:, :-1].astype(np.int32), "targets": stream[:, 1:].astype(np.int32)})

    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
