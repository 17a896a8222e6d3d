#!/usr/bin/env python3
"""test_opencl_train_resident.py LOOM [TARGET] — device-resident `loom train --target opencl`.

GPT-2 tiny on the first 3000 characters of tinyshakespeare, same seed on every run:

1. 50 AdamW steps with --accum 2 and --clip 1.0 on the device against --target cpu: every
   step's loss and gradient norm and the validation losses (the --log CSV, 6 decimals) within
   1e-5 relative; the max errors are printed.
2. --stats: the steps move host→device exactly their token batches (tokens and targets, i32,
   per micro-batch) plus at most 64 bytes (lr, step) each, and device→host at most 64 bytes
   (loss, norm). A step enqueues the next step's first batch before its wait, so step 1 also
   moves step 2's, and the last step moves none of its own (accum 1: step 1 two batches, the
   middle steps one, the last none; accum 2: 3, 2, 1). Each step line also gives the device
   time by kind: GEMMs and the optimizer must have taken some. The same run with LOOM_TRAIN_FOLLOW_HOST=1 (every program on a device of its own,
   following the host buffers) must count at least the params each step, so the counters count.
3. Preempt and resume: a 6-step run with --checkpoint gets SIGUSR1 at its first step line,
   stops after some step k < 6 with a checkpoint (read back from the device), and --resume
   (which puts the state on the device again) gives steps k+1..6 bit-identical (the CSV's loss
   and norm strings) to an uninterrupted 6-step run.
4. Mixed precision, resident too (fp32 masters and moments on the device; fp16's loss scale
   uploaded with the step, its found-inf the norm read back): 12 steps of --precision bf16 and
   of fp16 started at --loss-scale 2^24, so that fp16's first steps overflow and are skipped,
   against --target cpu with the same precision: the same steps skipped with the same scales,
   the losses and norms of the others within HALF_TOL relative, and a step's bytes as in 2.

TARGET (default $LOOM_TEST_OPENCL_TARGET or "opencl") picks the device; no OpenCL platform
prints "skipped"."""
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402

CFG = {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 1, "n_head": 4, "batch": 4, "seq": 16}
TOL = 1e-5
# bf16/fp16 on the device against the CPU: the same roundings, but GEMM sums in another order,
# so a value near a rounding boundary may round the other way (measured: bf16 6.9e-4, fp16 3.3e-5)
HALF_TOL = 2e-3


