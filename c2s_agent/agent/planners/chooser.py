"""The tuned planner's tool chooser: a small causal language model that reads one clause of a question (its
dataset labels and genes masked, as the matcher reads it) and a short description of each tool the embedded
matcher proposes for it, and scores each tool's name as the answer. The bundled chooser is SmolLM2-135M-Instruct
with a LoRA adapter (``data/models/planner-smollm2``) trained by ``c2s train --task planner``
(:mod:`.chooser_data`); its answer is a choice among proposed tools, so it cannot plan a tool that is not there.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import C2SError, InputError

if TYPE_CHECKING:
    from ...tools import Tool

#: The bundled chooser (a LoRA adapter on the pulled ``smollm2``).
BUNDLED = "planner-smollm2"
#: Tools proposed to the chooser per clause, in training and in planning.
TOP_K = 3
HEAD = "Choose the tool that answers the request.\nTools:\n"
#: Words of a tool's description shown to the chooser.
DESCRIPTION_WORDS = 30


def describe(tool: Tool) -> str:
    """The first sentence of the tool's description, at most ``DESCRIPTION_WORDS`` words, on one line."""
    text = " ".join(tool.description.split())
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", text)
    words = (text[: end.start() + 1] if end else text).split()
    return " ".join(words[:DESCRIPTION_WORDS]) + (" ..." if len(words) > DESCRIPTION_WORDS else "")


def prompt(clause: str, tools: list[Tool]) -> str:
    """The chooser's prompt: the candidate tools in the given order, then the clause as a JSON string."""
    lines = [f"- {t.name}: {describe(t)}" for t in tools]
    return HEAD + "\n".join(lines) + f"\nRequest: {json.dumps(clause)}\nTool:"


def answer(name: str) -> str:
    return f" {name}"


def bundled_path() -> Path:
    from ...resources import bundled

    return bundled("data") / "models" / BUNDLED


class ToolChooser:
    """Scores candidate tools for a clause with a causal LM (a model directory or a LoRA adapter on a pulled base)."""

    def __init__(self, path: str | Path | None = None, settings=None):
        import torch
        from transformers import AutoTokenizer

        from ...models.adapters import load_causal_lm

        path = Path(path) if path else bundled_path()
        try:
            model, source = load_causal_lm(path, settings)
        except (C2SError, OSError) as e:
            raise InputError(
                f"planner model {path}", f"cannot be loaded ({e})", "run `c2s models pull smollm2` first"
            ) from e
        self.model, self.tok, self.path = model.eval(), AutoTokenizer.from_pretrained(source), path
        if settings is not None and settings.threads:
            torch.set_num_threads(settings.threads)

    def choose(self, clause: str, tools: list[Tool]) -> dict[str, float]:
        """Probability of each tool (by name) as the answer for ``clause``, candidates shown in name order."""
        import torch

        tools = sorted(tools, key=lambda t: t.name)
        ids = self.tok(prompt(clause, tools)).input_ids
        logp = {}
        with torch.inference_mode():
            head = self.model(torch.tensor([ids]), use_cache=True)
            for t in tools:
                r = self.tok(answer(t.name), add_special_tokens=False).input_ids + [self.tok.eos_token_id]
                out = self.model(torch.tensor([r[:-1]]), cache=copy.deepcopy(head.cache), use_cache=True)
                logits = torch.cat([head.logits[0, -1:], out.logits[0]]).log_softmax(-1)
                logp[t.name] = float(logits[torch.arange(len(r)), torch.tensor(r)].sum())
        probs = torch.tensor(list(logp.values())).softmax(0).tolist()
        return dict(zip(logp, probs))
