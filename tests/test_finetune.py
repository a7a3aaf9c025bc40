"""Fine-tuning from the CLI's functions on a real Kang subset with the real embedded model, a few steps each:
full and LoRA SFT load with load_model and predict, a resumed run continues from its checkpoint, and GRPO
runs two steps and writes its log, curves and held-out metrics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from c2s_agent.config import Settings
from c2s_agent.errors import InputError
from c2s_agent.models import load_model
from c2s_agent.models.model import embedded_model_path
from c2s_agent.training.data import condition_genes
from c2s_agent.training.finetune import DataSpec, FinetuneConfig, finetune, make_split


@pytest.fixture(scope="module")
def subset(kang):
    """300 Kang cells (seeded), both conditions and every common cell type."""
    rows = np.sort(np.random.default_rng(0).choice(kang.n_obs, 300, replace=False))
    return kang[rows].copy()


def _cfg(**kw):
    base = dict(steps=2, batch_size=8, save_steps=2, threads=1, data=DataSpec(perturbation="IFN-beta"))
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def lora_run(subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "lora"
    meta = finetune(subset, out, cfg=_cfg(method="lora", tasks=("cell_type", "perturbation"), lr=1e-3), progress=False)
    return out, meta


def test_full_sft_loads_and_predicts(subset, tmp_path):
    out = tmp_path / "full"
    meta = finetune(subset, out, cfg=_cfg(tasks=("cell_type",)), progress=False)
    card = json.loads((out / "c2s_model.json").read_text())
    assert card["training"]["steps"] == 2 and card["training"]["method"] == "full"
    test = card["split"]["test_obs_names"]
    assert len(test) == 60 and set(test) <= set(subset.obs_names)
    assert "Held-out metrics" in (out / "README.md").read_text()
    # the base's number of condition genes, recomputed on this data's training cells
    split = make_split(subset, DataSpec())
    assert card["condition_genes"] == condition_genes(subset, split.train, 50, card["genes"])
    assert "ISG15" in card["condition_genes"][:10]
    acc = meta["metrics"]["cell_type"]["accuracy"]
    assert acc > 0.5  # the embedded model starts good; a tokenisation or loss bug would break it
    m = load_model(str(out), Settings(threads=1))
    df = m.predict_cell_types(subset[subset.obs_names.isin(test)], threshold=0.0)
    assert set(df["label"]) <= set(card["labels"])
    truth = subset.obs.loc[df.index, "cell_type"].astype(str)
    assert (df["label"] == truth).mean() == pytest.approx(acc)


def test_lora_merges_into_a_plain_model_that_perturbs(lora_run, subset):
    from safetensors.numpy import load_file

    out, meta = lora_run
    assert not (out / "adapter_config.json").exists()
    new, old = load_file(out / "model.safetensors"), load_file(embedded_model_path() / "model.safetensors")
    changed = [k for k in old if k in new and not np.array_equal(new[k], old[k])]
    assert any("q_proj" in k for k in changed) and not any("embed" in k for k in changed)
    assert set(meta["metrics"]["held_out_loss"]) == {"cell_type", "perturbation"}
    m = load_model(str(out), Settings(threads=1))
    ctrl = subset[(subset.obs["condition"] == "ctrl").to_numpy()][:3]
    pred = m.perturb(ctrl, "IFN-beta", seed=0)
    assert len(pred) == 3 and all(set(s.split()) <= set(m.genes) and len(s.split()) > 10 for s in pred)


def test_resume_continues_from_the_checkpoint(lora_run, subset, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(lora_run[0], out)
    first = {h["step"]: h for h in lora_run[1]["training"]["log_history"] if "loss" in h}
    meta = finetune(
        subset,
        out,
        cfg=_cfg(method="lora", tasks=("cell_type", "perturbation"), steps=4, lr=5e-4, resume=True),
        progress=False,
    )
    log = {h["step"]: h for h in meta["training"]["log_history"] if "loss" in h}
    assert meta["training"]["steps"] == 4 and sorted(log) == [1, 2, 3, 4]
    # steps 1-2 come from the first run (its learning rate), not from a restart with the new one
    assert log[2]["learning_rate"] == first[2]["learning_rate"]
    assert (out / "checkpoints" / "checkpoint-4").exists()


def test_resume_without_checkpoint_and_bad_task_are_input_errors(subset, tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        finetune(subset, tmp_path / "none", cfg=_cfg(resume=True), progress=False)
    with pytest.raises(InputError, match="not a task"):
        finetune(subset, tmp_path / "bad", cfg=_cfg(tasks=("nonsense",)), progress=False)


def test_grpo_two_steps_writes_log_curves_and_heldout_metrics(subset, tmp_path):
    from c2s_agent.training.grpo import GRPOSettings, grpo

    out = tmp_path / "grpo"
    cfg = GRPOSettings(
        steps=2,
        num_generations=2,
        prompts_per_step=2,
        threads=1,
        n_boot=0,
        data=DataSpec(perturbation="IFN-beta", hold_out=("CD14 Mono",)),
    )
    meta = grpo(subset, out, cfg=cfg, progress=False)
    log = json.loads((out / "grpo_log.json").read_text())
    assert [h["step"] for h in log] == [1, 2]
    assert all(
        {"reward", "kl", "rewards/program_agreement/mean", "rewards/validity/mean", "rewards/distribution/mean"}
        <= set(h)
        for h in log
    )
    assert (out / "grpo_curves.png").stat().st_size > 10_000
    assert "CD14 Mono" not in meta["training"]["prompt_groups"]
    held = meta["metrics"]["held_out_perturbation"]["CD14 Mono"]
    assert -1 <= held["ifn_alpha"]["mean_cell_reward"] <= 1 and held["scfid"]["value"] > 0
    m = load_model(str(out), Settings(threads=1))
    assert m.meta["training"]["method"] == "grpo"


def test_any_hf_model_without_c2s_metadata(subset, tmp_path):
    """A plain Hugging Face causal LM (the embedded weights without c2s_model.json or reverse transform):
    labels are written as text in the English prompt set, the reverse transform is fitted on the training cells,
    and the genes of the training sentences become the vocabulary generation is constrained to."""
    base = tmp_path / "plain"
    base.mkdir()
    for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_model_path() / f, base / f)
    out = tmp_path / "from_plain"
    meta = finetune(subset, out, base=base, cfg=_cfg(tasks=("generation",)), progress=False)
    assert meta["single_token_labels"] is False and meta["prompt_set"] == "c2s-scale" and len(meta["genes"]) > 100
    assert (out / "reverse_transform.json").exists() and meta["metrics"]["held_out_loss"]["generation"] > 0
    m = load_model(str(out), Settings(threads=1))
    words = m.generate(["B"], ["ctrl"], n_genes=5, seed=0)[0].split()
    assert 1 <= len(words) <= 5 and set(words) <= set(meta["genes"])


def test_cli_trains_lora_and_grpo_on_an_h5ad(subset, tmp_path):
    """`c2s train --data FILE` for LoRA SFT and for GRPO, as a user runs it."""
    from typer.testing import CliRunner

    from c2s_agent.cli import app

    path = tmp_path / "cells.h5ad"
    subset.write_h5ad(path)
    runner = CliRunner()
    common = ["train", "--data", str(path), "--threads", "1", "--steps", "2", "--batch-size", "2"]
    out = runner.invoke(app, [*common, "--method", "lora", "--task", "cell_type", "--out", str(tmp_path / "lora")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "lora" / "c2s_model.json").read_text())["training"]["method"] == "lora"
    out = runner.invoke(
        app,
        [
            *common,
            "--method",
            "grpo",
            "--num-generations",
            "2",
            "--hold-out",
            "CD14 Mono",
            "--out",
            str(tmp_path / "grpo"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "grpo" / "grpo_curves.png").exists()
    out = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(path),
            "--method",
            "grpo",
            "--reward",
            "no_such_reward",
            "--out",
            str(tmp_path / "bad"),
        ],
    )
    assert isinstance(out.exception, InputError) and "no_such_reward" in str(out.exception)
