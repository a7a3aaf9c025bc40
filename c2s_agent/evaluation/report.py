"""Reports of evaluation runs: Markdown and HTML with a table and a plot per task, and the comparison of two
runs with regressions highlighted."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import InputError

STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child{text-align:left}strong{color:#b00}</style>"
)


def load_summary(run: str | Path, settings=None) -> tuple[Path, dict]:
    """A run folder (or a run id under ``runs_dir/evals``) and its summary."""
    path = Path(run)
    if not (path / "summary.json").exists() and settings is not None:
        path = Path(settings.runs_dir) / "evals" / str(run)
    if not (path / "summary.json").exists():
        raise InputError(
            f"run {run}", "has no summary.json", "pass a run folder written by `c2s eval run` or its run id"
        )
    return path, json.loads((path / "summary.json").read_text())


def direction(metric: str, better: dict) -> str | None:
    """'higher' or 'lower' is better for ``metric`` (keys ending in '@' or '_' match prefixes)."""
    if metric in better:
        return better[metric]
    for key, way in better.items():
        if (
            metric.startswith(key)
            or metric.startswith(key.rstrip("_") + "_")
            or metric.startswith(key.split("@")[0] + "@")
        ):
            return way
    return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.4g}"
    return "n/a" if v is None else str(v)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _by_task(summary: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in summary["cells"]:
        out.setdefault(c["spec"]["task"], []).append(c)
    return out


def _plot(task: str, cells: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = sorted(
        {
            m
            for c in cells
            for m, v in c["metrics"].items()
            if isinstance(v, (int, float)) and not m.startswith("n_") and v is not None
        }
    )
    if not metrics:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(metrics) + 1), 3.2))
    width = 0.8 / len(cells)
    for i, c in enumerate(cells):
        vals = [c["metrics"].get(m) for m in metrics]
        ax.bar(np.arange(len(metrics)) + i * width, [np.nan if v is None else v for v in vals], width, label=c["label"])
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics, rotation=30, ha="right")
    ax.set_title(task)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write(out: Path, stem: str, title: str, lines: list[str]) -> tuple[Path, Path]:
    import markdown

    md = out / f"{stem}.md"
    md.write_text("\n".join(lines) + "\n")
    html = out / f"{stem}.html"
    body = markdown.markdown(md.read_text(), extensions=["tables"])
    html.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{STYLE}</head>"
        f"<body>{body}</body></html>"
    )
    return md, html


def report(run: str | Path, out: str | Path | None = None, settings=None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (with one plot per task) for a run; returns their paths."""
    run_dir, summary = load_summary(run, settings)
    out = Path(out) if out else run_dir
    (out / "plots").mkdir(parents=True, exist_ok=True)
    t = summary.get("timing", {})
    lines = [
        f"# Evaluation report: {summary['suite']}",
        "",
        summary.get("description", ""),
        "",
        f"Executor: {summary['executor']}; code: c2s-agent {summary['code']['package']}, commit "
        f"{(summary['code']['git'] or 'n/a')[:10]}; {t.get('items')} items ({t.get('cached')} cached, "
        f"{t.get('run')} run, {t.get('errors')} errors) in {t.get('seconds')} s.",
        "",
    ]
    for task, cells in _by_task(summary).items():
        lines += [f"## {task}", ""]
        metrics = list(dict.fromkeys(m for c in cells for m in c["metrics"]))
        rows = [[c["label"]] + [_fmt(c["metrics"].get(m)) for m in metrics] + [c.get("error", "")] for c in cells]
        lines += _table(["cell"] + metrics + ["problems"], rows) + [""]
        png = _plot(task, cells, out / "plots" / f"{task}.png")
        if png:
            lines += [f"![{task}](plots/{png.name})", ""]
    return _write(out, "report", f"Evaluation report: {summary['suite']}", lines)


def compare(
    run_a: str | Path, run_b: str | Path, out: str | Path | None = None, settings=None, tolerance: float = 0.0
) -> tuple[Path, Path, list[dict]]:
    """Compare run B against run A cell by cell; a metric that got worse by more than ``tolerance`` is a
    regression. Writes ``compare.md``/``compare.html`` (default into run B) and returns them with the rows."""
    dir_a, a = load_summary(run_a, settings)
    dir_b, b = load_summary(run_b, settings)
    out = Path(out) if out else dir_b
    out.mkdir(parents=True, exist_ok=True)
    cells_a = {c["label"]: c for c in a["cells"]}
    rows = []
    for cb in b["cells"]:
        ca = cells_a.get(cb["label"])
        if ca is None:
            continue
        for m, vb in cb["metrics"].items():
            va = ca["metrics"].get(m)
            if not isinstance(va, (int, float)) or not isinstance(vb, (int, float)) or m.startswith("n_"):
                continue
            way = direction(m, cb.get("better", {}))
            delta = vb - va
            worse = way is not None and (
                (way == "higher" and delta < -tolerance) or (way == "lower" and delta > tolerance)
            )
            rows.append(
                {"cell": cb["label"], "metric": m, "a": va, "b": vb, "delta": delta, "better": way, "regression": worse}
            )
    n_reg = sum(r["regression"] for r in rows)
    lines = [
        f"# Comparison: {dir_b.name} vs {dir_a.name}",
        "",
        f"A = `{dir_a}` (commit {(a['code']['git'] or 'n/a')[:10]}), B = `{dir_b}` (commit "
        f"{(b['code']['git'] or 'n/a')[:10]}). **{n_reg} regression(s)**"
        if n_reg
        else f"A = `{dir_a}`, B = `{dir_b}`. No regressions.",
        "",
    ]
    only = sorted(set(cells_a) ^ {c["label"] for c in b["cells"]})
    if only:
        lines += [f"Cells in only one run: {', '.join(only)}", ""]
    table = [
        [
            r["cell"],
            r["metric"],
            _fmt(r["a"]),
            _fmt(r["b"]),
            f"{r['delta']:+.4g}",
            r["better"] or "",
            "**REGRESSION**" if r["regression"] else "",
        ]
        for r in rows
    ]
    lines += _table(["cell", "metric", "A", "B", "B - A", "better", ""], table)
    md, html = _write(out, "compare", "Evaluation comparison", lines)
    return md, html, rows
