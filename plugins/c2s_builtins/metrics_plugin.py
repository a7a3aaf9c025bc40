"""Built-in metrics plugin: the "pca" and "c2s" encoders, and the ``evaluate_generation`` tool.

Heavy work lives in :mod:`c2s_agent.metrics` (through :func:`c2s_agent.tl.generation_metrics`); this module only
registers and packs results.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from c2s_agent import hookimpl, pl, tl
from c2s_agent.errors import InputError
from c2s_agent.registry import EncoderFactory
from c2s_agent.tools import Tool, ToolContext, ToolResult

GENERATED_FILE = "generated_cells.h5ad"


@hookimpl
def register_encoders(register):
    from c2s_agent.metrics.encoders import C2SEncoder, ReferenceEncoder

    register(EncoderFactory("pca", lambda settings=None: ReferenceEncoder()))
    register(EncoderFactory("c2s", lambda settings=None: C2SEncoder(settings)))


class EvaluateInput(BaseModel):
    generated: str | None = Field(
        None,
        description="generated cells: an .h5ad or .txt path (relative paths are read "
        "from the run directory), the id of the step that generated them, or empty for "
        "the latest generated cells of this run",
    )
    real_column: str | None = Field(
        None,
        description="obs column selecting the real cells to compare with",
        json_schema_extra={"entity": "obs_column"},
    )
    real_value: str | None = Field(
        None,
        description="value of real_column for the real cells (e.g. a cell type)",
        json_schema_extra={"entity": "obs_values"},
    )
    control_column: str | None = Field(None, description="obs column selecting control cells, for fold-change metrics")
    control_value: str | None = Field(None, description="value of control_column for the control cells (e.g. 'ctrl')")
    encoder: str = Field("pca", description="embedding for the distribution metrics: 'pca' (reference PCA) or 'c2s'")
    metrics: list[str] | None = Field(None, description="metrics to compute; default all that apply")
    genes: list[str] | None = Field(None, description="gene program for the fold-change correlations")
    n_boot: int = Field(100, ge=0, le=2000, description="bootstrap resamples for the intervals")


class EvaluateOutput(BaseModel):
    encoder: str
    n_real: int
    n_generated: int
    metrics: dict[str, dict] = Field(description="metric -> {value, interval, n_real, n_generated}")
    notes: list[str]


def _generated_path(ctx: ToolContext, generated: str | None) -> Path:
    run_dir = Path(ctx.run_dir)
    if generated:
        for cand in (run_dir / generated, run_dir / "artefacts" / f"{generated}_{GENERATED_FILE}"):
            cand = ctx.confined(cand, "generated")
            if cand.is_file():
                return cand
        raise InputError(
            f"generated {generated!r}",
            "is neither a file nor a step that generated cells",
            "give an .h5ad path or the id of a generate_cells step of this run",
        )
    found = sorted((run_dir / "artefacts").glob(f"*{GENERATED_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise InputError(
            "generated",
            "was not given and this run has generated no cells",
            "run generate_cells first or pass the path of generated cells",
        )
    return found[-1]


def _where(column, value, name):
    if (column is None) != (value is None):
        raise InputError(f"{name} selection", "needs both a column and a value", f"pass {name}_column and {name}_value")
    return {column: value} if column else None


def evaluate_generation_tool(ctx: ToolContext, args: EvaluateInput) -> ToolResult:
    from c2s_agent.data import read

    path = _generated_path(ctx, args.generated)
    res = tl.generation_metrics(
        ctx.adata,
        path if path.suffix == ".txt" else read(path),
        _where(args.real_column, args.real_value, "real"),
        _where(args.control_column, args.control_value, "control"),
        encoder=args.encoder,
        metrics=args.metrics,
        genes=args.genes,
        n_boot=args.n_boot,
        settings=ctx.settings,
    )
    result, summary = res.result, res.result.to_dict()
    ctx.save_table(
        result.table(), "generation_metrics", "Generated vs real cells: metrics with 95% bootstrap intervals"
    )
    ctx.save_plot(pl.generation_metrics(result), "generation_metrics", "Metric values with bootstrap intervals")
    ctx.save_plot(pl.generation_embedding(result), "generation_embedding", "Real and generated cells on a shared PCA")
    out = EvaluateOutput(
        encoder=result.encoder,
        n_real=summary["n_real"],
        n_generated=summary["n_generated"],
        metrics=summary["metrics"],
        notes=result.notes,
    )
    parts = []
    for name, m in summary["metrics"].items():
        iv = f" [{m['interval'][0]:.3g}, {m['interval'][1]:.3g}]" if m["interval"] and None not in m["interval"] else ""
        parts.append(f"{name} {m['value']:.3g}{iv}" if m["value"] is not None else f"{name} undefined")
    evidence = (
        f"Compared {out.n_generated} generated cells ({path.name}) with {out.n_real} real cells"
        f"{f' ({res.real})' if res.real else ''} in the {result.encoder} embedding: " + "; ".join(parts) + "."
    )
    return ToolResult(output=out, evidence=evidence)


@hookimpl
def register_tools(register):
    register(
        Tool(
            name="evaluate_generation",
            description="Measure how close generated cells are to real ones: scFID (Frechet distance of embeddings), "
            "MMD, energy and sliced Wasserstein distances, per-gene Wasserstein, and, given control cells, "
            "agreement of predicted and observed fold changes; each with a bootstrap interval.",
            examples=[
                "How far are the simulated cells from the real ones by MMD?",
                "How realistic are the generated cells?",
                "Compute scFID between generated and real CD14 Mono cells",
                "Evaluate the generated cells against the real data",
                "Compare generated and real cells with MMD",
                "Does the predicted response match the observed fold changes?",
            ],
            input_model=EvaluateInput,
            output_model=EvaluateOutput,
            run=evaluate_generation_tool,
            requires=(f"file:{GENERATED_FILE}",),
            produces=("uns:c2s_generation_metrics",),
            cost="medium",
        )
    )
