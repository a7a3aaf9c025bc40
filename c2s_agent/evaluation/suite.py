"""Evaluation suites: YAML files naming tasks and the matrix of datasets, models and prompt sets to run them on.

A suite expands into *cells* (one task on one dataset with one model and prompt set); each cell expands into
*items* (cells of a dataset, questions, queries ...), and every item gives one result row.

.. code-block:: yaml

    name: bundled
    matrix: {datasets: [kang2018], models: [embedded], prompt_sets: [null]}
    tasks:
      - task: cell_type_annotation
        params: {limit: 200, chunk_size: 50}
      - task: reverse_transform_r2
        datasets: [kang2018, pbmc68k]     # overrides the matrix for this task
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError
from .store import content_hash

NOT_USED = "-"


class Matrix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(default_factory=lambda: ["kang2018"])
    models: list[str] = Field(default_factory=lambda: ["embedded"])
    prompt_sets: list[str | None] = Field(default_factory=lambda: [None])


class TaskSpec(BaseModel):
    """One task of a suite; ``datasets``/``models``/``prompt_sets`` override the suite matrix."""

    model_config = ConfigDict(extra="forbid")

    task: str
    params: dict[str, Any] = Field(default_factory=dict)
    datasets: list[str] | None = None
    models: list[str] | None = None
    prompt_sets: list[str | None] | None = None


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    matrix: Matrix = Field(default_factory=Matrix)
    tasks: list[TaskSpec]
    path: Path | None = Field(None, exclude=True)

    def cells(self, settings=None) -> list[Cell]:
        """Every (task, dataset, model, prompt set) combination, in suite order; axes a task ignores collapse."""
        from .tasks import get_task

        out: list[Cell] = []
        for spec in self.tasks:
            task = get_task(spec.task, settings)
            params = task.check_params(spec.params, self.path)
            axes = [
                spec.datasets or self.matrix.datasets if task.uses_dataset else [NOT_USED],
                spec.models or self.matrix.models if task.uses_model else [NOT_USED],
                (spec.prompt_sets or self.matrix.prompt_sets) if task.uses_model else [NOT_USED],
            ]
            for dataset, model, prompt_set in itertools.product(*axes):
                cell = Cell(
                    task=spec.task, dataset=dataset, model=model, prompt_set=prompt_set or "default", params=params
                )
                if cell not in out:
                    out.append(cell)
        return out


class Cell(BaseModel):
    """One task on one dataset with one model and prompt set, with the task's parameters."""

    model_config = ConfigDict(frozen=True)

    task: str
    dataset: str
    model: str
    prompt_set: str
    params: dict[str, Any]

    @property
    def id(self) -> str:
        return content_hash(self.model_dump())[:16]

    @property
    def label(self) -> str:
        parts = [p for p in (self.dataset, self.model, self.prompt_set) if p not in (NOT_USED, "default")]
        return f"{self.task} ({', '.join(parts)})" if parts else self.task


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite YAML file, or a bundled suite by name ("bundled"); unknown tasks and parameters
    are InputErrors."""
    from ..resources import bundled

    path = Path(path)
    if not path.exists() and (bundled("evals") / "suites" / f"{path}.yaml").exists():
        path = bundled("evals") / "suites" / f"{path}.yaml"
    if not path.exists():
        raise InputError(
            path, "no such suite file", "pass a YAML suite such as evals/suites/bundled.yaml, or 'bundled'"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"is not valid YAML ({str(exc).splitlines()[0]})", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise InputError(path, "must be a mapping with 'name' and 'tasks'", "see evals/suites/bundled.yaml")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise InputError(f"{path} {where}", err["msg"], "see evals/suites/bundled.yaml for the format") from None
    if not suite.tasks:
        raise InputError(path, "lists no tasks", "add at least one entry under 'tasks'")
    suite.path = path.resolve()
    suite.cells()  # validate task names and parameters now
    return suite
