"""harness.py — what the whole-model tests share: a small safetensors reader and writer of
their own (independent of loom's, and of the `safetensors` package), running `loom run`, and
comparing arrays with the max abs / rel error printed.

Errors: `rel` is max|got - want| / max|want| (relative to the largest magnitude of the reference,
so that values near zero do not blow it up)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "U8": np.uint8}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: ndarray} (float64/float32/float16/int64/int32/uint8) to path."""
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
