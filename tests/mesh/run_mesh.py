"""run_mesh.py — `mpirun -np N loom run MODEL --mesh ...` against the single-rank `loom run`.

usage: run_mesh.py LOOM MPIEXEC MODEL MESH[@ALGO][+sp][+exe][:MESH...] [-D name=value ...]
(ALGO: the --allreduce algorithm, backend by default; +sp: with --sequence-parallel (the
reference stays one rank without); +exe: the mesh runs as a cluster
executable from `loom build --mesh MESH`, whose outputs must also be bit-identical to `loom run
--mesh MESH`'s when that ran before it in the list). `--target opencl` among the -D options runs
everything on OpenCL — the reference, the meshes and the executables (built for OpenCL ranks) —
and is skipped without an OpenCL device; there the executable's outputs must be within 1e-5 of
`loom run --mesh`'s (PoCL's results differ in the last bits from one run to the next).

Weights: `loom init` perturbed by N(0, 0.05) in every element (so biases and norm weights are
not 0 and 1 and a wrongly sliced one shows); inputs: random tokens and targets. The single-rank
CPU run is the reference; each mesh runs with one process per rank (oversubscribed, one
thread each) and rank 0's outputs must match within 1e-5 relative (max |got - want| / max
|want|). One line per mesh and output prints the max abs and rel errors and the wall time.

With LOOM_TEST_EXPECT_COLL=NAME in the environment, each `loom run --mesh` runs with --stats
and every rank's stats line must name the collectives backend NAME (so a run meant to go
through NCCL cannot pass by going through MPI)."""
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
from harness import read_safetensors, write_safetensors  # noqa: E402

REL_TOL = 1e-5


def main():
    loom, mpiexec, model, meshes = sys.argv[1:5]
    defines = sys.argv[5:]
    if "--target" in defines:
        devices = subprocess.run([loom, "devices"], capture_output=True, text=True).stdout
        if not re.search(r"^opencl:\d+:\d+ ", devices, re.M):
            print(f"skipped: no OpenCL device\n{devices}")
            return 0
    env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader", LOOM_COLL_TIMEOUT="60")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        w, x, ref = (os.path.join(tmp, n) for n in ("w.safetensors", "x.safetensors", "ref.safetensors"))
        model_defines = [a for i, a in enumerate(defines) if a != "--target" and (i == 0 or defines[i - 1] != "--target")]
        subprocess.run([loom, "init", model, *model_defines, "-o", w], check=True, env=env, stdout=subprocess.DEVNULL)
        rng = np.random.default_rng(5)
        weights = {k: (v + rng.normal(0, 0.05, v.shape)).astype(v.dtype) for k, v in read_safetensors(w).items()}
        write_safetensors(w, weights)
        d = dict(a.split("=", 1) for a in defines if "=" in a and not a.startswith("-"))
        batch, seq, vocab = int(d.get("batch", 1)), int(d.get("seq", 8)), int(d["vocab"])
        write_safetensors(x, {"tokens": rng.integers(0, vocab, (batch, seq)).astype(np.int32),
                              "targets": rng.integers(0, vocab, (batch, seq)).astype(np.int32)})
        subprocess.run([loom, "run", model, *defines, "--weights", w, "--inputs", x, "--outputs", ref], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        want = read_safetensors(ref)
        by_mesh = {}  # mesh -> outputs of `loom run --mesh`
        for spec in meshes.split(":"):
            spec, *flags = spec.split("+")
            exe, sp = "exe" in flags, ["--sequence-parallel"] if "sp" in flags else []
            mesh, _, algo = spec.partition("@")
            spec += "+sp" if sp else ""
            key = mesh + ("+sp" if sp else "")  # runs compared with each other
            n = 1
            for part in mesh.split(","):
                n *= int(part.split("=")[1])
            out = os.path.join(tmp, "out.safetensors")
            launch = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(n)]
            cmd = [*launch, loom, "run", model, *defines, "--mesh", mesh, *sp]
            t0 = time.time()
            if exe:
                cmd = [os.path.join(tmp, "cluster.exe")]
                b = subprocess.run([loom, "build", model, *defines, "--mesh", mesh, *sp, "-o", cmd[0]], env=env,
                                   capture_output=True, text=True, timeout=300)
                print(b.stdout.strip())
                if b.returncode != 0:
                    print(f"FAIL {mesh}+exe: loom build exit status {b.returncode}\n{b.stderr}")
                    failures += 1
                    continue
                cmd = [*launch, cmd[0]]
            cmd += ["--allreduce", algo or "backend", "--weights", w, "--inputs", x, "--outputs", out]
            expect_coll = os.environ.get("LOOM_TEST_EXPECT_COLL")
            if expect_coll and not exe:
                cmd.append("--stats")
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            dt = time.time() - t0
            if r.returncode != 0:
                print(f"FAIL {mesh}: exit status {r.returncode}\n{r.stdout}{r.stderr}")
                failures += 1
                continue
            if expect_coll and not exe:
                said = r.stderr.count(f" ms, {expect_coll})\n")
                failures += said != n
                print(f"{'ok  ' if said == n else 'FAIL'} {mesh}: {said} of {n} ranks say their collectives went "
                      f"through {expect_coll}")
            got = read_safetensors(out)
            if not exe:
                by_mesh[key] = got
            elif key in by_mesh and "--target" not in defines:
                same = all(np.array_equal(got[k], v) for k, v in by_mesh[key].items())
                failures += not same
                print(f"{'ok  ' if same else 'FAIL'} {key}+exe: outputs {'' if same else 'not '}bit-identical to "
                      f"`loom run --mesh {mesh}{' --sequence-parallel' if sp else ''}`")
            elif key in by_mesh:  # PoCL: two runs of the same program differ in the last bits
                rel = max(float(np.abs(got[k].astype(np.float64) - v).max() / max(np.abs(v).max(), 1e-30))
                          for k, v in by_mesh[key].items())
                failures += not rel <= REL_TOL
                print(f"{'ok  ' if rel <= REL_TOL else 'FAIL'} {mesh}+exe: outputs within {rel:.3g} of `loom run "
                      f"--mesh {mesh}` on the same target (tol {REL_TOL:g})")
            for name, ref_v in want.items():
                g = got.get(name)
                if g is None or g.shape != ref_v.shape:
                    print(f"FAIL {mesh}: output {name} missing or of another shape")
                    failures += 1
                    continue
                err = np.abs(g.astype(np.float64) - ref_v.astype(np.float64))
                rel = err.max() / max(np.abs(ref_v).max(), 1e-30)
                ok = rel <= REL_TOL
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(model)} --mesh {spec + ('+exe' if exe else ''):<14} {n} ranks {name:<7} "
                      f"max abs err {err.max():.3g}, max rel err {rel:.3g} ({dt:.1f} s)")
            os.remove(out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
