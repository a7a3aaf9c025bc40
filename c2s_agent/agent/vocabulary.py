"""The dataset's own vocabulary (obs columns and their values, gene symbols, slots) and entity extraction:
find the columns, labels, genes and numbers a question mentions and put them into a tool's input fields."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field

LABEL_HINTS = ("cell_type", "celltype", "cell type", "bulk_labels", "label", "annotation", "cluster", "louvain", "leiden")
CONDITION_NAMES = ("condition", "treatment", "stim", "perturbation", "group", "sample", "orig.ident")
CONDITION_WORDS = re.compile(r"\b(respon\w*|treat\w*|stimulat\w*|perturb\w*|conditions?|interferon|ifn\w*|drug\w*|"
                             r"versus|vs\.?|control|infect\w*)\b", re.I)
CLUSTER_WORDS = re.compile(r"\bclusters?\b", re.I)
CELLTYPE_WORDS = re.compile(r"\bcell[ -]?types?\b|\bpopulations?\b|\bcell identit\w*", re.I)
NOT_GENES = {"AND", "THE", "FOR", "ALL", "TOP", "MAX", "SET", "CAT", "RNA", "DNA", "PCA", "UMAP", "C2S", "ID", "DE",
             "IFN", "OR", "NOT", "CAN", "MIN", "MEAN", "CELL", "GENE", "LOG", "T", "B", "NK", "DC", "VS"}
GENE_TOKEN = re.compile(r"(?<![\w-])([A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)(?![\w-])")
SENDERS = {"source", "sources", "sender", "senders"}
RECEIVERS = {"target", "targets", "receiver", "receivers"}
KINDS = {"obs_column", "obs_value", "obs_values", "obs_filter", "gene", "genes", "number", "text", "literal", None}
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def _norm(text: str) -> str:
    return re.sub(r"[_.\-]+", " ", text.lower()).strip()


@dataclass
class Mention:
    kind: str  # column | value | gene | number
    text: str
    start: int
    end: int
    column: str | None = None
    value: float | None = None


@dataclass
class Vocabulary:
    """What a dataset offers a question: label columns with their values, gene symbols, present slots."""

    columns: dict[str, list[str]]  # categorical obs column -> its values
    numeric_columns: list[str]
    genes: dict[str, str]  # upper-case symbol -> var name
    slots: set[str] = field(default_factory=set)

    @classmethod
    def from_adata(cls, adata) -> Vocabulary:
        columns, numeric = {}, []
        for c in adata.obs.columns:
            s = adata.obs[c]
            if s.dtype.name in ("category", "object", "bool") and 1 <= s.nunique() <= 300:
                columns[c] = [str(v) for v in (s.cat.categories if s.dtype.name == "category" else s.unique())]
            elif s.dtype.kind in "if":
                numeric.append(c)
        genes = {str(g).upper(): str(g) for g in adata.var_names}
        slots = {f"obs:{c}" for c in adata.obs.columns} | {f"var:{c}" for c in adata.var.columns}
        for kind in ("obsm", "uns", "layers", "varm"):
            slots |= {f"{kind}:{k}" for k in getattr(adata, kind).keys()}
        return cls(columns, numeric, genes, slots)

    # ------------------------------------------------------------------ defaults
    def label_columns(self) -> list[str]:
        """Label-like columns (2..100 values), cell-type-like names first."""
        cols = [c for c, v in self.columns.items() if 1 < len(v) <= 100]
        rank = lambda c: next((i for i, h in enumerate(LABEL_HINTS) if h in c.lower()), len(LABEL_HINTS))  # noqa: E731
        return sorted(cols, key=rank)

    def condition_column(self) -> str | None:
        cands = [c for c, v in self.columns.items() if 2 <= len(v) <= 6]
        for name in CONDITION_NAMES:
            for c in cands:
                if name in c.lower():
                    return c
        return None

    def cluster_column(self) -> str | None:
        return next((c for c in self.label_columns() if any(h in c.lower() for h in ("cluster", "louvain", "leiden"))), None)

    def celltype_column(self) -> str | None:
        return next((c for c in self.label_columns() if is_celltype_column(c)), None)

    def column_named(self, field_name: str) -> str | None:
        """The column a field is named after (``cell_type`` -> a cell-type column, ``condition`` -> ...)."""
        n = _norm(field_name).rstrip("s")
        if n in ("cell type", "celltype", "label", "group"):
            return self.celltype_column() if n != "group" else None
        if n in ("condition", "treatment", "control", "stimulation", "perturbation"):
            return self.condition_column()
        return next((c for c in self.columns if _norm(c) == n), None)

    def predicted(self, column: str, values: list[str]) -> Vocabulary:
        """The vocabulary once a step has predicted cell types into ``obs[column]`` (e.g. ``c2s_cell_type`` from
        annotate_cells): that column, holding ``values``, stands in for the dataset's own cell-type column, so
        "monocytes" or "T cells" name predicted labels."""
        own = self.celltype_column()
        cols = {column: list(values), **{c: v for c, v in self.columns.items() if c not in (own, column)}}
        return Vocabulary(cols, self.numeric_columns, self.genes, self.slots | {f"obs:{column}"})

    # ------------------------------------------------------------------ extraction
    def mentions(self, text: str) -> list[Mention]:
        """Columns, label values, genes and numbers named in ``text``, without overlaps, in text order."""
        found: list[Mention] = []
        taken = [False] * len(text)

        def claim(m: Mention) -> bool:
            if any(taken[m.start:m.end]):
                return False
            taken[m.start:m.end] = [True] * (m.end - m.start)
            found.append(m)
            return True

        lower = text.lower()
        # label values, longest first; short ones (<= 2 chars) case-sensitively
        values = sorted(((c, v) for c, vs in self.columns.items() for v in vs if not v.isdigit()),
                        key=lambda cv: -len(cv[1]))
        for col, val in values:
            flags = 0 if len(val) <= 2 else re.I
            for m in re.finditer(r"(?<![\w+])" + re.escape(val) + r"(?![\w+])", text, flags):
                claim(Mention("value", val, m.start(), m.end(), column=col))
        # "T cells": every label with the token T, when no label is exactly "T"
        for m in re.finditer(r"\b([A-Z]{1,3}|[A-Z][a-z]{1,2})[ -]cells?\b", text):
            tok = m.group(1)
            if any(taken[m.start(1):m.end(1)]) or any(v == tok for vs in self.columns.values() for v in vs):
                continue
            for col, vals in self.columns.items():
                for val in vals:
                    if tok in val.split():
                        found.append(Mention("value", val, m.start(1), m.end(1), column=col))
            if any(f.start == m.start(1) for f in found):
                taken[m.start(1):m.end(1)] = [True] * (m.end(1) - m.start(1))
        # numeric labels only after "cluster(s)"
        for m in re.finditer(r"\bclusters?\s+((?:\d+(?:\s*(?:,|and|or)\s*)?)+)", text, re.I):
            col = self.cluster_column()
            if col:
                for n in re.finditer(r"\d+", m.group(1)):
                    if n.group() in self.columns[col]:
                        s = m.start(1) + n.start()
                        claim(Mention("value", n.group(), s, s + len(n.group()), column=col))
        # column names (normalised: cell_type ~ "cell type"), then words that imply a column
        for col in sorted(self.columns, key=len, reverse=True):
            name = _norm(col)
            if len(name) < 3:
                continue
            for m in re.finditer(r"\b" + re.escape(name) + r"s?\b", _norm_keep(lower)):
                claim(Mention("column", col, m.start(), m.end(), column=col))
        for pattern, col in ((CELLTYPE_WORDS, self.celltype_column()), (CLUSTER_WORDS, self.cluster_column())):
            if col:
                for m in pattern.finditer(text):
                    claim(Mention("column", col, m.start(), m.end(), column=col))
        # abbreviations and plurals of values: "monocytes" ~ "Mono", "stimulated" ~ "stim", "control" ~ "ctrl"
        for m in re.finditer(r"[A-Za-z]{4,}", text):
            if any(taken[m.start():m.end()]):
                continue
            word = m.group().lower()
            hits = [Mention("value", v, m.start(), m.end(), column=c)
                    for c, vals in self.columns.items() for v in vals if _abbreviates(v, word)]
            whole = [h for h in hits if _abbreviates(h.text, word, whole=True)]
            hits = whole or hits  # "stimulated": the label "stim" rather than "IMMUNE_STIM"
            if hits:
                found.extend(hits)
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
        for m in GENE_TOKEN.finditer(text):
            tok = m.group(1)
            up = tok.upper()
            if up in self.genes and up not in NOT_GENES and (tok.isupper() or any(ch.isdigit() for ch in tok)) \
                    and len(tok) >= 2:
                claim(Mention("gene", self.genes[up], m.start(1), m.end(1)))
        for m in NUMBER.finditer(text):
            claim(Mention("number", m.group(1), m.start(1), m.end(1), value=float(m.group(1))))
        return sorted(found, key=lambda f: f.start)

    # ------------------------------------------------------------------ checks
    def check_args(self, tool, args, produced: set[str] = frozenset()) -> list[str]:
        """Problems with arguments that name things the dataset does not have. Columns in ``produced`` are made
        by earlier steps: their values are known only when those run, so they are not checked."""
        problems = []
        fields = tool.input_model.model_fields
        on_produced = any(entity_kind(n, f) == "obs_column" and getattr(args, n, None) in produced
                          for n, f in fields.items())
        for name, f in fields.items():
            value = getattr(args, name, None)
            if value in (None, "", []):
                continue
            kind = entity_kind(name, f)
            if kind == "obs_column" and value in produced:
                continue
            if kind in ("obs_values", "obs_value") and on_produced:
                continue
            if kind == "obs_column" and value not in self.columns and value not in self.numeric_columns:
                problems.append(f"{tool.name}: {name}={value!r} is not an obs column; use one of {list(self.columns)}")
            elif kind in ("obs_values", "obs_value", "obs_filter"):
                known = {v for vs in self.columns.values() for v in vs}
                bad = [v for v in (value if isinstance(value, list) else [value]) if v not in known]
                if bad:
                    problems.append(f"{tool.name}: {name} has values {bad} not found in any obs column")
            elif kind in ("gene", "genes"):
                bad = [g for g in (value if isinstance(value, list) else [value]) if str(g).upper() not in self.genes]
                if bad:
                    problems.append(f"{tool.name}: {name} has genes {bad} not in the dataset's var_names")
        return problems


def is_celltype_column(name: str) -> bool:
    """A column named like a cell-type annotation (``cell_type``, ``c2s_cell_type``, ``celltype``, ``labels``)."""
    return any(h in name.lower() for h in LABEL_HINTS[:5])


def _norm_keep(text: str) -> str:
    """Like :func:`_norm` but keeping string length (so match offsets stay valid)."""
    return re.sub(r"[_.\-]", " ", text)


def _abbreviates(value: str, word: str, whole: bool = False) -> bool:
    """``value`` (a label such as "CD14 Mono" or "ctrl") abbreviates or is the stem of ``word`` (with
    ``whole``, the entire label must be the stem or abbreviation, not one of its words)."""
    for tok in [value.lower()] if whole else re.split(r"[\s_]+", value.lower()):
        tok = tok.strip("+")
        if len(tok) >= 4 and tok.isalpha() and word.startswith(tok) and len(word) - len(tok) <= 7:
            return True
    v = value.lower()
    if 3 <= len(v) <= 6 and value.isalpha() and value.islower() and len(word) >= 5 and word[0] == v[0] and v not in word:
        it = iter(word)
        return all(ch in it for ch in v)
    return False


# ---------------------------------------------------------------------- filling a tool's arguments
def _base_type(annotation):
    """(base type, is_list, literal options) of a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if args else (str, False, None)
    if origin is typing.Literal:
        return str, False, list(typing.get_args(annotation))
    if origin in (list, tuple, set, typing.List):  # noqa: UP006
        inner = typing.get_args(annotation)
        base, _, lits = _base_type(inner[0]) if inner else (str, False, None)
        return base, True, lits
    return annotation, False, None


