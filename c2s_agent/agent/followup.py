"""Follow-up questions: what a session's turn refers to in the earlier turns, resolved around any planner.

- "those genes" (these / the same / the previous ... genes) are the genes of the most recent earlier step about
  genes (those it was given, else those it reported); they are written into the question the planner reads.
- "now the same for the B cells", "what about NK cells?": a follow-up that asks nothing of its own but names
  groups or genes runs the previous turn's steps again with those in place of the ones it had.
- A follow-up that names no group of its own ("how do they respond to interferon?") takes the column and groups
  of the previous turn (of the most recent step comparing two or more groups, for "that comparison").
- A step whose tool and arguments an earlier turn already ran, and whose slots the session's data still holds
  (e.g. predicted cell types), is not run again.

Each resolution is a plan note, so the report says what the follow-up was taken to mean.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..conventions.labels import STOP
from ..tools import StepResult
from .arguments import ROLE_ENTITIES, base_type, entity_kind
from .ledger import Ledger
from .mentions import NOT_GENES, find_mentions
from .plan import Note, Plan, Step, check

if TYPE_CHECKING:
    from ..tools import Tool
    from .dataset import DatasetView
    from .planners.base import Planner, Recorder

GENE_REF = re.compile(
    r"\b(?:those|these|the\s+same|the\s+previous|the\s+earlier|the\s+above|their|its)\s+"
    r"(?:[\w-]+\s+){0,2}?genes?\b",
    re.I,
)
COMPARISON_REF = re.compile(
    r"\b(?:that|this|the\s+same|the\s+previous|the\s+earlier)\s+(?:comparison|contrast)\b", re.I
)
SAME = re.compile(r"\b(?:same|again|repeat|likewise|what\s+about|how\s+about|do\s+(?:that|this|it))\b", re.I)
#: Words a follow-up such as "and now the same for the X cells, please" uses besides what it names.
FILLER = set(STOP) | {
    "now",
    "same",
    "what",
    "about",
    "how",
    "do",
    "repeat",
    "again",
    "likewise",
    "please",
    "also",
    "ok",
    "okay",
    "then",
    "so",
    "too",
    "instead",
    "x",
    "cells",
    "cell",
    "group",
    "groups",
    "gene",
    "genes",
    "thing",
    "analysis",
    "question",
    "steps",
    "step",
    "it",
    "this",
    "that",
    "those",
    "these",
    "them",
    "as",
    "well",
    "there",
    "here",
    "one",
    "ones",
    "run",
    "show",
    "me",
}
VALUE_KINDS = ("obs_value", "obs_values")
GROUP_KINDS = ("obs_column", "obs_value", "obs_values", "obs_filter")


@dataclass
class Turn:
    """An earlier turn of the session: its run id, question, plan and the steps that finished (from its ledger)."""

    run_id: str
    question: str
    plan: Plan | None
    results: list[StepResult]

    @classmethod
    def load(cls, run_dir: Path) -> Turn:
        run = json.loads((run_dir / "run.json").read_text())
        plan_path = run_dir / "plan.json"
        plan = Plan.model_validate_json(plan_path.read_text()) if plan_path.exists() else None
        ledger = Ledger(run_dir / "ledger.sqlite", run["id"])
        try:
            results = ledger.results()
        finally:
            ledger.close()
        return cls(run["id"], run["question"], plan, results)


def _strings(obj):
    """Every string in a JSON-like value, dict keys included, in order."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for x in obj:
            yield from _strings(x)


def genes_of(result: StepResult, view: DatasetView) -> list[str]:
    """The genes a step was about: those it was given (e.g. looked up), else those it reported (e.g. markers)."""

    def genes(obj) -> list[str]:
        out = [
            view.genes[s.upper()]
            for s in _strings(obj)
            if s.upper() in view.genes
            and s.upper() not in NOT_GENES
            and len(s) >= 2
            and (s.isupper() or any(c.isdigit() for c in s))
        ]
        return list(dict.fromkeys(out))

    return genes(result.args) or genes(result.output)


def _column_of(values: list[str], view: DatasetView, prefer: list[str]) -> str | None:
    """The label column holding all ``values`` (columns in ``prefer`` first)."""
    for col in [*prefer, *view.label_columns(), *view.columns]:
        if col in view.columns and values and all(v in view.columns[col] for v in values):
            return col
    return None


