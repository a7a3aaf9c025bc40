"""What the graph's nodes share during one process's part of a run: settings, tools, planner, ledger, the
working AnnData (persisted to ``runs/<id>/data.h5ad`` after every step that adds slots) and timings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ledger import Ledger


@dataclass
class RunContext:
    settings: Any
    tools: dict
    planner: Any
    ledger: Ledger
    run_dir: Path
    data: str | None
    progress: Callable[[str, dict], None] = lambda event, info: None
    timings: dict = field(default_factory=lambda: {"load_s": 0.0, "plan_s": 0.0, "tools_s": 0.0, "persist_s": 0.0,
                                                   "report_s": 0.0})
    started: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0  # wall time spent on this run by earlier processes (before a resume)
    _adata: Any = None
    _vocab: Any = None

    def wall(self) -> float:
        """Wall time of the run so far, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def data_file(self) -> Path:
        return self.run_dir / "data.h5ad"

    def adata(self):
        """The working AnnData: the run's saved copy when there is one, else the input normalised."""
        if self._adata is None and self.data is not None:
            from ..data import prepare, read

            t0 = time.perf_counter()
            self._adata = read(self.data_file) if self.data_file.exists() else prepare(read(self.data))
            self.timings["load_s"] += time.perf_counter() - t0
        return self._adata

    def vocab(self):
        from .vocabulary import Vocabulary

        adata = self.adata()
        if adata is None:
            return None
        if self._vocab is None:
            self._vocab = Vocabulary.from_adata(adata)
        return self._vocab

    def persist(self) -> None:
        """Write the working AnnData atomically (temp file, fsync, rename)."""
        t0 = time.perf_counter()
        tmp = self.data_file.with_suffix(".tmp.h5ad")
        self._adata.write_h5ad(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.data_file)
        self.timings["persist_s"] += time.perf_counter() - t0
