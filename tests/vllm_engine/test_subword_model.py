"""vLLM on a sub-word C2S model (C2S-SmolLM2: the bundled LoRA adapter on the pulled SmolLM2-135M): the in-process
engine and a vLLM server serving the same (merged) directory give the transformers backend's label scores,
free-text annotations, gene-constrained cells and embeddings, greedy and token for token."""

from __future__ import annotations

import numpy as np
import pytest

MODEL = "c2s-smollm2"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    from c2s_agent.config import Settings

    return Settings(threads=1, cache_dir=tmp_path_factory.mktemp("cache"))  # the merged copy is written here


@pytest.fixture(scope="module")
def reference(settings):
    import torch

    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(MODEL, settings)


@pytest.fixture(scope="module")
def cells(kang, reference):
    test = np.asarray(reference.meta["split"]["test_obs_names"])
    return kang[kang.obs_names.isin(test[::50])].copy()


@pytest.fixture(scope="module")
def engine(settings):
    from c2s_agent.models import load_model

    model = load_model(MODEL, settings.model_copy(update={"backend": "vllm"}))
    assert model.backend.name == "vllm" and model.prompts.name == "c2s-scale"
    return model


@pytest.fixture(scope="module")
def served(engine, settings, serving, tmp_path_factory):
    """A vLLM OpenAI server on 127.0.0.1 serving the merged directory, with the c2s logits processors."""
    from c2s_agent.models import load_model
    from c2s_agent.models.vllm_backend import LOGITS_PROCESSORS

    log = tmp_path_factory.mktemp("vllm") / "server.log"
    args = ["vllm.entrypoints.openai.api_server", "--model", engine.backend.weights, "--dtype", "float32"]
    args += ["--enforce-eager", "--max-model-len", "2048", "--logits-processors", *LOGITS_PROCESSORS]
    with serving(args, log) as url:
        yield load_model(f"{url}/v1", settings)


@pytest.fixture(scope="module")
def expected(reference, cells):
    types = ["CD14 Mono", "B", "NK", "CD8 T"]
    return {
        "scores": reference.predict_cell_types(cells, threshold=0.0),
        "free": _free_text(reference, cells),
        "cells": reference.generate(types, "ctrl", n_genes=24, temperature=0.0, guidance=0.0),
        "perturbed": reference.perturb(cells[:3], "IFN-beta", n_genes=16, temperature=0.0),
    }


def _free_text(model, cells):
    """Free-text annotation: the model's own words (its label list set aside)."""
    import copy

    free = copy.copy(model)
    free.meta = {k: v for k, v in model.meta.items() if k != "labels"}
    return free.predict_cell_types(cells, mode="generate", threshold=0.0)


def _agree(model, expected, cells):
    labels = [c for c in expected["scores"].columns if c.startswith("p_")]
    got = model.predict_cell_types(cells, threshold=0.0)
    assert list(got["label"]) == list(expected["scores"]["label"])
    np.testing.assert_allclose(got[labels].to_numpy(), expected["scores"][labels].to_numpy(), atol=2e-3)
    np.testing.assert_allclose(got["sentence_nll"], expected["scores"]["sentence_nll"], atol=2e-3)
    free = _free_text(model, cells)
    assert list(free["generated_text"]) == list(expected["free"]["generated_text"])
    assert list(free["cell_ontology_id"]) == list(expected["free"]["cell_ontology_id"])
    np.testing.assert_allclose(free["confidence"], expected["free"]["confidence"], rtol=2e-3, atol=1e-4)
    types = ["CD14 Mono", "B", "NK", "CD8 T"]
    assert model.generate(types, "ctrl", n_genes=24, temperature=0.0) == expected["cells"]
    assert model.perturb(cells[:3], "IFN-beta", n_genes=16, temperature=0.0) == expected["perturbed"]


def test_in_process_engine_agrees_with_transformers(engine, expected, cells, reference):
    _agree(engine, expected, cells)
    genes = set(reference.genes)
    assert all(0 < len(s.split()) == len(set(s.split())) <= 24 and set(s.split()) <= genes for s in expected["cells"])
    assert (expected["free"]["cell_ontology_id"] != "").mean() >= 0.5  # the fine-tune names cell types in words
    np.testing.assert_allclose(engine.embed(cells[:4]), reference.embed(cells[:4]), atol=2e-3, rtol=1e-3)


def test_vllm_server_agrees_with_transformers(served, expected, cells, reference):
    assert served.backend.name == "openai-http" and not served.backend.c2s_server and served.backend.tok is not None
    assert served.prompts.name == "c2s-scale" and served.known_labels == reference.known_labels
    _agree(served, expected, cells)
