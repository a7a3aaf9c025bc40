"""A real pretrained LLM with a sub-word tokenizer (SmolLM2-135M, pulled by `make setup`) as a C2S model: label
scoring that reads each cell once, free-text annotation, gene-constrained generation and prompts that name the
data's organism; and C2S-SmolLM2, its LoRA fine-tune on Kang (bundled adapter), on held-out cells."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from c2s_agent.models.backend import GenParams
from c2s_agent.models.constraint import WordList

K = 24  # genes per prompt: ~150 tokens, so that full forward passes per pair stay affordable as a reference


@pytest.fixture(scope="module")
def stand_in():
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    model = copy.copy(load_model("smollm2", Settings(threads=1)))
    model.top_k = {**model.top_k, "cell_type": K}
    return model


@pytest.fixture(scope="module")
def held_out(kang):
    """Held-out Kang cells of the embedded model's (and C2S-SmolLM2's) split, every 20th."""
    import json

    from c2s_agent.models import embedded_model_path

    test = json.loads((embedded_model_path() / "c2s_model.json").read_text())["split"]["test_obs_names"]
    return kang[kang.obs_names.isin(test[::20])].copy()


@pytest.fixture(scope="module")
def labels(kang):
    return sorted(kang.obs["cell_type"].astype(str).unique())


def _pair_scores(backend, prompts, conts):
    """log P(continuation | prompt) by one full forward pass per pair (the cost this project no longer pays)."""
    import torch

    out = np.zeros((len(prompts), len(conts)))
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            ids = backend.tok(p).input_ids
            for j, c in enumerate(conts):
                lab = backend.tok(c, add_special_tokens=False).input_ids
                lp = torch.log_softmax(backend.model(input_ids=torch.tensor([ids + lab])).logits[0].double(), -1)
                out[i, j] = sum(float(lp[len(ids) - 1 + k, t]) for k, t in enumerate(lab))
    return out


def test_label_scores_read_each_cell_once_and_equal_per_pair_passes(stand_in, held_out, labels):
    prompts, _, _ = stand_in.cell_type_prompts(held_out[:4])
    prompts[1] = prompts[1][:180] + " ... The cell type corresponding to these genes is:"  # left padding in a batch
    conts = [stand_in.prompts.response("cell_type", label=x) for x in labels]
    lens = [len(stand_in.backend.tok(c, add_special_tokens=False).input_ids) for c in conts]
    assert max(lens) >= 4 and min(lens) == 2  # " CD4 Naive T." is 5 tokens, " B." 2
    got = stand_in.backend.score_labels(prompts, conts)
    np.testing.assert_allclose(got.logprobs, _pair_scores(stand_in.backend, prompts, conts), atol=2e-3)
    alone = stand_in.backend.score_labels(prompts[1:2], conts)
    np.testing.assert_allclose(alone.logprobs[0], got.logprobs[1], atol=2e-3)
    np.testing.assert_allclose(alone.prompt_nll[0], got.prompt_nll[1], atol=1e-4)
    # the prompt NLL of the scoring pass is the one generation's prefill reports
    comp = stand_in.backend.complete(prompts[:2], GenParams(max_new_tokens=1, prompt_nll=True))
    np.testing.assert_allclose([c.prompt_nll for c in comp], got.prompt_nll[:2], atol=1e-4)


def test_prompts_name_the_organism_of_the_data(stand_in, held_out):
    human, _, _ = stand_in.cell_type_prompts(held_out[:2])
    mouse = held_out[:2].copy()
    mouse.var_names = [g[:1] + g[1:].lower() for g in mouse.var_names]  # MGI-style symbols
    mouse.var_names_make_unique()
    mouse_prompts, _, _ = stand_in.cell_type_prompts(mouse)
    assert "in a Homo sapiens cell" in human[0] and "in a Mus musculus cell" in mouse_prompts[0]
    assert "Homo sapiens" not in mouse_prompts[0]


def test_gene_constrained_generation_with_a_subword_tokenizer(stand_in, kang):
    """Every gene a sub-word LM writes is a vocabulary gene, none twice, however many tokens each takes; the
    length limit counts genes, not tokens."""
    from c2s_agent.models.constraint import trie

    genes = [str(g) for g in kang.var_names[:4000]]
    spec = WordList(tuple(genes), 12)
    t = trie(stand_in.backend.tok, spec)
    assert not t.single_token and max(len(p) for p in t.paths) >= 10  # up to 5+ tokens a gene, both roots
    out = stand_in.generate(["CD14 Mono", "B", "NK", "CD8 T"], "ctrl", n_genes=12, genes=genes, seed=1, temperature=1.0)
    vocab = set(genes)
    for s in out:
        words = s.split()
        assert 1 <= len(words) <= 12 and len(set(words)) == len(words) and set(words) <= vocab, s
    greedy = stand_in.backend.complete(
        [stand_in.prompts.format("generation", cell_type="B", condition="ctrl", num_genes=12)],
        GenParams(max_new_tokens=200, temperature=0.0, words=WordList(("CD74", "HLA-DRA", "MS4A1", "CD79A"), 3)),
    )[0]
    words = greedy.text.removesuffix(".").split()
    assert set(words) <= {"CD74", "HLA-DRA", "MS4A1", "CD79A"} and len(words) == len(set(words)) <= 3, greedy.text


def test_word_trie_walk_equals_the_single_token_fast_path(monkeypatch):
    """On the embedded model (one token per gene) the tensor-mask fast path and the trie walk that sub-word
    models use give the same greedy cells, token for token."""
    from c2s_agent.config import Settings
    from c2s_agent.models import constraint, load_model

    model = load_model(None, Settings(threads=1))
    types = ["CD14 Mono", "B", "NK", "pDC"]
    fast = model.generate(types, "stim", n_genes=40, temperature=0.0, guidance=0.0)
    original = constraint.trie

    def walked(tok, spec):
        t = copy.copy(original(tok, spec))
        assert t.single_token
        t.single_token = False
        return t

    monkeypatch.setattr(constraint, "trie", walked)
    assert model.generate(types, "stim", n_genes=40, temperature=0.0, guidance=0.0) == fast
    assert all(20 <= len(s.split()) <= 40 for s in fast)


def test_free_text_annotation_names_ontology_terms_or_keeps_the_words(stand_in, held_out):
    from c2s_agent.conventions import ontology
    from c2s_agent.models.backend import Completion

    df = stand_in.predict_cell_types(held_out[:3], mode="generate", threshold=0.0)
    assert set(df.columns) >= {"label", "confidence", "cell_ontology_id", "generated_text"}
    assert ((df["confidence"] > 0) & (df["confidence"] <= 1)).all()
    terms = ontology.terms()
    for _, row in df.iterrows():  # a Cell Ontology term's name when the words name one, else the words as written
        if row["cell_ontology_id"]:
            assert row["label"] == terms[row["cell_ontology_id"]].name
        else:
            assert row["label"] == (row["generated_text"] or "unknown")
    named = stand_in._read_labels(
        [Completion("CD14+ monocytes", 10, 3, -0.1), Completion("a blob", 10, 2, -2.0)], None, ["a", "b"]
    )
    assert named["cell_ontology_id"].tolist() == ["CL:0001054", ""]
    assert named["label"].tolist() == [terms["CL:0001054"].name, "a blob"]
    gated = stand_in.predict_cell_types(held_out[:3], mode="generate", threshold=1.0)
    assert (gated["label"] == "unknown").all() and (gated["unknown_reason"] == "low confidence").all()
