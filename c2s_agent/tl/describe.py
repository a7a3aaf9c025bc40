"""What a dataset holds: size, normalisation, its columns and their roles, the organism."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..conventions import Columns, Species, categorical_columns, detect_species, find_columns
from ..conventions.slots import INPUT
from ..errors import InputError


@dataclass
class Description:
    """A dataset at a glance; ``breakdown`` counts the cells per value of ``breakdown_column``; ``examples``
    lists the first values of each obs column."""

    n_cells: int
    n_genes: int
    normalisation: list[str]
    columns: dict[str, int | str]  # obs column -> number of values, or "numeric"
    roles: Columns
    species: Species
    obsm: list[str]
    breakdown_column: str | None = None
    breakdown: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per obs column: its role, number of values (or "numeric") and first values."""
        rows = [
            {"column": c, "role": self.roles.role_of(c) or "", "values": v, "examples": self.examples[c]}
            for c, v in self.columns.items()
        ]
        return pd.DataFrame(rows).set_index("column")


def describe(adata, column: str | None = None) -> Description:
    """Describe ``adata``; cells are broken down by ``column`` (default: the cell-type, else cluster column).
    Writes nothing."""
    roles = find_columns(adata.obs)
    column = column or roles.groups()
    if column is not None and column not in adata.obs.columns:
        raise InputError(
            f"column {column!r}", "is not an obs column of this dataset", f"use one of {list(adata.obs.columns)}"
        )
    cats = categorical_columns(adata.obs)
    cols = {str(c): (len(cats[c]) if c in cats else "numeric") for c in adata.obs.columns}
    counts = adata.obs[column].astype(str).value_counts() if column else None
    return Description(
        adata.n_obs,
        adata.n_vars,
        list(adata.uns.get(INPUT, {}).get("steps", [])),
        cols,
        roles,
        detect_species(adata.var_names, adata.var.get("gene_ids")),
        list(adata.obsm.keys()),
        column,
        {str(k): int(v) for k, v in counts.items()} if counts is not None else {},
        {str(c): ", ".join(map(str, adata.obs[c].unique()[:5])) for c in adata.obs.columns},
    )
