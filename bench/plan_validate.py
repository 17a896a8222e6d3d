#!/usr/bin/env python3
"""plan_validate.py — `loom plan`'s predicted step times against `loom train`'s measured ones,
on CPU ranks of this machine (docs/cluster.md, "The planner": the validation table).

usage: plan_validate.py LOOM [--devices 2,4] [--steps 6] [--bandwidth 1.5GB/s] [--latency 30us]
                             [--cores 2] [--max-configs K] [--markdown]

Model: GPT-2, 4 layers, d_model 128, 4 heads, vocabulary 256, seq 64, batch 8 (byte tokens of
data/tinyshakespeare.txt). Steps:
1. Compute rate: `loom train` on one rank with one thread, median ms of steps 2..N; the FLOPs of a
   step from `loom plan --devices 1 --peak-tflops 1 --mfu 1` (its compute column is FLOPs/1e12).
   With R ranks on C cores each rank gets min(1, C/R) of that rate (--peak-tflops per R).
2. Network: one link model for the shared-memory transport, all ranks one node: --bandwidth
   (default from the allreduce table of docs/cluster.md) and a latency a message step, by default
   calibrated per rank count: the communication time `loom train --mesh tp=R` measures, less its
   bytes at the bandwidth, over its message steps (as `loom check --explain` counts them) — with
   more ranks than cores a message waits for its peer to be scheduled, milliseconds, not the
   microseconds of shared memory.
3. For each R in --devices: every configuration `loom plan --devices R --top 1000` ranks (the
   first --max-configs), run as printed: `mpirun -np R loom train ... --steps N`, each rank one
   thread, median of loom's own step times over steps 2..N.
4. The Spearman rank correlation of predicted against measured, per R and over all, and whether
   the planner's first choice is within 10% of the fastest measured.
Not a test (timings; the machine is shared): a bench, run by hand. Prints a table (--markdown:
for docs/cluster.md) and the load average before and after."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(HERE, "models", "gpt2.loom")
DATA = os.path.join(HERE, "data", "tinyshakespeare.txt")
DEFINES = ["-D", "n_layer=4", "-D", "d_model=128", "-D", "n_head=4", "-D", "vocab=256", "-D", "seq=64",
           "-D", "ctx=64", "-D", "batch=8"]
STEP = re.compile(r"^step (\d+)/\d+ \| .*? \| ([0-9.]+) ms", re.M)
COMM = re.compile(r"^step (\d+)/\d+ \| .*? \| [0-9.]+ ms \(compute [0-9.]+, comm ([0-9.]+):", re.M)
ROW = re.compile(r"^  (\d+)\s+(\(one rank\)|\S+(?: zero\d)?(?: rc-\w+)?)\s+(\d+)\s+(\S+(?: v\d+)?)\s+([0-9.]+) (ms|s)\s+"
                 r"([0-9.]+) (ms|s)", re.M)


def run(cmd, env=None, timeout=600):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def seconds(v, unit):
    return float(v) / (1e3 if unit == "ms" else 1)


def train(loom, mpiexec, ranks, mesh_args, steps):
    env = dict(os.environ, LOOM_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    base = [loom, "train", MODEL, *DEFINES, "--data", DATA, "--steps", str(steps), "--sample", "0",
            "--eval-batches", "1", *mesh_args]
    cmd = base if ranks == 1 else [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np",
                                   str(ranks), "-x", "LOOM_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS", *base]
    out = run(cmd, env=env)
    times = [float(ms) for s, ms in STEP.findall(out) if int(s) >= 2]
    if not times:
        raise RuntimeError(f"no step lines from {' '.join(cmd)}\n{out}")
    comm = [float(ms) for s, ms in COMM.findall(out) if int(s) >= 2]
    train.comm = statistics.median(comm) / 1e3 if comm else 0.0
    return statistics.median(times) / 1e3


def latency_of(loom, mpiexec, devices, bandwidth, steps):
    """Seconds a message step costs with `devices` ranks on this machine: the communication time
    loom train measures under tp=devices, less its bytes at the bandwidth, over its message steps
    (loom check --explain with a latency of 1 s and an infinite bandwidth counts them)."""
    out = run([loom, "check", MODEL, *DEFINES, "--mesh", f"tp={devices}", "--train", "--explain", "--latency",
               "intra=1,inter=1", "--bandwidth", "intra=1e15,inter=1e15"])
    m = re.search(r"^  in all: .*?, ([0-9.]+) (KiB|MiB|B) on the wire, ([0-9.]+) (ms|s) a step", out, re.M)
    n_steps = seconds(m.group(3), m.group(4))
    wire = float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1048576}[m.group(2)]
    train(loom, mpiexec, devices, ["--mesh", f"tp={devices}"], steps)
    rate = float(re.match(r"([0-9.]+)GB/s", bandwidth).group(1)) * 1e9
    return max(1e-6, (train.comm - wire / rate) / n_steps), n_steps, train.comm


def plan(loom, devices, tflops, bandwidth, latency, top):
    out = run([loom, "plan", MODEL, *DEFINES, "--devices", str(devices), "--top", str(top), "--peak-tflops",
               f"{tflops:.6g}", "--mfu", "1", "--bandwidth", f"intra={bandwidth},inter={bandwidth}", "--latency",
               f"intra={latency},inter={latency}", "--gpus-per-node", str(devices), "--device-memory", "64GiB"])
    rows = []
    for m in ROW.finditer(out):
        rows.append({"mesh": m.group(2), "micro": int(m.group(3)), "schedule": m.group(4),
                     "predicted": seconds(m.group(5), m.group(6)), "compute": seconds(m.group(7), m.group(8))})
    considered = re.search(r"^considered .*$", out, re.M)
    return rows, considered.group(0) if considered else ""


def ranks_of(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties get their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y):
    if len(x) < 3:
        return float("nan")
    rx, ry = ranks_of(x), ranks_of(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loom")
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--devices", default="2,4")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bandwidth", default="1.5GB/s")
    ap.add_argument("--latency", default="calibrate")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--max-configs", type=int, default=12)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    print(f"load average before: {open('/proc/loadavg').read().strip()}")
    one = train(a.loom, a.mpiexec, 1, [], a.steps)
    rows1, _ = plan(a.loom, 1, 1.0, a.bandwidth, "30us", 1)
    flops = rows1[0]["compute"] * 1e12  # compute at 1 TFLOP/s and MFU 1: seconds = FLOPs / 1e12
    rate = flops / one
    print(f"calibration: one rank, one thread: {one * 1e3:.1f} ms a step, {flops:.4g} FLOPs a step: "
          f"{rate / 1e9:.2f} GFLOP/s; network {a.bandwidth}, latency {a.latency}")
    results = []
    for devices in [int(x) for x in a.devices.split(",")]:
        share = min(1.0, a.cores / devices)
        latency = a.latency
        if a.latency == "calibrate":
            lat, n_steps, comm = latency_of(a.loom, a.mpiexec, devices, a.bandwidth, a.steps)
            latency = f"{lat * 1e6:.0f}us"
            print(f"{devices} ranks: tp={devices} spends {comm * 1e3:.1f} ms a step in {n_steps:.0f} message steps: "
                  f"latency {latency}")
        rows, considered = plan(a.loom, devices, rate * share / 1e12, a.bandwidth, latency, 1000)
        print(f"{devices} ranks ({share:.2f} of a core's rate each): {considered}")
        for i, r in enumerate(rows[:a.max_configs]):
            mesh, *extras = r["mesh"].split() if r["mesh"] != "(one rank)" else [None]
            mesh_args = ["--mesh", mesh] if mesh else []
            for x in extras:  # zero1, zero2, rc-sel, rc-full: the options they stand for
                mesh_args += (["--zero", x[4:]] if x.startswith("zero") else
                              ["--recompute", "selective" if x == "rc-sel" else "full"] if x.startswith("rc-") else [])
            if r["schedule"] != "-":
                sched, *v = r["schedule"].split()
                mesh_args += ["--microbatches", str(r["micro"]), "--schedule", sched]
                mesh_args += ["--virtual-stages", v[0][1:]] if v else []
            t0 = time.time()
            try:
                measured = train(a.loom, a.mpiexec, devices, mesh_args, a.steps)
            except Exception as e:  # report and go on
                print(f"  {r['mesh']} M={r['micro']} {r['schedule']}: failed: {str(e)[:300]}")
                continue
            r.update(devices=devices, rank=i + 1, measured=measured)
            results.append(r)
            print(f"  #{i + 1:<2} {r['mesh']:<12} M={r['micro']:<2} {r['schedule']:<5} predicted "
                  f"{r['predicted'] * 1e3:8.1f} ms  measured {measured * 1e3:8.1f} ms  ({time.time() - t0:.0f} s)",
                  flush=True)
    print(f"load average after: {open('/proc/loadavg').read().strip()}")
    if a.markdown:
        print("\n| ranks | plan rank | mesh | micro-batches | schedule | predicted ms | measured ms |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['devices']} | {r['rank']} | {r['mesh']} | {r['micro']} | {r['schedule']} | "
                  f"{r['predicted'] * 1e3:.1f} | {r['measured'] * 1e3:.1f} |")
    for devices in sorted({r["devices"] for r in results}):
        rs = [r for r in results if r["devices"] == devices]
        rho = spearman([r["predicted"] for r in rs], [r["measured"] for r in rs])
        best = min(r["measured"] for r in rs)
        first = next(r for r in rs if r["rank"] == 1) if any(r["rank"] == 1 for r in rs) else None
        within = first is not None and first["measured"] <= 1.1 * best
        print(f"{devices} ranks: {len(rs)} configurations, Spearman {rho:.2f}; the first choice measured "
              f"{first['measured'] * 1e3 if first else float('nan'):.1f} ms, the fastest {best * 1e3:.1f} ms: "
              f"{'within' if within else 'not within'} 10%")
    rho = spearman([r["predicted"] for r in results], [r["measured"] for r in results])
    print(f"all: {len(results)} configurations, Spearman {rho:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
