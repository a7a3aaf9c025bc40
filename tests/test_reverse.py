"""The reverse transform on held-out Kang cells, and reconstruction from model-like text."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent.errors import InputError
from c2s_agent.sentences import ReverseTransform, to_sentences


@pytest.fixture(scope="module")
def split(kang):
    cs = to_sentences(kang, top_k=None)
    perm = np.random.default_rng(0).permutation(len(cs))
    return cs.subset(perm[:1600]), cs.subset(perm[1600:])


def test_heldout_fit_beats_the_reference(split):
    train, test = split
    fit = ReverseTransform.fit(train)
    scores = fit.evaluate(test, top_k=100)
    assert scores["r2"] >= 0.85 and scores["pearson"] >= 0.9 and scores["spearman"] >= 0.85


def test_prediction_is_monotone_and_never_negative(split):
    fit = ReverseTransform.fit(split[0])
    pred = fit.predict(np.arange(0, 20_000, 7))
    assert (np.diff(pred) <= 1e-12).all() and (pred >= 0).all()


def test_reconstruct_from_strings_counts_bad_genes(split, kang):
    fit = ReverseTransform.fit(split[0])
    genes = np.asarray(kang.var_names)
    text = ["CD14 LYZ lyz NOTAGENE S100A8.", "this is not a cell sentence", "CD3D " * 10_000]
    out = fit.reconstruct(text, genes=genes)
    assert out.shape == (3, len(genes))
    assert list(out.obs["c2s_n_unknown"]) == [1, 6, 0]
    assert list(out.obs["c2s_n_duplicated"]) == [1, 0, 9_999]
    row = out[0].X.toarray().ravel()
    order = [list(genes).index(g) for g in ("CD14", "LYZ", "S100A8")]
    assert row[order[0]] >= row[order[1]] >= row[order[2]] > 0
    assert out.uns["c2s_reverse"]["n_unknown_genes"] == 7


def test_reconstruct_from_sentences_matches_predict(split):
    fit = ReverseTransform.fit(split[0])
    test = split[1].subset(np.arange(10))
    out = fit.reconstruct(test)
    first = test.idx[0][0]
    assert out.X[0, first] == pytest.approx(fit.predict([0])[0], rel=1e-6)


def test_save_and_load(tmp_path, split):
    fit = ReverseTransform.fit(split[0])
    back = ReverseTransform.load(fit.save(tmp_path / "rt.json"))
    np.testing.assert_allclose(back.predict([0, 10, 100]), fit.predict([0, 10, 100]))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="is not a saved reverse transform"):
        ReverseTransform.load(tmp_path / "bad.json")
