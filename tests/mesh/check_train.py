"""check_train.py — `loom check --train` predicts, to the byte, what `mpirun loom train` sends.

usage: check_train.py LOOM MPIEXEC MODEL [-D name=value ...]

For each mesh below, `loom check MODEL --mesh M --train ...` prints per rank "loom train counts
N bytes a step" (the operand of every communication op of the rank's gradient program, receives
included, times micro-batches and --accum, plus the trainer's sums over dp and pp; the clip
norm's 8 bytes are not counted by loom train either) and, where the loss at init is summed too,
"step 1: 8 more". Then `mpirun loom train ... --stats` runs STEPS steps and every rank prints
"stats rank R step S: N bytes into collectives" on stderr. Every rank's every step must equal
the prediction exactly (step 1 with the 8 bytes of the loss at init); one line per rank prints
both. The same for memory: the report's "loom train holds N bytes" (params, gradients and
optimizer state as allocated: under --zero 1 the state of a 1/dp chunk) against "stats rank R
memory: N bytes of params, gradients and optimizer state". Data: pseudo-random bytes of a small alphabet, as tests/mesh/train_mesh.py."""
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

STEPS = 2
# mesh, ranks, options of both check and train: 2 micro-batches each (the pipeline's default
# schedule 1F1B under tp x pp; GPipe and 2 accumulation steps under dp x pp)
MESHES = [("tp=2,pp=2", 4, ["--microbatches", "2"]),
          ("dp=2,pp=2", 4, ["--microbatches", "2", "--schedule", "gpipe", "--accum", "2"]),
          # ZeRO: the gradients reduce-scattered and the params allgathered over dp
          ("dp=2", 2, ["--zero", "1"]),
          # dp alone: the allreduces started bucket by bucket during the backward (overlap)
          ("dp=2", 2, ["--accum", "2"]),
          ("dp=2,tp=2", 4, ["--zero", "1", "--accum", "2"]),
          # --recompute full: the block's forward collectives run again in the backward
          ("tp=2,pp=2", 4, ["--microbatches", "2", "--recompute", "full"]),
          # --sequence-parallel: reduce-scatters and allgathers over tp instead of allreduces
          ("dp=2,tp=2", 4, ["--sequence-parallel"]),
          # ZeRO stage 2: each micro-batch's gradients reduce-scattered into a 1/dp chunk
          ("dp=2", 2, ["--zero", "2", "--accum", "2"]),
          ("dp=2,tp=2", 4, ["--zero", "2", "--accum", "2"]),
          # under pp: the tied embedding's sum whole on its two stages, reduce-scattered after
          ("dp=2,pp=2", 4, ["--zero", "2", "--microbatches", "2"]),
          # interleaved 1F1B: 4 layers in 4 model chunks, 2 a stage, sends between every chunk
          ("tp=2,pp=2", 4, ["--microbatches", "2", "--virtual-stages", "2", "-D", "n_layer=4"])]
RANK = re.compile(r"^  rank (\d+) \(")
COUNTS = re.compile(r"loom train counts (\d+) bytes a step")
INIT = re.compile(r"; step 1: (\d+) more")
HOLDS = re.compile(r"loom train holds (\d+) bytes")
MEMORY = re.compile(r"^stats rank (\d+) memory: (\d+) bytes of params, gradients and optimizer state$", re.M)
MEASURED = re.compile(r"^stats rank (\d+) step (\d+): (\d+) bytes into collectives$", re.M)


def predicted(loom, model, defines, mesh, opts):
    """{rank: (bytes a step, extra bytes on step 1, bytes held)} from loom check --train."""
    r = subprocess.run([loom, "check", model, *defines, "--mesh", mesh, "--train", *opts], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"loom check exit status {r.returncode}\n{r.stdout}{r.stderr}")
    out, rank, held = {}, None, None
    for line in r.stdout.splitlines():
        m = RANK.match(line)
        if m:
            rank = int(m.group(1))
            h = HOLDS.search(line)
            held = int(h.group(1)) if h else None
        m = COUNTS.search(line)
        if m:
            init = INIT.search(line)
            out[rank] = (int(m.group(1)), int(init.group(1)) if init else 0, held)
    return out, r.stdout


def main():
    loom, mpiexec, model = sys.argv[1:4]
    defines = sys.argv[4:]
    env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader", LOOM_COLL_TIMEOUT="60")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        rng = np.random.default_rng(7)
        with open(data, "wb") as f:
            f.write(rng.choice(np.frombuffer(b"abcdefgh ij\n", np.uint8), 40000).tobytes())
        for mesh, n, opts in MESHES:
            want, report = predicted(loom, model, defines, mesh, opts)
            if sorted(want) != list(range(n)):
                print(f"FAIL {mesh}: the report has counts for ranks {sorted(want)}, want 0..{n - 1}\n{report}")
                failures += 1
                continue
            cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(n), loom, "train",
                   model, *defines, "--data", data, "--steps", str(STEPS), "--sample", "0", "--eval-batches", "1",
                   "--mesh", mesh, *opts, "--stats"]
            t0 = time.time()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            got = {}
            for rank, step, b in MEASURED.findall(r.stderr):
                got[(int(rank), int(step))] = int(b)
            if r.returncode != 0 or len(got) != n * STEPS:
                print(f"FAIL {mesh}: exit status {r.returncode}, {len(got)} stats lines (want {n * STEPS})\n"
                      f"{r.stdout}{r.stderr}")
                failures += 1
                continue
            memory = {int(rank): int(b) for rank, b in MEMORY.findall(r.stderr)}
            for rank in range(n):
                per_step, init, held = want[rank]
                expect = [per_step + (init if s == 1 else 0) for s in range(1, STEPS + 1)]
                seen = [got[(rank, s)] for s in range(1, STEPS + 1)]
                ok = seen == expect and held is not None and memory.get(rank) == held
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {mesh:10s} {' '.join(opts):40s} rank {rank}: predicted {expect} "
                      f"bytes (steps 1..{STEPS}), measured {seen}; holds {held} bytes, measured {memory.get(rank)}")
            print(f"     {mesh}: {time.time() - t0:.1f} s")
    print("check_train: " + ("FAILED" if failures else "all predictions exact"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
