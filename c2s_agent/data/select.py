"""Choosing cells by obs values, with errors that list what the data holds."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def obs_mask(adata, where: dict[str, str] | None, name: str = "cells", min_cells: int = 2) -> np.ndarray:
    """Boolean mask of the cells whose obs columns equal every given value (compared as text).

    Raises an InputError naming the selection when a column or value does not exist, or when fewer than
    ``min_cells`` cells match.
    """
    mask = np.ones(adata.n_obs, dtype=bool)
    for col, value in (where or {}).items():
        if col not in adata.obs.columns:
            raise InputError(
                f"{name} selection", f"obs has no column {col!r}", f"choose one of {list(adata.obs.columns)}"
            )
        values = adata.obs[col].astype(str)
        if str(value) not in set(values):
            raise InputError(
                f"{name} selection", f"obs[{col!r}] has no value {value!r}", f"choose one of {sorted(set(values))[:20]}"
            )
        mask &= (values == str(value)).to_numpy()
    if mask.sum() < min_cells:
        raise InputError(
            f"{name} selection",
            f"{dict(where or {})} matches {int(mask.sum())} cells",
            f"select at least {min_cells} cells",
        )
    return mask
