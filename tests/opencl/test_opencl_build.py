#!/usr/bin/env python3
"""test_opencl_build.py LOOM [TARGET] — `loom build --target opencl -o EXE` against `loom run`.

Tiny GPT-2 (test_cpu_models.py's weights and inputs), with every input and without the
optional `targets`: the executable (it renders its kernels' OpenCL C at start-up; needs the ICD
loader and CLBlast, no LLVM) must write the outputs of `loom run --target opencl` — without
targets logits and not loss — bit for bit (same plan, same kernels, same device), and the
reference interpreter's within |err| <= 1e-4 · max(1, |ref|); max abs / rel errors printed. TARGET
(default $LOOM_TEST_OPENCL_TARGET or "opencl") picks the device; no OpenCL platform prints
"skipped"."""
import os
import re
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402
import test_cpu_models as cm  # noqa: E402


def sh(cmd):
    proc = harness.run_proc(cmd, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def main():
    args = harness.opencl_args("test_opencl_build.py")
    if args is None:
        return
    loom, target = args
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_ocl_build_") as tmp:
        title, model, cfg, w, inputs, optional = cm.tiny_cases(tmp)[0]
        wpath = os.path.join(tmp, "w.safetensors")
        harness.write_safetensors(wpath, w)
        defines = [x for k, v in cfg.items() for x in ("-D", f"{k}={v}")]
        exe = os.path.join(tmp, "model_exe")
        print(title + ":", sh([loom, "build", os.path.join(harness.REPO, "models", model), *defines, "--target", target,
                              "-o", exe]).strip())
        libs = sh(["ldd", exe])
        print("  shared libraries:", ", ".join(sorted(set(re.findall(r"lib[A-Za-z0-9_+-]+", libs)))))
        if "llvm" in libs.lower():
            print("  needs LLVM FAIL")
            ok = False
        ok &= check_exe(loom, exe, target, model, cfg, wpath, inputs, "every input", tmp)
        # regression: without the optional targets the executable writes logits and not loss, as
        # loom run does (it used to refuse the file: "missing input 'targets'")
        assert optional == ["targets"]
        ok &= check_exe(loom, exe, target, model, cfg, wpath, {"tokens": inputs["tokens"]}, "without targets", tmp,
                        want={"logits"})
    if not ok:
        print("FAILED")
        sys.exit(1)
    print(f"the {target} executable matches loom run")


def check_exe(loom, exe, target, model, cfg, wpath, inputs, what, tmp, want=None):
    """The executable on inputs against `loom run --target TARGET` (the same outputs, bit for bit;
    exactly want when given) and the reference interpreter."""
    ipath = os.path.join(tmp, "i.safetensors")
    harness.write_safetensors(ipath, inputs)
    opath = os.path.join(tmp, "exe.safetensors")
    sh([exe, "--weights", wpath, "--inputs", ipath, "--outputs", opath])
    got = harness.read_safetensors(opath)
    run, _ = cm.run(loom, model, cfg, wpath, ipath, os.path.join(tmp, "run.safetensors"), target)
    ref, _ = cm.run(loom, model, cfg, wpath, ipath, os.path.join(tmp, "ref.safetensors"), "ref",
                    ["--precision", "f32"])
    print(f"  {what}: exe writes {', '.join(sorted(got))}")
    ok = True
    if set(got) != set(run) or (want is not None and set(got) != want):
        print(f"  outputs differ: exe {sorted(got)}, loom run {sorted(run)}"
              f"{'' if want is None else f', want {sorted(want)}'} FAIL")
        ok = False
    for name in sorted(run):
        if name not in got:
            continue
        a, b = np.asarray(got[name], np.float64), np.asarray(run[name], np.float64)
        same = a.shape == b.shape and np.array_equal(a, b)
        diff = float(np.abs(a - b).max()) if same or a.shape == b.shape else float("inf")
        print(f"  {name}: exe vs loom run --target {target}: max abs diff {diff:.2e} {'OK' if same else 'FAIL'}")
        ok &= same
        print("  vs reference:", end="")
        ok &= cm.compare(name, got[name], ref[name])
    return ok


if __name__ == "__main__":
    main()
