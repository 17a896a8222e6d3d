"""test_train_mixed.py — `loom train --precision bf16|fp16` (mixed precision) on GPT-2 tiny.

Against the f32 run from the same start (same seed and data): every one of the 10 steps'
losses and the validation loss within REL_TOL relative (bf16 and fp16 keep activations and
GEMM operands in half, reductions, the f32 master params and the update in f32; measured
≤ 4e-5). Dynamic loss scaling (fp16): started at 2^24 (--loss-scale), the scaled gradients
overflow fp16, so the first steps must be skipped (norm nan) with the scale halved at every
skipped step, and once the scale fits every step applies (finite norm) and the loss falls below
its start.

Usage: test_train_mixed.py LOOM"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

CFG = ["-D", "vocab=256", "-D", "ctx=16", "-D", "d_model=32", "-D", "n_layer=2", "-D", "n_head=4", "-D", "batch=4",
       "-D", "seq=16"]
REL_TOL = 1e-3
STEP = re.compile(r"^step (\d+)/\d+ \| loss ([0-9.]+) \| lr \S+ \| norm (\S+) \| scale (\S+)( \(step skipped)?")


def log_rows(path):
    with open(path) as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    return [float(r[1]) for r in rows], [float(r[6]) for r in rows if r[6]]


def main():
    loom = sys.argv[1]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    model = os.path.join(repo, "models", "gpt2.loom")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        rng = np.random.default_rng(7)
        with open(data, "wb") as f:
            f.write(rng.choice(np.frombuffer(b"abcdefgh ij\n", np.uint8), 40000).tobytes())

        def train(name, *extra):
            log = os.path.join(tmp, name + ".csv")
            r = subprocess.run([loom, "train", model, *CFG, "--data", data, "--steps", "10", "--lr", "3e-3",
                                "--warmup", "2", "--sample", "0", "--eval-batches", "2", "--log", log, *extra],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise SystemExit(f"FAIL {name}: exit status {r.returncode}\n{r.stdout}{r.stderr}")
            return r.stdout, *log_rows(log)

        _, want, want_val = train("f32")
        for prec in ("bf16", "fp16"):
            _, got, got_val = train(prec, "--precision", prec)
            rel = max(abs(g - w) / abs(w) for g, w in zip(got + got_val, want + want_val))
            ok = len(got) == 10 and len(got_val) == 1 and rel <= REL_TOL
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {prec}: 10 losses + val against f32, max rel {rel:.2e} (tol {REL_TOL:g})")

        out, got, _ = train("fp16-overflow", "--precision", "fp16", "--loss-scale", str(2 ** 24))
        steps = [STEP.match(line) for line in out.splitlines()]
        steps = [m for m in steps if m]
        skipped = [m for m in steps if m.group(5)]
        scales = [float(m.group(4)) for m in steps]
        n_skip = len(skipped)
        halving = all(abs(scales[i] / (2.0 ** 23 / 2 ** i) - 1) < 1e-5 for i in range(n_skip))  # printed %g
        skipped_are_first = all(m.group(5) for m in steps[:n_skip]) and all(m.group(3) == "nan" for m in skipped)
        applied = [m for m in steps[n_skip:] if not m.group(5) and m.group(3) != "nan"]
        ok = (len(steps) == 10 and n_skip >= 2 and halving and skipped_are_first and len(applied) == 10 - n_skip
              and got[-1] < got[0])
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} fp16 from scale 2^24: {n_skip} steps skipped (scales "
              f"{', '.join(f'{s:g}' for s in scales[:n_skip + 1])}), then {len(applied)} applied; loss "
              f"{got[0]:.4f} -> {got[-1]:.4f}")
        if not ok:
            print(out)

        # the scale lives in the checkpoint: a resumed run goes on from it, not from --loss-scale
        ckpt = os.path.join(tmp, "ckpt")
        out4, _, _ = train("fp16-4", "--precision", "fp16", "--loss-scale", str(2 ** 24), "--steps", "3",
                           "--checkpoint", ckpt)
        with open(os.path.join(ckpt, "manifest.json")) as f:
            saved = json.load(f).get("loss_scale")
        out6, _, _ = train("fp16-resumed", "--precision", "fp16", "--loss-scale", str(2 ** 24), "--resume", ckpt)
        first = [m for m in (STEP.match(line) for line in out6.splitlines()) if m][0]
        scale = float(first.group(4))  # printed with %g: 6 digits
        ok = saved == 2 ** 21 and int(first.group(1)) == 4 and any(abs(scale / 2.0 ** e - 1) < 1e-5 for e in (20, 21))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} fp16 resume: checkpoint after 3 skipped steps holds loss_scale {saved}; "
              f"the resumed run's step {first.group(1)} prints scale {first.group(4)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
