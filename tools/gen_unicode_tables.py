#!/usr/bin/env python3
"""gen_unicode_tables.py — writes text/unicode_tables.c, the Unicode classes the tokenizers use.

Source: the PyPI package unicodedata2 at exactly Unicode 16.0.0, the version both references of
the tokenizers use (tiktoken's regex crate and Hugging Face tokenizers' Oniguruma classify all
1,114,111 code points as \\p{L} / \\p{N} / other exactly as Unicode 16.0 does, and differ from
15.1 on 4,382 code points and from 17.0 on 4,657; tests/models/test_tokenizers.py checks every
code point). Regenerate with

    pip install --target /tmp/ucd16 --no-deps unicodedata2==16.0.0
    PYTHONPATH=/tmp/ucd16 python3 tools/gen_unicode_tables.py > text/unicode_tables.c

The header of the output records the Unicode version, the package version and a SHA-256 of the
data it was made from (per code point: general category, simple lower case, NFD), so two runs
from different copies of the same data can be compared by that line alone.

WordPiece's classes (punctuation, nonspacing marks, controls) are those of Hugging Face
tokenizers' BERT normalizer and pre-tokenizer, whose tables (the unicode_categories crate) are
Unicode 8.0's: a code point counts when Unicode 8.0 had assigned it (DerivedAge.txt, from
Debian's package unicode-data 15.0.0, /usr/share/unicode, sha256 checked below) with that
category in 8.0 (the Unicode 16 category, but for the few changed since: CHANGED_SINCE_8).
Controls are Cc, Cs, Co and 8.0's Cf; unassigned code points (Cn) are not controls: the
reference keeps them (they become [UNK]).
"""
import hashlib
import sys

import unicodedata2 as u

UNICODE = "16.0.0"
if u.unidata_version != UNICODE:
    sys.exit(f"gen_unicode_tables.py: unicodedata2 has Unicode {u.unidata_version}, want {UNICODE} (see the top of this file)")

MAX = 0x110000
SURROGATE = range(0xD800, 0xE000)
AGE_FILE = "/usr/share/unicode/DerivedAge.txt"
AGE_SHA256 = "7570877e0fa197c45338f7c41a02636da4e14c8dba6a3611a01cd30bf329d5ca"  # DerivedAge-15.0.0.txt
# General categories that changed after Unicode 8.0 (Unicode 8.0's value)
CHANGED_SINCE_8 = {0x166D: "Po", 0x111C9: "Po", 0x1734: "Mn", 0x1885: "Lo", 0x1886: "Lo", 0xA9BD: "Mc",
                   0x1171E: "Mn"}

with open(AGE_FILE, "rb") as f:
    data = f.read()
if hashlib.sha256(data).hexdigest() != AGE_SHA256:
    sys.exit(f"gen_unicode_tables.py: {AGE_FILE} is not DerivedAge-15.0.0.txt (apt-get install unicode-data on Debian 12)")
in_8 = set()
for line in data.decode().splitlines():
    line = line.split("#")[0].strip()
    if line:
        r, v = (x.strip() for x in line.split(";"))
        a, _, b = r.partition("..")
        if tuple(map(int, v.split("."))) <= (8, 0):
            in_8.update(range(int(a, 16), int(b or a, 16) + 1))


def cat8(c):
    """The general category as Unicode 8.0 had it ("Cn" for code points it had not assigned)."""
    return "Cn" if c not in in_8 else CHANGED_SINCE_8.get(c, u.category(chr(c)))


def cat(c):
    return u.category(chr(c))


def lower(c):
    """The simple lower-case mapping: str.lower of Python's own database where it knows the
    character; for a capital letter newer than that database, the small letter of the same name
    (CAPITAL -> SMALL) when Unicode 16 has one."""
    if c in SURROGATE:
        return c
    ch = chr(c)
    if len(ch.lower()) == 1 and ord(ch.lower()) != c:
        return ord(ch.lower())
    if cat(c) == "Lu" and __import__("unicodedata").category(ch) == "Cn":
        name = u.name(ch, "")
        if " CAPITAL " in name:
            try:
                return ord(u.lookup(name.replace(" CAPITAL ", " SMALL ", 1)))
            except KeyError:
                pass
    return c


def ranges(pred):
    out, start = [], None
    for c in range(MAX + 1):
        p = c < MAX and pred(c)
        if p and start is None:
            start = c
        if not p and start is not None:
            out.append((start, c - 1))
            start = None
    return out


