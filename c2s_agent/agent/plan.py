"""Plans: steps with tool names and arguments, ordered by what each tool requires and produces, checked
before they run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ..errors import PlanError

if TYPE_CHECKING:
    from ..tools import Tool
    from .dataset import DatasetView

NO_TOOL = "no installed tool can do this"


class Step(BaseModel):
    """One tool call: which tool, with which arguments, the part of the question it answers, and where it came from:
    the question, inserted because a later step needs what it produces, a replacement for a failed step, a
    planner's change after observing a result, or the user (an approval edit)."""

    id: str
    tool: str
    args: dict = Field(default_factory=dict)
    why: str = Field("", description="the clause of the question this step answers, or why it was added")
    score: float | None = Field(None, description="planner's match score for the tool")
    origin: Literal["question", "inserted", "replacement", "observation", "user"] = "question"


NoteKind = Literal[
    "assumption",
    "match",
    "missing",
    "inserted",
    "unanswered",
    "edited",
    "skipped",
    "replanned",
    "hypothesis",
    "fallback",
    "planner_fallback",
]


class Note(BaseModel):
    """Something a reader of the plan should know, by kind: an assumption the planner made, how the question's words
    were matched to the data's labels, an entity the data lacks, a step inserted, edited, skipped or re-planned, a
    plan the embedded planner made because the LLM planner's replies were invalid."""

    kind: NoteKind
    text: str

    def __str__(self) -> str:
        return self.text


class Plan(BaseModel):
    """An ordered list of steps, or an honest refusal when no installed tool fits."""

    question: str
    steps: list[Step] = Field(default_factory=list)
    planner: str
    unanswered: list[str] = Field(default_factory=list, description="clauses no installed tool can answer")
    notes: list[Note] = Field(default_factory=list, description="assumptions, matches, inserted steps ...")
    problems: list[str] = Field(default_factory=list, description="what the check found wrong")

    @property
    def answerable(self) -> bool:
        return bool(self.steps)

    @property
    def ok(self) -> bool:
        return self.answerable and not self.problems

    def summary(self) -> list[dict]:
        """Steps as plain ``{"id", "tool", "args"}`` dicts (for ``--dry-run --json`` and the benchmark)."""
        return [{"id": s.id, "tool": s.tool, "args": s.args} for s in self.steps]


def _renumber(steps: list[Step]) -> list[Step]:
    return [s.model_copy(update={"id": f"s{i + 1}"}) for i, s in enumerate(steps)]


def _template_matches(template: str, slot: str) -> bool:
    pattern = "^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template)) + "$"
    return re.match(pattern, slot) is not None


def producer_for(slot: str, tools: dict[str, Tool]) -> Tool | None:
    """The first tool whose ``produces`` can give ``slot``."""
    for tool in tools.values():
        if any(_template_matches(t, slot) for t in tool.produces):
            return tool
    return None


def _slots(tool: Tool, which: str, args: dict) -> list[str]:
    try:
        parsed = tool.input_model.model_validate(args)
    except Exception:  # noqa: BLE001 - invalid args are reported by check(); fall back to raw values
        parsed = args
    return tool.slots(which, parsed)


def resolve(steps: list[Step], tools: dict[str, Tool], have: set[str], fill=None) -> tuple[list[Step], list[Note]]:
    """Insert producer steps for missing required slots and order steps so producers come first.

    ``fill(tool, why)`` gives arguments for an inserted step (defaults when None). Returns the ordered steps
    and notes on what was inserted.
    """
    notes: list[Note] = []
    out: list[Step] = []
    available = set(have)

    def add(step: Step, depth: int = 0) -> None:
        tool = tools.get(step.tool)
        if tool is not None and depth < 5:
            for slot in _slots(tool, "requires", step.args):
                if slot in available:
                    continue
                later = next(
                    (
                        s
                        for s in steps
                        if s not in out
                        and s is not step
                        and tools.get(s.tool) is not None
                        and slot in _slots(tools[s.tool], "produces", s.args)
                    ),
                    None,
                )
                if later is not None:  # the user asked for the producer later: move it first
                    add(later, depth + 1)
                    continue
                producer = producer_for(slot, tools)
                if producer is not None:
                    args = fill(producer, step.why) if fill else {}
                    notes.append(
                        Note(kind="inserted", text=f"added {producer.name} before {step.tool}: it needs {slot}")
                    )
                    add(
                        Step(
                            id="",
                            tool=producer.name,
                            args=args,
                            why=f"needed by {step.tool} ({slot})",
                            origin="inserted",
                        ),
                        depth + 1,
                    )
        if step in out:
            return
        out.append(step)
        if tool is not None:
            available.update(_slots(tool, "produces", step.args))

    for step in steps:
        if step not in out:
            add(step)
    return _renumber(out), notes


def check(plan: Plan, tools: dict[str, Tool], view: DatasetView | None) -> list[str]:
    """Problems that would stop the plan: unknown tools, invalid arguments, slots nothing produces earlier,
    tools that need data when none is given. An empty list means the plan can run."""
    problems = []
    from .arguments import check_args

    available = set(view.slots) if view is not None else set()
    for step in plan.steps:
        tool = tools.get(step.tool)
        if tool is None:
            problems.append(f"{step.id}: no installed tool is called {step.tool!r}")
            continue
        if tool.needs_data and view is None:
            problems.append(f"{step.id}: {step.tool} needs a dataset; pass --data FILE or demo")
            continue
        try:
            parsed = tool.validate_args(step.args)
        except PlanError as exc:
            problems.append(f"{step.id}: {exc}")
            continue
        for slot in tool.slots("requires", parsed):
            if slot not in available:
                problems.append(
                    f"{step.id}: {step.tool} needs {slot}, which neither the data nor an earlier step provides"
                )
        if view is not None:
            produced = {s.partition(":")[2] for s in available - set(view.slots) if s.startswith("obs:")}
            problems.extend(f"{step.id}: {p}" for p in check_args(tool, parsed, view, produced))
        available.update(tool.slots("produces", parsed))
    return problems
