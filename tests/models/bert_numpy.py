"""bert_numpy.py — BERT's encoder forward in NumPy, float64, from the paper (Devlin et al., 2019)
and Hugging Face's BertModel semantics, independently of loom's code.

Weights use Hugging Face's names; Linear weights are [out, in]: y = x @ W.T + b. Embeddings are
word + position + token type 0, then LayerNorm; each layer is post-norm: x = LN(x + attn(x)),
x = LN(x + FFN(x)), FFN with the exact (erf) GELU; padding keys get an additive -10000 before the
softmax. The pooler is tanh(dense(hidden state of the first token))."""
import math

import numpy as np

from gpt2_numpy import layer_norm, softmax

_erf = np.vectorize(math.erf)


def gelu_erf(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def linear(x, p, name):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def forward(p, input_ids, attention_mask, n_layer, n_head, eps=1e-12):
    """Returns (last_hidden_state (B, T, C), pooler_output (B, C))."""
    B, T = input_ids.shape
    x = (p["embeddings.word_embeddings.weight"][input_ids]
         + p["embeddings.position_embeddings.weight"][:T]
         + p["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps)
    C = x.shape[-1]
    D = C // n_head
    add_mask = (1.0 - attention_mask.astype(np.float64))[:, None, None, :] * -10000.0  # (B, 1, 1, T)
    for l in range(n_layer):
        pre = f"encoder.layer.{l}."

        def heads(t):
            return t.reshape(B, T, n_head, D).transpose(0, 2, 1, 3)

        q = heads(linear(x, p, pre + "attention.self.query"))
        k = heads(linear(x, p, pre + "attention.self.key"))
        v = heads(linear(x, p, pre + "attention.self.value"))
        probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + add_mask)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = layer_norm(x + linear(ctx, p, pre + "attention.output.dense"),
                       p[pre + "attention.output.LayerNorm.weight"],
                       p[pre + "attention.output.LayerNorm.bias"], eps)
        h = gelu_erf(linear(x, p, pre + "intermediate.dense"))
        x = layer_norm(x + linear(h, p, pre + "output.dense"),
                       p[pre + "output.LayerNorm.weight"], p[pre + "output.LayerNorm.bias"], eps)
    pooled = np.tanh(linear(x[:, 0], p, "pooler.dense"))
    return x, pooled
