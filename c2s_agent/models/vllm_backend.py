"""In-process vLLM backend (``vllm.LLM``) for GPUs; vLLM is imported only when this backend is used.

Not exercised by the default test suite (vLLM is not a dependency); embeddings are not offered by a
generation engine, so ``embed`` raises a ModelError pointing at the transformers backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .backend import Completion, Embeddings, GenParams, LabelScores


class VLLMBackend:
    name = "vllm"

    def __init__(self, path: str, settings=None):
        try:
            from vllm import LLM
        except ImportError:
            raise ModelError("backend 'vllm'", "vllm is not installed", "pip install vllm (GPU), or use the transformers backend") from None
        dtype = getattr(settings, "dtype", "float32")
        self.llm = LLM(model=str(path), dtype=dtype, seed=0)
        self.tok = self.llm.get_tokenizer()
        self.model_id = Path(path).name
        meta = Path(path) / "c2s_model.json"
        self.metadata = json.loads(meta.read_text()) if meta.exists() else {}

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        from vllm import SamplingParams

        kwargs = dict(max_tokens=params.max_new_tokens, temperature=params.temperature, seed=params.seed, logprobs=0)
        if params.temperature > 0:
            kwargs.update(top_k=params.top_k or -1, top_p=params.top_p)
        if params.allowed:
            ids = self.tok.convert_tokens_to_ids(list(params.allowed)) + [self.tok.eos_token_id]
            kwargs["allowed_token_ids"] = [i for i in ids if i is not None]
        if params.ban_repeats:
            kwargs["logits_processors"] = [_ban_repeats]
        outs = self.llm.generate(list(prompts), SamplingParams(**kwargs), use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            lp = float(c.cumulative_logprob or 0.0)
            res.append(Completion(c.text.strip(), len(o.prompt_token_ids), len(c.token_ids), lp))
        return res

    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        from vllm import SamplingParams

        pairs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
        seqs, lab_len = [], {}
        for i, j in pairs:
            p = self.tok(prompts[i])["input_ids"]
            lab = self.tok(labels[j], add_special_tokens=False)["input_ids"]
            lab_len[(i, j)] = len(lab)
            seqs.append({"prompt_token_ids": p + lab})
        outs = self.llm.generate(seqs, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
        out = np.zeros((len(prompts), len(labels)))
        for (i, j), o, s in zip(pairs, outs, seqs):
            ids = s["prompt_token_ids"]
            m = lab_len[(i, j)]
            out[i, j] = sum(o.prompt_logprobs[t][ids[t]].logprob for t in range(len(ids) - m, len(ids)))
        return LabelScores(out, None, sum(len(s["prompt_token_ids"]) for s in seqs))

    def embed(self, texts: list[str]) -> Embeddings:
        raise ModelError("backend 'vllm'", "does not compute embeddings", "embed with the transformers backend (--model PATH)")


def _ban_repeats(token_ids, logits):
    if token_ids:
        logits[list(set(token_ids))] = float("-inf")
    return logits
