"""Locate the files shipped with c2s-agent (prompts, knowledge, demo data, evaluation sets).

In a wheel they live in ``c2s_agent/_bundled/<kind>``; in a source checkout they are the top-level folders
``prompts/``, ``knowledge/``, ``data/`` and ``evals/``.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

_PKG = Path(__file__).resolve().parent
KINDS = ("prompts", "knowledge", "data", "evals")

DEMO_DATASETS = {
    "pbmc68k": "pbmc68k_reduced.h5ad",
    "kang2018": "kang2018_ifnb_pbmc_2k.h5ad",
    "cellbench": "cellbench_lung_5cl_450.h5ad",
    "moor2018": "moor2018_mouse_intestine_700.h5ad",
    "visium": "visium_mouse_brain_49spots.h5ad",
}
DEMO_ALIASES = {"demo": "kang2018"}


def bundled(kind: str) -> Path:
    """Return the folder holding the bundled ``kind`` ("prompts", "knowledge", "data" or "evals")."""
    if kind not in KINDS:
        raise ValueError(f"unknown bundled kind {kind!r}; one of {KINDS}")
    for root in (_PKG / "_bundled" / kind, _PKG.parent / kind):
        if root.is_dir():
            return root
    raise FileNotFoundError(f"bundled {kind!r} folder not found next to {_PKG}; reinstall c2s-agent")


def demo_path(name: str = "demo") -> Path:
    """Path of a bundled dataset: "kang2018" (or "demo"), "pbmc68k", "cellbench", "moor2018" or "visium"."""
    key = DEMO_ALIASES.get(name, name)
    if key not in DEMO_DATASETS:
        raise InputError(name, "is not a bundled demo dataset", f"use one of {sorted(DEMO_DATASETS) + ['demo']}")
    return bundled("data") / DEMO_DATASETS[key]
