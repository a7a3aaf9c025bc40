"""Filling a tool's input fields from what a question names: each field takes the entity its contract declares
(``json_schema_extra={"entity": KIND}``) or one guessed from its name and type."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field

from ..conventions.slots import CELL_TYPE, CONDITION
from ..screen.programs import program_from_text
from .dataset import ROLE_WORDS, DatasetView
from .mentions import FOLD, Mention, find_mentions, human_gene
from .plan import Note

SENDERS = {"source", "sources", "sender", "senders"}
RECEIVERS = {"target", "targets", "receiver", "receivers"}
KINDS = {
    "obs_column",
    "obs_value",
    "obs_values",
    "obs_filter",
    "gene",
    "genes",
    "program",
    "number",
    "text",
    "literal",
    "flag",
    None,
}
#: Entities that name a column role: the field takes values of that role's column.
ROLE_ENTITIES = {
    CELL_TYPE: CELL_TYPE,
    "celltype": CELL_TYPE,
    "label": CELL_TYPE,
    CONDITION: CONDITION,
    "treatment": CONDITION,
    "stimulation": CONDITION,
    "perturbation": CONDITION,
    "sample": "sample",
    "cluster": "cluster",
}
VALUE_NAMES = {
    "groups",
    "group",
    "cell_types",
    CELL_TYPE,
    "labels",
    "label",
    "reference",
    "target",
    "targets",
    CONDITION,
    "conditions",
    "sender",
    "receiver",
    "senders",
    "receivers",
    "source",
    "sources",
}


def base_type(annotation):
    """(base type, is_list, literal options) of a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return base_type(args[0]) if args else (str, False, None)
    if origin is typing.Literal:
        return str, False, list(typing.get_args(annotation))
    if origin in (list, tuple, set):
        inner = typing.get_args(annotation)
        base, _, lits = base_type(inner[0]) if inner else (str, False, None)
        return base, True, lits
    return annotation, False, None


def options(f) -> list[str]:
    """The values a field takes from a fixed set: its ``Literal`` options, or two or more quoted in its
    description ("'pca' (reference PCA) or 'c2s'": a plugin may add more, so the type stays ``str``)."""
    base, _, lits = base_type(f.annotation)
    if lits:
        return [o for o in lits if isinstance(o, str)]
    quoted = re.findall(r"'([\w.-]+)'", f.description or "") if base is str else []
    return quoted if len(quoted) > 1 else []


def entity_kind(name: str, f) -> str | None:
    """The entity a field takes: its ``json_schema_extra["entity"]`` or a guess from its name and type."""
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    if "entity" in extra:
        return extra["entity"]
    base, is_list, lits = base_type(f.annotation)
    n = name.lower()
    if options(f):
        return "literal"
    if base is bool:
        return "flag"
    if n in ("groupby", "column", "obs_key", "label_key", "by", "label_column", "group_by") or n.endswith(
        ("_key", "_column")
    ):
        return "obs_column"
    if n in SENDERS | RECEIVERS and not re.search(r"group|cells|cell type", f.description or "", re.I):
        return None  # e.g. knowledge "sources": not cell groups unless the description says so
    if n in VALUE_NAMES:
        return "obs_values" if is_list else "obs_value"
    if n in ("genes", "gene_list", "gene_symbols") or (n == "gene" or n.endswith("_genes")):
        return "genes" if is_list else "gene"
    if n in ("question", "query", "text", "prompt"):
        return "text"
    if base in (int, float) and base is not bool:
        return "number"
    return None


def column_named(view: DatasetView, name: str) -> str | None:
    """The column a field or entity is named after (CELL_TYPE -> the cell types, CONDITION -> conditions)."""
    n = re.sub(r"[_.\-]+", " ", name.lower()).strip().rstrip("s").replace(" ", "_")
    if n in ROLE_ENTITIES:
        return view.column_for(ROLE_ENTITIES[n])
    return next((c for c in view.columns if re.sub(r"[_.\-]+", "_", c.lower()) == n), None)