def groups_of(step: Step | StepResult, tools: dict[str, Tool], view: DatasetView) -> list[tuple[str, str, list[str]]]:
    """(field, column, values) for each argument of a step that names groups of cells (values of a label column)."""
    tool = tools.get(step.tool)
    if tool is None:
        return []
    fields = tool.input_model.model_fields
    cols = [v for n, v in step.args.items() if n in fields and entity_kind(n, fields[n]) == "obs_column"]
    out = []
    for name, value in step.args.items():
        if name not in fields or entity_kind(name, fields[name]) == "obs_column":
            continue
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, str) for v in values):
            col = _column_of(values, view, [c for c in cols if isinstance(c, str)])
            if col is not None:
                out.append((name, col, values))
    return out


def _value_fields(tool: Tool) -> list[str]:
    """The tool's fields that take groups: label values of any column, or of a role's column (CELL_TYPE)."""
    fields = tool.input_model.model_fields
    return [n for n, f in fields.items() if entity_kind(n, f) in VALUE_KINDS or entity_kind(n, f) in ROLE_ENTITIES]


def _fits(tool: Tool, name: str, column: str, view: DatasetView) -> bool:
    """Whether values of ``column`` suit field ``name`` (a field named after a role takes that role's column)."""
    kind = entity_kind(name, tool.input_model.model_fields[name])
    if kind in ROLE_ENTITIES:
        role = ROLE_ENTITIES[kind]
        return column in {view.column_for(role), getattr(view.roles, role, None)}
    return True


def _set_values(step: Step, tool: Tool, name: str, values: list[str]) -> list[Step]:
    """``step`` with field ``name`` set to ``values``: one step per value when the field takes one."""
    if base_type(tool.input_model.model_fields[name].annotation)[1]:
        return [step.model_copy(update={"args": {**step.args, name: list(values)}})]
    return [step.model_copy(update={"args": {**step.args, name: v}}) for v in dict.fromkeys(values)]


#: Names of the field that says which column a tool groups the cells by.
GROUPING_FIELDS = ("groupby", "column", "by", "group_by", "obs_key")


def _column_field(tool: Tool) -> str | None:
    fields = tool.input_model.model_fields
    return next((n for n, f in fields.items() if entity_kind(n, f) == "obs_column" and n in GROUPING_FIELDS), None)


def _named(question: str, view: DatasetView) -> tuple[dict[str, list[str]], list[str]]:
    """The label values (by column) and genes a follow-up names."""
    values: dict[str, list[str]] = {}
    genes = []
    for m in find_mentions(question, view):
        if m.kind == "value":
            values.setdefault(m.column, []).append(m.text)
        elif m.kind == "gene":
            genes.append(m.text)
    return {c: list(dict.fromkeys(v)) for c, v in values.items()}, list(dict.fromkeys(genes))


def _values_in(question: str, view: DatasetView, column: str) -> list[str]:
    """The values of one column a question names (a phrase naming labels of several columns counts for each)."""
    only = replace(view, columns={column: view.columns[column]})
    return list(dict.fromkeys(m.text for m in find_mentions(question, only) if m.kind == "value"))


def asks_nothing_new(question: str, view: DatasetView | None) -> bool:
    """Whether the follow-up asks for the same again ("now the same for the B cells", "what about NK cells?"): it
    says so, or names groups or genes and nothing else."""
    from .planners.matching import mask_entities

    words = re.findall(r"[a-z]+", mask_entities(question, view).lower())
    named = view is not None and any(m.kind in ("value", "gene") for m in find_mentions(question, view))
    return (named or SAME.search(question) is not None) and all(w in FILLER for w in words)


