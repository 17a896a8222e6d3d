#!/usr/bin/env python3
"""cpu_peers.py — loom against its CPU peers on the same GPT-2 small weights (issue 21, goal 6).

    python bench/cpu_peers.py [CONFIG...] [--quick] [--peers eager,compile,ort]
                              [--build DIR | --loom EXE] [--rounds R] [--reps N] [--steps S]

CONFIG: 1x64, 8x64, 1x1024 (the forward at batch x seq) and train (the training step at batch 4
x seq 64); default all four. Contenders, all on the same `loom init models/gpt2.loom --seed 1`
weights (GPT-2 small, 124M params, f32), with 2 threads each (--threads):

  loom     forward: `loom build models/gpt2.loom -D batch=B -D seq=T -o EXE`, then
           `EXE --weights W --inputs I --outputs O --repeat N`: its own median of N forwards
           after one warm-up (weights loading and compile not timed);
           train: `loom train models/gpt2.loom -D batch=4 -D seq=64 --data
           data/tinyshakespeare.txt --steps S --weights W` (AdamW, clip 1): the median of its
           per-step wall times over steps 2..S.
  eager    PyTorch eager: bench/torch_gpt2.py's forward() (the same GPT-2 in plain PyTorch) under
           torch.inference_mode(); train: forward + cross-entropy + backward, clip_grad_norm_(1)
           and torch.optim.AdamW(fused=True) (betas 0.9/0.95, weight decay 0.1, as loom's).
  compile  the same through torch.compile (default mode; inductor's C++ CPU backend): the
           forward function, and for training the loss function (the optimizer step stays the
           fused eager AdamW). Compile time is reported, not timed.
  ort      ONNX Runtime (CPUExecutionProvider, intra_op_num_threads=2, inter_op_num_threads=1,
           default graph optimizations) on that forward exported by torch.onnx.export (dynamo
           exporter, dynamic batch and seq; one file for all shapes). Forward only.

Interleaved: every round runs every contender once (the order rotates from round to round);
in a round a Python contender runs one untimed warm-up and then the median of N timed calls,
as loom's executable does. Reported: the median over the rounds of each contender's round
medians (and the minimum over rounds), and ratio = peer / loom (> 1: loom is faster): the median
over rounds of the round's ratio (paired: the contenders of a round ran within seconds of each
other, which cancels slow changes of the load; bursts of other work still move single rounds),
and in parentheses the ratio of the minimums (each side's least disturbed run). The logits of loom,
torch.compile and ORT are checked against PyTorch eager's on the same tokens (max abs
difference, and relative to max |logit|; tolerance 1e-3 relative).

Environment: a virtual environment outside the repository with PyPI's packages (the torch wheel
there is the CUDA build, ~5.5 GiB installed; it runs on the CPU):

    python3 -m venv /root/.cache/loom-peers
    /root/.cache/loom-peers/bin/pip install torch onnxruntime onnx onnxscript safetensors numpy
    /root/.cache/loom-peers/bin/python bench/cpu_peers.py

torch.compile needs a C++ compiler (gcc). loom: --loom EXE, or --build DIR (default
/tmp/build-bench; configured as Release and `loom` built there, as bench/gpt2_forward.sh does).
Weights, executables, inputs and the ONNX file are kept in --work (default /tmp/loom-peers).
LOOM_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS are set to
--threads unless already set. The machine may be shared: the load average is printed at the
start, before each configuration and at the end; compare ratios, not absolute times, under load.
"""
import argparse
import contextlib
import io
import logging
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FORWARD_CONFIGS = ["1x64", "8x64", "1x1024"]
ALL_CONFIGS = FORWARD_CONFIGS + ["train"]
TRAIN_B, TRAIN_T = 4, 64
N_LAYER, N_HEAD = 12, 12
REL_TOL = 1e-3

