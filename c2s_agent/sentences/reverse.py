"""The reverse transform: expression as a monotone function of log rank, fitted per dataset.

The reference fits a straight line of log10 expression on log10(1 + rank). Here the fit is isotonic
(monotone decreasing, piecewise linear) in log10(1 + rank), fitted on binned means: the least-squares
estimate of expression given rank alone, without forcing a line, and never negative (clipped at zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel

from ..errors import InputError
from .parse import parse_genes
from .transform import CellSentences


def _scores(pred: np.ndarray, true: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    ss_res = float(((true - pred) ** 2).sum())
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return {
        "r2": 1 - ss_res / ss_tot if ss_tot else float("nan"),
        "pearson": float(pearsonr(pred, true)[0]),
        "spearman": float(spearmanr(pred, true)[0]),
        "n_entries": int(true.size),
    }


class ReverseTransform(BaseModel):
    """Persistable fit of expression (log1p CP10k) against log10(1 + rank), rank starting at 0."""

    log_rank: list[float]
    expression: list[float]
    n_cells_fitted: int
    max_rank: int

    @classmethod
    def fit(cls, cs: CellSentences, max_rank: int = 1000, n_cells: int = 2048, seed: int = 0) -> ReverseTransform:
        """Fit on up to ``n_cells`` cells of ``cs`` (which must carry ``values``), ranks below ``max_rank``."""
        from sklearn.isotonic import IsotonicRegression

        if cs.values is None:
            raise InputError("sentences", "carry no expression values to fit on", "make them with to_sentences(adata)")
        rows = np.random.default_rng(seed).permutation(len(cs))[:n_cells]
        idx, vals = cs.idx[rows, :max_rank], cs.values[rows, :max_rank]
        ranks = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)
        keep = idx >= 0
        if keep.sum() < 10:
            raise InputError("sentences", "have fewer than 10 ranked entries", "fit on more cells or genes")
        r, v = ranks[keep], vals[keep].astype(np.float64)
        sums = np.bincount(r, weights=v, minlength=idx.shape[1])
        counts = np.bincount(r, minlength=idx.shape[1])
        present = counts > 0
        x = np.log10(1 + np.flatnonzero(present))
        iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(
            x, sums[present] / counts[present], sample_weight=counts[present]
        )
        y = np.clip(iso.predict(x), 0, None)
        return cls(log_rank=x.tolist(), expression=y.tolist(), n_cells_fitted=len(rows), max_rank=int(idx.shape[1]))

    def predict(self, ranks: np.ndarray) -> np.ndarray:
        """Expected expression at 0-based ``ranks`` (flat past the last fitted rank, never negative)."""
        return np.clip(
            np.interp(np.log10(1 + np.asarray(ranks, dtype=np.float64)), self.log_rank, self.expression), 0, None
        )

    def evaluate(self, cs: CellSentences, top_k: int = 100) -> dict:
        """R^2, Pearson and Spearman of reconstructed vs actual expression on the top ``top_k`` entries."""
        if cs.values is None:
            raise InputError(
                "sentences", "carry no expression values to compare with", "make them with to_sentences(adata)"
            )
        idx, vals = cs.idx[:, :top_k], cs.values[:, :top_k]
        keep = idx >= 0
        ranks = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)[keep]
        return _scores(self.predict(ranks), vals[keep].astype(np.float64))

    def reconstruct(self, sentences: CellSentences | list[str], genes=None, obs_names=None):
        """An AnnData of expression from sentences: ranked CellSentences, or strings over ``genes``.

        Unknown and repeated gene names in strings are counted in ``obs`` (``c2s_n_unknown``,
        ``c2s_n_duplicated``) and left out; the first occurrence of a gene sets its rank.
        """
        import anndata as ad
        import pandas as pd

        if isinstance(sentences, CellSentences):
            genes = sentences.genes
            rows = [r[r >= 0] for r in sentences.idx]
            unknown = dup = np.zeros(len(rows), dtype=np.int64)
            obs_names = sentences.obs_names
        else:
            if genes is None:
                raise InputError(
                    "genes", "are needed to reconstruct from strings", "pass the vocabulary (e.g. var_names)"
                )
            genes = np.asarray(genes, dtype=object)
            lookup = {str(g).upper(): i for i, g in enumerate(genes)}
            parsed = [parse_genes(s, lookup) for s in sentences]
            rows = [p.idx for p in parsed]
            unknown = np.array([p.n_unknown for p in parsed], dtype=np.int64)
            dup = np.array([p.n_duplicated for p in parsed], dtype=np.int64)
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
        ranks = np.concatenate([np.arange(n) for n in lengths]) if rows else np.zeros(0)
        data = self.predict(ranks).astype(np.float32)
        X = sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(genes)))
        X.sort_indices()
        obs = pd.DataFrame(
            {"c2s_n_genes": lengths, "c2s_n_unknown": unknown, "c2s_n_duplicated": dup},
            index=pd.Index(obs_names if obs_names is not None else [f"cell_{i}" for i in range(len(rows))]).astype(str),
        )
        out = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(np.asarray(genes, dtype=str))))
        out.uns["c2s_reverse"] = {
            "n_unknown_genes": int(unknown.sum()),
            "n_duplicated_genes": int(dup.sum()),
            "values": "log1p(CP10k), reconstructed from rank",
        }
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReverseTransform:
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(
                path, f"is not a saved reverse transform ({exc})", "fit one with ReverseTransform.fit and save it"
            ) from None
