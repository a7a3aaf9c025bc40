"""The tool contract: what a tool needs and produces, validated input and output, artefacts and evidence, and
what the agent may build from its results (hypotheses, report notes). The agent knows tools only through it."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError, PlanError

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from .config import Settings

SLOT_RE = re.compile(r"^(obs|var|obsm|varm|uns|layers|file):[A-Za-z0-9_{}.\-/]+$")


class Artefact(BaseModel):
    """A file a tool wrote into the run directory."""

    kind: Literal["table", "plot", "file", "h5ad"]
    path: str = Field(description="path relative to the run directory")
    title: str


class ToolResult(BaseModel):
    """What a tool run returns: structured output, artefacts, a short evidence text for the report, and how the
    numbers were made when a reader should know it (the report lists it under Limitations)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    output: BaseModel
    artefacts: list[Artefact] = []
    evidence: str
    method: str | None = None


class Evidence(BaseModel):
    """One piece of evidence behind a hypothesis: from the data, a model or curated knowledge."""

    kind: Literal["data", "model", "knowledge"]
    text: str
    step: str | None = Field(None, description="the step whose result this comes from")
    source: str | None = Field(None, description="the knowledge source, for knowledge evidence")


class Hypothesis(BaseModel):
    """A testable hypothesis with its evidence, a confidence in [0, 1] (the mean of its parts) and the experiment
    that would test it."""

    id: str = ""
    statement: str
    evidence: list[Evidence]
    confidence: float
    confidence_parts: dict[str, float]
    experiment: str


class StepResult(BaseModel):
    """A finished step as the agent stores it: the tool's result with the step's id, tool and arguments."""

    step: str
    tool: str
    plugin: str | None = None
    args: dict = {}
    why: str = ""
    evidence: str
    method: str | None = None
    output: dict = {}
    artefacts: list[Artefact] = []
    duration_s: float = 0.0


class HypothesisContext:
    """What a tool's hypothesis builder may use: the run directory (to read its tables), settings, the other
    steps' results, and the condition of interest (when ``Tool.focus_args`` named one)."""

    def __init__(self, run_dir: Path, settings: Settings, results: list[StepResult], focus: str | None = None):
        self.run_dir, self.settings, self.results, self.focus = Path(run_dir), settings, results, focus

    def table(self, result: StepResult, suffix: str) -> list[dict]:
        """The rows of the step's CSV artefact whose path ends in ``suffix`` ([] when it has none)."""
        import csv

        art = next((a for a in result.artefacts if a.path.endswith(suffix)), None)
        if art is None or not (self.run_dir / art.path).exists():
            return []
        with open(self.run_dir / art.path, newline="") as fh:
            return list(csv.DictReader(fh))


