"""The tuned planner: the embedded planner whose choice of tool, among the matcher's near-equal proposals for a
clause, is made by a fine-tuned language model (:mod:`.chooser`); arguments, steps per group, order and the plan
check stay the embedded planner's. A clause with one plausible tool costs no model call; a chosen tool whose
required arguments the question does not give leaves the choice to the matcher."""

from __future__ import annotations

import numpy as np

from .chooser import TOP_K, ToolChooser
from .embedded import MARGIN, EmbeddedPlanner
from .matching import intent, mask_entities

#: The tools proposed to the model score within this much of the clause's best match (at most ``TOP_K`` of them).
WINDOW = 2 * MARGIN


class TunedPlanner(EmbeddedPlanner):
    """Embedded planning with a fine-tuned model choosing between near-equal tools."""

    name = "tuned"

    def __init__(self, settings=None, model=None):
        super().__init__(settings)
        self.chooser = ToolChooser(model or getattr(settings, "planner_model", None), settings)
        self.calls = self.overrides = 0  # model calls, and choices other than the matcher's best

    def _choose(self, clause, row, names, tools, view, question, have=frozenset(), near=frozenset()):
        top = [int(i) for i in np.argsort(-row)[:TOP_K] if row[i] >= row.max() - WINDOW]
        if len(top) > 1:
            probs = self.chooser.choose(mask_entities(intent(clause), view), [tools[names[i]] for i in top])
            best = names.index(max(probs, key=probs.get))
            self.calls += 1
            self.overrides += best != top[0]
            boosted = row.copy()
            boosted[best] = row.max() + 2 * MARGIN
            tool, args, notes, _ = super()._choose(clause, boosted, names, tools, view, question, have, near)
            try:
                tool.input_model.model_validate(args)
                return tool, args, notes, float(row[best])
            except Exception:  # noqa: BLE001 - the question does not give the chosen tool's required arguments
                pass
        return super()._choose(clause, row, names, tools, view, question, have, near)
