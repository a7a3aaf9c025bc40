"""Testable hypotheses from analysis results, each with evidence from the data (expression, ligand-receptor
scores, differential expression), from the model (perturbation predictions, screens) and from knowledge (curated
records with their sources), a confidence and the experiment that would test it.

- :func:`communication_hypotheses`: routes (ligand in senders -> receptor in receivers) significant in the
  condition of interest, ranked by how much the condition raises their score;
- :func:`screen_hypotheses`: perturbations whose predicted effect depends on the context;
- :func:`perturbation_hypotheses`: the genes the model predicts a perturbation raises most.

Confidence (0-1) is the mean of three parts, each in [0, 1]: statistics (1 - p / 0.05, or the tool's own
score for model evidence), change (how much of the route's score the condition adds over the reference
condition) and knowledge (curated sources supporting the pair: 0 none, 0.5 one, 1 two or more). For screens,
statistics is 1 when the bootstrap interval of the context split excludes 0 and change is 10 x |split| (capped);
for perturbation predictions, statistics is 0.5 (no test) and change 1.
"""

from __future__ import annotations

from ..conventions import control_value
from ..conventions.slots import CONDITION
from ..tools import Evidence, Hypothesis, HypothesisContext, StepResult

CONFIDENCE_RULE = (
    "mean of statistics (1 - p/0.05), condition change (share of the route's score added by the "
    "condition over the reference) and knowledge support (0, 0.5 or 1 for 0, 1, 2+ curated sources)"
)


def focus_condition(conditions: list[str], requested: str | None = None) -> tuple[str | None, str | None]:
    """(condition of interest, reference): the requested one or the first that is not the control."""
    if len(conditions) < 2:
        return (conditions[0] if conditions else None), None
    control = control_value(conditions)
    focus = requested if requested in conditions else next((c for c in conditions if c != control), conditions[-1])
    ref = control if control not in (None, focus) else next(c for c in conditions if c != focus)
    return focus, ref


def _knowledge(kb, ligand_genes: list[str], receptor_genes: list[str]) -> list[dict]:
    """Curated records naming a ligand gene together with a receptor gene."""
    hits = kb.search(genes=ligand_genes + receptor_genes, kinds=["ligand_receptor", "ppi"], top_k=20, semantic=False)
    lig, rec = set(ligand_genes), set(receptor_genes)
    return [
        {"id": h.id, "source": h.source, "text": h.text, "also_in": h.also_in}
        for h in hits
        if lig & set(h.genes) and rec & set(h.genes)
    ]


def _confidence(parts: dict[str, float]) -> float:
    return round(sum(parts.values()) / 3, 2)


def _routes(rows: list[dict], focus: str | None, ref: str | None, n_perms: int, top: int) -> list[tuple]:
    """The significant pairs in the condition of interest, those the condition raises most first."""
    by = {(r.get(CONDITION, "all"), r["pair"]): r for r in rows}
    cands = []
    for (cond, pair), r in by.items():
        if cond != focus or r["significant"] != "True":
            continue
        score, p = float(r["score"]), float(r["pvalue"])
        ref_row = by.get((ref, pair)) if ref else None
        change = max(0.0, score - (float(ref_row["score"]) if ref_row else 0.0)) / score if ref and score > 0 else 0.0
        p_txt = f"p<{1 / n_perms:.2g}" if p == 0 else f"p={p:.3g}"
        cands.append((change * score if ref else score, cond, r, ref_row, change, p, p_txt))
    return sorted(cands, key=lambda c: c[0], reverse=True)[:top]


def _route(
    step: str, src: str, tgt: str, route: tuple, ref: str | None, know: list[dict], markers: tuple[str, dict] | None
) -> Hypothesis:
    _, cond, r, ref_row, change, p, p_txt = route
    lig, rec = r["ligand_genes"].split("+"), r["receptor_genes"].split("+")
    sources = sorted({k["source"] for k in know} | {s for k in know for s in k["also_in"]})
    parts = {
        "statistics": round(max(0.0, 1 - p / 0.05), 3),
        "change": round(change, 3) if ref else 0.0,
        "knowledge": min(1.0, 0.5 * len(sources)),
    }
    where = f" under {cond}" if ref else ""
    ev = [
        Evidence(
            kind="data",
            step=step,
            text=f"{r['pair']}{where}: score {float(r['score']):.3f}, permutation {p_txt}; {r['ligand']} mean "
            f"{float(r['ligand_mean']):.2f} in {src}, {r['receptor']} mean {float(r['receptor_mean']):.2f} "
            f"in {tgt} (log1p CP10k)",
        )
    ]
    if ref_row is not None:
        ev.append(
            Evidence(
                kind="data",
                step=step,
                text=f"in {ref}: score {float(ref_row['score']):.3f}, p={float(ref_row['pvalue']):.3g}, "
                f"{r['ligand']} mean {float(ref_row['ligand_mean']):.2f}, {r['receptor']} mean "
                f"{float(ref_row['receptor_mean']):.2f}",
            )
        )
    if markers:
        ev += [
            Evidence(kind="data", step=markers[0], text=f"{g} is a top marker of {grp}")
            for grp, top in markers[1].items()
            for g in lig + rec
            if g in top
        ]
    ev += [Evidence(kind="knowledge", source=k["source"], text=k["text"]) for k in know[:3]]
    if not know:
        ev.append(Evidence(kind="knowledge", text="no curated record beyond the CellPhoneDB pair list was found"))
    return Hypothesis(
        statement=f"{src} signal to {tgt} through {r['ligand']} -> {r['receptor']}"
        + (f" after {cond} (compared with {ref})" if ref else "")
        + ".",
        evidence=ev,
        confidence=_confidence(parts),
        confidence_parts=parts,
        experiment=f"Co-culture {src} with {tgt}"
        + (f" with and without {cond}" if ref else "")
        + f"; block {r['ligand']} (neutralising antibody) or knock out {r['receptor']} in {tgt} (CRISPR) and "
        f"measure the {tgt} response (e.g. receptor signalling targets by qPCR or scRNA-seq); the route "
        "predicts the response drops when it is blocked.",
    )


