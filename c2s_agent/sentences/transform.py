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

from ..conventions.slots import INPUT
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
        """Every cell's sentence (top ``top_k`` genes), built in one pass."""
        return sentence_strings(self.idx[:, : top_k or self.idx.shape[1]], self.genes)

    def subset(self, rows) -> CellSentences:
        return CellSentences(
            self.idx[rows],
            self.genes,
            self.obs_names[rows],
            None if self.values is None else self.values[rows],
            dict(self.params),
        )


def sentence_strings(idx: np.ndarray, genes: np.ndarray) -> list[str]:
    """The space-separated gene names of each row of ``idx`` (gene indices, padded with -1): parallel kernels
    write every row into one buffer, one line each, which is decoded and split once."""
    from ._kernels import join_rows, row_sizes

    encoded = [str(g).encode() for g in genes]
    name_starts = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=name_starts[1:])
    idx = np.ascontiguousarray(idx, dtype=np.int32)
    row_starts = np.zeros(len(idx) + 1, np.int64)
    row_sizes(idx, np.diff(name_starts), row_starts[1:])
    np.cumsum(row_starts, out=row_starts)
    out = np.empty(int(row_starts[-1]), np.uint8)
    join_rows(idx, np.frombuffer(b"".join(encoded), np.uint8), name_starts, row_starts, out)
    rows = str(memoryview(out)[:-1], "utf-8").split("\n") if len(idx) else []
    if len(rows) != len(idx):
        raise InputError("gene names", "include a line break", "remove line breaks from the gene names")
    return rows


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
            raise InputError(
                "gene names",
                f"{len(clashes)} names collide after upper-casing (e.g. {originals})",
                "make them unique before converting, or pass on_collision='keep_first'",
            )
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