class FollowUpPlanner:
    """Wraps a session's planner: plans a follow-up against the earlier ``turns`` (oldest first)."""

    def __init__(self, inner: Planner, turns: list[Turn]):
        self.inner, self.turns = inner, turns
        self.name = inner.name

    def plan(
        self, question: str, tools: dict[str, Tool], view: DatasetView | None, record: Recorder | None = None
    ) -> Plan:
        t0 = time.perf_counter()
        previous = next((t for t in reversed(self.turns) if t.plan is not None and t.plan.steps), None)
        if view is not None and previous is not None and asks_nothing_new(question, view):
            plan, how = self._again(question, previous, tools, view), "the previous turn's steps again"
        else:
            text, notes = self._genes(question, view)
            text, more = self._comparison(text, tools, view)
            plan = self.inner.plan(text, tools, view, record=record)
            notes += more
            plan = plan.model_copy(update={"question": question, "notes": [*notes, *plan.notes]})
            if view is not None and plan.steps and not _names_groups(text, view):
                plan = self._inherit(plan, question, tools, view)
            how = "planned by " + self.inner.name
        plan = self._reuse(plan, tools, view)
        if record is not None:
            record(
                "planner",
                name="followup",
                duration_s=time.perf_counter() - t0,
                arguments={"question": question, "earlier_turns": [t.run_id for t in self.turns], "how": how},
            )
        return plan

    def replan(self, *args, **kwargs):
        return self.inner.replan(*args, **kwargs)

    def observe(self, *args, **kwargs):
        return self.inner.observe(*args, **kwargs)

    def _genes(self, question: str, view: DatasetView | None) -> tuple[str, list[Note]]:
        """The question with "those genes" written out as the genes of the most recent step about genes."""
        m = GENE_REF.search(question)
        if m is None or view is None:
            return question, []
        for turn in reversed(self.turns):
            for res in reversed(turn.results):
                genes = genes_of(res, view)
                if genes:
                    text = question[: m.start()] + "the genes " + ", ".join(genes) + question[m.end() :]
                    return text, [
                        Note(
                            kind="assumption",
                            text=f'"{m.group()}" = the {len(genes)} genes of an '
                            f"earlier turn ({turn.run_id}, step {res.step} "
                            f"{res.tool}): {', '.join(genes)}",
                        )
                    ]
        return question, [Note(kind="assumption", text=f'"{m.group()}": no earlier step reported genes')]

    def _comparison(self, question: str, tools: dict[str, Tool], view: DatasetView | None) -> tuple[str, list[Note]]:
        """The question with "that comparison" written out as the earlier comparison's column and groups ("the
        comparison of condition within NK"), so that the planner matches what was compared."""
        m = COMPARISON_REF.search(question)
        if m is None or view is None:
            return question, []
        turn, source = self._source(question, tools, view)
        if source is None:
            return question, []
        fields = tools[source.tool].input_model.model_fields
        columns = [v for n, v in source.args.items() if n in fields and entity_kind(n, fields[n]) == "obs_column"]
        groups = [v for _, _, values in groups_of(source, tools, view) for v in values]
        said = (
            "the comparison of " + " and ".join(map(str, columns)) + (" within " + ", ".join(groups) if groups else "")
        )
        note = Note(kind="assumption", text=f'"{m.group()}" = {turn.run_id} step {source.step} ({source.tool})')
        return question[: m.start()] + said + question[m.end() :], [note]

    def _again(self, question: str, previous: Turn, tools: dict[str, Tool], view: DatasetView) -> Plan:
        """The previous turn's steps with the groups and genes the follow-up names in place of theirs."""
        from .planners.base import finish

        named_values, genes = _named(question, view)
        steps, changed = [], []
        for step in previous.plan.steps:
            tool = tools.get(step.tool)
            if tool is None:
                continue
            new = [step.model_copy(update={"origin": "question", "why": f"{step.why} (follow-up: {question})"})]
            for name, col, values in groups_of(step, tools, view):
                named = _values_in(question, view, col)
                if named and named != values:
                    new = [s for n in new for s in _set_values(n, tool, name, named)]
                    changed.append(f"{step.id} {step.tool}: {name} {', '.join(values)} -> {', '.join(named)}")
            new, restricted = _restrict(new, tool, named_values, groups_of(step, tools, view), view)
            changed += [f"{step.id} {step.tool}: {r}" for r in restricted]
            fields = tool.input_model.model_fields
            for name in [n for n, f in fields.items() if entity_kind(n, f) in ("gene", "genes")]:
                if genes and step.args.get(name):
                    new = [s for n in new for s in _set_values(n, tool, name, genes)]
                    changed.append(f"{step.id} {step.tool}: {name} -> {', '.join(genes)}")
            steps += new
        what = "; ".join(changed) or "nothing the follow-up names replaces their groups or genes"
        note = Note(
            kind="assumption", text=f'follow-up of {previous.run_id} ("{previous.question}"): its steps again, {what}'
        )
        plan = Plan(question=question, steps=steps, planner=self.name, notes=[note])
        return finish(plan, tools, view)

    def _source(self, question: str, tools: dict[str, Tool], view: DatasetView):
        """The earlier step whose groups a follow-up without its own takes: the most recent that named groups, or
        for "that comparison" the most recent comparison."""
        comparison = COMPARISON_REF.search(question) is not None
        for turn in reversed(self.turns):
            for res in reversed(turn.results):
                tool = tools.get(res.tool)
                if tool is not None and groups_of(res, tools, view) and (not comparison or _compares(res, tool, view)):
                    return turn, res
        return None, None

    def _inherit(self, plan: Plan, question: str, tools: dict[str, Tool], view: DatasetView) -> Plan:
        """Steps that take groups but got none from the follow-up take those of an earlier step (see ``_source``)."""
        turn, source = self._source(question, tools, view)
        if source is None:
            return plan
        asked = {view.column_for(r) for r in view.roles_named(question)} - {None}
        steps, notes, stale = [], [], set()
        for step in plan.steps:
            tool = tools.get(step.tool)
            new, what = (
                ([], "")
                if tool is None or step.origin != "question"
                else _inherit_step(step, tool, source, tools, asked, view)
            )
            steps += new or [step]
            if new:
                notes.append(
                    Note(
                        kind="assumption",
                        text=f"{step.id} {step.tool}: the follow-up names no group, so it "
                        f"takes those of {turn.run_id} step {source.step} "
                        f"({source.tool}): {what}",
                    )
                )
                stale.add(f"{step.tool}: no column named")
        if not notes:
            return plan
        kept = [n for n in plan.notes if not any(n.text.startswith(x) for x in stale)]
        plan = plan.model_copy(update={"steps": _renumber(steps), "notes": [*kept, *notes]})
        return plan.model_copy(update={"problems": check(plan, tools, view)})

    def _reuse(self, plan: Plan, tools: dict[str, Tool], view: DatasetView | None) -> Plan:
        """Drop steps an earlier turn already ran with the same arguments, when the session's data still holds what
        they wrote (no later step wrote the same slots)."""
        if view is None or not plan.steps:
            return plan
        writer = {}  # slot -> (turn, step, tool, canonical arguments) of the last step that wrote it
        for turn in self.turns:
            for res in turn.results:
                tool = tools.get(res.tool)
                for slot in tool.slots("produces", res.args) if tool else []:
                    writer[slot] = (turn, res, _canonical(tool, res.args))
        kept, notes = [], []
        for step in plan.steps:
            tool = tools.get(step.tool)
            produces = tool.slots("produces", step.args) if tool else []
            same = [writer.get(s) for s in produces]
            if produces and all(
                w is not None and w[1].tool == step.tool and w[2] == _canonical(tool, step.args) and s in view.slots
                for w, s in zip(same, produces)
            ):
                turn, res, _ = same[0]
                notes.append(
                    Note(
                        kind="skipped",
                        text=f"{step.id} {step.tool} not run again: {turn.run_id} step "
                        f"{res.step} ran it with these arguments and the session's data "
                        f"still holds its {', '.join(produces)}",
                    )
                )
                continue
            kept.append(step)
        if not notes or not kept:
            return plan
        plan = plan.model_copy(update={"steps": _renumber(kept), "notes": [*plan.notes, *notes]})
        return plan.model_copy(update={"problems": check(plan, tools, view)})


