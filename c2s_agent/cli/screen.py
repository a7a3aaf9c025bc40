"""``c2s screen``: the resumable dual-context virtual screen; ``c2s programs``: list the gene programs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, console


@app.command("screen")
def screen(
    data: str = typer.Option("demo", "--data", help="an .h5ad file, or 'demo' (Kang 2018 IFN-beta PBMC)"),
    perturbations: str = typer.Option(
        ...,
        "--perturbations",
        help="comma-separated names, or a CSV (column 'perturbation', optional 'item') or .txt file",
    ),
    contexts: list[str] | None = typer.Option(
        None,
        "--context",
        help="NAME:COLUMN=VALUE, repeat it; the first two give the split "
        "(default interferon:condition=stim, neutral:condition=ctrl)",
    ),
    program: str = typer.Option(
        "mhc_i",
        "--program",
        help="program name (see `c2s programs`), a bundled gene set name, or comma-separated genes",
    ),
    out: Path = typer.Option(..., "--out", help="folder for results; re-running with it resumes"),
    cell_type: str | None = typer.Option(None, "--cell-type", help="only base cells of this cell type"),
    n_cells: int = typer.Option(64, "--n-cells", help="base cells per context"),
    model: str | None = typer.Option(None, "--model", help="'embedded' (default), a model folder or a server URL"),
    seed: int = typer.Option(0, "--seed"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the intervals"),
    batch_cells: int = typer.Option(1024, "--batch-cells", help="most cells per model call"),
    trust_undeclared: bool = typer.Option(
        False, "--trust-undeclared", help="score perturbations on a model that declares none"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Rank perturbations by how they shift a gene program in one context versus another."""
    from ..config import Settings
    from ..screen import run_screen

    settings = Settings()
    res = run_screen(
        data,
        perturbations,
        contexts or None,
        program,
        out_dir=out,
        model=model,
        cell_type=cell_type,
        n_cells=n_cells,
        seed=seed,
        n_boot=n_boot,
        batch_cells=batch_cells,
        trust_undeclared=trust_undeclared,
        settings=settings,
        progress=not as_json,
    )
    if (res.table["status"] == "scored").any():
        from .. import pl

        pl.screen_ranking(res).savefig(Path(out) / "ranking.png", dpi=110, bbox_inches="tight")
        pl.screen_distributions(res).savefig(Path(out) / "distributions.png", dpi=110, bbox_inches="tight")
    if as_json:
        print(
            json.dumps(
                {k: res.summary[k] for k in ("program", "contexts", "counts", "run", "trained_on", "top")},
                indent=1,
                default=str,
            )
        )
        return
    from rich.table import Table

    ctxs = list(res.summary["contexts"])
    table = Table(title=f"{res.summary['program']} screen: {len(res.table)} perturbations x {len(ctxs)} contexts")
    for col in (
        "rank",
        "item",
        "status",
        *[f"shift {c}" for c in ctxs],
        *(["split [95% CI]"] if len(ctxs) >= 2 else []),
    ):
        table.add_column(col)
    for r in res.table.head(25).to_dict("records"):
        shifts = [f"{r[f'shift_{c}']:+.4f}" if r["status"] == "scored" else "-" for c in ctxs]
        split = (
            [
                f"{r['split']:+.4f} [{r['split_low']:+.4f}, {r['split_high']:+.4f}]"
                if r["status"] == "scored"
                else r["status"]
            ]
            if len(ctxs) >= 2
            else []
        )
        table.add_row(str(r["rank"] or "-"), str(r["item"]), r["status"], *shifts, *split)
    console.print(table)
    run = res.summary["run"]
    console.print(
        f"{run['items_run']} items run, {run['items_skipped_finished']} already finished; "
        f"{run['cells_predicted']} cells predicted in {run['seconds']:.1f} s "
        f"({run['model_share'] or 0:.0%} in the model)."
    )
    console.print(res.summary["trained_on"])
    console.print(f"Results in {out} (ranked.csv, items.csv, summary.json, plots).")


@app.command("programs")
def list_programs() -> None:
    """List the registered gene programs (name, genes, source)."""
    from rich.table import Table

    from ..config import Settings
    from ..screen import programs

    table = Table(title="Gene programs")
    for col in ("name", "genes", "source"):
        table.add_column(col)
    for name, prog in programs(Settings()).items():
        table.add_row(name, f"{len(prog.genes)}: {', '.join(prog.genes[:6])}...", prog.source)
    console.print(table)
