"""Cell-type names and the Cell Ontology: a phrase or a dataset's label -> a CL term, and is-a between terms.

The bundled Cell Ontology (``knowledge/ontology``) gives names, synonyms and ancestors. Dataset labels are
often shorthand ("CD14 Mono", "CD4+/CD25 T Reg", "Eryth"): a short table of immune shorthand maps their
words to CL terms, and every other label is looked up by its name and synonyms.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

#: Words that say "a kind of cell" and nothing more.
GENERIC = frozenset(
    {
        "cell",
        "cells",
        "type",
        "types",
        "population",
        "populations",
        "lineage",
        "subset",
        "subsets",
        "subtype",
        "subtypes",
        "like",
        "positive",
    }
)

#: Shorthand in labels and questions -> CL id. Checked in order; each rule is a set of words that must all occur.
SHORTHAND: tuple[tuple[frozenset[str], str], ...] = tuple(
    (frozenset(w.split()), cl)
    for w, cl in (
        ("treg", "CL:0000815"),
        ("t reg", "CL:0000815"),
        ("regulatory t", "CL:0000815"),
        ("cd25 t", "CL:0000815"),
        ("pdc", "CL:0000784"),
        ("plasmacytoid", "CL:0000784"),
        ("cd14 mono", "CL:0002057"),  # CD14-positive, CD16-negative classical monocyte
        ("cd14 monocyte", "CL:0002057"),
        ("classical monocyte", "CL:0000860"),
        ("cd16 mono", "CL:0002396"),
        ("cd16 monocyte", "CL:0002396"),
        ("fcgr3a monocyte", "CL:0002396"),
        ("fcgr3a mono", "CL:0002396"),
        ("nonclassical monocyte", "CL:0000875"),
        ("mono", "CL:0000576"),
        ("monocyte", "CL:0000576"),
        ("cd4", "CL:0000624"),
        ("cd8", "CL:0000625"),
        ("cytotoxic t", "CL:0000910"),
        ("cd3", "CL:0000084"),
        ("t", "CL:0000084"),
        ("nk", "CL:0000623"),
        ("cd56", "CL:0000623"),
        ("natural killer", "CL:0000623"),
        ("plasma", "CL:0000786"),
        ("plasmablast", "CL:0000980"),
        ("cd19", "CL:0000236"),
        ("cd20", "CL:0000236"),
        ("b", "CL:0000236"),
        ("dc", "CL:0000451"),
        ("dendritic", "CL:0000451"),
        ("mdc", "CL:0000451"),
        ("cdc", "CL:0000451"),
        ("mk", "CL:0000556"),
        ("megakaryocyte", "CL:0000556"),
        ("platelet", "CL:0000233"),
        ("eryth", "CL:0000232"),
        ("erythrocyte", "CL:0000232"),
        ("erythroid", "CL:0000764"),
        ("rbc", "CL:0000232"),
        ("cd34", "CL:0000837"),
        ("hsc", "CL:0000037"),
        ("hspc", "CL:0000837"),
        ("progenitor", "CL:0011026"),
        ("macrophage", "CL:0000235"),
        ("neutrophil", "CL:0000775"),
        ("mast", "CL:0000097"),
        ("granulocyte", "CL:0000094"),
        ("lymphocyte", "CL:0000542"),
        ("myeloid", "CL:0000763"),
        ("leukocyte", "CL:0000738"),
    )
)


@dataclass(frozen=True)
class Term:
    """A Cell Ontology term: id, name, synonyms, every ancestor id and its definition."""

    id: str
    name: str
    synonyms: tuple[str, ...]
    ancestors: frozenset[str]
    definition: str = ""


def singular(word: str) -> str:
    """A plural English word in the singular ("monocytes" -> "monocyte", "Tregs" -> "treg")."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def words(text: str) -> list[str]:
    """Lower-case singular words of a label or phrase ("DCs" -> ``dc``); ``CD14+`` and ``CD14-positive`` give ``cd14``,
    ``CD25-`` (negative) gives ``cd25neg``."""
    text = re.sub(r"\b([A-Z][A-Z0-9]*)s\b", r"\1", str(text))  # "DCs", "CD8s": capitals with a plural s
    text = re.sub(r"(?<=\w)(?:\+|-positive\b|-pos\b)", " ", text.lower())
    text = re.sub(r"\bnon[- ](?=[a-z])", "non", text)  # "non-classical" is one word, not "classical"
    text = re.sub(r"(?<=\w)(?:-negative\b|-neg\b|-(?=[\s/,;)]|$))", "neg ", text)
    return [singular(w) for w in re.sub(r"[-_/.,;:()+]", " ", text).split()]


