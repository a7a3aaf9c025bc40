"""What a question names in a dataset: columns, label values, genes and numbers, and cell types the dataset
does not have (said plainly in the plan, never replaced by something else)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from text_to_num import text2num

from ..conventions import find_label_mentions, lookup
from ..conventions.labels import STOP
from ..conventions.ontology import GENERIC, names_cell_type, singular, words
from ..conventions.slots import CELL_TYPE, CONDITION
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
GENE_TOKEN = re.compile(r"(?<![\w.-])([A-Za-z][A-Za-z0-9]*(?:[.-][A-Za-z0-9]+)*)(?![\w-]|\.\w)")  # AC006129.4, HLA-DRA
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w.])")  # 25, 0.5, 5,000
_NUMBER_WORD = (
    r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)"
)
NUMBER_WORDS = re.compile(rf"\b(?:an?\s+)?{_NUMBER_WORD}(?:[\s-]+(?:and\s+)?{_NUMBER_WORD})*\b", re.I)
#: A fold change written as one word or with "x" ("threefold", "3x", "2.5-fold"): the number it multiplies by.
FOLD = re.compile(rf"(?<![\w.])(\d+(?:\.\d+)?|{_NUMBER_WORD})\s?(?:-?fold|x|×)(?!\w)", re.I)
#: Fractions in words ("half", "a quarter", "two thirds").
FRACTION = re.compile(rf"\b(?:(an?|one|{_NUMBER_WORD})[\s-]+)?(half|halves|thirds?|quarters?|fifths?|tenths?)\b", re.I)
PARTS = {"hal": 2, "thi": 3, "qua": 4, "fif": 5, "ten": 10}
SPOKEN = "zero one two three four five six seven eight nine ten eleven twelve".split()
ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
#: Words for the arms of an experiment: its condition column.
ARMS = re.compile(r"\b(?:treatment\s+)?arms?\b|\btreatment\s+groups?\b", re.I)
#: Column-name words too generic to name a column on their own.
NAME_GENERIC = GENERIC | {"label", "labels", "cls", "id", "ident", "orig", "n", "name", "annotation", "bulk"}


@dataclass
class Mention:
    """One thing a question names: ``kind`` column | value | gene | number | missing, its text (for a value: the
    label; for a column: the column), where it stands, the column a value belongs to, a number's value, and
    whether a value was named with its column's word."""

    kind: str
    text: str
    start: int
    end: int
    column: str | None = None
    value: float | None = None
    qualified: bool = False  # a value named with its column's word ("cluster 3")


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


#: Words that name a column of each role, besides the column's own name.
ROLE_NOUNS = {
    "cluster": ("cluster",),
    "sample": ("sample", "donor", "batch", "plate", "patient", "replicate"),
    CONDITION: (CONDITION,),
}


def _column_nouns(col: str, view: DatasetView) -> list[str]:
    nouns = [w for w in _norm(col).split() if w not in NAME_GENERIC and len(w) >= 3]
    for role, words_ in ROLE_NOUNS.items():
        if view.column_for(role) == col:
            nouns += words_
    return list(dict.fromkeys(nouns))


def _qualified_values(text: str, view: DatasetView, found, taken) -> None:
    """Short labels next to their column's word: "cluster 0, 2 and 5", "batch p2", "S-phase", "G2/M-phase", and
    "zone 2" for a column whose one value numbered 2 is "V2"."""
    for col, values in view.columns.items():
        short = [v for v in values if len(v) <= 4 or v.isdigit()]
        nouns = _column_nouns(col, view)
        if not short or not nouns:
            continue
        aliases = {v: v for v in short}
        numbered = {}
        for v in values:
            if m := re.fullmatch(r"[A-Za-z]+(\d+)", v):
                numbered.setdefault(str(int(m.group(1))), []).append(v)
        aliases |= {n: vs[0] for n, vs in numbered.items() if len(vs) == 1 and n not in values}
        spoken = {SPOKEN[int(a)]: v for a, v in aliases.items() if a.isdigit() and int(a) < len(SPOKEN)}
        by_text = {re.sub(r"[/.\-]", "", a).lower(): v for a, v in (aliases | spoken).items()}
        spelled = sorted(({"[/.\\-]?".join(map(re.escape, a)) for a in aliases}), key=len, reverse=True)
        val = r"(?<![\w+])(?:" + "|".join(spelled) + r")(?![\w+])"
        # after the column's word, also numbers in words that are not counts ("clusters zero and two", not
        # "clusters 2 and 5, eight genes each")
        said = val if not spoken else rf"(?:{val}|\b(?:{'|'.join(spoken)})\b(?!\s+(?!and\b|or\b)[a-z]))"
        noun = "(?:" + "|".join(map(re.escape, nouns)) + ")(?:e?s)?"
        spans = [
            (m.start(1), m.group(1))
            for m in re.finditer(
                rf"\b{noun}\s+({said}(?:\s*(?:,|and|or|&|with|vs\.?|versus)\s*(?:{noun}\s+)?{said})*)", text, re.I
            )
        ]
        spans += [(m.start(1), m.group(1)) for m in re.finditer(rf"({val})[- ]{noun}\b", text, re.I)]
        for m in re.finditer(rf"\b({'|'.join(ORDINALS)})\s+(?:[\w-]+\s+)?{noun}\b", text, re.I):
            vs = numbered.get(str(ORDINALS.index(m.group(1).lower()) + 1), [])  # "the sixth villus zone": V6
            if len(vs) == 1:
                _claim(found, taken, Mention("value", vs[0], m.start(), m.end(), col, qualified=True))
        for offset, group in spans:
            for v in re.finditer(said, group, re.I):
                s = offset + v.start()
                label = by_text[re.sub(r"[/.\-]", "", v.group()).lower()]
                _claim(found, taken, Mention("value", label, s, s + len(v.group()), col, qualified=True))


