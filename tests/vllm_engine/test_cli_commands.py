"""Every model command on the sub-word stand-in, as a user runs it, through each backend (``C2S_BACKEND=transformers``
and ``vllm``): ``c2s annotate`` (both modes), ``embed``, ``perturb``, ``generate`` and ``serve``, each in its own
process, against the transformers backend on the same cells in this process. Nothing of the libraries' own
logging reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

MODEL = "c2s-smollm2"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # the merged copy of the adapter is written here once


@pytest.fixture(scope="module", params=["transformers", "vllm"])
def env(request, cache):
    return {**os.environ, "C2S_BACKEND": request.param, "C2S_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def settings(cache):
    from c2s_agent.config import Settings

    return Settings(threads=1, cache_dir=cache, backend="auto")  # a name or folder: transformers


@pytest.fixture(scope="module")
def reference(settings):
    import torch

    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(MODEL, settings)


@pytest.fixture(scope="module")
def cells(kang, reference, tmp_path_factory):
    test = np.asarray(reference.meta["split"]["test_obs_names"])
    adata = kang[kang.obs_names.isin(test[::100])].copy()
    path = tmp_path_factory.mktemp("in") / "cells.h5ad"
    adata.write_h5ad(path)
    return adata, path


def c2s(env, *args, timeout=600):
    r = subprocess.run(
        [sys.executable, "-m", "c2s_agent", *map(str, args), "--threads", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for noise in ("INFO", "WARNING", "storing"):  # vLLM's, transformers' and anndata's own output goes to the log
        assert noise not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    return r


def test_annotate_scores_labels_as_transformers_does(env, cells, reference, tmp_path):
    from c2s_agent.models import tl

    adata, path = cells
    out = tmp_path / "a.h5ad"
    r = c2s(env, "annotate", path, out, "--model", MODEL)
    assert "Wrote" in r.stderr
    got, expected = ad.read_h5ad(out), adata.copy()
    tl.annotate(expected, reference)
    assert list(got.obs["c2s_cell_type"]) == list(expected.obs["c2s_cell_type"])
    np.testing.assert_allclose(got.obsm["c2s_label_probs"], expected.obsm["c2s_label_probs"], atol=2e-3)


def test_annotate_free_text_on_the_base_model(env, cells, settings, tmp_path):
    """A pretrained LLM with no label list writes its own words, as through transformers."""
    from c2s_agent.models import load_model, tl

    adata, path = cells
    out = tmp_path / "f.h5ad"
    c2s(env, "annotate", path, out, "--model", "smollm2", "--mode", "generate")
    got, expected = ad.read_h5ad(out), adata.copy()
    tl.annotate(expected, load_model("smollm2", settings), mode="generate")
    assert list(got.obs["c2s_generated_text"]) == list(expected.obs["c2s_generated_text"])
    assert list(got.obs["c2s_cell_ontology_id"]) == list(expected.obs["c2s_cell_ontology_id"])


def test_embed_as_transformers_does(env, cells, reference, tmp_path):
    from c2s_agent.models import tl

    adata, path = cells
    out = tmp_path / "e.h5ad"
    c2s(env, "embed", path, out, "--model", MODEL)
    expected = tl.embed(adata.copy(), reference)
    np.testing.assert_allclose(ad.read_h5ad(out).obsm["X_c2s"], expected, atol=2e-3, rtol=1e-3)


def test_perturb_and_generate_write_real_genes_once(env, cells, reference, tmp_path):
    """Sampled, so not equal to transformers draw for draw: every gene a vocabulary gene, none repeated."""
    adata, path = cells
    genes = set(reference.genes)
    c2s(env, "perturb", path, tmp_path / "p.h5ad", "--model", MODEL)
    c2s(env, "generate", tmp_path / "g.h5ad", "--cell-type", "NK", "--n", "2", "--model", MODEL)
    perturbed, generated = ad.read_h5ad(tmp_path / "p.h5ad"), ad.read_h5ad(tmp_path / "g.h5ad")
    assert perturbed.n_obs == adata.n_obs and generated.n_obs == 2
    for sentence in [*perturbed.obs["c2s_sentence"], *generated.obs["c2s_sentence"]]:
        words = sentence.split()
        assert 0 < len(words) == len(set(words)) and set(words) <= genes


def test_serve_answers_as_transformers_does(env, cells, reference, settings, serving, tmp_path):
    from c2s_agent.models import load_model

    with serving(["c2s_agent", "serve", "--model", MODEL, "--threads", "1"], tmp_path / "serve.log", env) as url:
        served = load_model(f"{url}/v1", settings)
        assert served.backend.c2s_server and served.known_labels == reference.known_labels
        adata, _ = cells
        got = served.predict_cell_types(adata, threshold=0.0)
    expected = reference.predict_cell_types(adata, threshold=0.0)
    labels = [c for c in expected.columns if c.startswith("p_")]
    assert list(got["label"]) == list(expected["label"])
    np.testing.assert_allclose(got[labels].to_numpy(), expected[labels].to_numpy(), atol=2e-3)
