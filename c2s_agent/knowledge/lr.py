"""Ligand-receptor scoring between two groups of cells, in the manner of CellPhoneDB's statistical method.

For each CellPhoneDB interaction (partner A in the source group, partner B in the target group) the score is
the mean of the ligand's mean expression in the source cells and the receptor's mean in the target cells; a
complex takes the minimum over its subunits and counts as expressed only when every subunit is detected in at
least ``min_fraction`` of its group's cells. The p-value is the share of label permutations whose score
reaches the observed one. All interactions and permutations are computed at once with matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..conventions.slots import CONDITION, LIGAND_RECEPTOR
from ..errors import InputError

PERM_BLOCK = 200


def _groups(adata, groupby: str, values) -> list[str]:
    if groupby not in adata.obs.columns:
        raise InputError(
            f"groupby {groupby!r}", "is not a column of adata.obs", f"use one of {list(adata.obs.columns)}"
        )
    values = [values] if isinstance(values, str) else list(values)
    present = set(adata.obs[groupby].astype(str).unique())
    missing = [v for v in values if v not in present]
    if missing or not values:
        raise InputError(
            f"group {missing[0] if missing else values!r}",
            f"is not a value of obs[{groupby!r}]",
            f"use one or more of {sorted(present)}",
        )
    return values


def _interactions(var_names: pd.Index, path=None) -> pd.DataFrame:
    """CellPhoneDB interactions whose genes are all measured: partner A -> B, and B -> A for symmetric kinds."""
    from .sources import _partner, cellphonedb_tables

    inter, symbol, complexes = cellphonedb_tables(path)
    measured = set(var_names)
    rows = []
    for r in inter.fillna("").itertuples(index=False):
        a, b = _partner(r.partner_a, symbol, complexes), _partner(r.partner_b, symbol, complexes)
        if a is None or b is None or not set(a[1]) <= measured or not set(b[1]) <= measured:
            continue
        rows.append((a, b, r.classification, r.directionality))
        if r.directionality != "Ligand-Receptor" and a != b:
            rows.append((b, a, r.classification, r.directionality))
    return pd.DataFrame(
        [
            {
                "ligand": a[0],
                "receptor": b[0],
                "ligand_genes": a[1],
                "receptor_genes": b[1],
                "classification": c,
                "directionality": d,
            }
            for a, b, c, d in rows
        ]
    )


def subunit_matrix(partners: Sequence[tuple[str, ...]], gene_pos: dict[str, int]) -> np.ndarray:
    width = max(len(p) for p in partners)
    out = np.full((len(partners), width), -1, dtype=np.int64)
    for i, genes in enumerate(partners):
        out[i, : len(genes)] = [gene_pos[g] for g in genes]
    return out


def complex_min(values: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """values (genes x k) -> (partners x k): the minimum over each partner's subunits."""
    padded = np.vstack([values, np.full((1, values.shape[1]), np.inf, dtype=values.dtype)])
    return padded[sub].min(axis=1)


