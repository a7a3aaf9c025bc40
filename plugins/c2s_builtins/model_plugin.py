"""Built-in C2S model plugin: the backends (transformers, openai-http, vllm, ray-vllm) and the model tools
(annotate_cells, embed_cells, generate_cells, predict_perturbation, multicell_reasoning). Heavy imports happen
inside functions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from c2s_agent import hookimpl
from c2s_agent.errors import InputError
from c2s_agent.registry import BackendFactory
from c2s_agent.tools import Tool, ToolContext, ToolResult


@hookimpl
def register_backends(register):
    def transformers(model, settings):
        from c2s_agent.models.transformers_backend import TransformersBackend

        return TransformersBackend(model, settings)

    def openai_http(model, settings):
        from c2s_agent.models.http_backend import OpenAIHTTPBackend

        return OpenAIHTTPBackend(model, settings)

    def vllm(model, settings):
        from c2s_agent.models.vllm_backend import VLLMBackend

        return VLLMBackend(model, settings)

    def ray_vllm(model, settings):
        from c2s_agent.models.vllm_backend import VLLMBackend

        return VLLMBackend(model, settings, engine="ray")

    for name, factory in (("transformers", transformers), ("openai-http", openai_http), ("vllm", vllm),
                          ("ray-vllm", ray_vllm)):
        register(BackendFactory(name, factory))


def _model(ctx: ToolContext):
    from c2s_agent.models import load_model

    return load_model(ctx.settings.model, ctx.settings)


def _label_column(adata) -> str | None:
    for c in ("cell_type", "celltype", "cell_types", "bulk_labels", "labels", "annotation"):
        if c in adata.obs.columns:
            return c
    return None


# ---------------------------------------------------------------- annotate_cells
class AnnotateInput(BaseModel):
    mode: Literal["score", "generate"] = Field("score", description="score candidate labels by likelihood, or generate")
    labels: list[str] | None = Field(None, description="candidate cell types (default: all the model knows)")
    threshold: float | None = Field(None, ge=0, le=1, description="below this confidence a cell is 'unknown'")
    compare_with: str | None = Field(None, description="an obs column of known labels to measure agreement with",
                                     json_schema_extra={"entity": "obs_column"})


class AnnotateOutput(BaseModel):
    n_cells: int
    n_unknown: int
    counts: dict[str, int]
    mean_confidence: float
    compared_with: str | None = None
    accuracy: float | None = Field(None, description="agreement with compare_with over cells not called unknown")


def annotate_cells(ctx: ToolContext, args: AnnotateInput) -> ToolResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from c2s_agent.models import tl

    adata = ctx.adata
    if args.compare_with and args.compare_with not in adata.obs.columns:
        raise InputError(f"compare_with {args.compare_with!r}", "is not an obs column", f"use one of {list(adata.obs.columns)}")
    df = tl.annotate(adata, _model(ctx), mode=args.mode, labels=args.labels, threshold=args.threshold,
                     on_call=ctx.record_call)
    counts = {str(k): int(v) for k, v in df["label"].value_counts().items()}
    col = args.compare_with or _label_column(adata)
    acc = None
    if col is not None:
        called = df["label"] != "unknown"
        truth = adata.obs[col].astype(str).to_numpy()
        acc = float((df["label"].to_numpy()[called.to_numpy()] == truth[called.to_numpy()]).mean()) if called.any() else 0.0
        table = pd.crosstab(adata.obs[col].astype(str), adata.obs["c2s_cell_type"].astype(str))
        ctx.save_table(table, "confusion", f"Predicted (columns) vs {col} (rows)")
    ctx.save_table(df.round(4), "predictions", "C2S cell type predictions per cell")
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(counts) + 1.2))
    pd.Series(counts).sort_values().plot.barh(ax=ax, color="#4477aa")
    ax.set_xlabel("cells")
    ax.set_title("C2S predicted cell types")
    ctx.save_plot(fig, "predicted_types", "Cells per predicted cell type")
    out = AnnotateOutput(n_cells=len(df), n_unknown=counts.get("unknown", 0), counts=counts,
                         mean_confidence=float(df["confidence"].mean()), compared_with=col, accuracy=acc)
    top = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:5])
    evidence = (f"C2S model ({args.mode} mode) annotated {len(df)} cells: {top}; {out.n_unknown} unknown; "
                f"mean confidence {out.mean_confidence:.2f}"
                + (f"; agreement with obs['{col}'] {acc:.1%} of called cells" if acc is not None else "") + ".")
    return ToolResult(output=out, evidence=evidence)


# ---------------------------------------------------------------- embed_cells
class EmbedInput(BaseModel):
    color_by: str | None = Field(None, description="obs column to colour the UMAP by (default: predicted or known type)",
                                 json_schema_extra={"entity": "obs_column"})


class EmbedOutput(BaseModel):
    n_cells: int
    dim: int
    silhouette: float | None = Field(None, description="silhouette of the colouring labels in the embedding (cosine)")
    color_by: str | None = None


def embed_cells(ctx: ToolContext, args: EmbedInput) -> ToolResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from c2s_agent.models import tl

    adata = ctx.adata
    if args.color_by and args.color_by not in adata.obs.columns:
        raise InputError(f"color_by {args.color_by!r}", "is not an obs column", f"use one of {list(adata.obs.columns)}")
    X = tl.embed(adata, _model(ctx), on_call=ctx.record_call)
    col = args.color_by or ("c2s_cell_type" if "c2s_cell_type" in adata.obs else _label_column(adata))
    sil = None
    if adata.n_obs >= 10:
        import scanpy as sc

        tmp = __import__("anndata").AnnData(X=X.astype(np.float32), obs=adata.obs[[col]] if col else None)
        sc.pp.neighbors(tmp, use_rep="X", n_neighbors=min(15, adata.n_obs - 1))
        sc.tl.umap(tmp, random_state=0)
        adata.obsm["X_c2s_umap"] = tmp.obsm["X_umap"]
        fig, ax = plt.subplots(figsize=(6.5, 5))
        if col:
            from sklearn.metrics import silhouette_score

            labels = adata.obs[col].astype(str).to_numpy()
            if 1 < len(set(labels)) < len(labels):
                sil = float(silhouette_score(X, labels, metric="cosine"))
            for lab in sorted(set(labels)):
                m = labels == lab
                ax.scatter(*tmp.obsm["X_umap"][m].T, s=4, label=lab)
            ax.legend(markerscale=3, fontsize=7, bbox_to_anchor=(1, 1), loc="upper left")
        else:
            ax.scatter(*tmp.obsm["X_umap"].T, s=4)
        ax.set_title(f"UMAP of C2S embeddings{f' coloured by {col}' if col else ''}")
        ax.set_xticks([]), ax.set_yticks([])
        ctx.save_plot(fig, "umap_c2s", "UMAP of C2S cell embeddings")
    out = EmbedOutput(n_cells=adata.n_obs, dim=int(X.shape[1]), silhouette=sil, color_by=col)
    return ToolResult(output=out, evidence=f"Embedded {adata.n_obs} cells with the C2S model into obsm['X_c2s'] "
                      f"({X.shape[1]} dimensions)" + (f"; silhouette of {col} {sil:.2f}" if sil is not None else "") + ".")


# ---------------------------------------------------------------- generate_cells
class GenerateInput(BaseModel):
    cell_type: str = Field(description="cell type to generate", json_schema_extra={"entity": "cell_type"})
    n: int = Field(50, ge=1, le=2000, description="number of cells")
    condition: str | None = Field(None, description="condition, e.g. 'ctrl' or 'stim'")
    seed: int = 0


class GenerateOutput(BaseModel):
    n_cells: int
    cell_type: str
    condition: str | None
    mean_genes: float
    n_unknown_genes: int
    n_duplicated_genes: int
    top_genes: list[str] = Field(description="genes most often among the first 10 of the generated sentences")
    example: str


def generate_cells(ctx: ToolContext, args: GenerateInput) -> ToolResult:
    from collections import Counter

    import pandas as pd

    from c2s_agent.models import tl

    gen = tl.generate_cells(args.cell_type, args.n, condition=args.condition, model=_model(ctx), seed=args.seed,
                            on_call=ctx.record_call)
    path = ctx._path("generated_cells.h5ad")
    gen.write_h5ad(path)
    ctx.save_file(path, f"{args.n} generated {args.cell_type} cells", kind="h5ad")
    ctx.save_table(pd.DataFrame({"sentence": gen.obs["c2s_sentence"]}), "generated_sentences", "Generated cell sentences")
    top = Counter(g for s in gen.obs["c2s_sentence"] for g in s.split()[:10]).most_common(10)
    out = GenerateOutput(n_cells=gen.n_obs, cell_type=args.cell_type, condition=args.condition,
                         mean_genes=float(gen.obs["c2s_n_genes"].mean()), n_unknown_genes=int(gen.obs["c2s_n_unknown"].sum()),
                         n_duplicated_genes=int(gen.obs["c2s_n_duplicated"].sum()), top_genes=[g for g, _ in top],
                         example=str(gen.obs["c2s_sentence"].iloc[0])[:300])
    return ToolResult(output=out, evidence=f"Generated {gen.n_obs} {args.cell_type} cells"
                      f"{f' ({args.condition})' if args.condition else ''}; {out.mean_genes:.0f} genes each on average; "
                      f"most frequent leading genes: {', '.join(out.top_genes[:6])}.")


# ---------------------------------------------------------------- predict_perturbation
class PerturbInput(BaseModel):
    perturbation: str = Field("IFN-beta", description="perturbation name known to the model")
    cell_type: str | None = Field(None, description="only cells of this type (obs column cell_type or c2s_cell_type)",
                                  json_schema_extra={"entity": "cell_type"})
    condition: str | None = Field("ctrl", description="only cells of this condition (obs 'condition'), if the column exists")
    max_cells: int = Field(200, ge=1, le=5000)
    context: str | None = None
    seed: int = 0


class PerturbOutput(BaseModel):
    n_cells: int
    perturbation: str
    up: dict[str, float] = Field(description="genes most increased in predicted vs control (reconstructed log1p CP10k)")
    down: dict[str, float]


def predict_perturbation(ctx: ToolContext, args: PerturbInput) -> ToolResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from c2s_agent.models import tl

    adata = ctx.adata
    keep = np.ones(adata.n_obs, bool)
    if args.cell_type:
        col = next((c for c in ("cell_type", "c2s_cell_type") if c in adata.obs), None)
        if col is None:
            raise InputError("cell_type", "was given but the data has no cell type column", "run annotate_cells first")
        keep &= adata.obs[col].astype(str).to_numpy() == args.cell_type
    if args.condition and "condition" in adata.obs:
        keep &= adata.obs["condition"].astype(str).to_numpy() == args.condition
    if not keep.any():
        raise InputError("cells", f"none match cell_type={args.cell_type!r}, condition={args.condition!r}",
                         "choose a cell type and condition present in the data")
    rows = np.flatnonzero(keep)[: args.max_cells]
    sub = adata[rows].copy()
    m = _model(ctx)
    pert = tl.perturb(sub, args.perturbation, context=args.context, model=m, seed=args.seed, on_call=ctx.record_call)
    texts, _, _ = m.sentences(sub, m.top_k["perturbation"])
    base = tl._to_adata(m, texts, {"source": ["control"] * len(texts)}, genes=list(pert.var_names))
    delta = np.asarray(pert.X.mean(0)).ravel() - np.asarray(base.X.mean(0)).ravel()
    s = pd.Series(delta, index=pert.var_names).sort_values()
    up, down = s[::-1].head(15), s.head(15)
    ctx.adata.uns["c2s_perturbation"] = {"perturbation": args.perturbation, "n_cells": len(rows),
                                         "up": up.round(4).to_dict(), "down": down.round(4).to_dict()}
    path = ctx._path("perturbed_cells.h5ad")
    pert.write_h5ad(path)
    ctx.save_file(path, f"Predicted {args.perturbation} response", kind="h5ad")
    ctx.save_table(s.to_frame("delta").iloc[::-1], "perturbation_delta", "Predicted change per gene (perturbed - control)")
    fig, ax = plt.subplots(figsize=(6, 6))
    pd.concat([down, up[::-1]]).plot.barh(ax=ax, color=["#bb5566"] * len(down) + ["#4477aa"] * len(up))
    ax.set_xlabel("predicted change (reconstructed log1p CP10k)")
    ax.set_title(f"Predicted {args.perturbation} response ({len(rows)} cells)")
    ctx.save_plot(fig, "perturbation_top_genes", f"Top genes changed by {args.perturbation}")
    out = PerturbOutput(n_cells=len(rows), perturbation=args.perturbation, up=up.round(4).to_dict(),
                        down=down.round(4).to_dict())
    return ToolResult(output=out, evidence=f"C2S model predicted the {args.perturbation} response of {len(rows)} cells; "
                      f"most increased: {', '.join(up.index[:6])}; most decreased: {', '.join(down.index[:6])}.")


# ---------------------------------------------------------------- multicell_reasoning
class MulticellInput(BaseModel):
    groupby: str | None = Field(None, description="obs column of the cell groups (cell type or cluster) to reason over",
                                json_schema_extra={"entity": "obs_column"})
    groups: list[str] | None = Field(None, description="only these values of groupby: neighbourhoods around their "
                                     "cells, or their clusters", json_schema_extra={"entity": "obs_values"})
    mode: Literal["neighbourhood", "cluster"] = Field("neighbourhood", description="kNN neighbourhoods around cells, "
                                                      "or chunks of each cluster")
    n_cells: int = Field(4, ge=1, le=16, description="cells per group in one prompt")
    max_groups: int = Field(100, ge=1, le=2000, description="number of groups: neighbourhoods or cluster chunks "
                            "(a seeded sample)")


class MulticellOutput(BaseModel):
    n_groups: int
    n_groups_with_interactions: int
    answers_without: dict[str, int] = Field(description="most likely cell type per group, without knowledge")
    answers_with: dict[str, int] = Field(description="most likely cell type per group, with the interactions injected")
    fraction_changed: float
    mean_kl: float = Field(description="mean KL divergence of the label distribution with vs without knowledge (nats)")
    compared_with: str | None = None
    accuracy_without: float | None = Field(None, description="agreement with the group's majority label")
    accuracy_with: float | None = None
    top_interactions: list[str]
    how: str


def multicell_reasoning(ctx: ToolContext, args: MulticellInput) -> ToolResult:
    import matplotlib

    matplotlib.use("Agg")
    from collections import Counter

    import matplotlib.pyplot as plt
    import pandas as pd

    from c2s_agent.knowledge.multicell import multicell

    adata = ctx.adata
    m = _model(ctx)
    df = multicell(adata, m, groupby=args.groupby, values=args.groups, mode=args.mode, n_cells=args.n_cells,
                   max_groups=args.max_groups, settings=ctx.settings, on_call=ctx.record_call)
    col = _label_column(adata) or args.groupby
    acc0 = acc1 = None
    if col is not None:
        labels = adata.obs[col].astype(str)
        majority = [labels[c.split(",")].value_counts().index[0] for c in df.cells]
        df["majority_" + col] = majority
        acc0, acc1 = float((df.without_knowledge == majority).mean()), float((df.with_knowledge == majority).mean())
    ctx.save_table(df, "multicell", "Multi-cell prompts: cell type per group without and with injected interactions")
    a0, a1 = df.without_knowledge.value_counts(), df.with_knowledge.value_counts()
    counts = pd.DataFrame({"without knowledge": a0, "with interactions": a1}).fillna(0).sort_values("without knowledge")
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(counts) + 1.5))
    counts.plot.barh(ax=ax, color=["#4477aa", "#ee6677"])
    ax.set_xlabel("groups")
    ax.set_title(f"C2S answer per group of {args.n_cells} cells")
    ctx.save_plot(fig, "multicell_answers", "Cell type per group, with and without injected interactions")
    pairs = Counter(p for s in df.interactions for p in s.split("; ") if p)
    trained = "multicell" in m.meta.get("tasks", [])
    how = (f"{m.name} scored every known cell type by log-likelihood after a multi-cell prompt of {args.n_cells} cell "
           f"sentences, once as is and once with the CellPhoneDB ligand-receptor pairs the group expresses (every "
           f"subunit in >= half its cells) injected as text"
           + ("" if trained else "; this model was trained on single-cell prompts only, so multi-cell prompts and "
              "injected knowledge are outside its training"))
    out = MulticellOutput(n_groups=len(df), n_groups_with_interactions=int((df.n_interactions > 0).sum()),
                          answers_without={str(k): int(v) for k, v in a0.items()},
                          answers_with={str(k): int(v) for k, v in a1.items()},
                          fraction_changed=float(df.changed.mean()), mean_kl=float(df.kl_with_vs_without.mean()),
                          compared_with=col, accuracy_without=acc0, accuracy_with=acc1,
                          top_interactions=[p for p, _ in pairs.most_common(10)], how=how)
    where = f"{args.groupby} {', '.join(args.groups)}" if args.groups else (args.groupby or "all cells")
    kind = f"kNN neighbourhoods around {where}" if args.mode == "neighbourhood" else f"chunks of clusters: {where}"
    evidence = (f"{len(df)} groups of {args.n_cells} cells ({kind}) asked their cell type: "
                f"{out.n_groups_with_interactions} express at least one ligand-receptor pair "
                f"(most often {', '.join(out.top_interactions[:4]) or 'none'}); injecting them changed "
                f"{out.fraction_changed:.0%} of the answers (mean KL {out.mean_kl:.3f} nats)"
                + (f"; agreement with the majority {col}: {acc0:.0%} without, {acc1:.0%} with" if col else "")
                + f". How: {how}.")
    return ToolResult(output=out, evidence=evidence)


@hookimpl
def register_tools(register):
    register(Tool(
        name="annotate_cells",
        description="Predict each cell's type with the C2S language model (scores every known cell type by "
                    "likelihood, or generates the label); cells unlike the training data are called 'unknown'.",
        examples=["What cell types are in this dataset?", "Annotate the cells with the C2S model",
                  "Predict cell types", "Label each cell with its cell type", "Which cells are monocytes?",
                  "How confident is the model about each cell's type?"],
        input_model=AnnotateInput, output_model=AnnotateOutput, run=annotate_cells,
        produces=("obs:c2s_cell_type", "obs:c2s_confidence"), cost="medium"))
    register(Tool(
        name="embed_cells",
        description="Embed cells with the C2S language model (mean hidden state of each cell sentence) into "
                    "obsm['X_c2s'] and plot a UMAP of the embeddings coloured by cell type.",
        examples=["Embed the cells with the C2S model", "Show a UMAP of the C2S embeddings",
                  "Compute cell embeddings", "How well do cell types separate in the model's embedding?",
                  "Make a C2S embedding for clustering"],
        input_model=EmbedInput, output_model=EmbedOutput, run=embed_cells,
        produces=("obsm:X_c2s",), cost="medium"))
    register(Tool(
        name="generate_cells",
        description="Generate synthetic cells of a given cell type (and condition such as ctrl/stim) with the C2S "
                    "model: cell sentences plus expression reconstructed from gene rank, saved as .h5ad.",
        examples=["Generate 100 CD14 Mono cells", "Simulate stimulated B cells", "Create synthetic NK cells",
                  "What does a typical CD8 T cell look like according to the model?",
                  "Generate control and stimulated monocytes"],
        input_model=GenerateInput, output_model=GenerateOutput, run=generate_cells,
        produces=("file:generated_cells.h5ad",), needs_data=False, cost="medium"))
    register(Tool(
        name="predict_perturbation",
        description="Predict how cells respond to a perturbation (e.g. IFN-beta stimulation) with the C2S model: "
                    "each control cell's sentence is rewritten into its perturbed sentence; reports the genes "
                    "predicted to go up and down.",
        examples=["How would monocytes respond to interferon beta?", "Predict the IFN-beta response of control cells",
                  "Simulate stimulating the B cells", "Which genes would IFN-beta induce in CD4 T cells?",
                  "Predict the perturbed state of the control cells"],
        input_model=PerturbInput, output_model=PerturbOutput, run=predict_perturbation,
        produces=("uns:c2s_perturbation",), cost="high"))
    register(Tool(
        name="multicell_reasoning",
        description="Reason over groups of cells (kNN neighbourhoods or clusters) with the C2S model: several cells "
                    "in one multi-cell prompt, asked the group's cell type with and without the ligand-receptor "
                    "interactions the group expresses (from the knowledge base) injected as text; reports what "
                    "the knowledge changes.",
        examples=["Reason over the monocyte neighbourhoods with interaction knowledge",
                  "Ask the model about cell neighbourhoods with and without injected knowledge",
                  "Use multi-cell prompts for each cluster with known ligand-receptor pairs injected",
                  "Does injecting prior knowledge into the prompt change what the model says about groups of cells?",
                  "Multi-cell reasoning over the B cell neighbourhoods"],
        input_model=MulticellInput, output_model=MulticellOutput, run=multicell_reasoning,
        requires=("obs:{groupby}",), produces=("uns:c2s_multicell",), cost="medium"))