#: Words before the column a result is broken down by ("tabulate the phases per sorted population").
BY = re.compile(r"\b(?:per|by|across|each|every|between|among)\s+(?:the\s+)?(?:[\w-]+\s+)?$", re.I)


@dataclass
class Filling:
    """The state of filling one tool's arguments from one clause."""

    tool: object
    clause: str
    view: DatasetView | None
    mentions: list[Mention]
    borrowed: bool
    args: dict = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    kinds: dict = field(default_factory=dict)
    column_of: dict = field(default_factory=dict)
    chosen: str | None = None
    paired: bool = False

    @property
    def fields(self):
        return self.tool.input_model.model_fields

    @property
    def values(self) -> list[Mention]:
        return [m for m in self.mentions if m.kind == "value"]

    @property
    def by_columns(self) -> set[str]:
        """Columns named after "per", "by", "across" or "each": what a result is broken down by."""
        return {
            m.column
            for m in self.mentions
            if m.kind == "column" and BY.search(self.clause[max(0, m.start - 24) : m.start])
        }

    @property
    def columns(self) -> list[str]:
        """Columns the clause names, except as a qualifier of their own value ("demuxlet singlets", "zone V1")."""
        return [
            m.column
            for m in self.mentions
            if m.kind == "column" and not any(v.column == m.column and 0 <= v.start - m.end <= 1 for v in self.values)
        ]


#: Words that point back to groups named earlier ("captions for those two zones", "cells like these").
REFERS = re.compile(r"\b(?:those|these)\b", re.I)


def _referred(clause: str, question: str, mentions: list[Mention], view: DatasetView) -> list[Mention]:
    """The groups named before ``clause`` in the question that it points back to ("those two zones"): of the
    column it names after "those"/"these", else of the one column they were named in."""
    back = REFERS.search(clause)
    at = question.find(clause)
    if back is None or at <= 0 or any(m.kind == "value" for m in mentions):
        return []
    earlier = [m for m in find_mentions(question[:at], view) if m.kind == "value"]
    cols = {m.column for m in mentions if m.kind == "column" and m.start >= back.end()} or {m.column for m in earlier}
    return [m for m in earlier if m.column in cols] if len(cols) == 1 else []


def _start(tool, clause: str, view: DatasetView | None, question: str) -> Filling:
    mentions = find_mentions(clause, view)
    borrowed = False  # columns and labels may be named once for several clauses: they fill required fields
    referred = _referred(clause, question, mentions, view) if view and question and question != clause else []
    if referred:
        mentions = mentions + referred  # they fill the fields the clause's own groups would
    elif view and question and question != clause and not any(m.kind in ("column", "value") for m in mentions):
        extra = [m for m in find_mentions(question, view) if m.kind in ("column", "value")]
        mentions, borrowed = mentions + extra, bool(extra)
    f = Filling(tool, clause, view, mentions, borrowed)
    f.kinds = {name: entity_kind(name, fi) for name, fi in f.fields.items()}
    for name, kind in list(f.kinds.items()):
        if kind not in KINDS and view is not None and column_named(view, str(kind)):
            f.column_of[name] = column_named(view, str(kind))
            f.kinds[name] = "obs_values" if base_type(f.fields[name].annotation)[1] else "obs_value"
    return f


def _fill_pairs(f: Filling) -> None:
    """Column/value field pairs named by a word beside a group ("against the real CD14 monocytes", "the ctrl cells
    as the control"): ``real_column``/``real_value`` take that group and its column; ``control_*`` also take the
    condition column's control level however it is named ("versus the ctrl cells")."""
    for name in [n for n, k in f.kinds.items() if k == "obs_column" and n.endswith("_column")]:
        prefix = name[: -len("_column")]
        value_field = next((v for v in (f"{prefix}_value", f"{prefix}_values") if v in f.fields), None)
        if value_field is None or name in f.args:
            continue
        word = re.compile(r"\b" + re.escape(prefix) + r"s?\b", re.I)
        roles = f.view.roles
        for m in f.values:
            near = f.clause[max(0, m.start - 25) : m.start] + " " + f.clause[m.end : m.end + 25]
            taken = {str(x) for v in f.args.values() for x in (v if isinstance(v, list) else [v])}
            level = prefix == "control" and not f.borrowed and (m.column, m.text) == (roles.condition, roles.control)
            if (word.search(near) or level) and m.text not in taken:
                f.args[name] = m.column
                list_field = base_type(f.fields[value_field].annotation)[1]
                f.args[value_field] = [m.text] if list_field else m.text
                f.paired = True
                break


