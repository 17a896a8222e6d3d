#!/usr/bin/env python3
"""adamw_peer.py — PyTorch's side of the optimizer update comparison (issue 21, goal 2): fused
AdamW (β 0.9/0.95, weight decay 0.1 on matrices, lr 3e-4) after clip_grad_norm_(1.0,
foreach=True), on params and gradients of GPT-2 small's shapes (124 M), 2 threads; one untimed
step, then six timed, printed with their median. loom's side is the update program's time:
`loom train models/gpt2.loom -D seq=16 -D batch=1 --steps 4 --stats` (`stats update: ... time
T ms` over the 4 steps). Run them alternately and say the load.

    /root/.cache/loom-peers/bin/python bench/adamw_peer.py   (bench/cpu_peers.py's venv)"""
import statistics
import time

import torch

torch.set_num_threads(2)
L, C, V, CTX = 12, 768, 50257, 1024
shapes = [(V, C), (CTX, C), (C,), (C,)]
for _ in range(L):
    shapes += [(C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, 4 * C), (4 * C,), (4 * C, C), (C,)]
ps = [torch.nn.Parameter(torch.randn(s) * 0.02) for s in shapes]
for p in ps:
    p.grad = torch.randn_like(p) * 1e-3
groups = [{"params": [p for p in ps if p.dim() >= 2], "weight_decay": 0.1},
          {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0}]
opt = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), fused=True)
opt.step()
ts = []
for _ in range(6):
    t = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=True)
    opt.step()
    ts.append((time.perf_counter() - t) * 1e3)
print(f"torch fused AdamW + clip_grad_norm_, {sum(p.numel() for p in ps) / 1e6:.1f} M params, 2 threads: "
      f"{', '.join(f'{x:.1f}' for x in ts)} ms; median {statistics.median(ts):.1f} ms")
