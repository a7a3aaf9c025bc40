"""The typer application and shared console."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="c2s-agent: ask research questions of single-cell data with Cell2Sentence models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
