"""What the graph's nodes share during one process's part of a run: settings, tools, planner, ledger, the run's
manifest, the working AnnData (what each step changes in its slots saved as a delta in ``runs/<id>/slots/``) and
timings. The context passes through LangGraph's runtime; it is never checkpointed.

A run may be a turn of a session (:mod:`.session`): its working data then starts as the previous turn left it,
either the session's AnnData still in memory or, in a new process, the input with the earlier turns' deltas."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .ledger import Ledger


class RunManifest(BaseModel):
    """``run.json``: what was asked of what data, by which planner and software, and how the run stands."""

    id: str
    question: str
    data: str | None
    planner: str
    hypothesize: bool = False
    approve: str | None = None
    session: str | None = Field(None, description="the session this run is a turn of (its first turn's id)")
    turn: int = Field(1, description="the run's place in its session, from 1")
    parent: str | None = Field(None, description="the session's previous turn, whose data state this turn starts from")
    in_memory: bool = Field(False, description="the data was an AnnData in memory (c2s.ask), not a file")
    created: str
    created_epoch: float
    status: str = "running"
    pid: int | None = None
    versions: dict[str, str | None] = {}
    tools: dict[str, str | None] = {}
    data_summary: str | None = None
    timings: dict[str, float] = {}
    finished: str | None = None
    report: str | None = None
    waiting_for: dict | None = None
    resumed: int = 0


@dataclass
class RunContext:
    settings: Any
    tools: dict
    planner: Any
    ledger: Ledger
    run_dir: Path
    manifest: RunManifest
    progress: Callable[[str, dict], None] = lambda event, info: None
    timings: dict = field(
        default_factory=lambda: {"load_s": 0.0, "plan_s": 0.0, "tools_s": 0.0, "persist_s": 0.0, "report_s": 0.0}
    )
    started: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0  # wall time spent on this run by earlier processes (before a resume)
    base: Any = None  # an AnnData given in memory (c2s.ask); else the input is read from ``manifest.data``
    state: Any = None  # a session's working AnnData as the previous turn left it (same process): used as it is
    history: list[Path] = field(default_factory=list)  # slot folders of the session's earlier turns, oldest first
    _adata: Any = None
    _view: Any = None
    _saved: dict = field(default_factory=dict)  # fingerprint of the slots as saved

    @property
    def data(self) -> str | None:
        return self.manifest.data

    def wall(self) -> float:
        """Wall time of the run so far, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def slots_dir(self) -> Path:
        """The run's saved slots: one delta file per step that changed obs, var, obsm, layers or uns."""
        return self.run_dir / "slots"

    def save_manifest(self, **changes) -> None:
        """Update the manifest and write ``run.json`` (atomically)."""
        self.manifest = self.manifest.model_copy(update=changes)
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.manifest.model_dump(), indent=1, default=str))
        tmp.replace(self.run_dir / "run.json")

    def input_path(self) -> Path | None:
        from ..resources import DEMO_ALIASES, DEMO_DATASETS, demo_path

        if self.data is None:
            return None
        return demo_path(self.data) if self.data in DEMO_DATASETS or self.data in DEMO_ALIASES else Path(self.data)

    def adata(self):
        """The working AnnData: the session's state, else the input normalised plus the slots the session's earlier
        turns and this run's earlier steps saved. How it was obtained is a ledger row (step ``data``)."""
        if self._adata is None and (self.data is not None or self.base is not None or self.state is not None):
            t0 = time.perf_counter()  # includes importing anndata/scanpy the first time: part of loading
            from ..data import prepare, read
            from .slots import apply_deltas, fingerprint

            if self.state is not None:
                adata, how = self.state, "session state"
            else:
                adata = prepare(self.base if self.base is not None else read(self.data))
                for folder in [*self.history, self.slots_dir]:
                    apply_deltas(adata, folder)
                how = "in-memory AnnData" if self.base is not None else "read"
            self._saved = fingerprint(adata)
            self._adata = adata
            took = time.perf_counter() - t0
            self.timings["load_s"] += took
            self.ledger.record(
                "data",
                "data",
                name=how,
                duration_s=took,
                arguments={"data": self.data, "earlier_turns": len(self.history), "shape": [adata.n_obs, adata.n_vars]},
            )
        return self._adata

    def view(self):
        """What the dataset offers a question (:class:`~c2s_agent.agent.dataset.DatasetView`), read once."""
        from .dataset import DatasetView

        adata = self.adata()
        if adata is None:
            return None
        if self._view is None:
            self._view = DatasetView.from_adata(adata)
        return self._view

    def persist(self) -> None:
        """Save what the last step changed in the working data's slots (X is never saved: tools add results
        in slots and leave X alone, and the input is normalised again on resume)."""
        from .slots import save_delta

        t0 = time.perf_counter()
        self._saved = save_delta(self._adata, self.slots_dir, self._saved)
        self.timings["persist_s"] += time.perf_counter() - t0
