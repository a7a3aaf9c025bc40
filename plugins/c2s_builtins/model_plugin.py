"""Built-in C2S model plugin: the backends (transformers, openai-http, vllm, ray-vllm) and the model tools
(annotate_cells, embed_cells, generate_cells, predict_perturbation, multicell_reasoning). Each tool calls one
function of :mod:`c2s_agent.tl`; heavy imports happen inside functions."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, Field

from c2s_agent import hookimpl, pl, tl
from c2s_agent.conventions import find_columns
from c2s_agent.conventions.slots import (
    CELL_TYPE,
    CONDITION,
    EMBEDDING,
    EMBEDDING_UMAP,
    PREDICTED_TYPE,
    SENTENCE,
    SIMILARITY,
)
from c2s_agent.data import write
from c2s_agent.errors import InputError
from c2s_agent.knowledge.multicell import method
from c2s_agent.registry import BackendFactory
from c2s_agent.tl.hypotheses import perturbation_hypotheses
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

    for name, factory in (
        ("transformers", transformers),
        ("openai-http", openai_http),
        ("vllm", vllm),
        ("ray-vllm", ray_vllm),
    ):
        register(BackendFactory(name, factory))


def _model(ctx: ToolContext):
    return tl.get_model(ctx.settings.model, ctx.settings)


def _column(ctx: ToolContext, column: str | None, name: str) -> str | None:
    if column and column not in ctx.adata.obs.columns:
        raise InputError(f"{name} {column!r}", "is not an obs column", f"use one of {list(ctx.adata.obs.columns)}")
    return column


def predicted_labels(settings) -> dict[str, list[str]]:
    """The cell types the configured model predicts, from its metadata (no weights are loaded)."""
    from c2s_agent.models.model import model_metadata

    return {f"obs:{PREDICTED_TYPE}": list(model_metadata(settings).get("labels", []))}


# ---------------------------------------------------------------- annotate_cells
class AnnotateInput(BaseModel):
    mode: Literal["score", "generate"] = Field("score", description="score candidate labels by likelihood, or generate")
    labels: list[str] | None = Field(None, description="candidate cell types (default: all the model knows)")
    threshold: float | None = Field(None, ge=0, le=1, description="below this confidence a cell is 'unknown'")
    compare_with: str | None = Field(
        None,
        description="an obs column of known labels to measure agreement with",
        json_schema_extra={"entity": "obs_column"},
    )


class AnnotateOutput(BaseModel):
    n_cells: int
    n_unknown: int
    counts: dict[str, int]
    mean_confidence: float
    compared_with: str | None = None
    accuracy: float | None = Field(None, description="agreement with compare_with over cells not called unknown")


def annotate_cells(ctx: ToolContext, args: AnnotateInput) -> ToolResult:
    col = _column(ctx, args.compare_with, "compare_with") or find_columns(ctx.adata.obs).cell_type
    df = tl.annotate(
        ctx.adata, _model(ctx), mode=args.mode, labels=args.labels, threshold=args.threshold, on_call=ctx.record_call
    )
    counts = {str(k): int(v) for k, v in df["label"].value_counts().items()}
    acc = None
    if col is not None:
        acc, table = tl.agreement(ctx.adata, col)
        ctx.save_table(table, "confusion", f"Predicted (columns) vs {col} (rows)")
    ctx.save_table(df.round(4), "predictions", "C2S cell type predictions per cell")
    ctx.save_plot(pl.counts(counts, "C2S predicted cell types"), "predicted_types", "Cells per predicted cell type")
    out = AnnotateOutput(
        n_cells=len(df),
        n_unknown=counts.get("unknown", 0),
        counts=counts,
        mean_confidence=float(df["confidence"].mean()),
        compared_with=col,
        accuracy=acc,
    )
    top = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:5])
    return ToolResult(
        output=out,
        evidence=(
            f"C2S model ({args.mode} mode) annotated {len(df)} cells: {top}; {out.n_unknown} unknown; mean confidence "
            f"{out.mean_confidence:.2f}"
            + (f"; agreement with obs['{col}'] {acc:.1%} of called cells" if acc is not None else "")
            + "."
        ),
    )


# ---------------------------------------------------------------- embed_cells
class EmbedInput(BaseModel):
    color_by: str | None = Field(
        None,
        description="obs column to colour the UMAP by (default: predicted or known type)",
        json_schema_extra={"entity": "obs_column"},
    )


class EmbedOutput(BaseModel):
    n_cells: int
    dim: int
    silhouette: float | None = Field(None, description="silhouette of the colouring labels in the embedding (cosine)")
    color_by: str | None = None


def embed_cells(ctx: ToolContext, args: EmbedInput) -> ToolResult:
    col = _column(ctx, args.color_by, "color_by") or find_columns(ctx.adata.obs).groups(prefer_predicted=True)
    X = tl.embed(ctx.adata, _model(ctx), on_call=ctx.record_call)
    sil = None
    if ctx.adata.n_obs >= 10:
        tl.umap(ctx.adata)
        sil = tl.silhouette(ctx.adata, col) if col else None
        ctx.save_plot(
            pl.embedding(ctx.adata, EMBEDDING_UMAP, col, "UMAP of C2S embeddings"),
            "umap_c2s",
            "UMAP of C2S cell embeddings",
        )
    out = EmbedOutput(n_cells=ctx.adata.n_obs, dim=int(X.shape[1]), silhouette=sil, color_by=col)
    return ToolResult(
        output=out,
        evidence=f"Embedded {out.n_cells} cells with the C2S model into obsm['{EMBEDDING}'] "
        f"({out.dim} dimensions)" + (f"; silhouette of {col} {sil:.2f}" if sil is not None else "") + ".",
    )


# ---------------------------------------------------------------- similar_cells
class SimilarInput(BaseModel):
    reference: list[str] = Field(
        min_length=1,
        description="the reference group: labels of an obs column (e.g. a cell type)",
        json_schema_extra={"entity": "obs_values"},
    )
    groupby: str | None = Field(
        None,
        description="the obs column holding the reference labels (default: the one that has them)",
        json_schema_extra={"entity": "obs_column"},
    )
    n: int = Field(
        50,
        ge=1,
        le=5000,
        description="how many of the most similar cells to report",
        json_schema_extra={"entity": "number"},
    )


class SimilarOutput(BaseModel):
    groupby: str
    n_reference: int
    nearest_labels: dict[str, int] = Field(description="labels of the most similar cells outside the reference")
    mean_similarity: dict[str, float] = Field(description="mean cosine similarity to the reference, per label")


def similar_cells(ctx: ToolContext, args: SimilarInput) -> ToolResult:
    col, ref, table = tl.similar_cells(ctx.adata, args.reference, _column(ctx, args.groupby, "groupby"), n=args.n)
    ctx.save_table(table, "similar_cells", f"The {args.n} cells most similar to {', '.join(args.reference)}")
    sims = ctx.adata.obs.loc[~ref, SIMILARITY].groupby(ctx.adata.obs.loc[~ref, col].astype(str).to_numpy()).mean()
    ctx.save_plot(
        pl.counts(sims.round(3).to_dict(), f"Similarity to {', '.join(args.reference)}", "mean cosine"),
        "similarity_by_group",
        f"Mean similarity to {', '.join(args.reference)} per {col}",
    )
    nearest = {str(k): int(v) for k, v in table[col].value_counts().items()}
    out = SimilarOutput(
        groupby=col,
        n_reference=int(ref.sum()),
        nearest_labels=nearest,
        mean_similarity={str(k): round(float(v), 4) for k, v in sims.sort_values()[::-1].items()},
    )
    top = ", ".join(f"{k} ({v})" for k, v in list(nearest.items())[:6])
    return ToolResult(
        output=out,
        evidence=(
            f"In the C2S embedding, the {len(table)} cells most similar to the {out.n_reference} {', '.join(args.reference)} "
            f"cells (cosine to their centroid) are labelled {top} in obs['{col}']; most similar groups on average: "
            + ", ".join(f"{k} {v:.2f}" for k, v in list(out.mean_similarity.items())[:4])
            + "."
        ),
    )


# ---------------------------------------------------------------- generate_cells
class GenerateInput(BaseModel):
    cell_type: str = Field(description="cell type to generate", json_schema_extra={"entity": CELL_TYPE})
    n: int = Field(50, ge=1, le=2000, description="number of cells")
    condition: str | None = Field(
        None, description="condition, e.g. 'ctrl' or 'stim'", json_schema_extra={"entity": CONDITION}
    )
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
    import pandas as pd

    gen = tl.generate_cells(
        args.cell_type, args.n, condition=args.condition, model=_model(ctx), seed=args.seed, on_call=ctx.record_call
    )
    path = ctx.artefact_path("generated_cells.h5ad")
    write(gen, path)
    ctx.save_file(path, f"{args.n} generated {args.cell_type} cells", kind="h5ad")
    ctx.save_table(pd.DataFrame({"sentence": gen.obs[SENTENCE]}), "generated_sentences", "Generated cell sentences")
    top = [g for g, _ in Counter(g for s in gen.obs[SENTENCE] for g in s.split()[:10]).most_common(10)]
    out = GenerateOutput(
        n_cells=gen.n_obs,
        cell_type=args.cell_type,
        condition=args.condition,
        mean_genes=float(gen.obs["c2s_n_genes"].mean()),
        n_unknown_genes=int(gen.obs["c2s_n_unknown"].sum()),
        n_duplicated_genes=int(gen.obs["c2s_n_duplicated"].sum()),
        top_genes=top,
        example=str(gen.obs[SENTENCE].iloc[0])[:300],
    )
    return ToolResult(
        output=out,
        evidence=f"Generated {gen.n_obs} {args.cell_type} cells"
        f"{f' ({args.condition})' if args.condition else ''}; {out.mean_genes:.0f} genes each on average; "
        f"most frequent leading genes: {', '.join(top[:6])}.",
    )


# ---------------------------------------------------------------- predict_perturbation
class PerturbInput(BaseModel):
    perturbation: str = Field("IFN-beta", description="perturbation name known to the model")
    cell_types: list[str] | None = Field(
        None,
        description="only cells of these types (the data's or the predicted cell types)",
        json_schema_extra={"entity": CELL_TYPE},
    )
    condition: str | None = Field(
        None,
        description="only cells of this condition (default: the control cells, when the data has conditions)",
        json_schema_extra={"entity": CONDITION},
    )
    max_cells: int = Field(200, ge=1, le=5000, description="at most this many cells are perturbed (a seeded sample)")
    context: str | None = None
    seed: int = 0


class PerturbOutput(BaseModel):
    n_cells: int
    perturbation: str
    condition: str | None
    up: dict[str, float] = Field(description="genes most increased in predicted vs control (reconstructed log1p CP10k)")
    down: dict[str, float]


def predict_perturbation(ctx: ToolContext, args: PerturbInput) -> ToolResult:
    res = tl.perturbation_response(
        ctx.adata,
        args.perturbation,
        args.cell_types,
        args.condition,
        args.max_cells,
        args.context,
        _model(ctx),
        args.seed,
        on_call=ctx.record_call,
    )
    path = ctx.artefact_path("perturbed_cells.h5ad")
    write(res.perturbed, path)
    ctx.save_file(path, f"Predicted {args.perturbation} response", kind="h5ad")
    ctx.save_table(res.delta.to_frame("delta"), "perturbation_delta", "Predicted change per gene (perturbed - control)")
    ctx.save_plot(
        pl.perturbation(res.delta, args.perturbation, len(res.cells)),
        "perturbation_top_genes",
        f"Top genes changed by {args.perturbation}",
    )
    up, down = res.delta.head(15).round(4), res.delta.tail(15)[::-1].round(4)
    out = PerturbOutput(
        n_cells=len(res.cells),
        perturbation=args.perturbation,
        condition=res.condition,
        up=up.to_dict(),
        down=down.to_dict(),
    )
    return ToolResult(
        output=out,
        evidence=f"C2S model predicted the {args.perturbation} response of {out.n_cells} "
        f"{', '.join(args.cell_types or ['']) + ' ' if args.cell_types else ''}cells"
        f"{f' ({res.condition})' if res.condition else ''}; most increased: {', '.join(up.index[:6])}; "
        f"most decreased: {', '.join(down.index[:6])}.",
    )


# ---------------------------------------------------------------- multicell_reasoning
class MulticellInput(BaseModel):
    groupby: str | None = Field(
        None,
        description="obs column of the cell groups (cell type or cluster) to reason over",
        json_schema_extra={"entity": "obs_column"},
    )
    groups: list[str] | None = Field(
        None,
        description="only these values of groupby: neighbourhoods around their cells, or their clusters",
        json_schema_extra={"entity": "obs_values"},
    )
    mode: Literal["neighbourhood", "cluster"] = Field(
        "neighbourhood", description="kNN neighbourhoods around cells, or chunks of each cluster"
    )
    n_cells: int = Field(4, ge=1, le=16, description="cells per group in one prompt")
    max_groups: int = Field(
        100, ge=1, le=2000, description="number of groups: neighbourhoods or cluster chunks (a seeded sample)"
    )


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


def multicell_reasoning(ctx: ToolContext, args: MulticellInput) -> ToolResult:
    m = _model(ctx)
    df = tl.multicell(
        ctx.adata,
        m,
        groupby=args.groupby,
        values=args.groups,
        mode=args.mode,
        n_cells=args.n_cells,
        max_groups=args.max_groups,
        settings=ctx.settings,
        on_call=ctx.record_call,
    )
    s = tl.multicell_summary(ctx.adata, df, find_columns(ctx.adata.obs).cell_type or args.groupby)
    ctx.save_table(df, "multicell", "Multi-cell prompts: cell type per group without and with injected interactions")
    answers = {"without knowledge": s.answers_without, "with interactions": s.answers_with}
    ctx.save_plot(
        pl.answer_counts(answers, f"C2S answer per group of {args.n_cells} cells"),
        "multicell_answers",
        "Cell type per group, with and without injected interactions",
    )
    where = f"{args.groupby} {', '.join(args.groups)}" if args.groups else (args.groupby or "all cells")
    kind = f"kNN neighbourhoods around {where}" if args.mode == "neighbourhood" else f"chunks of clusters: {where}"
    return ToolResult(
        output=MulticellOutput(**asdict(s)),
        method=method(m, args.n_cells),
        evidence=(
            f"{len(df)} groups of {args.n_cells} cells ({kind}) asked their cell type: {s.n_groups_with_interactions} "
            f"express at least one ligand-receptor pair (most often {', '.join(s.top_interactions[:4]) or 'none'}); "
            f"injecting them changed {s.fraction_changed:.0%} of the answers (mean KL {s.mean_kl:.3f} nats)"
            + (
                f"; agreement with the majority {s.compared_with}: {s.accuracy_without:.0%} without, "
                f"{s.accuracy_with:.0%} with"
                if s.compared_with
                else ""
            )
            + "."
        ),
    )


@hookimpl
def register_tools(register):
    register(
        Tool(
            name="annotate_cells",
            description="Predict each cell's type with the C2S language model (scores every known cell type by "
            "likelihood, or generates the label); cells unlike the training data are called 'unknown'.",
            examples=[
                "Let the model name each cell's type in its own words",
                "Predict the cell types with the C2S model",
                "Annotate the cells with the C2S model",
                "Predict cell types",
                "Label each cell with its cell type",
                "Which cells are monocytes?",
                "How confident is the model about each cell's type?",
            ],
            input_model=AnnotateInput,
            output_model=AnnotateOutput,
            run=annotate_cells,
            produces=(f"obs:{PREDICTED_TYPE}", "obs:c2s_confidence"),
            produced_values=predicted_labels,
            cost="medium",
        )
    )
    register(
        Tool(
            name="embed_cells",
            description="Embed cells with the C2S language model (mean hidden state of each cell sentence) into "
            "obsm['X_c2s'] and plot a UMAP of the embeddings coloured by cell type.",
            examples=[
                "Embed the cells with the C2S model",
                "Show a UMAP of the C2S embeddings",
                "Compute cell embeddings",
                "How well do cell types separate in the model's embedding?",
                "Make a C2S embedding for clustering",
            ],
            input_model=EmbedInput,
            output_model=EmbedOutput,
            run=embed_cells,
            produces=(f"obsm:{EMBEDDING}",),
            cost="medium",
        )
    )
    register(
        Tool(
            name="similar_cells",
            description="Similarity search: find the cells most similar to a reference group of cells (nearest to its "
            "centroid in the C2S embedding) and which groups they belong to.",
            examples=[
                "Which cells look most like the goblet cells in the model's embedding?",
                "Find cells similar to the NK cells",
                "Which cells are most similar to the CD14 Mono cells?",
                "Search for cells like the pDC cells",
                "Nearest neighbours of the B cells in the C2S embedding",
                "Which cells lie closest to the pDCs?",
            ],
            input_model=SimilarInput,
            output_model=SimilarOutput,
            run=similar_cells,
            requires=(f"obsm:{EMBEDDING}",),
            produces=("obs:c2s_similarity",),
            cost="low",
        )
    )
    register(
        Tool(
            name="generate_cells",
            description="Generate synthetic cells of a given cell type (and condition such as ctrl/stim) with the C2S "
            "model: cell sentences plus expression reconstructed from gene rank, saved as .h5ad.",
            examples=[
                "make 20 control NK cells",
                "I need synthetic stimulated monocytes from the model",
                "Generate 100 CD14 Mono cells",
                "Simulate stimulated B cells",
                "Create synthetic NK cells",
                "What does a typical CD8 T cell look like according to the model?",
                "Generate control and stimulated monocytes",
                "Make new cells of a given type with the model",
            ],
            input_model=GenerateInput,
            output_model=GenerateOutput,
            run=generate_cells,
            produces=("file:generated_cells.h5ad",),
            needs_data=False,
            cost="medium",
        )
    )
    register(
        Tool(
            name="predict_perturbation",
            description="Predict how cells respond to a perturbation (e.g. IFN-beta stimulation) with the C2S model: "
            "each control cell's sentence is rewritten into its perturbed sentence; reports the genes "
            "predicted to go up and down.",
            examples=[
                "How would the NK cells change their transcription if we stimulated them?",
                "How would the B cells' expression shift under the treatment?",
                "How would monocytes respond to interferon beta?",
                "Predict the IFN-beta response of control cells",
                "Simulate stimulating the B cells",
                "Which genes would IFN-beta induce in CD4 T cells?",
                "Predict the perturbed state of the control cells",
            ],
            input_model=PerturbInput,
            output_model=PerturbOutput,
            run=predict_perturbation,
            produces=("uns:c2s_perturbation",),
            cost="high",
            hypotheses=perturbation_hypotheses,
        )
    )
    register(
        Tool(
            name="multicell_reasoning",
            description="Reason over groups of cells (kNN neighbourhoods or clusters) with the C2S model: several cells "
            "in one multi-cell prompt, asked the group's cell type with and without the ligand-receptor "
            "interactions the group expresses (from the knowledge base) injected as text; reports what "
            "the knowledge changes.",
            examples=[
                "Reason over the monocyte neighbourhoods with interaction knowledge",
                "Ask the model about cell neighbourhoods with and without injected knowledge",
                "Use multi-cell prompts for each cluster with known ligand-receptor pairs injected",
                "Does injecting prior knowledge into the prompt change what the model says about groups of cells?",
                "Multi-cell reasoning over the B cell neighbourhoods",
            ],
            input_model=MulticellInput,
            output_model=MulticellOutput,
            run=multicell_reasoning,
            requires=("obs:{groupby}",),
            produces=("uns:c2s_multicell",),
            cost="medium",
        )
    )