def key(text: str) -> str:
    """A phrase as a lookup key: its words without the generic ones ("B cells" -> "b")."""
    return " ".join(w for w in words(text) if w not in GENERIC)


@functools.cache
def terms() -> dict[str, Term]:
    """Every live term of the bundled Cell Ontology, by CL id."""
    from ..resources import bundled

    path = next(iter(sorted((bundled("knowledge") / "ontology").glob("cl_ontology_*.json"))))
    raw = json.loads(path.read_text())
    return {
        cl: Term(
            cl,
            t["label"],
            tuple(t.get("synonyms") or ()),
            frozenset(t.get("ancestors") or ()),
            t.get("description") or "",
        )
        for cl, t in raw.items()
        if cl.startswith("CL:") and not t.get("deprecated") and t.get("label")
    }


@functools.cache
def _names() -> dict[str, str]:
    """Lookup key of every name and synonym -> CL id (names win over synonyms)."""
    out: dict[str, str] = {}
    for term in terms().values():
        for syn in term.synonyms:
            out.setdefault(key(syn), term.id)
    for term in terms().values():
        out[key(term.name)] = term.id
    out.pop("", None)
    return out


@functools.cache
def _full_names() -> frozenset[str]:
    """Every name and synonym as its words, generic ones included ("receptor cell" stays two words)."""
    return frozenset(" ".join(words(n)) for t in terms().values() for n in (t.name, *t.synonyms))


#: A phrase that says "cell(s)" (or "-cyte"): its other words may be shorthand for a term's name.
CELL_NOUN = re.compile(r"\bcells?\b|cytes?\b|blasts?\b", re.I)


#: Words that qualify a cell type without changing which term it falls under.
MODIFIERS = frozenset(
    "activated resting naive memory effector mature immature classical cytotoxic helper "
    "circulating tissue resident proliferating cycling".split()
)
_SHORT_WORDS = frozenset(w for need, _ in SHORTHAND for w in need)


def lookup(text: str, strict: bool = False) -> Term | None:
    """The CL term a phrase or label names: by name or synonym, else by the shorthand of its words. With
    ``strict`` (a user's phrase rather than a dataset label) every word must be shorthand, a modifier or
    generic, so that "monocytes signal to" names nothing."""
    k = key(text)
    if not k:
        return None
    cl = _names().get(k)
    if strict and cl and not CELL_NOUN.search(text) and " ".join(words(text)) not in _full_names():
        cl = None  # "receptor" is not "receptor cell"; shorthand ("Tregs") is still read below
    if cl is None:
        ws = set(k.split())
        if strict and not ws <= _SHORT_WORDS | MODIFIERS:
            return None
        cl = next((cl for need, cl in SHORTHAND if need <= ws), None)
    return terms().get(cl) if cl else None


def is_class_name(label: str) -> bool:
    """Whether a label is the plain name of a class of cells ("B", "NK cells", "Monocytes") rather than one kind
    within it ("CD4 Naive T", "B Activated")."""
    k = key(label)
    return bool(k) and k in _names()


#: Classes by developmental potential, not identity (a monocyte "is a" progenitor of macrophages): a phrase naming
#: them names only cells that are nothing more specific than these.
POTENCY = frozenset({"CL:0011026", "CL:0000034", "CL:0011115", "CL:0000048"})


def is_a(term: Term, ancestor: Term) -> bool:
    """Whether ``term`` is ``ancestor`` or one of its descendants (by identity, not developmental potential)."""
    return term.id == ancestor.id or (ancestor.id in term.ancestors and ancestor.id not in POTENCY)


def names_cell_type(text: str) -> bool:
    """Whether a phrase is the name or synonym of a Cell Ontology term ("neutrophils", "plasma cells")."""
    return key(text) in _names()
