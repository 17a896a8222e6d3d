#!/usr/bin/env python3
"""test_opencl_generate.py LOOM [TARGET] — `loom generate --target opencl` with the KV cache on the device.

GPT-2 with the real vocabulary (50257) and tiny dims (test_generate.py's random weights), greedy
(--temperature 0), 12 tokens from a 4-token prompt, on --target cpu and on the device:

1. the same token ids, and every logits row within 1e-3 absolute (the max difference is printed);
2. --stats: each decoded token moves at most 16 bytes host→device (its id, its position, one
   mask element: the KV cache, the mask and the weights stay on the device) and exactly one
   logits row (50257 × 4 bytes) device→host.
3. bad input: --recompute with a device target is a clear error (exit 1), not a crash.
4. the weights quantized (`loom quantize`, int8 and int4 g16): the device's GEMMs read the codes
   (codegen/library.c's qgemm, one row of A a token), the same ids and logits within 1e-3 of the
   CPU's (runtime/cpu/qgemm_cpu.c) on the same file.

TARGET (default $LOOM_TEST_OPENCL_TARGET or "opencl") picks the device; no OpenCL platform
prints "skipped"."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import harness  # noqa: E402
import test_generate as tg  # noqa: E402

N = 12
TOL = 1e-3


def main():
    args = harness.opencl_args("test_opencl_generate.py")
    if args is None:
        return
    loom, target = args
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom_ocl_gen_") as tmp:
        wpath = os.path.join(tmp, "w.safetensors")
        harness.write_safetensors(wpath, tg.weights(7))
        ids_c, lg_c, _ = tg.generate(loom, wpath, "Once upon a time", N, os.path.join(tmp, "c.bin"),
                                     "--temperature", "0")
        ids_d, lg_d, _ = tg.generate(loom, wpath, "Once upon a time", N, os.path.join(tmp, "d.bin"),
                                     "--temperature", "0", "--target", target)
        if len(ids_c) != N or list(ids_c) != list(ids_d):
            print(f"FAILED: device ids {list(ids_d)} != cpu ids {list(ids_c)}")
            ok = False
        diff = float(np.max(np.abs(lg_c - lg_d))) if lg_c.shape == lg_d.shape else float("inf")
        print(f"greedy {N} tokens: ids equal {list(ids_c) == list(ids_d)}, logits max abs diff {diff:.2e}")
        if not diff <= TOL:
            print(f"FAILED: logits differ by {diff} > {TOL}")
            ok = False

        cmd = [loom, "generate", os.path.join(harness.REPO, "models", "gpt2.loom")]
        for k, v in tg.DEFS.items():
            cmd += ["-D", f"{k}={v}"]
        cmd += ["--weights", wpath, "--vocab", os.path.join(harness.REPO, "data", "gpt2"), "--prompt",
                "Once upon a time", "--max-tokens", str(N), "--ignore-eos", "--temperature", "0", "--target", target]
        proc = subprocess.run(cmd + ["--stats"], capture_output=True, text=True)
        m = re.search(r"per decoded token: ([\d.]+) bytes host->device, ([\d.]+) bytes device->host", proc.stderr)
        if proc.returncode != 0 or not m:
            print(f"FAILED: --stats run (exit {proc.returncode}) printed no bytes per token:\n{proc.stderr}")
            ok = False
        else:
            up, down = float(m.group(1)), float(m.group(2))
            print(f"per decoded token: {up:.0f} bytes up, {down:.0f} bytes down")
            if up > 16 or down != 4 * tg.V:
                print(f"FAILED: want at most 16 bytes up and {4 * tg.V} down per token")
                ok = False
            # the weights go up once, shared by prefill and decode (not once per program)
            m0 = re.search(r"before the first decoded token: (\d+) bytes host->device", proc.stderr)
            wbytes = os.path.getsize(wpath)
            print(f"before the first decoded token: {m0.group(1) if m0 else '?'} bytes up; weights file {wbytes}")
            if not m0 or not (0.9 * wbytes < int(m0.group(1)) < 1.2 * wbytes):
                print("FAILED: want the weights uploaded once (within 0.9-1.2x the weights file)")
                ok = False

        for fmt in (["int8"], ["int4", "--group", "16"]):
            qpath = os.path.join(tmp, fmt[0] + ".safetensors")
            subprocess.run([loom, "quantize", wpath, "--format", *fmt, "-o", qpath], check=True, capture_output=True)
            ids_c, lg_c, _ = tg.generate(loom, qpath, "Once upon a time", N, os.path.join(tmp, "qc.bin"),
                                         "--temperature", "0")
            ids_d, lg_d, _ = tg.generate(loom, qpath, "Once upon a time", N, os.path.join(tmp, "qd.bin"),
                                         "--temperature", "0", "--target", target)
            diff = float(np.max(np.abs(lg_c - lg_d))) if lg_c.shape == lg_d.shape else float("inf")
            same = len(ids_c) == N and list(ids_c) == list(ids_d)
            print(f"{fmt[0]} weights, greedy {N} tokens: ids equal {same}, logits max abs diff {diff:.2e}")
            if not same or not diff <= TOL:
                print(f"FAILED: {fmt[0]}: device ids {list(ids_d)}, cpu ids {list(ids_c)}, logits differ by {diff}")
                ok = False

        proc = subprocess.run(cmd + ["--recompute"], capture_output=True, text=True)
        if proc.returncode != 1 or "--recompute runs on the CPU only" not in proc.stderr:
            print(f"FAILED: --recompute --target {target}: exit {proc.returncode}\n{proc.stderr}")
            ok = False
    if not ok:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