class ToolContext:
    """What a running tool may use: the dataset, the run directory, settings and a model-call recorder."""

    def __init__(
        self,
        adata: ad.AnnData | None,
        run_dir: Path,
        settings: Settings,
        step_id: str = "step",
        record_call: Callable[..., None] | None = None,
        data_path: Path | None = None,
    ):
        self.adata, self.run_dir, self.settings = adata, Path(run_dir), settings
        self.step_id, self.data_path = step_id, data_path
        self._record_call = record_call
        self.artefacts: list[Artefact] = []

    def record_call(self, kind: str, **fields: Any) -> None:
        """Record a model or service call in the run ledger: ``kind`` ("model", ...) and fields such as
        ``name``, ``duration_s`` (or ``seconds``), ``tokens_in``/``tokens_out`` (or ``prompt_tokens``/
        ``completion_tokens``), ``input_bytes``, ``output_bytes``; other fields are stored as arguments."""
        if self._record_call is not None:
            self._record_call(kind, **fields)

    def confined(self, value: str | Path, what: str) -> Path:
        """A file path given by a planner, resolved against the run directory and refused unless it lies in the
        run directory or the dataset's folder (no ``..`` escapes, absolute paths elsewhere or symlinks out)."""
        path = (self.run_dir / value).resolve()
        roots = [self.run_dir.resolve()] + ([Path(self.data_path).resolve().parent] if self.data_path else [])
        if not any(path.is_relative_to(r) for r in roots):
            raise InputError(
                f"{what} {str(value)!r}",
                "is outside the run and data directories",
                f"give a path inside {' or '.join(map(str, roots))}",
            )
        return path

    def artefact_path(self, name: str) -> Path:
        """Where this step writes an artefact called ``name`` (in the run's ``artefacts/``, prefixed by the step)."""
        path = self.run_dir / "artefacts" / f"{self.step_id}_{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save_table(self, df: pd.DataFrame, name: str, title: str) -> Artefact:
        path = self.artefact_path(f"{name}.csv")
        df.to_csv(path)
        return self.add("table", path, title)

    def save_plot(self, fig, name: str, title: str) -> Artefact:
        import matplotlib.pyplot as plt

        path = self.artefact_path(f"{name}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.add("plot", path, title)

    def save_file(self, path: Path, title: str, kind: Literal["file", "h5ad"] = "file") -> Artefact:
        return self.add(kind, Path(path), title)

    def add(self, kind: Literal["table", "plot", "file", "h5ad"], path: Path, title: str) -> Artefact:
        """Record a file the step wrote (inside the run directory) as an artefact."""
        art = Artefact(kind=kind, path=str(Path(path).resolve().relative_to(self.run_dir.resolve())), title=title)
        self.artefacts.append(art)
        return art


class Tool(BaseModel):
    """A tool the agent can plan with. ``requires``/``produces`` are slots such as ``obs:c2s_cell_type``,
    ``obsm:X_c2s`` or ``uns:c2s_markers``; ``{arg}`` placeholders are filled from the tool's arguments.

    The embedded planner fills arguments from the question by each input field's name, type and description.
    A field may say which entity it takes with ``json_schema_extra={"entity": KIND}``, KIND one of
    ``"obs_column"`` (a column of ``adata.obs``), ``"obs_value"`` (one value of such a column),
    ``"obs_values"`` (several), ``"gene"``, ``"genes"`` (symbols from ``var_names``), ``"number"``, or
    ``"text"`` (the question clause itself). Without it the kind is guessed from the field name
    (``groupby``/``*_key``/``column`` -> obs_column, ``group(s)`` -> obs value(s), ``gene(s)`` -> genes,
    int/float -> number).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=10)
    examples: list[str] = Field(min_length=1, description="questions this tool answers, for the planner")
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    run: Callable[[ToolContext, Any], ToolResult]
    requires: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    needs_data: bool = True
    cost: Literal["low", "medium", "high"] = "low"
    plugin: str | None = None
    produced_values: Callable[[Any], dict[str, list[str]]] | None = Field(
        None,
        description="the values the tool will write into the obs columns it produces (e.g. the cell types a "
        "model predicts), so planners can match a question's words to them before it runs",
    )
    hypotheses: Callable[[StepResult, HypothesisContext], list[Hypothesis]] | None = Field(
        None, description="builds testable hypotheses from a result of this tool (hypothesis mode)"
    )
    focus_args: Callable[[dict], tuple[dict, str | None]] | None = Field(
        None,
        description="hypothesis mode: the arguments to run with instead (e.g. every condition rather than "
        "one) and the condition of interest taken out of them",
    )

    @field_validator("requires", "produces")
    @classmethod
    def _slots(cls, slots):
        for slot in slots:
            if not SLOT_RE.match(slot):
                raise ValueError(f"slot {slot!r} is not of the form 'obs:name', 'obsm:name', 'uns:name', ...")
        return slots

    def validate_args(self, args: dict) -> BaseModel:
        """Validate planner arguments; a PlanError names the tool, the argument and what it accepts."""
        try:
            return self.input_model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise PlanError(
                f"tool {self.name!r}",
                f"invalid arguments ({problems})",
                f"give arguments matching {sorted(self.input_model.model_fields)}",
            ) from None

    def slots(self, which: Literal["requires", "produces"], args: BaseModel | dict) -> list[str]:
        """Concrete slots with ``{arg}`` placeholders filled; slots whose argument is unset are dropped."""
        values = args.model_dump() if isinstance(args, BaseModel) else dict(args)
        out = []
        for slot in getattr(self, which):
            names = [f for _, f, _, _ in string.Formatter().parse(slot) if f]
            if any(values.get(n) in (None, "") for n in names):
                continue
            out.append(slot.format(**values))
        return out

    def invoke(self, ctx: ToolContext, args: dict) -> ToolResult:
        """Validate arguments, run, and check the output's type."""
        parsed = self.validate_args(args)
        if self.needs_data and ctx.adata is None:
            raise PlanError(f"tool {self.name!r}", "needs a dataset and none was given", "pass --data FILE or demo")
        result = self.run(ctx, parsed)
        if not isinstance(result.output, self.output_model):
            raise TypeError(
                f"tool {self.name} returned {type(result.output).__name__}, not {self.output_model.__name__}"
            )
        result.output = self.output_model.model_validate(result.output.model_dump())  # re-check mutated fields
        seen: dict[str, Artefact] = {}
        for art in [*result.artefacts, *ctx.artefacts]:  # keep order, one per path
            seen.setdefault(art.path, art)
        result.artefacts = list(seen.values())
        return result

    def schema_text(self) -> str:
        """One line per argument: name, type and description (for planners and ``c2s plugins list``)."""
        lines = []
        for name, field in self.input_model.model_fields.items():
            kind = getattr(field.annotation, "__name__", str(field.annotation)).replace("typing.", "")
            req = "required" if field.is_required() else f"default {field.default!r}"
            lines.append(f"{name} ({kind}, {req}): {field.description or ''}".rstrip(": "))
        return "\n".join(lines)


def has_slot(adata, slot: str) -> bool:
    """Whether an AnnData holds ``slot`` (``obs:col``, ``obsm:key``, ``uns:key``, ``layers:key``, ``var:col``)."""
    kind, _, key = slot.partition(":")
    if adata is None or kind == "file":
        return False
    container = getattr(adata, kind)
    return key in (container.columns if kind in ("obs", "var") else container)