def _abbreviations(text: str, view: DatasetView, found, taken) -> None:
    """Capitalised abbreviations as labels ("SNG", "DBL") named by the word they shorten ("singlets",
    "doublets") in a column of such codes only: the code's letters in order within the word's first letters, where
    one code fits."""
    for col, values in view.columns.items():
        abbrevs = [v for v in values if re.fullmatch(r"[A-Z]{3,4}", v)]
        if len(abbrevs) != len(values):
            continue
        for m in re.finditer(r"[A-Za-z]{6,}", text):
            word = m.group().lower()
            fits = [a for a in abbrevs if len(word) >= 2 * len(a) and _in_order(a.lower(), word[: len(a) + 3])]
            if len(fits) == 1:
                _claim(found, taken, Mention("value", fits[0], m.start(), m.end(), column=col))


def _in_order(letters: str, word: str) -> bool:
    it = iter(word)
    return word[0] == letters[0] and all(ch in it for ch in letters)


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
        singular_name = " ".join(singular(w) for w in name.split())  # "bulk label" names bulk_labels
        keys = [name, singular_name] + [w for w in name.split() if w not in NAME_GENERIC and len(w) >= 3]
        for key in keys:
            for m in re.finditer(r"\b" + re.escape(key) + r"(?:e?s)?\b(?!\s+mode\b)", lower):  # "cluster mode"
                _claim(found, taken, Mention("column", col, m.start(), m.end(), column=col))
    for role in (CELL_TYPE, "cluster", "sample", CONDITION):
        col = view.column_for(role)
        if col:
            for m in ROLE_WORDS[role].finditer(text):
                if role == "sample" and any(v.kind == "value" and not text[v.end : m.start()].strip() for v in found):
                    continue  # "the stimulated sample": the cells of a condition, not the sample column
                if re.match(r"\s+mode\b", text[m.end() :]):
                    continue  # "in cluster mode": a way of working, no column
                if role != CONDITION or m.group().lower().startswith(CONDITION):
                    _claim(found, taken, Mention("column", col, m.start(), m.end(), column=col))
    if col := view.column_for(CONDITION):
        for m in ARMS.finditer(text):  # "split by treatment arm": the condition column
            _claim(found, taken, Mention("column", col, m.start(), m.end(), column=col))


def _genes(text: str, view: DatasetView, found, taken) -> None:
    for m in GENE_TOKEN.finditer(text):
        tok = m.group(1)
        up = tok.upper()
        symbol = (
            tok.isupper()
            or any(c.isdigit() for c in tok)
            or (not view.species.is_human and tok == view.genes.get(up) and len(tok) >= 3 and m.start(1) > 0)
        )  # a capitalised mouse symbol ("Apob") counts where written exactly, not as a sentence's first word
        if up in NOT_GENES or len(tok) < 2 or not symbol:
            continue
        if up in view.genes:
            _claim(found, taken, Mention("gene", view.genes[up], m.start(1), m.end(1)))
        elif tok.isupper() and (len(tok) >= 4 or any(c.isdigit() for c in tok)) and human_gene(up):
            _claim(found, taken, Mention("gene", up, m.start(1), m.end(1)))  # "EGFR": known, not measured


def _spoken(word: str) -> float | None:
    try:
        return float(text2num(re.sub(r"^an?\s+", "", word.lower()), "en"))
    except ValueError:
        return None


#: A list of words ("sftpb, napsa, nkx2-1 and sftpc"): symbols in any case when every item is one.
LISTED = re.compile(r"[A-Za-z][\w-]*(?:\s*(?:,\s*(?:and\s+|or\s+)?|\band\b|\bor\b|&)\s*[A-Za-z][\w-]*)+")


