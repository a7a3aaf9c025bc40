"""What a dataset offers a question: its label columns with their values and roles, gene symbols, slots and
organism (facts read once from the AnnData, through :mod:`c2s_agent.conventions`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import pandas as pd

from ..conventions import Columns, Species, categorical_columns, detect_species, find_columns
from ..conventions.slots import CELL_TYPE, CONDITION
from .plan import Note

#: Words naming a column role, and the role they name.
ROLE_WORDS = {
    CELL_TYPE: re.compile(
        r"\bcell[ -]?types?\b|\bpopulations?\b|\bcell identit\w*|\bkinds? of cells?\b|\bpredicted (?:types?|labels?)\b",
        re.I,
    ),
    "cluster": re.compile(r"\bclusters?\b", re.I),
    CONDITION: re.compile(
        r"\bconditions?\b|\btreatments?\b|\bstimulat\w*\b|\bcontrol\b|"
        r"\brespon\w*\b|\bperturb\w*\b",
        re.I,
    ),
    "sample": re.compile(r"\bsamples?\b|\bdonors?\b|\bbatch(?:es)?\b|\bplates?\b|\bpatients?\b|\breplicates?\b", re.I),
}


@dataclass
class DatasetView:
    """Label columns (column -> values), numeric columns, genes (upper-case symbol -> var name), slots present,
    column roles and organism; ``notes`` say what was resolved on the way (e.g. gene-name collisions)."""

    columns: dict[str, list[str]]
    numeric_columns: list[str]
    genes: dict[str, str]
    slots: set[str] = field(default_factory=set)
    roles: Columns = field(default_factory=Columns)
    species: Species = field(default_factory=lambda: Species(None, "no genes"))
    notes: list[Note] = field(default_factory=list)

    @classmethod
    def from_adata(cls, adata) -> DatasetView:
        cols = {c: v for c, v in categorical_columns(adata.obs).items() if len(v) >= 1}
        numeric = [str(c) for c in adata.obs.columns if str(c) not in cols and adata.obs[c].dtype.kind in "if"]
        genes, notes = _genes(adata.var_names)
        slots = {f"obs:{c}" for c in adata.obs.columns} | {f"var:{c}" for c in adata.var.columns}
        for kind in ("obsm", "uns", "layers", "varm"):
            slots |= {f"{kind}:{k}" for k in getattr(adata, kind).keys()}
        species = detect_species(adata.var_names, adata.var.get("gene_ids"))
        if species.note:
            notes.append(
                Note(kind="assumption", text=f"the data are {species.name} ({species.evidence}); {species.note}")
            )
        return cls(cols, numeric, genes, slots, find_columns(adata.obs), species, notes)

    def column_for(self, role: str) -> str | None:
        """The column holding a role (CELL_TYPE falls back to the clusters when the data has no cell types)."""
        if role == CELL_TYPE:
            return self.roles.predicted or self.roles.cell_type or self.roles.cluster
        return getattr(self.roles, role, None)

    def roles_named(self, text: str) -> list[str]:
        """The roles whose words ``text`` uses ("each cluster" -> cluster)."""
        return [role for role, pattern in ROLE_WORDS.items() if pattern.search(text)]

    def label_columns(self) -> list[str]:
        """Label-like columns, cell types first (as :class:`~c2s_agent.conventions.Columns` ranks them)."""
        ranked = [c for c in (self.roles.predicted, *self.roles.labels) if c in self.columns]
        return list(dict.fromkeys(ranked + [c for c, v in self.columns.items() if 1 < len(v) <= 100]))

    def predicted(self, column: str, values: list[str]) -> DatasetView:
        """The view once a step has written ``values`` into ``obs[column]`` (e.g. the cell types a model
        predicts): that column stands in for the dataset's own cell-type column, so "monocytes" names its values."""
        own = self.roles.cell_type
        cols = {column: list(values), **{c: v for c, v in self.columns.items() if c not in (column, own)}}
        return replace(
            self, columns=cols, slots=self.slots | {f"obs:{column}"}, roles=replace(self.roles, predicted=column)
        )


def _genes(var_names) -> tuple[dict[str, str], list[Note]]:
    """Upper-case symbol -> var name; of names that collide after upper-casing the first is kept, with a note."""
    names = pd.Index(var_names).astype(str)
    upper = names.str.upper()
    dup = upper.duplicated(keep="first")
    notes = []
    if dup.any():
        clash = sorted(set(upper[dup]))
        examples = [f"{'/'.join(names[upper == u])}" for u in clash[:3]]
        notes.append(
            Note(
                kind="assumption",
                text=f"{len(clash)} gene names collide after upper-casing (e.g. "
                f"{', '.join(examples)}); questions naming them mean the first",
            )
        )
    return {u: n for u, n, d in zip(upper, names, dup) if not d}, notes
