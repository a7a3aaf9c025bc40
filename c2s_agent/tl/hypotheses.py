"""Hypothesis mode: ranked, testable hypotheses built from a run's step results.

Each hypothesis has evidence from the data (expression, ligand-receptor scores, differential expression), from
the model (perturbation predictions, screens) and from knowledge (curated records with their sources), a
confidence and the experiment that would test it. Sources of hypotheses:

- ``score_ligand_receptor``: routes (ligand in senders -> receptor in receivers) significant in the condition of
  interest, ranked by how much the condition raises their score; knowledge records for the pair are retrieved.
- ``run_screen``: top perturbations whose predicted effect depends on the context.
- ``predict_perturbation``: the genes the model predicts the perturbation raises most, per cell type.

Confidence (0-1) is the mean of three parts, each in [0, 1]: statistics (1 - p / 0.05, or the tool's own
score for model evidence), change (how much of the route's score the condition adds over the reference
condition) and knowledge (curated sources supporting the pair: 0 none, 0.5 one, 1 two or more). For screens,
statistics is 1 when the bootstrap interval of the context split excludes 0 and change is 10 x |split| (capped);
for perturbation predictions, statistics is 0.5 (no test) and change 1.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pydantic import BaseModel, Field

CONTROL_RE = re.compile(r"ctrl|control|unstim|baseline|untreated|vehicle|mock|naive|pre", re.I)
CONFIDENCE_RULE = ("mean of statistics (1 - p/0.05), condition change (share of the route's score added by the "
                   "condition over the reference) and knowledge support (0, 0.5 or 1 for 0, 1, 2+ curated sources)")


class Evidence(BaseModel):
    kind: str = Field(description="data | model | knowledge")
    text: str
    step: str | None = Field(None, description="the step whose result this comes from")
    source: str | None = Field(None, description="the knowledge source, for knowledge evidence")


class Hypothesis(BaseModel):
    id: str
    statement: str
    evidence: list[Evidence]
    confidence: float
    confidence_parts: dict[str, float]
    experiment: str


def _rows(run_dir: Path, result: dict, suffix: str) -> list[dict]:
    art = next((a for a in result.get("artefacts", []) if a["path"].endswith(suffix)), None)
    if art is None or not (run_dir / art["path"]).exists():
        return []
    with open(run_dir / art["path"], newline="") as fh:
        return list(csv.DictReader(fh))


def focus_condition(conditions: list[str], requested: str | None = None) -> tuple[str | None, str | None]:
    """(condition of interest, reference): the requested one or the first not named like a control."""
    if len(conditions) < 2:
        return (conditions[0] if conditions else None), None
    focus = requested if requested in conditions else next((c for c in conditions if not CONTROL_RE.search(c)),
                                                           conditions[-1])
    ref = next((c for c in conditions if c != focus and CONTROL_RE.search(c)), None) or \
        next(c for c in conditions if c != focus)
    return focus, ref


def _knowledge(kb, ligand_genes: list[str], receptor_genes: list[str]) -> list[dict]:
    """Curated records naming a ligand gene together with a receptor gene."""
    if kb is None:
        return []
    hits = kb.search(genes=ligand_genes + receptor_genes, kinds=["ligand_receptor", "ppi"], top_k=20, semantic=False)
    lig, rec = set(ligand_genes), set(receptor_genes)
    return [{"id": h.id, "source": h.source, "text": h.text, "also_in": h.also_in} for h in hits
            if lig & set(h.genes) and rec & set(h.genes)]


def _mark_genes(markers: dict, genes: list[str]) -> list[str]:
    return [f"{g} is a top marker of {grp}" for grp, top in markers.items() for g in genes if g in top]


def lr_hypotheses(run_dir: Path, sid: str, result: dict, kb, markers: tuple[str, dict] | None, top: int,
                  focus: str | None = None) -> list[Hypothesis]:
    rows = _rows(run_dir, result, "ligand_receptor.csv")
    if not rows:
        return []
    args = result["args"]
    src, tgt = "+".join(args["source"]), "+".join(args["target"])
    conds = sorted({r.get("condition", "all") for r in rows})
    focus, ref = focus_condition(conds, focus or args.get("condition_value"))
    by = {(r.get("condition", "all"), r["pair"]): r for r in rows}
    cands = []
    for (cond, pair), r in by.items():
        if cond != focus or r["significant"] != "True":
            continue
        score, p = float(r["score"]), float(r["pvalue"])
        p_txt = f"p<{1 / int(args.get('n_perms', 1000)):.2g}" if p == 0 else f"p={p:.3g}"
        ref_row = by.get((ref, pair)) if ref else None
        ref_score = float(ref_row["score"]) if ref_row else 0.0
        change = max(0.0, score - ref_score) / score if ref and score > 0 else 0.0
        cands.append((change * score if ref else score, cond, r, ref_row, change, p, p_txt))
    cands.sort(key=lambda c: c[0], reverse=True)
    out = []
    for _, cond, r, ref_row, change, p, p_txt in cands[:top]:
        lig, rec = r["ligand_genes"].split("+"), r["receptor_genes"].split("+")
        know = _knowledge(kb, lig, rec)
        sources = sorted({k["source"] for k in know} | {s for k in know for s in k["also_in"]})
        parts = {"statistics": round(max(0.0, 1 - p / 0.05), 3), "change": round(change, 3) if ref else 0.0,
                 "knowledge": min(1.0, 0.5 * len(sources))}
        where = f" under {cond}" if focus and ref else ""
        ev = [Evidence(kind="data", step=sid,
                       text=f"{r['pair']}{where}: score {float(r['score']):.3f}, permutation {p_txt}; {r['ligand']} "
                            f"mean {float(r['ligand_mean']):.2f} in {src}, {r['receptor']} mean "
                            f"{float(r['receptor_mean']):.2f} in {tgt} (log1p CP10k)")]
        if ref_row is not None:
            ev.append(Evidence(kind="data", step=sid,
                               text=f"in {ref}: score {float(ref_row['score']):.3f}, p={float(ref_row['pvalue']):.3g}, "
                                    f"{r['ligand']} mean {float(ref_row['ligand_mean']):.2f}, {r['receptor']} mean "
                                    f"{float(ref_row['receptor_mean']):.2f}"))
        if markers:
            ev += [Evidence(kind="data", step=markers[0], text=t) for t in _mark_genes(markers[1], lig + rec)]
        ev += [Evidence(kind="knowledge", source=k["source"], text=k["text"]) for k in know[:3]]
        if not know:
            ev.append(Evidence(kind="knowledge", text="no curated record beyond the CellPhoneDB pair list was found"))
        cond_txt = f" after {cond} (compared with {ref})" if ref else ""
        out.append(Hypothesis(
            id="", statement=f"{src} signal to {tgt} through {r['ligand']} -> {r['receptor']}{cond_txt}.",
            evidence=ev, confidence=round(sum(parts.values()) / 3, 2), confidence_parts=parts,
            experiment=f"Co-culture {src} with {tgt}" + (f" with and without {cond}" if ref else "") +
                       f"; block {r['ligand']} (neutralising antibody) or knock out {r['receptor']} in {tgt} "
                       f"(CRISPR) and measure the {tgt} response (e.g. receptor signalling targets by qPCR or "
                       f"scRNA-seq); the route predicts the response drops when it is blocked."))
    return out


def screen_hypotheses(sid: str, result: dict, top: int) -> list[Hypothesis]:
    """Perturbations whose predicted effect on the program differs between the screen's two contexts."""
    out_ = result.get("output", {})
    contexts, prog = out_.get("contexts", []), out_.get("program", "the program")
    if len(contexts) < 2:
        return []
    a, b = contexts[:2]
    out = []
    for r in out_.get("ranking", [])[:top]:
        if r.get("split") is None or r.get("split_low") is None:
            continue
        excl = r["split_low"] > 0 or (r.get("split_high") is not None and r["split_high"] < 0)
        direction = "more" if r["split"] > 0 else "less"
        parts = {"statistics": 1.0 if excl else 0.0, "change": round(min(1.0, abs(r["split"]) * 10), 3), "knowledge": 0.0}
        out.append(Hypothesis(
            id="", statement=f"Perturbing {r['item']} changes {prog} {direction} in {a} than in {b} (context-conditional).",
            evidence=[Evidence(kind="model", step=sid,
                               text=f"{r['item']}: predicted shift {r.get(f'shift_{a}', 0):+.4f} in {a}, "
                                    f"{r.get(f'shift_{b}', 0):+.4f} in {b}; split {r['split']:+.4f} "
                                    f"[{r['split_low']:+.4f}, {r['split_high']:+.4f}]")],
            confidence=round(sum(parts.values()) / 3, 2), confidence_parts=parts,
            experiment=f"Perturb {r['item']} (CRISPR or ligand treatment) in cells from both contexts ({a}, {b}) and "
                       f"score {prog}; the hypothesis predicts a larger shift in {a if r['split'] > 0 else b}."))
    return out