def _group_args(step: Step | StepResult, tool: Tool) -> dict:
    """The arguments of a step that say which cells: columns, label values and filters."""
    fields = tool.input_model.model_fields
    return {
        n: v
        for n, v in step.args.items()
        if v not in (None, "", [])
        and n in fields
        and (entity_kind(n, fields[n]) in GROUP_KINDS or entity_kind(n, fields[n]) in ROLE_ENTITIES)
    }


def _compares(res: StepResult, tool: Tool, view: DatasetView) -> bool:
    """Whether a step compared groups: it names groups in two arguments (e.g. a sender and a receiver, a cell
    type and a condition), or one and groups the cells by condition."""
    args, col_field = _group_args(res, tool), _column_field(tool)
    by_condition = col_field is not None and args.get(col_field) == view.roles.condition
    return len([n for n in args if n != col_field]) + by_condition >= 2


def _inherit_step(
    step: Step, tool: Tool, source: StepResult, tools: dict[str, Tool], asked: set[str], view: DatasetView
) -> tuple[list[Step], str]:
    """``step`` with the groups of the earlier step ``source``, and what it took; ([], "") when it has groups of
    its own or nothing fits. Arguments of the same name are taken as they were (the grouping column too, unless
    the follow-up's words chose it: "how do they respond" groups by condition, and the earlier groups then
    restrict the cells through the tool's filter); else the earlier groups go to the field that takes them."""
    if any(step.args.get(n) for n in _value_fields(tool)):
        return [], ""
    fields, col_field = tool.input_model.model_fields, _column_field(tool)
    pairs = groups_of(source, tools, view)
    column = pairs[0][1]
    values = list(dict.fromkeys(v for _, c, vs in pairs if c == column for v in vs))
    chosen = step.args.get(col_field) if col_field else None
    if chosen is not None and chosen in asked and chosen != column:
        filters = [n for n, f in fields.items() if entity_kind(n, f) == "obs_filter"]
        if not filters or step.args.get(filters[0]):
            return [], ""
        return [
            step.model_copy(update={"args": {**step.args, filters[0]: values}})
        ], f"{filters[0]} = {', '.join(values)} ({column})"
    take = {
        n: v
        for n, v in _group_args(source, tools[source.tool]).items()
        if n in fields and (n == col_field or not step.args.get(n))
    }
    if any(n != col_field for n in take):
        what = ", ".join(f"{n} = {v if isinstance(v, str) else ', '.join(v)}" for n, v in take.items())
        return [step.model_copy(update={"args": {**step.args, **take}})], what
    name = next((n for n in _value_fields(tool) if _fits(tool, n, column, view)), None)
    if name is None:
        return [], ""
    new = _set_values(step, tool, name, values)
    if col_field is not None:
        new = [s.model_copy(update={"args": {**s.args, col_field: column}}) for s in new]
    return new, f"{column} = {', '.join(values)}"


