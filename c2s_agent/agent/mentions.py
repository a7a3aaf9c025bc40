"""What a question names in a dataset: columns, label values, genes and numbers, and cell types the dataset
does not have (said plainly in the plan, never replaced by something else)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..conventions import find_label_mentions, lookup
from ..conventions.labels import STOP
from ..conventions.ontology import GENERIC, names_cell_type, words
from .dataset import ROLE_WORDS, DatasetView

NOT_GENES = {
    "AND",
    "THE",
    "FOR",
    "ALL",
    "TOP",
    "MAX",
    "SET",
    "CAT",
    "RNA",
    "DNA",
    "PCA",
    "UMAP",
    "C2S",
    "ID",
    "DE",
    "IFN",
    "OR",
    "NOT",
    "CAN",
    "MIN",
    "MEAN",
    "CELL",
    "GENE",
    "LOG",
    "T",
    "B",
    "NK",
    "DC",
    "VS",
    "MHC",
    "HLA",
    "TNF-ALPHA",
    "IFN-BETA",
    "IFN-GAMMA",
    "IFN-ALPHA",
}
GENE_TOKEN = re.compile(r"(?<![\w-])([A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)(?![\w-])")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")
#: Column-name words too generic to name a column on their own.
NAME_GENERIC = GENERIC | {"label", "labels", "cls", "id", "ident", "orig", "n", "name", "annotation", "bulk"}


@dataclass
class Mention:
    """One thing a question names: ``kind`` column | value | gene | number | missing, its text (for a value: the
    label; for a column: the column), where it stands, the column a value belongs to and a number's value."""

    kind: str
    text: str
    start: int
    end: int
    column: str | None = None
    value: float | None = None


def _claim(found: list[Mention], taken: list[bool], m: Mention) -> bool:
    if any(taken[m.start : m.end]):
        return False
    taken[m.start : m.end] = [True] * (m.end - m.start)
    found.append(m)
    return True


def _norm(text: str) -> str:
    return re.sub(r"[_.\-]+", " ", text.lower()).strip()


def _ordered_columns(view: DatasetView) -> dict[str, list[str]]:
    """Label columns, those holding cell types first, then conditions, clusters, samples and the rest."""
    r = view.roles
    first = [c for c in (r.predicted, r.cell_type, r.condition, r.cluster, r.sample) if c in view.columns]
    return {c: view.columns[c] for c in dict.fromkeys(first + list(view.columns))}


def _cluster_numbers(text: str, view: DatasetView, found, taken) -> None:
    col = view.roles.cluster
    for m in re.finditer(r"\bclusters?\s+((?:\d+(?:\s*(?:,|and|or)\s*)?)+)", text, re.I):
        for n in re.finditer(r"\d+", m.group(1)):
            if col and n.group() in view.columns.get(col, []):
                s = m.start(1) + n.start()
                _claim(found, taken, Mention("value", n.group(), s, s + len(n.group()), column=col))


def _labels(text: str, view: DatasetView, found, taken) -> None:
    for lm in find_label_mentions(text, _ordered_columns(view)):
        if any(taken[lm.start : lm.end]):
            continue
        taken[lm.start : lm.end] = [True] * (lm.end - lm.start)
        found.extend(Mention("value", v, lm.start, lm.end, column=lm.column) for v in lm.values)


def _columns(text: str, view: DatasetView, found, taken) -> None:
    """Column names ("seurat clusters", "cell line"), words of them ("each zone"), and role words ("clusters")."""
    lower = re.sub(r"[_.\-]", " ", text.lower())
    for col in sorted(view.columns, key=len, reverse=True):
        name = _norm(col)
        keys = [name] + [w for w in name.split() if w not in NAME_GENERIC and len(w) >= 3]
        for key in keys:
            for m in re.finditer(r"\b" + re.escape(key) + r"(?:e?s)?\b", lower):
                _claim(found, taken, Mention("column", col, m.start(), m.end(), column=col))
    for role in ("cell_type", "cluster", "sample", "condition"):
        col = view.column_for(role)
        if col:
            for m in ROLE_WORDS[role].finditer(text):
                if role != "condition" or m.group().lower().startswith("condition"):
                    _claim(found, taken, Mention("column", col, m.start(), m.end(), column=col))


def _genes(text: str, view: DatasetView, found, taken) -> None:
    for m in GENE_TOKEN.finditer(text):
        tok = m.group(1)
        up = tok.upper()
        if (
            up in view.genes
            and up not in NOT_GENES
            and len(tok) >= 2
            and (tok.isupper() or any(c.isdigit() for c in tok))
        ):
            _claim(found, taken, Mention("gene", view.genes[up], m.start(1), m.end(1)))


def _missing(text: str, found, taken) -> None:
    """Cell-type phrases the dataset has no label for ("plasma cells", "neutrophils", "CD34+ progenitors"): a
    CD marker, a Cell Ontology name, or shorthand that ends in "cell(s)"."""
    toks = [(t.start(), t.end()) for t in re.finditer(r"[\w+/-]+", text)]
    for n in (4, 3, 2, 1):
        for i in range(len(toks) - n + 1):
            s, e = toks[i][0], toks[i + n - 1][1]
            phrase = text[s:e]
            cell_word = re.search(r"\bcells?$", phrase, re.I) is not None
            content = [
                w
                for w, raw in zip(words(phrase), phrase.split())
                if w not in GENERIC and w not in STOP and (len(w) > 1 or (cell_word and raw.isupper()))
            ]
            if any(taken[s:e]) or not content:
                continue
            marker = re.fullmatch(r"CD\d+[+-]?(?:\s+\S+)?", phrase) is not None
            if marker or names_cell_type(phrase) or (cell_word and lookup(phrase, strict=True) is not None):
                _claim(found, taken, Mention("missing", phrase, s, e))


def find_mentions(text: str, view: DatasetView | None) -> list[Mention]:
    """Columns, label values, genes, numbers and unknown cell types named in ``text``, without overlaps, in text
    order. A phrase naming several labels ("T cells") gives one value mention per label, all at its span."""
    if view is None:
        return []
    found: list[Mention] = []
    taken = [False] * len(text)
    _cluster_numbers(text, view, found, taken)
    _labels(text, view, found, taken)
    _columns(text, view, found, taken)
    _genes(text, view, found, taken)
    for m in NUMBER.finditer(text):
        _claim(found, taken, Mention("number", m.group(1), m.start(1), m.end(1), value=float(m.group(1))))
    _missing(text, found, taken)
    return sorted(found, key=lambda f: f.start)
