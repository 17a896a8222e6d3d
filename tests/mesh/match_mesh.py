"""match_mesh.py — collective matching at the start of `mpirun loom train --mesh`.

usage: match_mesh.py LOOM MPIEXEC MODEL [-D name=value ...]

The test-only hook LOOM_TEST_BREAK_SHARD=RANK:PARAM (passes/mesh.h) gives one rank a broken
shard layout. Without the check the job would hang in a collective until the timeout (or
compute garbage); with it every rank exchanges its sequence of communication at start-up
(engine/mesh_exec.c mesh_exec_match) and reaches the same verdict before any step: the job must
exit with status 1 within LIMIT seconds, print no step line, and print the mismatch exactly
once (rank 0 says it), naming both ranks, the position and each side's source op and .loom line.
The same meshes without the hook must train (one step). Prints each job's seconds."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

LIMIT = 60  # seconds; the collectives' timeout is set far beyond it, so a hang fails the test
CASES = [  # mesh, ranks, hook, the expected line (without the "loom: error: " prefix's model path)
    ("tp=2", 2, "1:h.1.attn.c_proj.weight",
     "loom: error: collectives do not match in the tp group of ranks 0, 1: #4 on rank 0 is allreduce over tp f32 x "
     "1024 (sum, micro-batch 0 forward) of matmul at MODEL:48:29; on rank 1 it is allgather over tp f32 x 512 "
     "(dim 2, micro-batch 0 forward) of reshape at MODEL:66:12"),
    ("tp=2,pp=2", 4, "3:h.1.mlp.c_fc.weight",
     "loom: error: collectives do not match in the tp group of ranks 1, 3: #2 on rank 1 is allreduce over tp f32 x "
     "512 (sum, micro-batch 0 forward) of matmul at MODEL:56:47; on rank 3 it is reduce_scatter over tp f32 x 2048 "
     "(dim 2, micro-batch 0 forward) of matmul at MODEL:56:19"),
]


def main():
    loom, mpiexec, model, defines = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        rng = np.random.default_rng(7)
        with open(data, "wb") as f:
            f.write(rng.choice(np.frombuffer(b"abcdefgh ij\n", np.uint8), 20000).tobytes())
        for mesh, n, hook, want in CASES:
            want = want.replace("MODEL", model)
            for broken in (True, False):
                env = dict(os.environ, LOOM_NUM_THREADS="1", LOOM_COLL_TIMEOUT="600")
                env.pop("LOOM_TEST_BREAK_SHARD", None)
                if broken:
                    env["LOOM_TEST_BREAK_SHARD"] = hook
                cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(n),
                       "-x", "LOOM_NUM_THREADS", "-x", "LOOM_COLL_TIMEOUT"] + (["-x", "LOOM_TEST_BREAK_SHARD"] if broken else []) + [
                       loom, "train", model, *defines, "--data", data, "--steps", "1", "--sample", "0",
                       "--eval-batches", "1", "--mesh", mesh]
                t0 = time.time()
                try:
                    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=LIMIT,
                                       start_new_session=True)
                except subprocess.TimeoutExpired:
                    print(f"FAIL {mesh} {'broken' if broken else 'intact'}: still running after {LIMIT} s (a hang)")
                    failures += 1
                    continue
                secs = time.time() - t0
                out = r.stdout + r.stderr
                steps = [l for l in r.stdout.splitlines() if l.startswith("step ")]
                if broken:
                    lines = [l for l in out.splitlines() if l == want]
                    errors = [l for l in out.splitlines() if l.startswith("loom: error:")]
                    ok = r.returncode != 0 and len(lines) == 1 and len(errors) == 1 and not steps
                    print(f"{'ok' if ok else 'FAIL'} {mesh} broken on rank {hook}: exit {r.returncode} after "
                          f"{secs:.1f} s, the expected line {len(lines)} time(s), {len(errors)} error line(s), "
                          f"{len(steps)} step line(s)")
                    if not ok:
                        print(f"  want: {want}\n  output:\n{out}")
                else:
                    ok = r.returncode == 0 and len(steps) == 1
                    print(f"{'ok' if ok else 'FAIL'} {mesh} intact: exit {r.returncode} after {secs:.1f} s, "
                          f"{len(steps)} step line(s)")
                    if not ok:
                        print(out)
                failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
