"""train_mesh.py — `mpirun -np N loom train MODEL --mesh ...` against the single-rank `loom train`.

usage: train_mesh.py LOOM MPIEXEC MODEL SPEC[:SPEC...] [-D name=value ...]
SPEC: MESH[@ALGO][/SCHEDULE[xM]][+zero|+zero2][+full|+selective][+sp][+exe][+resume] — ALGO the
--allreduce algorithm (backend by default), SCHEDULE the pipeline's --schedule (gpipe or 1f1b)
and M its --microbatches; +zero trains with --zero 1 (the optimizer state sharded over dp), +zero2
with --zero 2 (the summed gradients too: each micro-batch's reduce-scattered into a chunk); +full
and +selective with --recompute full|selective, +sp with --sequence-parallel (the reference stays
the run without), +vV with --virtual-stages V (interleaved 1F1B over V model chunks a stage); +nooverlap with LOOM_DP_OVERLAP=0 (dp's allreduce after the backward, not
bucket by bucket during it), +overlap with LOOM_DP_OVERLAP=1 (bucket by bucket also under
tp/pp); +exe
runs a training executable built by `loom build MODEL -D ... --mesh MESH --train
[--microbatches M] -o EXE` instead of `loom train` (the same options but the compiled-in ones);
+resume also checkpoints the mesh run at step 10 (sharded under tp/pp: one file per rank),
gathers it with `loom gather` (the params must equal the single-rank checkpoint's within
GATHER_TOL) and resumes it for 2 more steps, which must give the single-rank resumed run's
losses within 1e-5 relative. Under dp alone the checkpoint is one whole checkpoint (under
--zero 1 its optimizer state gathered from the dp ranks): every tensor of it, params and
optimizer state, must equal the single-rank checkpoint's within GATHER_TOL, and one process
resuming it must give the single-rank resumed run's losses.

Data: 40,000 pseudo-random bytes of a small alphabet (byte tokens, vocab 256), written here.
Each run trains 10 steps with AdamW from `loom init`'s start (same seed) and evaluates at the
end. The single-rank run is the reference: for every mesh (one process per rank,
oversubscribed, one thread each) rank 0's losses of the 10 steps, and the validation loss, must
equal it within 1e-5 relative; one line per mesh prints the max relative error and wall time.
Only rank 0 may print step lines: the test counts them."""
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
from harness import read_safetensors  # noqa: E402

REL_TOL = 1e-5
# params after 10 AdamW steps, per tensor max |gathered - single| / max |single|: Adam turns the
# rounding noise of an exactly-zero gradient (the key bias: softmax ignores it) into ±lr steps
GATHER_TOL = 1e-3
STEPS = 10
STEP = re.compile(r"^step (\d+)/\d+ \| loss ([0-9.]+) .*\| norm ([0-9.]+)")
VAL = re.compile(r"^val step \d+ \| val loss ([0-9.]+)")


def losses(log):
    """(loss, grad_norm) of each step and the validation losses, from the --log CSV (6 decimals)."""
    with open(log) as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    return [(float(r[1]), float(r[3])) for r in rows], [float(r[6]) for r in rows if r[6]]


def more_steps(cmd):
    """cmd with --steps STEPS + 2 (the steps of a resumed run)."""
    k = cmd.index("--steps") + 1
    return cmd[:k] + [str(STEPS + 2)] + cmd[k + 1:]


def sharded_checkpoint(loom, env, spec, ckpt, single_ckpt, args, tmp, slow):
    """A tp/pp run's checkpoint: `loom gather` gives the single-rank run's params; one process
    resuming it, and gathering a whole one, are clear errors."""
    ok_all = True
    gathered = os.path.join(tmp, "gathered.safetensors")
    g = subprocess.run([loom, "gather", ckpt, "-o", gathered], capture_output=True, text=True)
    if g.returncode != 0:
        print(f"FAIL {spec}: loom gather: exit status {g.returncode}\n{g.stdout}{g.stderr}")
        ok_all = False
    else:
        got_p = read_safetensors(gathered)
        want_p = {k: v for k, v in read_safetensors(glob.glob(os.path.join(single_ckpt, "state-*"))[0]).items()
                  if "/" not in k}
        worst = max((float(np.abs(got_p[k] - w).max() / max(np.abs(w).max(), 1e-30)), k)
                    for k, w in want_p.items() if k in got_p)
        ok = set(got_p) == set(want_p) and worst[0] <= GATHER_TOL
        ok_all &= ok
        print(f"{'ok  ' if ok else 'FAIL'} {spec:24s} loom gather: {len(got_p)} params (want {len(want_p)}) "
              f"equal the single-rank checkpoint's, worst {worst[0]:.2e} in {worst[1]} (tol {GATHER_TOL:g})")
    for what, bad, want_err in (
            ("one rank resuming it", [loom, "train", *more_steps(args), "--resume", ckpt],
             f"{ckpt}: sharded checkpoint: mesh "),
            ("gathering a whole one", [loom, "gather", single_ckpt, "-o", gathered],
             f"{single_ckpt}: not a sharded checkpoint")):
        b = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=120 * slow)
        ok = b.returncode == 1 and want_err in b.stderr
        ok_all &= ok
        print(f"{'ok  ' if ok else 'FAIL'} {spec:24s} {what}: exit status {b.returncode}, "
              f"{b.stderr.strip().splitlines()[-1] if b.stderr.strip() else 'no message'}")
    return ok_all


