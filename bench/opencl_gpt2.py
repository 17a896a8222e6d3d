#!/usr/bin/env python3
"""opencl_gpt2.py LOOM [--batch B] [--seq T] [--runs N] [--targets cpu,opencl,...]

GPT-2 small forward (124M parameters, `loom init --seed 1`, random tokens, no targets: logits
only) on each target in the same run, timed by `loom run --stats` (LOOM_STATS_RUNS forwards
after the first; the median is reported, weights and inputs already on the device for GPU
targets). Prints one line per target and the ratio to the first. Example (this machine):
    python3 bench/opencl_gpt2.py build/loom --batch 1 --seq 64 --targets cpu,opencl
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "models"))
import harness  # noqa: E402



def median_ms(target, out):
    """The median forward time in ms from --stats output."""
    if target == "cpu":
        m = re.search(r"cpu: compile [\d.]+ ms, forward [\d.]+ ms \(first\), ([\d.]+) ms", out)
    else:
        m = re.search(r"more runs: median ([\d.]+) ms", out)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loom")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--targets", default="cpu,opencl")
    ap.add_argument("--layers", type=int, default=12)
    a = ap.parse_args()
    model = os.path.join(REPO, "models", "gpt2.loom")
    defines = ["-D", f"batch={a.batch}", "-D", f"seq={a.seq}", "-D", f"n_layer={a.layers}"]
    env = dict(os.environ, LOOM_STATS_RUNS=str(a.runs))
    with tempfile.TemporaryDirectory(prefix="loom_bench_") as tmp:
        w = os.path.join(tmp, "w.safetensors")
        subprocess.run([a.loom, "init", model, "--seed", "1", "-o", w] + defines, check=True, capture_output=True)
        tokens = np.random.default_rng(1).integers(0, 50257, (a.batch, a.seq)).astype(np.int32)
        i = os.path.join(tmp, "in.safetensors")
        harness.write_safetensors(i, {"tokens": tokens})
        print(f"GPT-2 small forward, batch {a.batch}, seq {a.seq}, {a.layers} layers; median of {a.runs} runs")
        first = None
        for t in a.targets.split(","):
            proc = subprocess.run([a.loom, "run", model] + defines + ["--weights", w, "--inputs", i, "--outputs",
                                  os.path.join(tmp, "out.safetensors"), "--target", t, "--stats"],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{t:>14}: failed\n{proc.stdout}{proc.stderr}")
                continue
            ms = median_ms(t.split(":")[0], proc.stdout)
            first = first or ms
            detail = [ln for ln in proc.stdout.splitlines() if "profiled" in ln or "compile" in ln]
            print(f"{t:>14}: {ms:9.2f} ms  ({ms / first:.2f}x the first)")
            for ln in detail:
                print(f"{'':>16}{ln}")


if __name__ == "__main__":
    main()
