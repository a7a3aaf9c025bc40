"""Cell-cell communication between groups of cells: CellPhoneDB ligand-receptor scores."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..conventions import find_columns
from ..conventions.slots import CONDITION
from ..errors import InputError
from ..knowledge.lr import score_ligand_receptor


@dataclass
class Communication:
    """The scored pairs (one row per pair and condition), the column grouped by, the groups used, and the
    requested groups that no cell holds (left out)."""

    table: pd.DataFrame
    groupby: str
    source: list[str]
    target: list[str]
    absent: list[str] = field(default_factory=list)

    def n_significant(self) -> dict[str, int]:
        """The number of significant pairs (p < 0.05, score > 0) per condition."""
        return {str(c): int(n) for c, n in self.table[self.table.significant].groupby(CONDITION).size().items()}

    def top(self, n: int) -> pd.DataFrame:
        """The ``n`` best significant pairs of each condition."""
        return self.table[self.table.significant].sort_values([CONDITION, "rank"]).groupby(CONDITION).head(n)


def ligand_receptor(
    adata,
    source: list[str],
    target: list[str],
    groupby: str | None = None,
    condition: str | None = None,
    condition_value: str | None = None,
    n_perms: int = 1000,
    min_fraction: float = 0.1,
) -> Communication:
    """Score ligands of the ``source`` groups against receptors of the ``target`` groups of ``obs[groupby]``
    (default: the predicted cell types when the cells were annotated, else the dataset's cell-type column), per
    value of ``obs[condition]`` (or only ``condition_value``). Requested groups no cell holds are left out (they
    may be labels a model was expected to predict). Writes ``uns["c2s_lr"]``."""
    if groupby is None:
        roles = find_columns(adata.obs)
        wanted = set(source) | set(target)
        holding = [
            c
            for c in (roles.predicted, roles.cell_type, roles.cluster, *roles.labels)
            if c and wanted & set(adata.obs[c].astype(str))
        ]
        if not holding:
            raise InputError(
                "groupby",
                f"was not given and no obs column holds {sorted(wanted)} (no cell type column has them)",
                f"name one of {list(adata.obs.columns)}, or annotate the cells first",
            )
        groupby = holding[0]
    present = set(adata.obs[groupby].astype(str))
    absent = sorted({v for v in [*source, *target] if v not in present})
    source = [v for v in source if v in present] or source  # none left: the scorer names the problem
    target = [v for v in target if v in present] or target
    table = score_ligand_receptor(
        adata,
        groupby,
        source,
        target,
        condition=condition,
        condition_value=condition_value,
        n_perms=n_perms,
        min_fraction=min_fraction,
    )
    if CONDITION not in table:
        table.insert(0, CONDITION, "all")
    return Communication(table, groupby, source, target, absent)
