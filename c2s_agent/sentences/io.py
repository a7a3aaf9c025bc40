"""Write cell sentences to ``.h5ad``: in memory, or streamed chunk by chunk from a backed file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .transform import OBSM_KEY, UNS_KEY, VAR_KEY, from_adata, stream_sentences, to_adata, to_sentences


def write_sentences(
    inp: str | Path,
    out: str | Path,
    top_k: int = 200,
    tie_break: str = "random",
    seed: int = 42,
    source: str = "auto",
    backed: bool = False,
    chunk_size: int = 20_000,
    drop_empty: bool = False,
    progress: bool = False,
) -> dict:
    """Convert ``inp`` to sentences and write ``out``; returns a summary (cells, lengths, cells/s, example)."""
    from ..data import read, write

    out = Path(out)
    if out.suffix != ".h5ad":
        raise InputError(out, "does not end in .h5ad", "name the output file something.h5ad")
    if not out.parent.exists():
        raise InputError(out, "is in a folder that does not exist", f"create {out.parent} first")
    t0 = time.perf_counter()
    if backed:
        n, example, lengths = _write_streamed(
            inp, out, top_k, seed, "X" if source == "auto" else source, chunk_size, progress
        )
    else:
        adata = read(inp)
        cs = to_sentences(adata, top_k=top_k, tie_break=tie_break, seed=seed, source=source, drop_empty=drop_empty)
        if len(cs) != adata.n_obs:
            adata = adata[adata.obs_names.isin(cs.obs_names)].copy()
        to_adata(adata, cs)
        write(adata, out)
        n, example, lengths = len(cs), cs.sentence(0, 30), cs.lengths
    dt = time.perf_counter() - t0
    return {
        "n_cells": n,
        "median_length": float(np.median(lengths)),
        "seconds": dt,
        "cells_per_s": n / dt if dt else float("inf"),
        "example": example,
    }


def _write_streamed(inp, out: Path, top_k: int, seed: int, source: str, chunk_size: int, progress: bool):
    import anndata as ad
    import h5py
    import pandas as pd
    from rich.progress import Progress

    from ..data import ensure_room, estimated_size, read

    src = read(inp, backed=True)
    n_obs = src.n_obs
    shell = ad.AnnData(obs=src.obs.copy(), var=src.var.copy() if source != "raw" else src.raw.var.copy())
    src.file.close()
    ensure_room(out, estimated_size(shell) + n_obs * top_k * 4)
    lengths = np.zeros(n_obs, np.int32)
    example = ""
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("cell sentences", total=n_obs)
        dset = None
        f = None
        try:
            for start, cs in stream_sentences(inp, top_k=top_k, chunk_size=chunk_size, seed=seed, source=source):
                if dset is None:
                    shell.var[VAR_KEY] = cs.genes.astype(str)
                    shell.uns[UNS_KEY] = {k: v for k, v in cs.params.items() if v is not None}
                    shell.write_h5ad(out)
                    f = h5py.File(out, "r+")
                    dset = f["obsm"].create_dataset(
                        OBSM_KEY, shape=(n_obs, top_k), dtype="i4", chunks=(min(n_obs, 4096), top_k)
                    )
                    dset.attrs["encoding-type"], dset.attrs["encoding-version"] = "array", "0.2.0"
                    example = cs.sentence(0, 30)
                dset[start : start + len(cs)] = cs.idx
                lengths[start : start + len(cs)] = cs.lengths
                bar.advance(task, len(cs))
        finally:
            if f is not None:
                f.close()
    del pd
    return n_obs, example, lengths


def read_sentences(path: str | Path):
    """Read an ``.h5ad`` written by :func:`write_sentences` and return its CellSentences."""
    from ..data import read

    return from_adata(read(path))
