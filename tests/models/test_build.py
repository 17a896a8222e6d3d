#!/usr/bin/env python3
"""test_build.py LOOM — `loom build` executables against `loom run`.

For tiny GPT-2, tiny LLaMA and tiny BERT (the weights and inputs of test_cpu_models.py):
`loom build MODEL -D ... -o EXE`, then `EXE --weights W --inputs I --outputs O`, with every
input and without each optional one (GPT-2 and LLaMA without `targets`). Checks:
  - the executable writes the outputs `loom run --target cpu` writes (without targets: logits,
    not loss — the executable used to refuse such a file), each equal to loom run's bit for bit
    (same plan, same kernels, same runtime), and the reference interpreter's (`--target ref
    --precision f32`) within |err| <= 1e-4 · max(1, |ref|), max abs / rel errors printed;
  - the executable needs no LLVM (no libLLVM in `readelf -d` NEEDED nor in ldd);
  - --stats reports the planned and measured activation peak, and for GPT-2 small's widths at
    seq 64 they agree within 10%.
Bad payloads, options and paths are in tests/errors/build.test."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_cpu_models  # noqa: E402


def sh(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    return proc.stdout


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_build.py LOOM")
    loom = sys.argv[1]
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_build_") as tmp:
        for title, model, cfg, w, inputs, optional in test_cpu_models.tiny_cases(tmp):
            wpath = os.path.join(tmp, "weights.safetensors")
            harness.write_safetensors(wpath, w)
            defines = [x for k, v in cfg.items() for x in ("-D", f"{k}={v}")]
            exe = os.path.join(tmp, "model_exe")
            print(title + ":")
            print("   ", sh([loom, "build", os.path.join(harness.REPO, "models", model), *defines, "-o", exe]).strip())

            needed = sh(["readelf", "-d", exe])
            libs = sh(["ldd", exe])
            llvm = [l for l in (needed + libs).splitlines() if "llvm" in l.lower()]
            print(f"  shared libraries: {', '.join(sorted(set(re.findall(r'lib[A-Za-z0-9_+-]+', libs))))}")
            if llvm:
                print(f"  needs LLVM: {llvm} FAIL")
                ok = False

            ok &= check_exe(loom, exe, model, defines, wpath, inputs, "every input", tmp)
            # regression: an optional input may be absent, as for loom run (the executable used to
            # refuse the file: "missing input 'targets'"); the outputs that need it are dropped
            for name in optional:
                given = {k: v for k, v in inputs.items() if k != name}
                ok &= check_exe(loom, exe, model, defines, wpath, given, f"without {name}", tmp,
                                absent=["loss"] if name == "targets" else [])
        ok &= check_memory(loom, tmp)
    if not ok:
        print("FAILED")
        sys.exit(1)
    print("all loom build executables match loom run")


def check_exe(loom, exe, model, defines, wpath, inputs, what, tmp, absent=()):
    """The executable on inputs against `loom run --target cpu` (bit for bit, the same outputs) and
    the reference interpreter; outputs in absent must not be written."""
    ipath = os.path.join(tmp, "inputs.safetensors")
    harness.write_safetensors(ipath, inputs)
    ok = True
    outs = {}
    for name, cmd in (("exe", [exe, "--weights", wpath, "--inputs", ipath, "--stats"]),
                      ("cpu", [loom, "run", os.path.join(harness.REPO, "models", model), *defines,
                               "--weights", wpath, "--inputs", ipath, "--target", "cpu"]),
                      ("ref", [loom, "run", os.path.join(harness.REPO, "models", model), *defines,
                               "--weights", wpath, "--inputs", ipath, "--target", "ref",
                               "--precision", "f32"])):
        opath = os.path.join(tmp, f"{name}.safetensors")
        text = sh(cmd + ["--outputs", opath])
        for line in text.splitlines():
            if line.startswith("cpu: activation peak"):
                print("   ", line)
        outs[name] = harness.read_safetensors(opath)
    print(f"  {what}: exe writes {', '.join(sorted(outs['exe']))}")
    if set(outs["exe"]) != set(outs["cpu"]) or set(outs["exe"]) != set(outs["ref"]):
        print(f"  outputs differ: exe {sorted(outs['exe'])}, cpu {sorted(outs['cpu'])}, "
              f"ref {sorted(outs['ref'])} FAIL")
        return False
    for out in absent:
        if out in outs["exe"]:
            print(f"  {out} written though an input it needs is absent FAIL")
            ok = False
    for out in sorted(outs["exe"]):
        got, cpu = outs["exe"][out], outs["cpu"][out]
        same = got.dtype == cpu.dtype and got.shape == cpu.shape and got.tobytes() == cpu.tobytes()
        diff = int(np.sum(got != cpu)) if got.shape == cpu.shape else -1
        print(f"  {out}: exe vs loom run --target cpu: {'bit-identical' if same else f'{diff} elements differ'} "
              f"{'OK' if same else 'FAIL'}")
        ok &= same
        ok &= test_cpu_models.compare(f"{out} (exe vs ref)", got, outs["ref"][out])
    return ok


def check_memory(loom, tmp):
    """`loom run --stats`: the arena pages a forward touches (measured with mincore) agree with
    the planned activation peak within 10%, for GPT-2 small's widths at seq 64 (2 layers, a
    2048-token vocabulary, to stay fast; the arena is per-layer sized and the same as the full
    model's)."""
    model = os.path.join(harness.REPO, "models", "gpt2.loom")
    defines = ["-D", "n_layer=2", "-D", "vocab=2048", "-D", "seq=64"]
    wpath = os.path.join(tmp, "gpt2_small2.safetensors")
    ipath = os.path.join(tmp, "tokens64.safetensors")
    sh([loom, "init", model, *defines, "--seed", "1", "-o", wpath])
    harness.write_safetensors(ipath, {"tokens": np.random.default_rng(5).integers(0, 2048, (1, 64)).astype(np.int32)})
    out = sh([loom, "run", model, *defines, "--weights", wpath, "--inputs", ipath, "--outputs",
              os.path.join(tmp, "o.safetensors"), "--stats"])
    m = re.search(r"activation peak planned ([0-9.]+) MiB, measured ([0-9.]+) MiB", out)
    if not m:
        print(f"GPT-2 small widths, seq 64: no activation peak in --stats FAIL\n{out}")
        return False
    planned, measured = float(m.group(1)), float(m.group(2))
    good = planned > 0 and abs(measured / planned - 1) <= 0.10
    print(f"GPT-2 small widths, seq 64: activation peak planned {planned:.2f} MiB, measured {measured:.2f} MiB "
          f"(tol 10%) {'OK' if good else 'FAIL'}")
    return good


if __name__ == "__main__":
    main()
