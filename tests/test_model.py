"""The embedded C2S model on real held-out Kang cells: prediction, unknown cells, generation, perturbation,
embeddings, the scanpy-style functions and the model tools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from c2s_agent.errors import InputError
from c2s_agent.models.backend import GenParams
from c2s_agent.models.model import C2SModel


@pytest.fixture(scope="module")
def model():
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(None, Settings(threads=1))


@pytest.fixture(scope="module")
def held_out(kang, model):
    """120 of the held-out test cells (never trained on): every third one of the stratified test split."""
    test = np.asarray(model.meta["split"]["test_obs_names"])
    assert len(test) == 400 and kang.obs_names.isin(test).sum() == 400
    return kang[kang.obs_names.isin(test[::3][:120])].copy()


@pytest.fixture(scope="module")
def scored(model, held_out):
    return model.predict_cell_types(held_out, threshold=0.0)


def test_metadata_describes_the_model(model):
    assert len(model.known_labels) == 13 and "CD14 Mono" in model.known_labels
    assert model.known_conditions == ["ctrl", "stim"]
    assert model.known_perturbations == ["IFN-beta"]
    assert len(model.genes) == model.meta["n_genes"] > 1000
    assert model.meta["split"]["held_out_perturbed"]["cell_type"] == "CD14 Mono"


def test_held_out_accuracy_is_well_above_chance(model, held_out, scored):
    truth = held_out.obs["cell_type"].astype(str).to_numpy()
    acc = (scored["label"].to_numpy() == truth).mean()
    majority = pd.Series(truth).value_counts(normalize=True).iloc[0]
    assert acc > majority + 0.3, (acc, majority)
    # the committed card reports the same kind of figure on all 400 held-out cells
    assert abs(model.meta["metrics"]["cell_type"]["accuracy"] - acc) < 0.1


def test_condition_genes_are_computed_from_training_cells_and_left_out_of_type_prompts(model, kang):
    from c2s_agent.training import data as D

    split = D.make_split(kang, model.meta["split"]["seed"])
    genes = D.condition_genes(kang, split.train, len(model.condition_genes), model.genes)
    assert genes == model.meta["condition_genes"] and {"ISG15", "IFI6", "MX1"} <= set(genes[:10])
    stim = kang[split.held_out_perturbed[:40]]  # stimulated CD14 Mono of the training 80%, never trained on
    prompts, _, _ = model.cell_type_prompts(stim)
    assert not {w for p in prompts for w in p.split()} & model.condition_genes
    known = set(model.genes)
    assert all(sum(w in known for w in p.split()) == model.top_k["cell_type"] for p in prompts)
    # their interferon response alone made the model call them other myeloid types; without it they are monocytes
    left_out = (model.predict_cell_types(stim, threshold=0.0)["label"] == "CD14 Mono").mean()
    kept = C2SModel(model.backend)
    kept.condition_genes = frozenset()
    with_them = (kept.predict_cell_types(stim, threshold=0.0)["label"] == "CD14 Mono").mean()
    assert left_out >= 0.8 and with_them <= 0.4, (left_out, with_them)


def test_bfloat16_labels_agree_with_float32(held_out, scored):
    """The README's C2S_DTYPE=bfloat16: the same labels for nearly every held-out cell."""
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    fast = load_model(None, Settings(threads=1, dtype="bfloat16"))
    assert fast.backend.model.dtype == torch.bfloat16
    df = fast.predict_cell_types(held_out, threshold=0.0)
    assert (df["label"] == scored["label"]).mean() >= 0.95
    assert np.abs(df["confidence"] - scored["confidence"]).median() < 0.05


def test_sentences_do_not_depend_on_the_other_cells_converted(model, held_out):
    alone, _, _ = model.sentences(held_out[:5], 128)
    together, _, _ = model.sentences(held_out, 128)
    assert alone == together[:5]