def _score_cells(
    X,
    is_src: np.ndarray,
    is_tgt: np.ndarray,
    lig_sub,
    rec_sub,
    n_perms: int,
    min_fraction: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n = X.shape[0]
    detected = (X > 0).astype(np.float32) if sp.issparse(X) else (X > 0).astype(np.float32)
    XT, DT = X.T.tocsr() if sp.issparse(X) else X.T, detected.T

    def group_means(M: np.ndarray, mats) -> list[np.ndarray]:
        w = M / np.maximum(M.sum(0, keepdims=True), 1)
        return [np.asarray(m @ w) for m in mats]

    S = np.stack([is_src, is_tgt], axis=1).astype(np.float32)
    (mean, frac) = group_means(S, (XT, DT))
    lig_mean, rec_mean = complex_min(mean[:, :1], lig_sub)[:, 0], complex_min(mean[:, 1:], rec_sub)[:, 0]
    lig_frac, rec_frac = complex_min(frac[:, :1], lig_sub)[:, 0], complex_min(frac[:, 1:], rec_sub)[:, 0]
    expressed = (lig_frac >= min_fraction) & (rec_frac >= min_fraction)
    score = np.where(expressed, (lig_mean + rec_mean) / 2, 0.0)
    hits = np.zeros(len(score))
    done = 0
    while done < n_perms:
        k = min(PERM_BLOCK, n_perms - done)
        perms = np.argsort(rng.random((k, n)), axis=1)  # k independent shuffles of the cells' labels
        Ps, Pt = is_src[perms].T.astype(np.float32), is_tgt[perms].T.astype(np.float32)
        ms, mt = group_means(Ps, (XT,))[0], group_means(Pt, (XT,))[0]
        perm_score = (complex_min(ms, lig_sub) + complex_min(mt, rec_sub)) / 2
        hits += (perm_score >= score[:, None]).sum(axis=1)
        done += k
    pvalue = np.where(expressed, hits / n_perms, 1.0)
    return {
        "ligand_mean": lig_mean,
        "receptor_mean": rec_mean,
        "ligand_frac": lig_frac,
        "receptor_frac": rec_frac,
        "score": score,
        "pvalue": pvalue,
    }


def _conditions(adata, condition: str | None, condition_value: str | None) -> list[str | None]:
    """The conditions to score separately: every value of ``obs[condition]``, or only ``condition_value``."""
    if condition is None:
        if condition_value is not None:
            raise InputError("condition_value", "was given without a condition column", "also pass condition=COLUMN")
        return [None]
    if condition not in adata.obs.columns:
        raise InputError(
            f"condition {condition!r}", "is not a column of adata.obs", f"use one of {list(adata.obs.columns)}"
        )
    values = sorted(adata.obs[condition].astype(str).unique())
    if condition_value is not None and condition_value not in values:
        raise InputError(
            f"condition_value {condition_value!r}", f"is not a value of obs[{condition!r}]", f"use one of {values}"
        )
    return [condition_value] if condition_value is not None else values


def _expression(adata, keep: np.ndarray, cellphonedb_path):
    """The CellPhoneDB pairs whose every subunit is measured, and the log1p(CP10k) matrix of their genes."""
    from ..data import prepare

    data = prepare(adata[keep] if not keep.all() else adata, copy=True)
    data.var_names = data.var_names.str.upper()
    if data.var_names.duplicated().any():
        data = data[:, ~data.var_names.duplicated()]
    table = _interactions(data.var_names, cellphonedb_path)
    if table.empty:
        raise InputError(
            "adata.var_names",
            "contain no complete CellPhoneDB ligand-receptor pair",
            "use human gene symbols (e.g. IL6, CXCL10) as var_names",
        )
    genes = sorted({g for col in ("ligand_genes", "receptor_genes") for t in table[col] for g in t})
    gene_pos = {g: i for i, g in enumerate(genes)}
    X = sp.csr_matrix(data[:, genes].X, dtype=np.float32)
    return table, X, subunit_matrix(table.ligand_genes, gene_pos), subunit_matrix(table.receptor_genes, gene_pos)


def _ranked(frames: list[pd.DataFrame], by_condition: bool) -> pd.DataFrame:
    out = pd.concat(frames, ignore_index=True)
    out["ligand_genes"] = out.ligand_genes.map("+".join)
    out["receptor_genes"] = out.receptor_genes.map("+".join)
    out["pair"] = out.ligand + " -> " + out.receptor
    out["significant"] = (out.pvalue < 0.05) & (out.score > 0)
    by = [CONDITION] if by_condition else None
    ordered = out.sort_values(["significant", "score"], ascending=False)
    out["rank"] = (
        ordered.groupby(by).cumcount() if by else pd.Series(np.arange(len(ordered)), index=ordered.index)
    ) + 1
    return out.sort_values(([CONDITION] if by else []) + ["rank"]).reset_index(drop=True)


def score_ligand_receptor(
    adata,
    groupby: str,
    source: str | Sequence[str],
    target: str | Sequence[str],
    condition: str | None = None,
    condition_value: str | None = None,
    n_perms: int = 1000,
    min_fraction: float = 0.1,
    seed: int = 0,
    key_added: str = LIGAND_RECEPTOR,
    background: str = "all",
    cellphonedb_path=None,
) -> pd.DataFrame:
    """Score ligand (source group) -> receptor (target group) pairs; results also go to ``adata.uns[key_added]``.

    ``source``/``target`` are one or several values of ``obs[groupby]``. With ``condition`` the cells are
    scored separately for each value of that column (or only ``condition_value``) and the table gains a
    ``condition`` column. Expression is log1p(CP10k) (counts are normalised first). Returns one row per
    interaction (and condition): means, detected fractions, score, permutation p-value and rank.

    As in CellPhoneDB, the null shuffles the group labels of all cells (``background="all"``, per condition), so
    a significant pair is specific to the source and target groups; ``background="groups"`` shuffles only
    between the source and target cells.
    """
    if n_perms < 1:
        raise InputError("n_perms", f"must be >= 1 (got {n_perms})", "use e.g. 1000 permutations")
    if background not in ("all", "groups"):
        raise InputError("background", f"must be 'all' or 'groups' (got {background!r})", "use 'all'")
    if not 0 <= min_fraction < 1:
        raise InputError("min_fraction", f"must be in [0, 1) (got {min_fraction})", "use e.g. 0.1")
    src, tgt = _groups(adata, groupby, source), _groups(adata, groupby, target)
    conditions = _conditions(adata, condition, condition_value)
    groups = adata.obs[groupby].astype(str)
    keep = np.ones(adata.n_obs, dtype=bool) if background == "all" else groups.isin(src + tgt).to_numpy()
    table, X, lig_sub, rec_sub = _expression(adata, keep, cellphonedb_path)
    rng = np.random.default_rng(seed)
    frames = []
    g_keep = groups[keep].to_numpy()
    for cond in conditions:
        cells = (
            np.ones(len(g_keep), dtype=bool)
            if cond is None
            else (adata.obs[condition].astype(str)[keep] == cond).to_numpy()
        )
        is_src, is_tgt = np.isin(g_keep[cells], src), np.isin(g_keep[cells], tgt)
        if not is_src.any() or not is_tgt.any():
            raise InputError(
                f"condition {cond!r}",
                "has no cells of the source or the target group",
                "choose groups present in every condition, or pass condition_value",
            )
        Xc = X[cells]
        Xc = Xc.toarray() if Xc.shape[0] * Xc.shape[1] <= 20_000_000 else Xc
        frame = table.copy().assign(**_score_cells(Xc, is_src, is_tgt, lig_sub, rec_sub, n_perms, min_fraction, rng))
        frame["n_source_cells"], frame["n_target_cells"] = int(is_src.sum()), int(is_tgt.sum())
        if cond is not None:
            frame.insert(0, CONDITION, cond)
        frames.append(frame)
    out = _ranked(frames, condition is not None)
    adata.uns[key_added] = {
        "params": {
            "groupby": groupby,
            "source": src,
            "target": tgt,
            CONDITION: condition or "",
            "conditions": [c or "" for c in conditions],
            "n_perms": n_perms,
            "min_fraction": min_fraction,
            "seed": seed,
            "background": background,
            "expression": "log1p(CP10k)",
            "database": "CellPhoneDB v5.0.0",
        },
        "table": out.astype({"significant": bool}),
    }
    return out
