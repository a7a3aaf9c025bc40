"""``c2s sentences`` and ``c2s data info``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, console

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("info")
def info(
    file: str = typer.Argument(..., help="an .h5ad file, or 'demo' / 'pbmc68k' / 'kang2018'"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """What a dataset holds: size, matrix kind, gene identifiers, annotations."""
    from ..data import inspect, read

    adata = read(file, backed=True)
    reports = [inspect(adata, "X").to_dict()]
    if adata.raw is not None:
        reports.append(inspect(adata, "raw").to_dict())
    summary = {
        "file": str(file),
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "matrices": reports,
        "obs": {
            c: (adata.obs[c].nunique() if adata.obs[c].dtype.name in ("category", "object") else "numeric")
            for c in adata.obs.columns
        },
        "obsm": list(adata.obsm.keys()),
        "layers": list(adata.layers.keys()),
    }
    if as_json:
        print(json.dumps(summary, indent=1, default=str))
        return
    console.print(f"[bold]{file}[/]: {adata.n_obs:,} cells x {adata.n_vars:,} genes")
    for r in reports:
        console.print(
            f"  {r['source']}: {r['kind']}"
            + (f" (log base {r['log_base']})" if r["log_base"] else "")
            + f", gene ids: {r['gene_ids']}, duplicated names: {r['n_duplicated_genes']}"
        )
    for col, n in summary["obs"].items():
        console.print(f"  obs[{col!r}]: {n}{' values' if n != 'numeric' else ''}")


@app.command("sentences")
def sentences(
    inp: str = typer.Argument(..., metavar="IN.h5ad", help="input .h5ad (or 'demo')"),
    out: Path = typer.Argument(..., metavar="OUT.h5ad"),
    top_k: int = typer.Option(200, "--top-k", help="genes per sentence"),
    tie_break: str = typer.Option("random", help="'random' (seeded) or 'mean'"),
    seed: int = typer.Option(42),
    source: str = typer.Option("auto", help="'auto', 'X', 'raw' or a layer name"),
    backed: bool = typer.Option(False, help="stream a large file from disk in chunks (bounded memory)"),
    chunk_size: int = typer.Option(20_000, help="cells per chunk when --backed"),
    drop_empty: bool = typer.Option(False, help="drop cells with no expressed genes"),
) -> None:
    """Convert cells to ranked gene sentences, stored in obsm["c2s_rank_idx"] of OUT.h5ad."""
    from ..sentences.io import write_sentences

    summary = write_sentences(
        inp,
        out,
        top_k=top_k,
        tie_break=tie_break,
        seed=seed,
        source=source,
        backed=backed,
        chunk_size=chunk_size,
        drop_empty=drop_empty,
        progress=True,
    )
    console.print(
        f"[green]Wrote[/] {out}: {summary['n_cells']:,} cells, top {top_k} genes, "
        f"median sentence length {summary['median_length']:.0f}, {summary['cells_per_s']:,.0f} cells/s"
    )
    console.print(f"  example: {summary['example'][:160]} ...")