def entity_kind(name: str, f) -> str | None:
    """The entity a field takes: its ``json_schema_extra["entity"]`` or a guess from its name and type."""
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    if "entity" in extra:
        return extra["entity"]
    base, is_list, lits = _base_type(f.annotation)
    n = name.lower()
    if lits:
        return "literal"
    if n in ("groupby", "column", "obs_key", "label_key", "by", "label_column", "group_by") or n.endswith(("_key", "_column")):
        return "obs_column"
    if n in SENDERS | RECEIVERS and not re.search(r"group|cells|cell type", f.description or "", re.I):
        return None  # e.g. knowledge "sources": not cell groups unless the description says so
    if n in ("groups", "group", "cell_types", "cell_type", "labels", "label", "reference", "target", "targets",
             "condition", "conditions", "sender", "receiver", "senders", "receivers", "source", "sources"):
        return "obs_values" if is_list else "obs_value"
    if n in ("genes", "gene_list", "gene_symbols") or (n == "gene" or n.endswith("_genes")):
        return "genes" if is_list else "gene"
    if n in ("question", "query", "text", "prompt"):
        return "text"
    if base in (int, float) and base is not bool:
        return "number"
    return None


def _number_field_score(name: str, f, context: str) -> int:
    words = set(re.findall(r"[a-z]+", (name.replace("_", " ") + " " + (f.description or "")).lower()))
    words -= {"the", "of", "a", "to", "per", "in", "and", "or", "for", "number"}
    return sum(1 for w in re.findall(r"[a-z]+", context.lower()) if w in words or w.rstrip("s") in words)


