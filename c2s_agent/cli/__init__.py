"""The ``c2s`` command. Each command group lives in its own module and adds itself to ``app``."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from ..errors import C2SError

# Command modules register their commands on import.
from . import (
    agent,  # noqa: E402,F401
    chat,  # noqa: E402,F401
    data,  # noqa: E402,F401
    evals,  # noqa: E402,F401
    knowledge,  # noqa: E402,F401
    mcp_server,  # noqa: E402,F401
    metrics,  # noqa: E402,F401
    model,  # noqa: E402,F401
    models,  # noqa: E402,F401
    screen,  # noqa: E402,F401
)
from ._app import app, console


def main() -> None:
    """Entry point: run the app, library warnings and logs into ``<cache>/logs/c2s.log``; user errors print one
    clear message and exit with status 2."""
    from ..config import Settings
    from ..logs import library_output_to, unraisable_to

    log = Path(Settings().cache_dir) / "logs" / "c2s.log"
    with library_output_to(log):
        code = _run()  # a failed write's half-closed files are freed here, so their noise goes to the log
    unraisable_to(log)  # ... or at exit
    if code:
        sys.exit(code)


def _run() -> int:
    """Run the app; return 2 for a user error, 130 for an interrupt (the app exits by itself otherwise)."""
    try:
        app()
    except C2SError as exc:
        console.print(f"[bold red]Error:[/] {exc}", highlight=False)
        return 2
    except OSError as exc:  # a run or output folder that cannot be written: read-only, full, or under a file
        where = exc.filename or "output"
        console.print(
            f"[bold red]Error:[/] {where}: {exc.strerror or exc}. Fix: write to a folder that exists, is "
            "writable and has free space (set C2S_RUNS_DIR, or --out / the output path).",
            highlight=False,
        )
        return 2
    except sqlite3.OperationalError as exc:  # a run's ledger or store on a full or read-only disk
        console.print(
            f"[bold red]Error:[/] run database: could not be written ({exc}). Fix: write to a folder "
            "that is writable and has free space (set C2S_RUNS_DIR, or --out).",
            highlight=False,
        )
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/] Finished work is saved; resume where the command supports it.")
        return 130
    return 0
