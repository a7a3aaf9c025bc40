"""How well gene ranks reconstruct expression: the reverse transform fitted on some cells, scored on others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions.slots import REVERSE_FIT
from ..sentences import CellSentences, ReverseTransform
from ..sentences.transform import from_adata


@dataclass
class ReverseFit:
    """The fitted transform, its held-out scores (r2, pearson, spearman) and the held-out cells."""

    fit: ReverseTransform
    scores: dict[str, float]
    held_out: CellSentences
    n_fit_cells: int


def reverse_fit(adata, top_k: int = 100, holdout_fraction: float = 0.2, seed: int = 0) -> ReverseFit:
    """Fit the reverse transform (expression from rank) on a seeded share of the cells of ``adata`` (which holds
    cell sentences in ``obsm``, see :func:`c2s_agent.to_sentences`) and score the top ``top_k`` genes of the
    rest. Writes ``uns["c2s_reverse_fit"]``."""
    import scipy.sparse as sp

    cs = from_adata(adata)
    X = adata.X.tocsr() if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    safe = np.maximum(cs.idx, 0)
    rows = np.repeat(np.arange(len(cs)), safe.shape[1])
    picked = np.asarray(X[rows, safe.ravel()]).reshape(safe.shape)
    cs.values = np.where(cs.idx >= 0, picked, 0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(cs))
    n_test = max(1, int(round(len(cs) * holdout_fraction)))
    test, train = order[:n_test], order[n_test:]
    fit = ReverseTransform.fit(cs.subset(train), n_cells=len(train), seed=seed)
    held = cs.subset(test)
    scores = {k: float(v) for k, v in fit.evaluate(held, top_k=top_k).items()}
    adata.uns[REVERSE_FIT] = scores
    return ReverseFit(fit, scores, held, len(train))
