"""The slots a run's steps add to the working AnnData, saved as one small delta file per step.

A run never saves X: the input is normalised again on resume, and the deltas in ``runs/<id>/slots/`` are
applied in order. A delta holds only the ``obs``/``var`` columns and ``obsm``/``layers``/``uns`` entries that
changed since the last save (found by content digests), plus the names of removed ones, so saving after a
step costs milliseconds however large the data. Each delta is written to a temporary file and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data import ensure_room, estimated_size

KINDS = ("obs", "var", "obsm", "layers", "uns")


def _digest(obj, h) -> None:
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(f"\x01{k}\x02".encode())
            _digest(obj[k], h)
    elif isinstance(obj, list | tuple):
        h.update(f"\x03{len(obj)}".encode())
        for x in obj:
            _digest(x, h)
    elif isinstance(obj, pd.DataFrame | pd.Series):
        kind = (obj.dtypes.tolist(), obj.columns.tolist()) if isinstance(obj, pd.DataFrame) else obj.dtype
        h.update(repr(kind).encode())
        try:
            h.update(pd.util.hash_pandas_object(obj, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, arrays): their text
            h.update(obj.to_csv().encode())
    elif sp.issparse(obj):
        csr = sp.csr_matrix(obj)
        for part in (csr.data, csr.indices, csr.indptr):
            _digest(part, h)
        h.update(str(csr.shape).encode())
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(obj.tobytes() if obj.dtype != object else repr(obj.tolist()).encode())
    else:
        h.update(repr(obj).encode())


def digest(obj) -> str:
    h = hashlib.blake2b(digest_size=16)
    _digest(obj, h)
    return h.hexdigest()


def fingerprint(adata) -> dict[str, str]:
    """``"kind/key" -> content digest`` for every obs/var column and obsm/layers/uns entry."""
    out = {}
    for kind in ("obs", "var"):
        frame = getattr(adata, kind)
        out.update({f"{kind}/{c}": digest(frame[c]) for c in frame.columns})
    for kind in ("obsm", "layers", "uns"):
        out.update({f"{kind}/{k}": digest(v) for k, v in getattr(adata, kind).items()})
    return out


def save_delta(adata, folder: Path, before: dict[str, str]) -> dict[str, str]:
    """Write what changed in ``adata`` since the fingerprint ``before`` as the next delta in ``folder``;
    returns the new fingerprint. Writes nothing when nothing changed."""
    import h5py
    from anndata.io import write_elem

    after = fingerprint(adata)
    changed = [k for k, v in after.items() if before.get(k) != v]
    removed = [k for k in before if k not in after]
    if not changed and not removed:
        return after
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("*.h5")))
    tmp, path = folder / f"{n:04d}.tmp", folder / f"{n:04d}.h5"
    by_kind = {kind: [k.split("/", 1)[1] for k in changed if k.startswith(kind + "/")] for kind in KINDS}
    ensure_room(tmp, sum(estimated_size(getattr(adata, kind)[k]) for kind in KINDS for k in by_kind[kind]))
    with h5py.File(tmp, "w") as f:
        f.attrs["removed"] = json.dumps(removed)
        for kind in ("obs", "var"):
            if by_kind[kind]:
                write_elem(f, kind, getattr(adata, kind)[by_kind[kind]])
        for kind in ("obsm", "layers", "uns"):
            if by_kind[kind]:
                write_elem(f, kind, {k: getattr(adata, kind)[k] for k in by_kind[kind]})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return after


def apply_deltas(adata, folder: Path) -> None:
    """Apply the saved deltas in ``folder`` to ``adata`` (the normalised input), in the order they were saved."""
    import h5py
    from anndata.io import read_elem

    for path in sorted(folder.glob("*.h5")) if folder.exists() else []:
        with h5py.File(path, "r") as f:
            for key in json.loads(f.attrs["removed"]):
                kind, name = key.split("/", 1)
                target = getattr(adata, kind)
                if kind in ("obs", "var"):
                    target.drop(columns=[name], inplace=True)
                else:
                    del target[name]
            for kind in ("obs", "var"):
                if kind in f:
                    frame = read_elem(f[kind])
                    for c in frame.columns:
                        getattr(adata, kind)[c] = frame[c].values
            for kind in ("obsm", "layers", "uns"):
                if kind in f:
                    getattr(adata, kind).update(read_elem(f[kind]))
