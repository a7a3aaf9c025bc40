"""A fine-tuned model on its held-out cells, against the embedded model and logistic regression on the same split:
cell-type accuracy and macro-F1 (label scoring, greedy generation over the labels, free text matched through the
Cell Ontology), and generated cells (validity, repeats, fidelity to the requested type judged by a classifier of
real training cells). Writes the figures into the model's ``c2s_model.json`` and card.

    python -m c2s_agent.training.compare MODEL_DIR [--threads 2]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..conventions.slots import CELL_TYPE

N_GEN = 4  # generated cells per (cell type, condition) seen in training


def evaluate(path: str | Path, threads: int = 2) -> dict:
    """The comparison figures of the fine-tuned model in ``path`` (its data and split from its metadata)."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from ..config import Settings
    from ..conventions import ontology
    from ..data import read
    from ..models import embedded_model_path, load_model
    from .evaluate import _indicator, _lr_baseline, judge
    from .finetune import Split

    torch.set_num_threads(threads)
    path = Path(path)
    meta = json.loads((path / "c2s_model.json").read_text())
    model = load_model(str(path), Settings(threads=threads))
    adata = read(meta["training"]["data"])
    spec = meta["training"]["config"]["data"]
    test = np.flatnonzero(adata.obs_names.isin(meta["split"]["test_obs_names"]))
    lab = adata.obs[spec["label_key"]].astype(str).to_numpy()
    cond = adata.obs[spec["condition_key"]].astype(str).to_numpy()
    out_of_training = np.isin(lab, spec["hold_out"]) & (cond != spec["control"])
    train = np.setdiff1d(np.flatnonzero(~out_of_training), test)
    split = Split(train, test, True)
    truth = lab[test]
    cells = adata[test]
    out: dict = {"n_test": int(len(test))}
    for mode, kwargs in (("score", {}), ("generate", {"mode": "generate"})):
        t0 = time.perf_counter()
        pred = model.predict_cell_types(cells, threshold=0.0, **kwargs)["label"].to_numpy()
        out[f"cell_type_{mode}"] = {
            "accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, average="macro")),
            "cells_per_s": round(len(test) / (time.perf_counter() - t0), 2),
        }
    out["cell_type_free_text"] = _free_text(model, cells, truth, ontology)
    out["logistic_regression"] = _lr_baseline(adata, split)
    emb = json.loads((embedded_model_path() / "c2s_model.json").read_text())
    same = emb["split"]["test_obs_names"] == meta["split"]["test_obs_names"]
    out["embedded_model"] = {
        "same_held_out_cells": same,
        **{k: emb["metrics"][CELL_TYPE][k] for k in ("accuracy", "macro_f1")},
    }
    out["generation"] = _generation(model, adata, train, lab, cond, _indicator, judge)
    return out


def _free_text(model, cells, truth, ontology) -> dict:
    """The model's own words (its label list set aside), matched to the true label through the Cell Ontology: a
    named term that is the true label's term, or one of its kinds or ancestors' kinds (CD14 monocyte for
    'CD14 Mono')."""
    import copy

    free = copy.copy(model)
    free.meta = {k: v for k, v in model.meta.items() if k != "labels"}
    df = free.predict_cell_types(cells, mode="generate", threshold=0.0)
    named = df["cell_ontology_id"].to_numpy() != ""
    right = []
    for term_id, t in zip(df["cell_ontology_id"], truth):
        want = ontology.lookup(t)
        got = ontology.terms().get(term_id)
        right.append(bool(got and want and got.id == want.id))
    return {
        "fraction_naming_a_term": float(named.mean()),
        "accuracy_same_term": float(np.mean(right)),
        "examples": df["generated_text"].head(5).tolist(),
    }


