"""The organism of a dataset, from its gene names: Ensembl prefixes, or the case of gene symbols (human HGNC
symbols are upper case, mouse MGI symbols capitalised: ``CD52`` vs ``Cd52``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

HUMAN, MOUSE = "Homo sapiens", "Mus musculus"
ENSEMBL = ((re.compile(r"^ENSMUSG\d"), MOUSE), (re.compile(r"^ENSG\d"), HUMAN))
#: How knowledge and models built on human gene symbols read mouse symbols.
ORTHOLOGY_NOTE = (
    "mouse gene symbols are matched to human ones by upper-casing (Cd52 -> CD52), an approximation "
    "that holds for most one-to-one orthologues, not an orthology table"
)


@dataclass(frozen=True)
class Species:
    """The organism (None when the gene names do not tell) and what the guess rests on."""

    name: str | None
    evidence: str

    @property
    def is_human(self) -> bool:
        return self.name in (None, HUMAN)

    @property
    def note(self) -> str | None:
        """What a user should know when human knowledge or models meet this dataset."""
        return ORTHOLOGY_NOTE if self.name == MOUSE else None


def detect_species(var_names, gene_ids=None, sample: int = 2000) -> Species:
    """The organism of a dataset from ``var_names`` (and Ensembl ids in ``gene_ids`` when given)."""
    for names in (gene_ids, var_names):
        if names is None:
            continue
        vals = [str(v) for v in list(names)[:sample]]
        for pattern, species in ENSEMBL:
            hits = sum(bool(pattern.match(v)) for v in vals)
            if vals and hits / len(vals) > 0.5:
                return Species(species, f"{hits} of {len(vals)} gene ids are {species} Ensembl ids")
    symbols = [str(v) for v in list(var_names)[:sample] if re.match(r"^[A-Za-z][A-Za-z0-9-]*$", str(v))]
    upper = sum(s.isupper() for s in symbols if any(c.isalpha() for c in s[1:]))
    title = sum(s[0].isupper() and s[1:] == s[1:].lower() and any(c.isalpha() for c in s[1:]) for s in symbols)
    n = upper + title
    if n < 20:
        return Species(None, "too few gene symbols to tell the organism")
    if title / n > 0.6:
        return Species(MOUSE, f"{title} of {n} gene symbols are capitalised like mouse (MGI) symbols")
    if upper / n > 0.6:
        return Species(HUMAN, f"{upper} of {n} gene symbols are upper case like human (HGNC) symbols")
    return Species(None, f"gene symbols are mixed case ({upper} upper, {title} capitalised)")