def _listed_genes(text: str, view: DatasetView, found, taken) -> None:
    """Gene symbols written in lower case, as a list of three or more that are all symbols (or two with digits)."""
    for m in LISTED.finditer(text):
        items = [x for x in re.finditer(r"[A-Za-z][\w-]*", m.group()) if x.group().lower() not in ("and", "or")]
        known = [
            x
            for x in items
            if x.group().upper() not in NOT_GENES and (x.group().upper() in view.genes or human_gene(x.group().upper()))
        ]
        digits = all(any(c.isdigit() for c in x.group()) for x in items)
        if len(known) == len(items) and (len(items) >= 3 or (len(items) == 2 and digits)):
            for x in items:
                up = x.group().upper()
                start = m.start() + x.start()
                _claim(found, taken, Mention("gene", view.genes.get(up, up), start, start + len(x.group())))


def human_gene(symbol: str) -> bool:
    """Whether the bundled knowledge knows ``symbol`` as a human gene."""
    from ..knowledge.sources import human_symbols

    try:
        return symbol in human_symbols()
    except Exception:  # noqa: BLE001 - no knowledge files: only the dataset's genes are known
        return False


def _numbers(text: str, found, taken) -> None:
    """Numbers in digits ("25", "5,000") and in words ("twenty-five", "a hundred"; not a lone "one"), fold changes
    ("threefold", "3x") and fractions ("half", "a quarter", "two thirds")."""
    for m in FOLD.finditer(text):
        value = float(m.group(1)) if m.group(1)[0].isdigit() else _spoken(m.group(1))
        if value is not None:
            _claim(found, taken, Mention("number", m.group(), m.start(), m.end(), value=value))
    for m in FRACTION.finditer(text):
        count = m.group(1)
        if count is None and not m.group(2).lower().startswith("hal"):
            continue  # "the third cluster": an ordinal, no fraction
        top = 1.0 if count is None or count.lower() in ("a", "an", "one") else _spoken(count)
        if top is not None:
            value = round(top / PARTS[m.group(2).lower()[:3]], 4)
            _claim(found, taken, Mention("number", m.group(), m.start(), m.end(), value=value))
    for m in NUMBER.finditer(text):
        value = float(m.group(1).replace(",", ""))
        _claim(found, taken, Mention("number", m.group(1), m.start(1), m.end(1), value=value))
    for m in NUMBER_WORDS.finditer(text):
        if re.sub(r"^an?\s+", "", m.group().lower()) in ("one", "zero"):
            continue
        value = _spoken(m.group())
        if value is not None:
            _claim(found, taken, Mention("number", m.group(), m.start(), m.end(), value=value))


#: Nouns after which a cell-type word names a process or a gene set ("inflammatory response"), not cells.
PROCESS_NOUN = re.compile(
    r"\s+(?:responses?|signall?ing|pathways?|programs?|programmes?|scores?|activity|genes?|process(?:es)?|"
    r"transitions?|signatures?|differentiation)\b",
    re.I,
)


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
            word = n == 1 and e - s <= 4 and not phrase.isupper()  # "Cap it at ...", "the tip": English, no cells
            if (
                any(taken[s:e])
                or not content
                or (not cell_word and (PROCESS_NOUN.match(text[e:]) or e - s <= 2 or word))
            ):
                continue  # "inflammatory response", "apoptosis genes": a process, not a cell type; "R2": too short
            marker = re.fullmatch(r"CD\d+[+-]?(?:\s+\S+)?", phrase) is not None
            code = re.fullmatch(r"[A-Z]{1,4}-?\d{2,}[A-Za-z0-9]*", phrase) is not None and re.match(
                r"\s+(?:cells?|lines?|cell lines?)\b", text[e:], re.I
            )  # "H460 cells": a cell line or sample code the dataset does not have
            if marker or code or names_cell_type(phrase) or (cell_word and lookup(phrase, strict=True) is not None):
                _claim(found, taken, Mention("missing", phrase, s, e))


def find_mentions(text: str, view: DatasetView | None) -> list[Mention]:
    """Columns, label values, genes, numbers and unknown cell types named in ``text``, without overlaps, in text
    order. A phrase naming several labels ("T cells") gives one value mention per label, all at its span."""
    if view is None:
        return []
    found: list[Mention] = []
    taken = [False] * len(text)
    _qualified_values(text, view, found, taken)
    _labels(text, view, found, taken)
    _abbreviations(text, view, found, taken)
    _columns(text, view, found, taken)
    _genes(text, view, found, taken)
    _listed_genes(text, view, found, taken)
    _numbers(text, found, taken)
    _missing(text, found, taken)
    return sorted(found, key=lambda f: f.start)