def _fill_columns(f: Filling) -> None:
    view = f.view
    col_fields = [n for n, k in f.kinds.items() if k == "obs_column"]
    taken: set[str] = set()
    cond_col = view.roles.condition
    condition = bool(ROLE_WORDS[CONDITION].search(f.clause))
    for name in col_fields:  # fields named after a column concept ("condition_column") take that column
        concept = column_named(view, re.sub(r"_(column|key|col)$", "", name))
        if (
            concept
            and name not in ("groupby", "column")
            and (
                concept in f.columns
                or any(v.column == concept for v in f.values)
                or (concept == cond_col and condition)
            )
        ):
            f.args[name] = concept
            taken.add(concept)
    generic_filled = f.paired  # a pair named by its word ("against the real B cells") stands for the generic column
    for name in col_fields:
        required = f.fields[name].is_required()
        if name in f.args or (f.borrowed and not required) or (generic_filled and not required):
            continue
        free = sorted((c for c in f.columns if c not in taken), key=lambda c: c not in f.by_columns)
        value_cols = [v.column for v in f.values if v.column not in taken]
        contrasted = _contrasted(f)
        col = None
        if free:
            col = free[0]
        elif contrasted and contrasted not in taken:
            col = contrasted
        elif condition and cond_col and cond_col not in taken:
            col = cond_col
        elif value_cols:
            col = value_cols[0]
        elif required:
            labels = [c for c in view.label_columns() if c not in taken]
            col = labels[0] if labels else None
            if col:
                f.notes.append(Note(kind="assumption", text=f"{f.tool.name}: no column named; grouped by {col!r}"))
        if col:
            f.args[name] = col
            f.chosen = f.chosen or col
            generic_filled = True


#: Words between two groups of one column that set them against each other ("stim vs ctrl", "X against Y").
CONTRAST = re.compile(r"\s*(?:vs\.?|versus|against|compared (?:to|with)|relative to)\s*(?:the\s+)?", re.I)


def _contrasted(f: Filling) -> str | None:
    """The column whose groups the clause sets against each other ("stim vs ctrl", "between B and NK cells"),
    if any: that column is what the clause groups by, and groups of other columns restrict it."""
    values = sorted(f.values, key=lambda m: m.start)
    for a, b in zip(values, values[1:]):
        if a.column != b.column or a.text == b.text:
            continue
        between = f.clause[a.end : b.start]
        if CONTRAST.fullmatch(between) or (
            re.fullmatch(r"\s*and\s*(?:the\s+)?", between)
            and re.search(r"\bbetween\s+(?:the\s+)?(?:[\w-]+\s+)?$", f.clause[: a.start])
        ):
            return a.column
    return None


#: Words between senders and receivers ("from the monocytes (CD14 and CD16) to the T cells", "B -> NK").
TOWARDS = re.compile(r"\b(?:to|onto|into|towards?)\b|->|→", re.I)


