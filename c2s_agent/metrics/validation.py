"""Do the metrics tell matched cell populations from mismatched ones? Random halves of one cell type against
each other (matched) and against cells of every other type (mismatched), on a labelled dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .distribution import energy_distance, gene_wasserstein, mmd, sliced_wasserstein
from .encoders import Encoder, get_encoder
from .frechet import frechet_distance

PAIR_METRICS = ("scfid", "mmd", "energy", "sliced_wasserstein", "gene_wasserstein")


def _metric(name, a, b, ea, eb, seed):
    if name == "scfid":
        return frechet_distance(ea, eb)
    if name == "gene_wasserstein":
        return gene_wasserstein(a, b, n_boot=0, seed=seed).value
    fn = {"mmd": mmd, "energy": energy_distance, "sliced_wasserstein": sliced_wasserstein}[name]
    return fn(ea, eb, n_boot=0, seed=seed).value


def type_pairs(
    adata,
    column: str,
    encoder: str | Encoder = "pca",
    metrics=PAIR_METRICS,
    min_cells: int = 60,
    max_half: int = 150,
    n_genes: int = 500,
    seed: int = 0,
    settings=None,
) -> pd.DataFrame:
    """One row per (type, other type or itself) pair with every metric's value.

    For each type with at least ``min_cells`` cells, its cells are split at random into halves of
    ``h = min(n // 2, max_half)``; the first half is compared with the second (matched) and with ``h`` random
    cells of every other type (mismatched; fewer if the type is smaller). The encoder is fitted on all of
    ``adata``; ``gene_wasserstein`` uses the ``n_genes`` most variable log-normalised genes.
    """
    from ..data import prepare

    if column not in adata.obs.columns:
        raise InputError(column, "is not an obs column", f"choose one of {list(adata.obs.columns)}")
    data = prepare(adata)
    enc = get_encoder(encoder, settings)
    if enc.needs_fit and not getattr(enc, "fitted", False):
        enc.fit(data)
    emb = enc.encode(data)
    X = data.X.toarray()
    genes = np.argsort(-X.var(0), kind="stable")[:n_genes]
    X = X[:, genes]
    labels = data.obs[column].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    cells = {t: rng.permutation(np.flatnonzero(labels == t)) for t in sorted(set(labels))}
    anchors = [t for t, idx in cells.items() if len(idx) >= min_cells]
    if len(anchors) < 2:
        raise InputError(column, f"has fewer than two types with >= {min_cells} cells", "lower min_cells")
    rows = []
    for a in anchors:
        h = min(len(cells[a]) // 2, max_half)
        first = cells[a][:h]
        for b in cells:
            if b == a:
                other = cells[a][h : 2 * h]
            elif len(cells[b]) >= 2:
                other = cells[b][:h]
            else:
                continue
            row = {"type": a, "other": b, "matched": a == b, "n": h, "n_other": len(other)}
            for m in metrics:
                row[m] = _metric(m, X[first], X[other], emb[first], emb[other], seed)
            rows.append(row)
    return pd.DataFrame(rows)


def separation(pairs: pd.DataFrame, metrics=PAIR_METRICS) -> pd.DataFrame:
    """Per metric: largest matched and smallest mismatched values, medians, the AUROC of mismatched over
    matched, the share of types whose matched value is below all of their own mismatched values, and the
    worst (largest) ratio of a type's matched value to its smallest mismatched value."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for m in metrics:
        matched, mismatched = pairs.loc[pairs.matched, m], pairs.loc[~pairs.matched, m]
        ratio = pairs.groupby("type").apply(
            lambda g, m=m: g.loc[g.matched, m].max() / g.loc[~g.matched, m].min(), include_groups=False
        )
        out[m] = {
            "max_matched": float(matched.max()),
            "min_mismatched": float(mismatched.min()),
            "median_matched": float(matched.median()),
            "median_mismatched": float(mismatched.median()),
            "auroc": float(roc_auc_score(pairs.loc[:, "matched"].to_numpy() == False, pairs[m])),  # noqa: E712
            "types_separated": float((ratio < 1).mean()),
            "worst_ratio": float(ratio.max()),
        }
    return pd.DataFrame(out).T
