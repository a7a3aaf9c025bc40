"""Supervised fine-tuning of any local Hugging Face causal LM on a user's AnnData (``c2s train --data``).

Cells become the prompts and responses of the embedded prompt set (``prompts/models/embedded.toml``) for the
chosen tasks: ``cell_type`` (top-k sentence -> label), ``generation`` (condition and cell type -> sentence)
and ``perturbation`` (a control cell of a type -> a perturbed cell of the same type). The loss is the
language-model loss on the response only. Training runs on transformers' ``Trainer`` (full or LoRA through
peft; LoRA adapters are merged on save, so the output is a plain model directory), checkpoints into
``OUT/checkpoints`` and resumes from the latest one. The split is seeded (stratified by cell type when every
type has two cells); cell types in ``hold_out`` lose their perturbed cells from training. Held-out metrics
(cell-type accuracy, per-task loss) go into ``c2s_model.json`` and ``README.md``, which ``load_model`` reads.
A base whose cell-type prompts leave out condition genes (the embedded model) gets as many, recomputed from the
training cells of this data (none without control and perturbed cells of a type).

A base model's own tokenizer decides how sentences tokenise: for the embedded model every gene is a word
token, and genes outside its vocabulary are unknown tokens (its sentences keep only its known genes).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..conventions.slots import CELL_TYPE, CONDITION
from ..errors import InputError
from .data import Example, condition_genes

TASKS = (CELL_TYPE, "generation", "perturbation")
METHODS = ("full", "lora")
DEFAULT_TOP_K = {CELL_TYPE: 64, "generation": 64, "perturbation": 64}
MAX_EVAL_EXAMPLES = 100


@dataclass
class DataSpec:
    """Which obs columns hold what, and how cells are split."""

    label_key: str = CELL_TYPE
    condition_key: str = CONDITION
    control: str = "ctrl"
    perturbation: str | None = None  # name of the perturbation in prompts (default: the perturbed condition)
    hold_out: tuple[str, ...] = ()  # cell types whose perturbed cells are never trained on
    test_fraction: float = 0.2
    seed: int = 0


@dataclass
class FinetuneConfig:
    tasks: tuple[str, ...] = (CELL_TYPE,)
    method: str = "full"
    steps: int = 200
    batch_size: int = 16
    lr: float = 2e-4
    warmup_steps: int = 10
    lora_r: int = 8
    save_steps: int = 50
    threads: int = 2
    resume: bool = False
    top_k: int | None = None  # genes per sentence in every task (default: the base's, else DEFAULT_TOP_K)
    max_minutes: float | None = None  # stop (and save) at this wall time
    data: DataSpec = field(default_factory=DataSpec)


@dataclass
class Split:
    train: np.ndarray
    test: np.ndarray
    stratified: bool


def base_meta(base: str | Path) -> dict:
    """The base model's ``c2s_model.json`` ({} for other Hugging Face models)."""
    path = Path(base)
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise InputError(
            base,
            "is not a Hugging Face model directory (no config.json)",
            "give a folder written by save_pretrained, or omit --base for the embedded model",
        )
    meta = path / "c2s_model.json"
    return json.loads(meta.read_text()) if meta.exists() else {}


def meta_model(meta: dict):
    """A C2SModel over metadata only: the model's sentences, prompts and label tokens, no weights. A base that
    is not a C2S model (a plain language model) reads English: the c2s-scale prompt set."""
    from ..models.model import C2SModel

    meta = {"prompt_set": "c2s-scale", "single_token_labels": False, "top_k": DEFAULT_TOP_K, **meta}
    return C2SModel(SimpleNamespace(metadata=meta, model_id=meta.get("name", "model")))


def check_columns(adata, spec: DataSpec, tasks) -> None:
    need = [spec.label_key] + ([spec.condition_key] if {"generation", "perturbation"} & set(tasks) else [])
    missing = [k for k in need if k not in adata.obs]
    if missing:
        raise InputError(
            "data",
            f"has no obs column {missing}",
            f"name the columns with --label-key / --condition-key (obs has {list(adata.obs.columns)[:12]})",
        )
    if "perturbation" in tasks and spec.control not in set(adata.obs[spec.condition_key].astype(str)):
        raise InputError(
            "--control",
            f"{spec.control!r} is not a value of obs[{spec.condition_key!r}]",
            f"use one of {sorted(set(adata.obs[spec.condition_key].astype(str)))}",
        )


