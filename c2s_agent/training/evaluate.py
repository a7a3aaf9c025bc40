"""Held-out evaluation of the embedded model, calibration of its unknown-cell checks, and its model card.

Everything is measured on the fixed split of :mod:`.data`: cell-type accuracy of the model and of a
logistic-regression baseline trained on exactly the same training cells, generation fidelity judged by a
classifier trained on real cells, and the out-of-distribution gate (sentence likelihood) calibrated on
never-trained cells outside the test set and on gene-shuffled copies of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..conventions.slots import CELL_TYPE, CONDITION
from . import data as D

N_GEN_PER_TYPE = 20
GUIDANCE_WEIGHTS = (0.0, 1.0, 2.0, 3.0)  # classifier-free guidance weights whose generation fidelity is reported


def _lr_baseline(adata, split, leave_out=()) -> dict:
    import scanpy as sc
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from ..data import prepare

    x = prepare(adata)
    train = x[split.train].copy()
    sc.pp.highly_variable_genes(train, n_top_genes=2000)
    genes = train.var_names[train.var["highly_variable"]]
    y = adata.obs[CELL_TYPE].astype(str).to_numpy()
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(x[split.train][:, genes].X, y[split.train])
    pred = clf.predict(x[split.test][:, genes].X)
    out = {
        "accuracy": float(accuracy_score(y[split.test], pred)),
        "macro_f1": float(f1_score(y[split.test], pred, average="macro")),
        "features": "2,000 HVGs (selected on training cells), log1p(CP10k)",
    }
    if len(leave_out):  # the same baseline without the genes the model's cell-type prompts leave out
        kept = genes[~genes.str.upper().isin(list(leave_out))]
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(x[split.train][:, kept].X, y[split.train])
        out["accuracy_without_condition_genes"] = float(
            accuracy_score(y[split.test], clf.predict(x[split.test][:, kept].X))
        )
    if CONDITION in adata.obs:  # the Kang split holds out stimulated CD14 monocytes
        cond = adata.obs[CONDITION].astype(str).to_numpy()[split.test]
        held = (y[split.test] == D.HELD_OUT_PERTURBED[0]) & (cond == D.HELD_OUT_PERTURBED[1])
        if held.any() and not held.all():
            out["accuracy_excluding_held_out_stim_cd14_mono"] = float(accuracy_score(y[split.test][~held], pred[~held]))
            out["accuracy_on_held_out_stim_cd14_mono"] = float(accuracy_score(y[split.test][held], pred[held]))
    return out


def _indicator(cs_texts: list[str], genes: list[str]):
    import scipy.sparse as sp

    col = {g: i for i, g in enumerate(genes)}
    rows, cols = [], []
    for r, t in enumerate(cs_texts):
        for g in t.split():
            if g in col:
                rows.append(r)
                cols.append(col[g])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(cs_texts), len(genes)))


def judge(texts: list[str], genes: list[str], labels):
    """The generation judge: logistic regression on top-gene indicators of real cells' sentences (the
    information a generated sentence carries), fitted to ``labels``."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=0.5).fit(_indicator(texts, genes), labels)


