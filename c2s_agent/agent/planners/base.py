"""The planner interface: question + installed tools + the dataset's view -> a checked :class:`Plan`; and what
every planner shares: finishing a plan (producers inserted, order, check) and re-planning that keeps the intent."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..arguments import entity_kind, fill_args
from ..plan import Note, Plan, Step, check, resolve

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView

#: ``record(kind, name=..., duration_s=..., tokens_in=..., tokens_out=..., ...)`` writes a ledger row.
Recorder = Callable[..., None]


class Planner(Protocol):
    """Every planner has this interface (registered through the ``register_planners`` hook)."""

    name: str

    def plan(
        self, question: str, tools: dict[str, Tool], view: DatasetView | None, record: Recorder | None = None
    ) -> Plan:
        """A checked plan for ``question`` using only ``tools``; no steps (and ``unanswered``) when none fits."""
        ...

    def replan(
        self,
        plan: Plan,
        failed: Step,
        error: str,
        tools: dict[str, Tool],
        view: DatasetView | None,
        record: Recorder | None = None,
        done_slots: set[str] | None = None,
    ) -> tuple[list[Step], list[Note]]:
        """Steps to run instead of ``failed`` and the steps after it, with notes on what changed; steps that
        needed what ``failed`` would have produced (and ``done_slots`` do not hold) are dropped."""
        ...

    def observe(
        self,
        plan: Plan,
        done: Step,
        summary: dict,
        tools: dict[str, Tool],
        view: DatasetView | None,
        record: Recorder | None = None,
        done_slots: set[str] | None = None,
        budget: int = 0,
    ) -> tuple[list[Step] | None, list[Note]]:
        """After ``done`` finished (``summary``: :func:`c2s_agent.agent.observation.summary` of its result): the
        steps to run instead of the rest of ``plan`` (none: stop here; at most ``budget``), or None to go on as
        planned; with notes on what changed."""
        ...


def finish(plan: Plan, tools: dict[str, Tool], view: DatasetView | None) -> Plan:
    """Insert producer steps, order by requires/produces, and record what the check finds."""
    have = set(view.slots) if view is not None else set()
    steps, notes = resolve(plan.steps, tools, have, fill=lambda tool, why: fill_args(tool, why, view)[0])
    plan = plan.model_copy(update={"steps": steps, "notes": [*plan.notes, *notes]})
    return plan.model_copy(update={"problems": check(plan, tools, view)})


def drop_dependents(
    remaining: list[Step], failed: Step, tools: dict[str, Tool], view: DatasetView | None, done_slots: set[str]
) -> tuple[list[Step], list[str]]:
    """Remove from ``remaining`` the steps that need a slot only ``failed`` would have produced."""
    lost = set(tools[failed.tool].slots("produces", failed.args)) if failed.tool in tools else set()
    have = (set(view.slots) if view else set()) | done_slots
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


def _own_labels(view: DatasetView | None) -> str | None:
    """The dataset's own label column (cell types, else clusters), never one a step predicted."""
    return None if view is None else (view.roles.cell_type or view.roles.cluster)


def keep_intent(
    failed: Step, remaining: list[Step], tools: dict[str, Tool], view: DatasetView | None, done_slots: set[str]
) -> tuple[list[Step] | None, list[Note]]:
    """Re-plans that serve the failed step's question with the dataset's own labels: a column the failed step
    named that the data lacks becomes the dataset's label column (the step runs again); when the failed step was
    to produce a label column (e.g. predicted cell types), the later steps use the dataset's own labels instead.
    (None, []) when neither applies."""
    own, tool = _own_labels(view), tools.get(failed.tool)
    if own is None or tool is None:
        return None, []
    have = set(view.columns) | {s.partition(":")[2] for s in done_slots if s.startswith("obs:")}
    fields = tool.input_model.model_fields
    bad = [
        n
        for n, f in fields.items()
        if entity_kind(n, f) == "obs_column" and failed.args.get(n) and failed.args[n] not in have
    ]
    if bad:
        args = {
            **fill_args(tool, failed.why, view)[0],
            **{k: v for k, v in failed.args.items() if k not in bad},
            **{n: own for n in bad},
        }
        note = Note(
            kind="fallback",
            text=f"{failed.id} ({failed.tool}): {', '.join(f'{n}={failed.args[n]!r}' for n in bad)} "
            f"is not in the data; it runs again on the dataset's own labels {own!r}",
        )
        return [failed.model_copy(update={"id": f"{failed.id}r", "args": args, "origin": "replacement"})] + remaining, [
            note
        ]
    lost = {s.partition(":")[2] for s in tool.slots("produces", failed.args) if s.startswith("obs:")} - have
    users = [s for s in remaining if lost & set(map(str, s.args.values()))]
    if not lost or not users:
        return None, []
    out = []
    for step in remaining:
        if step in users:
            args = {k: (own if v in lost else v) for k, v in step.args.items()}
            args.update(
                {
                    k: v
                    for k, v in fill_args(tools[step.tool], step.why, view)[0].items()
                    if entity_kind(k, tools[step.tool].input_model.model_fields[k]) != "obs_column"
                }
            )
            step = step.model_copy(update={"args": args})
        out.append(step)
    return out, [
        Note(
            kind="fallback",
            text=f"{failed.id} ({failed.tool}) failed, so later steps use the dataset's "
            f"own labels {own!r} instead of {', '.join(sorted(lost))}",
        )
    ]
