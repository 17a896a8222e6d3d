"""gpt2_numpy.py — GPT-2's forward pass in NumPy, float64, written from the paper (Radford et al.,
2019) and Hugging Face's GPT2LMHeadModel semantics, independently of loom's code.

Weights use Hugging Face's names and layouts (Conv1D weights are [in, out]: y = x @ W + b).
Pre-norm blocks; LayerNorm eps 1e-5; tanh-approximation GELU ("gelu_new"); causal attention with
scores scaled by 1/sqrt(d_head); the LM head is tied to wte. The loss is the mean token cross
entropy over positions whose target is >= 0 (targets are the next tokens, already shifted)."""
import numpy as np


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(x, p, pre, n_head):
    B, T, C = x.shape
    D = C // n_head
    qkv = x @ p[pre + "attn.c_attn.weight"] + p[pre + "attn.c_attn.bias"]   # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=-1)
    q, k, v = (t.reshape(B, T, n_head, D).transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, H, T, D)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)                       # (B, H, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores = np.where(future, -np.inf, scores)
    y = softmax(scores) @ v                                                  # (B, H, T, D)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)
    return y @ p[pre + "attn.c_proj.weight"] + p[pre + "attn.c_proj.bias"]


def mlp(x, p, pre):
    h = gelu_tanh(x @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"])
    return h @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]


def cross_entropy(logits, targets):
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    keep = targets >= 0
    if not keep.any():
        return np.float64(0.0)
    z = logits[keep]
    m = z.max(-1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    return -logp[np.arange(len(z)), targets[keep]].mean()


def forward(p, tokens, targets, n_layer, n_head):
    """p: {HF name: float64 array}; tokens, targets: (B, T) ints. Returns (logits, loss)."""
    T = tokens.shape[1]
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    for l in range(n_layer):
        pre = f"h.{l}."
        x = x + attention(layer_norm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"]), p, pre, n_head)
        x = x + mlp(layer_norm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"]), p, pre)
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"])
    logits = x @ p["wte.weight"].T
    return logits, cross_entropy(logits, targets)
