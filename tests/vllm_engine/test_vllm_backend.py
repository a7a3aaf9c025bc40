"""The in-process vLLM backend (vllm.LLM) on the embedded model reproduces the transformers backend's outputs:
label scores, greedy labels, and greedy cell generation and perturbation token for token."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent.errors import InputError
from c2s_agent.models.backend import GenParams


@pytest.fixture(scope="module")
def vllm_model(settings_1t):
    from c2s_agent.models import load_model

    model = load_model(None, settings_1t.model_copy(update={"backend": "vllm"}))
    assert model.backend.name == "vllm" and model.prompts.name == "embedded"
    return model


def test_label_scores_agree(same_as_reference, vllm_model, held_out):
    b = same_as_reference(vllm_model)
    truth = held_out.obs["cell_type"].astype(str)
    assert (b["label"].to_numpy() == truth.to_numpy()).mean() > truth.value_counts(normalize=True).iloc[0] + 0.3


def test_greedy_labels_agree(reference, vllm_model, held_out):
    a = reference.predict_cell_types(held_out, mode="generate", threshold=0.0)
    b = vllm_model.predict_cell_types(held_out, mode="generate", threshold=0.0)
    assert list(b["generated_text"]) == list(a["generated_text"])
    np.testing.assert_allclose(b["confidence"], a["confidence"], atol=1e-4)


def test_greedy_generation_agrees_token_for_token(reference, vllm_model):
    types = reference.known_labels
    conds = ["ctrl", "stim"] * (len(types) // 2) + ["ctrl"] * (len(types) % 2)
    a = reference.generate(types, conds, temperature=0.0, guidance=0.0)  # vLLM samples unguided
    b = vllm_model.generate(types, conds, temperature=0.0)
    assert b == a
    assert all(0 < len(s.split()) == len(set(s.split())) <= reference.top_k["generation"] for s in b)
    with pytest.raises(InputError, match="guidance: is not offered by the vllm backend"):
        vllm_model.generate(types, conds, guidance=2.0)


def test_greedy_perturbation_agrees_token_for_token(reference, vllm_model, held_out):
    ctrl = held_out[held_out.obs["condition"].astype(str) == "ctrl"][:8]
    assert reference.perturb(ctrl, "IFN-beta", temperature=0.0) == vllm_model.perturb(ctrl, "IFN-beta", temperature=0.0)


def test_ban_repeats_changes_greedy_decoding_as_in_transformers(reference, vllm_model):
    prompts = [
        reference.prompts.format("generation", cell_type=reference._token(t), condition="ctrl", num_genes=200)
        for t in ("CD14 Mono", "B", "NK")
    ]
    free = GenParams(max_new_tokens=200)
    banned = GenParams(max_new_tokens=200, ban_repeats=True)
    loose = [c.text.split() for c in vllm_model.backend.complete(prompts, free)]
    assert any(len(w) > len(set(w)) for w in loose)  # unconstrained greedy text repeats genes here
    a = reference.backend.complete(prompts, banned)
    b = vllm_model.backend.complete(prompts, banned)
    assert [c.text for c in b] == [c.text for c in a]
    assert all(len(c.text.split()) == len(set(c.text.split())) for c in b)
    np.testing.assert_allclose([c.logprob for c in b], [c.logprob for c in a], rtol=1e-4)


def test_multi_token_label_scores_agree(reference, vllm_model, held_out):
    texts, _, _ = reference.sentences(held_out[:4], reference.top_k["cell_type"])
    prompts = [reference.prompts.format("cell_type", cell=t) for t in texts]
    labels = ["CD14_Mono .", "B .", "NK CD8_T"]  # two tokens each: scored as prompt+label pairs
    a = reference.backend.score_labels(prompts, labels)
    b = vllm_model.backend.score_labels(prompts, labels)
    np.testing.assert_allclose(b.logprobs, a.logprobs, rtol=1e-4)
    np.testing.assert_allclose(b.prompt_nll, a.prompt_nll, rtol=1e-4)
    assert np.isfinite(a.logprobs).all() and (a.logprobs < 0).all()
