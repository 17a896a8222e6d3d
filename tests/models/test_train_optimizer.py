"""test_train_optimizer.py — `loom train`'s optimizer (passes/optimizer.c, graph IR run on the
CPU backend) against an independent NumPy implementation, on GPT-2 tiny.

loom trains 10 steps and, with --trace, writes the gradient each update received. This test
starts from the same initial params (`loom init`, same seed), recomputes in float64 NumPy the
learning-rate schedule (linear warmup, cosine to min-lr), the global gradient norm, clipping and
AdamW (decoupled weight decay on rank >= 2 params, bias correction) or SGD with momentum (L2
weight decay), applies the 10 updates to the traced gradients, and compares every param and
optimizer state tensor of loom's final checkpoint, and the logged gradient norms.
Tolerance: max |loom - numpy| / max |numpy| <= 1e-4 per tensor (loom computes in f32).
Also: the loss at init is within 0.1 of ln(vocab), and clipping was active in the clipped run.

Usage: test_train_optimizer.py LOOM"""
import csv
import glob
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, compare, read_safetensors  # noqa: E402

CFG = {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 2, "n_head": 4, "batch": 4, "seq": 16}
STEPS, SEED = 10, 7


def defines():
    out = []
    for k, v in CFG.items():
        out += ["-D", f"{k}={v}"]
    return out


def lr_at(s, lr, min_lr, warmup, steps):
    if s <= warmup:
        return lr * s / warmup
    p = (s - warmup) / (steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))


def reference(params, grads, o):
    """The optimizer in float64: returns (params, state, norms) after len(grads) steps."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    norms = []
    for s, g in enumerate(grads, start=1):
        g = {k: g["grad/" + k].astype(np.float64) for k in p}
        norm = math.sqrt(sum(float(np.sum(x * x)) for x in g.values()))
        norms.append(norm)
        if o["clip"] > 0:
            c = min(1.0, o["clip"] / (norm + 1e-6))
            g = {k: x * c for k, x in g.items()}
        lr = lr_at(s, o["lr"], o["min_lr"], o["warmup"], STEPS)
        for k in p:
            wd = o["wd"] if p[k].ndim >= 2 else 0.0
            if o["kind"] == "adamw":
                b1, b2 = o["beta1"], o["beta2"]
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v2[k] = b2 * v2[k] + (1 - b2) * g[k] * g[k]
                mhat = m[k] / (1 - b1 ** s)
                vhat = v2[k] / (1 - b2 ** s)
                p[k] = p[k] * (1 - lr * wd) - lr * mhat / (np.sqrt(vhat) + o["eps"])
            else:
                d = g[k] + wd * p[k]
                m[k] = o["momentum"] * m[k] + d
                p[k] = p[k] - lr * m[k]
    if o["kind"] == "adamw":
        state = {**{"adam.m/" + k: x for k, x in m.items()}, **{"adam.v/" + k: x for k, x in v2.items()}}
    else:
        state = {"sgd.buf/" + k: x for k, x in m.items()}
    return p, state, norms


def run_case(loom, data, tmp, name, o, args):
    ck, tr, log = (os.path.join(tmp, f"{name}.{x}") for x in ("ckpt", "trace", "csv"))
    cmd = [loom, "train", os.path.join(REPO, "models", "gpt2.loom"), *defines(), "--data", data,
           "--steps", str(STEPS), "--seed", str(SEED), "--sample", "0", "--checkpoint", ck, "--trace", tr,
           "--log", log, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return False
    ok = True
    first = [l for l in proc.stdout.splitlines() if l.startswith("loss at init")]
    init_loss = float(first[0].split()[3]) if first else float("nan")
    lnv = math.log(CFG["vocab"])
    good = abs(init_loss - lnv) < 0.1
    print(f"{name}: loss at init {init_loss:.4f}, ln(vocab) {lnv:.4f} (tol 0.1) {'OK' if good else 'FAIL'}")
    ok &= good

    init = os.path.join(tmp, "init.safetensors")
    if not os.path.exists(init):
        subprocess.run([loom, "init", os.path.join(REPO, "models", "gpt2.loom"), *defines(), "--seed", str(SEED),
                        "-o", init], check=True)
    params = read_safetensors(init)
    grads = [read_safetensors(f) for f in sorted(glob.glob(os.path.join(tr, "grads-*.safetensors")))]
    if len(grads) != STEPS:
        print(f"{name}: {len(grads)} traced steps, expected {STEPS} FAIL")
        return False
    want_p, want_s, norms = reference(params, grads, o)
    got = read_safetensors(glob.glob(os.path.join(ck, "state-*.safetensors"))[0])
    if set(got) != set(want_p) | set(want_s):
        print(f"{name}: checkpoint tensors {sorted(set(got) ^ (set(want_p) | set(want_s)))[:5]} differ FAIL")
        return False
    worst = 0.0
    for k, want in {**want_p, **want_s}.items():
        g = got[k].astype(np.float64)
        scale = float(np.abs(want).max()) or 1.0
        err = float(np.abs(g - want).max()) / scale
        if err > worst:
            worst, worst_k = err, k
        if err > 1e-4:
            ok &= compare(f"{name}: {k}", g, want, rel_tol=1e-4)
    print(f"{name}: {len(want_p)} params + {len(want_s)} state tensors after {STEPS} steps, worst max rel err "
          f"{worst:.2e} ({worst_k}) (tol 1e-4) {'OK' if worst <= 1e-4 else 'FAIL'}")
    with open(log) as f:
        logged = [float(r["grad_norm"]) for r in csv.DictReader(f)]
    ok &= compare(f"{name}: grad norms", np.array(logged), np.array(norms), rel_tol=1e-4)
    if o["clip"] > 0:
        clipped = sum(n > o["clip"] for n in norms)
        print(f"{name}: clipping active on {clipped}/{STEPS} steps (norm > {o['clip']}) "
              f"{'OK' if clipped > 0 else 'FAIL'}")
        ok &= clipped > 0
    return ok


def main():
    loom = sys.argv[1]
    with open(os.path.join(REPO, "data", "tinyshakespeare.txt"), "rb") as f:
        text = f.read()[:6000]
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_train_opt_") as tmp:
        data = os.path.join(tmp, "data.txt")
        with open(data, "wb") as f:
            f.write(text)
        adamw = dict(kind="adamw", lr=1e-2, min_lr=1e-3, warmup=3, wd=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                     clip=0.5)
        ok &= run_case(loom, data, tmp, "adamw", adamw,
                       ["--lr", "1e-2", "--min-lr", "1e-3", "--warmup", "3", "--weight-decay", "0.1",
                        "--beta1", "0.9", "--beta2", "0.95", "--eps", "1e-8", "--clip", "0.5"])
        sgd = dict(kind="sgd", lr=0.3, min_lr=0.03, warmup=2, wd=0.01, momentum=0.9, clip=0)
        ok &= run_case(loom, data, tmp, "sgd", sgd,
                       ["--optimizer", "sgd", "--lr", "0.3", "--warmup", "2", "--weight-decay", "0.01",
                        "--momentum", "0.9", "--clip", "0"])
    print("test_train_optimizer:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