VENV_HELP = """cpu_peers.py needs PyTorch, ONNX Runtime, onnx, onnxscript, safetensors and NumPy ({err}).
Create a virtual environment outside the repository and run the benchmark with its python:
    python3 -m venv /root/.cache/loom-peers
    /root/.cache/loom-peers/bin/pip install torch onnxruntime onnx onnxscript safetensors numpy
    /root/.cache/loom-peers/bin/python bench/cpu_peers.py"""


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", metavar="CONFIG", help="1x64 8x64 1x1024 train (default: all)")
    ap.add_argument("--peers", default="eager,compile,ort", help="comma-separated: eager, compile, ort")
    ap.add_argument("--build", default="/tmp/build-bench", help="Release build directory for loom")
    ap.add_argument("--loom", help="the loom binary (instead of building in --build)")
    ap.add_argument("--work", default="/tmp/loom-peers", help="weights, executables, ONNX file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 2)")
    ap.add_argument("--reps", type=int, help="timed forwards per contender and round (default 3; --quick 2)")
    ap.add_argument("--steps", type=int, help="training steps per contender and round, the first "
                    "untimed (default 6; --quick 4)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds, repetitions and steps")
    a = ap.parse_args()
    for c in a.configs:
        if c not in ALL_CONFIGS:
            ap.error(f"unknown config '{c}' (choose from {' '.join(ALL_CONFIGS)})")
    a.configs = a.configs or ALL_CONFIGS
    a.peers = [p for p in a.peers.split(",") if p]
    for p in a.peers:
        if p not in ("eager", "compile", "ort"):
            ap.error(f"unknown peer '{p}' (eager, compile, ort)")
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.reps = a.reps or (2 if a.quick else 3)
    a.steps = a.steps or (4 if a.quick else 6)
    if a.steps < 2:
        ap.error("--steps must be at least 2 (step 1 is a warm-up)")
    return a


A = parse_args()
for var in ("LOOM_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(A.threads))  # before torch is imported: OpenMP reads them once

try:
    import numpy as np
    import onnx  # noqa: F401  (torch.onnx.export's dynamo exporter needs onnx and onnxscript)
    import onnxruntime as ort
    import onnxscript  # noqa: F401
    import torch
    import torch.nn.functional as F
    from safetensors.numpy import load_file as np_load_file
    from safetensors.numpy import save_file as np_save_file
    from safetensors.torch import load_file
except ImportError as e:
    sys.exit(VENV_HELP.format(err=e))

for name in ("torch.utils.cpp_extension", "torch.onnx._internal.exporter._registration"):
    logging.getLogger(name).setLevel(logging.ERROR)  # "no CUDA runtime", "torchvision is not installed"
sys.path.insert(0, HERE)
from torch_gpt2 import forward  # noqa: E402  the plain-PyTorch GPT-2 of bench_cuda's comparison


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_model():
    name, flags = "?", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and name == "?":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                fl = line.split(":", 1)[1].split()
                flags = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if x in fl)
    return f"{name} ({flags})"


def log(msg):
    print(msg, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"cpu_peers.py: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r.stdout


def find_loom():
    if A.loom:
        return os.path.abspath(A.loom)
    if not os.path.exists(os.path.join(A.build, "CMakeCache.txt")):
        run(["cmake", "-S", ROOT, "-B", A.build, "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", A.build, "--target", "loom", "-j2"])
    return os.path.join(A.build, "loom")


def median_ms(fn, reps):
    fn()  # warm-up in the round
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


class GPT2(torch.nn.Module):
    """torch_gpt2.forward over the weights held as buffers (for torch.onnx.export)."""

    def __init__(self, p):
        super().__init__()
        self.names = list(p)
        for k, v in p.items():
            self.register_buffer(k.replace(".", "__"), v)

    def forward(self, tokens):
        return forward({k: getattr(self, k.replace(".", "__")) for k in self.names}, tokens, N_LAYER, N_HEAD)


def export_onnx(p, weights, path):
    if os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(weights):
        log(f"onnx: reusing {path}")
        return
    t = time.perf_counter()
    dims = {0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=1024)}
    tok = torch.zeros((2, 64), dtype=torch.long)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(GPT2(p).eval(), (tok,), path + ".tmp", input_names=["tokens"], output_names=["logits"],
                          dynamic_shapes={"tokens": dims}, dynamo=True, external_data=False)
    os.replace(path + ".tmp", path)
    log(f"onnx: torch.onnx.export (dynamo, dynamic batch and seq) -> {path} "
        f"({os.path.getsize(path) / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")


def compare(name, got, ref):
    err = float(np.abs(got.astype(np.float64) - ref).max())
    rel = err / float(np.abs(ref).max())
    return f"{name} {err:.1e} ({rel:.1e} rel{'' if rel <= REL_TOL else ' MISMATCH'})", rel <= REL_TOL


