"""The screen's result store: one SQLite row per finished (perturbation, context) item, committed as soon as
the item finishes, keyed by a hash of everything that determines the item's result. A killed screen loses
at most the items in flight; a re-run skips every key already stored (and never stores one twice)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY, item TEXT NOT NULL, perturbation TEXT NOT NULL, context TEXT NOT NULL,
    status TEXT NOT NULL, record TEXT NOT NULL, finished_at REAL NOT NULL)"""


def item_key(**parts) -> str:
    """A stable hash of an item's defining parts (any JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ResultStore:
    """Finished screen items in ``<folder>/screen.sqlite``."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "screen.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM items")}

    def add(self, key: str, item: str, perturbation: str, context: str, status: str, record: dict) -> bool:
        """Store one finished item (one transaction); False if the key was stored already."""
        with self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, item, perturbation, context, status, json.dumps(record), time.time()),
            )
        return cur.rowcount == 1

    def records(self, keys=None) -> list[dict]:
        """Stored records (all, or those with ``keys``), in the order they finished."""
        rows = self._db.execute("SELECT key, record FROM items ORDER BY finished_at, rowid").fetchall()
        wanted = None if keys is None else set(keys)
        return [{**json.loads(rec), "key": key} for key, rec in rows if wanted is None or key in wanted]

    def close(self) -> None:
        self._db.close()
