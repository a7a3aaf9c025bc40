"""The run ledger: one SQLite row per tool, planner and model call (arguments, status, duration, sizes,
tokens). Rows are keyed by (run, step, seq), so a step re-run after a crash replaces its rows instead of
adding duplicates, and a finished step's row is never touched again."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ..tools import StepResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,            -- tool | planner | model
    name TEXT NOT NULL,
    arguments TEXT,
    status TEXT NOT NULL,          -- running | ok | error
    started REAL NOT NULL,
    duration_s REAL,
    input_bytes INTEGER,
    output_bytes INTEGER,
    tokens_in INTEGER,
    tokens_out INTEGER,
    error TEXT,
    result TEXT,                   -- a finished tool step's output, evidence and artefacts (JSON)
    PRIMARY KEY (run_id, step_id, seq)
);
"""


class Ledger:
    """``runs/<id>/ledger.sqlite``. Each write is its own committed transaction (safe against kill -9)."""

    def __init__(self, path: Path, run_id: str):
        self.path, self.run_id = Path(path), run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._seq: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def start_step(self, step_id: str, tool: str, arguments: dict, input_bytes: int | None = None) -> None:
        """Mark a tool step running; drop rows a crashed earlier attempt of this step left behind."""
        self.db.execute("DELETE FROM calls WHERE run_id=? AND step_id=?", (self.run_id, step_id))
        args = json.dumps(arguments, default=str)
        self.db.execute(
            "INSERT INTO calls (run_id, step_id, seq, kind, name, arguments, status, started, input_bytes) "
            "VALUES (?, ?, 0, 'tool', ?, ?, 'running', ?, ?)",
            (self.run_id, step_id, tool, args, time.time(), input_bytes or len(args)),
        )
        self._seq[step_id] = 0

    def finish_step(
        self, step_id: str, status: str, duration_s: float, result: StepResult | None = None, error: str | None = None
    ) -> None:
        text = result.model_dump_json() if result is not None else None
        self.db.execute(
            "UPDATE calls SET status=?, duration_s=?, output_bytes=?, result=?, error=? "
            "WHERE run_id=? AND step_id=? AND seq=0",
            (status, duration_s, len(text) if text else None, text, error, self.run_id, step_id),
        )

    def record(self, step_id: str, kind: str, **fields) -> None:
        """A model, planner or service call made inside ``step_id`` (seq 1, 2, ... in call order).

        Takes the ledger's own names (``name``, ``duration_s``, ``tokens_in``, ``tokens_out``, ``input_bytes``,
        ``output_bytes``, ``status``, ``error``, ``arguments``) or the model layer's (``model``, ``task``,
        ``seconds``, ``prompt_tokens``, ``completion_tokens``); other fields are kept as the call's arguments.
        """
        f = dict(fields)
        pick = lambda *keys: next((f.pop(k) for k in keys if f.get(k) is not None), None)  # noqa: E731
        name = pick("name") or ".".join(str(x) for x in (f.get("model"), f.get("task")) if x) or kind
        duration = pick("duration_s", "seconds")
        tokens_in, tokens_out = pick("tokens_in", "prompt_tokens"), pick("tokens_out", "completion_tokens")
        status, error = pick("status") or "ok", pick("error")
        input_bytes, output_bytes = pick("input_bytes"), pick("output_bytes")
        arguments = pick("arguments") or {k: v for k, v in f.items() if v is not None} or None
        seq = self._seq.get(step_id, 0) + 1
        self._seq[step_id] = seq
        self.db.execute(
            "INSERT OR REPLACE INTO calls (run_id, step_id, seq, kind, name, arguments, status, started, "
            "duration_s, input_bytes, output_bytes, tokens_in, tokens_out, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.run_id,
                step_id,
                seq,
                kind,
                str(name),
                json.dumps(arguments, default=str) if arguments else None,
                status,
                time.time() - (duration or 0),
                duration,
                input_bytes,
                output_bytes,
                tokens_in,
                tokens_out,
                error,
            ),
        )

    def finished(self, step_id: str) -> StepResult | None:
        """The stored result of a step that finished ok, or None."""
        row = self.db.execute(
            "SELECT result FROM calls WHERE run_id=? AND step_id=? AND seq=0 AND status='ok'", (self.run_id, step_id)
        ).fetchone()
        return StepResult.model_validate_json(row[0]) if row and row[0] else None

    def results(self) -> list[StepResult]:
        """Every step that finished ok, in the order they ran."""
        rows = self.db.execute(
            "SELECT result FROM calls WHERE run_id=? AND seq=0 AND status='ok' AND result IS NOT NULL ORDER BY started",
            (self.run_id,),
        ).fetchall()
        return [StepResult.model_validate_json(r[0]) for r in rows]

    def rows(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM calls WHERE run_id=? ORDER BY started, step_id, seq", (self.run_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def totals(self) -> dict:
        """Calls, model calls, tokens and tool time of the run."""
        r = self.db.execute(
            "SELECT COUNT(*), SUM(kind != 'tool'), SUM(COALESCE(tokens_in, 0)), "
            "SUM(COALESCE(tokens_out, 0)), SUM(CASE WHEN kind='tool' THEN duration_s END) "
            "FROM calls WHERE run_id=?",
            (self.run_id,),
        ).fetchone()
        return {
            "calls": r[0] or 0,
            "model_calls": r[1] or 0,
            "tokens_in": r[2] or 0,
            "tokens_out": r[3] or 0,
            "tool_seconds": r[4] or 0.0,
        }
