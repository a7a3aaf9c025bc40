"""Choosing base cells (by obs values and cell type) and predicting their perturbed state."""

from __future__ import annotations

import numpy as np

from ..conventions import find_columns
from ..conventions.slots import CELL_TYPE
from ..data.select import obs_mask
from ..errors import InputError


def cell_type_key(adata, key: str | None = None, value: str | None = None) -> str:
    """The obs column holding cell types: ``key`` if given, else the dataset's cell-type column or the predicted
    one (the first that holds ``value``, when given)."""
    if key is not None:
        if key not in adata.obs.columns:
            raise InputError("cell_type_key", f"{key!r} is not an obs column", f"use one of {list(adata.obs.columns)}")
        return key
    roles = find_columns(adata.obs)
    found = [c for c in (roles.cell_type, roles.predicted, roles.cluster) if c]
    holding = [c for c in found if value is None or value in set(adata.obs[c].astype(str))]
    if holding or found:
        return (holding or found)[0]
    raise InputError(
        CELL_TYPE,
        "was given but the data has no cell type column",
        "run annotate_cells first (c2s annotate), or pass cell_type_key=",
    )


def select_cells(
    adata,
    where: dict[str, str] | None = None,
    cell_type: str | None = None,
    n_cells: int | None = None,
    seed: int = 0,
    cell_type_key_: str | None = None,
    name: str = "cells",
) -> np.ndarray:
    """Positions of cells matching every ``where`` column=value and ``cell_type``; at most ``n_cells`` of them,
    drawn at random (seeded) and returned in data order."""
    conditions = dict(where or {})
    if cell_type:
        conditions[cell_type_key(adata, cell_type_key_, cell_type)] = cell_type
    rows = np.flatnonzero(obs_mask(adata, conditions, name))
    if n_cells is not None and len(rows) > n_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, n_cells, replace=False))
    return rows


def predict(
    adata,
    perturbation: str,
    cell_type: str | None = None,
    where: dict[str, str] | None = None,
    context: str | None = None,
    n_cells: int | None = None,
    model=None,
    seed: int = 0,
    settings=None,
    on_call=None,
):
    """Predicted perturbed cells for the chosen base cells: an AnnData with sentences in ``obs["c2s_sentence"]``
    and expression reconstructed from rank (see :func:`c2s_agent.models.tl.perturb`), batched by the backend."""
    from ..models import tl

    rows = select_cells(adata, where, cell_type, n_cells, seed, name="base cells")
    return tl.perturb(
        adata[rows].copy(), perturbation, context=context, model=model, seed=seed, settings=settings, on_call=on_call
    )
