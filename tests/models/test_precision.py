#!/usr/bin/env python3
"""test_precision.py LOOM — `loom run --precision bf16|fp16` (the lower-precision pass:
activations and GEMM/attention operands in the half type, reductions and params in f32) on
tiny GPT-2, LLaMA (GQA) and BERT, against the f64 reference interpreter (`--target ref
--precision f64`) on the same weights and inputs.

Targets: `cpu` (half buffers in the plan; GEMMs read bf16/f16 operands as they are through
oneDNN — AVX-512 BF16 here — attention widened to f32), `cpu/openblas` (LOOM_CPU_GEMM=openblas:
the path of CPUs without those instructions, every half operand widened for OpenBLAS), `ref` (the
interpreter on the lowered graph, every value rounded to its dtype after each op) and, with an
OpenCL platform, `opencl` (its GEMM and attention take f32: the pass keeps them in f32 on
half-rounded operands and rounds their results, so the numbers are the CPU's; held to the same
tolerances). Training: one
forward + backward of tiny GPT-2 (`--passes=dce,cse,autodiff,fuse`: lower-precision joins after
autodiff) on the CPU and on OpenCL, every gradient compared. `loom build --precision bf16`: the executable's
outputs are bit-identical to `loom run`'s.

Error, per output: max|got - ref| / max|ref| (normwise: half rounding is relative to the
magnitudes in play, so elements near zero are not held to a relative bound). Tolerances,
measured first (2026-12-05, worst of the three models, cpu, ref and opencl):
    fp16: 5e-3   (measured ≤ 3.1e-3: BERT pooler_output on cpu and ref, 2.2e-3 on opencl)
    bf16: 6e-2   (measured ≤ 4.1e-2: BERT pooler_output on ref, 1.8e-2 cpu, 2.3e-2 opencl)
    gradients of tiny GPT-2: fp16 1e-2, bf16 6e-2 (measured ≤ 4.9e-3 and ≤ 3.2e-2)
The test can fail the other way too: each model's first output must differ from the f64
reference by more than a floor (fp16 2e-4, bf16 2e-3; the f32 path's errors are ~1e-6), which
shows the run really rounded to the half type."""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_cpu_models  # noqa: E402

TOL = {"fp16": 5e-3, "bf16": 6e-2}
GRAD_TOL = {"fp16": 1e-2, "bf16": 6e-2}
FLOOR = {"fp16": 2e-4, "bf16": 2e-3}
TRAIN = "dce,cse,autodiff,fuse"


