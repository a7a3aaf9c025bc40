"""``c2s evaluate``: compare generated cells with real ones (scFID, MMD, energy, Wasserstein, fold changes)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, console


@app.command("evaluate")
def evaluate(
    real: str = typer.Argument(..., metavar="REAL.h5ad", help="real cells (counts or log-normalised), or 'demo'"),
    generated: str = typer.Argument(
        ..., metavar="GENERATED", help="generated cells: .h5ad, or .txt with one sentence a line"
    ),
    encoder: str = typer.Option("pca", "--encoder", help="registered encoder: 'pca', 'c2s' or a plugin's"),
    metrics: str | None = typer.Option(None, "--metrics", help="comma-separated; default all that apply"),
    real_where: str | None = typer.Option(None, "--real-where", help="select real cells, e.g. 'cell_type=CD14 Mono'"),
    control_where: str | None = typer.Option(
        None, "--control-where", help="control cells from REAL for fold changes, e.g. 'condition=ctrl'"
    ),
    control: str | None = typer.Option(None, "--control", help="control cells .h5ad (instead of --control-where)"),
    reference: str | None = typer.Option(
        None, "--reference", help="AnnData to fit the encoder on; default all cells of REAL"
    ),
    encoder_path: Path | None = typer.Option(None, "--encoder-path", help="load a saved 'pca' encoder folder"),
    save_encoder: Path | None = typer.Option(None, "--save-encoder", help="save the fitted 'pca' encoder here"),
    genes: str | None = typer.Option(None, "--genes", help="comma-separated gene program for fold changes"),
    n_boot: int = typer.Option(100, "--n-boot", min=0, help="bootstrap resamples for intervals"),
    seed: int = typer.Option(0, "--seed"),
    plots: Path | None = typer.Option(None, "--plots", help="folder to write metric and embedding plots into"),
    as_json: bool = typer.Option(False, "--json", help="print JSON: each metric's value and interval"),
) -> None:
    """Metrics of GENERATED against REAL cells, each with a 95% bootstrap interval."""
    from .. import pl
    from ..data import read
    from ..errors import InputError
    from ..metrics import ReferenceEncoder, evaluate_generation, get_encoder
    from ..metrics.inputs import parse_where, select

    real_all = read(real)
    real_cells = select(real_all, parse_where(real_where, "--real-where"), "real")
    if control and control_where:
        raise InputError("--control", "and --control-where were both given", "use one of them")
    ctrl = (
        read(control)
        if control
        else (select(real_all, parse_where(control_where, "--control-where"), "control") if control_where else None)
    )
    if encoder_path is not None:
        if encoder != "pca":
            raise InputError(
                "--encoder-path", f"loads a 'pca' encoder but --encoder is {encoder!r}", "drop one of them"
            )
        enc = ReferenceEncoder.load(encoder_path)
    else:
        enc = get_encoder(encoder)
    if save_encoder is not None and not isinstance(enc, ReferenceEncoder):
        raise InputError("--save-encoder", f"only 'pca' encoders are saved, not {encoder!r}", "drop --save-encoder")
    ref = read(reference) if reference else real_all
    result = evaluate_generation(
        real_cells,
        generated,
        encoder=enc,
        metrics=metrics,
        reference=ref,
        control=ctrl,
        genes=[g.strip() for g in genes.split(",")] if genes else None,
        n_boot=n_boot,
        seed=seed,
    )
    if save_encoder is not None:
        enc.save(save_encoder)
    summary = result.to_dict()
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
        pl.generation_metrics(result).savefig(plots / "generation_metrics.png", dpi=110, bbox_inches="tight")
        pl.generation_embedding(result).savefig(plots / "generation_embedding.png", dpi=110, bbox_inches="tight")
    if as_json:
        print(json.dumps({k: summary[k] for k in ("encoder", "n_real", "n_generated", "metrics", "notes")}, indent=1))
        return
    from rich.table import Table

    table = Table(
        title=f"{summary['n_generated']} generated vs {summary['n_real']} real cells ({summary['encoder']} encoder)"
    )
    for col in ("metric", "value", "95% interval", "meaning"):
        table.add_column(col)
    for name, row in result.table().iterrows():
        iv = "" if row["low"] is None or row["low"] != row["low"] else f"[{row['low']:.4g}, {row['high']:.4g}]"
        table.add_row(name, f"{row['value']:.4g}", iv, row["meaning"])
    console.print(table)
    for note in summary["notes"]:
        console.print(f"  note: {note}")
