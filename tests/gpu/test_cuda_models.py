#!/usr/bin/env python3
"""test_cuda_models.py LOOM — whole models through `loom run --target cuda` (PTX kernels,
cuBLASLt GEMMs, the fused attention kernel) against the CPU backend (`--target cpu`), every
output compared with the max abs / rel error printed; tolerance |cuda - cpu| <= 1e-4 ·
max(1, |cpu|) elementwise.

Cases: the tiny GPT-2, LLaMA (grouped-query attention, rope) and BERT (padding mask) of
tests/models/test_cpu_models.py, with and without their optional targets, and GPT-2 small
(`loom init --seed 1`) at seq 64 and batch 2. Without a CUDA device (`loom devices` shows none):
prints "skipped: no CUDA device" and exits 0."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
import harness  # noqa: E402
import test_cpu_models  # noqa: E402


def check(title, loom, model, defines, wpath, inputs, tmp, drop=()):
    ipath = os.path.join(tmp, "inputs.safetensors")
    harness.write_safetensors(ipath, {k: v for k, v in inputs.items() if k not in drop})
    cpu, t_cpu = test_cpu_models.run(loom, model, defines, wpath, ipath, os.path.join(tmp, "cpu.safetensors"), "cpu")
    gpu, t_gpu = test_cpu_models.run(loom, model, defines, wpath, ipath, os.path.join(tmp, "cuda.safetensors"), "cuda")
    print(f"{title}: cpu {t_cpu:.2f} s, cuda {t_gpu:.2f} s (whole command)")
    ok = set(cpu) == set(gpu)
    if not ok:
        print(f"  outputs differ: cpu {sorted(cpu)}, cuda {sorted(gpu)} FAIL")
    for name in sorted(cpu):
        if name in gpu:
            ok &= test_cpu_models.compare(name, gpu[name], cpu[name])
    return ok


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_cuda_models.py LOOM")
    loom = sys.argv[1]
    dev = subprocess.run([loom, "devices"], capture_output=True, text=True).stdout
    if "cuda: device 0" not in dev:
        print("skipped: no CUDA device")
        print("".join(line + "\n" for line in dev.splitlines() if line.startswith("cuda")), end="")
        return
    print(dev, end="")
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_cuda_") as tmp:
        for title, model, cfg, w, inputs, optional in test_cpu_models.tiny_cases(tmp):
            wpath = os.path.join(tmp, "weights.safetensors")
            harness.write_safetensors(wpath, w)
            ok &= check(title, loom, model, cfg, wpath, inputs, tmp)
            for name in optional:
                ok &= check(f"{title} without {name}", loom, model, cfg, wpath, inputs, tmp, drop=[name])
        defines = {"seq": 64, "batch": 2}
        wpath = os.path.join(tmp, "gpt2.safetensors")
        cmd = [loom, "init", os.path.join(harness.REPO, "models", "gpt2.loom"), "--seed", "1", "-o", wpath]
        for k, v in defines.items():
            cmd += ["-D", f"{k}={v}"]
        subprocess.run(cmd, check=True, capture_output=True)
        rng = np.random.default_rng(64)
        stream = rng.integers(0, 50257, (2, 65))
        inputs = {"tokens": stream[:, :-1].astype(np.int32), "targets": stream[:, 1:].astype(np.int32)}
        ok &= check(f"GPT-2 small {defines}", loom, "gpt2.loom", defines, wpath, inputs, tmp)
    if not ok:
        print("FAILED")
        sys.exit(1)
    print("all CUDA model outputs match the CPU backend")


if __name__ == "__main__":
    main()
