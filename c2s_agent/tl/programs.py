"""Gene-program scores per cell, compared across groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..conventions.slots import PROGRAM_SCORES
from ..screen import get_program, score_cells


@dataclass
class ProgramScores:
    """Scores of one program: the obs key written, genes used and missing, and the mean score per group."""

    name: str
    source: str
    method: str
    key: str
    scores: np.ndarray
    genes: list[str]
    missing: list[str]
    groupby: str | None = None
    by_group: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The mean score per group, one row per group."""
        return pd.Series(self.by_group, name=f"mean {self.name} score").to_frame()


def score_program(
    adata, program, groupby: str | None = None, method: str = "expression", top_k: int = 100, settings=None
) -> ProgramScores:
    """Score every cell on ``program`` (a registered name, a bundled gene set or a gene list) into
    ``obs["c2s_program_<name>"]`` and average it per group of ``obs[groupby]``; records the key in
    ``uns["c2s_program_scores"]``."""
    prog = get_program(program, settings)
    scores, genes = score_cells(adata, prog, method=method, k=top_k, settings=settings)
    key = f"c2s_program_{prog.name.lower()}"
    adata.obs[key] = scores
    adata.uns[PROGRAM_SCORES] = {**adata.uns.get(PROGRAM_SCORES, {}), prog.name: key}
    by = {}
    if groupby:
        groups = adata.obs[groupby].astype(str).to_numpy()
        by = {str(g): float(v) for g, v in pd.Series(scores).groupby(groups).mean().items()}
    return ProgramScores(
        prog.name,
        prog.source,
        method,
        key,
        np.asarray(scores),
        list(genes),
        [g for g in prog.genes if g not in genes],
        groupby,
        by,
    )
