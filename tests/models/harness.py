"""harness.py — what the whole-model tests share: a small safetensors reader and writer of
their own (independent of loom's, and of the `safetensors` package), running `loom run`, and
comparing arrays with the max abs / rel error printed, and checking one backend's outputs
against another's (`loom run --target A` vs `--target B`, the backend model tests), and the
OpenCL tests' arguments.

Errors: in `compare`, `rel` is max|got - want| / max|want| (relative to the largest magnitude of
the reference, so that values near zero do not blow it up); in `compare_backend`, elementwise
|got - want| / max(1, |want|)."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "U8": np.uint8, "I8": np.int8}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: ndarray} (float64/float32/float16/int64/int32/uint8/int8) to path."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, arr in tensors.items():
        arr = np.asarray(arr)  # not ascontiguousarray: it turns scalars into shape (1,)
        dtype = next(k for k, v in _DTYPES.items() if arr.dtype == v)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Reads a safetensors file into {name: ndarray} (BF16 becomes float32)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(data[begin:end], dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"])
    return out


LSAN_FATAL = "LeakSanitizer has encountered a fatal error"


def run_proc(cmd, **kw):
    """subprocess.run(cmd, capture_output=True, text=True, **kw), once more when the ASan build's
    leak checker itself failed at exit (it could not stop a PoCL process's exiting threads: seen
    about once in 15 loaded runs), which is not a leak (that reads "detected memory leaks")."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0 and LSAN_FATAL in proc.stderr:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return proc


def run_loom(loom, model, defines, weights, inputs, precision, workdir):
    """Runs `loom run` with the reference target; returns {output name: ndarray}. Exits 1 (after
    printing loom's stderr) if loom fails."""
    wpath = os.path.join(workdir, "weights.safetensors")
    ipath = os.path.join(workdir, "inputs.safetensors")
    opath = os.path.join(workdir, f"outputs.{precision}.safetensors")
    write_safetensors(wpath, weights)
    write_safetensors(ipath, inputs)
    cmd = [loom, "run", os.path.join(REPO, "models", model)]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", wpath, "--inputs", ipath, "--outputs", opath, "--target", "ref",
            "--precision", precision]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    return read_safetensors(opath)


def compare(name, got, want, abs_tol=None, rel_tol=None):
    """Prints `name: max abs err A, max rel err R (tol T) OK|FAIL`; returns True when within
    every tolerance given (and the shapes agree)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        print(f"{name}: shape {got.shape}, expected {want.shape} FAIL")
        return False
    err = np.abs(got - want)
    abs_err = float(err.max()) if err.size else 0.0
    scale = float(np.abs(want).max()) if want.size else 0.0
    rel_err = abs_err / scale if scale > 0 else abs_err
    ok = np.all(np.isfinite(got))
    tols = []
    if abs_tol is not None:
        ok = ok and abs_err <= abs_tol
        tols.append(f"abs {abs_tol:g}")
    if rel_tol is not None:
        ok = ok and rel_err <= rel_tol
        tols.append(f"rel {rel_tol:g}")
    print(f"{name}: max abs err {abs_err:.2e}, max rel err {rel_err:.2e} (tol {', '.join(tols)}) "
          f"{'OK' if ok else 'FAIL'}")
    return bool(ok)


def check_model(title, loom, model, defines, weights, inputs, reference):
    """The whole-model check: runs loom at f64 and f32 precision and compares every output the
    reference computes (`reference`: {name: float64 array}). f64: abs and rel error ≤ 1e-9;
    f32: rel error ≤ 1e-4. Exits 1 on any failure."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_model_") as tmp:
        for precision, tol in (("f64", dict(abs_tol=1e-9, rel_tol=1e-9)), ("f32", dict(rel_tol=1e-4))):
            outs = run_loom(loom, model, defines, weights, inputs, precision, tmp)
            print(f"{title}, --precision {precision}:")
            for name, want in reference.items():
                if name not in outs:
                    print(f"  {name}: missing from loom's outputs FAIL")
                    ok = False
                    continue
                ok &= compare(f"  {name}", outs[name], want, **tol)
    print(f"{title}: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


BACKEND_REL = 1e-4  # backend against backend: |got - want| <= 1e-4 · max(1, |want|) elementwise


def run_target(loom, model, defines, wpath, ipath, opath, target, extra=()):
    """Runs `loom run MODEL --target TARGET` on the given files; returns ({output name: ndarray},
    seconds the whole command took) and echoes loom's `cpu:` stats lines. Exits 1 (after printing
    loom's output) if loom fails."""
    cmd = [loom, "run", os.path.join(REPO, "models", model)]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["--weights", wpath, "--inputs", ipath, "--outputs", opath, "--target", target]
    cmd += list(extra)
    t0 = time.time()
    proc = run_proc(cmd)
    dt = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)
    for line in proc.stdout.splitlines():
        if line.startswith("cpu:"):
            print("   ", line)
    return read_safetensors(opath), dt


