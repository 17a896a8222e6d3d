#!/usr/bin/env python3
"""test_cuda_jobs.py LOOM [TARGET] — the jobs of a device target against `--target cpu`:

  1. training: N AdamW steps (default 50, $LOOM_TEST_TRAIN_STEPS) of a tiny GPT-2 on the first
     3000 characters of tinyshakespeare, same seed, on TARGET and on the CPU: every step's loss
     and gradient norm (the --log CSV) within 1e-3 relative of the CPU's (fp32);
  2. generation: greedy `loom generate --target TARGET` (the KV cache on the device)
     writes the CPU's tokens (with the KV cache) for 24 steps of a tiny GPT-2 with GPT-2's
     vocabulary, and logits within 1e-3 · max(1, |cpu|);
  3. executables: `loom build --target TARGET` of the tiny GPT-2 writes the outputs of
     `loom run --target TARGET`, bit for bit. On a machine that cannot build (the GPU machine
     has no LLVM): $LOOM_TEST_EXE, an executable built elsewhere with
     `test_cuda_jobs.py LOOM --build-exe PATH [TARGET]` (tools/devpack.sh does), or "skipped".

TARGET: cuda (default) or opencl[:P[:D]]. Without that device (`loom devices`): prints
"skipped: no CUDA device" (or "no OpenCL platform") and exits 0. Each check prints its max
errors and OK or FAIL; the last line is "PASSED" or "FAILED" (exit 1)."""
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "models"))
import harness  # noqa: E402
import test_generate  # noqa: E402
import test_cpu_models as cm  # noqa: E402

TRAIN_CFG = {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 2, "n_head": 4, "batch": 4, "seq": 16}
TRAIN_TOL = 1e-3
GEN_TOL = 1e-3
GEN_STEPS = 24


def sh(cmd, timeout=600):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def device_present(loom, target):
    dev = subprocess.run([loom, "devices"], capture_output=True, text=True)
    text = dev.stdout + dev.stderr
    if target.startswith("cuda"):
        return "cuda: device 0" in text, "no CUDA device"
    return "opencl:" in dev.stdout and "no OpenCL platform" not in text, "no OpenCL platform"


def train(loom, target, data, log, steps):
    cmd = [loom, "train", os.path.join(REPO, "models", "gpt2.loom")]
    for k, v in TRAIN_CFG.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--data", data, "--steps", str(steps), "--seed", "3", "--lr", "3e-3", "--warmup", "2", "--sample", "0",
            "--eval-batches", "2", "--log", log, "--target", target]
    sh(cmd)
    with open(log) as f:
        return list(csv.DictReader(f))


def check_train(loom, target, tmp):
    steps = int(os.environ.get("LOOM_TEST_TRAIN_STEPS", "50"))
    data = os.path.join(tmp, "text.txt")
    with open(os.path.join(REPO, "data", "tinyshakespeare.txt")) as f:
        text = f.read()[:3000]
    with open(data, "w") as f:
        f.write(text)
    want = train(loom, "cpu", data, os.path.join(tmp, "cpu.csv"), steps)
    got = train(loom, target, data, os.path.join(tmp, "dev.csv"), steps)
    ok = len(want) == len(got) == steps
    worst = {"loss": 0.0, "grad_norm": 0.0}
    for w, g in zip(want, got):
        for key in worst:
            a, b = float(g[key]), float(w[key])
            rel = abs(a - b) / max(abs(b), 1e-30)
            worst[key] = max(worst[key], rel)
            if not rel <= TRAIN_TOL:
                ok = False
                print(f"  step {w['step']} {key}: {target} {a} cpu {b} (rel {rel:.2e}) FAIL")
    first, last = (float(want[0]["loss"]), float(want[-1]["loss"])) if want else (0.0, 0.0)
    if not last < first:  # a curve that does not fall tests little
        ok = False
        print(f"  the CPU's loss did not fall ({first} -> {last}) FAIL")
    print(f"training, {len(got)} of {steps} steps on {target}: loss {first:.4f} -> {last:.4f} (cpu); max relative "
          f"errors loss {worst['loss']:.2e}, grad norm {worst['grad_norm']:.2e} (tol {TRAIN_TOL:g}) "
          f"{'OK' if ok else 'FAIL'}")
    return ok