def _restrict(
    steps: list[Step], tool: Tool, named: dict[str, list[str]], pairs, view: DatasetView
) -> tuple[list[Step], list[str]]:
    """Values the follow-up names in a column the step does not group by ("the same for the stimulated cells")
    go into the tool's filter field, if it has one."""
    fields = tool.input_model.model_fields
    filters = [n for n, f in fields.items() if entity_kind(n, f) == "obs_filter"]
    own = {c for _, c, _ in pairs} | {
        v for n, v in steps[0].args.items() if n in fields and entity_kind(n, fields[n]) == "obs_column"
    }
    held = {v for c in own if c in view.columns for v in view.columns[c]}
    other = [v for c, vs in named.items() if c not in own for v in vs if v not in held]
    if not filters or not other:
        return steps, []
    return (
        [s.model_copy(update={"args": {**s.args, filters[0]: other}}) for s in steps],
        [f"{filters[0]} -> {', '.join(other)}"],
    )


def _names_groups(question: str, view: DatasetView) -> bool:
    return any(m.kind in ("value", "column") for m in find_mentions(question, view))


def _canonical(tool: Tool | None, args: dict) -> str:
    """Arguments with the tool's defaults filled in, as text (so that ``{}`` equals ``{"top_k": 200}``)."""
    try:
        return tool.validate_args(args).model_dump_json() if tool is not None else json.dumps(args, sort_keys=True)
    except Exception:  # noqa: BLE001 - invalid arguments never equal a finished step's
        return json.dumps(args, sort_keys=True, default=str)


def _renumber(steps: list[Step]) -> list[Step]:
    return [s.model_copy(update={"id": f"s{i + 1}"}) for i, s in enumerate(steps)]
