#!/usr/bin/env python3
"""test_examples.py — the C API as a user has it: `cmake --install` the build into a fresh prefix,
compile examples/*.c against the installed include/loom.h and library with
`pkg-config --cflags --libs loom` (libloom.so, and run_model also with `--static` against
libloom.a), and run them:

- run_model on a tiny GPT-2 (weights from the installed `loom init`) prints the last position's
  first eight logits: they must equal what the installed `loom run --target cpu` writes for the
  same tokens, bit for bit (both are the engine's CPU path; printed with %.9g, which
  round-trips an f32);
- train_steps prints each step's loss, lr and norm and the final validation loss: they must
  equal, as text, the step lines of `loom train` with the same options;
- a model with an error makes the example exit 1 with loom's own message on stderr.

Usage: test_examples.py SOURCE_DIR BUILD_DIR [EXTRA_CFLAGS]"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from harness import read_safetensors, write_safetensors  # noqa: E402

import numpy as np  # noqa: E402

SRC, BUILD = sys.argv[1], sys.argv[2]
EXTRA = sys.argv[3].split() if len(sys.argv) > 3 and sys.argv[3] else []
CFG = {"vocab": 64, "ctx": 16, "d_model": 32, "n_layer": 2, "n_head": 4, "batch": 2, "seq": 16}
TRAIN = {"vocab": 256, "ctx": 16, "d_model": 32, "n_layer": 1, "n_head": 4, "batch": 4, "seq": 16}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd), "\n", r.stdout, r.stderr)
        sys.exit(1)
    return r.stdout


def defines(cfg):
    return [a for k, v in cfg.items() for a in ("-D", f"{k}={v}")]


def main():
    tmp = tempfile.mkdtemp(prefix="loom_examples_")
    prefix = os.path.join(tmp, "prefix")
    run(["cmake", "--install", BUILD, "--prefix", prefix])
    pcs = glob.glob(os.path.join(prefix, "**", "pkgconfig", "loom.pc"), recursive=True)
    headers = glob.glob(os.path.join(prefix, "include", "loom.h"))
    if len(pcs) != 1 or not headers:
        print(f"the install has no loom.pc or include/loom.h: {pcs} {headers}")
        return 1
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
    flags = run(["pkg-config", "--cflags", "--libs", "loom"], env=env).split()
    static = run(["pkg-config", "--cflags", "--static", "--libs", "loom"], env=env).split()
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    loom = os.path.join(prefix, "bin", "loom")
    exes = {}
    for name in ("run_model", "train_steps"):
        exes[name] = os.path.join(tmp, name)
        run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *EXTRA, os.path.join(SRC, "examples", name + ".c"),
             "-o", exes[name], *flags, f"-Wl,-rpath,{libdir}"])
    # the static library: libloom.a named explicitly (-lloom would pick the .so)
    exes["run_model_static"] = os.path.join(tmp, "run_model_static")
    static = [os.path.join(libdir, "libloom.a") if f == "-lloom" else f for f in static]
    run(["cc", "-std=c11", *EXTRA, os.path.join(SRC, "examples", "run_model.c"), "-o", exes["run_model_static"],
         *static])
    print(f"installed to {prefix}; built the examples with: {' '.join(flags)}")

    model = os.path.join(SRC, "models", "gpt2.loom")
    w = os.path.join(tmp, "w.safetensors")
    run([loom, "init", model, *defines(CFG), "-o", w, "--seed", "5"])
    n = CFG["batch"] * CFG["seq"]
    tokens = (np.arange(n) % CFG["vocab"]).astype(np.int32).reshape(CFG["batch"], CFG["seq"])
    inp, outp = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    write_safetensors(inp, {"tokens": tokens})
    run([loom, "run", model, *defines(CFG), "--weights", w, "--inputs", inp, "--outputs", outp, "--target", "cpu"])
    want = read_safetensors(outp)["logits"].astype(np.float32).reshape(-1)[-CFG["vocab"]:][:8]
    args = [f"{k}={v}" for k, v in CFG.items()]
    for name in ("run_model", "run_model_static"):
        out = run([exes[name], model, w, *args])
        got = np.array([float(x) for x in out.split(":")[1].split()], dtype=np.float32)
        shape = out.split(":")[0]
        if shape != "logits [2, 16, 64]" or got.shape != want.shape or not np.array_equal(got, want):
            print(f"{name}: got '{out.strip()}', want logits [2, 16, 64]: {' '.join('%.9g' % x for x in want)}")
            return 1
        print(f"{name}: {out.strip()} (= loom run)")

    data = os.path.join(tmp, "data.txt")
    with open(os.path.join(SRC, "data", "tinyshakespeare.txt"), "rb") as f:
        open(data, "wb").write(f.read(200000))
    want = run([loom, "train", model, *defines(TRAIN), "--data", data, "--steps", "6", "--lr", "3e-3", "--seed", "3",
                "--sample", "0"])
    want_steps = [" | ".join(p.strip() for p in l.split("|")[:4]).replace("/6", "")
                  for l in want.splitlines() if l.startswith("step ")]
    want_val = re.search(r"val loss (\S+)", want).group(1)
    got = run([exes["train_steps"], model, data, "6", *[f"{k}={v}" for k, v in TRAIN.items()]])
    got_steps = [l for l in got.splitlines() if l.startswith("step ")]
    got_val = re.search(r"val loss (\S+)", got).group(1)
    if got_steps != want_steps or got_val != want_val:
        print("train_steps differs from loom train:\n" + got + "\nloom train:\n" + "\n".join(want_steps) +
              f"\nval loss {want_val}")
        return 1
    losses = [float(re.search(r"loss (\S+)", l).group(1)) for l in got_steps]
    if not losses[-1] < losses[0]:
        print(f"the loss did not go down: {losses}")
        return 1
    print(f"train_steps: {len(got_steps)} steps equal to loom train's, loss {losses[0]} -> {losses[-1]}, "
          f"val {got_val}")

    bad = os.path.join(tmp, "bad.loom")
    open(bad, "w").write("model m {\n  input x: f32[2]\n  return y\n}\n")
    r = subprocess.run([exes["run_model"], bad, w], capture_output=True, text=True)
    if r.returncode != 1 or "bad.loom:" not in r.stderr or "error:" not in r.stderr:
        print(f"a bad model: exit {r.returncode}, stderr '{r.stderr.strip()}'")
        return 1
    print(f"bad model: exit 1, {r.stderr.strip().splitlines()[0]}")
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
