"""Marker genes a biologist accepts: a stated test, a minimum fold change and detection rate, a significance
cut-off, and no ribosomal or mitochondrial genes unless asked for."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..conventions import categorical_columns
from ..conventions.slots import MARKERS
from ..errors import InputError

RIBOSOMAL = re.compile(r"^M?RP[LS](?:\d|P\d|A$)", re.I)
MITOCHONDRIAL = re.compile(r"^MT-", re.I)


def rule(method: str, min_fold_change: float, min_fraction: float, max_padj: float, housekeeping: bool) -> str:
    """The selection rule in words, as reports state it."""
    return (
        f"{method} test of each group against the rest; genes at least {min_fold_change:g}-fold higher in "
        f"the group, detected in at least {min_fraction:.0%} of its cells, adjusted p < {max_padj:g}, ranked by "
        "the test statistic" + ("" if housekeeping else "; ribosomal and mitochondrial genes left out")
    )


def cells_within(adata, values: list[str], skip: str | None = None) -> np.ndarray:
    """Cells labelled with one of ``values`` in any label column other than ``skip``."""
    mask = np.zeros(adata.n_obs, bool)
    for col, vals in categorical_columns(adata.obs).items():
        if col != skip and set(values) & set(vals):
            mask |= adata.obs[col].astype(str).isin(values).to_numpy()
    if not mask.any():
        raise InputError(
            f"within={values}",
            "matches no cell label in any obs column",
            "name values that appear in the dataset's annotation columns",
        )
    return mask


def _ranked(adata, groupby: str, groups, method: str) -> tuple[pd.DataFrame, int]:
    import scanpy as sc

    work = sc.AnnData(adata.X, obs=adata.obs[[groupby]].astype(str).astype("category"), var=adata.var[[]])
    sizes = work.obs[groupby].value_counts()
    keep = sizes[sizes >= 3].index
    if len(keep) < 2:
        raise InputError(
            f"groupby={groupby!r}",
            "has fewer than two groups with at least 3 cells here",
            "choose a column (or a cell subset) with at least two populated groups",
        )
    work = work[work.obs[groupby].isin(keep)].copy()
    work.obs[groupby] = work.obs[groupby].cat.remove_unused_categories()
    chosen = [g for g in (groups or keep) if g in set(keep)]
    if groups and not chosen:
        raise InputError(f"groups={groups}", f"are not populated values of {groupby!r}", f"use some of {list(keep)}")
    sc.pp.filter_genes(work, min_cells=3)
    sc.tl.rank_genes_groups(
        work,
        groupby,
        groups=chosen if groups else "all",
        method=method,
        pts=True,
        n_genes=min(work.n_vars, 1000),
        tie_correct=method == "wilcoxon",
    )
    df = sc.get.rank_genes_groups_df(work, None)
    if "group" not in df.columns:
        df.insert(0, "group", chosen[0])
    return df.assign(group=df["group"].astype(str)), work.n_obs


def marker_genes(
    adata,
    groupby: str,
    groups: list[str] | None = None,
    within: list[str] | None = None,
    n_genes: int = 5,
    method: str = "wilcoxon",
    min_fold_change: float = 2.0,
    min_fraction: float = 0.25,
    max_padj: float = 0.05,
    housekeeping: bool = False,
) -> pd.DataFrame:
    """The top ``n_genes`` markers of each group of ``obs[groupby]`` (only ``groups`` when given; only cells
    labelled ``within`` in another column), from ``X`` as log1p-normalised expression.

    A marker is at least ``min_fold_change``-fold higher in its group than in the rest, detected in at least
    ``min_fraction`` of the group's cells and significant (adjusted p < ``max_padj``); ribosomal and
    mitochondrial genes are left out unless ``housekeeping``. Returns one row per (group, gene): group, gene,
    score, log2fc, p_adj, fraction_in, fraction_out. Writes ``uns["c2s_markers"]``.
    """
    if groupby not in adata.obs.columns:
        raise InputError(
            f"groupby={groupby!r}", "is not an obs column of this dataset", f"use one of {list(adata.obs.columns)}"
        )
    view = adata[cells_within(adata, within, groupby)] if within else adata
    df, n_cells = _ranked(view, groupby, groups, method)
    keep = (
        (df["logfoldchanges"] >= np.log2(min_fold_change))
        & (df["pct_nz_group"] >= min_fraction)
        & (df["pvals_adj"] < max_padj)
    )
    if not housekeeping:
        keep &= ~df["names"].astype(str).str.match(RIBOSOMAL) & ~df["names"].astype(str).str.match(MITOCHONDRIAL)
    top = df[keep].groupby("group", sort=False).head(n_genes)
    table = top.rename(
        columns={
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "log2fc",
            "pvals_adj": "p_adj",
            "pct_nz_group": "fraction_in",
            "pct_nz_reference": "fraction_out",
        }
    )
    table = table[["group", "gene", "score", "log2fc", "p_adj", "fraction_in", "fraction_out"]].reset_index(drop=True)
    groups_done = list(dict.fromkeys(df["group"]))
    adata.uns[MARKERS] = {
        "groupby": groupby,
        "method": method,
        "within": list(within or []),
        "n_cells": n_cells,
        "rule": rule(method, min_fold_change, min_fraction, max_padj, housekeeping),
        "groups": groups_done,
        "genes": [",".join(table.loc[table.group == g, "gene"]) for g in groups_done],
    }
    return table
