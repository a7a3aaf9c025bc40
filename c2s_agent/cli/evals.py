"""``c2s eval run|report|compare``: batch evaluation suites, resumable and cached, locally or on Ray."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console

eval_app = typer.Typer(
    help="Batch evaluation suites (evals/suites/*.yaml): run, report, compare.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Suite {summary['suite']}", title_justify="left")
    for col in ("cell", "metrics"):
        table.add_column(col)
    for c in summary["cells"]:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["metrics"].items())
        table.add_row(c["label"], metrics or f"[red]{c.get('error', '')}[/]")
    console.print(table)


@eval_app.command("run")
def run(
    suite: Path = typer.Argument(..., metavar="SUITE.yaml", help="suite file, e.g. evals/suites/bundled.yaml"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    out: Path | None = typer.Option(None, "--out", help="run folder; default runs/evals/<run id>"),
    run_id: str | None = typer.Option(None, "--run-id", help="run id; default the suite name"),
    rerun: bool = typer.Option(False, "--rerun", help="recompute rows that are already stored"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads per worker"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address; default a local Ray"),
    num_cpus: int | None = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray; default all"),
    report: bool = typer.Option(True, "--report/--no-report", help="write report.md/html at the end"),
) -> None:
    """Run every cell of SUITE; finished rows are kept, so a re-run (or a killed run) resumes."""
    from ..config import Settings
    from ..evaluation import load_suite, run_suite
    from ..evaluation.report import report as write_report

    res = run_suite(
        load_suite(suite),
        Settings(),
        out=out,
        run_id=run_id,
        executor=executor,
        rerun=rerun,
        threads=threads,
        address=address,
        num_cpus=num_cpus,
    )
    _print_summary(res.summary)
    console.print(
        f"{res.n_items} items: {res.n_cached} cached, {res.n_run} run, {res.n_errors} errors, "
        f"{res.seconds:.1f} s. Results: {res.run_dir}"
    )
    for e in res.errors[:10]:
        console.print(f"  [red]error[/] {e}", highlight=False)
    if report:
        md, html = write_report(res.run_dir)
        console.print(f"Report: {md} and {html}")
    if res.n_errors:
        raise typer.Exit(1)


@eval_app.command("report")
def report_cmd(
    run: str = typer.Argument(..., metavar="RUN", help="run folder or run id"),
    out: Path | None = typer.Option(None, "--out", help="folder for the report; default the run folder"),
) -> None:
    """Write report.md and report.html (tables and plots) for RUN."""
    from ..config import Settings
    from ..evaluation import report

    md, html = report(run, out, Settings())
    console.print(f"Report: {md} and {html}")


@eval_app.command("compare")
def compare_cmd(
    run_a: str = typer.Argument(..., metavar="RUN_A", help="baseline run (folder or id)"),
    run_b: str = typer.Argument(..., metavar="RUN_B", help="new run (folder or id)"),
    out: Path | None = typer.Option(None, "--out", help="folder for compare.md/html; default RUN_B"),
    tolerance: float = typer.Option(0.0, "--tolerance", min=0.0, help="allowed worsening per metric"),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="exit 1 on a regression"),
) -> None:
    """Compare RUN_B with RUN_A metric by metric; regressions are highlighted."""
    from ..config import Settings
    from ..evaluation import compare

    md, html, rows = compare(run_a, run_b, out, Settings(), tolerance)
    reg = [r for r in rows if r["regression"]]
    for r in reg:
        console.print(f"[red]regression[/] {r['cell']} {r['metric']}: {r['a']:.4g} -> {r['b']:.4g}", highlight=False)
    console.print(f"{len(rows)} metrics compared, {len(reg)} regression(s). Report: {md} and {html}")
    if reg and fail_on_regression:
        raise typer.Exit(1)
