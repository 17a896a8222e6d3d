#!/usr/bin/env python3
"""make_bad_checkpoint.py — makes safetensors files for the checkpoint error tests
(tests/errors/checkpoint), from a good file and a list of edits, without loom's own code.

  make_bad_checkpoint.py IN OUT EDIT...     apply EDITs to IN (e.g. from `loom init`), write OUT
  make_bad_checkpoint.py --tokens OUT NAME=DTYPE[B,T][:VALUE] ...
                                            write token tensors (values i % 64, or all VALUE)

Edits that keep the file well formed (the data is re-laid out, names in byte order):
  drop:NAME            remove the tensor
  add:NAME             add a tensor NAME, F32 [4]
  rename:OLD=NEW       rename a tensor
  shape:NAME=2,3       give the tensor a new shape (its data is cut or zero-padded)
  dtype:NAME=DT        convert the tensor to F64/F32/F16/BF16/I32/I64 (NAME * converts all)
Edits that break the format (applied to the serialized header, in this order of the list):
  offsets:NAME=B,E     set data_offsets to [B, E]
  shift:NAME=K         add K to both data_offsets
  rawdtype:NAME=S      set the dtype string to S
  rawshape:NAME=JSON   set the shape to the JSON list
  dup:NAME             repeat NAME's entry in the header
  meta:KEY=JSON        set __metadata__[KEY] to the JSON value
  json                 cut the header's closing brace (invalid JSON)
  utf8                 put an invalid UTF-8 byte into the first tensor name
  hdrlen:N             write N as the header length
  truncate:N           cut N bytes off the end of the file
  trailing:N           append N zero bytes
"""
import json
import struct
import sys

import numpy as np

NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "I8": "i1"}
SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1}


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors = {k: [v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]]
               for k, v in header.items()}
    return tensors, meta


def to_f64(dtype, blob):
    if dtype == "BF16":
        return (np.frombuffer(blob, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.frombuffer(blob, NP[dtype]).astype(np.float64)


def from_f64(dtype, x):
    if dtype == "BF16":
        bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return bits.astype("<u2").tobytes()
    return x.astype(NP[dtype]).tobytes()


def layout(tensors, meta):
    """Header pairs (name, entry) in byte order of names, and the data."""
    pairs, data = [], b""
    if meta is not None:
        pairs.append(("__metadata__", meta))
    for name in sorted(tensors, key=lambda s: s.encode()):
        dtype, shape, blob = tensors[name]
        pairs.append((name, {"dtype": dtype, "shape": shape,
                             "data_offsets": [len(data), len(data) + len(blob)]}))
        data += blob
    return pairs, data


def entry(pairs, name):
    for k, v in pairs:
        if k == name:
            return v
    sys.exit(f"make_bad_checkpoint: no tensor '{name}'")


def main():
    if sys.argv[1] == "--tokens":
        out = {}
        for spec in sys.argv[3:]:
            name, rest = spec.split("=")
            value = None
            if ":" in rest:
                rest, value = rest.split(":")
            dtype, dims = rest.split("[")
            shape = [int(x) for x in dims.rstrip("]").split(",")]
            n = int(np.prod(shape))
            vals = np.full(n, float(value)) if value is not None else np.arange(n) % 64
            out[name] = [dtype, shape, from_f64(dtype, vals.astype(np.float64))]
        pairs, data = layout(out, None)
        write(sys.argv[2], pairs, data, [])
        return
    src, dst, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
    tensors, meta = read(src)
    raw_edits = []
    for e in edits:
        op, _, arg = e.partition(":")
        name, _, val = arg.partition("=")
        if op == "drop":
            del tensors[name]
        elif op == "add":
            tensors[name] = ["F32", [4], bytes(16)]
        elif op == "rename":
            tensors[val] = tensors.pop(name)
        elif op == "shape":
            dtype, _, blob = tensors[name]
            shape = [int(x) for x in val.split(",")]
            need = int(np.prod(shape)) * SIZE[dtype]
            tensors[name] = [dtype, shape, (blob + bytes(need))[:need]]
        elif op == "dtype":
            for k in (tensors if name == "*" else [name]):
                dtype, shape, blob = tensors[k]
                tensors[k] = [val, shape, from_f64(val, to_f64(dtype, blob))]
        else:
            raw_edits.append((op, name, val))
    pairs, data = layout(tensors, meta)
    write(dst, pairs, data, raw_edits)


def write(path, pairs, data, raw_edits):
    hdrlen = None
    cut = extra = 0
    broken_json = bad_utf8 = False
    for op, name, val in raw_edits:
        if op == "offsets":
            entry(pairs, name)["data_offsets"] = [int(x) for x in val.split(",")]
        elif op == "shift":
            entry(pairs, name)["data_offsets"] = [x + int(val) for x in entry(pairs, name)["data_offsets"]]
        elif op == "rawdtype":
            entry(pairs, name)["dtype"] = val
        elif op == "rawshape":
            entry(pairs, name)["shape"] = json.loads(val)
        elif op == "dup":
            pairs.append((name, dict(entry(pairs, name))))
        elif op == "meta":
            if pairs and pairs[0][0] == "__metadata__":
                pairs[0][1][name] = json.loads(val)
            else:
                pairs.insert(0, ("__metadata__", {name: json.loads(val)}))
        elif op == "json":
            broken_json = True
        elif op == "utf8":
            bad_utf8 = True
        elif op == "hdrlen":
            hdrlen = int(name)
        elif op == "truncate":
            cut = int(name)
        elif op == "trailing":
            extra = int(name)
        else:
            sys.exit(f"make_bad_checkpoint: unknown edit '{op}'")
    text = ("{" + ",".join(json.dumps(k) + ":" + json.dumps(v) for k, v in pairs) + "}").encode()
    if broken_json:
        text = text[:-1]
    if bad_utf8:
        text = text.replace(b'"', b'"\xff', 1)
    text += b" " * (-len(text) % 8)
    blob = struct.pack("<Q", len(text) if hdrlen is None else hdrlen) + text + data + bytes(extra)
    with open(path, "wb") as f:
        f.write(blob[:len(blob) - cut])


if __name__ == "__main__":
    main()