def evaluate(path: str | Path, threads: int = 2, write: bool = True, progress: bool = True) -> dict:
    """Evaluate the model in ``path``, calibrate its unknown gate, and (``write``) update c2s_model.json and
    README.md. Returns the metrics."""
    import torch
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    from ..config import Settings
    from ..data import read
    from ..models.model import C2SModel
    from ..models.transformers_backend import TransformersBackend

    torch.set_num_threads(threads)
    path = Path(path)
    say = print if progress else (lambda *a, **k: None)
    adata = read("kang2018")
    split = D.make_split(adata, D.SEED)
    backend = TransformersBackend(path, Settings(threads=threads))
    model = C2SModel(backend)
    meta = dict(backend.metadata)
    y = adata.obs[CELL_TYPE].astype(str).to_numpy()
    cond = adata.obs[CONDITION].astype(str).to_numpy()
    labels = model.known_labels
    test = adata[split.test].copy()

    # cell type prediction on held-out cells (label scoring, no threshold first)
    say("scoring held-out cells ...")
    df = model.predict_cell_types(test, threshold=0.0)
    probs = df[[f"p_{x}" for x in labels]].to_numpy()
    pred = np.asarray(labels, dtype=object)[probs.argmax(1)]
    truth = y[split.test]
    held = (truth == D.HELD_OUT_PERTURBED[0]) & (cond[split.test] == D.HELD_OUT_PERTURBED[1])
    metrics: dict = {
        CELL_TYPE: {
            "n_test": int(len(truth)),
            "accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, average="macro")),
            "balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
            "accuracy_excluding_held_out_stim_cd14_mono": float(accuracy_score(truth[~held], pred[~held])),
            "accuracy_on_held_out_stim_cd14_mono": float(accuracy_score(truth[held], pred[held]))
            if held.any()
            else None,
            "n_held_out_stim_cd14_mono_in_test": int(held.sum()),
            "per_type_recall": {
                lab: float((pred[truth == lab] == lab).mean()) for lab in labels if (truth == lab).any()
            },
        }
    }
    # the never-trained stimulated CD14 Mono of the training 80%: validation cells for the condition genes and
    # calibration cells for the unknown gate
    calib = adata[split.held_out_perturbed].copy()
    calib_df = model.predict_cell_types(calib, threshold=0.0)
    if model.condition_genes:
        # the effect of leaving the condition genes out of cell-type prompts: on the test cells, and on the
        # never-trained stimulated CD14 Mono cells of the training 80% (the validation cells their number was
        # chosen on)
        say("scoring without / with the condition genes ...")
        full = C2SModel(backend)
        full.condition_genes = frozenset()
        metrics[CELL_TYPE]["condition_genes"] = {
            "n": len(model.condition_genes),
            "test_accuracy_with_them": float(
                accuracy_score(truth, full.predict_cell_types(test, threshold=0.0)["label"])
            ),
            "validation_accuracy_without_them": float((calib_df["label"] == D.HELD_OUT_PERTURBED[0]).mean()),
            "validation_accuracy_with_them": float(
                (full.predict_cell_types(calib, threshold=0.0)["label"] == D.HELD_OUT_PERTURBED[0]).mean()
            ),
            "n_validation": int(len(split.held_out_perturbed)),
        }
    say("logistic-regression baseline ...")
    metrics["logistic_regression"] = _lr_baseline(adata, split, sorted(model.condition_genes))

    # out-of-distribution gate, calibrated on cells never trained on and not in the test set (the stimulated
    # CD14 Mono cells of the training 80%) and on gene-shuffled copies of them: the threshold is the midpoint
    # between the real cells' 99.5th percentile and the shuffled cells' 0.5th percentile of sentence NLL
    say("calibrating the unknown gate ...")
    rng = np.random.default_rng(0)
    real_nll = calib_df["sentence_nll"].to_numpy()
    calib.var_names = np.asarray(calib.var_names)[rng.permutation(calib.n_vars)]
    shuf_nll = model.predict_cell_types(calib, threshold=0.0)["sentence_nll"].to_numpy()
    max_nll = float((np.quantile(real_nll, 0.995) + np.quantile(shuf_nll, 0.005)) / 2)
    shuffled = test.copy()
    shuffled.var_names = np.asarray(shuffled.var_names)[rng.permutation(shuffled.n_vars)]
    shuf = model.predict_cell_types(shuffled, threshold=0.0)
    conf_test = df["confidence"].to_numpy()
    threshold = 0.35
    called = conf_test >= threshold
    meta["ood"] = {
        "max_sentence_nll": round(max_nll, 4),
        "min_known_gene_fraction": 0.5,
        "confidence_threshold": threshold,
        "calibration": "max_sentence_nll = midpoint of the 99.5th percentile of sentence NLL of never-trained "
        "non-test cells (stimulated CD14 Mono of the training 80%) and the 0.5th percentile "
        "of gene-shuffled copies of them",
    }
    metrics["unknown_gate"] = {
        "calibration_real_nll_p995": float(np.quantile(real_nll, 0.995)),
        "calibration_shuffled_nll_p005": float(np.quantile(shuf_nll, 0.005)),
        "test_fraction_atypical": float((df["sentence_nll"].to_numpy() > max_nll).mean()),
        "shuffled_test_cells_fraction_unknown": float(
            (
                (shuf["sentence_nll"].to_numpy() > max_nll)
                | (shuf["known_gene_fraction"].to_numpy() < 0.5)
                | (shuf["confidence"].to_numpy() < threshold)
            ).mean()
        ),
        "test_coverage_at_threshold": float(called.mean()),
        "test_accuracy_of_called_cells": float((pred[called] == truth[called]).mean()) if called.any() else None,
    }

    # generation fidelity: a classifier trained on real training cells (top-K gene indicators, the information a
    # generated sentence carries) judges generated cells; its own accuracy on real held-out cells is the ceiling
    say("generating cells ...")
    k = model.top_k["generation"]
    genes = model.genes
    train_texts, _, _ = model.sentences(adata[split.train], k)
    test_texts, _, _ = model.sentences(test, k)
    type_judge = judge(train_texts, genes, y[split.train])
    judge_cond = judge(train_texts, genes, cond[split.train])
    real_acc = float(accuracy_score(truth, type_judge.predict(_indicator(test_texts, genes))))
    types, conds = [], []
    for lab in labels:
        for c in model.known_conditions:
            if ((y == lab) & (cond == c))[split.train].sum() >= 3:  # only combinations seen in training
                types += [lab] * (N_GEN_PER_TYPE // 2)
                conds += [c] * (N_GEN_PER_TYPE // 2)
    gtypes = np.asarray(types, dtype=object)
    default = float(meta.get("generation_guidance", 0.0))
    by_weight, generated = {}, {}
    for w in sorted({default, *GUIDANCE_WEIGHTS}) if "generation_guidance" in meta else (0.0,):
        say(f"generating cells (guidance {w:g}) ...")
        generated[w] = model.generate(types, conds, seed=0, guidance=w)
        by_weight[f"{w:g}"] = float((type_judge.predict(_indicator(generated[w], genes)) == gtypes).mean())
    gen = generated[default]
    X = _indicator(gen, genes)
    gpred = type_judge.predict(X)
    lens = np.array([len(s.split()) for s in gen])
    uniq = np.array([len(set(s.split())) for s in gen])
    metrics["generation"] = {
        "n_generated": len(gen),
        "per_combination": N_GEN_PER_TYPE // 2,
        "guidance": default,
        "fraction_classified_as_conditioned_type": float((gpred == gtypes).mean()),
        "fraction_classified_as_conditioned_type_by_guidance": by_weight,
        "fraction_classified_as_conditioned_condition": float((judge_cond.predict(X) == np.asarray(conds)).mean()),
        "judge_accuracy_on_real_held_out_cells": real_acc,
        "per_type": {lab: float((gpred[gtypes == lab] == lab).mean()) for lab in labels if (gtypes == lab).any()},
        "mean_genes": float(lens.mean()),
        "duplicated_genes_per_cell": float((lens - uniq).mean()),
        "judge": f"logistic regression on top-{k} gene indicators of real training cells",
    }
    meta["metrics"] = metrics
    if write:
        (path / "c2s_model.json").write_text(json.dumps(meta, indent=1))
        card = path / "README.md"
        card.write_text(model_card(meta, card.read_text() if card.exists() else ""))
    return metrics


_SECTION = re.compile(r"<!-- ([\w-]+): written by .*?<!-- /\1 -->\n?", re.S)


def _sections(old_card: str) -> str:
    """Sections other scripts wrote into the card between markers (e.g. the perturbation evaluation)."""
    return "".join(m.group(0).rstrip("\n") + "\n\n" for m in _SECTION.finditer(old_card))


def _runs(t: dict) -> list[dict]:
    return [*t.get("earlier_runs", []), {k: t.get(k) for k in ("steps", "epochs_done", "minutes", "config")}]


def _commands(t: dict) -> list[str]:
    out = []
    for r in _runs(t):
        c = r.get("config") or {}
        if c.get("resume"):
            out.append(f"c2s train --resume --epochs {c['epochs']} --max-minutes {c['max_minutes']:g} --lr {c['lr']:g}")
        else:
            out.append(f"c2s train --epochs {c.get('epochs')} --max-minutes {c.get('max_minutes', 0):g} --no-evaluate")
    out[-1] = out[-1].replace(" --no-evaluate", "") + "   # then evaluates and writes this card"
    return out


def model_card(meta: dict, old_card: str = "") -> str:
    """The model card's markdown; marked sections of ``old_card`` written by other scripts are kept."""
    m, t, s = meta.get("metrics", {}), meta["training"], meta["split"]
    ct, lr, gen, gate = (
        m.get(CELL_TYPE, {}),
        m.get("logistic_regression", {}),
        m.get("generation", {}),
        m.get("unknown_gate", {}),
    )
    cfg = t["config"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        "# c2s-embedded: the small C2S model bundled with c2s-agent",
        "",
        f"A {meta['n_params'] / 1e6:.1f}M-parameter Llama-style causal LM ({cfg['layers']} layers, hidden {cfg['hidden']}, "
        f"{cfg['heads']} heads) with a word-level gene tokenizer ({meta['n_genes']} genes, one token each; every cell-type "
        "label is one token), trained from scratch by c2s-agent. Licence: MIT (same as c2s-agent).",
        "",
        "## Training",
        "",
        "```",
        *_commands(t),
        "```",
        "",
        "A command stops and saves at its wall-time cap, with the learning-rate schedule compressed so training "
        "still ends annealed; on a slower or busy machine fewer epochs fit and the weights differ. Epochs done here:",
        "",
        *[
            f"- run {i + 1}: {round(r.get('epochs_done') or 0, 2)} epochs, {r.get('steps')} steps, {r.get('minutes')} min, peak lr "
            f"{(r.get('config') or {}).get('lr')}"
            for i, r in enumerate(_runs(t))
        ],
        "",
        f"- Data: {t['data']}: Kang et al. 2018 IFN-beta PBMCs, 2,000 cells, 13 types (GEO GSE96583).",
        f"- Sentences: genes ordered by log1p(CP10k), ties broken by mean expression; only the {meta['n_genes']} "
        f"genes seen at least {cfg['min_gene_count']}x in the top-{meta['top_k']['cell_type']} of training cells.",
        f"- Tasks: cell type prediction (top {meta['top_k']['cell_type']} genes -> label), generation conditioned on "
        f"cell type and condition (ctrl/stim, {meta['top_k']['generation']} genes), IFN-beta perturbation (a control "
        f"sentence -> a stimulated sentence of the same cell type, random pairing, {meta['top_k']['perturbation']} genes).",
        f"- Examples in the first (unaugmented) epoch: {dict(t['n_examples'])}.",
        *(
            [
                f"- Condition genes: cell-type prompts leave out the {len(meta['condition_genes'])} vocabulary genes that change "
                "most between stimulated and control training cells of the same type (mean |difference| of log1p(CP10k) "
                f"over types; {', '.join(meta['condition_genes'][:6])}, ...), so a cell's predicted type does not hinge on "
                "its interferon response. Training prompts keep them. Their number is the best of 0-100 on validation "
                "cells, the never-trained stimulated CD14 Mono of the training 80% (for the model of 2026-11-24)."
            ]
            if meta.get("condition_genes")
            else []
        ),
        f"- Last run: {t.get('tokens_per_s')} tokens/s on 2 CPU cores"
        f"{' (bfloat16 autocast)' if t.get('bfloat16_autocast') else ''}; AdamW, cosine schedule; class-balanced "
        f"label loss with label smoothing {cfg['label_smoothing']}; seed {cfg['seed']}.",
        *(
            [
                f"- Augmentation: every epoch after the first re-draws each cell's sentences from its counts thinned "
                f"binomially (keep rate ~ U({cfg['min_keep']:g}, 1)), the same cell at another sequencing depth; cell types "
                f"with fewer than {cfg.get('min_cells_per_type', 0)} training cells are repeated up to that count, each "
                "copy thinned on its own."
            ]
            if cfg.get("min_keep", 1) < 1
            else []
        ),
        *(
            [
                f"- Guidance: {100 * cfg['unconditional']:g}% of generation prompts leave out the cell type, so generation "
                f"can use classifier-free guidance (default weight {meta.get('generation_guidance')})."
            ]
            if cfg.get("unconditional")
            else []
        ),
        "",
        "## Split",
        "",
        f"- A fixed 80/20 split of all cells, stratified by cell type, seed {s['seed']}: {s['n_train']} training cells, "
        f"{s['n_test']} held-out cells (their names are in c2s_model.json). Held-out cells are never trained on.",
        f"- In addition, the **stimulated CD14 Mono cells are held out of every training task** "
        f"({s['held_out_perturbed']['n_cells_removed_from_training']} removed from the training 80%), so that predicting "
        "them from their controls can be evaluated as an unseen perturbation.",
        "",
        "## Held-out metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| cell type accuracy, label scoring (all {ct.get('n_test')} held-out cells) | {pct(ct.get('accuracy'))} |",
        *(
            [
                f"| ... with the {cg['n']} condition genes kept in the prompts | {pct(cg['test_accuracy_with_them'])} |",
                f"| validation: never-trained stim CD14 Mono of the training 80% called CD14 Mono ({cg['n_validation']} cells), "
                f"condition genes left out / kept | {pct(cg['validation_accuracy_without_them'])} / {pct(cg['validation_accuracy_with_them'])} |",
            ]
            if (cg := ct.get("condition_genes"))
            else []
        ),
        f"| logistic regression baseline, same split ({lr.get('features')}) | {pct(lr.get('accuracy'))} |",
        *(
            [f"| ... without the condition genes | {pct(lr['accuracy_without_condition_genes'])} |"]
            if "accuracy_without_condition_genes" in lr
            else []
        ),
        f"| macro-F1 model / baseline | {ct.get('macro_f1', 0):.3f} / {lr.get('macro_f1', 0):.3f} |",
        f"| accuracy without the held-out stim CD14 Mono cells, model / baseline | {pct(ct.get('accuracy_excluding_held_out_stim_cd14_mono'))} / {pct(lr.get('accuracy_excluding_held_out_stim_cd14_mono'))} |",
        f"| accuracy on held-out stim CD14 Mono ({ct.get('n_held_out_stim_cd14_mono_in_test')} cells, never seen stimulated), model / baseline | {pct(ct.get('accuracy_on_held_out_stim_cd14_mono'))} / {pct(lr.get('accuracy_on_held_out_stim_cd14_mono'))} |",
        f"| coverage / accuracy of called cells at confidence >= {meta.get('ood', {}).get('confidence_threshold')} | "
        f"{pct(gate.get('test_coverage_at_threshold'))} / {pct(gate.get('test_accuracy_of_called_cells'))} |",
        f"| held-out cells flagged atypical (sentence likelihood gate) | {pct(gate.get('test_fraction_atypical'))} |",
        f"| held-out cells with shuffled gene names called unknown | {pct(gate.get('shuffled_test_cells_fraction_unknown'))} |",
        f"| generated cells classified as their conditioned type (guidance {gen.get('guidance', 0):g}) | "
        f"{pct(gen.get('fraction_classified_as_conditioned_type'))} "
        f"(judge on real held-out cells: {pct(gen.get('judge_accuracy_on_real_held_out_cells'))}) |",
        *[
            f"| ... with guidance {w} | {pct(v)} |"
            for w, v in gen.get("fraction_classified_as_conditioned_type_by_guidance", {}).items()
            if float(w) != gen.get("guidance", 0)
        ],
        f"| generated cells classified as their conditioned condition | {pct(gen.get('fraction_classified_as_conditioned_condition'))} |",
        f"| duplicated genes per generated cell | {gen.get('duplicated_genes_per_cell', 0):.2f} |",
        "",
        "Per-type recall (label scoring): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ct.get("per_type_recall", {}).items()),
        "",
        "Generation per type: " + ", ".join(f"{k} {v:.2f}" for k, v in gen.get("per_type", {}).items()),
        "",
        _sections(old_card) + "## Use",
        "",
        "```python",
        "import c2s_agent as c2s",
        "adata = c2s.read('demo')",
        "c2s.annotate(adata)            # obs['c2s_cell_type'], obs['c2s_confidence']",
        "c2s.embed(adata)               # obsm['X_c2s']",
        "cells = c2s.generate_cells('CD14 Mono', 50, condition='stim')",
        "```",
        "",
        "## Limits",
        "",
        "- Human PBMCs from one study only; labels are the 13 Seurat annotations of the Kang data. Cells unlike the "
        "training cells (atypical sentence likelihood, few known genes, or low confidence) are called 'unknown'.",
        "- Rare types (Eryth, pDC, Mk) have few training cells and weak recall.",
        "- Not trained on multi-cell prompts or perturbation contexts.",
        *(
            [
                "- Cell types are read without the condition genes: a state defined by those genes alone (an interferon "
                "response) is not a cell type to this model."
            ]
            if meta.get("condition_genes")
            else []
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m c2s_agent.training.evaluate PATH
    import sys

    print(json.dumps(evaluate(sys.argv[1] if len(sys.argv) > 1 else "data/models/c2s-embedded"), indent=1))
