"""What the graph's nodes share during one process's part of a run: settings, tools, planner, ledger, the
working AnnData (its slots saved to ``runs/<id>/slots.h5ad`` after every step that adds any) and timings."""

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
        """The run's saved slots: obs, var, obsm, uns and layers of the working data, without X."""
        return self.run_dir / "slots.h5ad"

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
            import anndata as ad

            from ..data import prepare, read

            adata = prepare(read(self.data))
            if self.data_file.exists():
                saved = ad.read_h5ad(self.data_file)
                adata.obs, adata.var = saved.obs, saved.var
                adata.obsm.update(dict(saved.obsm))
                adata.uns.update(dict(saved.uns))
                adata.layers.update(dict(saved.layers))
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
        """Save the working data's slots atomically (temp file, fsync, rename). X is not saved: tools add
        results in slots and leave X alone, and the input can be normalised again on resume."""
        import anndata as ad
        import scipy.sparse as sp

        t0 = time.perf_counter()
        a = self._adata
        slots = ad.AnnData(X=sp.csr_matrix(a.shape, dtype="float32"), obs=a.obs, var=a.var, obsm=dict(a.obsm),
                           uns=dict(a.uns), layers=dict(a.layers))
        tmp = self.data_file.with_suffix(".tmp.h5ad")
        slots.write_h5ad(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.data_file)
        self.timings["persist_s"] += time.perf_counter() - t0
