"""vLLM logits processors for c2s decoding settings (imports vLLM: load it only with vLLM).

vLLM (V1) takes logits processors per engine, not per request: the engine is built with these classes' names
(``vllm_backend.LOGITS_PROCESSORS``; a vLLM server with ``--logits-processors``), and a request opts in through
``SamplingParams.extra_args`` (``vllm_xargs`` over HTTP): ``{"ban_repeats": True}`` forbids any token already
generated; ``{"c2s_words": <constraint.encode(...)>}`` constrains the completion to a word list with the same
trie walk as the transformers backend.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from .constraint import WordState, WordTrie


class BanRepeats(AdapterLogitsProcessor):
    """Forbid any token already generated in this completion (tokens of the prompt stay allowed)."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        if not (params.extra_args or {}).get("ban_repeats"):
            return None
        return _ban_generated


def _ban_generated(output_ids: list[int], logits):
    if output_ids:
        logits[list(set(output_ids))] = float("-inf")
    return logits


class WordListProcessor(AdapterLogitsProcessor):
    """Only tokens that continue a word of the request's word list (or start the next one, or end the list)."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params):
        spec = (params.extra_args or {}).get("c2s_words")
        return _Walk(_trie(spec)) if spec else None


@lru_cache(maxsize=8)
def _trie(spec: str) -> WordTrie:
    return WordTrie.from_json(spec)


class _Walk:
    """One request's place in the trie, advanced by the tokens generated since the last call."""

    def __init__(self, trie: WordTrie):
        self.state, self.seen = WordState(trie), 0

    def __call__(self, output_ids: list[int], logits):
        for tok in output_ids[self.seen :]:
            self.state.advance(int(tok))
        self.seen = len(output_ids)
        mask = torch.full_like(logits, float("-inf"))
        mask[torch.as_tensor(self.state.allowed(), device=logits.device)] = 0.0
        return logits + mask
