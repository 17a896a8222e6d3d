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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
import test_cpu_models  # noqa: E402


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
    want, got = ("cpu", []), ("cuda", [])
    with tempfile.TemporaryDirectory(prefix="loom_cuda_") as tmp:
        ok = test_cpu_models.check_tiny_models(loom, tmp, want, got)
        ok &= test_cpu_models.check_gpt2_small(loom, tmp, {"seq": 64, "batch": 2}, 2, want, got)
    if not ok:
        print("FAILED")
        sys.exit(1)
    print("all CUDA model outputs match the CPU backend")


if __name__ == "__main__":
    main()
