"""The planner interface: question + installed tools + dataset vocabulary -> a checked :class:`Plan`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..plan import Plan, Step, check, resolve
from ..vocabulary import fill_args

if TYPE_CHECKING:
    from ...tools import Tool
    from ..vocabulary import Vocabulary

#: ``record(kind, name=..., duration_s=..., tokens_in=..., tokens_out=..., ...)`` writes a ledger row.
Recorder = Callable[..., None]


class Planner(Protocol):
    """Both planners share this interface."""

    name: str

    def plan(self, question: str, tools: dict[str, Tool], vocab: Vocabulary | None,
             record: Recorder | None = None) -> Plan:
        """A checked plan for ``question`` using only ``tools``; no steps (and ``unanswered``) when none fits."""
        ...

    def replan(self, plan: Plan, failed: Step, error: str, tools: dict[str, Tool], vocab: Vocabulary | None,
               record: Recorder | None = None, done_slots: set[str] | None = None) -> list[Step]:
        """Steps to run instead of ``failed`` and the steps after it; steps that needed what ``failed`` would
        have produced (and ``done_slots`` do not hold) are dropped."""
        ...


def finish(plan: Plan, tools: dict[str, Tool], vocab: Vocabulary | None) -> Plan:
    """Insert producer steps, order by requires/produces, and record what the check finds."""
    have = set(vocab.slots) if vocab is not None else set()
    steps, notes = resolve(plan.steps, tools, have, fill=lambda tool, why: fill_args(tool, why, vocab)[0])
    plan = plan.model_copy(update={"steps": steps, "notes": [*plan.notes, *notes]})
    return plan.model_copy(update={"problems": check(plan, tools, vocab)})


def drop_dependents(remaining: list[Step], failed: Step, tools: dict[str, Tool], vocab: Vocabulary | None,
                    done_slots: set[str]) -> tuple[list[Step], list[str]]:
    """Remove from ``remaining`` the steps that need a slot only ``failed`` would have produced."""
    lost = set(tools[failed.tool].slots("produces", failed.args)) if failed.tool in tools else set()
    have = (set(vocab.slots) if vocab else set()) | done_slots
    kept, notes = [], []
    for step in remaining:
        tool = tools.get(step.tool)
        needs = set(tool.slots("requires", step.args)) if tool else set()
        if needs & (lost - have):
            notes.append(f"dropped {step.id} ({step.tool}): it needed {sorted(needs & lost)} from failed {failed.id}")
            lost |= set(tool.slots("produces", step.args))
            continue
        kept.append(step)
        if tool:
            have |= set(tool.slots("produces", step.args))
    return kept, notes
