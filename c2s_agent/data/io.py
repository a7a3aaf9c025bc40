"""Read ``.h5ad`` files (in memory or backed), detect what a matrix holds, and normalise where that is right.

Normalisation is ``normalize_total(target_sum=1e4)`` then ``log1p`` (natural log). It is done per cell, so it
is the same whether cells are processed at once or in chunks.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..conventions.slots import INPUT
from ..errors import InputError
from ..resources import DEMO_ALIASES, DEMO_DATASETS, demo_path

TARGET_SUM = 1e4
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "gene_names", "symbol")
Kind = Literal["counts", "log-normalised", "normalised", "scaled", "empty"]
Source = Literal["auto", "X", "raw"]


def read(path: str | Path, backed: bool = False):
    """Read an ``.h5ad`` file (``backed=True`` keeps ``X`` on disk), or a bundled demo by name."""
    import anndata as ad
    import h5py

    if str(path) in DEMO_DATASETS or str(path) in DEMO_ALIASES:
        path = demo_path(str(path))
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file", "check the path, or use 'demo' for the bundled Kang 2018 data")
    if path.is_dir():
        raise InputError(path, "is a directory, not an .h5ad file", "give the path of an .h5ad file")
    if not h5py.is_hdf5(path):
        raise InputError(
            path, "is not an HDF5/.h5ad file", "convert it with anndata (e.g. sc.read_10x_mtx(...).write_h5ad(...))"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as exc:  # noqa: BLE001 - any h5py/anndata failure means the file is unusable
        raise InputError(
            path,
            f"could not be read as AnnData ({type(exc).__name__}: {str(exc)[:200]})",
            "the file is truncated or not written by anndata; re-export it with adata.write_h5ad()",
        ) from None
    if adata.n_obs == 0:
        raise InputError(path, "has zero cells", "give a dataset with at least one cell")
    if adata.n_vars == 0:
        raise InputError(path, "has zero genes", "give a dataset with at least one gene")
    return adata


#: Head-room asked for beyond an estimated write, in bytes.
ROOM = 2**20


def write(adata, path: str | Path) -> None:
    """Write ``adata`` to ``path`` (``.h5ad``) once :func:`ensure_room` finds space for it."""
    ensure_room(path, estimated_size(adata))
    adata.write_h5ad(path)


def ensure_room(path: str | Path, nbytes: int) -> None:
    """Raise :class:`InputError` when the disk holding ``path`` has less than ``nbytes`` (plus 10% and
    :data:`ROOM`) free. HDF5 crashes the process when a disk fills during a write (h5py issue 914), so every
    HDF5 write checks first."""
    import shutil

    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free, need = shutil.disk_usage(folder).free, int(nbytes * 1.1) + ROOM
    if free < need:
        raise InputError(
            path,
            f"cannot be written: the disk is full ({free / 2**20:.1f} MiB free, about {need / 2**20:.0f} MiB needed)",
            "free space or choose a folder on another disk, then run the same command again",
        )


def estimated_size(obj) -> int:
    """Bytes an AnnData, array, sparse matrix, frame or dict of them takes on disk, uncompressed."""
    import anndata as ad

    if isinstance(obj, ad.AnnData):
        parts = [obj.X, obj.obs, obj.var, dict(obj.obsm), dict(obj.varm), dict(obj.layers), dict(obj.obsp)]
        parts += [dict(obj.uns), obj.raw.X if obj.raw is not None else None]
        return sum(map(estimated_size, parts))
    if isinstance(obj, dict):
        return sum(map(estimated_size, obj.values()))
    if isinstance(obj, pd.DataFrame):
        return int(obj.memory_usage(deep=True).sum())
    if isinstance(obj, pd.Series):
        return int(obj.memory_usage(deep=True))
    if sp.issparse(obj):
        return sum(getattr(obj, a).nbytes for a in ("data", "indices", "indptr") if hasattr(obj, a))
    return int(getattr(obj, "nbytes", 0))


def read_demo(name: str = "demo"):
    """Read a bundled demo dataset: "kang2018" (= "demo") or "pbmc68k"."""
    return read(demo_path(name))


@dataclass
class DataReport:
    """What a matrix holds, as detected by :func:`inspect`."""

    source: str
    n_cells: int
    n_genes: int
    kind: Kind
    gene_ids: Literal["symbols", "ensembl"]
    log_base: str | None = None
    n_duplicated_genes: int = 0
    n_empty_cells_in_sample: int = 0
    sampled_cells: int = 0
    nonzero_fraction: float = 0.0
    symbol_column: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _matrix(adata, source: str):
    if source == "raw":
        if adata.raw is None:
            raise InputError("raw", "the dataset has no .raw", "use source='X' or a layer")
        return adata.raw.X, adata.raw.var_names
    if source == "X":
        return adata.X, adata.var_names
    if source in adata.layers:
        return adata.layers[source], adata.var_names
    raise InputError(
        source, "is not 'X', 'raw' or a layer of this dataset", f"choose one of {['X', 'raw', *adata.layers.keys()]}"
    )


def _sample_rows(X, n: int = 500, seed: int = 0):
    n_obs = X.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(n_obs, size=min(n, n_obs), replace=False))
    if hasattr(X, "to_memory") or type(X).__module__.startswith(("anndata", "h5py")):
        # backed: read a contiguous block of at most n rows (random access on disk is slow)
        start = int(rows[0])
        block = X[start : start + min(n, n_obs - start)]
    else:
        block = X[rows]
    return sp.csr_matrix(block, dtype=np.float64) if not sp.issparse(block) else block.tocsr().astype(np.float64)


def inspect(adata, source: str = "X") -> DataReport:
    """Detect what ``source`` ("X", "raw" or a layer name) of ``adata`` holds, from a sample of cells."""
    X, var_names = _matrix(adata, source)
    if X is None:
        raise InputError(source, "holds no matrix", "choose 'raw' or a layer that holds expression values")
    if not np.issubdtype(np.dtype(X.dtype), np.number) or np.dtype(X.dtype) == np.bool_:
        raise InputError(source, f"has dtype {X.dtype}, not numbers", "store expression as float or integer values")
    block = _sample_rows(X)
    if block.nnz == 0 and sp.issparse(X) and X.nnz:  # sparse in memory, sample all empty: look at cells with data
        block = _sample_rows(X[np.flatnonzero(np.diff(X.tocsr().indptr))])
    vals = block.data
    report = DataReport(
        source=source,
        n_cells=adata.n_obs,
        n_genes=len(var_names),
        kind="counts",
        gene_ids="symbols",
        sampled_cells=block.shape[0],
    )
    report.nonzero_fraction = float(block.nnz / max(1, block.shape[0] * block.shape[1]))
    report.n_empty_cells_in_sample = int((np.diff(block.indptr) == 0).sum())
    if not np.isfinite(vals).all():
        bad = int((~np.isfinite(vals)).sum())
        raise InputError(
            source,
            f"holds {bad} NaN or infinite values in the first sampled cells",
            "remove or impute them (e.g. np.nan_to_num) before converting",
        )
    if vals.size == 0:
        report.kind = "empty"
    elif (vals < 0).any():
        report.kind = "scaled"
    elif np.allclose(vals, np.round(vals), atol=1e-6):
        report.kind = "counts"
    else:
        report.kind = "log-normalised" if vals.max() < 30 else "normalised"
        if report.kind == "log-normalised":
            sums_e = np.asarray(block.copy().expm1().sum(axis=1)).ravel()
            block10 = block.copy()
            block10.data = np.power(10.0, block10.data) - 1
            sums_10 = np.asarray(block10.sum(axis=1)).ravel()
            cv = lambda s: float(np.std(s[s > 0]) / np.mean(s[s > 0])) if (s > 0).any() else np.inf  # noqa: E731
            report.log_base = "e" if cv(sums_e) <= cv(sums_10) else "10"
            if min(cv(sums_e), cv(sums_10)) > 0.05:
                report.notes.append("per-cell totals are not constant: the data may be a subset of genes")
    names = np.asarray(var_names, dtype=str)
    ens = np.fromiter((bool(ENSEMBL_RE.match(n)) for n in names[:2000]), bool)
    if ens.mean() > 0.5:
        report.gene_ids = "ensembl"
        report.symbol_column = next((c for c in SYMBOL_COLUMNS if c in adata.var.columns), None)
    report.n_duplicated_genes = int(len(names) - len(np.unique(names)))
    return report


@dataclass
class Matrix:
    """The matrix a dataset's cells are read from, as :func:`resolve` chose and checked it: neither copied nor
    normalised. ``var_names`` are the gene names to use (symbols where the ids are Ensembl)."""

    X: object
    var: object
    var_names: object
    report: DataReport
    gene_names: str = "var_names"
    prepared: bool = False


def resolve(adata, source: Source | str = "auto") -> Matrix:
    """Choose and check the matrix of ``adata`` to read cells from, without copying it.

    ``source="auto"`` uses ``X`` when it holds counts or log-normalised values, else ``.raw``. Scaled data
    (negative values) is refused: cell sentences need expression levels, not z-scores. An AnnData written by
    :func:`prepare` resolves to its own ``X``.
    """
    if INPUT in adata.uns and not adata.isbacked:
        done = adata.uns[INPUT]
        report = DataReport(
            source="X",
            n_cells=adata.n_obs,
            n_genes=adata.n_vars,
            kind="log-normalised",
            gene_ids="symbols",
            log_base="e",
            notes=list(done.get("notes", [])),
        )
        return Matrix(adata.X, adata.var, adata.var_names, report, done.get("gene_names", "var_names"), True)
    sources = ["X", "raw"] if source == "auto" else [source]
    if source == "auto" and adata.raw is None:
        sources = ["X"]
    reports = []
    for src in sources:
        report = inspect(adata, src)
        reports.append(report)
        if report.kind in ("counts", "log-normalised", "normalised"):
            break
    else:
        report = reports[0]
        hint = (
            "use the .raw matrix or a counts layer (source='raw' or a layer name)"
            if report.kind == "scaled"
            else "give a matrix with expression values"
        )
        if report.kind == "scaled":
            raise InputError(
                report.source,
                "holds scaled values (negative entries): cell sentences need expression levels, not z-scores",
                hint,
            )
        raise InputError(report.source, "holds no non-zero values in the sampled cells", hint)
    if report.n_duplicated_genes:
        raise InputError(
            f"{report.source} gene names",
            f"{report.n_duplicated_genes} gene names are duplicated",
            "make them unique (adata.var_names_make_unique()) or aggregate the duplicates",
        )
    X, var_names = _matrix(adata, report.source)
    var = adata.raw.var if report.source == "raw" else adata.var
    if report.gene_ids == "ensembl" and report.symbol_column:
        symbols = var[report.symbol_column].astype(str)
        if symbols.duplicated().any():
            raise InputError(
                f"var[{report.symbol_column!r}]",
                "maps several Ensembl IDs to the same gene symbol",
                "aggregate the duplicates or make the symbols unique before converting",
            )
        return Matrix(X, var, pd.Index(symbols.values), report, f"symbols from var[{report.symbol_column!r}]")
    if report.gene_ids == "ensembl":
        report.notes.append(
            "gene ids are Ensembl IDs and no symbol column was found: models trained on symbols "
            "(all released C2S models and the embedded one) will not recognise them"
        )
    return Matrix(X, var, var_names, report)


def csr32(X) -> sp.csr_matrix:
    """``X`` (in memory or backed, sparse or dense) as a float32 CSR matrix; no copy when it already is one."""
    if hasattr(X, "to_memory"):
        X = X.to_memory()
    if sp.issparse(X):
        X = X.tocsr()
        return X if X.dtype == np.float32 else X.astype(np.float32)
    return sp.csr_matrix(X, dtype=np.float32)


def empty_cells(X: sp.csr_matrix, source: str, drop_empty: bool) -> np.ndarray:
    """Mask of cells with no stored values; an error unless ``drop_empty`` (or when every cell is empty)."""
    empty = np.diff(X.indptr) == 0
    if empty.any():
        if empty.all():
            raise InputError(
                source, "every cell is empty (no non-zero values)", "check that the right matrix was chosen"
            )
        if not drop_empty:
            raise InputError(
                source,
                f"{int(empty.sum())} cells have no expressed genes",
                "filter them (sc.pp.filter_cells(adata, min_genes=1)) or pass drop_empty=True / --drop-empty",
            )
    return empty


def prepare(adata, source: Source | str = "auto", drop_empty: bool = False, copy: bool = True):
    """Return an in-memory AnnData whose ``X`` is log1p(CP10k), with ``uns["c2s_input"]`` saying what was done
    (the matrix chosen as :func:`resolve` does)."""
    import anndata as ad

    m = resolve(adata, source)
    if m.prepared:
        return adata.copy() if copy else adata
    report = m.report
    X = csr32(m.X)
    X = X.copy() if X is m.X else X  # normalised in place below: never the caller's matrix
    if not np.isfinite(X.data).all():  # the sample in inspect() may have missed them
        raise InputError(
            report.source,
            f"holds {int((~np.isfinite(X.data)).sum())} NaN or infinite values",
            "remove or impute them (e.g. np.nan_to_num) before converting",
        )
    if report.kind == "counts" and X.data.size and X.data.min() < 0:
        raise InputError(report.source, "holds negative counts", "check the matrix; counts must be >= 0")
    out = ad.AnnData(X=X, obs=adata.obs.copy() if copy else adata.obs, var=m.var.copy())
    out.var_names = m.var_names
    out.obsm.update({k: v for k, v in adata.obsm.items()})
    out.uns.update({k: v for k, v in adata.uns.items() if k != INPUT})
    empty = empty_cells(X, report.source, drop_empty)
    if empty.any():
        out = out[~empty].copy()
    scale = np.repeat(cell_scale(out.X), np.diff(out.X.indptr)) if report.kind == "counts" else None
    normalise_values(out.X.data, report, scale)
    out.uns[INPUT] = input_record(m, int(empty.sum()))
    return out


def input_record(m: Matrix, dropped_empty: int) -> dict:
    """What was read and how it is normalised: ``uns["c2s_input"]`` of :func:`prepare`."""
    report = m.report
    return {
        "source": report.source,
        "detected": report.kind,
        "steps": normalisation_steps(report),
        "log_base": "e",
        "target_sum": TARGET_SUM if report.kind == "counts" else None,
        "dropped_empty_cells": dropped_empty,
        "gene_names": m.gene_names,
        "notes": list(report.notes),
    }


def normalisation_steps(report: DataReport) -> list[str]:
    """What :func:`normalise_values` does to a matrix of this kind."""
    if report.kind == "counts":
        return [f"normalize_total(target_sum={TARGET_SUM:g})", "log1p (natural log)"]
    if report.kind == "normalised":
        return ["log1p (natural log)"]
    return ["converted log10(1+x) to natural log1p"] if report.log_base == "10" else []


def cell_scale(X: sp.csr_matrix) -> np.ndarray:
    """Per-cell factor of counts -> CP10k (float32), as :func:`normalise_inplace` applies it."""
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    totals[totals == 0] = 1.0
    return (TARGET_SUM / totals).astype(np.float32)


def normalise_values(values: np.ndarray, report: DataReport, scale: np.ndarray | None = None) -> np.ndarray:
    """Values of a matrix of ``report``'s kind -> log1p(CP10k), in place (float32). ``scale``: each value's
    :func:`cell_scale` factor, broadcastable to ``values`` (counts only). Per value, so the same on a whole
    matrix, a chunk of cells, or only the entries that made a cell's top genes."""
    if report.kind == "counts":
        values *= scale
        np.log1p(values, out=values)
    elif report.kind == "normalised":
        np.log1p(values, out=values)
    elif report.log_base == "10":
        values[...] = np.log1p(np.power(10.0, values) - 1).astype(np.float32)
    return values


def normalise_inplace(X: sp.csr_matrix) -> sp.csr_matrix:
    """CSR counts -> log1p(counts / total * 1e4), in place, per cell."""
    X.data *= np.repeat(cell_scale(X), np.diff(X.indptr))
    np.log1p(X.data, out=X.data)
    return X
