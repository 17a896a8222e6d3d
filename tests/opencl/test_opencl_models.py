#!/usr/bin/env python3
"""test_opencl_models.py LOOM [TARGET] — whole models through `loom run --target opencl` (the
OpenCL executor: generated OpenCL C kernels, CLBlast GEMMs, the generated attention kernel)
against the reference interpreter (`--target ref --precision f32`), every output compared with
the max abs / rel error printed; tolerance: |opencl - ref| <= 1e-4 · max(1, |ref|) elementwise.

Cases: the tiny GPT-2, LLaMA (GQA, rope, rmsnorm, swiglu) and BERT (padding mask, erf GELU) of
tests/models/test_cpu_models.py, with and without their optional targets; then, when the
`--passes` option runs autodiff (a training step's forward + backward), tiny GPT-2's loss and
every gradient against the CPU backend's. TARGET (default $LOOM_TEST_OPENCL_TARGET or
"opencl") picks the device; no OpenCL platform prints "skipped"."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402
import test_cpu_models as cm  # noqa: E402


def check(title, loom, target, model, cfg, wpath, inputs, tmp, drop=(), passes=None, against="ref"):
    extra = ["--passes", passes] if passes else []
    want = (against, (["--precision", "f32"] if against == "ref" else []) + extra)
    return harness.check_targets(title, loom, model, cfg, wpath, inputs, tmp, want, (target, extra), drop)


def main():
    args = harness.opencl_args("test_opencl_models.py")
    if args is None:
        return
    loom, target = args
    with tempfile.TemporaryDirectory(prefix="loom_ocl_") as tmp:
        ok = cm.check_tiny_models(loom, tmp, ("ref", ["--precision", "f32"]), (target, []))
        # a training step's forward and backward, when autodiff lowers (against the CPU backend)
        title, model, cfg, w, inputs, _ = cm.tiny_cases(tmp)[0]
        wpath = os.path.join(tmp, "weights.safetensors")
        harness.write_safetensors(wpath, w)
        ipath = os.path.join(tmp, "inputs.safetensors")
        harness.write_safetensors(ipath, inputs)
        probe = subprocess.run([loom, "run", os.path.join(harness.REPO, "models", model)] +
                               sum([["-D", f"{k}={v}"] for k, v in cfg.items()], []) +
                               ["--weights", wpath, "--inputs", ipath, "--outputs", os.path.join(tmp, "p.safetensors"),
                                "--target", "cpu", "--passes", "dce,cse,autodiff,fuse"], capture_output=True, text=True)
        if probe.returncode == 0:
            ok &= check(f"{title} forward + backward", loom, target, model, cfg, wpath, inputs, tmp,
                        passes="dce,cse,autodiff,fuse", against="cpu")
        else:
            print(f"{title} forward + backward: not run (the CPU path does not lower it: "
                  f"{(probe.stderr.strip().splitlines() or ['?'])[0]})")
    if not ok:
        print("FAILED")
        sys.exit(1)
    print(f"all {target} model outputs match")


if __name__ == "__main__":
    main()