def whole_checkpoint(loom, env, spec, ckpt, single_ckpt, resume_args, log, want_resumed, slow):
    """A dp run's checkpoint: every tensor equal to the single-rank one's, and one process resumes it."""
    got = read_safetensors(glob.glob(os.path.join(ckpt, "state-*"))[0])
    want = read_safetensors(glob.glob(os.path.join(single_ckpt, "state-*"))[0])
    worst = max((float(np.abs(got[k] - w).max() / max(np.abs(w).max(), 1e-30)), k) for k, w in want.items() if k in got)
    ok = set(got) == set(want) and worst[0] <= GATHER_TOL
    print(f"{'ok  ' if ok else 'FAIL'} {spec:24s} checkpoint: {len(got)} tensors (want {len(want)}, params and "
          f"optimizer state) equal the single-rank one's, worst {worst[0]:.2e} in {worst[1]} (tol {GATHER_TOL:g})")
    os.remove(log)
    r = subprocess.run([loom, "train", *resume_args, "--resume", ckpt], env=env, capture_output=True, text=True,
                       timeout=120 * slow)
    got_resumed = losses(log)[0][-2:] if r.returncode == 0 else []
    rel = max((abs(g[0] - w[0]) / abs(w[0]) for g, w in zip(got_resumed, want_resumed)), default=1.0)
    one = r.returncode == 0 and len(got_resumed) == 2 and rel <= REL_TOL
    print(f"{'ok  ' if one else 'FAIL'} {spec:24s} resumed by one process: steps {STEPS + 1}-{STEPS + 2} max rel "
          f"{rel:.2e}\n{'' if one else r.stdout[-2000:] + r.stderr[-2000:]}".rstrip())
    return ok and one


def step_lines(text):
    return sum(1 for line in text.splitlines() if STEP.match(line))


