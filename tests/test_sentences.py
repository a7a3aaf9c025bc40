"""Cell sentences on the bundled data: order, ties, top-K, storage, streaming, collisions, multi-cell text."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from c2s_agent.data import prepare
from c2s_agent.errors import InputError
from c2s_agent.sentences import (
    CellSentences,
    from_adata,
    gene_vocabulary,
    multicell_text,
    stream_sentences,
    to_sentences,
)
from c2s_agent.sentences.transform import to_adata


@pytest.fixture(scope="module")
def kang_cs(kang):
    return to_sentences(kang, top_k=None)


def test_order_is_descending_expression_with_ties_only_permuted(kang, kang_cs):
    X = prepare(kang).X
    for i in range(0, kang.n_obs, 97):
        row = X[i].toarray().ravel()
        idx = kang_cs.idx[i][kang_cs.idx[i] >= 0]
        assert len(idx) == (row > 0).sum()
        vals = row[idx]
        assert (np.diff(vals) <= 0).all(), "values must not increase along a sentence"
        np.testing.assert_allclose(kang_cs.values[i, : len(idx)], vals)


def test_ties_are_seeded_and_deterministic(kang):
    a = to_sentences(kang[:100], top_k=50, seed=1)
    b = to_sentences(kang[:100], top_k=50, seed=1)
    c = to_sentences(kang[:100], top_k=50, seed=2)
    np.testing.assert_array_equal(a.idx, b.idx)
    assert (a.idx != c.idx).any(), "another seed breaks ties differently"
    np.testing.assert_allclose(a.values, c.values)  # the same values in the same places


def test_tie_break_by_mean(kang):
    cs = to_sentences(kang[:300], top_k=None, tie_break="mean")
    X = prepare(kang[:300]).X
    means = np.asarray(X.mean(axis=0)).ravel()
    row = cs.idx[0][cs.idx[0] >= 0]
    vals = cs.values[0, : len(row)]
    for j in range(len(row) - 1):
        if vals[j] == vals[j + 1]:
            assert means[row[j]] >= means[row[j + 1]]


def test_top_k_is_a_prefix_of_the_full_sentence(kang, kang_cs):
    top = to_sentences(kang, top_k=64)
    assert top.idx.shape == (kang.n_obs, 64)
    np.testing.assert_array_equal(top.idx, kang_cs.idx[:, :64])
    assert top.sentence(0).split() == kang_cs.words(0, 64)


def test_gene_names_are_upper_case_and_collisions_refused():
    names, ok = gene_vocabulary(["Cd4", "Actb", "mt-Co1"])
    assert list(names) == ["CD4", "ACTB", "MT-CO1"] and ok.all()
    with pytest.raises(InputError, match=r"1 names collide after upper-casing.*keep_first"):
        gene_vocabulary(["Cd4", "CD4", "Actb"])
    names, ok = gene_vocabulary(["Cd4", "CD4", "Actb"], on_collision="keep_first")
    assert list(ok) == [True, False, True]


def test_collision_never_shifts_gene_names():
    X = sp.csr_matrix(np.array([[5, 9, 1, 7]], dtype=np.float32))
    a = ad.AnnData(X=X)
    a.var_names = ["Gene1", "GENE1", "Zz", "Ab"]
    cs = to_sentences(a, top_k=None, on_collision="keep_first")
    assert cs.words(0) == ["AB", "GENE1", "ZZ"]  # the dropped duplicate's value (9) is never given to another gene


def test_roundtrip_through_h5ad(tmp_path, kang):
    cs = to_sentences(kang, top_k=32)
    a = to_adata(kang.copy(), cs)
    a.write_h5ad(tmp_path / "s.h5ad")
    back = from_adata(ad.read_h5ad(tmp_path / "s.h5ad"))
    np.testing.assert_array_equal(back.idx, cs.idx)
    assert back.sentence(5) == cs.sentence(5)
    assert back.params["top_k"] == 32


def test_streaming_matches_in_memory(kang):
    from c2s_agent.resources import demo_path

    full = to_sentences(kang, top_k=100)
    parts = list(stream_sentences(demo_path("kang2018"), top_k=100, chunk_size=333))
    assert [s for s, _ in parts] == list(range(0, 2000, 333))
    np.testing.assert_array_equal(np.vstack([p.idx for _, p in parts]), full.idx)


def test_strings_are_the_words_joined_for_any_gene_names(kang):
    cs = to_sentences(kang[:50], top_k=30)
    assert cs.strings() == [" ".join(cs.words(i)) for i in range(len(cs))]
    assert cs.strings(5)[7] == cs.sentence(7, 5)
    odd = CellSentences(
        cs.idx[:3], np.array([f"Gène-{i}" for i in range(len(cs.genes))], dtype=object), cs.obs_names[:3]
    )
    assert odd.strings() == [" ".join(odd.words(i)) for i in range(3)]  # not ASCII: byte and character offsets differ
    broken = CellSentences(
        cs.idx[:2], np.array([f"G{i}\nX" for i in range(len(cs.genes))], dtype=object), cs.obs_names[:2]
    )
    with pytest.raises(InputError, match="line break"):
        broken.strings()


def test_bad_top_k(kang):
    with pytest.raises(InputError, match="top_k: must be >= 1"):
        to_sentences(kang, top_k=0)


def test_from_adata_without_sentences(kang):
    with pytest.raises(InputError, match=r'no obsm\["c2s_rank_idx"\]'):
        from_adata(kang)


def test_multicell_text(kang_cs):
    text = multicell_text(kang_cs, [3, 7], top_k=5)
    lines = text.splitlines()
    assert lines[0] == f"Cell 1: {kang_cs.sentence(3, 5)}." and lines[1].startswith("Cell 2: ")


def test_compact_storage(kang_cs):
    assert isinstance(kang_cs, CellSentences) and kang_cs.idx.dtype == np.int32
    assert (kang_cs.lengths == (kang_cs.idx >= 0).sum(1)).all()
