"""A real vLLM OpenAI server on 127.0.0.1 serving the embedded model: our HTTP backend, loaded by URL, gives the
transformers backend's greedy completions and cell type predictions."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent.models.backend import GenParams


@pytest.fixture(scope="module")
def vllm_server(serving, tmp_path_factory):
    from c2s_agent.models.model import embedded_model_path

    log = tmp_path_factory.mktemp("vllm") / "server.log"
    args = ["vllm.entrypoints.openai.api_server", "--model", embedded_model_path(), "--dtype", "float32"]
    with serving([*args, "--enforce-eager"], log) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def served(vllm_server, settings_1t):
    from c2s_agent.models import load_model

    return load_model(vllm_server, settings_1t)


def test_model_is_described_by_its_directory(served, reference):
    assert served.backend.name == "openai-http" and not served.backend.c2s_server
    assert served.prompts.name == "embedded" and served.known_labels == reference.known_labels


def test_greedy_completions_agree(served, reference, held_out):
    texts, _, _ = reference.sentences(held_out[:6], reference.top_k["perturbation"])
    prompts = [reference.prompts.format("perturbation", cell=t, perturbation="IFN-beta") for t in texts]
    params = GenParams(max_new_tokens=64)
    a = reference.backend.complete(prompts, params)
    b = served.backend.complete(prompts, params)
    assert [c.text for c in b] == [c.text for c in a]
    assert [c.n_completion_tokens for c in b] == [c.n_completion_tokens for c in a]
    np.testing.assert_allclose([c.logprob for c in b], [c.logprob for c in a], rtol=1e-4)


def test_cell_type_prediction_agrees(served, reference, held_out, same_as_reference):
    same_as_reference(served)
    # greedy decoding on a vLLM server is unconstrained (no allowed-token extension), and picks the same labels
    g = served.predict_cell_types(held_out, mode="generate", threshold=0.0)
    assert list(g["label"]) == list(reference.predict_cell_types(held_out, mode="generate", threshold=0.0)["label"])
