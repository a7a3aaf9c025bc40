"""``c2s knowledge build`` and ``c2s knowledge search``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, console

knowledge_app = typer.Typer(help="Interaction knowledge: build the index, search it.", no_args_is_help=True)
app.add_typer(knowledge_app, name="knowledge")


@knowledge_app.command("build")
def build_cmd(
    force: bool = typer.Option(False, "--force", help="rebuild even when the index is up to date"),
    cellphonedb: Path = typer.Option(None, help="a CellPhoneDB data folder or release zip (*_input.csv)"),
    biogrid: Path = typer.Option(None, help="a BioGRID TAB3 file or zip (human physical pairs are kept)"),
    intact: Path = typer.Option(None, help="a pairs CSV (symbol_a, symbol_b[, n_records])"),
) -> None:
    """Build the knowledge index from the bundled files (or your full releases) under the cache directory."""
    from ..config import Settings
    from ..knowledge.index import build, index_dir, stale_reasons

    settings = Settings()
    paths = {k: v for k, v in (("cellphonedb", cellphonedb), ("biogrid", biogrid), ("intact", intact)) if v}
    reasons = stale_reasons(settings)
    if not force and not paths and not reasons:
        console.print(f"[green]Up to date[/]: {index_dir(settings)} (use --force to rebuild)")
        return
    console.print(f"Building the knowledge index ({'; '.join(reasons) or 'forced'}) ...")
    m = build(settings, paths=paths, progress=True)
    console.print(
        f"[green]Built[/] {index_dir(settings)}: {m['n_records']:,} records, {m['n_semantic']:,} embedded "
        f"({m['index_type']}), {m['bytes'] / 1e6:.1f} MB in {m['build_seconds']:.0f} s"
    )
    for name, s in m["sources"].items():
        console.print(f"  {name}: {s['n_records']:,} records" + (" (your file)" if s["override"] else ""))


@knowledge_app.command("search")
def search_cmd(
    query: str = typer.Argument(..., help="a question, topic or gene symbols"),
    top_k: int = typer.Option(10, "--top-k", help="number of hits"),
    kind: list[str] = typer.Option(None, "--kind", help="keep only this kind (repeatable)"),
    source: list[str] = typer.Option(None, "--source", help="keep only sources containing this text"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Search the knowledge base (exact gene lookup + semantic search). Builds the index on first use."""
    from ..config import Settings
    from ..knowledge.index import load

    kb = load(Settings(), progress=True)
    hits = kb.search(query=query, top_k=top_k, kinds=kind or None, sources=source or None)
    if as_json:
        print(json.dumps([h.model_dump() for h in hits], indent=1))
        return
    if not hits:
        console.print("No matching knowledge.")
    for i, h in enumerate(hits, 1):
        extra = f" (also {', '.join(h.also_in)})" if h.also_in else ""
        print(f"{i:>2}. [{h.kind}, {'+'.join(h.match)}, {h.score:.2f}] {h.text}{extra}")