def emit_ranges(name, rs, what):
    lines = [f"/* {what}: {len(rs)} ranges */", f"const rt_uni_range {name}[] = {{"]
    row = []
    for a, b in rs:
        row.append(f"{{0x{a:X}, 0x{b:X}}}")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines += ["};", f"const int {name}_len = {len(rs)};", ""]
    return lines


def fingerprint():
    h = hashlib.sha256()
    for c in range(MAX):
        d = "" if c in SURROGATE else u.normalize("NFD", chr(c))
        h.update(f"{c:X};{cat(c)};{lower(c):X};{' '.join(f'{ord(x):X}' for x in d)}\n".encode())
    return h.hexdigest()


# lower-case runs: (first, count, delta, stride) with lower(first + k*stride) = first + k*stride + delta
pairs = [(c, lower(c) - c) for c in range(MAX) if lower(c) != c]
runs = []
for c, d in pairs:
    if runs:
        f, n, dd, s = runs[-1]
        last = f + (n - 1) * s
        if dd == d and ((n == 1 and c - last in (1, 2)) or (n > 1 and c - last == s)):
            runs[-1] = (f, n + 1, dd, c - last if n == 1 else s)
            continue
    runs.append((c, 1, d, 1))
strip = []
for c in range(MAX):
    if 0xAC00 <= c <= 0xD7A3 or c in SURROGATE:
        continue
    d = u.normalize("NFD", chr(c))
    if d == chr(c):
        continue
    s = [ord(x) for x in d if cat8(ord(x)) != "Mn"]
    assert len(s) <= 3
    strip.append((c, s + [0] * (3 - len(s))))

L = [f"/* unicode_tables.c — GENERATED by tools/gen_unicode_tables.py from Unicode {u.unidata_version}",
     f" * (PyPI unicodedata2 {__import__('importlib.metadata').metadata.version('unicodedata2')}; data sha256 {fingerprint()}).",
     f" * and, for WordPiece's classes, Unicode 8.0's ages (DerivedAge-15.0.0.txt sha256 {AGE_SHA256[:16]}...).",
     " * Do not edit by hand: see the generator. text/bpe.h says what each table means and declares",
     " * them. Range tables are sorted, disjoint and inclusive (binary search); lower-case runs and the",
     " * accent-stripping map are sorted by code point. */",
     '#include "text/bpe.h"', ""]
L += emit_ranges("rt_uni_letter", ranges(lambda c: cat(c)[0] == "L"), "\\p{L}: Lu Ll Lt Lm Lo")
L += emit_ranges("rt_uni_number", ranges(lambda c: cat(c)[0] == "N"), "\\p{N}: Nd Nl No")
L += emit_ranges("rt_uni_punct", ranges(lambda c: cat8(c)[0] == "P"), "BERT's punctuation: Unicode 8.0's \\p{P}")
L += emit_ranges("rt_uni_bert_control", ranges(lambda c: cat(c) in ("Cc", "Cs", "Co") or cat8(c) == "Cf"),
                 "BERT's controls: Cc Cs Co, and Unicode 8.0's Cf")
L += emit_ranges("rt_uni_mark_nonspacing", ranges(lambda c: cat8(c) == "Mn"), "BERT's accents: Unicode 8.0's \\p{Mn}")
L.append(f"/* simple lower-case mapping (one character to one): {len(runs)} runs */")
L.append("const rt_uni_case_run rt_uni_lower[] = {")
row = []
for f, n, d, s in runs:
    row.append(f"{{0x{f:X}, {n}, {d}, {s}}}")
    if len(row) == 5:
        L.append("    " + ", ".join(row) + ",")
        row = []
if row:
    L.append("    " + ", ".join(row) + ",")
L += ["};", f"const int rt_uni_lower_len = {len(runs)};", ""]
L.append("/* NFD decomposition with nonspacing marks (Mn) removed, for accent stripping; Hangul syllables")
L.append(f" * are decomposed by rule instead. Up to 3 code points, 0-padded (all 0: the character vanishes): {len(strip)} entries */")
L.append("const rt_uni_strip rt_uni_strip_map[] = {")
row = []
for c, s in strip:
    row.append(f"{{0x{c:X}, {{0x{s[0]:X}, 0x{s[1]:X}, 0x{s[2]:X}}}}}")
    if len(row) == 4:
        L.append("    " + ", ".join(row) + ",")
        row = []
if row:
    L.append("    " + ", ".join(row) + ",")
L += ["};", f"const int rt_uni_strip_map_len = {len(strip)};"]
print("\n".join(L))
