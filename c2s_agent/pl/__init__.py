"""Plots (scanpy's ``pl``): each function takes results of :mod:`c2s_agent.tl` or the library and returns a
matplotlib Figure, to show in a notebook or save; nothing here changes matplotlib's global state."""

from .cells import (
    answer_counts,
    counts,
    embedding,
    groups_2d,
    hypotheses,
    lengths,
    markers,
    perturbation,
    program,
    reverse_fit,
)
from .communication import ligand_receptor
from .generation import generation_embedding, generation_metrics, shared_pca
from .screen import screen_distributions, screen_ranking

__all__ = [
    "answer_counts",
    "counts",
    "embedding",
    "generation_embedding",
    "generation_metrics",
    "groups_2d",
    "hypotheses",
    "lengths",
    "ligand_receptor",
    "markers",
    "perturbation",
    "program",
    "reverse_fit",
    "screen_distributions",
    "screen_ranking",
    "shared_pca",
]
