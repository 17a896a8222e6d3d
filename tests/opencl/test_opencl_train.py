#!/usr/bin/env python3
"""test_opencl_train.py LOOM [TARGET] — `loom train --target opencl` against `--target cpu`.

Five AdamW steps of GPT-2 tiny on the first 3000 characters of tinyshakespeare, same seed, on
both targets (the OpenCL programs follow the host buffers: params, optimizer state and batches
are uploaded before each run). Every step's loss and gradient norm, and the final validation
loss, from the --log CSV (6 decimals), must agree within 1e-4 relative; the max errors are
printed. TARGET (default $LOOM_TEST_OPENCL_TARGET or "opencl") picks the device; no OpenCL
platform prints "skipped"."""
import csv
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402

CFG = {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 1, "n_head": 4, "batch": 4, "seq": 16}
TOL = 1e-4


def train(loom, target, data, log):
    cmd = [loom, "train", os.path.join(REPO, "models", "gpt2.loom")]
    for k, v in CFG.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--data", data, "--steps", "5", "--seed", "3", "--lr", "3e-3", "--warmup", "1", "--sample", "0",
            "--eval-batches", "2", "--log", log, "--target", target]
    proc = harness.run_proc(cmd, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    with open(log) as f:
        return list(csv.DictReader(f))


def main():
    args = harness.opencl_args("test_opencl_train.py")
    if args is None:
        return
    loom, target = args
    with tempfile.TemporaryDirectory(prefix="loom_ocl_train_") as tmp:
        data = os.path.join(tmp, "text.txt")
        with open(os.path.join(REPO, "data", "tinyshakespeare.txt")) as f:
            text = f.read()[:3000]
        with open(data, "w") as f:
            f.write(text)
        want = train(loom, "cpu", data, os.path.join(tmp, "cpu.csv"))
        got = train(loom, target, data, os.path.join(tmp, "ocl.csv"))
    ok = len(want) == len(got) == 5
    worst = {"loss": 0.0, "grad_norm": 0.0, "val_loss": 0.0}
    for w, g in zip(want, got):
        for key in worst:
            if not w[key] and not g[key]:
                continue
            a, b = float(g[key]), float(w[key])
            rel = abs(a - b) / max(abs(b), 1e-30)
            worst[key] = max(worst[key], rel)
            if rel > TOL:
                ok = False
                print(f"step {w['step']} {key}: {target} {a} cpu {b} (rel {rel:.2e}) FAIL")
        print(f"step {w['step']}: loss cpu {w['loss']} {target} {g['loss']}; norm cpu {w['grad_norm']} "
              f"{target} {g['grad_norm']}")
    print("max relative errors: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + f" (tolerance {TOL})")
    if not ok:
        print("FAILED")
        sys.exit(1)
    print(f"5 training steps on {target} match the CPU backend")


if __name__ == "__main__":
    main()