def make_split(adata, spec: DataSpec) -> Split:
    """Seeded train/test split, stratified by cell type when every type has at least two cells; perturbed
    cells of ``hold_out`` types are removed from training."""
    from sklearn.model_selection import train_test_split

    lab = adata.obs[spec.label_key].astype(str).to_numpy()
    _, counts = np.unique(lab, return_counts=True)
    strat = bool(counts.min() >= 2)
    train, test = train_test_split(
        np.arange(adata.n_obs), test_size=spec.test_fraction, random_state=spec.seed, stratify=lab if strat else None
    )
    if spec.hold_out:
        cond = adata.obs[spec.condition_key].astype(str).to_numpy()
        out = np.isin(lab, list(spec.hold_out)) & (cond != spec.control)
        train = train[~out[train]]
    return Split(np.sort(train), np.sort(test), strat)


def perturbation_name(spec: DataSpec, condition: str) -> str:
    return spec.perturbation or condition


def build_examples(adata, model, spec: DataSpec, tasks, rows, seed: int = 0) -> list[Example]:
    """Prompt/response pairs of ``tasks`` for the cells at ``rows`` (perturbation pairs stay within ``rows``)."""
    ps = model.prompts
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows)
    sub = adata[rows]
    lab = sub.obs[spec.label_key].astype(str).to_numpy()
    cond = sub.obs[spec.condition_key].astype(str).to_numpy() if spec.condition_key in sub.obs else None
    texts = {t: model.sentences(sub, int(model.top_k[t]))[0] for t in tasks if t != CELL_TYPE}
    type_prompts = model.cell_type_prompts(sub)[0] if CELL_TYPE in tasks else []
    out: list[Example] = []
    for i in range(len(rows)):
        if CELL_TYPE in tasks:
            out.append(Example(CELL_TYPE, type_prompts[i], ps.response(CELL_TYPE, label=model._token(lab[i])), lab[i]))
        if "generation" in tasks:
            out.append(
                Example(
                    "generation",
                    ps.format(
                        "generation",
                        condition=cond[i],
                        cell_type=model._token(lab[i]),
                        label=model._token(lab[i]),
                        num_genes=model.top_k["generation"],
                    ),
                    ps.response("generation", cell=texts["generation"][i]),
                )
            )
    if "perturbation" in tasks:
        for i in np.flatnonzero(cond != spec.control):
            controls = np.flatnonzero((lab == lab[i]) & (cond == spec.control))
            if len(controls):
                j = int(rng.choice(controls))
                ctrl = texts["perturbation"][j]
                out.append(
                    Example(
                        "perturbation",
                        ps.format(
                            "perturbation",
                            cell=ctrl,
                            perturbation=perturbation_name(spec, cond[i]),
                            num_genes=len(ctrl.split()),
                        ),
                        ps.response("perturbation", cell=texts["perturbation"][i]),
                    )
                )
    return out


def encode(tok, examples) -> list[dict]:
    """Token ids with labels on the response (and end of text) only."""
    out = []
    for e in examples:
        p = tok(e.prompt).input_ids
        r = tok(e.response, add_special_tokens=False).input_ids + [tok.eos_token_id]
        out.append({"input_ids": p + r, "labels": [-100] * len(p) + r})
    return out


class _Collate:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch):
        import torch

        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            m = len(b["input_ids"])
            ids[i, :m], labels[i, :m], mask[i, :m] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def load_base(base: str | Path, method: str, lora_r: int = 8):
    """Model and tokenizer of ``base``; with ``method="lora"`` the model carries LoRA adapters on every linear layer."""
    from transformers import AutoTokenizer

    from ..models.adapters import load_causal_lm

    model, source = load_causal_lm(Path(base))
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
    return model, tok


