"""Built-in screen plugin: the gene programs (MSigDB interferon / apoptosis / inflammation sets, MHC class I)
and the tools ``run_screen`` (dual-context virtual screen) and ``score_gene_program``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from c2s_agent import hookimpl
from c2s_agent.errors import InputError
from c2s_agent.registry import GeneProgram
from c2s_agent.tools import Tool, ToolContext, ToolResult


@hookimpl
def register_gene_programs(register):
    from c2s_agent.screen.programs import builtin_programs

    for name, prog in builtin_programs().items():
        register(GeneProgram(name, tuple(prog.genes), prog.source))


#: Words in a question that name a built-in program (first match wins: antigen presentation before interferon).
PROGRAM_WORDS = (("mhc_i", r"antigen.present|\bmhc|\bhla\b|class i\b"), ("ifn_gamma", r"interferon.gamma|\bifn.?g"),
                 ("ifn_alpha", r"interferon|\bifn|type i\b"), ("apoptosis", r"apopto|cell death"),
                 ("inflammatory", r"inflamm"), ("tnfa_nfkb", r"\btnf|nf.?kb"))


def program_from_text(text: str | None) -> str | None:
    """The built-in program a question names ("antigen presentation" -> mhc_i, "interferon gamma" -> ifn_gamma)."""
    import re

    for name, pattern in PROGRAM_WORDS:
        if text and re.search(pattern, text.lower()):
            return name
    return None


def perturbations_from_text(text: str | None, known: list[str]) -> list[str]:
    """Perturbations listed after a colon ("...: IFN-beta, TNF and IL4"), else known ones the text names."""
    import re

    if text and ":" in text:
        listed = re.split(r",|;|\band\b|\bor\b", text.rsplit(":", 1)[1])
        names = [x.strip(" ?.!'\"") for x in listed]
        if [n for n in names if n]:
            return list(dict.fromkeys(n for n in names if n))
    return [k for k in known if text and k.lower() in text.lower()]


# ---------------------------------------------------------------- run_screen
class ScreenInput(BaseModel):
    perturbations: list[str] | None = Field(None, description="perturbation names to screen (default: those listed "
                                            "in the question, else every perturbation the model was trained on)")
    program: str | None = Field(None, description="gene program to score: mhc_i (MHC class I antigen presentation), "
                                "ifn_alpha, ifn_gamma, apoptosis, inflammatory, or a bundled gene set name "
                                "(default: the one the question names, else mhc_i)")
    question: str | None = Field(None, description="the question, to read the program and perturbations from")
    contexts: list[str] | None = Field(None, description="contexts as NAME:COLUMN=VALUE, the first two give the "
                                       "split (default interferon:condition=stim and neutral:condition=ctrl)")
    cell_type: str | None = Field(None, description="restrict base cells to this cell type",
                                  json_schema_extra={"entity": "cell_type"})
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


def _ledger_call(ctx: ToolContext):
    """Model-call records in the run ledger's terms (name, duration, tokens) as well as the model's own."""
    def record(kind, **f):
        ctx.record_call(kind, name=f"{f.get('model', 'model')}.{f.get('task', kind)}", duration_s=f.get("seconds"),
                        tokens_in=f.get("prompt_tokens"), tokens_out=f.get("completion_tokens"), **f)
    return record


def run_screen_tool(ctx: ToolContext, args: ScreenInput) -> ToolResult:
    import hashlib

    import numpy as np

    from c2s_agent.models import load_model
    from c2s_agent.screen import run_screen

    m = load_model(ctx.settings.model, ctx.settings)
    perts = args.perturbations or perturbations_from_text(args.question, m.known_perturbations) or m.known_perturbations
    program = args.program or program_from_text(args.question) or "mhc_i"
    if not perts:
        raise InputError("perturbations", f"were not given and model {m.name} declares none",
                         "name the perturbations to screen")
    tag = hashlib.sha256(repr(args.model_dump()).encode()).hexdigest()[:10]
    out = ctx.run_dir / "artefacts" / f"{ctx.step_id}_screen_{tag}"
    res = run_screen(ctx.adata, perts, args.contexts, program, out_dir=out, model=m, cell_type=args.cell_type,
                     n_cells=args.n_cells, seed=args.seed, settings=ctx.settings, progress=False,
                     on_call=_ledger_call(ctx))
    ctx.save_table(res.table.set_index("rank"), "screen_ranked", "Screen ranking by context split, with 95% intervals")
    for key, title in (("ranking_plot", "Screen ranking with 95% intervals"),
                       ("distribution_plot", "Program score distributions, base vs predicted cells")):
        if key in res.files:
            ctx._add("plot", res.files[key], title)
    ctx.save_file(res.files["summary"], "Screen summary (configuration, model facts, timing)")
    contexts = list(res.summary["contexts"])
    ctx.adata.uns["c2s_screen"] = {"program": res.summary["program"], "contexts": contexts, "out_dir": str(out),
                                   "counts": res.summary["counts"]}
    scored = res.table[res.table["status"] == "scored"]
    keep = ["item", "perturbation", *[c for c in scored.columns if c.startswith(("shift_", "low_", "high_", "split"))]]
    ranking = scored[keep].round(5).replace({np.nan: None}).head(20).to_dict("records")
    not_scored = {r["item"]: f"{r['status']}: {r['reason']}" for r in res.table.to_dict("records") if r["status"] != "scored"}
    out_model = ScreenOutput(n_items=len(res.table), n_scored=len(scored), n_not_scored=len(not_scored),
                             contexts=contexts, program=res.summary["program"], ranking=ranking, not_scored=not_scored,
                             trained_on=res.summary["trained_on"],
                             items_skipped_finished=res.summary["run"]["items_skipped_finished"])
    return ToolResult(output=out_model, evidence=_screen_evidence(res, contexts, scored, not_scored))


def _screen_evidence(res, contexts, scored, not_scored) -> str:
    prog = res.summary["program"]
    text = [f"Virtual screen of {len(res.table)} perturbation(s) x {len(contexts)} context(s) "
            f"({', '.join(f'{c}: ' + ', '.join(f'{k}={v}' for k, v in w.items()) for c, w in res.summary['contexts'].items())}) "
            f"on the {prog} program, {res.summary['config']['n_cells']} base cells per context."]
    if len(scored) and len(contexts) >= 2:
        a, b = contexts[:2]
        text.append(f"Ranking: context split = shift in {a} minus shift in {b} (shift = mean change of the {prog} score "
                    "from each base cell to its predicted perturbed state); a split interval above 0 means the "
                    f"perturbation raises {prog} more in {a} than in {b}.")
        hits = scored[(scored["split_low"] > 0) & (scored[f"low_{a}"] > 0)]
        text.append(f"Raise {prog} in {a} more than in {b}: {', '.join(hits['item'].astype(str)[:10])}." if len(hits) else
                    f"No scored perturbation raises {prog} in {a} more than in {b} (no split interval above 0).")
    if len(scored):
        if len(contexts) >= 2:
            for r in scored.head(5).to_dict("records"):
                sig = "interval excludes 0" if r["split_excludes_zero"] else "interval includes 0"
                text.append(f"{r['item']}: shift {r[f'shift_{contexts[0]}']:+.4f} in {contexts[0]}, "
                            f"{r[f'shift_{contexts[1]}']:+.4f} in {contexts[1]}; split {r['split']:+.4f} "
                            f"[{r['split_low']:+.4f}, {r['split_high']:+.4f}] ({sig}).")
        else:
            for r in scored.head(5).to_dict("records"):
                c = contexts[0]
                text.append(f"{r['item']}: shift {r[f'shift_{c}']:+.4f} [{r[f'low_{c}']:+.4f}, {r[f'high_{c}']:+.4f}] in {c}.")
    if not_scored:
        text.append(f"Not scored ({len(not_scored)}): {', '.join(list(not_scored)[:10])} - the model was not trained on them.")
    text.append(res.summary["trained_on"])
    return " ".join(text)


# ---------------------------------------------------------------- score_gene_program
class ScoreInput(BaseModel):
    program: str | None = Field(None, description="program name (mhc_i, ifn_alpha, ifn_gamma, apoptosis, "
                                "inflammatory, tnfa_nfkb, mhc_i_loading), a bundled gene set name, or comma-separated "
                                "genes (default: the one the question names)")
    question: str | None = Field(None, description="the question, to read the program from")
    groupby: str | None = Field(None, description="obs column to compare the score across (e.g. condition)",
                                json_schema_extra={"entity": "obs_column"})
    method: str = Field("expression", description="'expression' (mean log1p CP10k of the program's genes) or "
                        "'rank' (rank-weighted presence in each cell's top genes)")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from c2s_agent.screen import get_program, score_cells

    adata = ctx.adata
    name = args.program or program_from_text(args.question)
    if name is None:
        raise InputError("program", "was not given and the question names none",
                         "name a program: mhc_i, ifn_alpha, ifn_gamma, apoptosis, inflammatory or a gene list")
    prog = get_program(name, ctx.settings)
    scores, genes = score_cells(adata, prog, method=args.method, k=args.top_k, settings=ctx.settings)
    key = f"c2s_program_{prog.name.lower()}"
    adata.obs[key] = scores
    adata.uns["c2s_program_scores"] = {**adata.uns.get("c2s_program_scores", {}), prog.name: key}
    col = args.groupby or next((c for c in ("condition", "cell_type", "c2s_cell_type") if c in adata.obs), None)
    if args.groupby and args.groupby not in adata.obs:
        raise InputError(f"groupby {args.groupby!r}", "is not an obs column", f"use one of {list(adata.obs.columns)}")
    by = {}
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if col:
        groups = adata.obs[col].astype(str)
        by = {str(g): float(v) for g, v in pd.Series(scores, index=adata.obs_names).groupby(groups.to_numpy()).mean().items()}
        names = sorted(by)
        ax.violinplot([scores[(groups == g).to_numpy()] for g in names], showmedians=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, fontsize=7)
        ctx.save_table(pd.Series(by, name=f"mean {prog.name} score").to_frame(), "program_by_group",
                       f"Mean {prog.name} score by {col}")
    else:
        ax.hist(scores, bins=40, color="#4477aa")
    ax.set_ylabel(f"{prog.name} score ({args.method})")
    ax.set_title(f"{prog.name}: {len(genes)} genes")
    ctx.save_plot(fig, "program_scores", f"{prog.name} program score per cell")
    missing = [g for g in prog.genes if g not in genes]
    out = ScoreOutput(program=prog.name, method=args.method, n_genes_used=len(genes), genes_missing=missing[:50],
                      key_added=key, mean=float(scores.mean()), by_group=by)
    parts = ", ".join(f"{g} {v:.3f}" for g, v in sorted(by.items(), key=lambda kv: -kv[1])[:8])
    return ToolResult(output=out, evidence=f"Scored {adata.n_obs} cells on {prog.name} ({prog.source}; {len(genes)} of "
                      f"{len(prog.genes)} genes measured; {args.method} score) into obs['{key}']"
                      + (f"; mean by {col}: {parts}" if by else "") + ".")


@hookimpl
def register_tools(register):
    register(Tool(
        name="run_screen",
        description="Dual-context virtual perturbation screen with the C2S model: predict each perturbation in an "
                    "interferon-positive context (stimulated cells) and a neutral one (control cells), score a gene "
                    "program such as MHC class I antigen presentation, and rank perturbations by the context split "
                    "with bootstrap intervals; perturbations the model was not trained on are flagged, not scored.",
        examples=["Which of these perturbations raise antigen presentation only under interferon?",
                  "Run a virtual screen of perturbations on MHC class I antigen presentation",
                  "Screen perturbations for a context-dependent increase of the interferon response",
                  "Which perturbation increases MHC-I expression in stimulated but not in control cells?",
                  "Rank perturbations by how much they change antigen presentation in monocytes"],
        input_model=ScreenInput, output_model=ScreenOutput, run=run_screen_tool,
        produces=("uns:c2s_screen",), cost="high"))
    register(Tool(
        name="score_gene_program",
        description="Score each cell on a named gene program (MHC class I antigen presentation, interferon alpha "
                    "or gamma response, apoptosis, inflammation, any bundled MSigDB set, or a gene list) and "
                    "compare the score across groups such as condition or cell type.",
        examples=["Score the cells for the interferon alpha response", "How high is MHC class I antigen presentation "
                  "in stimulated versus control cells?", "Compute an apoptosis score per cell",
                  "Which cell types have the strongest interferon gamma response?",
                  "Score these genes ISG15, MX1, IFIT1 as a program"],
        input_model=ScoreInput, output_model=ScoreOutput, run=score_gene_program,
        produces=("uns:c2s_program_scores",)))
