#!/usr/bin/env python3
"""exe_ptx.py EXE OUT — the PTX compiled into a `loom build --target cuda` executable (the C
string loom_kernel_ptx of its generated table, io/exe_payload.h: RT_KERNEL_PTX), written to OUT.
Prints how many kernel entries it holds and, where ptxas is installed (PATH or
/usr/local/cuda/bin), assembles it for the PTX's own .target: "ptxas: accepted", or exit 1 with
its log; "ptxas: not found" otherwise. For tests/errors/build_cuda.test, which has no GPU."""
import os
import re
import shutil
import subprocess
import sys


def main():
    exe, out = sys.argv[1:3]
    syms = subprocess.run(["nm", "-S", exe], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) ([0-9a-f]+) R loom_kernel_ptx$", syms, re.M)
    if not m:
        sys.exit(f"{exe}: no loom_kernel_ptx symbol (not a cuda executable)")
    addr, size = int(m.group(1), 16), int(m.group(2), 16)
    sections = subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True, check=True).stdout
    data = open(exe, "rb").read()
    for line in sections.splitlines():
        f = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if not f:
            continue
        start, off, n = int(f.group(2), 16), int(f.group(3), 16), int(f.group(4), 16)
        if start <= addr < start + n:
            ptx = data[off + addr - start:off + addr - start + size].rstrip(b"\0")
            break
    else:
        sys.exit(f"{exe}: loom_kernel_ptx is in no section")
    with open(out, "wb") as fh:
        fh.write(ptx)
    entries = re.findall(rb"\.entry (\w+)\(", ptx)
    print(f"{len(entries)} entries: {', '.join(e.decode() for e in entries)}")
    ptxas = shutil.which("ptxas") or ("/usr/local/cuda/bin/ptxas" if os.access("/usr/local/cuda/bin/ptxas", os.X_OK)
                                      else None)
    if not ptxas:
        print("ptxas: not found")
        return
    target = re.search(rb"^\.target (sm_\d+)", ptx, re.M)
    arch = target.group(1).decode() if target else "sm_80"
    proc = subprocess.run([ptxas, f"-arch={arch}", out, "-o", os.devnull], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ptxas -arch={arch} rejected {out}:\n{proc.stdout}{proc.stderr}")
    print("ptxas: accepted")


main()