def perturbation_hypotheses(sid: str, result: dict, top: int) -> list[Hypothesis]:
    """The genes the model predicts a perturbation raises most."""
    out_ = result.get("output", {})
    up = list((out_.get("up") or {}).items())[:top]
    if not up:
        return []
    pert = out_.get("perturbation", "the perturbation")
    genes = ", ".join(f"{g} (+{v:.2f})" for g, v in up)
    parts = {"statistics": 0.5, "change": 1.0, "knowledge": 0.0}
    return [Hypothesis(
        id="", statement=f"{pert} raises {', '.join(g for g, _ in up)} in these cells (model prediction).",
        evidence=[Evidence(kind="model", step=sid, text=f"predicted change vs control, log1p CP10k: {genes}")],
        confidence=round(sum(parts.values()) / 3, 2), confidence_parts=parts,
        experiment=f"Apply {pert} to the same cell types and measure {', '.join(g for g, _ in up)} by qPCR or "
                   f"scRNA-seq against untreated controls.")]


def build(results: dict, run_dir: Path, settings=None, top: int = 5, kb=None, focus: dict | None = None) -> list[Hypothesis]:
    """Ranked hypotheses from the step results of a run (highest confidence first, ids h1, h2, ...); ``focus`` maps
    ligand-receptor step ids to the condition of interest."""
    if kb is None and settings is not None and any(r["tool"] == "score_ligand_receptor" for r in results.values()):
        from ..knowledge.index import load

        kb = load(settings, progress=False)
    markers = next(((sid, r["output"].get("markers", {})) for sid, r in results.items() if r["tool"] == "marker_genes"),
                   None)
    hyps: list[Hypothesis] = []
    for sid, res in results.items():
        if res["tool"] == "score_ligand_receptor":
            hyps += lr_hypotheses(Path(run_dir), sid, res, kb, markers, top, (focus or {}).get(sid))
        elif res["tool"] == "run_screen":
            hyps += screen_hypotheses(sid, res, top)
        elif res["tool"] == "predict_perturbation":
            hyps += perturbation_hypotheses(sid, res, top)
    hyps.sort(key=lambda h: h.confidence, reverse=True)
    return [h.model_copy(update={"id": f"h{i + 1}"}) for i, h in enumerate(hyps)]