def test_scores_are_probabilities_over_valid_labels(model, scored):
    probs = scored[[f"p_{x}" for x in model.known_labels]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert set(scored["label"]) <= set(model.known_labels) | {"unknown"}
    np.testing.assert_allclose(scored["confidence"], probs.max(1))


def test_threshold_turns_low_confidence_into_unknown(model, held_out, scored):
    df = model.predict_cell_types(held_out[:24], threshold=0.9)
    low = scored["confidence"].to_numpy()[:24] < 0.9
    assert (df["label"].to_numpy()[low] == "unknown").all()
    assert (df["unknown_reason"].to_numpy()[low] == "low confidence").all()


def test_generate_mode_gives_only_known_labels_and_agrees_with_scoring(model, held_out, scored):
    df = model.predict_cell_types(held_out[:30], mode="generate", threshold=0.0)
    assert set(df["label"]) <= set(model.known_labels) | {"unknown"}
    agree = (df["label"].to_numpy() == scored["label"].to_numpy()[:30]).mean()
    assert agree >= 0.85


def test_candidate_label_subset(model, held_out):
    df = model.predict_cell_types(held_out[:30], labels=["B", "NK"], threshold=0.0)
    assert set(df["label"]) <= {"B", "NK", "unknown"} and (df["label"] != "unknown").mean() > 0.9
    assert list(c for c in df.columns if c.startswith("p_")) == ["p_B", "p_NK"]
    with pytest.raises(InputError, match=r"labels: \['Neuron'\] are not labels this model was trained on"):
        model.predict_cell_types(held_out[:2], labels=["B", "Neuron"])
    with pytest.raises(InputError, match="mode: 'vote' is not a prediction mode"):
        model.predict_cell_types(held_out[:2], mode="vote")


def test_cells_unlike_the_training_data_come_out_unknown(model, held_out, scored):
    rng = np.random.default_rng(1)
    shuffled = held_out[:30].copy()
    shuffled.var_names = np.asarray(shuffled.var_names)[rng.permutation(shuffled.n_vars)]
    df = model.predict_cell_types(shuffled)
    assert (df["label"] == "unknown").mean() >= 0.9
    mouse = held_out[:20].copy()  # mouse-style names of genes the model has never seen
    mouse.var_names = [f"Gm{10000 + i}" for i in range(mouse.n_vars)]
    df = model.predict_cell_types(mouse)
    assert (df["label"] == "unknown").all() and (df["unknown_reason"] == "few known genes").all()
    # real held-out cells mostly pass the gate
    assert (scored["unknown_reason"] == "atypical cell").mean() < 0.1


def test_generated_cells_are_valid_sentences(model):
    sents = model.generate(["CD14 Mono"] * 4 + ["B"] * 4, ["stim"] * 4 + ["ctrl"] * 4, n_genes=60, seed=3)
    genes = set(model.genes)
    for s in sents:
        words = s.split()
        assert 20 <= len(words) <= 60
        assert len(set(words)) == len(words)
        assert set(words) <= genes
    assert model.generate(["B"], ["ctrl"], seed=3) == model.generate(["B"], ["ctrl"], seed=3)
    with pytest.raises(InputError, match=r"cell type: \['Neuron'\] not known to this model"):
        model.generate(["Neuron"])
    with pytest.raises(InputError, match="conditions: has 2 entries for 1 cell types"):
        model.generate(["B"], ["ctrl", "stim"])


def test_generated_cells_resemble_their_conditioned_type(model, kang):
    """Generated CD14 Mono and B cells each score closer to real cells of their own type (per-gene frequency
    in real training cells' sentences) than to the other type; monocytes generated under stimulation carry an
    interferon signature (>= 3 interferon-stimulated genes) far more often than control ones."""
    train = kang[~kang.obs_names.isin(model.meta["split"]["test_obs_names"])]
    real, _, _ = model.sentences(train, model.top_k["generation"])
    types = train.obs["cell_type"].astype(str).to_numpy()

    def profile(t):
        sets = [set(s.split()) for s, x in zip(real, types) if x == t]
        return {g: np.mean([g in st for st in sets]) for g in model.genes}

    prof = {t: profile(t) for t in ("CD14 Mono", "B")}
    score = lambda s, t: np.mean([prof[t][g] for g in s.split()])  # noqa: E731
    mono = model.generate(["CD14 Mono"] * 8, ["stim"] * 8, seed=0)
    b = model.generate(["B"] * 8, ["ctrl"] * 8, seed=0)
    assert np.mean([score(s, "CD14 Mono") > score(s, "B") for s in mono]) >= 0.75
    assert np.mean([score(s, "B") > score(s, "CD14 Mono") for s in b]) >= 0.75
    isg = {
        "ISG15",
        "IFIT1",
        "IFIT2",
        "IFIT3",
        "IFITM3",
        "ISG20",
        "CXCL10",
        "MX1",
        "IFI6",
        "LY6E",
        "RSAD2",
        "OAS1",
        "IFI44L",
        "TNFSF10",
    }
    stim = model.generate(["CD14 Mono"] * 32, ["stim"] * 32, seed=0)
    ctrl = model.generate(["CD14 Mono"] * 32, ["ctrl"] * 32, seed=0)
    signature = lambda ss: np.mean([len(isg & set(s.split())) >= 3 for s in ss])  # noqa: E731
    assert signature(stim) >= 0.25 and signature(stim) >= 2 * signature(ctrl)


def test_guidance_pulls_generated_cells_towards_their_type(model, kang):
    """Classifier-free guidance (the prompt without its cell type as the unconditional twin): a classifier of
    real training cells' top-gene sets recognises the requested type far more often than without guidance."""
    from c2s_agent.training.evaluate import _indicator
    from c2s_agent.training.evaluate import judge as fit_judge

    train = kang[~kang.obs_names.isin(model.meta["split"]["test_obs_names"])]
    train = train[~((train.obs["cell_type"] == "CD14 Mono") & (train.obs["condition"] == "stim"))]
    real, _, _ = model.sentences(train, model.top_k["generation"])
    judge = fit_judge(real, model.genes, train.obs["cell_type"].astype(str))
    types = [t for t in model.known_labels for _ in range(8)]
    conds = ["ctrl", "stim"] * (len(types) // 2)
    fidelity = {
        w: np.mean(
            judge.predict(_indicator(model.generate(types, conds, seed=0, guidance=w), model.genes))
            == np.asarray(types)
        )
        for w in (0.0, model.meta["generation_guidance"])
    }
    assert fidelity[model.meta["generation_guidance"]] >= max(0.7, fidelity[0.0] + 0.1), fidelity
    assert model.generate(types[:3], "ctrl", seed=0) == model.generate(
        types[:3], "ctrl", seed=0, guidance=model.meta["generation_guidance"]
    )
    params = GenParams(guidance=2.0, unconditional=("one",))
    with pytest.raises(InputError, match="unconditional: needs one prompt per prompt when guidance > 0"):
        model.backend.complete(["a", "b"], params)


def test_generate_cells_returns_anndata_with_reconstructed_expression(model):
    from c2s_agent.models import tl

    gen = tl.generate_cells("NK", 6, condition="ctrl", model=model, seed=1)
    assert gen.n_obs == 6 and gen.n_vars == len(model.genes)
    assert (gen.obs["c2s_cell_type"] == "NK").all() and (gen.obs["c2s_condition"] == "ctrl").all()
    assert (gen.obs["c2s_n_unknown"] == 0).all() and (gen.obs["c2s_n_duplicated"] == 0).all()
    x = gen.X.toarray()
    assert (x >= 0).all() and ((x > 0).sum(1) == gen.obs["c2s_n_genes"].to_numpy()).all()


def test_invalid_and_duplicated_genes_are_counted_not_fatal(model):
    from c2s_agent.models import tl

    out = tl.from_sentences(model, ["CD74 NOTAGENE CD74 LYZ .", "", "hello world"], {"source": ["a", "b", "c"]})
    assert out.obs["c2s_n_unknown"].tolist() == [1, 0, 2]
    assert out.obs["c2s_n_duplicated"].tolist() == [1, 0, 0]
    assert out.obs["c2s_n_genes"].tolist() == [2, 0, 0]


def test_perturbation_induces_interferon_genes(model, kang):
    ctrl = kang[(kang.obs["condition"] == "ctrl") & (kang.obs["cell_type"] == "CD4 Naive T")][:12].copy()
    pert = model.perturb(ctrl, "IFN-beta", seed=0)
    before, _, _ = model.sentences(ctrl, model.top_k["perturbation"])
    isgs = {"ISG15", "IFI6", "IFIT3", "IFIT1", "MX1", "ISG20", "IFITM3", "LY6E"}
    count = lambda sents: np.mean([len(isgs & set(s.split())) for s in sents])  # noqa: E731
    assert count(pert) > count(before) + 1.0, (count(pert), count(before))
    assert all(set(s.split()) <= set(model.genes) for s in pert)
    with pytest.raises(InputError, match=r"perturbation: \['LPS'\] not known to this model"):
        model.perturb(ctrl[:2], "LPS")
    with pytest.raises(InputError, match="context: this model was not trained with perturbation contexts"):
        model.perturb(ctrl[:2], "IFN-beta", context="primary tissue")


def test_embeddings_ignore_padding(model, held_out):
    texts, _, _ = model.sentences(held_out[:6], 128)
    texts[0] = " ".join(texts[0].split()[:10])  # a short cell batched with long ones gets left padding
    together = model.embed(texts)
    alone = model.embed([texts[0]])
    assert together.shape == (6, model.backend.model.config.hidden_size)
    np.testing.assert_allclose(together[0], alone[0], atol=2e-4)


def test_embeddings_separate_cell_types(model, held_out):
    from sklearn.metrics import silhouette_score

    X = model.embed(held_out)
    labels = held_out.obs["cell_type"].astype(str).to_numpy()
    shuffled = np.random.default_rng(0).permutation(labels)
    assert silhouette_score(X, labels, metric="cosine") > silhouette_score(X, shuffled, metric="cosine") + 0.05


def test_scanpy_style_functions_write_conventional_slots(model, held_out):
    import c2s_agent as c2s

    ad = held_out[:30].copy()
    c2s.annotate(ad, model)
    assert ad.obs["c2s_cell_type"].dtype.name == "category"
    assert ad.obs["c2s_confidence"].between(0, 1).all()
    assert list(ad.obsm["c2s_label_probs"].columns) == model.known_labels
    c2s.embed(ad, model)
    assert ad.obsm["X_c2s"].shape == (30, model.backend.model.config.hidden_size)
    out = c2s.perturb(ad[:3].copy(), "IFN-beta", model=model)
    assert out.n_obs == 3 and out.obs["c2s_source_cell"].tolist() == ad.obs_names[:3].tolist()


def test_tools_run_and_record_model_calls(model, held_out, tmp_path, settings):
    from c2s_agent import registry
    from c2s_agent.data import prepare
    from c2s_agent.tools import ToolContext

    tools = registry.tools(settings)
    assert {"annotate_cells", "embed_cells", "generate_cells", "predict_perturbation"} <= set(tools)
    calls = []
    ctx = ToolContext(
        prepare(held_out[:30]),
        tmp_path,
        settings.model_copy(update={"threads": 1}),
        record_call=lambda kind, **f: calls.append((kind, f)),
    )
    res = tools["annotate_cells"].invoke(ctx, {})
    assert res.output.n_cells == 30 and res.output.accuracy is not None and res.output.accuracy > 0.5
    assert "c2s_cell_type" in ctx.adata.obs and any(a.kind == "plot" for a in res.artefacts)
    res = tools["embed_cells"].invoke(ctx, {})
    assert ctx.adata.obsm["X_c2s"].shape[0] == 30 and (tmp_path / res.artefacts[-1].path).exists()
    res = tools["predict_perturbation"].invoke(ctx, {"cell_type": "CD14 Mono", "max_cells": 6})
    assert res.output.n_cells >= 1 and res.output.up
    assert [f["task"] for _, f in calls] == ["predict_cell_types", "embed", "perturb"]
    assert all(f["prompt_tokens"] > 0 for _, f in calls)
    with pytest.raises(InputError, match="compare_with 'nope': is not an obs column"):
        tools["annotate_cells"].invoke(ctx, {"compare_with": "nope"})


def test_bad_model_values_name_the_problem(tmp_path):
    from c2s_agent.models import load_model
    from c2s_agent.models.prompts import get

    with pytest.raises(InputError, match="is not a model directory or an http"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(InputError, match=r"is not a Hugging Face model directory \(no config.json\)"):
        load_model(str(tmp_path))
    import importlib.util

    if importlib.util.find_spec("cell2sentence") is None:
        with pytest.raises(InputError, match="needs the cell2sentence package, which is not installed"):
            get("cell2sentence")


def test_multicell_prompt_injects_interaction_knowledge(model, held_out):
    texts, _, _ = model.sentences(held_out[:3], 20)
    prompt = model.multicell_prompt(held_out[:3], [0, 2], interactions=["CCL5 -> CCR5", "CD74 -> MIF"], top_k=20)
    lines = prompt.splitlines()
    assert lines[0] == "Known interactions: CCL5 -> CCR5; CD74 -> MIF ."
    assert lines[2] == f"Cell 1: {texts[0]} ." and lines[3] == f"Cell 2: {texts[2]} ."
    assert "Known interactions" not in model.multicell_prompt(held_out[:3], [0, 1])
