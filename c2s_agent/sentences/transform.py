"""AnnData -> cell sentences: each cell's expressed genes ordered by descending expression.

Ordering ties (count data are ~90% ties) are broken by a fixed gene priority: a seeded random permutation
(``tie_break="random"``, the default, seed 42) or descending mean expression over the cells converted
(``tie_break="mean"``). The order is deterministic for a given dataset, seed and gene set.

Sentences are stored compactly: ``idx`` is an (n_cells, K) int32 matrix of gene indices in rank order,
padded with -1; strings are made on demand. In an AnnData they live in ``obsm["c2s_rank_idx"]``, with the
normalised gene names in ``var["c2s_gene"]`` and the parameters in ``uns["c2s_sentences"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError

TieBreak = Literal["random", "mean"]
OBSM_KEY, VAR_KEY, UNS_KEY = "c2s_rank_idx", "c2s_gene", "c2s_sentences"


@dataclass
class CellSentences:
    """Ranked gene indices per cell plus the vocabulary they index; strings are built on demand."""

    idx: np.ndarray
    genes: np.ndarray
    obs_names: pd.Index
    values: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.idx.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """Number of genes in each cell's sentence."""
        return (self.idx >= 0).sum(axis=1)

    def words(self, i: int, top_k: int | None = None) -> list[str]:
        row = self.idx[i, : top_k or self.idx.shape[1]]
        return self.genes[row[row >= 0]].tolist()

    def sentence(self, i: int, top_k: int | None = None) -> str:
        """Cell ``i`` as a space-separated gene sentence (top ``top_k`` genes)."""
        return " ".join(self.words(i, top_k))

    def strings(self, top_k: int | None = None) -> list[str]:
        return [self.sentence(i, top_k) for i in range(len(self))]

    def subset(self, rows) -> CellSentences:
        return CellSentences(self.idx[rows], self.genes, self.obs_names[rows],
                             None if self.values is None else self.values[rows], dict(self.params))


def gene_vocabulary(var_names, on_collision: Literal["error", "keep_first"] = "error") -> tuple[np.ndarray, np.ndarray]:
    """Upper-case gene names as released C2S models expect. Returns (names, usable mask).

    Names that collide after upper-casing (e.g. ``Cd4`` and ``CD4``) raise an error naming them, or with
    ``on_collision="keep_first"`` only the first of each group is used; no gene ever takes another's name.
    """
    names = np.asarray(pd.Index(var_names).astype(str).str.strip().str.upper(), dtype=object)
    dup = pd.Index(names).duplicated(keep="first")
    if dup.any():
        clashes = sorted(set(names[dup]))
        if on_collision == "error":
            originals = pd.Index(var_names)[pd.Index(names).isin(clashes[:3])].tolist()
            raise InputError("gene names", f"{len(clashes)} names collide after upper-casing (e.g. {originals})",
                             "make them unique before converting, or pass on_collision='keep_first'")
    return names, ~dup