def save_model(model, tok, out: Path, meta: dict, base: Path, reverse=None, base_name: str | None = None) -> None:
    """Write the model directory with its reverse transform, c2s_model.json and README.md: a plain model (LoRA
    merged), or, for LoRA on a pulled base (``base_name``), the adapter alone, whose base ``c2s models pull``
    rebuilds anywhere."""
    out.mkdir(parents=True, exist_ok=True)
    if base_name and hasattr(model, "peft_config"):
        model.peft_config["default"].base_model_name_or_path = base_name
        model.save_pretrained(out)
    else:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(out)
        tok.save_pretrained(out)
    if reverse is not None:
        reverse.save(out / "reverse_transform.json")
    elif (base / "reverse_transform.json").exists() and base.resolve() != out.resolve():
        shutil.copy(base / "reverse_transform.json", out / "reverse_transform.json")
    (out / "c2s_model.json").write_text(json.dumps(meta, indent=1, default=str))
    (out / "README.md").write_text(model_card(meta))


def output_meta(base_m: dict, adata, spec: DataSpec, split: Split, tasks, name: str, model=None) -> dict:
    """The output model's metadata: the base's, with this data's labels, conditions, organism and split (and, for
    a base without a gene vocabulary, the genes of its training sentences)."""
    from ..conventions import detect_species

    meta = {
        "format": "c2s-agent-model/1",
        "prompt_set": model.prompts.name if model else "embedded",
        "single_token_labels": False,
        "top_k": dict(model.top_k) if model else DEFAULT_TOP_K,
        **base_m,
        "name": name,
    }
    meta["organism"] = detect_species(adata.var_names).name or meta.get("organism", "Homo sapiens")
    meta.pop("metrics", None)
    meta.pop("ood", None)  # calibrated for the base model's sentences only
    lab = adata.obs[spec.label_key].astype(str)
    if CELL_TYPE in tasks or "generation" in tasks:
        meta["labels"] = sorted(set(lab))
    if spec.condition_key in adata.obs:
        conds = sorted(set(adata.obs[spec.condition_key].astype(str)))
        if "generation" in tasks:
            meta["conditions"] = conds
        if "perturbation" in tasks:
            names = {perturbation_name(spec, c) for c in conds if c != spec.control}
            meta["perturbations"] = sorted(set(base_m.get("perturbations", [])) | names)
    meta["tasks"] = sorted(set(base_m.get("tasks", [])) | set(tasks))
    meta["split"] = {
        "seed": spec.seed,
        "test_fraction": spec.test_fraction,
        "stratify": spec.label_key if split.stratified else None,
        "n_train": int(len(split.train)),
        "n_test": int(len(split.test)),
        "held_out_perturbed": {"cell_types": list(spec.hold_out), CONDITION: f"not {spec.control}"}
        if spec.hold_out
        else None,
        "test_obs_names": adata.obs_names[split.test].tolist(),
    }
    return meta


@dataclass
class Run:
    """What SFT and GRPO both start from: the data, the output and base folders, the base's metadata and
    C2S wrapper, and the seeded split."""

    adata: object
    out: Path
    base: Path
    base_meta: dict
    model: object
    split: object


def prepare_run(data, out, base, spec, tasks) -> Run:
    """Check the folders and the data's columns for ``tasks``, load the base's metadata and split the cells."""
    from ..data import read
    from ..models.model import embedded_model_path, resolve

    base = resolve(str(base), None)[1] if base else embedded_model_path()
    base = Path(base)
    out = Path(out)
    if out.resolve() == base.resolve():
        raise InputError("--out", "is the base model's directory", "write the trained model to another folder")
    adata = read(data) if isinstance(data, (str, Path)) else data
    check_columns(adata, spec, tasks)
    base_m = base_meta(base)
    split = make_split(adata, spec)
    if base_m.get("condition_genes"):  # as many condition genes as the base leaves out, but of this data
        base_m["condition_genes"] = condition_genes(
            adata,
            split.train,
            len(base_m["condition_genes"]),
            base_m.get("genes"),
            spec.label_key,
            spec.condition_key,
            spec.control,
        )
    return Run(adata, out, base, base_m, meta_model(base_m), split)


