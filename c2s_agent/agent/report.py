"""Run reports: ``report.md`` and a self-contained ``report.html`` (plots embedded). Every statement links to
the section of the step that produced its evidence."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

from .plan import NO_TOOL, Plan

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
    body = [[(f"{float(v):.3g}" if re.fullmatch(r"-?\d+\.\d{4,}(e-?\d+)?", v) else v) for v in r] for r in rows[1:n + 1]]
    more = f"\n\n<span class=\"small\">{len(rows) - 1 - n} more rows in the CSV.</span>" if len(rows) - 1 > n else ""
    return _md_table(body, rows[0]) + more


def _fmt_args(args: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) or "defaults"


def figures(adata, state: dict, run_dir: Path) -> list[tuple[str, str]]:
    """Report-level plots: the cells coloured by predicted type (when annotation ran) and the hypotheses' ranking.
    Returns (title, path relative to the run directory) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    folder = run_dir / "artefacts"
    folder.mkdir(parents=True, exist_ok=True)
    if adata is not None and "c2s_cell_type" in adata.obs:
        key = next((k for k in adata.obsm if "umap" in k.lower()), None)
        if key is not None:
            xy, what = adata.obsm[key][:, :2], f"UMAP (obsm['{key}'])"
        else:
            import scanpy as sc

            tmp = adata.copy()
            sc.pp.pca(tmp, n_comps=2)
            xy, what = tmp.obsm["X_pca"], "PCA (the data has no UMAP)"
        labels = adata.obs["c2s_cell_type"].astype(str)
        fig, ax = plt.subplots(figsize=(6.5, 5))
        for lab in sorted(labels.unique()):
            m = (labels == lab).to_numpy()
            ax.scatter(*xy[m].T, s=5, label=f"{lab} ({m.sum()})")
        ax.legend(fontsize=7, markerscale=2, bbox_to_anchor=(1, 1), loc="upper left")
        ax.set(xticks=[], yticks=[], title="Cells by C2S-predicted type", xlabel=what)
        fig.savefig(folder / "report_predicted_types.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        out.append((f"{what} coloured by the C2S-predicted cell type (obs['c2s_cell_type'])",
                    "artefacts/report_predicted_types.png"))
    hyps = state.get("hypotheses") or []
    if hyps:
        parts = ["statistics", "change", "knowledge"]
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(hyps) + 1.2))
        left = [0.0] * len(hyps)
        for part in parts:
            vals = [h["confidence_parts"].get(part, 0) / 3 for h in hyps]
            ax.barh(range(len(hyps)), vals, left=left, label=part)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_yticks(range(len(hyps)), [f"{h['id']}: {h['statement'][:60]}" for h in hyps], fontsize=7)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xlabel="confidence (mean of the three parts)", title="Hypotheses by confidence")
        ax.legend(fontsize=7, loc="lower right")
        fig.savefig(folder / "report_hypotheses.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        out.append(("Hypotheses ranked by confidence, split into its parts", "artefacts/report_hypotheses.png"))
    return out


def provenance(run: dict, state: dict) -> str:
    """Where every number comes from: the input, each step's tool, plugin, arguments and files, and versions."""
    rows = [[f"[{sid}](#step-{sid})", res["tool"], res.get("plugin", ""), _fmt_args(res["args"]),
             ", ".join(f"[{Path(a['path']).name}]({a['path']})" for a in res["artefacts"]) or "-",
             f"ledger.sqlite: step {sid}, seq 0"] for sid, res in (state.get("results") or {}).items()]
    vers = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items() if v)
    head = [f"Input: `{run.get('data')}` ({run.get('data_summary') or 'no data'}). Every number in the Answer, "
            "Hypotheses and Steps sections comes from one of these steps (the link next to it), computed by the "
            "named tool with these arguments; tool calls, model calls and tokens are rows of the run's ledger.", ""]
    table = _md_table(rows, ["step", "tool", "plugin", "arguments", "files", "ledger row"]) if rows else "No step ran."
    return "\n".join(head + [table, "", f"Software: {vers}."])


