#!/usr/bin/env python3
"""Writes the seed inputs of the fuzzers (fuzz/corpus/NAME/seed-*) from the repository's own
files and from what the `loom` command makes of tiny models. Findings (finding-*, known-*) are
never touched; seeds are rewritten.

    fuzz/make_corpus.py LOOM FUZZ_SEED_PLANS        (from the repository root)

LOOM is a built `loom` (build/loom), FUZZ_SEED_PLANS the fuzz build's seed generator
(build-fuzz/fuzz_seed_plans). Needs mpirun for the sharded checkpoint of the gather seeds.
Keep the corpora small: the whole of fuzz/corpus stays under a few MB.
"""
import glob
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

SEP = b"\n--8<--\n"  # fuzz/fuzz.h's FZ_SEP
TINY_GPT2 = ["-D", "vocab=16", "-D", "ctx=8", "-D", "d_model=8", "-D", "n_layer=1", "-D", "n_head=2",
             "-D", "batch=1", "-D", "seq=4"]
TINY_LLAMA = ["-D", "vocab=16", "-D", "d_model=8", "-D", "n_layer=1", "-D", "n_head=2", "-D", "n_kv_head=1",
              "-D", "d_ff=12", "-D", "batch=1", "-D", "seq=4"]
TINY_BERT = ["-D", "vocab=16", "-D", "d_model=8", "-D", "n_layer=1", "-D", "n_head=2", "-D", "d_ff=12",
             "-D", "max_pos=8", "-D", "batch=1", "-D", "seq=4"]


def source_files(pattern):
    """The repository's files matching pattern, not what lit left in Output folders."""
    return [f for f in glob.glob(pattern, recursive=True) if "/Output/" not in f]


