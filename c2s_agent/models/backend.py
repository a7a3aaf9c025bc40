"""The backend protocol: what a model engine must do for the C2S tasks, and the results it returns.

Backends are registered by plugins (hook ``register_backends``) as ``factory(model, settings) -> Backend``.
Built in: ``transformers`` (in-process, the default), ``openai-http`` (any OpenAI-compatible server by URL)
and ``vllm`` (in-process ``vllm.LLM``, imported only when used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from .constraint import WordList


@dataclass
class GenParams:
    """Decoding settings. ``temperature=0`` is greedy. ``ban_repeats`` forbids a token twice in one completion;
    ``words`` constrains the completion to a list of words (genes or labels, any number of tokens each; see
    :mod:`.constraint`).
    ``guidance`` > 0 is classifier-free guidance: each step samples from ``lp + guidance * (lp - lp_u)``, where
    ``lp_u`` are the log-probabilities after ``unconditional[i]`` (prompt ``i`` without its condition); only
    backends with ``supports_guidance`` offer it."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 50
    top_p: float = 0.95
    seed: int = 0
    ban_repeats: bool = False
    words: WordList | None = None
    stop: tuple[str, ...] = ()  # text that ends a completion (left out of its text, its token counted)
    prompt_nll: bool = False  # also report each prompt's mean token NLL (Completion.prompt_nll)
    guidance: float = 0.0
    unconditional: tuple[str, ...] | None = None


@dataclass
class Completion:
    text: str
    n_prompt_tokens: int
    n_completion_tokens: int
    logprob: float = 0.0  # sum of the completion tokens' log-probabilities
    token_logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"  # "stop" (end of text) or "length" (max_new_tokens reached)
    prompt_nll: float | None = None  # mean NLL of the prompt's tokens, when asked for


def cut_at_stop(text: str, stop) -> str:
    """``text`` up to the first of the ``stop`` strings."""
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if s and s in text:
            text = text[: text.index(s)]
    return text


@dataclass
class LabelScores:
    """Log-likelihood of each candidate label after each prompt, and how typical each prompt is."""

    logprobs: np.ndarray  # (n_prompts, n_labels), log P(label | prompt)
    prompt_nll: np.ndarray | None  # (n_prompts,) mean negative log-likelihood of the prompt's tokens
    n_tokens: int = 0


@dataclass
class Embeddings:
    vectors: np.ndarray  # (n, d), mean of the last hidden state over real (non-padding) tokens
    n_tokens: int = 0
    extra: dict = field(default_factory=dict)


def refuse_guidance(backend: str, params: GenParams) -> None:
    """Backends without classifier-free guidance say so instead of silently sampling unguided."""
    if params.guidance > 0:
        from ..errors import InputError

        raise InputError(
            "guidance", f"is not offered by the {backend} backend", "use guidance=0, or the transformers backend"
        )


@runtime_checkable
class Backend(Protocol):
    """A loaded model that completes, scores and embeds text in batches."""

    name: str
    model_id: str
    metadata: dict  # the model's c2s_model.json (labels, conditions, vocabulary...), {} for other models

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]: ...

    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores: ...

    def embed(self, texts: list[str]) -> Embeddings: ...


def length_buckets(lengths, budget: int, order=None) -> list[list[int]]:
    """Group item indices, taken in ``order`` (default: by length), into batches whose padded size
    (longest item x batch size) stays within ``budget`` tokens; an item longer than the budget is a batch alone."""
    if order is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, cur, cur_max = [], [], 0
    for i in order:
        n = lengths[i]
        if cur and max(cur_max, n) * (len(cur) + 1) > budget:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        out.append(cur)
    return out