def finetune(
    data, out: str | Path, base: str | Path | None = None, cfg: FinetuneConfig | None = None, progress: bool = True
) -> dict:
    """Fine-tune ``base`` (default: the embedded model) on ``data`` (an .h5ad path, a bundled name or an
    AnnData) and save the result to ``out``; returns the metadata written to ``c2s_model.json``."""
    import torch

    from ..sentences import ReverseTransform, to_sentences

    cfg = cfg or FinetuneConfig()
    spec = cfg.data
    bad = [t for t in cfg.tasks if t not in TASKS]
    if bad or not cfg.tasks:
        raise InputError("--task", f"{bad or 'nothing'} is not a task", f"use one or more of {list(TASKS)}")
    if cfg.method not in METHODS:
        raise InputError(
            "--method", f"{cfg.method!r} is not a fine-tuning method", f"use one of {list(METHODS)} or grpo"
        )
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    run = prepare_run(data, out, base, spec, cfg.tasks)
    adata, out, base, base_m, m, split = run.adata, run.out, run.base, run.base_meta, run.model, run.split
    if cfg.top_k:
        m.top_k.update({t: cfg.top_k for t in TASKS})
    train_ex = build_examples(adata, m, spec, cfg.tasks, split.train, spec.seed)
    test_ex = build_examples(adata, m, spec, cfg.tasks, split.test, spec.seed + 1)
    if not train_ex:
        raise InputError("data", "gives no training examples for these tasks", "check the obs columns and --task")
    model, tok = load_base(base, cfg.method, cfg.lora_r)
    trainer = make_trainer(model, tok, train_ex, out, cfg, progress, t0)
    if cfg.resume and not list((out / "checkpoints").glob("checkpoint-*")):
        raise InputError(out, "holds no checkpoint to resume from", "train without --resume first")
    result = trainer.train(resume_from_checkpoint=True if cfg.resume else None)
    rng = np.random.default_rng(spec.seed)
    metrics: dict = {"held_out_loss": {}}
    for task in cfg.tasks:
        ex = [e for e in test_ex if e.task == task]
        if ex:
            ex = [ex[i] for i in sorted(rng.permutation(len(ex))[:MAX_EVAL_EXAMPLES])]
            metrics["held_out_loss"][task] = round(float(trainer.evaluate(encode(tok, ex))["eval_loss"]), 4)
    meta = output_meta(base_m, adata, spec, split, cfg.tasks, out.name, m)
    if not meta.get("genes"):  # the genes its sentences were trained on: what its generation is constrained to
        meta["genes"] = vocabulary(m, adata, split.train)
    reverse = None
    if not (base / "reverse_transform.json").exists():
        cs = to_sentences(adata[split.train], top_k=None, tie_break=m.meta.get("tie_break", "mean"))
        reverse = ReverseTransform.fit(cs, seed=spec.seed)
    meta["training"] = {
        "method": cfg.method,
        "base": _pulled_name(base) or str(base),
        "data": str(data) if isinstance(data, (str, Path)) else "AnnData",
        "config": asdict(cfg),
        "steps": int(trainer.state.global_step),
        "final_loss": round(float(result.training_loss), 4),
        "n_examples": {t: sum(e.task == t for e in train_ex) for t in cfg.tasks},
        "minutes": round((time.time() - t0) / 60, 2),
        "trainer": "transformers.Trainer",
        "log_history": trainer.state.log_history,
    }
    save_model(
        trainer.model, tok, out, meta, base, reverse, base_name=_pulled_name(base) if cfg.method == "lora" else None
    )
    if CELL_TYPE in cfg.tasks:
        metrics[CELL_TYPE] = cell_type_metrics(out, adata, spec, split, cfg.threads)
    meta["metrics"] = metrics
    (out / "c2s_model.json").write_text(json.dumps(meta, indent=1, default=str))
    (out / "README.md").write_text(model_card(meta))
    return meta