def corpus(name):
    d = os.path.join("fuzz", "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in glob.glob(os.path.join(d, "seed-*")):
        os.remove(f)
    return d


def put(name, base, data):
    with open(os.path.join("fuzz", "corpus", name, "seed-" + base), "wb") as f:
        f.write(data)


def flat(path):
    return path.replace("/", "_")


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes)"""
    header, off, body = {}, 0, b""
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        body += data
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def token_file(ids, vocab, dt):
    fmt = "<%d%s" % (len(ids), "H" if dt == 2 else "I")
    return b"LOOMTOK1" + struct.pack("<IIIIQ", 1, dt, vocab, 0, len(ids)) + struct.pack(fmt, *ids)


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    loom, seed_plans = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="loom-corpus-")
    random.seed(1)

    # .loom front end: the models and every .loom of the tests (error cases included)
    corpus("frontend")
    for f in sorted(glob.glob("models/*.loom") + source_files("tests/**/*.loom")):
        put("frontend", flat(f), open(f, "rb").read())

    # textual IR: every .lir of the tests, for the parser and the differential fuzzer
    corpus("lir")
    corpus("diff")
    for f in sorted(source_files("tests/**/*.lir")):
        put("lir", flat(f), open(f, "rb").read())
        put("diff", flat(f), open(f, "rb").read())
    for f in sorted(glob.glob("fuzz/seeds/*.lir")):
        put("diff", os.path.basename(f), open(f, "rb").read())
    # the tiny models as IR (`loom dump`), for both
    for model, tiny in (("gpt2", TINY_GPT2), ("llama", TINY_LLAMA), ("bert", TINY_BERT)):
        ir = subprocess.run([loom, "dump", "models/%s.loom" % model] + tiny, check=True, capture_output=True).stdout
        put("lir", "tiny-%s.lir" % model, ir)
        put("diff", "tiny-%s.lir" % model, ir)

    # the tiny models as .loom source too (their hyperparameters' defaults made tiny), for diff
    for model, tiny in (("gpt2", TINY_GPT2), ("llama", TINY_LLAMA), ("bert", TINY_BERT)):
        src = open("models/%s.loom" % model).read()
        for name, value in (d.split("=") for d in tiny[1::2]):
            src = re.sub(r"(hparam[^\n]*\b%s = )[0-9.e-]+" % name, r"\g<1>" + value, src)
        put("diff", "tiny-%s.loom" % model, src.encode())

    # safetensors: `loom init` of the tiny models, and small files of every dtype
    corpus("safetensors")
    for model, tiny in (("gpt2", TINY_GPT2), ("llama", TINY_LLAMA), ("bert", TINY_BERT)):
        out = os.path.join(tmp, model + ".safetensors")
        run([loom, "init", "models/%s.loom" % model, "-o", out] + tiny)
        put("safetensors", "init-%s.safetensors" % model, open(out, "rb").read())
    put("safetensors", "dtypes.safetensors", safetensors([
        ("a", "F64", [2], struct.pack("<2d", 1.5, -2)), ("b", "F32", [2, 1], struct.pack("<2f", 3, 4)),
        ("c", "F16", [3], b"\x00\x3c\x00\xc0\x00\x7c"), ("d", "BF16", [1], b"\x80\x3f"),
        ("e", "I64", [1], struct.pack("<q", -7)), ("f", "I32", [0, 4], b""), ("g", "U8", [], b"\x05")],
        {"format": "pt", "note": "seed"}))
    put("safetensors", "empty.safetensors", safetensors([]))
    put("safetensors", "unsupported.safetensors", safetensors([("x", "BOOL", [1], b"\x01")]))

    # checkpoints: `loom train` of tiny GPT-2 for a step (manifest, state file)
    corpus("checkpoint")
    ids = [random.randrange(16) for _ in range(200)]
    tok = os.path.join(tmp, "t16.tok")
    open(tok, "wb").write(token_file(ids, 16, 2))
    ck = os.path.join(tmp, "ck")
    run([loom, "train", "models/gpt2.loom", "--data", tok, "--steps", "1", "--checkpoint", ck] + TINY_GPT2)
    man = open(os.path.join(ck, "manifest.json"), "rb").read()
    state = open(os.path.join(ck, "state-00000001.safetensors"), "rb").read()
    put("checkpoint", "gpt2-step1", man + SEP + state)
    m = json.loads(man)
    m["loss_scale"], m["loss_scale_good_steps"] = 65536, 12
    small = safetensors([("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), ("adam.m/w", "F32", [2, 2], bytes(16))])
    put("checkpoint", "fp16-small", json.dumps(m).encode() + SEP + small + SEP + b"w 2 2\nadam.m/w 2 2\n")

    # loom gather: a sharded checkpoint of `mpirun -np 2 loom train --mesh tp=2`, and small ones
    corpus("gather")
    sck = os.path.join(tmp, "sck")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run(["mpirun", "--oversubscribe", "-np", "2", loom, "train", "models/gpt2.loom", "--data", tok, "--steps", "1",
         "--mesh", "tp=2", "--checkpoint", sck] + TINY_GPT2, env=env)
    parts = [open(os.path.join(sck, "mesh.txt"), "rb").read()]
    for r in range(2):
        rd = os.path.join(sck, "rank-%05d" % r)
        parts += [open(os.path.join(rd, "manifest.json"), "rb").read(),
                  open(os.path.join(rd, "state-00000001.safetensors"), "rb").read()]
    put("gather", "gpt2-tp2", SEP.join(parts))
    mline = b"loom sharded checkpoint: mesh dp=1 x tp=2 x pp=1, 2 ranks\n"
    man = json.dumps(dict(m, state="state-00000001.safetensors")).encode()
    r0 = safetensors([("w{d1:0/2}", "F32", [2, 1], struct.pack("<2f", 1, 3)), ("b", "F32", [1], struct.pack("<f", 9)),
                      ("q{d0:0/2:3}", "F32", [3, 1], struct.pack("<3f", 1, 2, 3)),
                      ("adam.m/w{d1:0/2}", "F32", [2, 1], bytes(8))])
    r1 = safetensors([("w{d1:1/2}", "F32", [2, 1], struct.pack("<2f", 2, 4)), ("b", "F32", [1], struct.pack("<f", 9)),
                      ("q{d0:1/2:3}", "F32", [3, 1], struct.pack("<3f", 4, 5, 6))])
    put("gather", "small-tp2", SEP.join([mline, man, r0, man, r1]))

    # token files and corpora for the data loader
    corpus("tokens")
    put("tokens", "u16.tok", token_file(ids[:64], 16, 2))
    put("tokens", "u32.tok", token_file([70000, 3, 65536, 0], 70001, 4))
    put("tokens", "empty.tok", token_file([], 1, 2))
    put("tokens", "text.txt", open("data/tinyshakespeare.txt", "rb").read(300))
    put("tokens", "byte.txt", b"x")

    # BPE: texts on GPT-2's vocabulary, and small vocabularies (all 256 bytes, a few merges)
    corpus("bpe")
    put("bpe", "english.txt", open("data/tinyshakespeare.txt", "rb").read(400))
    put("bpe", "special.txt", b"Hello<|endoftext|> world's  \t\n\n  it'll 123 4.5e6 caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80")
    put("bpe", "invalid-utf8.txt", b"ab\xff\xc3(\xed\xa0\x80\xf4\x90\x80\x80 x")
    b2u = byte_to_unicode()
    enc = {b2u[b]: b for b in range(256)}
    merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("i", "n"), ("\u0120", "a")]
    for a, b in merges:
        enc.setdefault(a + b, len(enc))
    enc["<|endoftext|>"] = len(enc)
    vocab = ("#version: 0.2\n" + "".join("%s %s\n" % ab for ab in merges)).encode()
    put("bpe", "small-vocab", json.dumps(enc, ensure_ascii=False).encode() + SEP + vocab + SEP +
        b"the then in a<|endoftext|>\xff")

    # WordPiece: a vocabulary with the special tokens, words and ## pieces, and texts
    corpus("wordpiece")
    wp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "#", "the", "un", "##aff", "##able", "a",
          "##b", "cafe", "\u4e2d", "i", "\u0307", "hello", "##s", "world"]
    put("wordpiece", "small", "\n".join(wp).encode() + SEP + "Hello, worlds! the unaffable CAFÉ İ 中文 [CLS] ab\x00\ufffd".encode())
    put("wordpiece", "crlf", "\r\n".join(wp + ["  "]).encode() + SEP + b"   \t a.b,c ")

    # plans: lowered from the lowering tests' graphs, and a `loom build` executable's payload
    corpus("plan")
    out = os.path.join(tmp, "plans")
    os.makedirs(out)
    run([seed_plans, out] + sorted(glob.glob("tests/lit/lower/*.lir")) + sorted(glob.glob("fuzz/seeds/*.lir")))
    for f in sorted(glob.glob(os.path.join(out, "plan-*"))):
        put("plan", os.path.basename(f), open(f, "rb").read())
    exe = os.path.join(tmp, "exe")
    run([loom, "build", "models/gpt2.loom", "-o", exe] + TINY_GPT2)
    data = open(exe, "rb").read()
    assert data[-24:-16] == b"LOOMEXE1"
    n = struct.unpack("<Q", data[-16:-8])[0]
    put("plan", "exe-payload", data[-24 - n:-24])

    shutil.rmtree(tmp)
    total = sum(os.path.getsize(f) for f in glob.glob("fuzz/corpus/*/*"))
    print("make_corpus: %d files, %.1f KiB in fuzz/corpus" % (len(glob.glob("fuzz/corpus/*/*")), total / 1024))


if __name__ == "__main__":
    main()
