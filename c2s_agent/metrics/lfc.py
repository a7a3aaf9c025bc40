"""Agreement of predicted and observed mean log-fold changes (Pearson r and Kendall's tau) on chosen genes.

A mean log-fold change here is the difference of mean log1p(CP10k) expression between a condition and its
control, per gene. Genes are a given program (gene list) or the ``top_n`` genes with the largest observed
absolute change among genes all three sets share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ._sampling import bootstrap_counts, interval


@dataclass
class LfcAgreement:
    """Pearson r and Kendall's tau (tau-b) of predicted vs observed mean log-fold changes, per gene in ``table``."""

    pearson: float
    kendall: float
    n_genes: int
    table: pd.DataFrame
    genes_missing: list[str] = field(default_factory=list)
    pearson_interval: tuple[float, float] | None = None
    kendall_interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {
            "pearson": self.pearson,
            "kendall": self.kendall,
            "n_genes": self.n_genes,
            "pearson_interval": self.pearson_interval,
            "kendall_interval": self.kendall_interval,
            "genes_missing": self.genes_missing,
            "genes": self.table.index.tolist(),
        }


def _normalised(cells, name: str):
    """(log1p CP10k CSR matrix, upper-cased gene index) of an AnnData."""
    from ..data import prepare

    data = cells if "c2s_input" in cells.uns and not cells.isbacked else prepare(cells)
    return data.X, pd.Index(data.var_names.astype(str).str.upper())


def mean_expression(cells, name: str = "cells") -> pd.Series:
    """Mean log1p(CP10k) per gene (upper-cased symbols) of an AnnData; a Series is returned with its index upper-cased."""
    if isinstance(cells, pd.Series):
        out = cells.astype(np.float64).copy()
        out.index = pd.Index(out.index.astype(str).str.upper())
        return out.groupby(level=0).first()
    if not hasattr(cells, "obs_names"):
        raise InputError(
            name, f"is a {type(cells).__name__}", "pass an AnnData or a pandas Series of mean log expression by gene"
        )
    X, genes = _normalised(cells, name)
    return pd.Series(np.asarray(X.mean(axis=0)).ravel(), index=genes).groupby(level=0).first()


def _corr(pred: np.ndarray, obs: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau

    if np.ptp(pred) == 0 or np.ptp(obs) == 0:
        return float("nan"), float("nan")
    return float(np.corrcoef(pred, obs)[0, 1]), float(kendalltau(pred, obs).statistic)


def lfc_agreement(
    predicted, observed, control, genes=None, top_n: int = 100, n_boot: int = 0, seed: int = 0, level: float = 0.95
) -> LfcAgreement:
    """Pearson r and Kendall's tau between predicted and observed mean log-fold changes versus ``control``.

    ``predicted``, ``observed`` and ``control`` are AnnData (counts or log-normalised; normalised with
    :func:`c2s_agent.data.prepare`) or pandas Series of mean log1p(CP10k) by gene symbol. ``genes`` is a gene
    program (names, any case; genes absent from any set are left out and listed in ``genes_missing``) or None
    for the ``top_n`` genes with the largest observed |LFC|. With ``n_boot`` > 0 and AnnData for ``predicted``
    and ``observed``, cells of both are resampled (control fixed, genes fixed) for percentile intervals.
    """
    means = {
        k: mean_expression(v, k) for k, v in (("predicted", predicted), ("observed", observed), ("control", control))
    }
    shared = means["predicted"].index.intersection(means["observed"].index).intersection(means["control"].index)
    missing: list[str] = []
    if genes is not None:
        wanted = pd.Index([str(g).upper() for g in genes]).drop_duplicates()
        missing = wanted.difference(shared).tolist()
        chosen = wanted.intersection(shared, sort=False)
    else:
        lfc_obs_all = (means["observed"] - means["control"]).reindex(shared)
        chosen = lfc_obs_all.abs().sort_values(ascending=False, kind="stable").index[:top_n]
    if len(chosen) < 3:
        raise InputError(
            "genes",
            f"only {len(chosen)} of the requested genes are measured in all three sets",
            "choose a gene program measured in the data, or pass genes=None for the top changed genes",
        )
    pred = (means["predicted"] - means["control"]).reindex(chosen).to_numpy()
    obs = (means["observed"] - means["control"]).reindex(chosen).to_numpy()
    pearson, kendall = _corr(pred, obs)
    table = pd.DataFrame({"lfc_predicted": pred, "lfc_observed": obs}, index=pd.Index(chosen, name="gene"))
    result = LfcAgreement(pearson, kendall, len(chosen), table, missing)
    if n_boot and all(hasattr(c, "obs_names") for c in (predicted, observed)):
        rng = np.random.default_rng(seed)
        boot = {}
        for key, cells in (("predicted", predicted), ("observed", observed)):
            X, names = _normalised(cells, key)
            first = pd.Series(np.arange(len(names)), index=names).groupby(level=0).first()
            cols = first.reindex(chosen).to_numpy()
            sub = np.asarray(X[:, cols].todense() if hasattr(X, "todense") else X[:, cols], dtype=np.float64)
            counts = bootstrap_counts(sub.shape[0], n_boot, rng)
            boot[key] = counts @ sub / sub.shape[0] - means["control"].reindex(chosen).to_numpy()
        reps = np.array([_corr(boot["predicted"][b], boot["observed"][b]) for b in range(n_boot)])
        ok = np.isfinite(reps).all(axis=1)
        if ok.sum() >= 10 and np.isfinite(pearson):
            result.pearson_interval = tuple(np.clip(interval(reps[ok, 0], pearson, level), -1, 1).tolist())
            result.kendall_interval = tuple(np.clip(interval(reps[ok, 1], kendall, level), -1, 1).tolist())
    return result
