#!/usr/bin/env python3
"""test_opencl_gemm_models.py LOOM [TARGET] — tiny GPT-2 and tiny BERT (erf GELU fused into a GEMM)
through `loom run --target opencl` with every GEMM on the generated kernel (LOOM_OCL_GEMM=generated:
runtime/opencl/gemm_opencl.c, runtime/opencl/gemm_source.c) against the reference interpreter
(`--target ref --precision f32`); tolerance as test_opencl_models.py: |opencl - ref| <= 1e-4 ·
max(1, |ref|) elementwise, max errors printed. Then LOOM_OCL_GEMM_VERBOSE=1 must name the
chosen kernel per shape, and a bad LOOM_OCL_GEMM must be a clear error. No OpenCL platform
prints "skipped"."""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402
import test_cpu_models as cm  # noqa: E402


def run(loom, model, cfg, wpath, ipath, out, target, env):
    cmd = [loom, "run", os.path.join(harness.REPO, "models", model)] + sum([["-D", f"{k}={v}"] for k, v in cfg.items()],
                                                                            []) + \
          ["--weights", wpath, "--inputs", ipath, "--outputs", out, "--target", target]
    return harness.run_proc(cmd, env=dict(os.environ, **env))


def main():
    args = harness.opencl_args("test_opencl_gemm_models.py")
    if args is None:
        return
    loom, target = args
    os.environ["LOOM_OCL_GEMM"] = "generated"  # inherited by every `loom run` below
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_ocl_gemm_") as tmp:
        cases = cm.tiny_cases(tmp)
        for title, model, cfg, w, inputs, _ in (cases[0], cases[2]):
            wpath = os.path.join(tmp, "weights.safetensors")
            harness.write_safetensors(wpath, w)
            ok &= harness.check_targets(f"{title}, generated GEMMs", loom, model, cfg, wpath, inputs, tmp,
                                        ("ref", ["--precision", "f32"]), (target, []))
        title, model, cfg, w, inputs, _ = cases[0]
        wpath = os.path.join(tmp, "weights.safetensors")
        harness.write_safetensors(wpath, w)
        ipath = os.path.join(tmp, "inputs.safetensors")
        harness.write_safetensors(ipath, inputs)
        out = os.path.join(tmp, "o.safetensors")
        p = run(loom, model, cfg, wpath, ipath, out, target, {"LOOM_OCL_GEMM": "auto", "LOOM_OCL_GEMM_VERBOSE": "1"})
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("loom: opencl gemm ")]
        print(f"{title}, auto: {len(lines)} shapes measured; first: {lines[0] if lines else '(none)'}")
        if p.returncode != 0 or not lines or not all(" -> " in ln for ln in lines):
            print(f"FAIL: LOOM_OCL_GEMM_VERBOSE=1 printed no choice (exit {p.returncode})\n{p.stderr}")
            ok = False
        p = run(loom, model, cfg, wpath, ipath, out, target, {"LOOM_OCL_GEMM": "fast"})
        want = "loom: error: LOOM_OCL_GEMM='fast': expected auto, clblast, generated or generated:I (I in 0..4)"
        if p.returncode != 1 or want not in p.stderr:
            print(f"FAIL: LOOM_OCL_GEMM=fast: exit {p.returncode}, expected '{want}' in:\n{p.stderr}")
            ok = False
        else:
            print("LOOM_OCL_GEMM=fast: rejected with exit 1")
    print("ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