def fill_args(tool, clause: str, vocab: Vocabulary | None, question: str = "") -> tuple[dict, list[str]]:
    """Arguments for ``tool`` from the entities named in ``clause`` (then the whole question). Returns the
    arguments (only fields the text determines, plus required label columns) and notes on assumptions."""
    args: dict = {}
    notes: list[str] = []
    fields = tool.input_model.model_fields
    mentions = vocab.mentions(clause) if vocab else []
    borrowed = False  # columns and labels may be named once for several clauses: they fill required fields
    if vocab and question and question != clause and not any(m.kind in ("column", "value") for m in mentions):
        extra = [m for m in vocab.mentions(question) if m.kind in ("column", "value")]
        mentions, borrowed = mentions + extra, bool(extra)
    columns = [m.column for m in mentions if m.kind == "column"]
    values = [m for m in mentions if m.kind == "value"]
    condition = bool(CONDITION_WORDS.search(clause))
    kinds = {name: entity_kind(name, f) for name, f in fields.items()}
    column_of = {}  # fields whose entity names a column concept ("cell_type", "condition") take its values
    for name, kind in kinds.items():
        if kind not in KINDS and vocab is not None and vocab.column_named(str(kind)):
            column_of[name] = vocab.column_named(str(kind))
            kinds[name] = "obs_values" if _base_type(fields[name].annotation)[1] else "obs_value"

    chosen_col = None
    col_fields = [n for n, k in kinds.items() if k == "obs_column"]
    taken: set[str] = set()
    if vocab is not None:
        cond_col = vocab.condition_column()
        for name in col_fields:  # fields named after a column concept ("condition_column") take that column
            concept = vocab.column_named(re.sub(r"_(column|key|col)$", "", name))
            if concept and name not in ("groupby", "column") and (
                    concept in columns or any(v.column == concept for v in values)
                    or (concept == cond_col and condition)):
                args[name] = concept
                taken.add(concept)
        generic_filled = False
        for name in col_fields:
            if name in args or (borrowed and not fields[name].is_required()):
                continue
            if generic_filled and not fields[name].is_required():
                continue  # a second optional column field without a telling name stays unset
            col = None
            value_cols = [v.column for v in values if v.column not in taken]
            free = [c for c in columns if c not in taken]
            if free:
                col = free[0]
            elif condition and cond_col and cond_col not in taken:
                col = cond_col
            elif value_cols:
                col = value_cols[0]
            elif fields[name].is_required():
                labels = [c for c in vocab.label_columns() if c not in taken]
                col = labels[0] if labels else None
                if col:
                    notes.append(f"{tool.name}: no column named; grouped by {col!r}")
            if col:
                args[name] = col
                chosen_col = chosen_col or col
                generic_filled = True
    for name, kind in kinds.items():
        f = fields[name]
        base, is_list, lits = _base_type(f.annotation)
        if kind in ("obs_values", "obs_value") and not (borrowed and not f.is_required()):
            named = column_of.get(name) or (vocab.column_named(name) if vocab else None)  # named like a column
            pair_field = re.sub(r"_values?$", "", name) + "_column"  # condition_value <- condition_column
            if pair_field in fields and not args.get(pair_field):
                continue  # a value without its column would be rejected by the tool
            paired = args.get(pair_field)
            want = paired or named or chosen_col
            cands = [v for v in values if want is None or v.column == want]
            if name.lower() in SENDERS or name.lower() in RECEIVERS:  # "from X to Y": first span sends
                spans = sorted({v.start for v in cands})
                cands = [v for v in cands if (v.start == spans[0]) == (name.lower() in SENDERS)] if len(spans) > 1 else []
            vals = [v.text for v in cands]
            kind = kind if is_list else "obs_value"  # a str field takes one value whatever its entity says
            if vals:
                args[name] = list(dict.fromkeys(vals)) if kind == "obs_values" else vals[0]
        elif kind == "obs_filter":
            vals = [v.text for v in values if chosen_col is not None and v.column != chosen_col]
            if vals:
                args[name] = list(dict.fromkeys(vals))
        elif kind in ("genes", "gene"):
            genes = [m.text for m in mentions if m.kind == "gene"]
            if genes:
                args[name] = list(dict.fromkeys(genes)) if kind == "genes" else genes[0]
        elif kind == "text":
            args[name] = clause
        elif kind == "literal" and lits:
            for opt in lits:
                if isinstance(opt, str) and re.search(r"\b" + re.escape(opt.lower()) + r"\b", clause.lower()):
                    args[name] = opt
                    break
    numbers = [m for m in mentions if m.kind == "number"]
    num_fields = [n for n, k in kinds.items() if k == "number"]
    for m in numbers:
        context = clause[max(0, m.start - 30): m.end + 30]
        scored = sorted(((_number_field_score(n, fields[n], context), -i, n) for i, n in enumerate(num_fields)
                         if n not in args), reverse=True)
        if not scored or (scored[0][0] == 0 and len(num_fields) > 1):
            continue
        name = scored[0][2]
        base = _base_type(fields[name].annotation)[0]
        if base is int and m.value != int(m.value):
            continue
        args[name] = int(m.value) if base is int else m.value
    return args, notes