def _priority(n_genes: int, tie_break: TieBreak, seed: int, X: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    if tie_break == "random":
        inv = np.random.default_rng(seed).permutation(n_genes).astype(np.int32)
    elif tie_break == "mean":
        means = np.asarray(X.mean(axis=0)).ravel()
        inv = np.lexsort((np.arange(n_genes), -means)).astype(np.int32)
    else:
        raise InputError("tie_break", f"{tie_break!r} is not supported", "use 'random' or 'mean'")
    priority = np.empty(n_genes, np.uint32)
    priority[inv] = np.arange(n_genes, dtype=np.uint32)
    return priority, inv


def rank_csr(X: sp.csr_matrix, top_k: int | None, priority: np.ndarray, inv: np.ndarray,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rank a CSR matrix of non-negative float32 values; returns (idx, values), each (n, K)."""
    from ._kernels import rank_rows

    X = X.tocsr()
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    if mask is not None and not mask.all():
        X = X[:, np.flatnonzero(mask)]
        inv_cols = np.flatnonzero(mask).astype(np.int32)
    else:
        inv_cols = None
    lengths = np.diff(X.indptr)
    k = int(lengths.max(initial=0)) if top_k is None else int(top_k)
    if inv_cols is not None:  # keep the priority of each remaining gene
        pr = priority[inv_cols]
        order = np.argsort(pr, kind="stable")
        sub_priority = np.empty_like(pr)
        sub_priority[order] = np.arange(len(pr), dtype=np.uint32)
        sub_inv = order.astype(np.int32)
    else:
        sub_priority, sub_inv = priority, inv
    idx = np.empty((X.shape[0], k), np.int32)
    bits = np.empty((X.shape[0], k), np.uint32)
    indptr = X.indptr.astype(np.int64, copy=False)
    bad = np.zeros(X.shape[0], np.int64)
    rank_rows(indptr, X.indices, X.data.view(np.uint32), sub_priority, sub_inv, idx, bits, bad)
    if bad.any():
        raise InputError("expression matrix", f"has {int(bad.sum())} negative, NaN or infinite values in "
                         f"{int((bad > 0).sum())} cells", "give counts or log-normalised values (no scaled data, no NaN)")
    if top_k is None:  # explicit zeros stored in the matrix shorten some rows: trim the padding
        idx, bits = idx[:, : int((idx >= 0).sum(1).max(initial=0))], bits[:, : int((idx >= 0).sum(1).max(initial=0))]
    if inv_cols is not None:
        idx = np.where(idx >= 0, inv_cols[np.maximum(idx, 0)], -1).astype(np.int32)
    return idx, bits.view(np.float32)


def to_sentences(adata, top_k: int | None = 200, tie_break: TieBreak = "random", seed: int = 42,
                 source: str = "auto", on_collision: Literal["error", "keep_first"] = "error",
                 drop_empty: bool = False) -> CellSentences:
    """Convert an AnnData to cell sentences (top ``top_k`` genes, or all expressed genes when None).

    The matrix is normalised first where needed (see :func:`c2s_agent.data.prepare`); ``values`` hold the
    log1p(CP10k) expression of each ranked gene, for fitting the reverse transform.
    """
    from ..data import prepare

    if top_k is not None and top_k < 1:
        raise InputError("top_k", f"must be >= 1 (got {top_k})", "pass a positive number of genes, or None for all")
    data = adata if "c2s_input" in adata.uns and not adata.isbacked else prepare(adata, source, drop_empty=drop_empty)
    genes, usable = gene_vocabulary(data.var_names, on_collision)
    X = data.X if sp.issparse(data.X) else sp.csr_matrix(data.X)
    priority, inv = _priority(data.n_vars, tie_break, seed, X)
    idx, values = rank_csr(X, top_k, priority, inv, usable)
    params = {"top_k": top_k, "tie_break": tie_break, "seed": seed, "gene_names": "upper-case",
              "normalisation": dict(data.uns.get("c2s_input", {}))}
    return CellSentences(idx, genes, data.obs_names.copy(), values, params)


def to_adata(adata, cs: CellSentences):
    """Store sentences in ``adata`` (``obsm["c2s_rank_idx"]``, ``var["c2s_gene"]``, ``uns["c2s_sentences"]``)."""
    if len(cs) != adata.n_obs:
        raise InputError("sentences", f"cover {len(cs)} cells but the AnnData has {adata.n_obs}",
                         "convert the same AnnData you store them in")
    adata.obsm[OBSM_KEY] = cs.idx
    adata.var[VAR_KEY] = cs.genes.astype(str)
    adata.uns[UNS_KEY] = {k: v for k, v in cs.params.items() if v is not None and k != "normalisation"}
    return adata


def from_adata(adata) -> CellSentences:
    """Read sentences stored by :func:`to_adata` (or computed by ``c2s sentences``)."""
    if OBSM_KEY not in adata.obsm:
        raise InputError("AnnData", f'has no obsm["{OBSM_KEY}"]', "run c2s_agent.sentences.to_sentences and to_adata, or `c2s sentences`")
    genes = np.asarray(adata.var[VAR_KEY] if VAR_KEY in adata.var else gene_vocabulary(adata.var_names)[0], dtype=object)
    return CellSentences(np.asarray(adata.obsm[OBSM_KEY], dtype=np.int32), genes, adata.obs_names.copy(),
                         None, dict(adata.uns.get(UNS_KEY, {})))


def stream_sentences(path: str | Path, top_k: int = 200, chunk_size: int = 20_000, tie_break: TieBreak = "random",
                     seed: int = 42, source: str = "X") -> Iterator[tuple[int, CellSentences]]:
    """Convert a backed ``.h5ad`` chunk by chunk with bounded memory; yields (first row, sentences).

    Ranking is invariant to per-cell scaling and log transforms, so counts are ranked as they are; the
    normalised values are computed per chunk. ``tie_break="mean"`` is not available when streaming.
    """
    from ..data import inspect, read
    from ..data.io import normalise_inplace

    if tie_break != "random":
        raise InputError("tie_break", "only 'random' is available when streaming", "use tie_break='random'")
    adata = read(path, backed=True)
    report = inspect(adata, source)
    if report.kind == "scaled":
        raise InputError(path, "holds scaled values (negative entries)", "stream a file that holds counts or log-normalised values")
    genes, usable = gene_vocabulary(adata.var_names if source != "raw" else adata.raw.var_names)
    priority, inv = _priority(len(genes), "random", seed, None)
    matrix = adata.X if source == "X" else (adata.raw.X if source == "raw" else adata.layers[source])
    try:
        for start in range(0, adata.n_obs, chunk_size):
            block = matrix[start : start + chunk_size]
            block = sp.csr_matrix(block, dtype=np.float32) if not sp.issparse(block) else block.tocsr().astype(np.float32)
            if report.kind == "counts":
                normalise_inplace(block)
            idx, values = rank_csr(block, top_k, priority, inv, usable)
            params = {"top_k": top_k, "tie_break": tie_break, "seed": seed}
            yield start, CellSentences(idx, genes, adata.obs_names[start : start + chunk_size], values, params)
    finally:
        adata.file.close()
