"""GRPO of a C2S model with registered rewards (``c2s train --method grpo``), on TRL's GRPOTrainer.

Prompts are the training split's control cells in the ``perturbation`` task (the model writes the perturbed
cell; rewards compare it with the observed perturbed cells of the same cell type in the training split) or
all training cells in the ``cell_type`` task. Cell types in ``hold_out`` never enter training (neither their
prompts nor their observed response); they are where the held-out evaluation looks, else the test split's
cell types. Sampling is limited to the model's genes (and the end of the sentence) when the model lists
them, as at inference. The reward curve, per-reward means and KL to the starting model are written to
``grpo_log.json`` and plotted in ``grpo_curves.png``; held-out metrics go into the model card.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..conventions.slots import CELL_TYPE
from ..errors import InputError
from . import finetune as F
from .rewards import RewardData, make_rewards, program_agreement, validity

GRPO_TASKS = ("perturbation", CELL_TYPE)


@dataclass
class GRPOSettings:
    rewards: tuple[str, ...] = ("program_agreement", "validity", "distribution")
    reward_options: dict = field(default_factory=lambda: {"program": "ifn_alpha"})
    task: str = "perturbation"
    steps: int = 100
    num_generations: int = 4
    prompts_per_step: int = 4
    lr: float = 5e-5
    beta: float = 0.1  # KL coefficient to the starting model
    temperature: float = 1.0
    save_steps: int = 50
    threads: int = 2
    resume: bool = False
    eval_seed: int = 0
    n_boot: int = 100
    data: F.DataSpec = field(default_factory=F.DataSpec)


def load_reverse(base: Path, adata, rows, meta: dict, seed: int):
    """The base model's reverse transform, or one fitted on the training cells."""
    from ..sentences import ReverseTransform, to_sentences

    if (base / "reverse_transform.json").exists():
        return ReverseTransform.load(base / "reverse_transform.json")
    return ReverseTransform.fit(
        to_sentences(adata[rows], top_k=None, tie_break=meta.get("tie_break", "mean")), seed=seed
    )


def prompts_dataset(adata, model, spec: F.DataSpec, task: str, rows, groups) -> list[dict]:
    """One row per prompt: ``prompt``, ``group`` (cell type), ``control`` (the prompt's sentence), ``label``."""
    sub = adata[np.asarray(rows)]
    lab = sub.obs[spec.label_key].astype(str).to_numpy()
    k = int(model.top_k[task])
    texts, _, _ = model.sentences(sub, k, model.condition_genes if task == CELL_TYPE else frozenset())
    ps = model.prompts
    out = []
    if task == "perturbation":
        cond = sub.obs[spec.condition_key].astype(str).to_numpy()
        perturbed = sorted(set(cond) - {spec.control})
        if len(perturbed) != 1 and spec.perturbation is None:
            raise InputError(
                "--perturbation",
                f"is needed: the data has perturbed conditions {perturbed}",
                "name the perturbation the model should write",
            )
        name = F.perturbation_name(spec, perturbed[0])
        for i in np.flatnonzero((cond == spec.control) & np.isin(lab, list(groups))):
            out.append(
                {
                    "prompt": ps.format(
                        "perturbation", cell=texts[i], perturbation=name, num_genes=len(texts[i].split())
                    ),
                    "group": lab[i],
                    "control": texts[i],
                    "label": "",
                }
            )
    else:
        for i in range(len(lab)):
            out.append(
                {
                    "prompt": ps.format(CELL_TYPE, cell=texts[i], num_genes=len(texts[i].split())),
                    "group": lab[i],
                    "control": texts[i],
                    "label": model._token(lab[i]),
                }
            )
    if not out:
        raise InputError("data", f"gives no {task} prompts in the training split", "check --control and --hold-out")
    return out


def _suppressed(tok, allowed: list[str]) -> list[int]:
    """Token ids outside ``allowed`` (plus end of text): sampling never emits them."""
    keep = set(tok.convert_tokens_to_ids(allowed)) | {tok.eos_token_id}
    keep.discard(tok.unk_token_id)
    return [i for i in range(len(tok)) if i not in keep]


