"""llama_numpy.py — a LLaMA decoder forward in NumPy, float64, from the paper (Touvron et al.,
2023) and Hugging Face's LlamaForCausalLM semantics, independently of loom's code.

Weights use Hugging Face's names; Linear weights are [out, in]: y = x @ W.T (no biases).
Pre-norm RMSNorm (x / sqrt(mean(x^2) + eps) * w); rotary embeddings in HF's rotate-half layout
(inv_freq = theta^(-2i/D), cos/sin of cat(freqs, freqs), q*cos + rotate_half(q)*sin);
grouped-query attention with each key/value head repeated n_head/n_kv_head times (repeat_kv);
SwiGLU MLP down(silu(gate(x)) * up(x)); untied LM head. The loss is as in gpt2_numpy."""
import numpy as np

from gpt2_numpy import cross_entropy, softmax


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope(x, theta):
    """x: (B, H, T, D), positions 0..T-1."""
    T, D = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, D, 2, dtype=np.float64) / D)     # (D/2,)
    freqs = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]      # (T, D/2)
    emb = np.concatenate([freqs, freqs], axis=-1)                            # (T, D)
    return x * np.cos(emb) + rotate_half(x) * np.sin(emb)


def repeat_kv(x, n_rep):
    """(B, G, T, D) -> (B, G * n_rep, T, D): kv head g serves query heads g*n_rep .. g*n_rep+n_rep-1."""
    return np.repeat(x, n_rep, axis=1)


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(p, tokens, targets, n_layer, n_head, n_kv_head, eps=1e-5, theta=10000.0, head_dim=None):
    """Returns (logits, loss). head_dim: config.json's, when not d_model / n_head."""
    B, T = tokens.shape
    x = p["model.embed_tokens.weight"][tokens]
    C = x.shape[-1]
    D = head_dim or C // n_head
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)
    for l in range(n_layer):
        pre = f"model.layers.{l}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).reshape(B, T, n_head, D).transpose(0, 2, 1, 3)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).reshape(B, T, n_kv_head, D).transpose(0, 2, 1, 3)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).reshape(B, T, n_kv_head, D).transpose(0, 2, 1, 3)
        q, k = rope(q, theta), rope(k, theta)
        k, v = repeat_kv(k, n_head // n_kv_head), repeat_kv(v, n_head // n_kv_head)
        scores = np.where(causal, -np.inf, q @ k.transpose(0, 1, 3, 2) / np.sqrt(D))
        a = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, n_head * D)
        x = x + a @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = silu(h @ p[pre + "mlp.gate_proj.weight"].T)
        up = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (gate * up) @ p[pre + "mlp.down_proj.weight"].T
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]  # tied
    logits = rms_norm(x, p["model.norm.weight"], eps) @ head.T
    return logits, cross_entropy(logits, targets)