def _generation(model, adata, train, lab, cond, indicator, judge) -> dict:
    """Cells generated for every (type, condition) seen in training: validity against the model's genes,
    repeats, and the type a classifier of real training cells' top genes sees in them."""
    k = model.top_k["generation"]
    real, _, _ = model.sentences(adata[train], k)
    genes = list(model.genes)
    type_judge = judge(real, genes, lab[train])
    types, conds = [], []
    for t in sorted(set(lab[train])):
        for c in sorted(set(cond[train])):
            if ((lab[train] == t) & (cond[train] == c)).sum() >= 3:
                types += [t] * N_GEN
                conds += [c] * N_GEN
    t0 = time.perf_counter()
    gen = model.generate(types, conds, seed=0)
    seconds = time.perf_counter() - t0
    vocab = set(genes)
    words = [s.split() for s in gen]
    pred = type_judge.predict(indicator(gen, genes))
    return {
        "n_generated": len(gen),
        "genes_per_cell": float(np.mean([len(w) for w in words])),
        "fraction_valid_genes": float(np.mean([g in vocab for w in words for g in w])),
        "duplicated_genes_per_cell": float(np.mean([len(w) - len(set(w)) for w in words])),
        "fraction_classified_as_conditioned_type": float(np.mean(pred == np.asarray(types))),
        "cells_per_s": round(len(gen) / seconds, 2),
        "judge": f"logistic regression on top-{k} gene indicators of real training cells",
    }


def card_section(c: dict, meta: dict) -> str:
    """The model card's comparison section."""
    t = meta.get("training", {})
    lr, emb = c["logistic_regression"], c["embedded_model"]
    g, f = c["generation"], c["cell_type_free_text"]
    rows = [
        ("C2S-SmolLM2, label scoring", c["cell_type_score"]),
        ("C2S-SmolLM2, greedy generation over the labels", c["cell_type_generate"]),
        ("embedded model (3.7M, trained from scratch, 18 epochs)", emb),
        ("logistic regression, 2,000 HVGs", lr),
    ]
    lines = [
        "## Held-out comparison",
        "",
        f"Base `{t.get('base')}` (rebuilt offline-ready by `c2s models pull {t.get('base')}`; its own licence "
        "applies to it); this adapter was trained by c2s-agent (MIT). Load it with `--model` and this folder, or "
        "its name when bundled.",
        "",
        f"The same {c['n_test']} held-out Kang cells (the embedded model's split{'' if emb['same_held_out_cells'] else ' - NOT the same cells'}). "
        f"Training budget: {t.get('steps')} LoRA steps ({t.get('config', {}).get('batch_size')} examples each) in "
        f"{t.get('minutes')} min on 2 CPU cores, under one epoch of the {sum((t.get('n_examples') or {}).values())} "
        "training examples.",
        "",
        "| model | accuracy | macro-F1 |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for name, m in rows]
    lines += [
        "",
        f"Free text (no labels given): {100 * f['fraction_naming_a_term']:.1f}% of answers name a Cell Ontology "
        f"term, {100 * f['accuracy_same_term']:.1f}% the true label's term; e.g. {f['examples'][:3]}.",
        "",
        f"Generated cells ({g['n_generated']}, {N_GEN} per type and condition seen in training, sampled, seed 0): "
        f"{g['genes_per_cell']:.1f} genes each, {100 * g['fraction_valid_genes']:.1f}% valid vocabulary genes, "
        f"{g['duplicated_genes_per_cell']:.2f} repeated genes per cell, "
        f"{100 * g['fraction_classified_as_conditioned_type']:.1f}% classified as the requested type ({g['judge']}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from .finetune import model_card

    path = Path(argv[0])
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 2
    meta = json.loads((path / "c2s_model.json").read_text())
    meta.setdefault("metrics", {})["comparison"] = evaluate(path, threads)
    (path / "c2s_model.json").write_text(json.dumps(meta, indent=1, default=str))
    (path / "README.md").write_text(model_card(meta))
    print(json.dumps(meta["metrics"]["comparison"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
