"""An example third-party c2s-agent plugin: score each cell's cell-cycle phase (S, G2M or G1).

Loaded through the ``c2s_agent`` entry point ``cell_cycle``; it uses only the public plugin API
(``c2s_agent.hookimpl`` and ``c2s_agent.tools``). The tool packs :func:`.cell_cycle.score_cell_cycle`, which
works without the agent.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from c2s_agent import hookimpl
from c2s_agent.tools import Tool, ToolContext, ToolResult

from .cell_cycle import G2M_SCORE, PHASE, S_SCORE, plot_scores, score_cell_cycle


class CellCycleInput(BaseModel):
    groupby: str | None = Field(
        None,
        description="obs column to tabulate phases by (e.g. cell type)",
        json_schema_extra={"entity": "obs_column"},
    )


class CellCycleOutput(BaseModel):
    phase_counts: dict[str, int]
    n_s_genes: int
    n_g2m_genes: int
    by_group: dict[str, dict[str, float]] = Field(default_factory=dict, description="fraction of cells per phase")


def cell_cycle_phase(ctx: ToolContext, args: CellCycleInput) -> ToolResult:
    cc = score_cell_cycle(ctx.adata, args.groupby)
    by_group = {}
    if cc.by_group is not None:
        by_group = {g: {p: round(float(v), 4) for p, v in row.items()} for g, row in cc.by_group.iterrows()}
        ctx.save_table(cc.by_group, "phase_by_group", f"Fraction of cells per phase by {args.groupby}")
    ctx.save_plot(plot_scores(ctx.adata), "scores", "Cell-cycle S and G2/M scores")
    cycling = cc.counts.get("S", 0) + cc.counts.get("G2M", 0)
    evidence = (
        f"Cell-cycle scoring ({len(cc.s_genes)} S and {len(cc.g2m_genes)} G2/M genes) calls {cycling:,} of "
        f"{ctx.adata.n_obs:,} cells cycling: " + ", ".join(f"{p} {n:,}" for p, n in cc.counts.items()) + "."
    )
    if by_group:
        top = sorted(by_group.items(), key=lambda kv: -(kv[1].get("S", 0) + kv[1].get("G2M", 0)))[:3]
        evidence += (
            " Most cycling groups: "
            + ", ".join(f"{g} ({100 * (v.get('S', 0) + v.get('G2M', 0)):.0f}%)" for g, v in top)
            + "."
        )
    out = CellCycleOutput(
        phase_counts=cc.counts, n_s_genes=len(cc.s_genes), n_g2m_genes=len(cc.g2m_genes), by_group=by_group
    )
    return ToolResult(output=out, evidence=evidence)


@hookimpl
def register_tools(register):
    register(
        Tool(
            name="cell_cycle_phase",
            description="Score each cell's cell-cycle phase (G1, S or G2/M) from G1/S and G2/M marker gene lists, "
            "to find proliferating, dividing or cycling cells.",
            examples=[
                "Which cell cycle phase are the cells in?",
                "Which cells are proliferating?",
                "Score the cell cycle",
                "How many cells are in S or G2M phase per cell type?",
                "Are any populations dividing?",
            ],
            input_model=CellCycleInput,
            output_model=CellCycleOutput,
            run=cell_cycle_phase,
            produces=(f"obs:{PHASE}", f"obs:{S_SCORE}", f"obs:{G2M_SCORE}"),
        )
    )
