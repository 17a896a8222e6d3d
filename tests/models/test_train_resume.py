"""test_train_resume.py — `loom train` checkpoints: a run killed with SIGKILL and resumed prints
exactly the losses of the uninterrupted run; accumulation over micro-batches gives the update of
one big batch.

1. Kill/resume: run A trains 12 steps of GPT-2 tiny (--checkpoint, --save-every 3). Run B is the
   same command, killed with SIGKILL as soon as it prints step 7 (the checkpoint of step 6 is
   written before step 7 starts), then resumed with --resume; every step line B prints after
   the resume must equal A's line for that step in the loss, lr and norm fields (as text), the
   final validation loss must match, and the final checkpoints must hold bit-identical tensors.
2. Accumulation: --accum 4 with batch 2 against --accum 1 with batch 8 (the loader draws the
   same rows: row b of micro-batch m of step s is row 2m + b of the big batch), 4 AdamW steps and
   4 SGD steps: every param within 1e-5 (max abs error).

Usage: test_train_resume.py LOOM"""
import glob
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, read_safetensors  # noqa: E402

MODEL = os.path.join(REPO, "models", "gpt2.loom")


def cfg(batch):
    out = []
    for k, v in {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 1, "n_head": 4, "batch": batch,
                 "seq": 16}.items():
        out += ["-D", f"{k}={v}"]
    return out


def fields(line):
    """'step 5/12 | loss 2.3 | lr 1e-3 | norm 0.5 | ...' -> ('step 5/12', 'loss 2.3', 'lr ..', 'norm ..')"""
    return tuple(p.strip() for p in line.split("|")[:4])


def steps_of(text):
    return {fields(l)[0]: fields(l) for l in text.splitlines() if l.startswith("step ")}


def state(ck):
    files = glob.glob(os.path.join(ck, "state-*.safetensors"))
    return read_safetensors(files[0]) if len(files) == 1 else None


def kill_resume(loom, data, tmp):
    base = [loom, "train", MODEL, *cfg(4), "--data", data, "--steps", "12", "--seed", "3", "--lr", "3e-3",
            "--warmup", "2", "--sample", "0", "--save-every", "3", "--eval-every", "4"]
    a = subprocess.run(base + ["--checkpoint", os.path.join(tmp, "a")], capture_output=True, text=True)
    if a.returncode != 0:
        print(f"run A failed:\n{a.stdout}{a.stderr}")
        return False
    want = steps_of(a.stdout)
    ck = os.path.join(tmp, "b")
    p = subprocess.Popen(base + ["--checkpoint", ck], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("step 7/"):
            p.send_signal(signal.SIGKILL)
            break
    p.stdout.close()
    p.wait()
    print(f"run B killed after step 7 (exit {p.returncode})")
    b = subprocess.run(base + ["--checkpoint", ck, "--resume", ck], capture_output=True, text=True)
    if b.returncode != 0:
        print(f"resume failed:\n{b.stdout}{b.stderr}")
        return False
    got = steps_of(b.stdout)
    resumed = [l for l in b.stdout.splitlines() if l.startswith("resumed from")]
    print(resumed[0] if resumed else "no 'resumed from' line")
    ok = bool(resumed) and len(got) >= 6 and "step 12/12" in got
    for k, line in got.items():
        same = line == want.get(k)
        ok &= same
        if not same:
            print(f"MISMATCH {k}: resumed {line}, uninterrupted {want.get(k)}")
    vals_a = [l for l in a.stdout.splitlines() if l.startswith("val step 12")]
    vals_b = [l for l in b.stdout.splitlines() if l.startswith("val step 12")]
    ok &= bool(vals_a) and bool(vals_b) and vals_a[0].split("|")[1] == vals_b[0].split("|")[1]
    sa, sb = state(os.path.join(tmp, "a")), state(ck)
    same_bits = sa is not None and sb is not None and sa.keys() == sb.keys() and all(
        np.array_equal(sa[k].view(np.uint32), sb[k].view(np.uint32)) for k in sa)
    print(f"kill/resume: {len(got)} step lines after the resume identical to the uninterrupted run; final "
          f"checkpoints bit-identical: {same_bits} {'OK' if ok and same_bits else 'FAIL'}")
    return ok and same_bits


def accum(loom, data, tmp, opt):
    args = ["--data", data, "--steps", "4", "--seed", "5", "--sample", "0", "--optimizer", opt,
            "--lr", "3e-3" if opt == "adamw" else "0.2", "--clip", "1.0"]
    outs = {}
    for name, batch, acc in (("big", 8, 1), ("micro", 2, 4)):
        ck = os.path.join(tmp, f"{opt}-{name}")
        r = subprocess.run([loom, "train", MODEL, *cfg(batch), *args, "--accum", str(acc), "--checkpoint", ck],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"accum run {name} failed:\n{r.stdout}{r.stderr}")
            return False
        outs[name] = state(ck)
    params = [k for k in outs["big"] if "/" not in k]
    worst = max(float(np.abs(outs["big"][k].astype(np.float64) - outs["micro"][k]).max()) for k in params)
    ok = worst <= 1e-5
    print(f"accum {opt}: batch 8 x accum 1 vs batch 2 x accum 4, 4 steps, {len(params)} params: max abs err "
          f"{worst:.2e} (tol 1e-5) {'OK' if ok else 'FAIL'}")
    return ok


def main():
    loom = sys.argv[1]
    with open(os.path.join(REPO, "data", "tinyshakespeare.txt"), "rb") as f:
        text = f.read()[:6000]
    with tempfile.TemporaryDirectory(prefix="loom_train_resume_") as tmp:
        data = os.path.join(tmp, "data.txt")
        with open(data, "wb") as f:
            f.write(text)
        ok = kill_resume(loom, data, tmp)
        ok &= accum(loom, data, tmp, "adamw")
        ok &= accum(loom, data, tmp, "sgd")
    print("test_train_resume:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