def compare_backend(name, got, want):
    """Prints `  name: max abs err A, max rel err R (tol ...) OK|FAIL` with R elementwise relative
    to max(1, |want|); returns True when R <= BACKEND_REL, got is finite and the shapes agree."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        print(f"  {name}: shape {got.shape}, expected {want.shape} FAIL")
        return False
    err = np.abs(got - want)
    abs_err = float(err.max()) if err.size else 0.0
    rel_err = float((err / np.maximum(1.0, np.abs(want))).max()) if err.size else 0.0
    ok = bool(np.all(np.isfinite(got))) and rel_err <= BACKEND_REL
    print(f"  {name}: max abs err {abs_err:.2e}, max rel err {rel_err:.2e} (tol {BACKEND_REL:g} rel to max(1, |ref|)) "
          f"{'OK' if ok else 'FAIL'}")
    return ok


def check_targets(title, loom, model, defines, wpath, inputs, tmp, want, got, drop=()):
    """Runs the model on target want and on target got (each a (target, [extra args]) pair) with
    the same weights file and inputs (less the names in drop), prints both times and compares
    every output of want with compare_backend. Returns True when all match."""
    ipath = os.path.join(tmp, "inputs.safetensors")
    write_safetensors(ipath, {k: v for k, v in inputs.items() if k not in drop})
    (want_target, want_extra), (got_target, got_extra) = want, got
    ref, t_ref = run_target(loom, model, defines, wpath, ipath, os.path.join(tmp, "want.safetensors"), want_target,
                            want_extra)
    out, t_out = run_target(loom, model, defines, wpath, ipath, os.path.join(tmp, "got.safetensors"), got_target,
                            got_extra)
    print(f"{title}: {want_target} {t_ref:.2f} s, {got_target} {t_out:.2f} s (whole command)")
    ok = set(ref) == set(out)
    if not ok:
        print(f"  outputs differ: {want_target} {sorted(ref)}, {got_target} {sorted(out)} FAIL")
    for name in sorted(ref):
        if name in out:
            ok &= compare_backend(name, out[name], ref[name])
    return ok


def init_weights(loom, model, defines, seed, path):
    """`loom init MODEL --seed SEED -o PATH` with the defines; exits 1 (loom's output printed) if
    it fails."""
    cmd = [loom, "init", os.path.join(REPO, "models", model), "--seed", str(seed), "-o", path]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)


def opencl_args(script):
    """The LOOM and TARGET arguments of an OpenCL test `SCRIPT LOOM [TARGET]` (TARGET defaults to
    $LOOM_TEST_OPENCL_TARGET or "opencl"), or None after printing "skipped" when loom finds no
    OpenCL platform."""
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {script} LOOM [TARGET]")
    loom = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) == 3 else os.environ.get("LOOM_TEST_OPENCL_TARGET", "opencl")
    probe = subprocess.run([loom, "devices"], capture_output=True, text=True)
    if "opencl:" not in probe.stdout and "no OpenCL platform" in probe.stdout + probe.stderr:
        print("skipped: no OpenCL platform")
        return None
    return loom, target
