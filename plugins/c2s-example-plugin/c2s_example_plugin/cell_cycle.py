"""Cell-cycle phases of cells (scanpy's ``score_genes_cell_cycle`` with the packaged G1/S and G2/M gene lists),
and their plot; usable without the agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from c2s_agent.errors import InputError

GMT = Path(__file__).parent / "data" / "pegasus_cell_cycle_human.gmt"
#: ``obs`` columns written by :func:`score_cell_cycle`.
S_SCORE, G2M_SCORE, PHASE = "c2s_S_score", "c2s_G2M_score", "c2s_phase"


def gene_lists() -> dict[str, list[str]]:
    """The packaged G1/S and G2/M gene lists."""
    out = {}
    for line in GMT.read_text().splitlines():
        name, _desc, *genes = line.split("\t")
        out[name] = [g for g in genes if g]
    return out


@dataclass
class CellCycle:
    """Cells per phase (most first), the S and G2/M genes used and, with a ``groupby``, the fraction of each
    group's cells per phase (groups x phases)."""

    counts: dict[str, int]
    s_genes: list[str]
    g2m_genes: list[str]
    by_group: pd.DataFrame | None = None


def score_cell_cycle(adata, groupby: str | None = None) -> CellCycle:
    """Score every cell of ``adata`` (log-normalised ``X``, gene symbols as ``var_names``) on the S and G2/M lists
    and call its phase (G1, S or G2M), tabulated by ``obs[groupby]``. Writes ``obs["c2s_S_score"]``,
    ``obs["c2s_G2M_score"]`` and ``obs["c2s_phase"]``."""
    import scanpy as sc

    lists = gene_lists()
    upper = {g.upper(): g for g in adata.var_names}
    s_genes = [upper[g.upper()] for g in lists["G1/S"] if g.upper() in upper]
    g2m_genes = [upper[g.upper()] for g in lists["G2/M"] if g.upper() in upper]
    if len(s_genes) < 10 or len(g2m_genes) < 10:
        raise InputError(
            "dataset genes",
            f"cover only {len(s_genes)} S and {len(g2m_genes)} G2/M cell-cycle genes",
            "use human gene symbols in var_names (at least 10 of each list)",
        )
    if groupby and groupby not in adata.obs.columns:
        raise InputError(f"groupby={groupby!r}", "is not an obs column", f"use one of {list(adata.obs.columns)}")
    work = sc.AnnData(adata.X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.tl.score_genes_cell_cycle(work, s_genes=s_genes, g2m_genes=g2m_genes, random_state=0)
    adata.obs[S_SCORE] = work.obs["S_score"].to_numpy()
    adata.obs[G2M_SCORE] = work.obs["G2M_score"].to_numpy()
    adata.obs[PHASE] = pd.Categorical(work.obs["phase"].astype(str).to_numpy())
    counts = {str(k): int(v) for k, v in adata.obs[PHASE].value_counts().items()}
    by_group = pd.crosstab(adata.obs[groupby].astype(str), adata.obs[PHASE], normalize="index") if groupby else None
    return CellCycle(counts, s_genes, g2m_genes, by_group)


def plot_scores(adata) -> Figure:
    """Cells by S and G2/M score, coloured by phase (the ``obs`` columns :func:`score_cell_cycle` writes)."""
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    for phase, colour in (("G1", "#8c8c8c"), ("S", "#4c72b0"), ("G2M", "#c44e52")):
        m = (adata.obs[PHASE] == phase).to_numpy()
        ax.scatter(adata.obs[S_SCORE][m], adata.obs[G2M_SCORE][m], s=4, c=colour, label=f"{phase} ({m.sum()})")
    ax.set_xlabel("S score")
    ax.set_ylabel("G2/M score")
    ax.legend(markerscale=3)
    ax.set_title("Cell-cycle scores")
    return fig