def check_generate(loom, target, tmp):
    wpath = os.path.join(tmp, "gen.safetensors")
    harness.write_safetensors(wpath, test_generate.weights(7))
    prompt = "The quick brown fox"
    ids_c, lg_c, out_c = test_generate.generate(loom, wpath, prompt, GEN_STEPS, os.path.join(tmp, "c.bin"),
                                                "--temperature", "0")
    ids_d, lg_d, out_d = test_generate.generate(loom, wpath, prompt, GEN_STEPS, os.path.join(tmp, "d.bin"),
                                                "--temperature", "0", "--target", target)
    same = ids_c.shape == ids_d.shape and bool((ids_c == ids_d).all())
    err = (float((np.abs(lg_d.astype(np.float64) - lg_c) / np.maximum(1.0, np.abs(lg_c))).max())
           if lg_c.shape == lg_d.shape else float("inf"))
    distinct = len(set(ids_c.tolist()))
    ok = same and out_c == out_d and err <= GEN_TOL and len(ids_c) == GEN_STEPS and distinct >= 4
    print(f"greedy generation on {target}: {len(ids_d)} tokens ({distinct} distinct), tokens "
          f"{'equal' if same else 'DIFFER'}, text {'equal' if out_c == out_d else 'DIFFERS'}, logits max rel err "
          f"{err:.2e} (tol {GEN_TOL:g}) {'OK' if ok else 'FAIL'}")
    if not same and ids_c.shape == ids_d.shape:
        k = int(np.argmax(ids_c != ids_d))
        print(f"  first difference at step {k}: cpu {ids_c[k:k + 4]} {target} {ids_d[k:k + 4]}")
    return ok


def tiny_gpt2(tmp):
    title, model, cfg, w, inputs, optional = cm.tiny_cases(tmp)[0]
    assert model == "gpt2.loom"
    return cfg, w, inputs


def build_exe(loom, target, cfg, path):
    defines = [x for k, v in cfg.items() for x in ("-D", f"{k}={v}")]
    return sh([loom, "build", os.path.join(REPO, "models", "gpt2.loom"), *defines, "--target", target, "-o", path]).strip()


def check_exe(loom, target, tmp):
    cfg, w, inputs = tiny_gpt2(tmp)
    exe = os.environ.get("LOOM_TEST_EXE")
    if exe:
        print(f"executable: {exe} (built elsewhere)")
    else:
        exe = os.path.join(tmp, "model_exe")
        proc = subprocess.run([loom, "build", os.path.join(REPO, "models", "gpt2.loom"),
                               *[x for k, v in cfg.items() for x in ("-D", f"{k}={v}")], "--target", target, "-o", exe],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"executable: skipped: loom build cannot build here ({why}); set LOOM_TEST_EXE")
            return True
    wpath, ipath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "i.safetensors")
    harness.write_safetensors(wpath, w)
    harness.write_safetensors(ipath, inputs)
    opath = os.path.join(tmp, "exe.safetensors")
    sh([exe, "--weights", wpath, "--inputs", ipath, "--outputs", opath])
    got = harness.read_safetensors(opath)
    run, _ = harness.run_target(loom, "gpt2.loom", cfg, wpath, ipath, os.path.join(tmp, "run.safetensors"), target)
    ok = set(got) == set(run) == {"logits", "loss"}
    for name in sorted(run):
        a, b = np.asarray(got.get(name), np.float64), np.asarray(run[name], np.float64)
        same = a.shape == b.shape and np.array_equal(a, b)
        print(f"executable vs loom run --target {target}: {name} {'bit-identical OK' if same else 'DIFFERS FAIL'}")
        ok &= same
    return ok


def main():
    args = sys.argv[1:]
    build_to = None
    if "--build-exe" in args:
        i = args.index("--build-exe")
        build_to = args[i + 1]
        del args[i:i + 2]
    if len(args) not in (1, 2):
        sys.exit("usage: test_cuda_jobs.py LOOM [TARGET]  |  test_cuda_jobs.py LOOM --build-exe PATH [TARGET]")
    loom = args[0]
    target = args[1] if len(args) == 2 else "cuda"
    if build_to:  # on the development machine, for a GPU machine that cannot build
        with tempfile.TemporaryDirectory(prefix="loom_jobs_") as tmp:
            print(build_exe(loom, target, tiny_gpt2(tmp)[0], build_to))
        return 0
    present, why = device_present(loom, target)
    if not present:
        print(f"skipped: {why}")
        return 0
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_jobs_") as tmp:
        ok &= check_train(loom, target, tmp)
        ok &= check_generate(loom, target, tmp)
        ok &= check_exe(loom, target, tmp)
    print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
