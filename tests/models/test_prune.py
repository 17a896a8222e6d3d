#!/usr/bin/env python3
"""test_prune.py LOOM — `loom prune` and `loom train --mask` (docs/compression.md).

1. `loom prune --sparsity 0.5` of a tiny GPT-2's params (`loom init`): each GEMM weight (c_attn,
   c_proj, c_fc) has exactly floor(0.5 · numel) zeros, and they are its smallest magnitudes
   (every kept |w| >= every pruned |w|); every other tensor (wte, wpe, norms, biases) is copied
   bit for bit. `--pattern 2:4`: along the reduction axis (rows: Conv1D weights are [in, out])
   every 4 consecutive weights keep exactly their 2 largest magnitudes. Checked with NumPy.
2. `loom train --mask P` (starting from P) for 6 AdamW steps with weight decay: in the final
   checkpoint every masked element is still exactly 0 (its AdamW moments too), the sparsity is
   exactly the mask's, and the unmasked weights did change (training ran).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MODEL = os.path.join(harness.REPO, "models", "gpt2.loom")
CFG = ["-D", "n_layer=2", "-D", "d_model=32", "-D", "n_head=4", "-D", "vocab=256", "-D", "seq=32", "-D", "batch=4"]
GEMM = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\n{p.stdout}{p.stderr}")
        sys.exit(1)
    return p.stdout


def gemm(name):
    return name.endswith(GEMM)


def check_sparsity(w, p):
    ok = True
    for k, v in w.items():
        if not gemm(k):
            if not np.array_equal(p[k], v):
                print(f"  sparsity: {k} changed FAIL")
                ok = False
            continue
        q = p[k]
        zeros = q == 0
        want = int(np.floor(0.5 * v.size))
        kept, pruned = np.abs(v[~zeros]), np.abs(v[zeros])
        good = zeros.sum() == want and np.array_equal(q[~zeros], v[~zeros]) and kept.min() >= pruned.max()
        ok &= good
        if not good:
            print(f"  sparsity: {k}: {zeros.sum()} zeros of {v.size} (want {want}) FAIL")
    print(f"--sparsity 0.5: exact counts, smallest magnitudes, other tensors unchanged {'OK' if ok else 'FAIL'}")
    return ok


def check_pattern(w, p):
    ok = True
    for k, v in w.items():
        if not gemm(k):
            ok &= bool(np.array_equal(p[k], v))
            continue
        R, C = v.shape  # [in, out]: blocks of 4 down each column
        blocks_v = v.reshape(R // 4, 4, C).transpose(0, 2, 1).reshape(-1, 4)
        blocks_p = p[k].reshape(R // 4, 4, C).transpose(0, 2, 1).reshape(-1, 4)
        order = np.argsort(-np.abs(blocks_v), axis=1, kind="stable")
        keep = np.zeros_like(blocks_v, dtype=bool)
        np.put_along_axis(keep, order[:, :2], True, axis=1)
        good = np.array_equal(blocks_p[keep], blocks_v[keep]) and np.all(blocks_p[~keep] == 0) and \
            np.all((blocks_p != 0).sum(axis=1) <= 2)
        ok &= bool(good)
        if not good:
            print(f"  2:4: {k} FAIL")
    print(f"--pattern 2:4: the 2 largest of every 4 along the reduction kept {'OK' if ok else 'FAIL'}")
    return ok


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_prune.py LOOM")
    loom = sys.argv[1]
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_prune_") as tmp:
        wpath, ppath, p24 = (os.path.join(tmp, n) for n in ("w.safetensors", "p.safetensors", "p24.safetensors"))
        run([loom, "init", MODEL, *CFG, "--seed", "5", "-o", wpath])
        w = harness.read_safetensors(wpath)
        print(run([loom, "prune", wpath, "--sparsity", "0.5", "-o", ppath]).strip())
        ok &= check_sparsity(w, harness.read_safetensors(ppath))
        print(run([loom, "prune", wpath, "--pattern", "2:4", "-o", p24]).strip())
        ok &= check_pattern(w, harness.read_safetensors(p24))

        ck = os.path.join(tmp, "ck")
        out = run([loom, "train", MODEL, *CFG, "--data", os.path.join(harness.REPO, "data", "tinyshakespeare.txt"),
                   "--steps", "6", "--lr", "1e-2", "--warmup", "0", "--weight-decay", "0.1", "--eval-every", "0",
                   "--sample", "0", "--mask", p24, "--checkpoint", ck])
        print([line for line in out.splitlines() if line.startswith("mask")][0])
        p = harness.read_safetensors(p24)
        state = [f for f in os.listdir(ck) if f.startswith("state-")][0]
        s = harness.read_safetensors(os.path.join(ck, state))
        masked = changed = total = 0
        good = True
        for k, v in p.items():
            if not gemm(k):
                continue
            zeros = v == 0
            after = s[k]
            m, vv = s.get("adam.m/" + k), s.get("adam.v/" + k)
            good &= bool(np.all(after[zeros] == 0) and np.all(m[zeros] == 0) and np.all(vv[zeros] == 0))
            good &= int((after == 0).sum()) == int(zeros.sum())
            masked += int(zeros.sum())
            total += v.size
            changed += int((after[~zeros] != v[~zeros]).sum())
        good &= changed > 0.9 * (total - masked)
        print(f"train --mask 2:4, 6 steps: {masked} of {total} held at exactly 0 (moments too), "
              f"{changed} of {total - masked} others changed {'OK' if good else 'FAIL'}")
        ok &= good
    print("prune:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