def adapt_plan(plan):
    """Hypothesis mode scores ligand-receptor routes in every condition, to compare the condition of interest with
    its reference. Returns the plan (with a note when a step changed) and {step id: condition of interest}."""
    steps, notes, focus = [], [], {}
    for s in plan.steps:
        if s.tool == "score_ligand_receptor" and s.args.get("condition_column") and s.args.get("condition_value"):
            focus[s.id] = s.args["condition_value"]
            notes.append(f"hypothesis mode: {s.id} scores every value of {s.args['condition_column']} to compare "
                         f"{s.args['condition_value']} with its reference")
            s = s.model_copy(update={"args": {k: v for k, v in s.args.items() if k != "condition_value"}})
        steps.append(s)
    return (plan.model_copy(update={"steps": steps, "notes": [*plan.notes, *notes]}) if notes else plan), focus


def to_markdown(hyps: list[Hypothesis]) -> str:
    """The report's Hypotheses section."""
    if not hyps:
        return "No hypothesis could be built from these steps (hypotheses come from ligand-receptor scores, screens " \
               "and perturbation predictions)."
    lines = [f"Ranked by confidence ({CONFIDENCE_RULE}).", ""]
    for h in hyps:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in h.confidence_parts.items())
        lines += [f"<a id=\"hyp-{h.id}\"></a>", "", f"### {h.id}. {h.statement}", "",
                  f"**Confidence {h.confidence:.2f}** ({parts})", "", "Evidence:", ""]
        for e in h.evidence:
            link = f" ([step {e.step}](#step-{e.step}))" if e.step else ""
            src = f" [{e.source}]" if e.source and e.source not in e.text else ""
            lines.append(f"- *{e.kind}*: {e.text}{src}{link}")
        lines += ["", f"**Test.** {h.experiment}", ""]
    return "\n".join(lines)
