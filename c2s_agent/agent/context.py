"""What the graph's nodes share during one process's part of a run: settings, tools, planner, ledger, the
working AnnData (what each step changes in its slots saved as a delta in ``runs/<id>/slots/``) and timings."""

from __future__ import annotations

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
    _saved: dict = field(default_factory=dict)  # fingerprint of the slots as saved

    def wall(self) -> float:
        """Wall time of the run so far, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def slots_dir(self) -> Path:
        """The run's saved slots: one delta file per step that changed obs, var, obsm, layers or uns."""
        return self.run_dir / "slots"

    def input_path(self) -> Path | None:
        from ..data.io import DEMO_ALIASES, DEMO_DATASETS
        from ..resources import demo_path

        if self.data is None:
            return None
        return demo_path(self.data) if self.data in DEMO_DATASETS or self.data in DEMO_ALIASES else Path(self.data)

    def adata(self):
        """The working AnnData: the input normalised, plus the slots earlier steps saved (on resume)."""
        if self._adata is None and self.data is not None:
            t0 = time.perf_counter()  # includes importing anndata/scanpy the first time: part of loading
            from ..data import prepare, read
            from .slots import apply_deltas, fingerprint

            adata = prepare(read(self.data))
            apply_deltas(adata, self.slots_dir)
            self._saved = fingerprint(adata)
            self._adata = adata
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
        """Save what the last step changed in the working data's slots (X is never saved: tools add results
        in slots and leave X alone, and the input is normalised again on resume)."""
        from .slots import save_delta

        t0 = time.perf_counter()
        self._saved = save_delta(self._adata, self.slots_dir, self._saved)
        self.timings["persist_s"] += time.perf_counter() - t0
