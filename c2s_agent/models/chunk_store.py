"""The results store of a streamed model task: one SQLite database (WAL) beside the output file, one row per
finished chunk of cells, its arrays packed as ``.npz`` bytes.

A chunk's row is committed (synchronous=FULL) as soon as the chunk finishes, so a killed run loses only the
chunks in flight; the chunk number is the primary key, so a chunk can never be stored twice. The store also
holds the run's identity (input file, model, task and its arguments, chunk size): a store of another run is
refused instead of mixed in.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (id INTEGER PRIMARY KEY CHECK (id = 1), spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    chunk INTEGER PRIMARY KEY, start INTEGER NOT NULL, stop INTEGER NOT NULL, payload BLOB NOT NULL,
    seconds REAL, worker TEXT, finished_at REAL NOT NULL);
"""


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays (numbers or strings) as ``.npz`` bytes."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class ChunkStore:
    """Finished chunks of one streamed run, kept at ``path`` until the output is written."""

    def __init__(self, path: str | Path, spec: dict):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        text = json.dumps(spec, sort_keys=True, default=str)
        row = self.db.execute("SELECT spec FROM run").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO run VALUES (1, ?)", (text,))
        elif row[0] != text:
            self.db.close()
            old = json.loads(row[0])
            changed = sorted(
                k
                for k in set(old) | set(spec)
                if json.dumps(old.get(k), sort_keys=True, default=str)
                != json.dumps(spec.get(k), sort_keys=True, default=str)
            )
            raise InputError(
                self.path,
                f"holds the results of another run (different {', '.join(changed)})",
                "run again with the same input, model and options to resume it, or delete it to start over",
            )

    def done(self) -> set[int]:
        """Numbers of the finished chunks."""
        return {c for (c,) in self.db.execute("SELECT chunk FROM chunks")}

    def write(
        self, chunk: int, start: int, stop: int, arrays: dict[str, np.ndarray] | bytes, seconds: float, worker: str
    ) -> None:
        """Commit one finished chunk (a chunk stored twice is an error, never a second row)."""
        payload = arrays if isinstance(arrays, bytes) else pack(arrays)
        with self.db:
            self.db.execute(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chunk, start, stop, payload, seconds, worker, time.time()),
            )

    def chunks(self):
        """(chunk, start, stop, arrays) of every finished chunk, in order, one at a time."""
        rows = self.db.execute("SELECT chunk, start, stop, payload FROM chunks ORDER BY chunk")
        for chunk, start, stop, payload in rows:
            yield chunk, start, stop, unpack(payload)

    def rows(self) -> list[tuple]:
        """(chunk, start, stop, seconds, worker, finished_at) of every finished chunk."""
        return list(
            self.db.execute("SELECT chunk, start, stop, seconds, worker, finished_at FROM chunks ORDER BY chunk")
        )

    def close(self) -> None:
        self.db.close()

    def remove(self) -> None:
        """Delete the (closed) store and its WAL files."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