def bench_forward(cfg, loom, weights, p, session, compiled):
    B, T = map(int, cfg.split("x"))
    log(f"\n== forward {cfg} (batch {B}, seq {T}); load average {loadavg()}")
    work = A.work
    exe = os.path.join(work, f"gpt2_{cfg}")
    run([loom, "build", os.path.join(ROOT, "models/gpt2.loom"), "-D", f"batch={B}", "-D", f"seq={T}", "-o", exe])
    rng = np.random.default_rng(1000 * B + T)
    tokens = rng.integers(0, 50257, (B, T)).astype(np.int32)
    inputs, outputs = os.path.join(work, f"tokens_{cfg}.safetensors"), os.path.join(work, f"logits_{cfg}.safetensors")
    np_save_file({"tokens": tokens}, inputs)
    tt = torch.from_numpy(tokens.astype(np.int64))

    def loom_run():
        out = run([exe, "--weights", weights, "--inputs", inputs, "--outputs", outputs, "--repeat", str(A.reps)])
        m = re.search(r"forward ([0-9.]+) ms \(first\), ([0-9.]+) ms \(median of", out)
        if not m:
            sys.exit(f"cpu_peers.py: unexpected output of {exe}:\n{out}")
        return float(m.group(2))

    fns = {}
    with torch.inference_mode():
        ref = forward(p, tt, N_LAYER, N_HEAD).numpy().astype(np.float64)
    if "eager" in A.peers:
        def eager():
            with torch.inference_mode():
                return forward(p, tt, N_LAYER, N_HEAD)
        fns["eager"] = eager
    if "compile" in A.peers:
        def comp():
            with torch.inference_mode():
                return compiled(tt)
        t = time.perf_counter()
        out_c = comp()  # compiles for this shape
        log(f"torch.compile: first call (compile; inductor's on-disk cache may hold it) {time.perf_counter() - t:.1f} s")
        fns["compile"] = comp
    if "ort" in A.peers:
        feed = {"tokens": tt.numpy()}
        fns["ort"] = lambda: session.run(None, feed)[0]

    order = ["loom"] + list(fns)
    times = {k: [] for k in order}
    for r in range(A.rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        for k in rot:
            times[k].append(loom_run() if k == "loom" else median_ms(fns[k], A.reps))
        log(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.1f}" for k in order) + f" ms; load {loadavg()}")

    checks, ok = [], True
    for name, got in [("loom", np_load_file(outputs)["logits"])] + \
                     ([("compile", out_c.numpy())] if "compile" in fns else []) + \
                     ([("ort", fns["ort"]())] if "ort" in fns else []):
        s, good = compare(name, got, ref)
        checks.append(s)
        ok = ok and good
    log("logits vs torch eager, max abs diff: " + "; ".join(checks))
    return times, "; ".join(checks), ok


def bench_train(loom, weights, p):
    log(f"\n== training step, batch {TRAIN_B} x seq {TRAIN_T}, AdamW; load average {loadavg()}")
    data = os.path.join(ROOT, "data/tinyshakespeare.txt")
    V = p["wte.weight"].shape[0]

    def loom_round():
        out = run([loom, "train", os.path.join(ROOT, "models/gpt2.loom"), "-D", f"batch={TRAIN_B}", "-D",
                   f"seq={TRAIN_T}", "--data", data, "--steps", str(A.steps), "--weights", weights, "--seed", "1",
                   "--sample", "0", "--eval-batches", "1"])
        ms = [float(x) for x in re.findall(r"^step \d+/\d+ \|.*\| ([0-9.]+) ms \|", out, re.M)]
        loss = re.search(r"^step 1/\d+ \| loss ([0-9.]+)", out, re.M)
        if len(ms) != A.steps or not loss:
            sys.exit(f"cpu_peers.py: unexpected output of loom train:\n{out[-3000:]}")
        return statistics.median(ms[1:]), float(loss.group(1))

    # the same kind of batches as loom train's: byte tokens of the same file, random windows
    text = np.frombuffer(open(data, "rb").read(), dtype=np.uint8)
    g = np.random.default_rng(1)

    def batch():
        starts = g.integers(0, len(text) - TRAIN_T - 1, TRAIN_B)
        w = torch.from_numpy(np.stack([text[s:s + TRAIN_T + 1] for s in starts]).astype(np.int64))
        return w[:, :-1], w[:, 1:]

    def make(mode):
        params = {k: torch.nn.Parameter(v.clone()) for k, v in p.items()}
        opt = torch.optim.AdamW(params.values(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

        def loss_of(x, y):
            return F.cross_entropy(forward(params, x, N_LAYER, N_HEAD).view(-1, V), y.reshape(-1))

        loss_fn = torch.compile(loss_of) if mode == "compile" else loss_of

        def step():
            x, y = batch()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params.values(), 1.0, foreach=True)
            opt.step()
            return loss.item()

        return step

    steppers, first_loss = {}, {}
    for mode in [m for m in ("eager", "compile") if m in A.peers]:
        steppers[mode] = make(mode)
        t = time.perf_counter()
        first_loss[mode] = steppers[mode]()
        log(f"torch {mode}: first step {time.perf_counter() - t:.1f} s"
            f"{' (compile; maybe from the inductor cache)' if mode == 'compile' else ''}, loss {first_loss[mode]:.4f}")

    order = ["loom"] + list(steppers)
    times = {k: [] for k in order}
    loom_loss = None
    for r in range(A.rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        for k in rot:
            if k == "loom":
                ms, loom_loss = loom_round()
                times[k].append(ms)
            else:
                times[k].append(median_ms(steppers[k], A.steps - 1))  # 1 untimed + steps-1 timed
        log(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.1f}" for k in order) + f" ms/step; load {loadavg()}")
    note = f"step-1 loss: loom {loom_loss:.4f}" + "".join(f", {k} {v:.4f}" for k, v in first_loss.items()) + \
        f" (ln V = {np.log(V):.4f}; different batches)"
    log(note)
    return times, note


def main():
    t0 = time.perf_counter()
    torch.set_num_threads(A.threads)
    log(f"cpu_peers.py: GPT-2 small on the CPU, loom vs PyTorch eager / torch.compile / ONNX Runtime")
    log(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start {loadavg()} "
        f"(shared machine: other jobs may run; times under load are noisy, ratios less so)")
    log(f"threads: LOOM_NUM_THREADS={os.environ['LOOM_NUM_THREADS']} "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']} torch {torch.get_num_threads()} "
        f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), ORT intra_op {A.threads} inter_op 1")
    log(f"torch {torch.__version__} ({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}, oneDNN "
        f"{'yes' if torch.backends.mkldnn.is_available() else 'no'}), onnxruntime {ort.__version__}, "
        f"onnx {onnx.__version__}, onnxscript {onnxscript.__version__}, numpy {np.__version__}")
    log(f"configs {' '.join(A.configs)}; peers {','.join(A.peers)}; {A.rounds} rounds, {A.reps} reps, "
        f"{A.steps} training steps")

    loom = find_loom()
    log(f"loom: {loom} ({run([loom, '--version']).strip()})")
    os.makedirs(A.work, exist_ok=True)
    weights = os.path.join(A.work, "gpt2.safetensors")
    if not os.path.exists(weights):
        run([loom, "init", os.path.join(ROOT, "models/gpt2.loom"), "--seed", "1", "-o", weights])
    p = load_file(weights)  # f32, HF names (h.0.attn.c_attn.weight, ...)

    fwd = [c for c in A.configs if c in FORWARD_CONFIGS]
    session = compiled = None
    if fwd and "ort" in A.peers:
        onnx_path = os.path.join(A.work, "gpt2.onnx")
        export_onnx(p, weights, onnx_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = A.threads, 1
        t = time.perf_counter()
        session = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        log(f"onnxruntime: session created in {time.perf_counter() - t:.1f} s")
    if fwd and "compile" in A.peers:
        compiled = torch.compile(lambda tokens: forward(p, tokens, N_LAYER, N_HEAD), dynamic=False)

    results = []
    all_ok = True
    for cfg in A.configs:
        if cfg == "train":
            times, note = bench_train(loom, weights, p)
            results.append((f"train {TRAIN_B}x{TRAIN_T} (ms/step)", times, note))
        else:
            times, note, ok = bench_forward(cfg, loom, weights, p, session, compiled)
            all_ok = all_ok and ok
            results.append((f"forward {cfg} (ms)", times, note))

    peers = [k for k in ("eager", "compile", "ort") if k in A.peers]
    names = {"eager": "torch eager", "compile": "torch.compile", "ort": "ONNX Runtime"}
    log(f"\nms: median over {A.rounds} rounds of each round's median (min over rounds); ratio: peer / loom, "
        f"the median over rounds of each round's ratio (the ratio of the mins); > 1: loom faster\n"
        f"load average at end {loadavg()}; {time.perf_counter() - t0:.0f} s in all\n")
    log("| config | loom | " + " | ".join(f"{names[k]} | ratio" for k in peers) + " |")
    log("|---|---:|" + "---:|---:|" * len(peers))
    for label, times, _ in results:
        lm, lmin = statistics.median(times["loom"]), min(times["loom"])
        row = f"| {label} | {lm:.1f} ({lmin:.1f}) |"
        for k in peers:
            if k in times:
                pm, pmin = statistics.median(times[k]), min(times[k])
                paired = statistics.median(t / l for t, l in zip(times[k], times["loom"]))
                row += f" {pm:.1f} ({pmin:.1f}) | **{paired:.2f}** ({pmin / lmin:.2f}) |"
            else:
                row += " — | — |"
        log(row)
    log("")
    for label, _, note in results:
        log(f"{label}: {note}")
    if not all_ok:
        log(f"\nlogits MISMATCH: some contender differs from torch eager by more than {REL_TOL:g} relative")
        sys.exit(1)


if __name__ == "__main__":
    main()
