"""Plots of cell-cell communication scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..conventions.slots import CONDITION


def ligand_receptor(table: pd.DataFrame, top: int = 20) -> Figure:
    """Dot plot of the top pairs of a :func:`c2s_agent.knowledge.lr.score_ligand_receptor` table: colour =
    score, size = -log10 p-value, one column per condition."""
    cond = table[CONDITION] if CONDITION in table else pd.Series("all", index=table.index)
    t = table.assign(**{CONDITION: cond})
    pairs = (
        t[t.significant].sort_values("score", ascending=False).pair.drop_duplicates().head(top).tolist()
        or t.sort_values("score", ascending=False).pair.drop_duplicates().head(top).tolist()
    )
    sub = t[t.pair.isin(pairs)]
    conds = sorted(sub[CONDITION].unique())
    n_perm_floor = 1e-3
    fig = Figure(figsize=(2 + 1.2 * len(conds), 0.3 * len(pairs) + 1.5))
    ax = fig.subplots()
    ypos = {p: i for i, p in enumerate(reversed(pairs))}
    xs = [conds.index(c) for c in sub[CONDITION]]
    ys = [ypos[p] for p in sub.pair]
    size = 20 + 60 * -np.log10(np.maximum(sub.pvalue.to_numpy(), n_perm_floor))
    sc = ax.scatter(xs, ys, s=size, c=sub.score, cmap="viridis", edgecolors="k", linewidths=0.3)
    ax.set_xticks(range(len(conds)), conds)
    ax.set_yticks(range(len(pairs)), list(reversed(pairs)), fontsize=8)
    ax.set_xlim(-0.7, len(conds) - 0.3)
    fig.colorbar(sc, ax=ax, label="score (mean log1p CP10k)")
    ax.set_title("Ligand -> receptor (size: -log10 p)")
    return fig