def make_trainer(model, tok, examples: list, out: Path, cfg: FinetuneConfig, progress: bool, t0: float):
    """A ``transformers.Trainer`` on ``examples`` (loss on the responses) that checkpoints into ``out/checkpoints``
    every ``cfg.save_steps`` and stops (and saves) at ``cfg.max_minutes`` after ``t0``."""
    from transformers import Trainer, TrainingArguments

    seed = cfg.data.seed
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        logging_steps=max(1, min(25, cfg.steps // 10)),
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=not progress,
        bf16=bfloat16_native(),
        train_sampling_strategy="group_by_length",
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=encode(tok, examples),
        data_collator=_Collate(tok.pad_token_id),
        callbacks=[_wall_clock(cfg.max_minutes * 60, t0)] if cfg.max_minutes else None,
    )


def bfloat16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (autocast then trains 2-3x faster)."""
    import torch

    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def _pulled_name(base: Path) -> str | None:
    """The catalogue name of a base that ``c2s models pull`` built, else None."""
    from ..models.catalogue import CATALOGUE, MANIFEST

    if (base / MANIFEST).is_file() and base.name in CATALOGUE:
        return base.name
    return None


def vocabulary(model, adata, rows, min_count: int = 1) -> list[str]:
    """Genes seen at least ``min_count`` times in the training cells' sentences (as long as the longest task's),
    most frequent first: what the trained model's generation is constrained to."""
    from collections import Counter

    texts, _, _ = model.sentences(adata[rows], max(model.top_k.values()))
    counts = Counter(w for t in texts for w in t.split())
    return [g for g, n in counts.most_common() if n >= min_count]


def _wall_clock(seconds: float, t0: float):
    """A Trainer callback that stops training (which then saves) once ``seconds`` have passed since ``t0``."""
    from transformers import TrainerCallback

    class WallClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if time.time() - t0 > seconds:
                control.should_training_stop = True
            return control

    return WallClock()


def cell_type_metrics(path: Path, adata, spec: DataSpec, split: Split, threads: int) -> dict:
    """Accuracy and macro-F1 of label scoring on the held-out cells."""
    from sklearn.metrics import accuracy_score, f1_score

    from ..config import Settings
    from ..models.model import C2SModel
    from ..models.transformers_backend import TransformersBackend

    model = C2SModel(TransformersBackend(path, Settings(threads=threads)))
    truth = adata.obs[spec.label_key].astype(str).to_numpy()[split.test]
    pred = model.predict_cell_types(adata[split.test], threshold=0.0)["label"].to_numpy()
    return {
        "n_test": int(len(truth)),
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, average="macro")),
    }


def model_card(meta: dict) -> str:
    """README.md of a fine-tuned model: what it was trained on, how, and its held-out metrics."""
    t, s, m = meta.get("training", {}), meta.get("split", {}), meta.get("metrics", {})
    cfg = t.get("config", {})
    lines = [
        f"# {meta.get('name', 'model')}: fine-tuned C2S model",
        "",
        f"Base: `{t.get('base')}`; data: `{t.get('data')}`; method: {t.get('method')}; "
        f"tasks: {', '.join(meta.get('tasks', []))}; {t.get('steps')} steps in {t.get('minutes')} min.",
        "",
        "## Split",
        "",
        f"Seed {s.get('seed')}, {s.get('n_train')} training and {s.get('n_test')} held-out cells "
        f"(test fraction {s.get('test_fraction')}, stratified by {s.get('stratify')}); the held-out cell names are "
        "`split.test_obs_names` in c2s_model.json.",
    ]
    if s.get("held_out_perturbed"):
        lines.append(f"Perturbed cells of {', '.join(s['held_out_perturbed']['cell_types'])} were never trained on.")
    if "comparison" in m:
        from .compare import card_section

        lines += ["", card_section(m["comparison"], meta)]
    lines += ["", "## Held-out metrics", "", "```json", json.dumps(m, indent=1, default=str), "```", ""]
    if t.get("method") == "grpo":
        lines += ["Reward curve and KL: `grpo_curves.png`; per-step log: `grpo_log.json`.", ""]
    lines += ["## Configuration", "", "```json", json.dumps(cfg, indent=1, default=str), "```", ""]
    return "\n".join(lines)
