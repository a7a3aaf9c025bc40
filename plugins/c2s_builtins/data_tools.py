"""Built-in data tools: describe a dataset, cell sentences, marker genes, captions, the reverse transform.

Each tool validates its input, calls one function of :mod:`c2s_agent.tl` and packs the result with its plots
(:mod:`c2s_agent.pl`). The agent hands tools a normalised AnnData (``X`` = log1p(CP10k)).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from c2s_agent import hookimpl, pl, tl
from c2s_agent.conventions.slots import CELL_TYPE, CLUSTER, CONDITION, MARKERS, SAMPLE
from c2s_agent.tools import Tool, ToolContext, ToolResult


# ---------------------------------------------------------------- describe_dataset
class DescribeInput(BaseModel):
    column: str | None = Field(
        None, description="an obs column to break the cells down by", json_schema_extra={"entity": "obs_column"}
    )


class DescribeOutput(BaseModel):
    n_cells: int
    n_genes: int
    normalisation: list[str]
    obs_columns: dict[str, int | str] = Field(description="categorical columns: number of values; else 'numeric'")
    roles: dict[str, str | None] = Field(description="which column holds cell types, conditions, samples, clusters")
    species: str | None
    obsm: list[str]
    breakdown_column: str | None
    breakdown: dict[str, int]


def describe_dataset(ctx: ToolContext, args: DescribeInput) -> ToolResult:
    d = tl.describe(ctx.adata, args.column)
    roles = {r: getattr(d.roles, r) for r in (CELL_TYPE, CONDITION, SAMPLE, CLUSTER)}
    out = DescribeOutput(
        n_cells=d.n_cells,
        n_genes=d.n_genes,
        normalisation=d.normalisation,
        obs_columns=d.columns,
        roles=roles,
        species=d.species.name,
        obsm=d.obsm,
        breakdown_column=d.breakdown_column,
        breakdown=d.breakdown,
    )
    ctx.save_table(d.table(), "obs_columns", "Annotation columns and their roles")
    if d.breakdown_column:
        ctx.save_plot(
            pl.counts(d.breakdown, f"Cells per {d.breakdown_column}"),
            "cells_per_group",
            f"Cells per {d.breakdown_column}",
        )
    parts = ", ".join(f"{k} ({v})" for k, v in list(d.breakdown.items())[:8])
    found = "; ".join(f"{r.replace('_', ' ')}: {c!r}" for r, c in roles.items() if c)
    return ToolResult(
        output=out,
        evidence=(
            f"The dataset has {d.n_cells:,} cells and {d.n_genes:,} genes ({d.species.name or 'organism not clear'}: "
            f"{d.species.evidence}); columns by role: {found or 'none recognised'}."
            + (f" By {d.breakdown_column}: {parts}." if d.breakdown_column else "")
        ),
    )


# ---------------------------------------------------------------- cell_sentences
class SentencesInput(BaseModel):
    top_k: int = Field(
        200,
        ge=1,
        le=5000,
        description="number of top expressed genes per cell sentence",
        json_schema_extra={"entity": "number"},
    )
    tie_break: Literal["random", "mean"] = "random"
    seed: int = 42


class SentencesOutput(BaseModel):
    n_cells: int
    top_k: int
    median_length: float
    example: str


def cell_sentences(ctx: ToolContext, args: SentencesInput) -> ToolResult:
    import pandas as pd

    from c2s_agent.sentences import to_sentences
    from c2s_agent.sentences.transform import to_adata

    cs = to_sentences(ctx.adata, top_k=args.top_k, tie_break=args.tie_break, seed=args.seed, on_collision="keep_first")
    to_adata(ctx.adata, cs)
    first = range(min(20, len(cs)))
    ctx.save_table(
        pd.DataFrame(
            {"cell": cs.obs_names[:20], "sentence (top 20 genes)": [cs.sentence(i, 20) for i in first]}
        ).set_index("cell"),
        "sentences",
        "First cell sentences (top 20 genes)",
    )
    ctx.save_plot(pl.lengths(cs.lengths), "lengths", "Cell sentence lengths")
    out = SentencesOutput(
        n_cells=len(cs), top_k=args.top_k, median_length=float(np.median(cs.lengths)), example=cs.sentence(0, 30)
    )
    return ToolResult(
        output=out,
        evidence=f"Converted {len(cs):,} cells to sentences of their top {args.top_k} genes "
        f"(median length {out.median_length:.0f}); the first cell begins: {cs.sentence(0, 10)}.",
    )


# ---------------------------------------------------------------- marker_genes
class MarkersInput(BaseModel):
    groupby: str = Field(
        description="obs column whose groups are compared (e.g. cell type, condition)",
        json_schema_extra={"entity": "obs_column"},
    )
    groups: list[str] | None = Field(
        None,
        description="values of the groupby column to report; all when unset",
        json_schema_extra={"entity": "obs_values"},
    )
    within: list[str] | None = Field(
        None,
        description="restrict to cells labelled with one of these values in another obs column (e.g. only monocytes)",
        json_schema_extra={"entity": "obs_filter"},
    )
    n_genes: int = Field(
        5, ge=1, le=200, description="top marker genes per group", json_schema_extra={"entity": "number"}
    )
    method: Literal["wilcoxon", "t-test"] = Field("wilcoxon", description="differential expression test")
    min_fold_change: float = Field(
        2.0, ge=1, description="least fold change of a marker against the rest", json_schema_extra={"entity": "number"}
    )
    housekeeping: bool = Field(False, description="also report ribosomal and mitochondrial genes")


class MarkersOutput(BaseModel):
    groupby: str
    n_cells: int
    markers: dict[str, list[str]]
    rule: str


def marker_genes(ctx: ToolContext, args: MarkersInput) -> ToolResult:
    table = tl.marker_genes(
        ctx.adata,
        args.groupby,
        args.groups,
        args.within,
        args.n_genes,
        args.method,
        args.min_fold_change,
        housekeeping=args.housekeeping,
    )
    info = ctx.adata.uns[MARKERS]
    markers = {g: table.loc[table.group == g, "gene"].tolist() for g in info["groups"]}
    ctx.save_table(table, "markers", f"Top {args.n_genes} marker genes per {args.groupby}")
    if len(table):
        ctx.save_plot(pl.markers(ctx.adata, table, args.groupby), "dotplot", f"Marker genes per {args.groupby}")
    subset = f" among cells labelled {', '.join(args.within)}" if args.within else ""
    lines = "; ".join(f"{g}: {', '.join(gs) or 'none passes'}" for g, gs in list(markers.items())[:12])
    out = MarkersOutput(groupby=args.groupby, n_cells=info["n_cells"], markers=markers, rule=info["rule"])
    return ToolResult(
        output=out,
        method=f"marker genes: {info['rule']}",
        evidence=(f"Top {args.n_genes} marker genes per {args.groupby}{subset} ({info['n_cells']:,} cells): {lines}."),
    )


# ---------------------------------------------------------------- caption_groups
class CaptionInput(BaseModel):
    groupby: str = Field(
        description="obs column whose groups get captions (clusters, cell types)",
        json_schema_extra={"entity": "obs_column"},
    )
    groups: list[str] | None = Field(None, description="only these groups", json_schema_extra={"entity": "obs_values"})
    n_genes: int = Field(5, ge=1, le=20, description="marker genes per caption", json_schema_extra={"entity": "number"})


class CaptionOutput(BaseModel):
    method: str
    captions: dict[str, str]


def caption_groups(ctx: ToolContext, args: CaptionInput) -> ToolResult:
    import pandas as pd

    from c2s_agent.knowledge.index import load

    caps = tl.caption_groups(ctx.adata, args.groupby, load(ctx.settings, progress=False), args.n_genes, args.groups)
    ctx.save_table(
        pd.DataFrame([c.model_dump() for c in caps]).set_index("group"), "captions", f"Captions per {args.groupby}"
    )
    out = CaptionOutput(method=tl.captions.METHOD, captions={c.group: c.text for c in caps})
    return ToolResult(
        output=out,
        method=f"captions: {out.method}",
        evidence=f"Captions per {args.groupby}: " + " ".join(c.text for c in caps[:6]),
    )


# ---------------------------------------------------------------- reconstruct_expression
class ReconstructInput(BaseModel):
    top_k: int = Field(
        100,
        ge=5,
        le=2000,
        description="ranked genes per cell to reconstruct and score",
        json_schema_extra={"entity": "number"},
    )
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of cells held out for scoring")
    seed: int = 0


class ReconstructOutput(BaseModel):
    n_fit_cells: int
    n_heldout_cells: int
    r2: float
    pearson: float
    spearman: float


def reconstruct_expression(ctx: ToolContext, args: ReconstructInput) -> ToolResult:
    res = tl.reverse_fit(ctx.adata, args.top_k, args.holdout_fraction, args.seed)
    ctx.save_file(
        res.fit.save(ctx.artefact_path("reverse_transform.json")),
        "Fitted reverse transform (JSON)",
    )
    ctx.save_plot(
        pl.reverse_fit(res.fit, res.held_out, args.top_k, res.scores),
        "fit",
        "Expression against rank on held-out cells",
    )
    out = ReconstructOutput(n_fit_cells=res.n_fit_cells, n_heldout_cells=len(res.held_out), **res.scores)
    return ToolResult(
        output=out,
        evidence=(
            f"The reverse transform (expression from rank), fitted on {out.n_fit_cells:,} cells, reconstructs the top "
            f"{args.top_k} genes of {out.n_heldout_cells:,} held-out cells with R²={out.r2:.3f}, Pearson r="
            f"{out.pearson:.3f} and Spearman rho={out.spearman:.3f}."
        ),
    )


@hookimpl
def register_tools(register):
    register(
        Tool(
            name="describe_dataset",
            description="Describe a single-cell dataset: how many cells and genes, which annotation columns it has, and "
            "how many cells fall in each group.",
            examples=[
                "What is in this dataset?",
                "How many cells are there per cell type?",
                "Which cell types does this dataset contain?",
                "Summarise the data",
                "Which annotations and conditions does the dataset have?",
                "How many cells and genes does it have?",
                "Give an overview of the data",
                "Split the cell counts by sample",
                "Count the cells in each cluster",
                "Which groups exist and how large is each?",
            ],
            input_model=DescribeInput,
            output_model=DescribeOutput,
            run=describe_dataset,
        )
    )
    register(
        Tool(
            name="cell_sentences",
            description="Convert cells to Cell2Sentence cell sentences: each cell becomes its gene names ordered by "
            "expression, the input of C2S language models.",
            examples=[
                "Turn the cells into cell sentences",
                "Convert cells to ranked gene sentences using the top 100 genes",
                "Show me the cell sentences",
                "Rank each cell's genes by expression",
            ],
            input_model=SentencesInput,
            output_model=SentencesOutput,
            run=cell_sentences,
            produces=("obsm:c2s_rank_idx",),
        )
    )
    register(
        Tool(
            name="marker_genes",
            description="Find marker genes that distinguish groups of cells (cell types, clusters, or conditions such "
            "as stimulated versus control) with a differential expression test; also how a cell population "
            "responds to a treatment.",
            examples=[
                "Which marker genes distinguish the cell types?",
                "Find the top 10 markers for each cluster",
                "What genes are differentially expressed between stim and ctrl?",
                "Which genes are specific to CD14 Mono cells?",
                "How do monocytes respond to interferon?",
                "Differential expression between conditions in B cells",
                "Run a DE test between groups",
                "What makes each cell population different from the others?",
                "Which genes characterise each group of cells?",
                "What makes the NK cells special?",
                "Which genes change in NK cells between stimulated and control?",
                "What changes in these cells after treatment?",
                "Contrast one group of cells with another",
                "How different are the groups from each other?",
            ],
            input_model=MarkersInput,
            output_model=MarkersOutput,
            run=marker_genes,
            produces=("uns:c2s_markers",),
            cost="medium",
        )
    )
    register(
        Tool(
            name="caption_groups",
            description="Caption each cluster or cell type in words: its marker genes, the C2S-predicted cell type "
            "(when annotation ran), the Cell Ontology definition and curated interactions of the markers.",
            examples=[
                "Write a caption for every cell type",
                "Write captions for the seurat clusters",
                "Describe each cell type in plain words with its markers and ontology definition",
            ],
            input_model=CaptionInput,
            output_model=CaptionOutput,
            run=caption_groups,
        )
    )
    register(
        Tool(
            name="reconstruct_expression",
            description="Fit the reverse transform that turns cell sentences back into expression values and measure "
            "how well ranks reconstruct expression on held-out cells (R², Pearson, Spearman).",
            examples=[
                "How well can expression be reconstructed from cell sentences?",
                "Fit the reverse transform and report R squared",
                "Convert sentences back to expression",
                "How much information is lost by ranking genes?",
                "How well does gene rank predict expression level?",
                "Reconstruct expression values from the top ranked genes",
            ],
            input_model=ReconstructInput,
            output_model=ReconstructOutput,
            run=reconstruct_expression,
            requires=("obsm:c2s_rank_idx",),
            produces=("uns:c2s_reverse_fit",),
        )
    )