def normwise(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = float(np.abs(want).max()) if want.size else 0.0
    err = float(np.abs(got - want).max()) if want.size else 0.0
    return err, err / scale if scale > 0 else err


def check(label, out, ref, tol, floor_name=None, floor=0.0):
    ok = set(out) == set(ref)
    if not ok:
        print(f"  {label}: outputs {sorted(out)}, expected {sorted(ref)} FAIL")
    worst = ("", 0.0)
    for name in ref:
        if name not in out:
            continue
        if out[name].shape != ref[name].shape:
            print(f"  {label} {name}: shape {out[name].shape}, expected {ref[name].shape} FAIL")
            ok = False
            continue
        abs_err, rel = normwise(out[name], ref[name])
        good = bool(np.all(np.isfinite(out[name]))) and rel <= tol
        if name == floor_name and rel <= floor:
            print(f"  {label} {name}: error {rel:.2e} is below the floor {floor:g}: not rounded to half? FAIL")
            good = False
        if not good or len(ref) <= 4:
            print(f"  {label} {name}: max abs err {abs_err:.2e}, normwise rel err {rel:.2e} (tol {tol:g}) "
                  f"{'OK' if good else 'FAIL'}")
        if rel > worst[1]:
            worst = (name, rel)
        ok &= good
    if len(ref) > 4:
        print(f"  {label}: {len(ref)} outputs, worst normwise rel err {worst[1]:.2e} ({worst[0]}, tol {tol:g}) "
              f"{'OK' if ok else 'FAIL'}")
    return ok


def run(loom, model, cfg, wpath, ipath, opath, target, extra):
    """harness.run_target; the target `cpu/openblas` is the CPU with LOOM_CPU_GEMM=openblas."""
    if target != "cpu/openblas":
        return harness.run_target(loom, model, cfg, wpath, ipath, opath, target, extra)
    old = os.environ.get("LOOM_CPU_GEMM")
    os.environ["LOOM_CPU_GEMM"] = "openblas"
    try:
        return harness.run_target(loom, model, cfg, wpath, ipath, opath, "cpu", extra)
    finally:
        if old is None:
            del os.environ["LOOM_CPU_GEMM"]
        else:
            os.environ["LOOM_CPU_GEMM"] = old


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_precision.py LOOM")
    loom = sys.argv[1]
    ok = True
    probe = subprocess.run([loom, "devices"], capture_output=True, text=True)
    targets = ("cpu", "cpu/openblas", "ref") if "no OpenCL platform" in probe.stdout + probe.stderr else (
        "cpu", "cpu/openblas", "ref", "opencl")
    if "opencl" not in targets:
        print("opencl: skipped (no OpenCL platform)")
    with tempfile.TemporaryDirectory(prefix="loom_precision_") as tmp:
        cases = test_cpu_models.tiny_cases(tmp)
        for title, model, cfg, w, inputs, _ in cases:
            wpath, ipath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "in.safetensors")
            harness.write_safetensors(wpath, w)
            harness.write_safetensors(ipath, inputs)
            ref, _ = harness.run_target(loom, model, cfg, wpath, ipath, os.path.join(tmp, "ref.safetensors"), "ref",
                                        ["--precision", "f64"])
            first = next(iter(ref))
            print(f"{title}:")
            for prec in ("fp16", "bf16"):
                for target in targets:
                    out, dt = run(loom, model, cfg, wpath, ipath, os.path.join(tmp, "out.safetensors"),
                                  target, ["--precision", prec])
                    ok &= check(f"{prec} {target} ({dt:.2f} s)", out, ref, TOL[prec], first, FLOOR[prec])
        # a training step's gradients: tiny GPT-2 (the first case)
        title, model, cfg, w, inputs, _ = cases[0]
        wpath, ipath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "in.safetensors")
        harness.write_safetensors(wpath, w)
        harness.write_safetensors(ipath, inputs)
        ref, _ = harness.run_target(loom, model, cfg, wpath, ipath, os.path.join(tmp, "ref.safetensors"), "ref",
                                    ["--precision", "f64", "--passes=dce,cse,autodiff"])
        print(f"{title}, forward + backward (--passes={TRAIN}):")
        for prec in ("fp16", "bf16"):
            for target in (t for t in targets if t != "ref"):
                out, dt = run(loom, model, cfg, wpath, ipath, os.path.join(tmp, "out.safetensors"),
                              target, ["--precision", prec, f"--passes={TRAIN}"])
                ok &= check(f"{prec} {target} ({dt:.2f} s)", out, ref, GRAD_TOL[prec])
        # `loom build --precision bf16`: the executable's outputs equal `loom run`'s bit for bit
        exe = os.path.join(tmp, "gpt2_bf16")
        cmd = [loom, "build", os.path.join(harness.REPO, "models", model), "--precision", "bf16", "-o", exe]
        for k, v in cfg.items():
            cmd += ["-D", f"{k}={v}"]
        built = subprocess.run(cmd, capture_output=True, text=True)
        ran = built.returncode == 0 and subprocess.run(
            [exe, "--weights", wpath, "--inputs", ipath, "--outputs", os.path.join(tmp, "exe.safetensors")],
            capture_output=True, text=True).returncode == 0
        if ran:
            harness.run_target(loom, model, cfg, wpath, ipath, os.path.join(tmp, "run.safetensors"), "cpu",
                               ["--precision", "bf16"])
            with open(os.path.join(tmp, "exe.safetensors"), "rb") as a, open(os.path.join(tmp, "run.safetensors"), "rb") as b:
                same = a.read() == b.read()
        else:
            same = False
            sys.stderr.write(built.stdout + built.stderr)
        print(f"{title}, loom build --precision bf16: outputs {'bit-identical to' if same else 'DIFFER from'} "
              f"loom run's {'OK' if same else 'FAIL'}")
        ok &= same
    print(f"precision: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