def render_markdown(run: dict, state: dict, run_dir: Path, ledger_rows: list[dict], totals: dict,
                    figs: list[tuple[str, str]] = ()) -> str:
    plan = Plan.model_validate(state.get("plan") or {"question": state["question"], "planner": "?"})
    results: dict = state.get("results") or {}
    failures: list = state.get("failures") or []
    out = [f"# {state['question']}", "",
           f"<span class=\"small\">Run `{run['id']}` · data: {run.get('data_summary') or state.get('data')} · "
           f"planner: {plan.planner} · {run.get('created', '')}</span>", "", "## Answer", ""]
    if not plan.steps and not results:
        out += [f"**{NO_TOOL.capitalize()}.** The question was understood as: "
                + "; ".join(f"\"{c}\"" for c in plan.unanswered or [state["question"]])
                + f". Installed tools: {', '.join(sorted(run.get('tools', [])))}.", ""]
        if plan.problems:
            out += ["The plan could not run:", ""] + [f"- {p}" for p in plan.problems] + [""]
    elif plan.problems and not results:
        out += ["The plan did not pass its check, so nothing was run:", ""] + [f"- {p}" for p in plan.problems] + [""]
    for sid, res in results.items():
        out.append(f"- {res['evidence']} ([step {sid}](#step-{sid}))")
    for f in failures:
        out.append(f"- Step {f['step']} ({f['tool']}) failed: {f['error']} ([step {f['step']}](#step-{f['step']}))")
    if plan.unanswered and plan.steps:
        out.append(f"- Not answered ({NO_TOOL}): " + "; ".join(f"\"{c}\"" for c in plan.unanswered))
    if state.get("hypothesize"):
        from .hypotheses import Hypothesis, to_markdown

        out += ["", "## Hypotheses", "", to_markdown([Hypothesis.model_validate(h) for h in state.get("hypotheses") or []])]
    if figs:
        out += ["", "## Figures", ""]
        for title, path in figs:
            out += [f"![{title}]({path})", "", f"<span class=\"small\">{title}.</span>", ""]
    out += ["", "## Plan", ""]
    initial = state.get("initial_plan") or state.get("plan")
    if initial and initial.get("steps"):
        out.append(_md_table([[f"[{s['id']}](#step-{s['id']})", s["tool"], _fmt_args(s["args"]), s.get("why", "")]
                              for s in initial["steps"]], ["step", "tool", "arguments", "answers"]))
    else:
        out.append("No steps.")
    for note in plan.notes:
        out.append(f"\n- {note}")
    out += ["", "## Steps", ""]
    failed = {f["step"]: f for f in failures}
    step_ids = list(dict.fromkeys([*(s["id"] for s in (initial or {}).get("steps", [])), *results, *failed]))
    rows_by_step = {}
    for r in ledger_rows:
        rows_by_step.setdefault(r["step_id"], []).append(r)
    for sid in step_ids:
        res, fail = results.get(sid), failed.get(sid)
        out += [f"<a id=\"step-{sid}\"></a>", ""]
        if res:
            out += [f"### {sid} · {res['tool']}", "",
                    f"<span class=\"small\">plugin {res.get('plugin')} · arguments: `{_fmt_args(res['args'])}` · "
                    f"{res['duration_s']:.2f} s</span>", "", f"**Evidence.** {res['evidence']}", ""]
            calls = [r for r in rows_by_step.get(sid, []) if r["kind"] != "tool"]
            if calls:
                tok = sum((r["tokens_in"] or 0) + (r["tokens_out"] or 0) for r in calls)
                out += [f"<span class=\"small\">{len(calls)} model calls, {tok} tokens.</span>", ""]
            for art in res["artefacts"]:
                path = run_dir / art["path"]
                if art["kind"] == "plot":
                    out += [f"![{art['title']}]({art['path']})", ""]
                elif art["kind"] == "table" and path.exists():
                    out += [f"*{art['title']}* ([CSV]({art['path']}))", "", _csv_preview(path), ""]
                else:
                    out += [f"- [{art['title']}]({art['path']})", ""]
        elif fail:
            out += [f"### {sid} · {fail['tool']} (failed)", "", f"Arguments: `{_fmt_args(fail['args'])}`", "",
                    f"**Error.** {fail['error']}", ""]
        else:
            why = ("the plan did not pass its check" if plan.problems and not results
                   else "dropped after an earlier step failed")
            out += [f"### {sid} (not run)", "", f"Not run: {why}.", ""]
    out += ["## Provenance", "", provenance(run, state), ""]
    t = run.get("timings", {})
    out += ["## Cost", "",
            _md_table([["wall time", f"{t.get('total_s', 0):.2f} s"], ["tool time", f"{totals['tool_seconds']:.2f} s"],
                       ["planning", f"{t.get('plan_s', 0):.2f} s"], ["loading data", f"{t.get('load_s', 0):.2f} s"],
                       ["saving working data", f"{t.get('persist_s', 0):.2f} s"],
                       ["ledger rows", str(totals["calls"])], ["model and planner calls", str(totals["model_calls"])],
                       ["tokens (in / out)", f"{totals['tokens_in']} / {totals['tokens_out']}"]], ["", ""]), "",
            "## Limitations", ""]
    lims = [f"Step {f['step']} ({f['tool']}) failed; statements that would have come from it are missing."
            for f in failures]
    lims += [f"{NO_TOOL.capitalize()}: \"{c}\"." for c in plan.unanswered]
    lims += [f"Planner assumption: {n}." for n in plan.notes if "grouped by" in n]
    lims += [f"How step {sid} ({r['tool']}) was made: {r['output']['how']}." for sid, r in results.items()
             if isinstance(r.get("output"), dict) and r["output"].get("how")]
    if state.get("hypothesize"):
        lims.append("Hypotheses rank routes and effects that this dataset and the curated knowledge are consistent "
                    "with; expression of a ligand and its receptor does not show that they signal, and model "
                    "predictions are only as good as the model's held-out metrics. Each needs the proposed experiment.")
    lims += ["Each statement reports what one tool computed on this dataset; none is a validated biological "
             "conclusion. Differential expression p-values ignore donor structure (cells are not independent "
             "replicates).",
             f"The plan was made by the {plan.planner} planner from tool descriptions; check that it matches the "
             "question (see the Plan section)."]
    out += [f"- {x}" for x in lims]
    return "\n".join(out) + "\n"


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
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def write_report(ctx, state: dict) -> Path:
    """Write report.md and report.html for the run in ``ctx``; returns the HTML path."""
    run = json.loads((ctx.run_dir / "run.json").read_text())
    run["timings"] = {**run.get("timings", {}), **ctx.timings, "total_s": ctx.wall()}
    figs = figures(ctx.adata(), state, ctx.run_dir)
    md = render_markdown(run, state, ctx.run_dir, ctx.ledger.rows(), ctx.ledger.totals(), figs)
    (ctx.run_dir / "report.md").write_text(md)
    path = ctx.run_dir / "report.html"
    path.write_text(to_html(md, ctx.run_dir, state["question"]))
    return path
