"""Evaluation tasks: thin adapters that turn one suite cell into items and call the library to score them.

An adapter lists the items of a cell (:meth:`Task.items`), scores a shard of them (:meth:`Task.run`, one
JSON-ready result per item; results depend only on the item and the cell, never on the shard, so any
executor gives the same rows) and aggregates the rows of a cell into metrics (:meth:`Task.summarise`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

from ...errors import InputError
from ...hookspecs import hookimpl
from ...registry import EvalTask
from ..store import content_hash


class Task:
    """Base class of evaluation task adapters."""

    name: ClassVar[str]
    description: ClassVar[str]
    uses_dataset: ClassVar[bool] = True
    uses_model: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    #: metric -> "higher" or "lower" (which way is better), for regression checks
    better: ClassVar[dict[str, str]] = {}
    #: items per shard: a shard is the unit handed to a worker
    shard_size: ClassVar[int] = 1

    def check_params(self, params: dict, suite_path: Path | None) -> dict:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InputError(
                f"task {self.name} params {unknown}",
                "are not parameters of this task",
                f"use some of {sorted(self.defaults)}",
            )
        return {**self.defaults, **params}

    def items(self, cell, settings) -> list[dict]:
        raise NotImplementedError

    def run(self, cell, items: list[dict], settings) -> list[dict]:
        raise NotImplementedError

    def summarise(self, cell, results: list[dict]) -> dict[str, float | int | None]:
        raise NotImplementedError

    def source_hash(self) -> str:
        """Hash of the adapter's module source: part of every row key, so editing an adapter re-runs it."""
        return content_hash(inspect.getsource(inspect.getmodule(type(self))))[:12]


def get_task(name: str, settings=None) -> Task:
    """The registered evaluation task called ``name`` (hook ``register_eval_tasks``)."""
    from ... import registry

    tasks = registry.eval_tasks(settings)
    if name not in tasks:
        raise InputError(f"task {name!r}", "is not an evaluation task", f"use one of {sorted(tasks)}")
    return tasks[name].task


def resolve_dataset(name: str) -> str:
    """A dataset value of a suite as a path for :func:`c2s_agent.data.read` ("kang2018", "pbmc68k" or a file)."""
    from ...resources import DEMO_ALIASES, DEMO_DATASETS

    if name in DEMO_DATASETS or name in DEMO_ALIASES:
        return name
    path = Path(name).expanduser()
    if not path.exists():
        raise InputError(
            f"dataset {name!r}",
            "is neither a bundled dataset nor an existing .h5ad file",
            "use kang2018, pbmc68k or the path of an .h5ad file",
        )
    return str(path.resolve())


def read_rows(dataset: str, positions) -> Any:
    """The cells at ``positions`` of ``dataset``, read from the backed ``.h5ad`` (only those rows are loaded)."""
    import numpy as np

    from ...data import read

    backed = read(resolve_dataset(dataset), backed=True)
    try:
        return backed[np.sort(np.asarray(positions, dtype=np.int64))].to_memory()
    finally:
        backed.file.close()


def read_obs(dataset: str):
    """The obs table of ``dataset`` without loading its matrix."""
    from ...data import read

    backed = read(resolve_dataset(dataset), backed=True)
    try:
        return backed.obs.copy()
    finally:
        backed.file.close()


def load_cell_model(cell, settings):
    """The model of a cell (loaded once per process) with the cell's prompt set."""
    from ...models import C2SModel, load_model

    model = load_model(cell.model, settings)
    if cell.prompt_set in ("default", None):
        return model
    return C2SModel(model.backend, cell.prompt_set)


def model_meta(cell, settings) -> dict:
    """A model's metadata (labels, split, perturbations): read from ``c2s_model.json`` without loading the
    weights when the model is a folder that has one, so planning a cached run stays fast."""
    import json

    from ...models.model import resolve

    _, target = resolve(cell.model, settings)
    meta = Path(target) / "c2s_model.json"
    if Path(target).is_dir() and meta.exists():
        return json.loads(meta.read_text())
    return load_cell_model(cell, settings).meta


def rounded(x, digits: int = 10):
    """Floats rounded for stable JSON rows (None for NaN/inf)."""
    import math

    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else float(f"{x:.{digits}g}")


@hookimpl
def register_eval_tasks(register):
    """The built-in evaluation tasks (the planner's is registered by the agent)."""
    from . import annotation, generation, multicell, perturbation, retrieval, reverse

    for module in (annotation, generation, perturbation, retrieval, reverse, multicell):
        register(EvalTask(module.TASK.name, module.TASK))
