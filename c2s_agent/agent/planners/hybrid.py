"""The hybrid planner: the embedded planner's tool matching proposes the three best tools for each clause of the
question; the LLM planner's model chooses among them and fills their arguments under the same plan schema
(:mod:`.schema`), with the same retry and fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .embedded import GROUNDED_THRESHOLD
from .llm import LLMPlanner, fenced_json
from .matching import intent, mask_entities, split_clauses

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView

#: Tools proposed per clause.
TOP_K = 3


class HybridPlanner(LLMPlanner):
    """An LLM planner that chooses only among the tools the embedded matcher proposes."""

    name, label = "hybrid", "hybrid LLM"

    def candidates(self, question: str, tools: dict[str, Tool], vocab: DatasetView | None) -> tuple[dict, str]:
        """The top ``TOP_K`` tools of every clause that matches some tool at least weakly, and a hint listing them
        per clause; no tools when no clause matches any."""
        clauses = split_clauses(question)
        names, sim = self.embedded.scores([mask_entities(intent(c), vocab) for c in clauses], tools)
        proposed: dict[str, list[str]] = {}
        for clause, row in zip(clauses, sim):
            if row.max() >= GROUNDED_THRESHOLD:
                proposed[clause] = [names[int(i)] for i in np.argsort(-row)[:TOP_K]]
        allowed = {n: tools[n] for top in proposed.values() for n in top}
        hint = "Candidate tools for each part of the question (JSON data; choose among them):\n```json\n"
        return allowed, hint + fenced_json(proposed) + "\n```"
