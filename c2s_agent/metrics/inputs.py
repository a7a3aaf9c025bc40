"""What metrics accept as cells: AnnData (counts or log-normalised), cell sentences, or sentence strings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.select import obs_mask
from ..errors import InputError
from ..sentences import CellSentences
from ..sentences.transform import OBSM_KEY, from_adata

SENTENCE_FILE_SUFFIXES = (".txt",)
SENTENCE_COLUMN = "c2s_sentence"


def is_sentences(cells) -> bool:
    return isinstance(cells, CellSentences) or (isinstance(cells, Sequence) and not isinstance(cells, str))


def _sentence_only(adata) -> bool:
    """An AnnData that stores ranked sentences (``obsm["c2s_rank_idx"]``) and no expression values."""
    if OBSM_KEY not in adata.obsm:
        return False
    X = adata.X
    return X is None or (getattr(X, "nnz", None) == 0) or (not hasattr(X, "nnz") and not np.any(X))


def load_cells(cells, name: str, prefer_sentences: bool = False):
    """AnnData, CellSentences or a list of sentence strings from a path (.h5ad, or .txt: one sentence a line),
    an AnnData, CellSentences or strings. Sentence-only AnnData become CellSentences; with
    ``prefer_sentences``, an AnnData holding model output in ``obs["c2s_sentence"]`` becomes its strings."""
    from ..data import read

    if isinstance(cells, (str, Path)):
        path = Path(cells)
        if path.suffix in SENTENCE_FILE_SUFFIXES:
            if not path.is_file():
                raise InputError(path, "no such file", "give a text file with one cell sentence per line")
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            if len(lines) < 2:
                raise InputError(
                    path, f"holds {len(lines)} sentences", "give at least two cells, one sentence per line"
                )
            return lines
        cells = read(cells)
    if hasattr(cells, "obs_names"):
        if cells.isbacked:
            cells = cells.to_memory()
        if prefer_sentences and SENTENCE_COLUMN in cells.obs:
            return cells.obs[SENTENCE_COLUMN].astype(str).tolist()
        return from_adata(cells) if _sentence_only(cells) else cells
    if isinstance(cells, CellSentences):
        return cells
    if isinstance(cells, Sequence) and not isinstance(cells, str) and all(isinstance(s, str) for s in cells):
        return list(cells)
    raise InputError(
        name,
        f"is a {type(cells).__name__}",
        "pass an AnnData, an .h5ad path, CellSentences, or a list of sentence strings",
    )


def n_cells(cells) -> int:
    return cells.n_obs if hasattr(cells, "obs_names") else len(cells)


def select(adata, where: dict[str, str] | None, name: str = "cells"):
    """Cells of ``adata`` whose obs columns equal the given values (all must match)."""
    if not where:
        return adata
    return adata[obs_mask(adata, where, name)].copy()


def parse_where(text: str | None, name: str) -> dict[str, str] | None:
    """``"col=value"`` (several joined by ``;``) into a dict."""
    if not text:
        return None
    out = {}
    for part in text.split(";"):
        col, sep, value = part.partition("=")
        if not sep or not col.strip():
            raise InputError(name, f"{part!r} is not of the form COLUMN=VALUE", "write e.g. 'cell_type=CD14 Mono'")
        out[col.strip()] = value.strip()
    return out
