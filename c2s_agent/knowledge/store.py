"""A columnar record store on disk: text blobs with offsets, coded kinds and sources, and a gene CSR with its
inverse (gene -> records), as ``.npy`` files (texts memory-mapped) so that loading 300k+ records is fast."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .records import Record

BASE_FIELDS = set(Record.model_fields)


def _save_blob(path: Path, items: Sequence[str]) -> None:
    encoded = [s.encode("utf-8") for s in items]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    path.with_suffix(".bin").write_bytes(b"".join(encoded))
    np.save(path.with_suffix(".off.npy"), offsets)


class _Blob:
    def __init__(self, path: Path):
        self.data = (
            np.memmap(path.with_suffix(".bin"), dtype=np.uint8, mode="r")
            if path.with_suffix(".bin").stat().st_size
            else np.zeros(0, np.uint8)
        )
        self.off = np.load(path.with_suffix(".off.npy"), mmap_mode="r")

    def __getitem__(self, i: int) -> str:
        return bytes(self.data[self.off[i] : self.off[i + 1]]).decode("utf-8")


def record_attrs(rec: Record) -> dict:
    """A record's typed fields and attrs, as one JSON-able dict (what the store keeps besides the base fields)."""
    extra = rec.model_dump(mode="json", exclude=BASE_FIELDS)
    return {**extra, **rec.attrs}


def save_store(folder: Path, records: Sequence[Record], aliases: dict[str, list[str]]) -> None:
    """Write records, the gene vocabulary, the gene -> record inverse and the alias table into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = sorted({r.kind for r in records})
    sources = sorted({r.source for r in records})
    kind_code, source_code = {k: i for i, k in enumerate(kinds)}, {s: i for i, s in enumerate(sources)}
    vocab: dict[str, int] = {}
    indptr = np.zeros(len(records) + 1, dtype=np.int64)
    idx: list[int] = []
    for i, r in enumerate(records):
        idx.extend(vocab.setdefault(g, len(vocab)) for g in r.genes)
        indptr[i + 1] = len(idx)
    gene_idx = np.asarray(idx, dtype=np.int32)
    rows = np.repeat(np.arange(len(records), dtype=np.int32), np.diff(indptr))
    order = np.argsort(gene_idx, kind="stable")
    inv_indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(gene_idx, minlength=len(vocab)), out=inv_indptr[1:])
    arrays = {
        "kind": np.array([kind_code[r.kind] for r in records], dtype=np.int16),
        "source": np.array([source_code[r.source] for r in records], dtype=np.int16),
        "semantic": np.array([r.semantic for r in records], dtype=bool),
        "weight": np.array([r.weight for r in records], dtype=np.float32),
        "genes_indptr": indptr,
        "genes_idx": gene_idx,
        "inv_indptr": inv_indptr,
        "inv_rec": rows[order],
    }
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)
    _save_blob(folder / "texts", [r.text for r in records])
    _save_blob(folder / "ids", [r.id for r in records])
    _save_blob(folder / "attrs", [json.dumps(record_attrs(r), separators=(",", ":")) for r in records])
    meta = {"kinds": kinds, "sources": sources, "vocab": list(vocab), "aliases": aliases}
    (folder / "store.json").write_text(json.dumps(meta))


class Store:
    """Read access to a saved store: numeric columns in memory, text columns memory-mapped."""

    def __init__(self, folder: Path):
        meta = json.loads((folder / "store.json").read_text())
        self.kinds: list[str] = meta["kinds"]
        self.sources: list[str] = meta["sources"]
        self.vocab: list[str] = meta["vocab"]
        self.gene_index = {g: i for i, g in enumerate(self.vocab)}
        self.aliases: dict[str, list[str]] = meta["aliases"]
        for name in ("kind", "source", "semantic", "weight", "genes_indptr", "genes_idx", "inv_indptr", "inv_rec"):
            setattr(self, name, np.load(folder / f"{name}.npy"))
        self._vocab = np.array(self.vocab, dtype=object)
        self.texts, self.ids, self._attrs = _Blob(folder / "texts"), _Blob(folder / "ids"), _Blob(folder / "attrs")

    def __len__(self) -> int:
        return len(self.kind)

    def genes(self, row: int) -> list[str]:
        return self._vocab[self.genes_idx[self.genes_indptr[row] : self.genes_indptr[row + 1]]].tolist()

    def attrs(self, row: int) -> dict:
        return json.loads(self._attrs[row])

    def rows_with_gene(self, gene: str) -> np.ndarray:
        j = self.gene_index.get(gene)
        if j is None:
            return np.zeros(0, dtype=np.int32)
        return self.inv_rec[self.inv_indptr[j] : self.inv_indptr[j + 1]]

    def n_genes(self, rows: np.ndarray) -> np.ndarray:
        return self.genes_indptr[rows + 1] - self.genes_indptr[rows]