def communication_hypotheses(result: StepResult, ctx: HypothesisContext, top: int = 5) -> list[Hypothesis]:
    """Ligand-receptor routes from a communication step's table (``*ligand_receptor.csv``), with knowledge records
    for each pair and the marker genes other steps found."""
    from ..knowledge.index import load

    rows = ctx.table(result, "ligand_receptor.csv")
    if not rows:
        return []
    args = result.args
    src, tgt = (
        "+".join(result.output.get("source") or args["source"]),
        "+".join(result.output.get("target") or args["target"]),
    )
    focus, ref = focus_condition(
        sorted({r.get(CONDITION, "all") for r in rows}), ctx.focus or args.get("condition_value")
    )
    kb = load(ctx.settings, progress=False)
    markers = next(
        ((r.step, r.output["markers"]) for r in ctx.results if isinstance(r.output.get("markers"), dict)), None
    )
    routes = _routes(rows, focus, ref, int(args.get("n_perms", 1000)), top)
    return [
        _route(
            result.step,
            src,
            tgt,
            route,
            ref,
            _knowledge(kb, route[2]["ligand_genes"].split("+"), route[2]["receptor_genes"].split("+")),
            markers,
        )
        for route in routes
    ]


def screen_hypotheses(result: StepResult, ctx: HypothesisContext | None = None, top: int = 5) -> list[Hypothesis]:
    """Perturbations whose predicted effect on the program differs between the screen's two contexts."""
    out_ = result.output
    contexts, prog = out_.get("contexts", []), out_.get("program", "the program")
    if len(contexts) < 2:
        return []
    a, b = contexts[:2]
    out = []
    for r in out_.get("ranking", [])[:top]:
        if r.get("split") is None or r.get("split_low") is None:
            continue
        excl = r["split_low"] > 0 or (r.get("split_high") is not None and r["split_high"] < 0)
        parts = {
            "statistics": 1.0 if excl else 0.0,
            "change": round(min(1.0, abs(r["split"]) * 10), 3),
            "knowledge": 0.0,
        }
        out.append(
            Hypothesis(
                statement=f"Perturbing {r['item']} changes {prog} {'more' if r['split'] > 0 else 'less'} in {a} than in "
                f"{b} (context-conditional).",
                evidence=[
                    Evidence(
                        kind="model",
                        step=result.step,
                        text=f"{r['item']}: predicted shift {r.get(f'shift_{a}', 0):+.4f} in {a}, "
                        f"{r.get(f'shift_{b}', 0):+.4f} in {b}; split {r['split']:+.4f} "
                        f"[{r['split_low']:+.4f}, {r['split_high']:+.4f}]",
                    )
                ],
                confidence=_confidence(parts),
                confidence_parts=parts,
                experiment=f"Perturb {r['item']} (CRISPR or ligand treatment) in cells from both contexts ({a}, {b}) and "
                f"score {prog}; the hypothesis predicts a larger shift in {a if r['split'] > 0 else b}.",
            )
        )
    return out


def perturbation_hypotheses(result: StepResult, ctx: HypothesisContext | None = None, top: int = 5) -> list[Hypothesis]:
    """The genes the model predicts a perturbation raises most."""
    up = list((result.output.get("up") or {}).items())[:top]
    if not up:
        return []
    pert = result.output.get("perturbation", "the perturbation")
    names = ", ".join(g for g, _ in up)
    parts = {"statistics": 0.5, "change": 1.0, "knowledge": 0.0}
    return [
        Hypothesis(
            statement=f"{pert} raises {names} in these cells (model prediction).",
            evidence=[
                Evidence(
                    kind="model",
                    step=result.step,
                    text="predicted change vs control, log1p CP10k: " + ", ".join(f"{g} (+{v:.2f})" for g, v in up),
                )
            ],
            confidence=_confidence(parts),
            confidence_parts=parts,
            experiment=f"Apply {pert} to the same cell types and measure {names} by qPCR or scRNA-seq against untreated "
            "controls.",
        )
    ]


def ranked(hyps: list[Hypothesis]) -> list[Hypothesis]:
    """Highest confidence first, with ids h1, h2, ..."""
    hyps = sorted(hyps, key=lambda h: h.confidence, reverse=True)
    return [h.model_copy(update={"id": f"h{i + 1}"}) for i, h in enumerate(hyps)]