def rank_csr(
    X, top_k: int | None, priority: np.ndarray, inv: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rank the rows of a matrix of non-negative values (as they are: a float32 CSR matrix is not copied);
    genes outside ``mask`` are left out. Returns (idx, values), each (n, K); values as stored in ``X``.

    Blocks of rows go to numba's threads: a kernel writes each row's sort keys (value, then tie priority),
    numpy's vectorised partition and sort order them, a kernel decodes the first K."""
    from concurrent.futures import ThreadPoolExecutor

    import numba

    from ..data.io import csr32
    from ._kernels import SKIP, decode_keys, row_keys

    X = csr32(X)
    if mask is not None and not mask.all():
        priority = np.where(mask, priority, SKIP).astype(np.uint32)
    lengths = np.diff(X.indptr)
    k = int(lengths.max(initial=0)) if top_k is None else int(top_k)
    idx = np.empty((X.shape[0], k), np.int32)
    bits = np.empty((X.shape[0], k), np.uint32)
    bad = np.zeros(X.shape[0], np.int64)
    indptr, data = X.indptr.astype(np.int64, copy=False), X.data.view(np.uint32)

    def block(a: int, b: int) -> None:
        keys = np.empty((b - a, max(1, int(lengths[a:b].max(initial=0)))), np.uint64)
        row_keys(indptr[a : b + 1], X.indices, data, priority, keys, bad[a:b])
        if k < keys.shape[1]:
            keys.partition(k - 1, axis=1)
            keys = keys[:, :k]
        keys.sort(axis=1)
        decode_keys(keys, inv, idx[a:b], bits[a:b])

    step = max(64, (1 << 24) // (8 * max(1, int(lengths.max(initial=0)))))  # keys of a block: <= 16 MB
    with ThreadPoolExecutor(numba.get_num_threads()) as pool:
        list(pool.map(lambda a: block(a, min(a + step, X.shape[0])), range(0, X.shape[0], step)))
    if bad.any():
        raise InputError(
            "expression matrix",
            f"has {int(bad.sum())} negative, NaN or infinite values in {int((bad > 0).sum())} cells",
            "give counts or log-normalised values (no scaled data, no NaN)",
        )
    if top_k is None:  # stored zeros and left-out genes shorten some rows: trim the padding
        n = int((idx >= 0).sum(1).max(initial=0))
        idx, bits = idx[:, :n], bits[:, :n]
    return idx, bits.view(np.float32)


def ranking_matrix(adata, source: str = "auto", drop_empty: bool = False):
    """The matrix to rank ``adata``'s cells on, as it is (ranking within a cell needs no normalisation): a
    float32 CSR matrix (not a copy when ``X`` already is one), the :class:`~c2s_agent.data.io.Matrix` it
    came from, and the mask of kept cells (empty cells are an error unless ``drop_empty``)."""
    from ..data.io import csr32, empty_cells, resolve

    m = resolve(adata, source)
    X = csr32(m.X)
    keep = np.ones(X.shape[0], bool) if m.prepared else ~empty_cells(X, m.report.source, drop_empty)
    return (X if keep.all() else X[keep]), m, keep


def to_sentences(
    adata,
    top_k: int | None = 200,
    tie_break: TieBreak = "random",
    seed: int = 42,
    source: str = "auto",
    on_collision: Literal["error", "keep_first"] = "error",
    drop_empty: bool = False,
) -> CellSentences:
    """Convert an AnnData to cell sentences (top ``top_k`` genes, or all expressed genes when None).

    Cells are ranked on the matrix as it is (see :func:`ranking_matrix`); ``values`` hold the log1p(CP10k)
    expression of each ranked gene (see :func:`c2s_agent.data.prepare`), for fitting the reverse transform:
    only those entries are normalised. ``tie_break="mean"`` needs every value for the gene means, so it
    normalises the whole matrix first.
    """
    from ..data import prepare
    from ..data.io import cell_scale, input_record, normalise_values

    if top_k is not None and top_k < 1:
        raise InputError("top_k", f"must be >= 1 (got {top_k})", "pass a positive number of genes, or None for all")
    data = prepare(adata, source, drop_empty=drop_empty) if tie_break == "mean" else adata
    X, m, keep = ranking_matrix(data, source, drop_empty)
    genes, usable = gene_vocabulary(m.var_names, on_collision)
    priority, inv = _priority(X.shape[1], tie_break, seed, X)
    idx, values = rank_csr(X, top_k, priority, inv, usable)
    if not m.prepared:
        normalise_values(values, m.report, cell_scale(X)[:, None] if m.report.kind == "counts" else None)
    record = dict(data.uns[INPUT]) if m.prepared else input_record(m, int((~keep).sum()))
    params = {"top_k": top_k, "tie_break": tie_break, "seed": seed, "gene_names": "upper-case", "normalisation": record}
    return CellSentences(idx, genes, data.obs_names[keep] if not keep.all() else data.obs_names.copy(), values, params)


def to_adata(adata, cs: CellSentences):
    """Store sentences in ``adata`` (``obsm["c2s_rank_idx"]``, ``var["c2s_gene"]``, ``uns["c2s_sentences"]``)."""
    if len(cs) != adata.n_obs:
        raise InputError(
            "sentences",
            f"cover {len(cs)} cells but the AnnData has {adata.n_obs}",
            "convert the same AnnData you store them in",
        )
    adata.obsm[OBSM_KEY] = cs.idx
    adata.var[VAR_KEY] = cs.genes.astype(str)
    adata.uns[UNS_KEY] = {k: v for k, v in cs.params.items() if v is not None and k != "normalisation"}
    return adata


def from_adata(adata) -> CellSentences:
    """Read sentences stored by :func:`to_adata` (or computed by ``c2s sentences``)."""
    if OBSM_KEY not in adata.obsm:
        raise InputError(
            "AnnData",
            f'has no obsm["{OBSM_KEY}"]',
            "run c2s_agent.sentences.to_sentences and to_adata, or `c2s sentences`",
        )
    genes = adata.var[VAR_KEY] if VAR_KEY in adata.var else gene_vocabulary(adata.var_names)[0]
    genes = np.asarray(genes, dtype=object)
    return CellSentences(
        np.asarray(adata.obsm[OBSM_KEY], dtype=np.int32),
        genes,
        adata.obs_names.copy(),
        None,
        dict(adata.uns.get(UNS_KEY, {})),
    )


def stream_sentences(
    path: str | Path,
    top_k: int = 200,
    chunk_size: int = 20_000,
    tie_break: TieBreak = "random",
    seed: int = 42,
    source: str = "X",
) -> Iterator[tuple[int, CellSentences]]:
    """Convert a backed ``.h5ad`` chunk by chunk with bounded memory; yields (first row, sentences).

    Cells are ranked as they are stored (ranking is invariant to per-cell scaling and log transforms); only
    the ranked entries' values are normalised. ``tie_break="mean"`` is not available when streaming.
    """
    from ..data import read
    from ..data.io import cell_scale, csr32, normalise_values, resolve

    if tie_break != "random":
        raise InputError("tie_break", "only 'random' is available when streaming", "use tie_break='random'")
    adata = read(path, backed=True)
    try:
        m = resolve(adata, source)
        genes, usable = gene_vocabulary(m.var_names)
        priority, inv = _priority(len(genes), "random", seed, None)
        params = {"top_k": top_k, "tie_break": tie_break, "seed": seed}
        for start in range(0, adata.n_obs, chunk_size):
            block = csr32(m.X[start : start + chunk_size])
            idx, values = rank_csr(block, top_k, priority, inv, usable)
            normalise_values(values, m.report, cell_scale(block)[:, None] if m.report.kind == "counts" else None)
            yield start, CellSentences(idx, genes, adata.obs_names[start : start + chunk_size], values, dict(params))
    finally:
        adata.file.close()
