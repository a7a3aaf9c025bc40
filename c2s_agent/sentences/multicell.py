"""Multi-cell text: a group of cells (a neighbourhood, a cluster) as "Cell 1: ...", "Cell 2: ..." lines."""

from __future__ import annotations

from collections.abc import Sequence

from .transform import CellSentences


def multicell_text(cs: CellSentences, cells: Sequence[int], top_k: int | None = 100) -> str:
    """The cells at positions ``cells`` as numbered sentences, one per line, each ending with a period."""
    return "\n".join(f"Cell {n}: {cs.sentence(i, top_k)}." for n, i in enumerate(cells, start=1))
