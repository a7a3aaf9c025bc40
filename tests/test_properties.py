"""Property-based tests (hypothesis) for the forward transform, the reverse transform and the gene parser."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from c2s_agent.sentences import ReverseTransform, to_sentences
from c2s_agent.sentences.parse import MAX_CHARS, parse_genes
from c2s_agent.sentences.transform import _priority, rank_csr

counts = arrays(
    np.float32,
    st.tuples(st.integers(1, 12), st.integers(1, 30)),
    elements=st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 7.0, 40.0]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X=counts, seed=st.integers(0, 2**16), k=st.one_of(st.none(), st.integers(1, 40)))
def test_rank_is_a_sort_by_value_then_priority(X, seed, k):
    pr, inv = _priority(X.shape[1], "random", seed, None)
    idx, vals = rank_csr(sp.csr_matrix(X), k, pr, inv)
    for i, row in enumerate(X):
        expected = sorted(np.flatnonzero(row), key=lambda g: (-row[g], pr[g]))[: k or None]
        got = idx[i][idx[i] >= 0].tolist()
        assert got == expected
        np.testing.assert_array_equal(vals[i, : len(got)], row[got])
        assert (idx[i][len(got) :] == -1).all()


@settings(max_examples=30, deadline=None)
@given(X=counts, scale=st.floats(0.1, 1e4))
def test_order_is_invariant_to_cell_scaling_and_log(X, scale):
    """Ranks depend on the order within a cell only: scaling a cell or taking log1p changes nothing."""
    pr, inv = _priority(X.shape[1], "random", 42, None)
    a, _ = rank_csr(sp.csr_matrix(X), None, pr, inv)
    b, _ = rank_csr(sp.csr_matrix(np.log1p(X * np.float32(scale))), None, pr, inv)
    np.testing.assert_array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(X=counts)
def test_to_sentences_never_invents_or_loses_genes(X):
    X = X.copy()
    X[~(X > 0).any(axis=1), 0] = 1.0  # every cell needs one expressed gene
    a = ad.AnnData(X=sp.csr_matrix(X))
    a.var_names = [f"g{i}" for i in range(X.shape[1])]
    cs = to_sentences(a, top_k=None)
    for i in range(X.shape[0]):
        assert set(cs.words(i)) == {f"G{j}" for j in np.flatnonzero(X[i])}


@settings(max_examples=40, deadline=None)
@given(
    values=arrays(np.float32, st.tuples(st.integers(5, 40), st.integers(20, 60)), elements=st.floats(0, 8, width=32))
)
def test_reverse_fit_is_monotone_and_non_negative(values):
    import pandas as pd

    from c2s_agent.sentences import CellSentences

    vals = -np.sort(-values, axis=1)
    idx = np.tile(np.arange(values.shape[1], dtype=np.int32), (values.shape[0], 1))
    cs = CellSentences(
        idx,
        np.array([f"G{i}" for i in range(values.shape[1])], dtype=object),
        pd.Index([str(i) for i in range(values.shape[0])]),
        vals,
    )
    fit = ReverseTransform.fit(cs)
    pred = fit.predict(np.arange(0, 5000))
    assert (pred >= 0).all() and (np.diff(pred) <= 1e-9).all()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=400))
def test_parser_accepts_any_text(text):
    lookup = {"CD3D": 0, "LYZ": 1, "MS4A1": 2}
    parsed = parse_genes(text, lookup)
    assert len(set(parsed.idx.tolist())) == len(parsed.idx)
    assert set(parsed.idx.tolist()) <= {0, 1, 2}
    tokens = [t.strip(".") for t in re.split(r"[\s,;]+", text.strip().rstrip(".").upper()) if t]
    assert len(parsed.idx) + parsed.n_unknown + parsed.n_duplicated == len(tokens)  # every token accounted for
    assert parsed.n_unknown == sum(t not in lookup for t in tokens)


@settings(max_examples=30, deadline=None)
@given(genes=st.lists(st.sampled_from(["CD3D", "LYZ", "MS4A1", "cd3d", "NOPE"]), max_size=50))
def test_parser_keeps_first_occurrence_order(genes):
    lookup = {"CD3D": 0, "LYZ": 1, "MS4A1": 2}
    parsed = parse_genes(" ".join(genes) + ".", lookup)
    expected = list(dict.fromkeys(lookup[g.upper()] for g in genes if g.upper() in lookup))
    assert parsed.idx.tolist() == expected
    assert parsed.n_unknown == sum(g == "NOPE" for g in genes)


def test_parser_bounds_endless_output():
    parsed = parse_genes("LYZ " * (MAX_CHARS // 2), {"LYZ": 0})
    assert parsed.idx.tolist() == [0] and parsed.n_duplicated == MAX_CHARS // 4 - 1