def _fill_values(f: Filling, name: str, kind: str) -> None:
    fi = f.fields[name]
    is_list = base_type(fi.annotation)[1]
    named = f.column_of.get(name) or (column_named(f.view, name) if f.view else None)
    pair_field = re.sub(r"_values?$", "", name) + "_column"  # condition_value <- condition_column
    if pair_field in f.fields and not f.args.get(pair_field):
        return  # a value without its column would be rejected by the tool
    want = f.args.get(pair_field) or named or f.chosen
    cands = [v for v in f.values if want is None or v.column == want]
    if name.lower() in SENDERS or name.lower() in RECEIVERS:  # "from X and Y to Z": spans before "to" send
        spans = sorted({v.start for v in cands})
        again = [
            s for s in spans if all(any(w.text == v.text and w.start > s for w in cands) for v in cands if v.start == s)
        ]
        if len(spans) - len(again) > 1:  # "If A and B were co-cultured, ... A (sender) to B": named again in a role
            cands, spans = [v for v in cands if v.start not in again], [s for s in spans if s not in again]
        cut = next((b for a, b in zip(spans, spans[1:]) if TOWARDS.search(f.clause[a:b])), spans[1] if spans[1:] else 0)
        cands = [v for v in cands if (v.start < cut) == (name.lower() in SENDERS)] if len(spans) > 1 else []
    vals = list(dict.fromkeys(v.text for v in cands))
    every = f.view is not None and want is not None and len(vals) > 1 and set(vals) == set(f.view.columns.get(want, []))
    if every and name.lower() not in SENDERS | RECEIVERS:
        return  # "between stimulated and control": every value of the column restricts nothing
    if vals:
        f.args[name] = vals if (kind == "obs_values" and is_list) else vals[0]


def _fill_entities(f: Filling) -> None:
    for name, kind in f.kinds.items():
        fi = f.fields[name]
        if kind in ("obs_values", "obs_value") and not (f.borrowed and not fi.is_required()):
            _fill_values(f, name, kind)
        elif kind == "obs_filter":
            vals = [v.text for v in f.values if f.chosen is not None and v.column != f.chosen]
            if vals:
                f.args[name] = list(dict.fromkeys(vals))
        elif kind in ("genes", "gene"):  # a symbol the tool's own description uses is its term ("MMD"), no gene
            genes = [m.text for m in f.mentions if m.kind == "gene" and not _own_term(f.tool, m.text)]
            if genes:
                f.args[name] = list(dict.fromkeys(genes)) if kind == "genes" else genes[0]
        elif kind == "program" and (program := program_from_text(f.clause)):
            f.args[name] = program
        elif kind == "text":
            f.args[name] = f.clause
        elif kind == "literal" and (named := _literal(options(fi), f.clause)):
            f.args[name] = named if base_type(fi.annotation)[1] else named[0]
        elif kind == "flag" and _flagged(fi, f.clause):
            f.args[name] = not fi.default


def _own_term(tool, symbol: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(symbol) + r"(?![\w-])", tool.description) is not None


#: Words before an option that turn it down ("a t-test instead of wilcoxon", "C2S rather than PCA").
REJECTED = re.compile(
    r"(?:instead of|rather than|not|over|but not)\s+(?:(?:the|a|an|over|by|with|from|using)\s+)?$", re.I
)


def _option_pattern(option: str) -> re.Pattern:
    """An option as a question writes it: any separator or none between its parts ("t test", "gene summary"),
    and a longer word its stem begins ("generation" for "generate", "scoring" for "score")."""
    parts = [re.escape(p) for p in re.split(r"[-_ ]+", option) if p]
    last = parts[-1]
    if len(last) > 4 and last.isalpha():
        last = last[: max(4, len(last) - 2)] + r"\w*"
    return re.compile(r"\b" + r"[-_\s]?".join([*parts[:-1], last]) + r"s?\b", re.I)


def _literal(options: list[str], clause: str) -> list[str]:
    """The options the clause asks for, first named first: those it names and does not turn down; of two
    options, the other when it turns one down ("rather than over neighbourhoods" asks for the other mode)."""
    named, rejected = [], []
    for opt in options:
        for m in _option_pattern(opt).finditer(clause):
            if REJECTED.search(clause[max(0, m.start() - 20) : m.start()]):
                rejected.append(opt)
            else:
                named.append((m.start(), opt))
                break
    if not named and len(options) == 2 and len(set(rejected)) == 1:
        return [o for o in options if o not in rejected]
    return [opt for _, opt in sorted(named)]


#: Words before a field's subject that ask to leave it out ("without the ribosomal genes"), unless themselves
#: negated ("don't filter out the mito genes").
LEFT_OUT = re.compile(r"\b(?:without|excluding|exclude|no|remove|drop|filter(?:ed)? out|ignore|skip)\b", re.I)
#: Stems of words any field's description may use, which name no subject of their own.
GENERIC = frozenset({"repo", "retu", "incl", "comp", "show", "outp", "resu", "cell", "gene", "valu", "numb"})
KEPT = re.compile(r"\b(?:don'?t|do not|not|never|no need to)\s+$", re.I)


