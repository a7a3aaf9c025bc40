"""A perturbation's predicted effect on chosen cells: each cell's sentence rewritten by the C2S model into its
perturbed sentence, and the mean change per gene in expression reconstructed from rank."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conventions import find_columns
from ..conventions.slots import CONDITION, PERTURBATION_RESULT
from ..errors import InputError
from ..models import tl as model_tl
from ..screen.cells import cell_type_key


@dataclass
class PerturbationResponse:
    """The perturbed cells (an AnnData), the mean change per gene (perturbed minus control), and the cells used."""

    perturbed: object
    delta: pd.Series
    cells: pd.Index
    condition: str | None


def choose_cells(adata, cell_types: list[str] | None, condition: str | None, max_cells: int, seed: int = 0):
    """Positions of up to ``max_cells`` cells (a seeded sample) of ``cell_types`` in the condition ``condition``
    (default: the control of the dataset's condition column, when it has one), and the condition used."""
    keep = np.ones(adata.n_obs, bool)
    if cell_types:
        hit = np.zeros(adata.n_obs, bool)
        for value in cell_types:
            hit |= (adata.obs[cell_type_key(adata, None, value)].astype(str) == value).to_numpy()
        keep &= hit
    roles = find_columns(adata.obs)
    condition = condition or roles.control
    if condition and roles.condition:
        keep &= (adata.obs[roles.condition].astype(str) == condition).to_numpy()
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise InputError(
            "cells",
            f"none match cell types {cell_types} in condition {condition!r}",
            "choose cell types and a condition present in the data",
        )
    if len(rows) > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))
    return rows, condition


def perturbation_response(
    adata,
    perturbation: str,
    cell_types: list[str] | None = None,
    condition: str | None = None,
    max_cells: int = 200,
    context: str | None = None,
    model=None,
    seed: int = 0,
    settings=None,
    on_call=None,
) -> PerturbationResponse:
    """Predict ``perturbation`` on up to ``max_cells`` cells of ``cell_types`` (see :func:`choose_cells`) and the
    mean change per gene. Writes ``uns["c2s_perturbation"]`` (the 15 genes most up and down)."""
    m = model_tl.get_model(model, settings)
    rows, condition = choose_cells(adata, cell_types, condition, max_cells, seed)
    sub = adata[rows].copy()
    perturbed = model_tl.perturb(sub, perturbation, context=context, model=m, seed=seed, on_call=on_call)
    texts, _, _ = m.sentences(sub, m.top_k["perturbation"])
    base = model_tl.from_sentences(m, texts, {"source": ["control"] * len(texts)}, genes=list(perturbed.var_names))
    delta = pd.Series(
        np.asarray(perturbed.X.mean(0)).ravel() - np.asarray(base.X.mean(0)).ravel(), index=perturbed.var_names
    ).sort_values(ascending=False)
    adata.uns[PERTURBATION_RESULT] = {
        "perturbation": perturbation,
        "n_cells": len(rows),
        CONDITION: condition or "",
        "up": delta.head(15).round(4).to_dict(),
        "down": delta.tail(15)[::-1].round(4).to_dict(),
    }
    return PerturbationResponse(perturbed, delta, sub.obs_names, condition)
