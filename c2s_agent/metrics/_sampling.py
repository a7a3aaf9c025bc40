"""Order-invariant handling of cell sets: a canonical row order, seeded subsampling, bootstrap weights.

Every metric first puts cells in a canonical order (sorted by a fixed random projection of their values), so
the value, the subsample and the bootstrap interval do not depend on the order cells were given in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class MetricValue:
    """A metric's point estimate with a bootstrap percentile interval (``low``/``high`` None when not computed)."""

    value: float
    low: float | None = None
    high: float | None = None
    n_real: int = 0
    n_generated: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def as_matrix(x, name: str, min_rows: int = 2) -> np.ndarray:
    """A finite float64 2-D array with at least ``min_rows`` rows; an InputError names ``name`` otherwise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            name, f"is not a numeric matrix (got {type(x).__name__})", "pass an (n_cells, n_dims) array"
        ) from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(name, f"has {arr.ndim} dimensions", "pass an (n_cells, n_dims) array")
    if arr.shape[0] < min_rows:
        raise InputError(name, f"has {arr.shape[0]} cells; at least {min_rows} are needed", "give more cells")
    if not np.isfinite(arr).all():
        raise InputError(name, "holds NaN or infinite values", "remove those cells or fix the embedding")
    return arr


def check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_matrix(x, "real cells"), as_matrix(y, "generated cells")
    if x.shape[1] != y.shape[1]:
        raise InputError(
            "generated cells",
            f"have {y.shape[1]} dimensions but the real cells have {x.shape[1]}",
            "encode both sets with the same encoder",
        )
    return x, y


def canonical(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` sorted by a fixed random projection: the same matrix whatever order the rows came in."""
    proj = np.random.default_rng(12345).standard_normal(x.shape[1])
    return x[np.argsort(x @ proj, kind="stable")]


def subsample(x: np.ndarray, max_cells: int | None, seed: int) -> np.ndarray:
    """At most ``max_cells`` rows of a canonically ordered ``x``, chosen at random positions (seeded)."""
    if max_cells is None or x.shape[0] <= max_cells:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=max_cells, replace=False))
    return x[rows]


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) multinomial counts: how often each of ``n`` items appears in each resample of size ``n``."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def interval(
    values: np.ndarray, estimate: float, level: float = 0.95, floor: float | None = None
) -> tuple[float, float]:
    """Bootstrap percentile interval re-centred on ``estimate``: the spread of the estimate at this sample size.

    Resampling with replacement duplicates cells, which inflates distance statistics (scFID most): the replicates'
    median sits above the estimate. The percentiles are shifted by that difference so the interval describes how
    far the estimate would move with other cells, and always contains it. ``floor`` clips the lower end.
    """
    shift = float(np.median(values)) - estimate
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)]) - shift
    if floor is not None:
        lo, hi = max(lo, floor), max(hi, floor)
    return float(lo), float(hi)
