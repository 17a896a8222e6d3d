#!/usr/bin/env python3
"""test_quantize.py LOOM — `loom quantize` and quantized models run (docs/compression.md).

1. A tiny GPT-2 (2 layers, d 64, byte vocabulary, seq 64) trained 300 steps on tiny Shakespeare
   (`loom train`, ~10 s); its params quantized to int8 (per output channel) and int4 (groups
   of 32, f16 scales; and int4 with f32 scales).
2. The files as documented, decoded here with NumPy alone: every GEMM weight (the 8 matrices
   of c_attn, c_proj, c_fc) replaced by NAME.qweight (I8 [R, C] / U8 [R, C/2], low nibble = even
   column, code - 8) and NAME.scales (F16 [G, C], groups along rows: Conv1D weights are
   [in, out]); scale = max|w| / 127 (or / 7) per group, rounded to the scale dtype; every
   element within scale/2 (+ the scale's rounding) of the f32 weight; wte, wpe, norms and
   biases copied bit for bit.
3. Quality: the validation loss (16 windows of 64 bytes from the last 10% of the text, the
   loader's validation split) of f32, int8 and int4 weights through `loom run`: int8 within 1%
   of f32, int4 g32 within 5% (measured 2026-12-04: f32 2.4822, int8 2.4821 (-0.00%), int4 g32
   2.4813 (-0.03%)); the quantized runs must differ from f32 at all (the dequantize ran).
4. Backends: the int4 logits on cpu and opencl (PoCL; without it, int8 and int4 on cpu) against
   the reference interpreter (`--target ref`, which defines the numbers): |err| <= 1e-4 ·
   max(1, |ref|). (The op suite runs dequantize on every backend: tests/unit/op_suite.h.)
5. The GEMMs read the codes: GPT-2's [in, out] weights and tiny LLaMA's [out, in] ones
   (transposed B, groups along columns), int8 and int4 (g16), with a few rows (batch 1 × 4
   tokens) and many (batch 2 × 64 / 16), against the reference interpreter, same bound: the
   CPU's own GEMM (runtime/cpu/qgemm_cpu.c: each code row decoded and used directly for few
   rows, as in decode; f32 panels and sgemm for many), the devices' kernel (codegen/library.c's
   qgemm) on the host JIT (LOOM_CPU_LIBRARY=kernels) and, with PoCL, on OpenCL (many rows).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tiny_llama  # noqa: E402

MODEL = "gpt2.loom"
CFG = {"n_layer": 2, "d_model": 64, "n_head": 4, "vocab": 256, "seq": 64}
GEMM = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]


def run(cmd):
    p = harness.run_proc(cmd)
    if p.returncode != 0:
        sys.stderr.write(f"FAILED: {' '.join(cmd)}\n{p.stdout}{p.stderr}")
        sys.exit(1)
    return p.stdout


def defines(batch):
    out = []
    for k, v in {**CFG, "batch": batch}.items():
        out += ["-D", f"{k}={v}"]
    return out


def decode(q, s, bits, axis):
    """The f32 weight a documented (qweight, scales) pair stands for."""
    if bits == 8:
        codes = q.astype(np.float64)
    else:
        lo, hi = (q & 15).astype(np.int64) - 8, (q >> 4).astype(np.int64) - 8
        codes = np.empty((q.shape[0], 2 * q.shape[1]))
        codes[:, 0::2], codes[:, 1::2] = lo, hi
    g = codes.shape[axis] // s.shape[axis]
    return codes * np.repeat(s.astype(np.float64), g, axis=axis)


def check_file(name, w, q, bits, group, sdt):
    ok = True
    qmax = 127 if bits == 8 else 7
    for k, v in w.items():
        gemm = any(k.endswith(s) for s in GEMM)
        if not gemm:
            same = k in q and q[k].dtype == v.dtype and np.array_equal(q[k], v)
            ok &= same
            if not same:
                print(f"  {name}: {k} not copied as it was FAIL")
            continue
        qw, sc = q.get(k + ".qweight"), q.get(k + ".scales")
        R, C = v.shape
        g = R if bits == 8 else group
        want_q = (np.int8, (R, C)) if bits == 8 else (np.uint8, (R, C // 2))
        if k in q or qw is None or sc is None or (qw.dtype, qw.shape) != want_q or \
                sc.dtype != sdt or sc.shape != (R // g, C):
            print(f"  {name}: {k} stored as {k in q}, {None if qw is None else (qw.dtype, qw.shape)}, "
                  f"{None if sc is None else (sc.dtype, sc.shape)} FAIL")
            ok = False
            continue
        amax = np.abs(v.astype(np.float64)).reshape(R // g, g, C).max(axis=1)
        want_s = (amax / qmax).astype(sdt).astype(np.float64)
        deq = decode(qw, sc, bits, 0)
        err = np.abs(deq - v)
        bound = np.repeat(want_s, g, axis=0) * 0.5000001 + 1e-12
        good = np.array_equal(sc.astype(np.float64), want_s) and bool(np.all(err <= bound))
        ok &= good
        if not good:
            print(f"  {name}: {k}: scales equal {np.array_equal(sc.astype(np.float64), want_s)}, "
                  f"max err / scale {float((err / np.maximum(bound, 1e-30)).max()):.3f} FAIL")
    print(f"{name}: file as documented {'OK' if ok else 'FAIL'}")
    return ok


def val_loss(loom, weights, tmp, text, target="cpu"):
    ipath = os.path.join(tmp, "val.safetensors")
    if not os.path.exists(ipath):
        data = np.frombuffer(text, dtype=np.uint8)
        val = data[int(len(data) * 0.9):]
        T, B = CFG["seq"], 16
        starts = np.linspace(0, len(val) - T - 2, B).astype(np.int64)
        tok = np.stack([val[s:s + T] for s in starts]).astype(np.int32)
        tgt = np.stack([val[s + 1:s + T + 1] for s in starts]).astype(np.int32)
        harness.write_safetensors(ipath, {"tokens": tok, "targets": tgt})
    opath = os.path.join(tmp, "val_out.safetensors")
    run([loom, "run", os.path.join(harness.REPO, "models", MODEL), *defines(16), "--weights", weights, "--inputs",
         ipath, "--outputs", opath, "--target", target])
    return float(harness.read_safetensors(opath)["loss"])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_quantize.py LOOM")
    loom = sys.argv[1]
    data = os.path.join(harness.REPO, "data", "tinyshakespeare.txt")
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_quant_") as tmp:
        ck = os.path.join(tmp, "ck")
        run([loom, "train", os.path.join(harness.REPO, "models", MODEL), *defines(8), "--data", data, "--steps", "300",
             "--lr", "3e-3", "--min-lr", "3e-4", "--warmup", "20", "--eval-every", "300", "--seed", "1", "--sample", "0",
             "--checkpoint", ck])
        state = [f for f in os.listdir(ck) if f.startswith("state-")][0]
        w = {k: v for k, v in harness.read_safetensors(os.path.join(ck, state)).items() if "/" not in k}
        wpath = os.path.join(tmp, "w.safetensors")
        harness.write_safetensors(wpath, w)
        files = {}
        for name, args, bits, group, sdt in (("int8", ["--format", "int8"], 8, 0, np.float16),
                                             ("int4 g32", ["--format", "int4", "--group", "32"], 4, 32, np.float16),
                                             ("int4 g32 f32", ["--format", "int4", "--scales", "f32"], 4, 32,
                                              np.float32)):
            path = os.path.join(tmp, name.replace(" ", "_") + ".safetensors")
            print(run([loom, "quantize", wpath, *args, "-o", path]).strip())
            ok &= check_file(name, w, harness.read_safetensors(path), bits, group, sdt)
            files[name] = path

        with open(data, "rb") as f:
            text = f.read()
        base = val_loss(loom, wpath, tmp, text)
        print(f"validation loss f32 {base:.4f}")
        for name, tol in (("int8", 0.01), ("int4 g32", 0.05)):
            v = val_loss(loom, files[name], tmp, text)
            rel = (v - base) / base
            good = abs(rel) <= tol and v != base
            ok &= good
            print(f"validation loss {name} {v:.4f} ({100 * rel:+.2f}% of f32, tol {100 * tol:g}%) "
                  f"{'OK' if good else 'FAIL'}")

        ipath = os.path.join(tmp, "in.safetensors")
        rng = np.random.default_rng(3)
        harness.write_safetensors(ipath, {"tokens": rng.integers(0, 256, (2, CFG["seq"])).astype(np.int32)})
        probe = subprocess.run([loom, "devices"], capture_output=True, text=True).stdout
        targets = ["cpu"] + (["opencl"] if "opencl:0:0" in probe else [])
        for name in ("int8", "int4 g32")[1:] if len(targets) > 1 else ("int8", "int4 g32"):
            ref, _ = harness.run_target(loom, MODEL, {**CFG, "batch": 2}, files[name], ipath,
                                        os.path.join(tmp, "ref.safetensors"), "ref")
            for t in targets:
                out, _ = harness.run_target(loom, MODEL, {**CFG, "batch": 2}, files[name], ipath,
                                            os.path.join(tmp, t + ".safetensors"), t)
                ok &= harness.compare_backend(f"{name} logits {t} vs ref", out["logits"], ref["logits"])

        # 5. the quantized GEMM on the CPU, both layouts, both paths
        lpath = os.path.join(tmp, "llama.safetensors")
        harness.write_safetensors(lpath, test_tiny_llama.make_weights(np.random.default_rng(11)))
        lcfg = dict(test_tiny_llama.CFG)
        cases = [(MODEL, CFG, files["int8"], "gpt2 int8"), (MODEL, CFG, files["int4 g32"], "gpt2 int4 g32")]
        for fmt, args in (("int8", ["--format", "int8"]), ("int4 g16", ["--format", "int4", "--group", "16"])):
            path = os.path.join(tmp, f"llama_{fmt.replace(' ', '_')}.safetensors")
            run([loom, "quantize", lpath, *args, "-o", path])
            cases.append(("llama.loom", lcfg, path, f"llama {fmt}"))
        for model, cfg, path, name in cases:
            for batch, seq in ((1, 4), (2, cfg["seq"])):
                c = {**cfg, "batch": batch, "seq": seq}
                vocab = cfg.get("vocab", 256)
                harness.write_safetensors(ipath, {"tokens": rng.integers(0, vocab, (batch, seq)).astype(np.int32)})
                ref, _ = harness.run_target(loom, model, c, path, ipath, os.path.join(tmp, "ref.safetensors"), "ref")
                runs = [("cpu", "cpu", None), ("cpu", "cpu kernel", "kernels")]
                runs += [("opencl", "opencl", None)] if len(targets) > 1 and batch > 1 else []
                for target, label, lib in runs:
                    if lib:
                        os.environ["LOOM_CPU_LIBRARY"] = lib
                    out, _ = harness.run_target(loom, model, c, path, ipath, os.path.join(tmp, "out.safetensors"),
                                                target)
                    os.environ.pop("LOOM_CPU_LIBRARY", None)
                    ok &= harness.compare_backend(f"{name} {batch}x{seq} logits {label} vs ref", out["logits"],
                                                  ref["logits"])
    print("quantize:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