def train(loom, target, data, extra, env=None):
    cmd = [loom, "train", os.path.join(REPO, "models", "gpt2.loom")]
    for k, v in CFG.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--data", data, "--seed", "3", "--lr", "3e-3", "--warmup", "1", "--sample", "0",
            "--eval-batches", "2", "--target", target] + extra
    proc = harness.run_proc(cmd, timeout=600, env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def step_bytes(proc):
    """{step: (h2d, d2h)} from the --stats lines."""
    got = {}
    for m in re.finditer(r"stats step (\d+): (\d+) bytes host->device, (\d+) bytes device->host", proc.stderr):
        got[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return got


def step_kinds(proc):
    """{step: {kind: device ms}} from the --stats lines."""
    got = {}
    for m in re.finditer(r"stats step (\d+): .*; device ms: (.*)", proc.stderr):
        got[int(m.group(1))] = {k: float(v) for k, v in (p.split(" ") for p in m.group(2).split(", "))}
    return got


def main():
    args = harness.opencl_args("test_opencl_train_resident.py")
    if args is None:
        return
    loom, target = args
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_ocl_resident_") as tmp:
        data = os.path.join(tmp, "text.txt")
        with open(os.path.join(REPO, "data", "tinyshakespeare.txt")) as f:
            text = f.read()[:3000]
        with open(data, "w") as f:
            f.write(text)

        # 1. equal to the CPU
        common = ["--steps", "50", "--accum", "2", "--clip", "1.0", "--eval-every", "25"]
        train(loom, "cpu", data, common + ["--log", os.path.join(tmp, "cpu.csv")])
        train(loom, target, data, common + ["--log", os.path.join(tmp, "dev.csv")])
        want, got = read_log(os.path.join(tmp, "cpu.csv")), read_log(os.path.join(tmp, "dev.csv"))
        if not len(want) == len(got) == 50:
            print(f"FAILED: {len(want)} cpu steps, {len(got)} device steps (want 50)")
            ok = False
        worst = {"loss": 0.0, "grad_norm": 0.0, "val_loss": 0.0}
        n_val = 0
        for w, g in zip(want, got):
            for key in worst:
                if not w[key] and not g[key]:
                    continue
                if not w[key] or not g[key]:
                    print(f"FAILED: step {w['step']}: {key} on one target only")
                    ok = False
                    continue
                n_val += key == "val_loss"
                a, b = float(g[key]), float(w[key])
                rel = abs(a - b) / max(abs(b), 1e-30)
                worst[key] = max(worst[key], rel)
                if rel > TOL:
                    print(f"FAILED: step {w['step']} {key}: device {a} cpu {b} (rel {rel:.2e} > {TOL:.0e})")
                    ok = False
        if n_val != 2:
            print(f"FAILED: {n_val} validation losses (want 2: steps 25 and 50)")
            ok = False
        print("50 steps, accum 2, clip 1: max rel error " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))

        # 2. the bytes of a step
        batch = 2 * CFG["batch"] * CFG["seq"] * 4  # tokens + targets, i32
        proc = train(loom, target, data, ["--steps", "4", "--stats"])
        got = step_bytes(proc)
        if sorted(got) != [1, 2, 3, 4]:
            print(f"FAILED: --stats step lines for steps {sorted(got)} (want 1..4)\n{proc.stderr}")
            ok = False
        kinds = step_kinds(proc)
        want_kinds = ["gemm", "attention", "elementwise", "reduction", "optimizer", "copy"]
        for s, k in sorted(kinds.items()):
            if list(k) != want_kinds or k["gemm"] <= 0 or k["optimizer"] <= 0:
                print(f"FAILED: step {s}: device time by kind {k} (want {want_kinds}, gemm and optimizer > 0)")
                ok = False
        if sorted(kinds) != [1, 2, 3, 4]:
            print(f"FAILED: device time by kind for steps {sorted(kinds)} (want 1..4)")
            ok = False
        print(f"device ms by kind, step 2: {kinds.get(2)}")
        for accum in (1, 2):
            if accum == 2:
                got = step_bytes(train(loom, target, data, ["--steps", "4", "--accum", "2", "--stats"]))
            for s, (h2d, d2h) in sorted(got.items()):
                want = (accum + 1 if s == 1 else accum - 1 if s == 4 else accum) * batch
                if not (want <= h2d <= want + 64) or d2h > 64:
                    print(f"FAILED: accum {accum}, step {s}: {h2d} bytes host->device (want {want} + at most 64), "
                          f"{d2h} device->host (want at most 64)")
                    ok = False
        follow = step_bytes(train(loom, target, data, ["--steps", "2", "--stats"], {"LOOM_TRAIN_FOLLOW_HOST": "1"}))
        n_params = 15840  # GPT-2 tiny above: 16 params, 15840 elements
        if not follow or min(h for h, _ in follow.values()) < 4 * n_params:
            print(f"FAILED: following the host, the counted uploads {follow} are below the params' "
                  f"{4 * n_params} bytes")
            ok = False
        print(f"bytes per step: resident {got.get(2)}, following the host {follow.get(2)} (host->device, device->host)")

        # 3. resume: run B gets SIGUSR1 (a preemption notice) at its first step line, stops after
        # some step k < 6 with a checkpoint of step k (exit 75), and is resumed to step 6
        # One GEMM kernel for all three processes: LOOM_OCL_GEMM=auto times CLBlast against the
        # generated kernels per process, and they may differ in the last bit (gemm_opencl.c), so
        # bit-identical runs across processes need the choice fixed (docs/opencl.md).
        fixed = {"LOOM_OCL_GEMM": "clblast"}
        ck = os.path.join(tmp, "ck")
        train(loom, target, data, ["--steps", "6", "--log", os.path.join(tmp, "whole.csv")], fixed)
        cmd = [loom, "train", os.path.join(REPO, "models", "gpt2.loom")]
        for k, v in CFG.items():
            cmd += ["-D", f"{k}={v}"]
        cmd += ["--data", data, "--seed", "3", "--lr", "3e-3", "--warmup", "1", "--sample", "0", "--eval-batches",
                "2", "--target", target, "--steps", "6", "--checkpoint", ck]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, **fixed))
        for line in p.stdout:
            if line.startswith("step "):
                p.send_signal(signal.SIGUSR1)
                break
        out = line + p.stdout.read()
        p.wait(timeout=300)
        m = re.search(r"preempted after step (\d+)", out)
        if p.returncode != 75 or not m or int(m.group(1)) >= 6:  # 75: EX_TEMPFAIL, preempted
            print(f"FAILED: the preempted run (exit {p.returncode}) did not stop before step 6:\n{out}{p.stderr.read()}")
            ok = False
        else:
            k = int(m.group(1))
            train(loom, target, data, ["--steps", "6", "--resume", ck, "--log", os.path.join(tmp, "resumed.csv")],
                  fixed)
            whole = read_log(os.path.join(tmp, "whole.csv"))
            resumed = read_log(os.path.join(tmp, "resumed.csv"))
            tail = [(r["step"], r["loss"], r["grad_norm"]) for r in whole[k:]]
            again = [(r["step"], r["loss"], r["grad_norm"]) for r in resumed]
            if len(tail) != 6 - k or tail != again:
                print(f"FAILED: resumed steps {again} differ from the uninterrupted run's {tail}")
                ok = False
            else:
                print(f"preempted after step {k}, resumed: steps {k + 1}-6 bit-identical to the uninterrupted run")

        # 4. mixed precision
        for prec in ("bf16", "fp16"):
            extra = ["--steps", "12", "--precision", prec] + (["--loss-scale", "16777216"] if prec == "fp16" else [])
            train(loom, "cpu", data, extra + ["--log", os.path.join(tmp, f"cpu_{prec}.csv")])
            # one GEMM kernel (as in 3.): the timed choice may differ from run to run in the last bit,
            # which may move an fp16 gradient across the overflow boundary in one run and not another
            proc = train(loom, target, data, extra + ["--stats", "--log", os.path.join(tmp, f"dev_{prec}.csv")], fixed)
            want = read_log(os.path.join(tmp, f"cpu_{prec}.csv"))
            got = read_log(os.path.join(tmp, f"dev_{prec}.csv"))
            worst, skipped = 0.0, 0
            for w, g in zip(want, got):
                if (w["skipped"], w["loss_scale"]) != (g["skipped"], g["loss_scale"]):
                    print(f"FAILED: {prec} step {w['step']}: skipped {g['skipped']} at scale {g['loss_scale']} on the "
                          f"device, {w['skipped']} at {w['loss_scale']} on the cpu")
                    ok = False
                    continue
                skipped += w["skipped"] == "1"
                for key in ("loss",) if w["skipped"] == "1" else ("loss", "grad_norm"):
                    a, b = float(g[key]), float(w[key])
                    rel = abs(a - b) / max(abs(b), 1e-30)
                    worst = max(worst, rel)
                    if rel > HALF_TOL:
                        print(f"FAILED: {prec} step {w['step']} {key}: device {a} cpu {b} (rel {rel:.2e})")
                        ok = False
            if len(want) != 12 or len(got) != 12 or (prec == "fp16") != (skipped > 0):
                print(f"FAILED: {prec}: {len(want)} cpu and {len(got)} device steps (want 12), {skipped} skipped")
                ok = False
            for s, (h2d, d2h) in sorted(step_bytes(proc).items()):
                want_b = (2 if s == 1 else 0 if s == 12 else 1) * batch
                if not (want_b <= h2d <= want_b + 64) or d2h > 64:
                    print(f"FAILED: {prec} step {s}: {h2d} bytes host->device (want {want_b} + at most 64), {d2h} "
                          "device->host (want at most 64)")
                    ok = False
            print(f"{prec}: 12 steps ({skipped} skipped) on the device as on the cpu: max rel error {worst:.2e}")
    if not ok:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
