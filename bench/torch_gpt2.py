#!/usr/bin/env python3
"""torch_gpt2.py — the PyTorch peer of bench_cuda: GPT-2 written here in plain PyTorch (its own
model, not loom's and not transformers'), loaded from the same safetensors file (Hugging Face
names, Conv1D weights [in, out]), forward timed in fp32 on the GPU.

    python3 bench/torch_gpt2.py WEIGHTS.safetensors --n-layer 12 --n-head 12 --shapes 1x1024 16x1024
        [--compare-logits LOOM_OUT.safetensors --tokens TOKENS.safetensors]

fp32 throughout with TF32 off (torch.backends.*.allow_tf32 = False), as loom's cuBLASLt GEMMs
(CUBLAS_COMPUTE_32F); attention through F.scaled_dot_product_attention(is_causal=True). Each
shape: 3 warm-up forwards, then 10 timed with CUDA events; the median ms and TFLOP/s with the
FLOP count bench_cuda uses (2·M·N·K per matmul, attention 2·B·H·T·T·(2·Dh), the full T×T).
--compare-logits: runs the tokens of TOKENS through the model and prints the max abs and rel
error of loom's logits against PyTorch's (an independent check of the CUDA backend)."""
import argparse
import math

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def forward(p, tokens, n_layer, n_head):
    B, T = tokens.shape
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    C = x.shape[-1]
    for l in range(n_layer):
        pre = f"h.{l}."
        h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], 1e-5)
        qkv = torch.addmm(p[pre + "attn.c_attn.bias"], h.view(-1, C), p[pre + "attn.c_attn.weight"]).view(B, T, 3, n_head, C // n_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B * T, C)
        x = x + torch.addmm(p[pre + "attn.c_proj.bias"], a, p[pre + "attn.c_proj.weight"]).view(B, T, C)
        h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], 1e-5)
        h = F.gelu(torch.addmm(p[pre + "mlp.c_fc.bias"], h.view(-1, C), p[pre + "mlp.c_fc.weight"]), approximate="tanh")
        x = x + torch.addmm(p[pre + "mlp.c_proj.bias"], h, p[pre + "mlp.c_proj.weight"]).view(B, T, C)
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    return x @ p["wte.weight"].t()


def flops(B, T, C, L, V):
    tokens = B * T
    per_layer = 2 * tokens * C * (3 * C + C + 4 * C + 4 * C) + 2 * B * T * T * 2 * C
    return L * per_layer + 2 * tokens * C * V


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--shapes", nargs="*", default=["1x1024", "16x1024"])
    ap.add_argument("--compare-logits")
    ap.add_argument("--tokens")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    p = {k: v.to(dev, torch.float32) for k, v in load_file(a.weights).items()}
    V, C = p["wte.weight"].shape
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; GPT-2 C={C} L={a.n_layer} V={V}, fp32, TF32 off")
    with torch.no_grad():
        if a.compare_logits:
            tokens = load_file(a.tokens)["tokens"].to(dev, torch.long)
            want = forward(p, tokens, a.n_layer, a.n_head).double()
            got = load_file(a.compare_logits)["logits"].to(dev, torch.float64)
            err = (got - want).abs()
            print(f"loom cuda vs torch logits {tuple(tokens.shape)}: max abs err {err.max().item():.2e}, "
                  f"max rel err {(err.max() / want.abs().max()).item():.2e}")
        for shape in a.shapes:
            B, T = map(int, shape.split("x"))
            tokens = torch.randint(0, V, (B, T), device=dev)
            for _ in range(3):
                forward(p, tokens, a.n_layer, a.n_head)
            times = []
            for _ in range(10):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                forward(p, tokens, a.n_layer, a.n_head)
                e.record()
                torch.cuda.synchronize()
                times.append(s.elapsed_time(e))
            times.sort()
            ms = times[len(times) // 2]
            f = flops(B, T, C, a.n_layer, V)
            print(f"torch eager fp32 B={B} T={T}: median {ms:.3f} ms, min {times[0]:.3f} ms; "
                  f"{f / 1e9:.1f} GFLOP -> {f / ms / 1e9:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
