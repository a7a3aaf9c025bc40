"""The embedded, offline planner: each clause of a question goes to the installed tool that matches it best
(:mod:`.matching`); the dataset's own labels, genes and numbers fill the tool's arguments; a clause naming several
groups for a tool that takes one becomes one step per group; cell types the dataset lacks are said, not replaced.

It knows no tool by name: whatever tools are registered are matched by what they say about themselves.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import numpy as np

from ...conventions.slots import CELL_TYPE
from ...screen.programs import programs_named
from ..arguments import RECEIVERS, SENDERS, TOWARDS, base_type, entity_kind, fill_args, number_named
from ..mentions import find_mentions
from ..plan import NO_TOOL, Note, Plan, Step
from .base import Recorder, drop_dependents, finish, keep_intent
from .matching import VERB_WORD, ToolMatcher, intent, mask_entities, split_clauses, stems
from .scope import split_unoffered

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView

#: Below this score a clause matches no tool ("no installed tool can do this").
THRESHOLD = 0.40
#: A clause scoring between this and ``THRESHOLD`` still matches its best tool when that tool takes the dataset
#: entities (labels, genes) the clause names: "Tregs versus naive CD4?" says little in words but names its groups.
GROUNDED_THRESHOLD = 0.30
#: A runner-up this close to the best match is preferred when the best one's required arguments are missing.
MARGIN = 0.10
#: Added to a tool's score per group, gene or option argument the clause fills, and per number it names by the
#: field's words ("500 permutations"), at most three times.
FIT_BONUS = 0.02
VALUE_KINDS = ("obs_value", "obs_values")
#: Added to a tool whose sender and receiver fields take the groups a clause names on either side of "to" or of a
#: verb of one acting on the other ("how might X signal to Y", "from X to Y", "X suppressing Y"), unless the clause
#: compares them ("compare X to Y"); without such words, a split into senders and receivers is a guess and counts
#: once toward fit.
ROLE_BONUS = 0.04
#: Verbs of one group acting on another ("X could be suppressing Y"): a direction without "to".
RELATES = re.compile(
    r"\b(?:signal\w*|talk\w*|communicat\w*|instruct\w*|suppress\w*|activat\w*|influenc\w*|regulat\w*|"
    r"send\w*|recruit\w*|inhibit\w*|crosstalk|tell\w*|restrain\w*|repress\w*|licens\w*|educat\w*)\b",
    re.I,
)
COMPARES = re.compile(r"\b(?:compar\w*|versus|vs\.?|relative|against|differ\w*|distinguish\w*|contrast\w*)\b", re.I)
#: Added to a tool that is the strong (``DETAIL_MATCH``) best match of a neighbouring clause: of two near-equal
#: readings, the one that makes "What cell lines are there, and how many cells in each?" one request wins; not when
#: the tool makes what the clause's best match needs ("Turn the cells into sentences, then ... from those ranks").
NEAR_BONUS = 0.07
#: Added to a tool that says it counts ("how many") when the clause asks for an amount ("How many doublets did
#: demuxlet call?", "what fraction of ...", "spots per cluster?"): marker genes "of the doublets" it does not ask.
COUNT_BONUS = 0.05
AMOUNT = re.compile(
    r"\bhow many\b|\bwhat (?:fraction|proportion|share|percentage)\b|\b(?:split|distributed)\b|"
    r"\b(?:cells|spots|barcodes|droplets|nuclei) per\b",
    re.I,
)
COUNTS = re.compile(r"\bhow many\b|\bcounts?\b", re.I)
#: How far below the best match a tool may win when the best needs an input nothing provides, or only feeds it.
STAGE_MARGIN = 0.15
#: What such a best match loses.
STAGE_PENALTY = 0.16
#: Most content words of a clause that only adds details to the previous step.
DETAIL_WORDS = 2
#: ... and, unless it points back to that step, matches no tool this well.
DETAIL_MATCH = 0.65
#: A clause matching no tool better than this that points back, or has no content words at all, asks about the
#: previous step's result ("..., and report how well its calls agree with the cell_type column", "Which genes go
#: up?"), in at most ``ABOUT_WORDS`` content words.
WEAK_MATCH = 0.60
ABOUT_WORDS = 4
#: Words that ask for a step per group ("once with X and once with Y", "separately for X and Y").
SEPARATELY = re.compile(r"\bonce (?:with|for|on|in)\b|\bseparately\b|\bone at a time\b|\beach on its own\b", re.I)
#: Stems of words that only ask to set a result side by side ("..., and compare the lines", "break it down by
#: zone"): with a column, a detail of the previous step however well they match a tool.
COMPARING = frozenset({"compar", "contra", "split", "break", "tabula", "summar", "side"})
#: Words of a clause that asks for the previous step again ("the same for ...", "again for ...", "as a separate
#: test, inside ...").
ELLIPSIS = re.compile(r"\b(?:same|again|too|as well|likewise|repeat)\b", re.I)
ELLIPSIS_WORDS = frozenset({"same", "repeat", "likewise", "separate", "test", "analysi", "inside", "within", "well"})
#: Entities of the fields that set how a tool runs rather than what it runs on: a clause that sets one of the
#: previous step's ("Require each subunit in at least 20% of cells", "... and keep the mito genes") is its detail,
#: however many words it takes, unless the tool it matches best takes that setting itself.
SETTINGS = ("literal", "flag", "number")
POINTS_BACK = re.compile(r"\b(?:it|its|them|they|their|those|these)\b|\bthat\s*[?.!]?$", re.I)


def value_fields(tool: Tool, view: DatasetView | None) -> list[str]:
    """The tool's fields that take label values (of any column, or of a role's column)."""
    from ..arguments import KINDS

    return [
        n
        for n, f in tool.input_model.model_fields.items()
        if entity_kind(n, f) in VALUE_KINDS or (entity_kind(n, f) not in KINDS and view is not None)
    ]


def _uses(args: dict, mentions) -> int:
    """How many of the groups and genes a clause names the arguments use; a column argument uses the groups of
    that column the clause contrasts (two or more of them: "stimulated against control") unless another argument
    picks some of them."""
    flat = {str(x) for v in args.values() for x in (v if isinstance(v, list) else [v])}
    by_column: dict = {}
    for m in mentions:
        by_column.setdefault(m.column, set()).add(m.text)
    whole = {c for c, vs in by_column.items() if c in flat and len(vs) > 1 and not vs & flat}
    return sum(1 for m in mentions if m.text in flat or (m.kind == "value" and m.column in whole))


def _directs(args: dict) -> bool:
    """Whether the arguments set senders and receivers, each to groups of their own."""
    send = {str(x) for k, v in args.items() if k.lower() in SENDERS for x in (v if isinstance(v, list) else [v])}
    take = {str(x) for k, v in args.items() if k.lower() in RECEIVERS for x in (v if isinstance(v, list) else [v])}
    return bool(send) and bool(take) and not send & take


def _reads_own(tool: Tool, args: dict) -> bool:
    """Whether the arguments name an obs column the tool itself writes (annotation compared with its own calls)."""
    try:
        made = tool.slots("produces", tool.input_model.model_validate(args))  # with the defaults ("key_added")
    except Exception:  # noqa: BLE001 - arguments the tool refuses read nothing
        return False
    return bool({f"obs:{v}" for v in args.values() if isinstance(v, str)} & set(made))


def _set_by(tool: Tool, clause: str, view: DatasetView | None) -> dict:
    """The arguments of ``tool`` that ``clause`` sets beyond what an empty clause gives, its own words aside."""
    fields = tool.input_model.model_fields
    defaults, _ = fill_args(tool, "", view)
    return {
        k: v
        for k, v in fill_args(tool, clause, view)[0].items()
        if defaults.get(k) != v and entity_kind(k, fields[k]) != "text"
    }


def _sets_options(tool: Tool, args: dict) -> bool:
    """Whether the arguments set how the tool runs (``SETTINGS``), not only what it runs on."""
    return any(entity_kind(k, tool.input_model.model_fields[k]) in SETTINGS for k in args)


def _unnamed(clause: str, mentions) -> str:
    """The clause with what its mentions name blanked out: the words it says besides groups, genes and columns."""
    return "".join(" " if any(m.start <= i < m.end for m in mentions) else ch for i, ch in enumerate(clause))


def match_notes(clause: str, view: DatasetView | None) -> list[Note]:
    """How the clause's words were matched to the dataset's labels, for the plan ("monocytes" -> ...)."""
    spans: dict[tuple[int, int], list] = {}
    for m in find_mentions(clause, view):
        if m.kind == "value":
            spans.setdefault((m.start, m.end), []).append(m)
    out = []
    for (s, e), ms in spans.items():
        text, values = clause[s:e], [m.text for m in ms]
        if values != [text]:
            out.append(Note(kind="match", text=f'"{text}" -> {ms[0].column}: {", ".join(values)}'))
    return out


class EmbeddedPlanner:
    """Offline planner; ``threshold`` is the least score for a clause to match a tool."""

    name = "embedded"

    def __init__(self, settings=None, threshold: float = THRESHOLD):
        self.settings, self.threshold = settings, threshold
        self.matcher = ToolMatcher(settings.cache_dir if settings is not None else None)

    def scores(self, clauses: list[str], tools: dict[str, Tool]) -> tuple[list[str], np.ndarray]:
        return self.matcher.scores(clauses, tools)

    def plan(
        self, question: str, tools: dict[str, Tool], view: DatasetView | None, record: Recorder | None = None
    ) -> Plan:
        t0 = time.perf_counter()
        text, refused = split_unoffered(question, tools)
        clauses = split_clauses(text) if text else []
        if not tools:
            return Plan(
                question=question,
                planner=self.name,
                unanswered=clauses,
                notes=[Note(kind="unanswered", text=f"{NO_TOOL}: no tools installed")],
            )
        names, sim = self.scores([mask_entities(intent(c), view) for c in clauses], tools) if clauses else ([], [])
        steps: list[Step] = []
        unanswered, notes = [s for s, _ in refused], list(view.notes) if view is not None else []
        notes += [Note(kind="missing", text=f'"{s}" asks for {a}, which no installed tool offers') for s, a in refused]
        current = view  # after a step predicts cell types, "monocytes" names the predicted labels
        best = [names[int(r.argmax())] if r.max() >= DETAIL_MATCH else None for r in sim]
        for k, (clause, row) in enumerate(zip(clauses, sim)):
            near = {best[j] for j in (k - 1, k + 1) if 0 <= j < len(best)} - {None}
            weak = row.max() < self.threshold and not self._grounded(clause, row, names, tools, current)
            if steps and self._continues(steps, clause, row, names, tools, (current, view), weak):
                continue
            if weak:
                unanswered.append(clause)  # no tool matches, and it adds nothing to the previous step
                continue
            have = self._have(steps, tools, current)
            tool, args, arg_notes, score = self._choose(clause, row, names, tools, current, question, have, near)
            missing = self._missing(clause, tool, args, current)
            if missing:
                notes.append(missing)
                unanswered.append(clause)
                continue
            notes += arg_notes + match_notes(clause, current)
            for step in self._expand(
                Step(id="", tool=tool.name, args=args, why=clause, score=round(score, 3)), tool, clause, current
            ):
                if self._merge(steps, step, tool):
                    continue
                steps.append(step)
                current = self._predicted_view(step, tool, current) or current
        if unanswered:
            notes.append(Note(kind="unanswered", text=f"{NO_TOOL}: " + "; ".join(f'"{c}"' for c in unanswered)))
        plan = finish(
            Plan(question=question, steps=steps, planner=self.name, unanswered=unanswered, notes=notes), tools, view
        )
        if record is not None:
            record(
                "planner",
                name=f"{self.name}:minilm",
                duration_s=time.perf_counter() - t0,
                arguments={"question": question, "clauses": clauses},
                output_bytes=len(plan.model_dump_json()),
            )
        return plan

    @staticmethod
    def _merge(steps: list[Step], step: Step, tool: Tool) -> bool:
        """Fold ``step`` into the last step when it refines it ("..., show the top 8"), or drop a repeat. The
        question text a tool reads is the clause's own: it never keeps two clauses of one request apart."""
        last = steps[-1] if steps else None
        fields = tool.input_model.model_fields
        own = {k: v for k, v in step.args.items() if entity_kind(k, fields[k]) != "text"} if last else {}
        if (
            last is not None
            and last.tool == step.tool
            and not any(k in last.args and last.args[k] != v for k, v in own.items())
        ):
            if own.keys() - last.args.keys() or step.why != last.why:
                last.args.update({k: v for k, v in step.args.items() if k in own or k not in last.args})
                last.why = last.why if step.why == last.why else f"{last.why}; {step.why}"
            return True
        return any(s.tool == step.tool and s.args == step.args for s in steps)

    def _predicted_view(self, step: Step, tool: Tool, view: DatasetView | None) -> DatasetView | None:
        """The view after ``step`` when it writes values into an obs column the data lacks (its ``labels``
        argument, else what the tool says it will write, become that column's values); None otherwise."""
        if view is None or tool.produced_values is None:
            return None
        for slot, values in tool.produced_values(self.settings).items():
            kind, _, col = slot.partition(":")
            values = step.args.get("labels") or values
            if kind == "obs" and col not in view.columns and values:
                return view.predicted(col, list(values))
        return None

    @staticmethod
    def _missing(clause: str, tool: Tool, args: dict, view: DatasetView | None) -> Note | None:
        """A note when the clause names cells the dataset has no label for and the tool needs such a group."""
        fields = value_fields(tool, view)
        if view is None or not fields or any(args.get(f) for f in fields):
            return None
        missing = [m for m in find_mentions(clause, view) if m.kind == "missing"]
        if not missing:
            return None
        col = view.column_for(CELL_TYPE)
        held = f"; its {col!r} column holds {', '.join(view.columns.get(col, [])[:15])}" if col else ""
        return Note(
            kind="missing",
            text=f'"{missing[0].text}" names no cells in this dataset{held}; '
            f'{tool.name} was not planned for "{clause}"',
        )

    @staticmethod
    def _expand(step: Step, tool: Tool, clause: str, view: DatasetView | None) -> list[Step]:
        """One step per program when the clause names several for a tool that scores one, and one step per group
        when the clause names several groups for a field that takes one ("Simulate 40 NK cells and 40 B cells"),
        or for an optional one when it asks for them one at a time ("run it once with the
        B cells and once with the NK cells")."""
        fields = tool.input_model.model_fields
        program = next((n for n, f in fields.items() if entity_kind(n, f) == "program"), None)
        if program and len(named := programs_named(clause)) > 1:  # "the IFN-gamma response and the MHC-I programs"
            return [step.model_copy(update={"args": {**step.args, program: p}}) for p in named]
        each = SEPARATELY.search(clause) is not None
        single = [
            n
            for n in value_fields(tool, view)
            if (fields[n].is_required() or each) and not base_type(fields[n].annotation)[1] and n in step.args
        ]
        if not single or view is None:
            return [step]
        column = next(
            (v.column for v in find_mentions(clause, view) if v.kind == "value" and v.text == step.args.get(single[0])),
            None,
        )
        spans = sorted(
            {(m.start, m.end) for m in find_mentions(clause, view) if m.kind == "value" and m.column == column}
        )
        if len(spans) < 2:
            return [step]
        out, start = [], 0
        for _, end in spans:
            args, _ = fill_args(tool, clause[start:end], view)
            own = {k: v for k, v in args.items() if entity_kind(k, fields[k]) != "text"}  # the step keeps its words
            out.append(step.model_copy(update={"args": {**step.args, **own}}))
            start = end
        return out if len({tuple(sorted((k, str(v)) for k, v in s.args.items())) for s in out}) == len(out) else [step]

    def _continues(self, steps: list[Step], clause: str, row, names, tools, views, weak: bool) -> bool:
        """Whether a clause continues the previous step instead of asking for one of its own: details for it
        (:meth:`_follows`, on the view after the steps so far, else the dataset's own: "..., and check its calls
        against the cell_type column"), the same on other groups (:meth:`_repeats`), or, when it matches no tool
        (``weak``), groups and genes that step can also take (:meth:`_refine`)."""
        view, own = views
        return (
            self._follows(steps, clause, row, names, tools, view, own)
            or self._repeats(steps, clause, row, view)
            or (weak and self._refine(steps[-1], clause, tools, view))
        )

    @staticmethod
    def _follows(steps: list[Step], clause: str, row, names, tools, view: DatasetView | None, own=None) -> bool:
        """Whether a clause is a detail of the previous step: no group or gene of its own, at most ``DETAIL_WORDS``
        content words besides the columns and numbers it names, and, if it has any but words of ``COMPARING``, no
        strong match (under ``DETAIL_MATCH``) unless it points back ("it", "them"); and arguments beyond the
        defaults that the previous step's tool takes ("..., give me twenty genes", "and compare it across the
        zones"). They join that step; a
        column that differs from the step's makes another step of the same tool ("..., then by cell type"). A clause
        that points back and sets nothing joins the step when its tool matches the clause nearly as well as the
        best ("..., and which partners do they share?"), or when it is one weakly matching word ("rank them"). A
        clause whose best tool needs what the previous step makes is a step of its own ("..., how realistic are
        they?")."""
        last = steps[-1]
        mentions = find_mentions(clause, own or view)
        best = tools[names[int(row.argmax())]]
        had = {str(x) for v in last.args.values() for x in (v if isinstance(v, list) else [v])}
        step_tool = tools[last.tool]
        new = [m for m in mentions if m.kind == "value" and m.text not in had]
        contrasted = {  # "..., and compare stimulated with control": groups that only say which column to set apart
            v
            for k, v in (_set_by(step_tool, clause, view) if new else {}).items()
            if entity_kind(k, step_tool.input_model.model_fields[k]) == "obs_column"
            and len({m.text for m in new if m.column == v}) > 1
        }
        if (
            last.origin != "question"
            or any(
                m.kind in ("value", "gene", "missing") and m.text not in had and m.column not in contrasted
                for m in mentions
            )
            or set(best.requires) & set(step_tool.produces)  # "..., how realistic are they?": a step of its own
        ):
            return False
        named = [m for m in mentions if m.kind in ("value", "gene") and m.text in had]
        if named and row.max() < DETAIL_MATCH:  # it names the step's own groups again ("include both the X and Y")
            last.why += f"; {clause}"
            return True
        rest = _unnamed(clause, mentions)
        words = stems(rest) - {"column"}  # "the cell_type column" names a column only
        back = POINTS_BACK.search(clause) is not None
        about_it = row.max() < WEAK_MATCH and (back or not words)  # "how well do its calls agree", "which go up?"
        tool = tools[last.tool]
        fields = tool.input_model.model_fields
        args: dict = {}
        for seen in [view] if own is None or own is view else [view, own]:  # the data's own columns too
            args = args or _set_by(tool, clause, seen)
        sets = _sets_options(tool, args) and (
            best is tool or row.max() < THRESHOLD or not _sets_options(best, _set_by(best, clause, view))
        )
        words -= {w for k in args for w in stems(f"{k.replace('_', ' ')} {fields[k].description or ''}")}
        if not sets and (
            len(words) > (ABOUT_WORDS if about_it else DETAIL_WORDS)
            or (words - COMPARING and row.max() >= DETAIL_MATCH and not back)
        ):
            return False
        near = row[names.index(last.tool)] >= row.max() - MARGIN or (len(words) <= 1 and row.max() < DETAIL_MATCH)
        if not args and not (back and near) and not (about_it and not words):
            return False
        if _reads_own(tool, {**last.args, **args}):
            return False  # "..., then count the spots per predicted type": a column the step writes is no input of it
        try:
            tool.input_model.model_validate({**last.args, **args})
        except Exception:  # noqa: BLE001 - what the clause sets does not fit the step
            return False
        if any(
            k in last.args and last.args[k] != v and entity_kind(k, fields[k]) == "obs_column" for k, v in args.items()
        ):
            steps.append(last.model_copy(update={"args": {**last.args, **args}, "why": clause}))
        else:
            last.args.update(args)
            last.why += f"; {clause}"
        return True

    @staticmethod
    def _repeats(steps: list[Step], clause: str, row, view: DatasetView | None) -> bool:
        """Whether a clause asks for the previous step again on other groups of the same column, in few words
        and with no request of its own ("..., and then inside the CD8 T cells", "the same for the B cells"):
        a copy of that step with those groups in place of its own follows it."""
        last = steps[-1]
        if view is None or last.origin != "question" or row.max() >= DETAIL_MATCH:
            return False
        mentions = find_mentions(clause, view)
        named = [m for m in mentions if m.kind == "value"]
        rest = _unnamed(clause, mentions)
        if not named or (VERB_WORD.search(rest) and not ELLIPSIS.search(rest)) or len(stems(rest) - ELLIPSIS_WORDS) > 1:
            return False
        args = dict(last.args)
        for name, value in last.args.items():
            old = value if isinstance(value, list) else [value]
            column = next((c for c, vs in view.columns.items() if old and all(str(v) in vs for v in old)), None)
            new = list(dict.fromkeys(m.text for m in named if m.column == column))
            if column is not None and new and new != old:
                args[name] = new if isinstance(value, list) else new[0]
        if args == last.args:
            return False
        steps.append(last.model_copy(update={"args": args, "why": clause}))
        return True

    @staticmethod
    def _refine(step: Step, clause: str, tools, view) -> bool:
        """Add the entities of a clause that matches no tool to the previous step, if that step can take them
        without changing what it already has."""
        if len(stems(mask_entities(clause, view))) > 1:
            return False  # it asks for something of its own, not just more detail
        args, _ = fill_args(tools[step.tool], clause, view)
        new = {k: v for k, v in args.items() if k not in step.args}
        if not new or any(step.args.get(k, v) != v for k, v in args.items()):
            return False
        try:
            tools[step.tool].input_model.model_validate({**step.args, **new})
        except Exception:  # noqa: BLE001 - the entities do not fit this tool
            return False
        step.args.update(new)
        step.why += f"; {clause}"
        return True

    @staticmethod
    def _grounded(clause: str, row, names, tools, view: DatasetView | None) -> bool:
        """Whether a weakly matching clause's best tool takes the dataset entities the clause names."""
        if view is None or row.max() < GROUNDED_THRESHOLD:
            return False
        named = [m for m in find_mentions(clause, view) if m.kind in ("value", "gene")]
        if not named:
            return False
        tool = tools[names[int(row.argmax())]]
        args, _ = fill_args(tool, clause, view)
        try:
            tool.input_model.model_validate(args)
        except Exception:  # noqa: BLE001 - a required argument is missing
            return False
        return _uses(args, named) > 0  # "do the doublets differ from the singlets": a column whose groups it sets apart

    @staticmethod
    def _have(steps: list[Step], tools, view: DatasetView | None) -> set[str]:
        """The slots the data holds and the steps so far produce."""
        have = set(view.slots) if view is not None else set()
        for step in steps:
            have |= set(tools[step.tool].slots("produces", step.args))
        return have

    def _choose(self, clause, row, names, tools, view, question, have=frozenset(), near=frozenset()):
        """The best tool whose arguments the question can fill; a close runner-up wins over a best match whose
        required arguments the question does not give. Each entity argument (a group or gene) the clause fills
        adds ``FIT_BONUS``: of two near-equal matches, the tool that uses what the clause names is the one asked for;
        a clause asking for an amount adds ``COUNT_BONUS`` to tools that say they count, and groups named on either
        side of "to" add ``ROLE_BONUS`` to a tool whose senders and receivers they fill.
        Within ``STAGE_MARGIN``, a tool loses ``STAGE_PENALTY`` when it needs an input that neither the data nor an
        earlier step provides while a runner-up uses more of the groups and genes the clause names ("compare the X
        cells with the Y cells" is no evaluation of generated cells), or when it uses none of them and only produces
        what such a runner-up needs ("cells that look like X in the embedding" is a similarity search; the
        embedding is made first anyway)."""
        floor = max(min(self.threshold, row.max()), row.max() - STAGE_MARGIN)
        order = [int(i) for i in np.argsort(-row) if row[i] >= floor]
        mentions = [m for m in find_mentions(clause, view) if m.kind in ("value", "gene")] if view else []
        ranked, used = [], {}
        amount = AMOUNT.search(clause) is not None
        directed = bool(TOWARDS.search(clause) or RELATES.search(_unnamed(clause, mentions))) and not COMPARES.search(
            clause
        )
        fills = {i: fill_args(tools[names[i]], clause, view, question) for i in order}
        order = [i for i in order if not _reads_own(tools[names[i]], fills[i][0])] or order  # never its own output
        needed = set(tools[names[order[0]]].requires)  # what the best match needs: no bonus for only making it
        for i in order:
            tool = tools[names[i]]
            args, notes = fills[i]
            try:
                tool.input_model.model_validate(args)
                valid = True
            except Exception:  # noqa: BLE001 - a required argument is missing
                valid = False
            fields = tool.input_model.model_fields
            fit = sum(
                1
                for n, f in fields.items()
                if args.get(n)
                and (
                    entity_kind(n, f) not in ("obs_column", "number", "text", None)  # options: set only when named
                    or (entity_kind(n, f) == "number" and number_named(n, f, clause))
                )
            )
            fit -= 1 if not directed and _directs(args) else 0  # two groups split into senders and receivers by guess
            used[tool.name] = _uses(args, mentions)
            bonus = FIT_BONUS * min(fit, 3) + (
                NEAR_BONUS if tool.name in near and not needed & set(tool.produces) else 0
            )
            bonus += COUNT_BONUS if amount and COUNTS.search(tool.description) else 0.0
            bonus += ROLE_BONUS if directed and _directs(args) else 0.0
            ranked.append([valid, float(row[i]) + bonus, -len(ranked), (tool, args, notes, float(row[i]))])
        for r in ranked:
            tool, args = r[3][0], r[3][1]
            better = [o[3] for o in ranked if used[o[3][0].name] > used[tool.name]]
            lacking = set(tool.slots("requires", args)) - set(have)
            feeds = not used[tool.name] and any(
                set(tool.slots("produces", args)) & set(t.slots("requires", a)) for t, a, *_ in better
            )
            if better and (lacking or feeds):
                r[1] -= STAGE_PENALTY
        if ranked[0][1] >= ranked[0][3][3]:  # the best match is not penalised: runners-up beyond MARGIN stay out
            ranked = [r for r in ranked if r[3][3] >= ranked[0][3][3] - MARGIN]
        ranked = [tuple(r) for r in ranked]
        return max(ranked)[3] if any(r[0] for r in ranked) else ranked[0][3]

    def observe(self, plan: Plan, done: Step, summary: dict, *args, **kwargs) -> tuple[None, list[Note]]:
        """The embedded planner's plan does not depend on results: it goes on as planned."""
        return None, []

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
        """Steps that serve the failed step's intent: the same tool on the dataset's own labels, or a close
        runner-up for its clause; else the remaining steps without those that needed it."""
        idx = next(i for i, s in enumerate(plan.steps) if s.id == failed.id)
        remaining = plan.steps[idx + 1 :]
        kept, notes = keep_intent(failed, remaining, tools, view, done_slots or set())
        if kept is not None:
            return kept, notes
        tried = {failed.tool} | {s.tool for s in plan.steps[:idx] if s.why == failed.why}
        others = {n: t for n, t in tools.items() if n not in tried}
        if others and failed.origin in ("question", "user") and failed.score is not None:
            names, sim = self.scores([mask_entities(failed.why, view)], others)
            best = int(sim[0].argmax())
            if sim[0, best] >= max(self.threshold, failed.score - MARGIN):
                tool = others[names[best]]
                args, _ = fill_args(tool, failed.why, view, plan.question)
                step = Step(
                    id=f"{failed.id}r",
                    tool=tool.name,
                    args=args,
                    why=failed.why,
                    score=round(float(sim[0, best]), 3),
                    origin="replacement",
                )
                return [step] + remaining, [
                    Note(
                        kind="replanned",
                        text=f"{failed.id} ({failed.tool}) replaced by {tool.name}, the next match for its clause",
                    )
                ]
        kept, dropped = drop_dependents(remaining, failed, tools, view, done_slots or set())
        return kept, [Note(kind="replanned", text=d) for d in dropped]
