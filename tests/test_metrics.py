"""Metrics on real cells: scFID against a float64 reference, symmetry, zero on identical sets, order
invariance, matched vs mismatched cell types on both bundled datasets, fold-change agreement, encoders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

from c2s_agent.errors import InputError
from c2s_agent.metrics import (
    ReferenceEncoder,
    energy_distance,
    evaluate_generation,
    frechet_distance,
    gene_wasserstein,
    lfc_agreement,
    mean_expression,
    mmd,
    scfid,
    sliced_wasserstein,
)
from c2s_agent.metrics.validation import separation, type_pairs


def naive_fid(x, y):
    """Textbook FID in float64: np.cov and scipy.linalg.sqrtm of the covariance product."""
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s_x @ s_y)
    root = root.real if np.iscomplexobj(root) else root
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s_x + s_y - 2 * root))


@pytest.fixture(scope="module")
def kang_pca(kang):
    """The reference encoder fitted on all Kang cells, and the embedding of every cell with its labels."""
    enc = ReferenceEncoder().fit(kang)
    return enc, enc.encode(kang), kang.obs["cell_type"].astype(str).to_numpy()


def group(kang_pca, cell_type):
    _, emb, labels = kang_pca
    return emb[labels == cell_type]


def test_scfid_agrees_with_float64_reference(kang_pca):
    mono, tcell = group(kang_pca, "CD14 Mono"), group(kang_pca, "CD4 Naive T")
    for x, y in ((mono, tcell), (mono[::2], mono[1::2])):
        assert frechet_distance(x, y) == pytest.approx(naive_fid(x, y), rel=1e-8)
    # fewer cells than dimensions (30 and 40 cells, 50 dims): exact cross-product path, no regularisation
    small_x, small_y = mono[:30], tcell[:40]
    assert frechet_distance(small_x, small_y) == pytest.approx(naive_fid(small_x, small_y), rel=1e-5)
    # mode collapse (every generated cell the same): FD = |mu_r - mu_g|^2 + Tr(S_r)
    collapsed = np.repeat(tcell[:1], 50, axis=0)
    expected = ((mono.mean(0) - tcell[0]) ** 2).sum() + np.trace(np.cov(mono, rowvar=False))
    assert frechet_distance(mono, collapsed) == pytest.approx(expected, rel=1e-9)
    assert scfid(mono, collapsed, n_boot=20).value == pytest.approx(expected, rel=1e-9)


def test_zero_on_identical_sets(kang_pca):
    x = group(kang_pca, "B")
    expr = np.abs(x[:, :20])
    assert frechet_distance(x, x) <= 1e-9 * np.trace(np.cov(x, rowvar=False))
    assert energy_distance(x, x, n_boot=0).value == 0
    assert sliced_wasserstein(x, x, n_boot=0).value == 0
    assert gene_wasserstein(expr, expr, n_boot=0).value == 0
    # unbiased MMD^2 on identical sets is -(2/n)(1 - mean off-diagonal kernel): within 2/n of zero
    assert abs(mmd(x, x, n_boot=0).value) <= 2 / len(x)


def test_symmetric_and_order_invariant(kang_pca):
    x, y = group(kang_pca, "CD16 Mono"), group(kang_pca, "NK")
    perm_x, perm_y = np.random.default_rng(3).permutation(len(x)), np.random.default_rng(4).permutation(len(y))
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-10)
    for fn in (scfid, mmd, energy_distance, sliced_wasserstein, gene_wasserstein):
        a, b = fn(x, y, n_boot=50), fn(x[perm_x], y[perm_y], n_boot=50)
        assert (a.value, a.low, a.high) == pytest.approx((b.value, b.low, b.high), rel=1e-9), fn.__name__
        assert a.low <= a.value <= a.high, fn.__name__
        assert a.high > a.low, fn.__name__
        if fn is not scfid:
            assert fn(y, x, n_boot=0).value == pytest.approx(a.value, rel=1e-9), fn.__name__


def test_bootstrap_interval_is_seeded_and_tracks_sample_size(kang_pca):
    mono = group(kang_pca, "CD14 Mono")
    a, b = scfid(mono[::2], mono[1::2], seed=1), scfid(mono[::2], mono[1::2], seed=1)
    assert (a.low, a.high) == (b.low, b.high)
    small = scfid(mono[:120:2], mono[1:120:2], seed=1)
    assert small.high - small.low > a.high - a.low  # fewer cells, wider interval


@pytest.mark.parametrize("name,column,min_cells", [("kang2018", "cell_type", 60), ("pbmc68k", "bulk_labels", 40)])
def test_metrics_separate_matched_from_mismatched_types(name, column, min_cells):
    from c2s_agent.data import read

    pairs = type_pairs(read(name), column, min_cells=min_cells)
    sep = separation(pairs)
    assert (sep["auroc"] >= 0.97).all(), sep
    matched, mismatched = pairs[pairs.matched], pairs[~pairs.matched]
    # scFID of halves of one type is far below scFID between types
    assert mismatched["scfid"].median() >= 4 * matched["scfid"].median()
    if name == "kang2018":  # every type's halves are closer than the type is to any other type, on every metric
        assert (sep["types_separated"] == 1).all(), sep
    else:  # pbmc68k's bulk T-cell labels overlap; all but one type must still be separated
        assert (sep["types_separated"] >= 5 / 6).all(), sep


def test_reference_encoder_persists_and_aligns_genes(kang, kang_pca, tmp_path):
    enc, emb, _ = kang_pca
    enc.save(tmp_path / "enc")
    manifest = json.loads((tmp_path / "enc" / "manifest.json").read_text())
    assert manifest["genes"] == enc.genes.tolist() and manifest["versions"]["numpy"] == np.__version__
    loaded = ReferenceEncoder.load(tmp_path / "enc")
    np.testing.assert_allclose(loaded.encode(kang[:50]), emb[:50], rtol=0, atol=1e-12)
    assert ReferenceEncoder().fit(kang).encode(kang[:50]) == pytest.approx(emb[:50], abs=1e-9)  # deterministic
    # a gene subset, lower-case names: missing genes count as 0 and are reported
    sub = kang[:50, kang.var_names.str.upper().isin(enc.genes[100:])].copy()
    sub.var_names = sub.var_names.str.lower()
    loaded.encode(sub)
    assert loaded.last_report["genes_missing"] == 100
    (tmp_path / "enc" / "arrays.npz").write_bytes(b"tampered")
    with pytest.raises(InputError, match="does not match the manifest checksum"):
        ReferenceEncoder.load(tmp_path / "enc")
    with pytest.raises(InputError, match="holds no readable manifest.json"):
        ReferenceEncoder.load(tmp_path / "nowhere")
    with pytest.raises(InputError, match="is not fitted"):
        ReferenceEncoder().encode(kang)


def test_sentences_map_into_the_same_space(kang, kang_pca):
    from c2s_agent.sentences import to_sentences

    enc, _, labels = kang_pca
    cs = to_sentences(kang, top_k=200)
    from_strings, from_cs = enc.encode(cs.strings()), enc.encode(cs)
    np.testing.assert_allclose(from_strings, from_cs, atol=1e-9)
    assert enc.last_report["genes_missing"] == 0
    mono, nk = from_cs[labels == "CD14 Mono"], from_cs[labels == "NK"]
    assert frechet_distance(mono[::2], mono[1::2]) < 0.25 * frechet_distance(mono[::2], nk)


def test_evaluate_generation_sentences_and_fold_changes(kang):
    from c2s_agent.sentences import to_sentences

    mono = kang[kang.obs.cell_type == "CD14 Mono"]
    stim, ctrl = mono[mono.obs.condition == "stim"], mono[mono.obs.condition == "ctrl"]
    generated = to_sentences(stim[::2], top_k=200).strings()  # stands in for generated stimulated monocytes
    good = evaluate_generation(stim[1::2], generated, reference=kang, control=ctrl, n_boot=30)
    bad = evaluate_generation(
        stim[1::2], to_sentences(ctrl[::2], top_k=200).strings(), reference=kang, control=ctrl[1::2], n_boot=30
    )
    assert list(good.metrics) == [
        "scfid",
        "mmd",
        "energy",
        "sliced_wasserstein",
        "gene_wasserstein",
        "lfc_pearson",
        "lfc_kendall",
    ]
    assert any("top-200 sentences" in n for n in good.notes)
    for m in ("scfid", "energy", "sliced_wasserstein", "gene_wasserstein"):
        assert good.metrics[m].value < 0.5 * bad.metrics[m].value, m
    assert good.metrics["lfc_pearson"].value > 0.9 and bad.metrics["lfc_pearson"].value < 0.5
    assert good.metrics["lfc_kendall"].value > 0.6
    out = good.to_dict()
    assert set(out["metrics"]["scfid"]) >= {"value", "interval"} and len(out["metrics"]["scfid"]["interval"]) == 2
    json.dumps(out)


def test_lfc_agreement_on_a_program_and_means(kang):
    mono = kang[kang.obs.cell_type == "CD14 Mono"]
    stim, ctrl = mono[mono.obs.condition == "stim"], mono[mono.obs.condition == "ctrl"]
    isg = ["ISG15", "IFIT1", "IFIT3", "MX1", "OAS1", "IFI6", "ISG20", "ifitm3", "NOT_A_GENE"]
    res = lfc_agreement(stim[::2], stim[1::2], ctrl, genes=isg, n_boot=50)
    assert res.pearson > 0.9 and res.genes_missing == ["NOT_A_GENE"] and res.n_genes == 8
    assert res.pearson_interval[0] <= res.pearson <= res.pearson_interval[1]
    by_means = lfc_agreement(mean_expression(stim[::2]), mean_expression(stim[1::2]), mean_expression(ctrl), genes=isg)
    assert by_means.pearson == pytest.approx(res.pearson, abs=1e-9)
    top = lfc_agreement(ctrl[::2], stim, ctrl[1::2], top_n=50)  # "prediction" of no change
    assert top.n_genes == 50 and top.pearson < 0.5
    with pytest.raises(InputError, match="only 0 of the requested genes"):
        lfc_agreement(stim, stim, ctrl, genes=["NOPE1", "NOPE2"])


def test_bad_inputs_get_clear_errors(kang, kang_pca):
    x = group(kang_pca, "B")
    with pytest.raises(InputError, match="have 3 dimensions but the real cells have 50"):
        frechet_distance(x, x[:, :3])
    with pytest.raises(InputError, match="holds NaN or infinite values"):
        mmd(x, np.full_like(x, np.nan))
    with pytest.raises(InputError, match="has 1 cells; at least 2 are needed"):
        scfid(x[:1], x)
    with pytest.raises(InputError, match=r"\['fid'\] are not known"):
        evaluate_generation(kang[:50], kang[50:100], metrics="scfid,fid")
    with pytest.raises(InputError, match="need control cells"):
        evaluate_generation(kang[:50], kang[50:100], metrics=["lfc_pearson"])
    with pytest.raises(InputError, match="'nope' is not registered"):
        evaluate_generation(kang[:50], kang[50:100], encoder="nope")
    with pytest.raises(InputError, match="must be an AnnData to fit the encoder on"):
        evaluate_generation(["CD3D CD3E", "LYZ S100A8"], ["CD3D", "LYZ"])
