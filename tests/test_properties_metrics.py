"""Property-based tests (hypothesis) for the distribution metrics and the fold-change correlation: zero on
identical sets, symmetry, invariance to the order of cells, and non-negativity where the metric promises it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from c2s_agent.metrics import energy_distance, frechet_distance, gene_wasserstein, mmd, sliced_wasserstein
from c2s_agent.metrics.lfc import _corr

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
values = st.floats(-50, 50, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32)


@st.composite
def two_sets(draw, min_cells=4, max_cells=14, max_dim=4, nonneg=False):
    d = draw(st.integers(1, max_dim))
    elems = st.floats(0, 50, allow_nan=False, allow_subnormal=False, width=32) if nonneg else values
    x = draw(arrays(np.float64, (draw(st.integers(min_cells, max_cells)), d), elements=elems))
    y = draw(arrays(np.float64, (draw(st.integers(min_cells, max_cells)), d), elements=elems))
    perm_x = draw(st.permutations(range(len(x))))
    perm_y = draw(st.permutations(range(len(y))))
    return x, y, np.asarray(perm_x), np.asarray(perm_y)


def _tol(x, y) -> float:
    """Absolute tolerance for float round-off at the data's scale."""
    scale = max(1.0, float(np.abs(np.concatenate([x.ravel(), y.ravel()])).max()))
    return 1e-6 * scale**2


SET_METRICS = {
    "mmd": lambda a, b: mmd(a, b, n_boot=0, max_cells=None).value,
    "energy": lambda a, b: energy_distance(a, b, n_boot=0, max_cells=None).value,
    "sliced_w1": lambda a, b: sliced_wasserstein(a, b, n_boot=0, max_cells=None).value,
    "gene_w1": lambda a, b: gene_wasserstein(a, b, n_boot=0, max_cells=None).value,
    "frechet": frechet_distance,
}


@pytest.mark.parametrize("name", sorted(SET_METRICS))
@FAST
@given(data=two_sets())
def test_symmetric_and_order_invariant(name, data):
    x, y, px, py = data
    fn = SET_METRICS[name]
    v = fn(x, y)
    tol = _tol(x, y) * (10 if name == "frechet" else 1)
    assert np.isfinite(v)
    assert fn(y, x) == pytest.approx(v, abs=tol), "not symmetric"
    assert fn(x[px], y[py]) == pytest.approx(v, abs=tol), "depends on the order of cells"


@pytest.mark.parametrize("name", sorted(SET_METRICS))
@FAST
@given(data=two_sets())
def test_zero_on_identical_and_never_negative(name, data):
    x, y, px, _ = data
    fn = SET_METRICS[name]
    tol = _tol(x, x) * (10 if name == "frechet" else 1)
    same = fn(x, x[px])
    if name == "mmd":  # unbiased MMD^2: within 2/n of zero on identical sets, may dip below zero
        assert abs(same) <= 2 / len(x) + tol
    else:
        assert same == pytest.approx(0, abs=tol)
        assert fn(x, y) >= -tol


@FAST
@given(
    data=st.integers(3, 60).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, n, elements=values), arrays(np.float64, n, elements=values), st.permutations(range(n))
        )
    )
)
def test_fold_change_correlations_are_symmetric_bounded_and_order_invariant(data):
    a, b, perm = data
    perm = np.asarray(perm)
    r, tau = _corr(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        assert np.isnan(r) and np.isnan(tau)
        return
    assert -1 - 1e-9 <= r <= 1 + 1e-9
    r2, tau2 = _corr(b, a)
    r3, tau3 = _corr(a[perm], b[perm])
    assert r2 == pytest.approx(r, abs=1e-9) and r3 == pytest.approx(r, abs=1e-9)
    if not np.isnan(tau):
        assert tau2 == pytest.approx(tau, abs=1e-9) and tau3 == pytest.approx(tau, abs=1e-9)
    assert _corr(a, a)[0] == pytest.approx(1.0, abs=1e-9)
