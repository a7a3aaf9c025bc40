"""Reading, detection and normalisation on the bundled data, and the clear errors for unusable input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_agent.data import inspect, prepare, read
from c2s_agent.errors import InputError


def _write(tmp_path, X, var_names=None, name="x.h5ad", **var):
    X = sp.csr_matrix(np.asarray(X, dtype=np.float32))
    names = var_names or [f"G{i}" for i in range(X.shape[1])]
    a = ad.AnnData(X=X, var=pd.DataFrame(var, index=pd.Index(names)))
    a.obs_names = [f"c{i}" for i in range(X.shape[0])]
    path = tmp_path / name
    a.write_h5ad(path)
    return path


def test_detects_counts_on_kang(kang):
    report = inspect(kang, "X")
    assert report.kind == "counts" and report.gene_ids == "symbols" and report.n_duplicated_genes == 0


def test_pbmc_scaled_x_is_detected_and_raw_is_used(pbmc):
    assert inspect(pbmc, "X").kind == "scaled"
    raw = inspect(pbmc, "raw")
    assert raw.kind == "log-normalised" and raw.log_base == "e"
    out = prepare(pbmc)
    assert out.uns["c2s_input"]["source"] == "raw" and out.uns["c2s_input"]["steps"] == []
    np.testing.assert_allclose(out.X.toarray(), pbmc.raw.X.toarray(), atol=1e-6)


def test_counts_are_normalised_to_log1p_cp10k(kang):
    out = prepare(kang)
    totals = np.expm1(out.X).sum(axis=1)
    np.testing.assert_allclose(np.asarray(totals).ravel(), 1e4, rtol=1e-3)
    assert out.uns["c2s_input"]["steps"] == ["normalize_total(target_sum=10000)", "log1p (natural log)"]


def test_log10_input_is_detected_and_converted(kang):
    sub = kang[:200].copy()
    counts = sub.X.toarray()
    cp10k = counts / counts.sum(1, keepdims=True) * 1e4
    sub.X = sp.csr_matrix(np.log10(1 + cp10k).astype(np.float32))
    assert inspect(sub, "X").log_base == "10"
    np.testing.assert_allclose(prepare(sub).X.toarray(), np.log1p(cp10k), atol=1e-3)


def test_backed_read_keeps_x_on_disk():
    a = read("kang2018", backed=True)
    try:
        assert a.isbacked and inspect(a, "X").kind == "counts"
    finally:
        a.file.close()


def test_refuses_scaled_source(pbmc):
    with pytest.raises(InputError, match=r"X: holds scaled values .* Fix: use the .raw matrix"):
        prepare(pbmc, source="X")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"cell,gene\n1,2\n", "is not an HDF5/.h5ad file"),
        (b"", "is not an HDF5/.h5ad file"),
    ],
)
def test_non_h5ad_files(tmp_path, content, message):
    path = tmp_path / "bad.h5ad"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read(path)


def test_truncated_h5ad(tmp_path):
    good = read("kang2018")
    path = tmp_path / "full.h5ad"
    good.write_h5ad(path)
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError, match=r"cut.h5ad: (could not be read as AnnData|is not an HDF5).*Fix:"):
        read(cut)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "nope.h5ad")
    with pytest.raises(InputError, match="is a directory"):
        read(tmp_path)


def test_zero_cells_and_zero_genes(tmp_path):
    with pytest.raises(InputError, match="has zero cells"):
        read(_write(tmp_path, np.zeros((0, 3))))
    with pytest.raises(InputError, match="has zero genes"):
        read(_write(tmp_path, np.zeros((3, 0)), name="g.h5ad"))


def test_nan_values(tmp_path):
    X = np.ones((5, 4))
    X[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN or infinite values.*Fix: remove or impute"):
        prepare(read(_write(tmp_path, X)))


def test_negative_counts_are_scaled_data(tmp_path):
    X = np.arange(20).reshape(5, 4).astype(float)
    X[0, 0] = -3
    with pytest.raises(InputError, match="scaled values"):
        prepare(read(_write(tmp_path, X)))


def test_empty_cells_need_a_decision(tmp_path):
    X = np.arange(20).reshape(5, 4).astype(float)
    X[1] = 0
    path = _write(tmp_path, X)
    with pytest.raises(InputError, match=r"1 cells have no expressed genes.*drop_empty=True"):
        prepare(read(path))
    out = prepare(read(path), drop_empty=True)
    assert out.n_obs == 4 and out.uns["c2s_input"]["dropped_empty_cells"] == 1


def test_all_empty(tmp_path):
    with pytest.raises(InputError, match="no non-zero values"):
        prepare(read(_write(tmp_path, np.zeros((4, 3)))))


def test_duplicated_gene_names(tmp_path):
    path = _write(tmp_path, np.ones((3, 3)), var_names=["A", "B", "A"])
    with pytest.raises(InputError, match=r"1 gene names are duplicated.*var_names_make_unique"):
        prepare(read(path))


def test_ensembl_ids_use_symbol_column(tmp_path):
    ids = ["ENSG00000111640", "ENSG00000075624", "ENSG00000164111"]
    path = _write(tmp_path, np.arange(1, 10).reshape(3, 3), var_names=ids, feature_name=["GAPDH", "ACTB", "ANXA3"])
    a = read(path)
    assert inspect(a).gene_ids == "ensembl"
    out = prepare(a)
    assert list(out.var_names) == ["GAPDH", "ACTB", "ANXA3"]
    assert "feature_name" in out.uns["c2s_input"]["gene_names"]


def test_wrong_dtype(tmp_path):
    a = ad.AnnData(X=np.array([["a", "b"], ["c", "d"]], dtype=object))
    with pytest.raises(InputError, match="not numbers"):
        inspect(a)


@pytest.mark.parametrize("name", ["kang", "pbmc"])
def test_write_estimates_the_file_it_writes(request, tmp_path, name):
    """The room checked before a write covers the file written (HDF5 crashes on a disk that fills mid-write),
    without asking for several times what it needs."""
    from c2s_agent.data import ROOM, estimated_size, write

    adata = request.getfixturevalue(name)
    write(adata, tmp_path / "x.h5ad")
    size, estimate = (tmp_path / "x.h5ad").stat().st_size, estimated_size(adata)
    assert size <= estimate * 1.1 + ROOM
    assert estimate < 2 * size
    assert read(tmp_path / "x.h5ad").shape == adata.shape