def _flagged(field, clause: str) -> bool:
    """Whether the clause asks to turn a yes/no field from its default: it names the words of the field's
    description that no other field would say (stems of six letters and more: "ribosomal", "mito[chondrial]"),
    and does not ask to leave them out."""
    words = {w[:4] for w in re.findall(r"[a-z]{6,}", (field.description or "").lower())} - GENERIC
    for m in re.finditer(r"[a-z]{4,}", clause.lower()):
        if m.group()[:4] in words:
            before = clause[max(0, m.start() - 30) : m.start()]
            out = list(LEFT_OUT.finditer(before))
            return not out or bool(KEPT.search(before[: out[-1].start()]))
    return False


def _fraction(field) -> bool:
    """Whether a number field takes a fraction (bounded by 1), so that "20%" is 0.2."""
    return any(getattr(m, b, None) is not None and getattr(m, b) <= 1 for m in field.metadata for b in ("le", "lt"))


def _within(field, value: float) -> bool:
    """Whether a number field's bounds admit ``value`` ("15 partners" is no "at most 3 sources")."""
    checks = {"ge": float.__ge__, "gt": float.__gt__, "le": float.__le__, "lt": float.__lt__}
    return all(
        checks[b](float(value), float(getattr(m, b)))
        for m in field.metadata
        for b in checks
        if getattr(m, b, None) is not None
    )


def _takes_percent(name: str, field) -> bool:
    """Whether a number field can take a percentage: a fraction, or a field that says it is in percent."""
    return _fraction(field) or "percent" in f"{name} {field.description or ''}".lower()


#: Short forms in field names, as a question writes them.
SPELLED = {"min": "minimum", "max": "maximum", "n": "number", "frac": "fraction", "pct": "percent"}


def _number_field_score(name: str, f, context: str) -> int:
    words = set(re.findall(r"[a-z]+", (name.replace("_", " ") + " " + (f.description or "")).lower()))
    words |= {SPELLED[w] for w in words if w in SPELLED}
    words -= {"the", "of", "a", "to", "per", "in", "and", "or", "for", "number", "other", "over"}
    return sum(1 for w in re.findall(r"[a-z]+", context.lower()) if w in words or w.rstrip("s") in words)


def number_named(name: str, field, clause: str) -> bool:
    """Whether the clause names a number field by the words of its name or description ("500 permutations")."""
    return _number_field_score(name, field, clause) > 0


def _counts_cells(f: Filling, number) -> bool:
    """Whether a number stands before a group of cells ("100 CD8 T cells", "twenty-five control NK cells"), not
    before some other noun ("12 monocyte neighbourhoods")."""
    for o in f.mentions:
        if o.kind in ("value", "missing") and 0 <= o.start - number.end <= 25:
            said = f.clause[o.start : o.end]
            if re.search(r"cells?$", said, re.I) or re.match(
                r"\s*(?:cells?\b|[,.;:?!]|and\b|or\b|with\b|from\b|in\b|of\b|for\b|using\b|under\b|$)",
                f.clause[o.end :],
            ):
                return True
    return False


def _one_count(f: Filling, names: list[str]) -> bool:
    """Whether exactly one of the number fields takes whole numbers (a count beside ratios and thresholds)."""
    return sum(base_type(f.fields[n].annotation)[0] is int for n in names if n not in f.args) == 1


#: Nouns for groups of cells after a number that counts them ("the two treatment arms").
GROUP_NOUN = re.compile(
    r"\s+(?:[\w-]+\s+)?(?:arms|groups|conditions|types|populations|categories|levels|clusters|zones|lines|samples|"
    r"batches|donors)\b",
    re.I,
)


