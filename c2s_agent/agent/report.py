"""Run reports: ``report.md`` and a self-contained ``report.html`` (plots embedded). Every statement links to
the section of the step that produced its evidence."""

from __future__ import annotations

import base64
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..conventions.slots import PREDICTED_TYPE
from ..tools import Hypothesis, StepResult
from .context import RunManifest
from .plan import NO_TOOL, Plan
from .state import Failure

CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
table{border-collapse:collapse;font-size:.9em;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem}
th{background:#f3f3f3}code{background:#f5f5f5;padding:0 .2rem}img{max-width:100%}h3{border-top:1px solid #ddd;padding-top:1rem}
.small{color:#666;font-size:.9em}"""


def _md_table(rows: list[list[str]], header: list[str]) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _csv_preview(path: Path, n: int = 10) -> str:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return ""
    body = [
        [(f"{float(v):.3g}" if re.fullmatch(r"-?\d+\.\d{4,}(e-?\d+)?", v) else v) for v in r] for r in rows[1 : n + 1]
    ]
    more = f'\n\n<span class="small">{len(rows) - 1 - n} more rows in the CSV.</span>' if len(rows) - 1 > n else ""
    return _md_table(body, rows[0]) + more


def _fmt_args(args: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) or "defaults"


def figures(adata, hypotheses: list, run_dir: Path) -> list[tuple[str, str]]:
    """Report-level plots: the cells coloured by predicted type (when annotation ran) and the hypotheses' ranking.
    Returns (title, path relative to the run directory) pairs."""
    from .. import pl

    out = []
    folder = run_dir / "artefacts"
    folder.mkdir(parents=True, exist_ok=True)
    if adata is not None and PREDICTED_TYPE in adata.obs:
        fig, what = pl.groups_2d(adata, PREDICTED_TYPE, "Cells by C2S-predicted type")
        fig.savefig(folder / "report_predicted_types.png", dpi=100, bbox_inches="tight")
        out.append(
            (
                f"{what} coloured by the C2S-predicted cell type (obs['{PREDICTED_TYPE}'])",
                "artefacts/report_predicted_types.png",
            )
        )
    if hypotheses:
        pl.hypotheses([h.model_dump() for h in hypotheses]).savefig(
            folder / "report_hypotheses.png", dpi=100, bbox_inches="tight"
        )
        out.append(("Hypotheses ranked by confidence, split into its parts", "artefacts/report_hypotheses.png"))
    return out


def hypotheses_markdown(hyps: list[Hypothesis]) -> str:
    """The report's Hypotheses section."""
    from ..tl.hypotheses import CONFIDENCE_RULE

    if not hyps:
        return (
            "No hypothesis could be built from these steps (hypotheses come from tools that build them: "
            "ligand-receptor scores, screens and perturbation predictions)."
        )
    lines = [f"Ranked by confidence ({CONFIDENCE_RULE}).", ""]
    for h in hyps:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in h.confidence_parts.items())
        lines += [
            f'<a id="hyp-{h.id}"></a>',
            "",
            f"### {h.id}. {h.statement}",
            "",
            f"**Confidence {h.confidence:.2f}** ({parts})",
            "",
            "Evidence:",
            "",
        ]
        for e in h.evidence:
            link = f" ([step {e.step}](#step-{e.step}))" if e.step else ""
            src = f" [{e.source}]" if e.source and e.source not in e.text else ""
            lines.append(f"- *{e.kind}*: {e.text}{src}{link}")
        lines += ["", f"**Test.** {h.experiment}", ""]
    return "\n".join(lines)


@dataclass
class ReportInputs:
    """Everything a report is written from: the manifest, the plans, the finished steps (from the ledger),
    failures, hypotheses, ledger rows and totals, and report-level figures."""

    run: RunManifest
    question: str
    plan: Plan
    initial: Plan
    results: dict[str, StepResult]
    failures: list[Failure]
    hypotheses: list[Hypothesis] | None
    ledger_rows: list[dict]
    totals: dict
    run_dir: Path
    figures: list[tuple[str, str]] = field(default_factory=list)


def provenance(r: ReportInputs) -> str:
    """Where every number comes from: the input, each step's tool, plugin, arguments and files, and versions."""
    rows = [
        [
            f"[{sid}](#step-{sid})",
            res.tool,
            res.plugin or "",
            _fmt_args(res.args),
            ", ".join(f"[{Path(a.path).name}]({a.path})" for a in res.artefacts) or "-",
            f"ledger.sqlite: step {sid}, seq 0",
        ]
        for sid, res in r.results.items()
    ]
    vers = ", ".join(f"{k} {v}" for k, v in r.run.versions.items() if v)
    head = [
        f"Input: `{r.run.data}` ({r.run.data_summary or 'no data'}). Every number in the Answer, "
        "Hypotheses and Steps sections comes from one of these steps (the link next to it), computed by the "
        "named tool with these arguments; tool calls, model calls and tokens are rows of the run's ledger.",
        "",
    ]
    table = _md_table(rows, ["step", "tool", "plugin", "arguments", "files", "ledger row"]) if rows else "No step ran."
    return "\n".join(head + [table, "", f"Software: {vers}."])


def _answer(r: ReportInputs) -> list[str]:
    plan, out = r.plan, []
    if not plan.steps and not r.results:
        out += [
            f"**{NO_TOOL.capitalize()}.** The question was understood as: "
            + "; ".join(f'"{c}"' for c in plan.unanswered or [r.question])
            + f". Installed tools: {', '.join(sorted(r.run.tools))}.",
            "",
        ]
        out += [f"- {n.text}" for n in plan.notes if n.kind == "missing"]
        if plan.problems:
            out += ["The plan could not run:", ""] + [f"- {p}" for p in plan.problems] + [""]
    elif plan.problems and not r.results:
        out += ["The plan did not pass its check, so nothing was run:", ""] + [f"- {p}" for p in plan.problems] + [""]
    out += [f"- {res.evidence} ([step {sid}](#step-{sid}))" for sid, res in r.results.items()]
    out += [f"- Step {f.step} ({f.tool}) failed: {f.error} ([step {f.step}](#step-{f.step}))" for f in r.failures]
    if plan.unanswered and plan.steps:
        out.append(f"- Not answered ({NO_TOOL}): " + "; ".join(f'"{c}"' for c in plan.unanswered))
    if r.hypotheses is not None:
        out += ["", "## Hypotheses", "", hypotheses_markdown(r.hypotheses)]
    if r.figures:
        out += ["", "## Figures", ""]
        for title, path in r.figures:
            out += [f"![{title}]({path})", "", f'<span class="small">{title}.</span>', ""]
    return out


def _plan_section(r: ReportInputs) -> list[str]:
    out = ["", "## Plan", ""]
    if r.initial.steps:
        out.append(
            _md_table(
                [[f"[{s.id}](#step-{s.id})", s.tool, _fmt_args(s.args), s.why] for s in r.initial.steps],
                ["step", "tool", "arguments", "answers"],
            )
        )
    else:
        out.append("No steps.")
    out += [f"\n- {n.text}" for n in r.plan.notes]
    return out


def _step(r: ReportInputs, res: StepResult, calls: list[dict]) -> list[str]:
    out = [
        f"### {res.step} · {res.tool}",
        "",
        f'<span class="small">plugin {res.plugin} · arguments: `{_fmt_args(res.args)}` · {res.duration_s:.2f} s</span>',
        "",
        f"**Evidence.** {res.evidence}",
        "",
    ]
    if calls:
        tok = sum((c["tokens_in"] or 0) + (c["tokens_out"] or 0) for c in calls)
        out += [f'<span class="small">{len(calls)} model calls, {tok} tokens.</span>', ""]
    for art in res.artefacts:
        path = r.run_dir / art.path
        if art.kind == "plot":
            out += [f"![{art.title}]({art.path})", ""]
        elif art.kind == "table" and path.exists():
            out += [f"*{art.title}* ([CSV]({art.path}))", "", _csv_preview(path), ""]
        else:
            out += [f"- [{art.title}]({art.path})", ""]
    return out


def _steps_section(r: ReportInputs) -> list[str]:
    out = ["", "## Steps", ""]
    failed = {f.step: f for f in r.failures}
    ids = list(dict.fromkeys([*(s.id for s in r.initial.steps), *r.results, *failed]))
    calls: dict[str, list] = {}
    for row in r.ledger_rows:
        if row["kind"] != "tool":
            calls.setdefault(row["step_id"], []).append(row)
    for sid in ids:
        out += [f'<a id="step-{sid}"></a>', ""]
        if sid in r.results:
            out += _step(r, r.results[sid], calls.get(sid, []))
        elif sid in failed:
            f = failed[sid]
            out += [
                f"### {sid} · {f.tool} (failed)",
                "",
                f"Arguments: `{_fmt_args(f.args)}`",
                "",
                f"**Error.** {f.error}",
                "",
            ]
        else:
            why = (
                "the plan did not pass its check"
                if r.plan.problems and not r.results
                else "dropped after an earlier step failed"
            )
            out += [f"### {sid} (not run)", "", f"Not run: {why}.", ""]
    return out


def _cost(r: ReportInputs) -> list[str]:
    t, tot = r.run.timings, r.totals
    return [
        "## Cost",
        "",
        _md_table(
            [
                ["wall time", f"{t.get('total_s', 0):.2f} s"],
                ["tool time", f"{tot['tool_seconds']:.2f} s"],
                ["planning", f"{t.get('plan_s', 0):.2f} s"],
                ["loading data", f"{t.get('load_s', 0):.2f} s"],
                ["saving working data", f"{t.get('persist_s', 0):.2f} s"],
                ["ledger rows", str(tot["calls"])],
                ["model and planner calls", str(tot["model_calls"])],
                ["tokens (in / out)", f"{tot['tokens_in']} / {tot['tokens_out']}"],
            ],
            ["", ""],
        ),
        "",
    ]


def _limitations(r: ReportInputs) -> list[str]:
    lims = [
        f"Step {f.step} ({f.tool}) failed; statements that would have come from it are missing." for f in r.failures
    ]
    lims += [f'{NO_TOOL.capitalize()}: "{c}".' for c in r.plan.unanswered]
    lims += [f"{LIMIT_KINDS[n.kind]}: {n.text}." for n in r.plan.notes if n.kind in LIMIT_KINDS]
    lims += [f"How step {sid} ({res.tool}) was made: {res.method}." for sid, res in r.results.items() if res.method]
    if r.hypotheses is not None:
        lims.append(
            "Hypotheses rank routes and effects that this dataset and the curated knowledge are consistent "
            "with; expression of a ligand and its receptor does not show that they signal, and model "
            "predictions are only as good as the model's held-out metrics. Each needs the proposed experiment."
        )
    lims += [
        "Each statement reports what one tool computed on this dataset; none is a validated biological "
        "conclusion. Differential expression p-values ignore donor structure (cells are not independent "
        "replicates).",
        f"The plan was made by the {r.plan.planner} planner from tool descriptions; check that it matches the "
        "question (see the Plan section).",
    ]
    return ["## Limitations", ""] + [f"- {x}" for x in lims]


#: Plan notes a reader must see among the limitations, with how they are introduced.
LIMIT_KINDS = {
    "assumption": "Planner assumption",
    "missing": "Not in the data",
    "fallback": "Re-planned",
    "planner_fallback": "Planned by the embedded planner",
}


def render_markdown(r: ReportInputs) -> str:
    head = [
        f"# {r.question}",
        "",
        f'<span class="small">Run `{r.run.id}` · data: {r.run.data_summary or r.run.data} · '
        f"planner: {r.plan.planner} · {r.run.created}</span>",
        "",
        "## Answer",
        "",
    ]
    parts = head + _answer(r) + _plan_section(r) + _steps_section(r) + ["## Provenance", "", provenance(r), ""]
    return "\n".join(parts + _cost(r) + _limitations(r)) + "\n"


def to_html(md: str, run_dir: Path, title: str) -> str:
    """Markdown -> one self-contained HTML page (PNG plots embedded as base64)."""
    import html

    import markdown

    body = markdown.markdown(md, extensions=["tables", "fenced_code"])

    def embed(m):
        path = run_dir / m.group(2)
        if path.suffix.lower() == ".png" and path.exists():
            return f'{m.group(1)}data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'
        return m.group(0)

    body = re.sub(r'(<img[^>]*src=")([^"]+)"', embed, body)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


def write_report(ctx, state: dict) -> Path:
    """Write report.md and report.html for the run in ``ctx``; returns the HTML path."""
    run = ctx.manifest.model_copy(update={"timings": {**ctx.manifest.timings, **ctx.timings, "total_s": ctx.wall()}})
    plan = state.get("plan") or Plan(question=state["question"], planner=run.planner)
    hyps = state.get("hypotheses") if state.get("hypothesize") else None
    r = ReportInputs(
        run,
        state["question"],
        plan,
        state.get("initial_plan") or plan,
        {res.step: res for res in ctx.ledger.results()},
        list(state.get("failures") or []),
        None if hyps is None else list(hyps),
        ctx.ledger.rows(),
        ctx.ledger.totals(),
        ctx.run_dir,
    )
    r.figures = figures(ctx.adata(), r.hypotheses or [], ctx.run_dir)
    md = render_markdown(r)
    (ctx.run_dir / "report.md").write_text(md)
    path = ctx.run_dir / "report.html"
    path.write_text(to_html(md, ctx.run_dir, state["question"]))
    return path
