"""The tool contract: validated input and output, slots, artefacts (one per path) and evidence."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from c2s_agent.config import Settings
from c2s_agent.errors import PlanError
from c2s_agent.tools import Tool, ToolContext, ToolResult, has_slot


class In(BaseModel):
    groupby: str = Field(description="obs column")
    n: int = Field(3, ge=1)


class Out(BaseModel):
    counts: dict[str, int]


def _count(ctx: ToolContext, args: In) -> ToolResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = ctx.adata.obs[args.groupby].value_counts().head(args.n)
    art = ctx.save_table(counts.to_frame(), "counts", "Cells per group")
    fig, ax = plt.subplots()
    counts.plot.bar(ax=ax)
    ctx.save_plot(fig, "counts", "Cells per group")
    ctx.adata.uns[f"counted_{args.groupby}"] = True
    return ToolResult(
        output=Out(counts={str(k): int(v) for k, v in counts.items()}),
        artefacts=[art],
        evidence=f"{len(counts)} groups",
    )


def _tool(**kw) -> Tool:
    base = dict(
        name="count_groups",
        description="Count the cells in each group of an obs column.",
        examples=["How many cells per cell type?"],
        input_model=In,
        output_model=Out,
        run=_count,
        produces=("uns:counted_{groupby}",),
    )
    return Tool(**{**base, **kw})


def test_invoke_validates_runs_and_keeps_one_artefact_per_path(kang, tmp_path):
    adata = kang.copy()
    ctx = ToolContext(adata, tmp_path, Settings(), step_id="s1")
    res = _tool().invoke(ctx, {"groupby": "cell_type", "n": 2})
    assert res.output.counts == {"CD14 Mono": 643, "CD4 Naive T": 360}
    assert [a.path for a in res.artefacts] == ["artefacts/s1_counts.csv", "artefacts/s1_counts.png"]
    assert (tmp_path / "artefacts" / "s1_counts.png").stat().st_size > 1000
    assert has_slot(adata, "uns:counted_cell_type")


def test_bad_arguments_name_the_tool_and_argument(kang, tmp_path):
    ctx = ToolContext(kang, tmp_path, Settings())
    with pytest.raises(PlanError, match=r"tool 'count_groups': invalid arguments \(n: Input should be greater"):
        _tool().invoke(ctx, {"groupby": "cell_type", "n": 0})
    with pytest.raises(PlanError, match=r"groupby: Field required"):
        _tool().validate_args({})


def test_needs_data(tmp_path):
    with pytest.raises(PlanError, match="needs a dataset and none was given"):
        _tool().invoke(ToolContext(None, tmp_path, Settings()), {"groupby": "x"})


def test_wrong_output_type_is_caught(kang, tmp_path):
    class Other(BaseModel):
        x: int = 1

    bad = _tool(run=lambda ctx, a: ToolResult(output=Other(), evidence="?"))
    with pytest.raises(TypeError, match="returned Other, not Out"):
        bad.invoke(ToolContext(kang, tmp_path, Settings()), {"groupby": "cell_type"})


def test_slots_fill_placeholders_and_reject_bad_forms():
    assert _tool().slots("produces", {"groupby": "condition"}) == ["uns:counted_condition"]
    with pytest.raises(ValidationError, match="is not of the form"):
        _tool(requires=("cell_type",))
