#!/usr/bin/env python3
"""first_step.py — how long a training job takes to reach its first step line: `loom train` of
GPT-2 small (its own init, batch 4 × seq 64, AdamW, 2 threads) against the same job in PyTorch
eager (a fresh Python process: import torch, GPT-2 small's params initialized N(0, 0.02), fused
AdamW, one step with clipping on a batch of the same file, then the line), wall time from
process start to the "step 1" line, interleaved rounds, medians. loom runs with its object
cache warm (its usual state after a first run) and cold (an empty $XDG_CACHE_HOME).

    /root/.cache/loom-peers/bin/python bench/first_step.py [--loom build/loom] [--rounds 3]

The venv is bench/cpu_peers.py's (PyTorch from PyPI). Say the load average with the figures:
the machine is shared, and first-touch page faults dominate a start-up on it."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCH_JOB = r"""
import sys, time
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
from torch_gpt2 import forward
torch.set_num_threads(2)
torch.manual_seed(1)
L, H, C, V, CTX, B, T = 12, 12, 768, 50257, 1024, 4, 64
shapes = {"wte.weight": (V, C), "wpe.weight": (CTX, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
for l in range(L):
    h = f"h.{l}."
    shapes.update({h + "ln_1.weight": (C,), h + "ln_1.bias": (C,), h + "attn.c_attn.weight": (C, 3 * C),
                   h + "attn.c_attn.bias": (3 * C,), h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
                   h + "ln_2.weight": (C,), h + "ln_2.bias": (C,), h + "mlp.c_fc.weight": (C, 4 * C),
                   h + "mlp.c_fc.bias": (4 * C,), h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,)})
params = {}
for k, s in shapes.items():
    t = torch.empty(s)
    if len(s) == 2:
        torch.nn.init.normal_(t, 0.0, 0.02)
    elif k.endswith("weight"):
        torch.nn.init.ones_(t)
    else:
        torch.nn.init.zeros_(t)
    params[k] = torch.nn.Parameter(t)
opt = torch.optim.AdamW(params.values(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
text = np.frombuffer(open(sys.argv[2], "rb").read(), dtype=np.uint8)
starts = np.random.default_rng(1).integers(0, len(text) - T - 1, B)
w = torch.from_numpy(np.stack([text[s:s + T + 1] for s in starts]).astype(np.int64))
x, y = w[:, :-1], w[:, 1:]
loss = F.cross_entropy(forward(params, x, L, H).view(-1, V), y.reshape(-1))
loss.backward()
torch.nn.utils.clip_grad_norm_(params.values(), 1.0, foreach=True)
opt.step()
print(f"step 1 | loss {loss.item():.4f}", flush=True)
"""


def until_line(cmd, prefix, env):
    """Seconds from starting cmd to its first stdout line starting with prefix (then it is killed)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in p.stdout:
        if line.startswith(prefix):
            dt = time.perf_counter() - t
            p.kill()
            p.wait()
            return dt, line.strip()
    p.wait()
    sys.exit(f"first_step.py: {cmd[0]} ended (status {p.returncode}) without a '{prefix}' line")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loom", default=os.path.join(ROOT, "build", "loom"))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    data = os.path.join(ROOT, "data", "tinyshakespeare.txt")
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", LOOM_NUM_THREADS="2")
    loom_cmd = ["stdbuf", "-oL", a.loom, "train", os.path.join(ROOT, "models", "gpt2.loom"), "-D", "batch=4", "-D",
                "seq=64", "--data", data, "--steps", "2", "--sample", "0", "--eval-every", "0", "--seed", "1"]
    torch_cmd = [sys.executable, "-c", TORCH_JOB, os.path.join(ROOT, "bench"), data]
    cold = tempfile.mkdtemp(prefix="loom-cold-cache-")
    until_line(loom_cmd, "step 1/", env)  # the warm cache filled
    times = {"loom (cache warm)": [], "loom (cache cold)": [], "torch eager": []}
    print(f"first_step: GPT-2 small, batch 4 x seq 64, AdamW, 2 threads; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for r in range(a.rounds):
        subprocess.run(["rm", "-rf", cold])
        os.makedirs(cold)
        runs = [("loom (cache warm)", loom_cmd, "step 1/", env),
                ("loom (cache cold)", loom_cmd, "step 1/", dict(env, XDG_CACHE_HOME=cold)),
                ("torch eager", torch_cmd, "step 1", env)]
        runs = runs[r % 3:] + runs[:r % 3]
        for name, cmd, prefix, e in runs:
            dt, line = until_line(cmd, prefix, e)
            times[name].append(dt)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()) +
              f"; load {os.getloadavg()[0]:.2f}", flush=True)
    subprocess.run(["rm", "-rf", cold])
    t_torch = statistics.median(times["torch eager"])
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:18s} median {m:6.2f} s (min {min(v):.2f}, max {max(v):.2f}); torch eager / this: {t_torch / m:.2f}")


if __name__ == "__main__":
    main()
