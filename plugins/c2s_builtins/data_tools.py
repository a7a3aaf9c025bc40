"""Built-in data tools: describe a dataset, cell sentences, marker genes per group, reverse transform.

The agent hands these tools a normalised AnnData (``X`` = log1p(CP10k), see :func:`c2s_agent.data.prepare`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from c2s_agent import hookimpl
from c2s_agent.errors import InputError
from c2s_agent.tools import Tool, ToolContext, ToolResult


# ---------------------------------------------------------------- describe_dataset
class DescribeInput(BaseModel):
    column: str | None = Field(None, description="an obs column to break the cells down by",
                               json_schema_extra={"entity": "obs_column"})


class DescribeOutput(BaseModel):
    n_cells: int
    n_genes: int
    normalisation: list[str]
    obs_columns: dict[str, int | str] = Field(description="categorical columns: number of values; else 'numeric'")
    obsm: list[str]
    breakdown_column: str | None
    breakdown: dict[str, int]


LABEL_HINTS = ("cell_type", "celltype", "cell type", "label", "annotation", "cluster", "louvain", "leiden")


def _label_columns(adata) -> list[str]:
    """Categorical obs columns with 2..100 values, cell-type-like names first."""
    cols = [c for c in adata.obs.columns
            if adata.obs[c].dtype.name in ("category", "object") and 1 < adata.obs[c].nunique() <= 100]
    rank = lambda c: next((i for i, h in enumerate(LABEL_HINTS) if h in c.lower()), len(LABEL_HINTS))  # noqa: E731
    return sorted(cols, key=rank)


def describe_dataset(ctx: ToolContext, args: DescribeInput) -> ToolResult:
    import matplotlib.pyplot as plt
    import pandas as pd

    adata = ctx.adata
    labels = _label_columns(adata)
    column = args.column or (labels[0] if labels else None)
    if column is not None and column not in adata.obs.columns:
        raise InputError(f"column {column!r}", "is not an obs column of this dataset",
                         f"use one of {list(adata.obs.columns)}")
    cols = {c: (int(adata.obs[c].nunique()) if c in labels or adata.obs[c].dtype.name in ("category", "object")
                else "numeric") for c in adata.obs.columns}
    counts = adata.obs[column].value_counts() if column else pd.Series(dtype=int)
    out = DescribeOutput(n_cells=adata.n_obs, n_genes=adata.n_vars,
                         normalisation=list(adata.uns.get("c2s_input", {}).get("steps", [])),
                         obs_columns=cols, obsm=list(adata.obsm.keys()), breakdown_column=column,
                         breakdown={str(k): int(v) for k, v in counts.items()})
    summary = pd.DataFrame([{"column": c, "kind": "numeric" if v == "numeric" else "categorical",
                             "n_values": None if v == "numeric" else v,
                             "examples": ", ".join(map(str, adata.obs[c].unique()[:5]))} for c, v in cols.items()])
    ctx.save_table(summary.set_index("column"), "obs_columns", "Annotation columns")
    if column:
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(counts) + 1.2))
        counts.sort_values().plot.barh(ax=ax, color="#4c72b0")
        ax.set_xlabel("cells")
        ax.set_title(f"Cells per {column}")
        ctx.save_plot(fig, "cells_per_group", f"Cells per {column}")
    parts = ", ".join(f"{k} ({v})" for k, v in list(out.breakdown.items())[:8])
    evidence = (f"The dataset has {adata.n_obs:,} cells and {adata.n_vars:,} genes with annotation columns "
                f"{', '.join(cols)}." + (f" By {column}: {parts}." if column else ""))
    return ToolResult(output=out, evidence=evidence)


# ---------------------------------------------------------------- cell_sentences
class SentencesInput(BaseModel):
    top_k: int = Field(200, ge=1, le=5000, description="number of top expressed genes per cell sentence",
                       json_schema_extra={"entity": "number"})
    tie_break: Literal["random", "mean"] = "random"
    seed: int = 42


class SentencesOutput(BaseModel):
    n_cells: int
    top_k: int
    median_length: float
    example: str


def cell_sentences(ctx: ToolContext, args: SentencesInput) -> ToolResult:
    import matplotlib.pyplot as plt
    import pandas as pd

    from c2s_agent.sentences import to_sentences
    from c2s_agent.sentences.transform import to_adata

    cs = to_sentences(ctx.adata, top_k=args.top_k, tie_break=args.tie_break, seed=args.seed)
    to_adata(ctx.adata, cs)
    lengths = cs.lengths
    table = pd.DataFrame({"cell": cs.obs_names[:20], "sentence (top 20 genes)": [cs.sentence(i, 20) for i in range(min(20, len(cs)))]})
    ctx.save_table(table.set_index("cell"), "sentences", "First cell sentences (top 20 genes)")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(lengths, bins=40, color="#55a868")
    ax.set_xlabel("genes in sentence")
    ax.set_ylabel("cells")
    ax.set_title("Cell sentence lengths")
    ctx.save_plot(fig, "lengths", "Cell sentence lengths")
    out = SentencesOutput(n_cells=len(cs), top_k=args.top_k, median_length=float(np.median(lengths)),
                          example=cs.sentence(0, 30))
    evidence = (f"Converted {len(cs):,} cells to sentences of their top {args.top_k} genes "
                f"(median length {out.median_length:.0f}); the first cell begins: {cs.sentence(0, 10)}.")
    return ToolResult(output=out, evidence=evidence)


# ---------------------------------------------------------------- marker_genes
class MarkersInput(BaseModel):
    groupby: str = Field(description="obs column whose groups are compared (e.g. cell type, condition)",
                         json_schema_extra={"entity": "obs_column"})
    groups: list[str] | None = Field(None, description="values of the groupby column to report; all when unset",
                                     json_schema_extra={"entity": "obs_values"})
    within: list[str] | None = Field(None, description="restrict to cells labelled with one of these values in "
                                     "another obs column (e.g. only monocytes)", json_schema_extra={"entity": "obs_filter"})
    n_genes: int = Field(5, ge=1, le=200, description="top marker genes per group",
                         json_schema_extra={"entity": "number"})
    method: Literal["t-test", "wilcoxon"] = Field("t-test", description="differential expression test")


class MarkersOutput(BaseModel):
    groupby: str
    n_cells: int
    markers: dict[str, list[str]]


def _filter_cells(adata, values: list[str], skip: str):
    mask = np.zeros(adata.n_obs, bool)
    found = []
    for col in _label_columns(adata):
        if col == skip:
            continue
        hit = adata.obs[col].astype(str).isin(values).to_numpy()
        if hit.any():
            mask |= hit
            found.append(col)
    if not mask.any():
        raise InputError(f"within={values}", "matches no cell label in any obs column",
                         "name values that appear in the dataset's annotation columns")
    return mask, found


class CaptionInput(BaseModel):
    groupby: str = Field(description="obs column whose groups get captions (clusters, cell types)",
                         json_schema_extra={"entity": "obs_column"})
    groups: list[str] | None = Field(None, description="only these groups", json_schema_extra={"entity": "obs_values"})
    n_genes: int = Field(5, ge=1, le=20, description="marker genes per caption", json_schema_extra={"entity": "number"})


class CaptionOutput(BaseModel):
    method: str
    captions: dict[str, str]


def caption_groups_tool(ctx: ToolContext, args: CaptionInput) -> ToolResult:
    import pandas as pd

    from c2s_agent.agent.captions import METHOD, caption_groups
    from c2s_agent.knowledge.index import load

    if args.groupby not in ctx.adata.obs.columns:
        raise InputError(f"groupby={args.groupby!r}", "is not an obs column of this dataset",
                         f"use one of {list(ctx.adata.obs.columns)}")
    caps = caption_groups(ctx.adata, args.groupby, load(ctx.settings, progress=False), args.n_genes, args.groups)
    ctx.save_table(pd.DataFrame([c.model_dump() for c in caps]).set_index("group"), "captions",
                   f"Captions per {args.groupby}")
    text = " ".join(c.text for c in caps[:6])
    return ToolResult(output=CaptionOutput(method=METHOD, captions={c.group: c.text for c in caps}),
                      evidence=f"Captions per {args.groupby} ({METHOD}): {text}")


def marker_genes(ctx: ToolContext, args: MarkersInput) -> ToolResult:
    import pandas as pd
    import scanpy as sc

    adata = ctx.adata
    if args.groupby not in adata.obs.columns:
        raise InputError(f"groupby={args.groupby!r}", "is not an obs column of this dataset",
                         f"use one of {list(adata.obs.columns)}")
    view = adata
    if args.within:
        mask, _ = _filter_cells(adata, args.within, args.groupby)
        view = adata[mask]
    work = sc.AnnData(view.X, obs=view.obs[[args.groupby]].astype(str).astype("category"), var=view.var[[]])
    sizes = work.obs[args.groupby].value_counts()
    keep = sizes[sizes >= 3].index
    if len(keep) < 2:
        raise InputError(f"groupby={args.groupby!r}", "has fewer than two groups with at least 3 cells here",
                         "choose a column (or a cell subset) with at least two populated groups")
    work = work[work.obs[args.groupby].isin(keep)].copy()
    work.obs[args.groupby] = work.obs[args.groupby].cat.remove_unused_categories()
    groups = [g for g in (args.groups or list(keep)) if g in set(keep)]
    if args.groups and not groups:
        raise InputError(f"groups={args.groups}", f"are not populated values of {args.groupby!r}",
                         f"use some of {list(keep)}")
    sc.pp.filter_genes(work, min_cells=max(3, work.n_obs // 100))
    sc.tl.rank_genes_groups(work, args.groupby, groups=groups if args.groups else "all", method=args.method,
                            n_genes=max(args.n_genes, 25))
    df = sc.get.rank_genes_groups_df(work, None)
    if "group" not in df.columns:
        df.insert(0, "group", groups[0])
    df = df.groupby("group", observed=True).head(args.n_genes).reset_index(drop=True)
    df["group"] = df["group"].astype(str)
    markers = {g: df.loc[df["group"] == g, "names"].astype(str).tolist() for g in groups}
    table = df.rename(columns={"names": "gene", "logfoldchanges": "log2fc", "pvals_adj": "p_adj"})
    ctx.save_table(table[[c for c in ("group", "gene", "scores", "log2fc", "p_adj") if c in table.columns]],
                   "markers", f"Top {args.n_genes} marker genes per {args.groupby}")
    genes = list(dict.fromkeys(g for gs in markers.values() for g in gs))
    dp = sc.pl.dotplot(work, var_names={g: markers[g] for g in groups if markers[g]}, groupby=args.groupby,
                       show=False, return_fig=True, standard_scale="var")
    dp.make_figure()
    ctx.save_plot(dp.fig, "dotplot", f"Marker genes per {args.groupby}")
    adata.uns["c2s_markers"] = {"groupby": args.groupby, "method": args.method, "within": list(args.within or []),
                                "groups": list(markers), "genes": [",".join(markers[g]) for g in markers]}
    subset = f" among cells labelled {', '.join(args.within)}" if args.within else ""
    lines = "; ".join(f"{g}: {', '.join(gs)}" for g, gs in list(markers.items())[:12])
    evidence = (f"Top {args.n_genes} marker genes per {args.groupby}{subset} ({args.method}, {work.n_obs:,} cells, "
                f"{len(genes)} distinct genes): {lines}.")
    return ToolResult(output=MarkersOutput(groupby=args.groupby, n_cells=work.n_obs, markers=markers), evidence=evidence)


# ---------------------------------------------------------------- reconstruct_expression
class ReconstructInput(BaseModel):
    top_k: int = Field(100, ge=5, le=2000, description="ranked genes per cell to reconstruct and score",
                       json_schema_extra={"entity": "number"})
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of cells held out for scoring")
    seed: int = 0


class ReconstructOutput(BaseModel):
    n_fit_cells: int
    n_heldout_cells: int
    r2: float
    pearson: float
    spearman: float


def reconstruct_expression(ctx: ToolContext, args: ReconstructInput) -> ToolResult:
    import matplotlib.pyplot as plt
    import scipy.sparse as sp

    from c2s_agent.sentences import ReverseTransform
    from c2s_agent.sentences.transform import from_adata

    adata = ctx.adata
    cs = from_adata(adata)
    X = adata.X.tocsr() if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    safe = np.maximum(cs.idx, 0)
    rows = np.repeat(np.arange(len(cs)), safe.shape[1])
    picked = np.asarray(X[rows, safe.ravel()]).reshape(safe.shape)
    cs.values = np.where(cs.idx >= 0, picked, 0).astype(np.float32)
    order = np.random.default_rng(args.seed).permutation(len(cs))
    n_test = max(1, int(round(len(cs) * args.holdout_fraction)))
    test, train = order[:n_test], order[n_test:]
    fit = ReverseTransform.fit(cs.subset(train), n_cells=len(train), seed=args.seed)
    scores = fit.evaluate(cs.subset(test), top_k=args.top_k)
    path = fit.save(ctx.run_dir / "artefacts" / f"{ctx.step_id}_reverse_transform.json")
    ctx.save_file(path, "Fitted reverse transform (JSON)")
    held = cs.subset(test)
    idx, vals = held.idx[:, : args.top_k], held.values[:, : args.top_k]
    keep = idx >= 0
    ranks = np.broadcast_to(np.arange(idx.shape[1]), idx.shape)[keep]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hexbin(np.log10(1 + ranks), vals[keep], gridsize=40, bins="log", cmap="Greys")
    ax.plot(fit.log_rank, fit.expression, color="#c44e52", lw=2, label="fitted")
    ax.set_xlim(0, np.log10(1 + args.top_k))
    ax.set_xlabel("log10(1 + rank)")
    ax.set_ylabel("log1p(CP10k)")
    ax.set_title(f"Held-out cells: R²={scores['r2']:.2f}, Spearman={scores['spearman']:.2f}")
    ax.legend()
    ctx.save_plot(fig, "fit", "Expression against rank on held-out cells")
    adata.uns["c2s_reverse_fit"] = {k: float(v) for k, v in scores.items()}
    out = ReconstructOutput(n_fit_cells=len(train), n_heldout_cells=len(test), r2=scores["r2"],
                            pearson=scores["pearson"], spearman=scores["spearman"])
    evidence = (f"The reverse transform (expression from rank), fitted on {len(train):,} cells, reconstructs the top "
                f"{args.top_k} genes of {len(test):,} held-out cells with R²={out.r2:.3f}, Pearson r={out.pearson:.3f} "
                f"and Spearman rho={out.spearman:.3f}.")
    return ToolResult(output=out, evidence=evidence)


@hookimpl
def register_tools(register):
    register(Tool(
        name="describe_dataset",
        description="Describe a single-cell dataset: how many cells and genes, which annotation columns it has, "
                    "and how many cells fall in each group.",
        examples=["What is in this dataset?", "How many cells are there per cell type?",
                  "Summarise the data", "Which annotations and conditions does the dataset have?",
                  "How many cells and genes does it have?", "Give an overview of the data",
                  "Split the cell counts by sample"],
        input_model=DescribeInput, output_model=DescribeOutput, run=describe_dataset))
    register(Tool(
        name="cell_sentences",
        description="Convert cells to Cell2Sentence cell sentences: each cell becomes its gene names ordered by "
                    "expression, the input of C2S language models.",
        examples=["Turn the cells into cell sentences", "Convert cells to ranked gene sentences using the top 100 genes",
                  "Show me the cell sentences", "Rank each cell's genes by expression"],
        input_model=SentencesInput, output_model=SentencesOutput, run=cell_sentences,
        produces=("obsm:c2s_rank_idx",)))
    register(Tool(
        name="marker_genes",
        description="Find marker genes that distinguish groups of cells (cell types, clusters, or conditions such "
                    "as stimulated versus control) with a differential expression test; also how a cell population "
                    "responds to a treatment.",
        examples=["Which marker genes distinguish the cell types?", "Find the top 10 markers for each cluster",
                  "What genes are differentially expressed between stim and ctrl?",
                  "Which genes are specific to CD14 Mono cells?", "How do monocytes respond to interferon?",
                  "Differential expression between conditions in B cells", "Run a DE test between groups",
                  "What makes each cell population different from the others?",
                  "Which genes characterise each group of cells?"],
        input_model=MarkersInput, output_model=MarkersOutput, run=marker_genes,
        produces=("uns:c2s_markers",), cost="medium"))
    register(Tool(
        name="caption_groups",
        description="Caption each cluster or cell type in words: its marker genes, the C2S-predicted cell type "
                    "(when annotation ran), the Cell Ontology definition and curated interactions of the markers.",
        examples=["Write a caption for every cell type", "Write captions for the seurat clusters",
                  "Describe each cell type in plain words with its markers and ontology definition"],
        input_model=CaptionInput, output_model=CaptionOutput, run=caption_groups_tool))
    register(Tool(
        name="reconstruct_expression",
        description="Fit the reverse transform that turns cell sentences back into expression values and measure "
                    "how well ranks reconstruct expression on held-out cells (R², Pearson, Spearman).",
        examples=["How well can expression be reconstructed from cell sentences?",
                  "Fit the reverse transform and report R squared", "Convert sentences back to expression",
                  "How much information is lost by ranking genes?", "How well does gene rank predict expression level?",
                  "Reconstruct expression values from the top ranked genes"],
        input_model=ReconstructInput, output_model=ReconstructOutput, run=reconstruct_expression,
        requires=("obsm:c2s_rank_idx",), produces=("uns:c2s_reverse_fit",)))
