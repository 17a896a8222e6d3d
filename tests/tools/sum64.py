#!/usr/bin/env python3
"""sum64.py FILE [flip:OFFSET] — the checksum io/checksum.h defines, written independently of
loom's C (8-byte little-endian words, the last zero-padded; h = rotl29((h ^ w) * 0x100000001b3);
h ^= length), printed as sum64:HEX. With flip:OFFSET it first flips the low bit of the byte at
OFFSET (negative: from the end) of FILE in place, and prints the sum of the changed file."""
import sys

M = (1 << 64) - 1


def sum64(data):
    h = 0xcbf29ce484222325
    padded = data + b"\0" * (-len(data) % 8)
    for i in range(0, len(padded), 8):
        w = int.from_bytes(padded[i:i + 8], "little")
        h = ((h ^ w) * 0x100000001b3) & M
        h = ((h << 29) | (h >> 35)) & M
    return h ^ len(data)


path = sys.argv[1]
data = bytearray(open(path, "rb").read())
if len(sys.argv) > 2 and sys.argv[2].startswith("flip:"):
    data[int(sys.argv[2][5:])] ^= 1
    open(path, "wb").write(data)
print("sum64:%016x" % sum64(bytes(data)))