def grpo(
    data, out: str | Path, base: str | Path | None = None, cfg: GRPOSettings | None = None, progress: bool = True
) -> dict:
    """Run GRPO from ``base`` (default: the embedded model) on ``data`` and save to ``out``; returns the
    metadata written to ``c2s_model.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import datasets
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise InputError(
            "--method grpo", "needs TRL, which is not installed", "pip install 'c2s-agent[train]' (trl==1.16.0)"
        ) from None

    cfg = cfg or GRPOSettings()
    spec = cfg.data
    if cfg.task not in GRPO_TASKS:
        raise InputError("--task", f"{cfg.task!r} is not a GRPO task", f"use one of {list(GRPO_TASKS)}")
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    run = F.prepare_run(data, out, base, spec, [cfg.task])
    adata, out, base, base_m, m, split = run.adata, run.out, run.base, run.base_meta, run.model, run.split
    lab = adata.obs[spec.label_key].astype(str).to_numpy()
    train_rows = split.train[~np.isin(lab[split.train], list(spec.hold_out))]
    reverse = load_reverse(base, adata, train_rows, m.meta, spec.seed)
    rdata = None
    if cfg.task == "perturbation":
        rdata = RewardData.from_cells(adata, m, train_rows, spec.label_key, spec.condition_key, spec.control, reverse)
    groups = sorted(rdata.control) if rdata else sorted(set(lab[train_rows]))
    rows = prompts_dataset(adata, m, spec, cfg.task, train_rows, groups)
    reward_funcs = make_rewards(cfg.rewards, rdata, cfg.reward_options)

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    gen_kwargs = {}
    if m.genes:
        allowed = list(m.genes) + ["."] if cfg.task == "perturbation" else [m._token(x) for x in m.known_labels]
        gen_kwargs["suppress_tokens"] = _suppressed(tok, allowed)
    k = int(m.top_k[cfg.task])
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        beta=cfg.beta,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        num_generations=cfg.num_generations,
        max_completion_length=k + 2 if cfg.task == "perturbation" else 3,
        temperature=cfg.temperature,
        top_k=50,
        top_p=0.95,
        use_vllm=False,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        seed=spec.seed,
        data_seed=spec.seed,
        dataloader_num_workers=0,
        generation_kwargs=gen_kwargs or None,
        disable_tqdm=not progress,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
    )
    if cfg.resume and not list((out / "checkpoints").glob("checkpoint-*")):
        raise InputError(out, "holds no checkpoint to resume from", "train without --resume first")
    trainer.train(resume_from_checkpoint=True if cfg.resume else None)
    history = [h for h in trainer.state.log_history if "reward" in h]
    meta = F.output_meta(base_m, adata, spec, split, [cfg.task], out.name)
    meta["training"] = {
        "method": "grpo",
        "base": str(base),
        "data": str(data) if isinstance(data, (str, Path)) else "AnnData",
        "config": asdict(cfg),
        "steps": int(trainer.state.global_step),
        "n_prompts": len(rows),
        "prompt_groups": groups,
        "trainer": "trl.GRPOTrainer",
        "minutes_training": round((time.time() - t0) / 60, 2),
    }
    F.save_model(trainer.model, tok, out, meta, base)
    (out / "grpo_log.json").write_text(json.dumps(history, indent=1))
    plot_curves(history, out / "grpo_curves.png", [f.__name__ for f in reward_funcs])
    if cfg.task == "perturbation":
        from ..config import Settings
        from ..models.model import C2SModel
        from ..models.transformers_backend import TransformersBackend

        trained = C2SModel(TransformersBackend(out, Settings(threads=cfg.threads)))
        eval_groups = list(spec.hold_out) or sorted(set(lab[split.test]))
        meta["metrics"] = {
            "held_out_perturbation": heldout_perturbation(
                trained,
                adata,
                spec,
                eval_groups,
                split.test if not spec.hold_out else None,
                reverse,
                programs=[cfg.reward_options.get("program", "ifn_alpha")],
                seed=cfg.eval_seed,
                n_boot=cfg.n_boot,
            )
        }
    meta["training"]["minutes"] = round((time.time() - t0) / 60, 2)
    (out / "c2s_model.json").write_text(json.dumps(meta, indent=1, default=str))
    (out / "README.md").write_text(F.model_card(meta))
    return meta


def plot_curves(history: list[dict], path: Path, reward_names: list[str]) -> Path:
    """Reward (total and per reward) and KL per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h.get("step", i + 1) for i, h in enumerate(history)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, [h.get("reward") for h in history], label="total", color="black")
    for n in reward_names:
        key = f"rewards/{n}/mean"
        if any(key in h for h in history):
            a.plot(steps, [h.get(key) for h in history], label=n, alpha=0.8)
    a.set(xlabel="step", ylabel="mean reward", title="reward")
    a.legend(fontsize=8)
    b.plot(steps, [h.get("kl") for h in history], color="tab:red")
    b.set(xlabel="step", ylabel="KL to the starting model", title="KL")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heldout_perturbation(
    model,
    adata,
    spec: F.DataSpec,
    groups,
    rows=None,
    reverse=None,
    programs=("ifn_alpha",),
    seed: int = 0,
    n_boot: int = 100,
    encoder=None,
) -> dict:
    """Per cell type in ``groups`` (cells at ``rows``, default all): the model's predicted perturbed cells
    from the control cells against the observed perturbed cells, with the metrics of
    ``evals/perturbation``: fold-change agreement (Pearson, Kendall) on each program and the top-100 DE genes,
    in expression and in sentence space, scFID and MMD in the reference PCA space (fitted on all of
    ``adata``), plus the mean per-cell program reward and validity."""
    from ..data import prepare
    from ..metrics import evaluate_generation, get_encoder, lfc_agreement, mean_expression
    from ..screen import get_program

    data = prepare(adata)
    data.var_names = data.var_names.astype(str).str.upper()
    if encoder is None:
        encoder = get_encoder("pca").fit(data)
    lab = data.obs[spec.label_key].astype(str).to_numpy()
    cond = data.obs[spec.condition_key].astype(str).to_numpy()
    use = np.zeros(data.n_obs, bool)
    use[np.arange(data.n_obs) if rows is None else rows] = True
    k = int(model.top_k["perturbation"])
    genes = model.genes
    out = {}
    for g in groups:
        c_rows, p_rows = (
            np.flatnonzero(use & (lab == g) & (cond == spec.control)),
            np.flatnonzero(use & (lab == g) & (cond != spec.control)),
        )
        if len(c_rows) < 3 or len(p_rows) < 3:
            continue
        ctrl, stim = data[c_rows], data[p_rows]
        perturbed = sorted(set(cond[p_rows]))
        ctrl_texts, _, _ = model.sentences(ctrl, k)
        stim_texts, _, _ = model.sentences(stim, k)
        pred = model.perturb(ctrl_texts, F.perturbation_name(spec, perturbed[0]), seed=seed)
        vocab = genes or sorted({w for t in ctrl_texts + stim_texts + pred for w in t.split()})
        rec = {
            n: mean_expression(reverse.reconstruct(t, genes=vocab))
            for n, t in (("pred", pred), ("ctrl", ctrl_texts), ("stim", stim_texts))
        }
        ctrl_mean, stim_mean = mean_expression(ctrl), mean_expression(stim)
        pred_mean = ctrl_mean.add((rec["pred"] - rec["ctrl"]).reindex(ctrl_mean.index).fillna(0))
        top_de = lfc_agreement(stim_mean, stim_mean, ctrl_mean, top_n=100).table.index.tolist()
        row: dict = {"n_control": int(len(c_rows)), "n_observed": int(len(p_rows))}
        rdata = RewardData(
            list(vocab), reverse, k, {g: _vector(rec["ctrl"], vocab)}, {g: _vector(rec["stim"], vocab)}, {g: stim_texts}
        )
        for name in ["top_100_de", *programs]:
            gs = top_de if name == "top_100_de" else list(get_program(name).genes)
            a = lfc_agreement(pred_mean, stim_mean, ctrl_mean, genes=gs)
            s = lfc_agreement(rec["pred"], rec["stim"], rec["ctrl"], genes=gs)
            row[name] = {
                "pearson": a.pearson,
                "kendall": a.kendall,
                "n_genes": a.n_genes,
                "sentence_space_pearson": s.pearson,
                "sentence_space_kendall": s.kendall,
                "sentence_space_n_genes": s.n_genes,
            }
            if name != "top_100_de":
                r = program_agreement(rdata, program=name)(None, pred, group=[g] * len(pred), control=ctrl_texts)
                row[name]["mean_cell_reward"] = float(np.mean(r))
        row["validity"] = float(np.mean(validity(rdata)(None, pred, control=ctrl_texts)))
        ev = evaluate_generation(stim_texts, pred, encoder=encoder, metrics=["scfid", "mmd"], n_boot=n_boot, seed=seed)
        for name, v in ev.metrics.items():
            row[name] = {"value": v.value, "interval": [v.low, v.high]}
        out[g] = row
    return out


def _vector(mean, vocab) -> np.ndarray:
    """A mean-expression Series as a vector over ``vocab``."""
    return mean.reindex([str(v).upper() for v in vocab]).fillna(0).to_numpy()
