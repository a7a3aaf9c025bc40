"""vLLM logits processor for the ``ban_repeats`` decoding setting (imports vLLM: load it only with vLLM).

vLLM (V1) takes logits processors per engine, not per request: the engine is built with this class's name
(``vllm_backend.BAN_REPEATS``, so Ray workers load it too) and a request opts in with
``SamplingParams(extra_args={"ban_repeats": True})``.
"""

from __future__ import annotations

from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

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
