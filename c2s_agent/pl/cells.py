"""Plots of cells and their groups. Each function returns a matplotlib Figure (scanpy's ``sc.pl`` draws where it
fits); nothing is shown or saved here, and no global matplotlib state is changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def counts(values: pd.Series | dict, title: str, xlabel: str = "cells") -> Figure:
    """Horizontal bars of counts per group (``values``: group -> count)."""
    s = pd.Series(values).sort_values()
    fig, ax = _figure(6, 0.3 * len(s) + 1.2)
    ax.barh([str(i) for i in s.index], s.to_numpy(), color="#4477aa")
    ax.set(xlabel=xlabel, title=title)
    return fig


def lengths(values: np.ndarray) -> Figure:
    """Histogram of cell sentence lengths."""
    fig, ax = _figure(5, 3)
    ax.hist(values, bins=40, color="#55a868")
    ax.set(xlabel="genes in sentence", ylabel="cells", title="Cell sentence lengths")
    return fig


def markers(adata, table: pd.DataFrame, groupby: str) -> Figure:
    """Dot plot of the marker genes of each group (``table`` from :func:`c2s_agent.tl.marker_genes`)."""
    import scanpy as sc

    genes = {g: sub["gene"].tolist() for g, sub in table.groupby("group", sort=False) if len(sub)}
    work = sc.AnnData(adata.X, obs=adata.obs[[groupby]].astype(str).astype("category"), var=adata.var[[]])
    work = work[work.obs[groupby].isin(list(genes))]
    dp = sc.pl.dotplot(work, var_names=genes, groupby=groupby, show=False, return_fig=True, standard_scale="var")
    dp.make_figure()
    import matplotlib.pyplot as plt

    plt.close(dp.fig)  # scanpy draws through pyplot: released, the figure is shown once, as the return value
    return dp.fig


def reverse_fit(fit, held, top_k: int, scores: dict) -> Figure:
    """Held-out expression against log rank, with the fitted reverse transform."""
    idx, vals = held.idx[:, :top_k], held.values[:, :top_k]
    keep = idx >= 0
    ranks = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)[keep]
    fig, ax = _figure(5, 3.5)
    ax.hexbin(np.log10(1 + ranks), vals[keep], gridsize=40, bins="log", cmap="Greys")
    ax.plot(fit.log_rank, fit.expression, color="#c44e52", lw=2, label="fitted")
    ax.set_xlim(0, np.log10(1 + top_k))
    ax.set(
        xlabel="log10(1 + rank)",
        ylabel="log1p(CP10k)",
        title=f"Held-out cells: R²={scores['r2']:.2f}, Spearman={scores['spearman']:.2f}",
    )
    ax.legend()
    return fig


def embedding(adata, basis: str, color: str | None, title: str) -> Figure:
    """Cells on a 2-D embedding ``obsm[basis]`` coloured by ``obs[color]`` (scanpy's ``sc.pl.embedding``)."""
    import scanpy as sc

    work = sc.AnnData(
        obs=adata.obs[[color]].astype(str).astype("category") if color else adata.obs[[]],
        obsm={basis: np.asarray(adata.obsm[basis])[:, :2]},
    )
    fig = sc.pl.embedding(work, basis=basis, color=color, show=False, return_fig=True, title=title, frameon=False)
    return fig if isinstance(fig, Figure) else fig.figure


def perturbation(delta: pd.Series, name: str, n_cells: int, top: int = 15) -> Figure:
    """The genes predicted to change most (``delta``: gene -> perturbed minus control)."""
    s = delta.sort_values()
    down, up = s.head(top), s.tail(top)
    both = pd.concat([down, up]).drop_duplicates()
    fig, ax = _figure(6, 6)
    ax.barh(both.index.astype(str), both.to_numpy(), color=np.where(both.to_numpy() < 0, "#bb5566", "#4477aa"))
    ax.set(xlabel="predicted change (reconstructed log1p CP10k)", title=f"Predicted {name} response ({n_cells} cells)")
    return fig


def program(scores: np.ndarray, groups: pd.Series | None, name: str, method: str, n_genes: int) -> Figure:
    """Program scores per cell: a violin per group, or a histogram without groups."""
    fig, ax = _figure(6, 3.6)
    if groups is not None:
        names = sorted(groups.astype(str).unique())
        ax.violinplot([scores[(groups.astype(str) == g).to_numpy()] for g in names], showmedians=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, fontsize=7)
    else:
        ax.hist(scores, bins=40, color="#4477aa")
    ax.set(ylabel=f"{name} score ({method})", title=f"{name}: {n_genes} genes")
    return fig


def answer_counts(answers: dict[str, dict[str, int]], title: str) -> Figure:
    """Bars of the number of groups per answer, one colour per entry of ``answers`` (e.g. without and with
    knowledge: answer -> groups, as in :class:`c2s_agent.tl.MulticellSummary`)."""
    table = pd.DataFrame({k: pd.Series(v) for k, v in answers.items()}).fillna(0)
    table = table.sort_values(table.columns[0])
    fig, ax = _figure(6, 0.35 * len(table) + 1.5)
    y = np.arange(len(table))
    height = 0.8 / len(table.columns)
    for j, (col, colour) in enumerate(zip(table.columns, ("#4477aa", "#ee6677", "#228833"))):
        ax.barh(y + j * height, table[col].to_numpy(), height=height, color=colour, label=col)
    ax.set_yticks(y + height * (len(table.columns) - 1) / 2, table.index.astype(str))
    ax.set(xlabel="groups", title=title)
    ax.legend(fontsize=7)
    return fig


def groups_2d(adata, column: str, title: str) -> tuple[Figure, str]:
    """Cells on the data's UMAP (or a PCA of it when it has none) coloured by ``obs[column]``; returns the figure
    and the name of the axes used."""
    key = next((k for k in adata.obsm if "umap" in k.lower()), None)
    if key is not None:
        xy, what = np.asarray(adata.obsm[key])[:, :2], f"UMAP (obsm['{key}'])"
    else:
        from sklearn.decomposition import TruncatedSVD

        xy, what = TruncatedSVD(2, random_state=0).fit_transform(adata.X), "PCA (the data has no UMAP)"
    labels = adata.obs[column].astype(str)
    fig, ax = _figure(6.5, 5)
    for lab in sorted(labels.unique()):
        m = (labels == lab).to_numpy()
        ax.scatter(*xy[m].T, s=5, label=f"{lab} ({m.sum()})")
    ax.legend(fontsize=7, markerscale=2, bbox_to_anchor=(1, 1), loc="upper left")
    ax.set(xticks=[], yticks=[], title=title, xlabel=what)
    return fig, what


def hypotheses(hyps: list[dict]) -> Figure:
    """Hypotheses ranked by confidence, each bar split into its parts."""
    parts = ["statistics", "change", "knowledge"]
    fig, ax = _figure(7, 0.45 * len(hyps) + 1.2)
    left = np.zeros(len(hyps))
    for part in parts:
        vals = np.array([h["confidence_parts"].get(part, 0) / 3 for h in hyps])
        ax.barh(range(len(hyps)), vals, left=left, label=part)
        left += vals
    ax.set_yticks(range(len(hyps)), [f"{h['id']}: {h['statement'][:60]}" for h in hyps], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="confidence (mean of the three parts)", title="Hypotheses by confidence")
    ax.legend(fontsize=7, loc="lower right")
    return fig
