"""Agreement of predicted cell types with known labels."""

from __future__ import annotations

import pandas as pd

from ..conventions.slots import PREDICTED_TYPE
from ..models import UNKNOWN


def agreement(adata, truth: str, predicted: str = PREDICTED_TYPE) -> tuple[float | None, pd.DataFrame]:
    """The share of cells not called unknown whose ``obs[predicted]`` equals ``obs[truth]`` (None when every cell
    is unknown), and the table of known (rows) against predicted (columns) labels."""
    pred, true = adata.obs[predicted].astype(str), adata.obs[truth].astype(str)
    called = (pred != UNKNOWN).to_numpy()
    acc = float((pred.to_numpy()[called] == true.to_numpy()[called]).mean()) if called.any() else None
    return acc, pd.crosstab(true, pred)
