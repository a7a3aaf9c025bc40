"""The results store of an evaluation run: one SQLite database (WAL), one row per item, keyed by a content
hash. Each row is committed as soon as it is produced, so a killed run loses nothing that finished and a
re-run skips it; the primary key makes a duplicate row impossible."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (cell_id TEXT PRIMARY KEY, label TEXT, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY, cell_id TEXT NOT NULL, task TEXT NOT NULL, item TEXT NOT NULL, status TEXT NOT NULL,
    result TEXT, error TEXT, seconds REAL, worker TEXT, finished_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rows_cell ON rows (cell_id);
"""


def content_hash(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


class Store:
    """Append rows; read them back by key or cell."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def add_cell(self, cell) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO cells VALUES (?, ?, ?)",
                (cell.id, cell.label, json.dumps(cell.model_dump(), sort_keys=True)),
            )

    def done_keys(self, keys: list[str]) -> set[str]:
        """Keys among ``keys`` that already have a successful row."""
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key FROM rows WHERE status = 'ok' AND key IN ({','.join('?' * len(chunk))})"
            out.update(k for (k,) in self.db.execute(q, chunk))
        return out

    def write(
        self,
        key: str,
        cell_id: str,
        task: str,
        item: str,
        result: dict | None,
        error: str | None,
        seconds: float,
        worker: str,
    ) -> None:
        """Commit one row (a failed item is stored with its error and retried by the next run)."""
        status = "ok" if error is None else "error"
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    cell_id,
                    task,
                    item,
                    status,
                    None if result is None else json.dumps(result, sort_keys=True, separators=(",", ":")),
                    error,
                    seconds,
                    worker,
                    time.time(),
                ),
            )

    def results(self, keys: list[str]) -> dict[str, dict]:
        """Successful results by key."""
        out: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, result FROM rows WHERE status = 'ok' AND key IN ({','.join('?' * len(chunk))})"
            out.update({k: json.loads(r) for k, r in self.db.execute(q, chunk)})
        return out

    def rows(self) -> list[dict]:
        cur = self.db.execute(
            "SELECT key, cell_id, task, item, status, result, error, seconds, worker, finished_at FROM rows"
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def close(self) -> None:
        self.db.close()
