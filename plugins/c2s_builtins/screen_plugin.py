"""Built-in screen plugin: the gene programs (MSigDB interferon / apoptosis / inflammation sets, MHC class I)
and the tools ``run_screen`` (dual-context virtual screen) and ``score_gene_program``."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

from c2s_agent import hookimpl, pl, tl
from c2s_agent.conventions import find_columns
from c2s_agent.conventions.slots import CELL_TYPE
from c2s_agent.errors import InputError
from c2s_agent.registry import GeneProgram
from c2s_agent.screen.programs import METHODS, builtin_programs, perturbations_from_text, program_from_text
from c2s_agent.tl.hypotheses import screen_hypotheses
from c2s_agent.tools import Tool, ToolContext, ToolResult


@hookimpl
def register_gene_programs(register):
    for name, prog in builtin_programs().items():
        register(GeneProgram(name, tuple(prog.genes), prog.source))


# ---------------------------------------------------------------- run_screen
class ScreenInput(BaseModel):
    perturbations: list[str] | None = Field(
        None,
        description="perturbation names to screen (default: those listed "
        "in the question, else every perturbation the model was trained on)",
    )
    program: str | None = Field(
        None,
        description="gene program to score: mhc_i (MHC class I antigen presentation), "
        "ifn_alpha, ifn_gamma, apoptosis, inflammatory, or a bundled gene set name "
        "(default: the one the question names, else mhc_i)",
        json_schema_extra={"entity": "program"},
    )
    question: str | None = Field(None, description="the question, to read the program and perturbations from")
    contexts: list[str] | None = Field(
        None,
        description="contexts as NAME:COLUMN=VALUE, the first two give the "
        "split (default: the data's treated condition, then its control)",
    )
    cell_type: str | None = Field(
        None, description="restrict base cells to this cell type", json_schema_extra={"entity": CELL_TYPE}
    )
    n_cells: int = Field(64, ge=2, le=2000, description="base cells per context")
    seed: int = 0


class ScreenOutput(BaseModel):
    n_items: int
    n_scored: int
    n_not_scored: int = Field(description="perturbations the model was not trained on (flagged, never scored)")
    contexts: list[str]
    program: str
    ranking: list[dict] = Field(description="scored items by context split: item, shifts, split and its interval")
    not_scored: dict[str, str] = Field(description="item -> why it was not scored")
    trained_on: str
    items_skipped_finished: int


def run_screen_tool(ctx: ToolContext, args: ScreenInput) -> ToolResult:
    m = tl.get_model(ctx.settings.model, ctx.settings)
    tag = hashlib.sha256(repr(args.model_dump()).encode()).hexdigest()[:10]
    res = tl.run_screen(
        ctx.adata,
        args.perturbations or perturbations_from_text(args.question, m.known_perturbations) or None,
        args.contexts,
        args.program or program_from_text(args.question) or "mhc_i",
        out_dir=ctx.artefact_path(f"screen_{tag}"),
        model=m,
        cell_type=args.cell_type,
        n_cells=args.n_cells,
        seed=args.seed,
        settings=ctx.settings,
        progress=False,
        on_call=ctx.record_call,
    )
    ctx.save_table(res.table.set_index("rank"), "screen_ranked", "Screen ranking by context split, with 95% intervals")
    if len(res.scored):
        ctx.save_plot(pl.screen_ranking(res), "screen_ranking", "Screen ranking with 95% intervals")
        ctx.save_plot(
            pl.screen_distributions(res), "screen_distributions", "Program score distributions, base vs predicted cells"
        )
    ctx.save_file(res.files["summary"], "Screen summary (configuration, model facts, timing)")
    out = ScreenOutput(
        n_items=len(res.table),
        n_scored=len(res.scored),
        n_not_scored=len(res.not_scored),
        contexts=res.contexts,
        program=res.summary["program"],
        not_scored=res.not_scored,
        trained_on=res.summary["trained_on"],
        ranking=res.ranking(20),
        items_skipped_finished=res.summary["run"]["items_skipped_finished"],
    )
    return ToolResult(output=out, evidence=_screen_evidence(res))


def _screen_evidence(res) -> str:
    prog, contexts, scored, not_scored = res.summary["program"], res.contexts, res.scored, res.not_scored
    text = [
        f"Virtual screen of {len(res.table)} perturbation(s) x {len(contexts)} context(s) "
        f"({', '.join(f'{c}: ' + ', '.join(f'{k}={v}' for k, v in w.items()) for c, w in res.summary['contexts'].items())}) "
        f"on the {prog} program, {res.summary['config']['n_cells']} base cells per context."
    ]
    if len(scored) and len(contexts) >= 2:
        a, b = contexts[:2]
        text.append(
            f"Ranking: context split = shift in {a} minus shift in {b} (shift = mean change of the {prog} score "
            "from each base cell to its predicted perturbed state); a split interval above 0 means the "
            f"perturbation raises {prog} more in {a} than in {b}."
        )
        hits = scored[(scored["split_low"] > 0) & (scored[f"low_{a}"] > 0)]
        text.append(
            f"Raise {prog} in {a} more than in {b}: {', '.join(hits['item'].astype(str)[:10])}."
            if len(hits)
            else f"No scored perturbation raises {prog} in {a} more than in {b} (no split interval above 0)."
        )
    if len(scored):
        if len(contexts) >= 2:
            for r in scored.head(5).to_dict("records"):
                sig = "interval excludes 0" if r["split_excludes_zero"] else "interval includes 0"
                text.append(
                    f"{r['item']}: shift {r[f'shift_{contexts[0]}']:+.4f} in {contexts[0]}, "
                    f"{r[f'shift_{contexts[1]}']:+.4f} in {contexts[1]}; split {r['split']:+.4f} "
                    f"[{r['split_low']:+.4f}, {r['split_high']:+.4f}] ({sig})."
                )
        else:
            for r in scored.head(5).to_dict("records"):
                c = contexts[0]
                text.append(
                    f"{r['item']}: shift {r[f'shift_{c}']:+.4f} [{r[f'low_{c}']:+.4f}, {r[f'high_{c}']:+.4f}] in {c}."
                )
    if not_scored:
        text.append(
            f"Not scored ({len(not_scored)}): {', '.join(list(not_scored)[:10])} - the model was not trained on them."
        )
    text.append(res.summary["trained_on"])
    return " ".join(text)


# ---------------------------------------------------------------- score_gene_program
class ScoreInput(BaseModel):
    program: str | None = Field(
        None,
        description="program name (mhc_i, ifn_alpha, ifn_gamma, apoptosis, "
        "inflammatory, tnfa_nfkb, mhc_i_loading), a bundled gene set name, or comma-separated "
        "genes (default: the one the question names)",
        json_schema_extra={"entity": "program"},
    )
    question: str | None = Field(None, description="the question, to read the program from")
    groupby: str | None = Field(
        None,
        description="obs column to compare the score across (e.g. condition)",
        json_schema_extra={"entity": "obs_column"},
    )
    method: Literal[METHODS] = Field(
        "expression",
        description="'expression' (mean log1p CP10k of the program's genes) or "
        "'rank' (rank-weighted presence in each cell's top genes)",
    )
    top_k: int = Field(100, ge=5, le=2000, description="sentence length for the rank method")


class ScoreOutput(BaseModel):
    program: str
    method: str
    n_genes_used: int
    genes_missing: list[str]
    key_added: str
    mean: float
    by_group: dict[str, float] = {}


def score_gene_program(ctx: ToolContext, args: ScoreInput) -> ToolResult:
    name = args.program or program_from_text(args.question)
    if name is None:
        raise InputError(
            "program",
            "was not given and the question names none",
            "name a program: mhc_i, ifn_alpha, ifn_gamma, apoptosis, inflammatory or a gene list",
        )
    roles = find_columns(ctx.adata.obs)
    groupby = _column(ctx, args.groupby) or roles.condition or roles.groups(prefer_predicted=True)
    res = tl.score_program(ctx.adata, name, groupby, args.method, args.top_k, ctx.settings)
    if res.by_group:
        ctx.save_table(res.table(), "program_by_group", f"Mean {res.name} score by {groupby}")
    ctx.save_plot(
        pl.program(res.scores, ctx.adata.obs[groupby] if groupby else None, res.name, res.method, len(res.genes)),
        "program_scores",
        f"{res.name} program score per cell",
    )
    out = ScoreOutput(
        program=res.name,
        method=res.method,
        n_genes_used=len(res.genes),
        genes_missing=res.missing[:50],
        key_added=res.key,
        mean=float(res.scores.mean()),
        by_group=res.by_group,
    )
    parts = ", ".join(f"{g} {v:.3f}" for g, v in sorted(res.by_group.items(), key=lambda kv: -kv[1])[:8])
    return ToolResult(
        output=out,
        evidence=f"Scored {ctx.adata.n_obs} cells on {res.name} ({res.source}; "
        f"{len(res.genes)} of {len(res.genes) + len(res.missing)} genes measured; {res.method} score) into "
        f"obs['{res.key}']" + (f"; mean by {groupby}: {parts}" if res.by_group else "") + ".",
    )


def _column(ctx: ToolContext, column: str | None) -> str | None:
    if column and column not in ctx.adata.obs.columns:
        raise InputError(f"groupby {column!r}", "is not an obs column", f"use one of {list(ctx.adata.obs.columns)}")
    return column


@hookimpl
def register_tools(register):
    register(
        Tool(
            name="run_screen",
            description="Dual-context virtual perturbation screen with the C2S model: predict each perturbation in an "
            "interferon-positive context (stimulated cells) and a neutral one (control cells), score a gene "
            "program such as MHC class I antigen presentation, and rank perturbations by the context split "
            "with bootstrap intervals; perturbations the model was not trained on are flagged, not scored.",
            examples=[
                "Which perturbations raise cell death only in the stimulated context?",
                "Which of these perturbations raise antigen presentation only under interferon?",
                "Run a virtual screen of perturbations on MHC class I antigen presentation",
                "Screen perturbations for a context-dependent increase of the interferon response",
                "Which perturbation increases MHC-I expression in stimulated but not in control cells?",
                "Rank perturbations by how much they change antigen presentation in monocytes",
            ],
            input_model=ScreenInput,
            output_model=ScreenOutput,
            run=run_screen_tool,
            produces=("uns:c2s_screen",),
            cost="high",
            hypotheses=screen_hypotheses,
        )
    )
    register(
        Tool(
            name="score_gene_program",
            description="Score each cell on a named gene program (MHC class I antigen presentation, interferon alpha "
            "or gamma response, apoptosis, inflammation, any bundled MSigDB set, or a gene list) and "
            "compare the score across groups such as condition or cell type.",
            examples=[
                "Is the hypoxia program higher after treatment?",
                "Does inflammatory signalling go up in the stimulated cells?",
                "Score the cells for the interferon alpha response",
                "How high is MHC class I antigen presentation in stimulated versus control cells?",
                "Compute an apoptosis score per cell",
                "Which cell types have the strongest interferon gamma response?",
                "Score these genes ISG15, MX1, IFIT1 as a program",
            ],
            input_model=ScoreInput,
            output_model=ScoreOutput,
            run=score_gene_program,
            produces=("uns:c2s_program_scores",),
        )
    )
