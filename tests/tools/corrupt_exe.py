#!/usr/bin/env python3
"""corrupt_exe.py IN OUT MODE — damages a `loom build` executable's payload (io/exe_payload.h:
plan file + trailer "LOOMEXE1" u64 size u64 FNV-1a 64) for the bad-payload tests.
MODE: truncate:N  drop the last N bytes;
      flip        flip one byte in the middle of the payload (the checksums now disagree);
      version:V   set the plan file's version to V and fix both checksums (the reader must
                  reject the version, not the checksum);
      body:OFF    flip the byte at OFF in the plan body and fix both checksums (the plan
                  validator must catch what that breaks);
      replace:OLD:NEW  replace the first OLD in the plan body by NEW (as long) and fix both
                  checksums (a damaged record: its reader must say what is wrong)."""
import os
import struct
import sys


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    src, dst, mode = sys.argv[1:4]
    raw = bytearray(open(src, "rb").read())
    magic, size, _ = struct.unpack("<8sQQ", raw[-24:])
    assert magic == b"LOOMEXE1", "not a loom build executable"
    start = len(raw) - 24 - size
    payload = raw[start:len(raw) - 24]
    kind, _, arg = mode.partition(":")
    if kind == "truncate":
        raw = raw[:len(raw) - int(arg)]
    elif kind == "flip":
        raw[start + size // 2] ^= 0xFF
    else:
        if kind == "version":
            payload[8:12] = struct.pack("<I", int(arg))
        elif kind == "body":
            payload[32 + int(arg)] ^= 0xFF
        elif kind == "replace":
            old, _, new = arg.partition(":")
            assert len(old) == len(new), "replace: OLD and NEW must be as long"
            at = payload.find(old.encode(), 32)
            assert at >= 0, f"replace: no {old!r} in the payload"
            payload[at:at + len(old)] = new.encode()
        else:
            sys.exit(f"unknown mode {mode}")
        payload[24:32] = struct.pack("<Q", fnv1a64(bytes(payload[32:])))
        raw[start:len(raw) - 24] = payload
        raw[-8:] = struct.pack("<Q", fnv1a64(bytes(payload)))
    with open(dst, "wb") as f:
        f.write(raw)
    os.chmod(dst, 0o755)


main()
