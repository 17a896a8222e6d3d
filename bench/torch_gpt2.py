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
error of loom's logits against PyTorch's (an independent check of the CUDA backend).

--train B T: the training step instead (issue 16's comparison): forward, cross-entropy on
random next tokens, backward and fused AdamW, with the weights as trainable fp32 masters,
under --dtype bf16 (autocast, the default: tensor cores, fp32 accumulation) or fp32 (TF32
off), eager and then torch.compile (--no-compile: eager only). Each: 3 warm-up steps, then
--steps timed with CUDA events; the median ms, tokens/s and MFU against --peak-tflops (H200
dense bf16 989; fp32 67) with 6·N·tokens + the attention FLOPs (3× bench_cuda's forward). Also
the device-to-device copy bandwidth (a 4 GiB copy, bytes read + written): the memory ceiling."""
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


def train_step_bench(p, B, T, n_layer, n_head, dtype, steps, compile_, peak):
    """Median ms of a training step (eager, then compiled) printed with tokens/s and MFU."""
    dev = p["wte.weight"].device
    V, C = p["wte.weight"].shape
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-4, fused=True)
    tokens = torch.randint(0, V, (B, T + 1), device=dev)
    x, y = tokens[:, :-1], tokens[:, 1:]
    f = 3 * flops(B, T, C, n_layer, V)  # forward + backward (two GEMMs per forward GEMM)
    amp = dtype == "bf16"

    def loss_of(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = forward(params, x, n_layer, n_head)
        return F.cross_entropy(logits.float().view(-1, V), y.reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x, y)
        loss.backward()
        opt.step()
        return loss

    for mode in ["eager", "compile"] if compile_ else ["eager"]:
        loss_fn = torch.compile(loss_of) if mode == "compile" else loss_of
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            loss = step()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        times.sort()
        ms = times[len(times) // 2]
        print(f"torch {mode} train step {dtype} B={B} T={T}: median {ms:.2f} ms, min {times[0]:.2f} ms; "
              f"{B * T / ms * 1e3:,.0f} tok/s; {f / ms / 1e9:.1f} TFLOP/s, MFU {100 * f / ms / 1e9 / peak:.1f}% "
              f"of {peak:g}; loss {loss.item():.4f}")


def copy_bandwidth(dev):
    n = 1 << 30  # 4 GiB of f32
    a = torch.empty(n, dtype=torch.float32, device=dev)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        b.copy_(a)
    e.record()
    torch.cuda.synchronize()
    ms = s.elapsed_time(e) / 10
    print(f"device-to-device copy: {2 * 4 * n / ms / 1e9:.0f} GB/s (read + written, 4 GiB, {ms:.2f} ms)")
    del a, b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--shapes", nargs="*", default=["1x1024", "16x1024"])
    ap.add_argument("--compare-logits")
    ap.add_argument("--tokens")
    ap.add_argument("--train", nargs=2, type=int, metavar=("B", "T"))
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    p = {k: v.to(dev, torch.float32) for k, v in load_file(a.weights).items()}
    V, C = p["wte.weight"].shape
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; GPT-2 C={C} L={a.n_layer} V={V}, fp32, TF32 off")
    if a.train:
        peak = a.peak_tflops or (989.0 if a.dtype == "bf16" else 67.0)
        copy_bandwidth(dev)
        train_step_bench(p, a.train[0], a.train[1], a.n_layer, a.n_head, a.dtype, a.steps, not a.no_compile, peak)
        return
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