def main():
    loom, mpiexec, model, meshes = sys.argv[1:5]
    defines = sys.argv[5:]  # -D name=value ..., and loom train options such as --target
    if "--target" in defines:
        target = defines[defines.index("--target") + 1]
        devices = subprocess.run([loom, "devices"], capture_output=True, text=True).stdout
        if target.startswith("opencl") and not re.search(r"^opencl:\d+:\d+ ", devices, re.M):
            print(f"skipped: no OpenCL device for --target {target}\n{devices}")
            return 0
    env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader", LOOM_COLL_TIMEOUT="60")
    # a device target compiles its kernels on first use: PoCL with a cold cache takes minutes
    slow = 3 if "--target" in defines else 1
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        rng = np.random.default_rng(7)
        with open(data, "wb") as f:
            f.write(rng.choice(np.frombuffer(b"abcdefgh ij\n", np.uint8), 40000).tobytes())
        log = os.path.join(tmp, "log.csv")
        args = [model, *defines, "--data", data, "--log", log, "--steps", str(STEPS), "--lr", "3e-3", "--warmup", "2",
                "--sample", "0", "--eval-batches", "2"]
        r = subprocess.run([loom, "train", *args], env=env, capture_output=True, text=True, timeout=120 * slow)
        if r.returncode != 0:
            print(f"FAIL single rank: exit status {r.returncode}\n{r.stdout}{r.stderr}")
            return 1
        want, want_val = losses(log)
        resume_args = more_steps(args)
        single_ckpt = os.path.join(tmp, "ckpt-single")
        want_resumed = None
        if len(want) != STEPS or len(want_val) != 1:
            print(f"FAIL single rank: {len(want)} step lines, {len(want_val)} val lines\n{r.stdout}")
            return 1
        for spec in meshes.split(":"):
            spec, *flags = spec.split("+")
            resume, exe = "resume" in flags, "exe" in flags
            zero = "1" if "zero" in flags else "2" if "zero2" in flags else None
            spec_mesh, _, sched = spec.partition("/")
            mesh, _, algo = spec_mesh.partition("@")
            sched, _, micro = sched.partition("x")
            built = ["--microbatches", micro] if micro else []
            built += ["--zero", zero] if zero else []
            recompute = "full" if "full" in flags else "selective" if "selective" in flags else None
            built += ["--recompute", recompute] if recompute else []
            sp = "sp" in flags
            built += ["--sequence-parallel"] if sp else []
            virtual = next((f[1:] for f in flags if f[:1] == "v" and f[1:].isdigit()), None)
            built += ["--virtual-stages", virtual] if virtual else []
            run_env = dict(env, LOOM_DP_OVERLAP="0") if "nooverlap" in flags else \
                dict(env, LOOM_DP_OVERLAP="1") if "overlap" in flags else env
            extra = (["--schedule", sched] if sched else []) + ([] if exe else built)
            n = 1
            for part in mesh.split(","):
                n *= int(part.split("=")[1])
            launch = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(n)]
            cmd = [*launch, loom, "train", *args, "--mesh", mesh, "--allreduce", algo or "backend", *extra]
            spec += {"1": "+zero", "2": "+zero2", None: ""}[zero]
            spec += "+" + recompute if recompute else ""
            spec += "+sp" if sp else ""
            spec += "+v" + virtual if virtual else ""
            spec += "+nooverlap" if "nooverlap" in flags else "+overlap" if "overlap" in flags else ""
            if exe:
                spec += "+exe"
                exe_path = os.path.join(tmp, "train.exe")
                b = subprocess.run([loom, "build", model, *defines, "--mesh", mesh, "--train", *built, "-o", exe_path],
                                   env=env, capture_output=True, text=True, timeout=300)
                print(b.stdout.strip())
                if b.returncode != 0:
                    print(f"FAIL {spec}: loom build exit status {b.returncode}\n{b.stderr}")
                    failures += 1
                    continue
                cmd = [*launch, exe_path, *args[1 + len(defines):], "--allreduce", algo or "backend", *extra]
            mesh_ckpt = os.path.join(tmp, "ckpt-" + spec.replace("/", "_"))
            if resume:
                cmd += ["--checkpoint", mesh_ckpt]
            t0 = time.time()
            os.remove(log)
            r = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=180 * slow)
            dt = time.time() - t0
            got, got_val = losses(log) if r.returncode == 0 else ([], [])
            if r.returncode != 0 or len(got) != STEPS or len(got_val) != 1 or step_lines(r.stdout) != STEPS:
                print(f"FAIL {spec}: exit status {r.returncode}, {len(got)} logged steps (want {STEPS}), "
                      f"{len(got_val)} val losses, {step_lines(r.stdout)} step lines printed (rank 0 alone: "
                      f"{STEPS})\n{r.stdout}{r.stderr}")
                failures += 1
                continue
            rel = max(abs(g[0] - w[0]) / abs(w[0]) for g, w in zip(got, want))
            rel = max(rel, abs(got_val[0] - want_val[0]) / abs(want_val[0]))
            norm_rel = max(abs(g[1] - w[1]) / max(abs(w[1]), 1e-3) for g, w in zip(got, want))
            ok = rel <= REL_TOL and norm_rel <= 1e-4
            print(f"{'ok  ' if ok else 'FAIL'} {spec:24s} {n} ranks: 10 losses + val, max rel {rel:.2e} "
                  f"(tol {REL_TOL:g}); norm max rel {norm_rel:.2e}; {dt:.1f} s")
            if not ok:
                for g, w in zip(got, want):
                    print(f"    loss {g[0]:.6f} vs {w[0]:.6f}   norm {g[1]:.4f} vs {w[1]:.4f}")
                failures += 1
            if not resume:
                continue
            if want_resumed is None:  # the single-rank reference: checkpoint at step 10, resume
                os.remove(log)
                subprocess.run([loom, "train", *args, "--checkpoint", single_ckpt], env=env, capture_output=True,
                               text=True, timeout=120 * slow, check=True)
                os.remove(log)
                subprocess.run([loom, "train", *resume_args, "--resume", single_ckpt], env=env, capture_output=True,
                               text=True, timeout=120 * slow, check=True)
                want_resumed = losses(log)[0][-2:]
            sharded = any(int(p.split("=")[1]) > 1 for p in mesh.split(",") if not p.startswith("dp="))
            if sharded:
                failures += not sharded_checkpoint(loom, env, spec, mesh_ckpt, single_ckpt, args, tmp, slow)
            else:  # dp alone: one whole checkpoint, any run resumes it
                failures += not whole_checkpoint(loom, env, spec, mesh_ckpt, single_ckpt, resume_args, log,
                                                 want_resumed, slow)
            os.remove(log)
            rcmd = more_steps(cmd)
            rcmd = rcmd[:rcmd.index("--checkpoint")] + ["--resume", mesh_ckpt]
            r = subprocess.run(rcmd, env=env, capture_output=True, text=True, timeout=180 * slow)
            got_resumed = losses(log)[0][-2:] if r.returncode == 0 else []
            rel = max((abs(g[0] - w[0]) / abs(w[0]) for g, w in zip(got_resumed, want_resumed)), default=1.0)
            ok = r.returncode == 0 and len(got_resumed) == 2 and rel <= REL_TOL
            print(f"{'ok  ' if ok else 'FAIL'} {spec:24s} resumed at step {STEPS}: steps {STEPS + 1}-{STEPS + 2} "
                  f"max rel {rel:.2e} against the resumed single-rank run")
            if not ok:
                print(f"    exit status {r.returncode}: {got_resumed} vs {want_resumed}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
