"""An example third-party c2s-agent plugin: score each cell's cell-cycle phase (S, G2M or G1).

Loaded through the ``c2s_agent`` entry point ``cell_cycle``; it uses only the public plugin API
(``c2s_agent.hookimpl`` and ``c2s_agent.tools``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from c2s_agent import hookimpl
from c2s_agent.tools import Tool, ToolContext, ToolResult

GMT = Path(__file__).parent / "data" / "pegasus_cell_cycle_human.gmt"


def gene_lists() -> dict[str, list[str]]:
    """The packaged G1/S and G2/M gene lists."""
    out = {}
    for line in GMT.read_text().splitlines():
        name, _desc, *genes = line.split("\t")
        out[name] = [g for g in genes if g]
    return out


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
    import matplotlib.pyplot as plt
    import pandas as pd
    import scanpy as sc

    from c2s_agent.errors import InputError

    adata = ctx.adata
    lists = gene_lists()
    upper = {g.upper(): g for g in adata.var_names}
    s_genes = [upper[g.upper()] for g in lists["G1/S"] if g.upper() in upper]
    g2m_genes = [upper[g.upper()] for g in lists["G2/M"] if g.upper() in upper]
    if len(s_genes) < 10 or len(g2m_genes) < 10:
        raise InputError(
            "dataset genes",
            f"cover only {len(s_genes)} S and {len(g2m_genes)} G2/M cell-cycle genes",
            "use human gene symbols in var_names (at least 10 of each list)",
        )
    if args.groupby and args.groupby not in adata.obs.columns:
        raise InputError(f"groupby={args.groupby!r}", "is not an obs column", f"use one of {list(adata.obs.columns)}")
    work = sc.AnnData(adata.X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.tl.score_genes_cell_cycle(work, s_genes=s_genes, g2m_genes=g2m_genes, random_state=0)
    adata.obs["c2s_S_score"] = work.obs["S_score"].to_numpy()
    adata.obs["c2s_G2M_score"] = work.obs["G2M_score"].to_numpy()
    adata.obs["c2s_phase"] = pd.Categorical(work.obs["phase"].astype(str).to_numpy())
    counts = adata.obs["c2s_phase"].value_counts()
    by_group = {}
    if args.groupby:
        tab = pd.crosstab(adata.obs[args.groupby].astype(str), adata.obs["c2s_phase"], normalize="index")
        by_group = {g: {p: round(float(v), 4) for p, v in row.items()} for g, row in tab.iterrows()}
        ctx.save_table(tab, "phase_by_group", f"Fraction of cells per phase by {args.groupby}")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for phase, colour in (("G1", "#8c8c8c"), ("S", "#4c72b0"), ("G2M", "#c44e52")):
        m = (adata.obs["c2s_phase"] == phase).to_numpy()
        ax.scatter(
            adata.obs["c2s_S_score"][m], adata.obs["c2s_G2M_score"][m], s=4, c=colour, label=f"{phase} ({m.sum()})"
        )
    ax.set_xlabel("S score")
    ax.set_ylabel("G2/M score")
    ax.legend(markerscale=3)
    ax.set_title("Cell-cycle scores")
    ctx.save_plot(fig, "scores", "Cell-cycle S and G2/M scores")
    cycling = int(counts.get("S", 0) + counts.get("G2M", 0))
    evidence = (
        f"Cell-cycle scoring ({len(s_genes)} S and {len(g2m_genes)} G2/M genes) calls {cycling:,} of "
        f"{adata.n_obs:,} cells cycling: " + ", ".join(f"{p} {int(n):,}" for p, n in counts.items()) + "."
    )
    if by_group:
        top = sorted(by_group.items(), key=lambda kv: -(kv[1].get("S", 0) + kv[1].get("G2M", 0)))[:3]
        evidence += (
            " Most cycling groups: "
            + ", ".join(f"{g} ({100 * (v.get('S', 0) + v.get('G2M', 0)):.0f}%)" for g, v in top)
            + "."
        )
    out = CellCycleOutput(
        phase_counts={str(k): int(v) for k, v in counts.items()},
        n_s_genes=len(s_genes),
        n_g2m_genes=len(g2m_genes),
        by_group=by_group,
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
            produces=("obs:c2s_phase", "obs:c2s_S_score", "obs:c2s_G2M_score"),
        )
    )