def _fill_numbers(f: Filling) -> None:
    num_fields = [n for n, k in f.kinds.items() if k == "number"]
    for m in (m for m in f.mentions if m.kind == "number"):
        if (
            any(o.kind == "column" and 0 <= o.start - m.end <= 2 for o in f.mentions)
            or re.search(r"\b(?:those|these)\s+$", f.clause[: m.start], re.I)
            or (GROUP_NOUN.match(f.clause[m.end :]) and re.search(r"\bthe\s+$", f.clause[: m.start], re.I))
        ):
            continue  # "the other four lines", "those two types", "the two arms": how many groups, no setting
        context = f.clause[max(0, m.start - 30) : m.end + 30]
        if _counts_cells(f, m):
            context += " cells"  # "100 CD8 T cells": a number before a group counts cells
        if FOLD.fullmatch(m.text):
            context += " fold change"  # "fourfold", "3x"
        percent = re.match(r"\s*(?:%|per ?cent)", f.clause[m.end :]) is not None
        whole = m.value == int(m.value) and not percent

        def admits(name: str) -> float | None:
            """The value as the field would take it, if its type and bounds take it ("1.5" is no count)."""
            fi = f.fields[name]
            value = m.value / 100 if percent and _fraction(fi) else m.value
            is_int = base_type(fi.annotation)[0] is int
            return (
                (int(value) if is_int else value)
                if (not is_int or value == int(value)) and _within(fi, value)
                else None
            )

        open_ = [
            n
            for n in num_fields
            if n not in f.args and (not percent or _takes_percent(n, f.fields[n])) and admits(n) is not None
        ]
        scored = sorted(
            (
                (
                    _number_field_score(n, f.fields[n], context),
                    (base_type(f.fields[n].annotation)[0] is int) == whole,  # "3" is a count, "1.5" a ratio
                    -i,
                    n,
                )
                for i, n in enumerate(num_fields)
                if n in open_
            ),
            reverse=True,
        )
        if scored and (scored[0][0] > 0 or len(open_) == 1 or _one_count(f, open_)):
            f.args[scored[0][3]] = admits(scored[0][3])


def fill_args(tool, clause: str, view: DatasetView | None, question: str = "") -> tuple[dict, list[Note]]:
    """Arguments for ``tool`` from the entities named in ``clause`` (then the whole question). Returns the
    arguments (only fields the text determines, plus required label columns) and notes on assumptions."""
    f = _start(tool, clause, view, question)
    if view is not None:
        _fill_pairs(f)
        _fill_columns(f)
    _fill_entities(f)
    _fill_numbers(f)
    return f.args, f.notes


def check_args(tool, args, view: DatasetView, produced: set[str] = frozenset()) -> list[str]:
    """Problems with arguments that name things the dataset does not have. Columns in ``produced`` are made by
    earlier steps: their values are known only when those run, so they are not checked."""
    problems = []
    fields = tool.input_model.model_fields
    on_produced = any(
        entity_kind(n, fi) == "obs_column" and getattr(args, n, None) in produced for n, fi in fields.items()
    )
    known = {v for vs in view.columns.values() for v in vs}
    for name, fi in fields.items():
        value = getattr(args, name, None)
        kind = entity_kind(name, fi)
        if value in (None, "", []) or (kind == "obs_column" and value in produced):
            continue
        if kind in ("obs_values", "obs_value") and on_produced:
            continue
        if kind == "obs_column" and value not in view.columns and value not in view.numeric_columns:
            problems.append(f"{tool.name}: {name}={value!r} is not an obs column; use one of {list(view.columns)}")
        elif kind in ("obs_values", "obs_value", "obs_filter"):
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in known]
            if bad:
                problems.append(f"{tool.name}: {name} has values {bad} not found in any obs column")
        elif kind in ("gene", "genes"):  # knowledge tools also take human genes the data does not measure
            genes = [str(g).upper() for g in (value if isinstance(value, list) else [value])]
            bad = [g for g in genes if g not in view.genes and (tool.needs_data or not human_gene(g))]
            if bad:
                where = "the dataset's var_names" + ("" if tool.needs_data else " or the knowledge base's genes")
                problems.append(f"{tool.name}: {name} has genes {bad} not in {where}")
    return problems
