"""Held-out perturbation evaluation of the embedded model: predict stimulated CD14 Mono cells (never trained
on) from their controls, and compare with two baselines on the same cells.

- model: the embedded C2S model's IFN-beta prediction from each CD14 Mono control cell;
- no change: the control cells themselves;
- mean shift: the control cells plus the mean IFN-beta shift (stim - ctrl, log1p CP10k) of the other cell
  types in the model's training split.

Fold-change agreement (Pearson r, Kendall's tau; :func:`c2s_agent.metrics.lfc_agreement`) is measured on the
100 genes the real CD14 Mono cells change most and on the Hallmark interferon alpha / gamma programs. The
observed change is real stim minus real ctrl CD14 Mono. The model's predicted change is the reconstructed
predicted cells minus the reconstructed control sentences (same reverse transform, so the reconstruction
cancels); genes outside the model's vocabulary get a predicted change of 0. scFID and MMD compare each
method's cells with the real stimulated cells in the reference PCA space (fitted on the whole dataset), with
every side as top-64 sentences over the model's vocabulary (the model's own view of a cell) reconstructed by
the same reverse transform, so no side is advantaged by its representation.

Run: ``.venv/bin/python evals/perturbation/run.py`` (about 2-5 minutes on 2 cores); writes results.json and
results.md next to this file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
CELL_TYPE, PERTURBATION = "CD14 Mono", "IFN-beta"
PROGRAMS = {"HALLMARK_INTERFERON_ALPHA_RESPONSE": "ifn_alpha", "HALLMARK_INTERFERON_GAMMA_RESPONSE": "ifn_gamma"}


def main(seed: int = 0, n_boot: int = 100) -> dict:
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.data import prepare, read
    from c2s_agent.metrics import evaluate_generation, get_encoder, lfc_agreement, mean_expression
    from c2s_agent.models import embedded_model_path, load_model
    from c2s_agent.screen import get_program
    from c2s_agent.sentences import ReverseTransform
    from c2s_agent.training import data as D

    t0 = time.perf_counter()
    torch.set_num_threads(int(os.environ.get("C2S_THREADS", "2")))
    adata = prepare(read("kang2018"))
    adata.var_names = adata.var_names.astype(str).str.upper()
    m = load_model("embedded", Settings(threads=torch.get_num_threads()))
    held = m.meta.get("split", {}).get("held_out_perturbed", {})
    if (held.get("cell_type"), held.get("condition")) != (CELL_TYPE, "stim"):
        sys.exit(f"the embedded model does not hold out stimulated {CELL_TYPE} cells ({held}); retrain it first")
    ct, cond = adata.obs["cell_type"].astype(str).to_numpy(), adata.obs["condition"].astype(str).to_numpy()
    ctrl = adata[(ct == CELL_TYPE) & (cond == "ctrl")].copy()
    stim = adata[(ct == CELL_TYPE) & (cond == "stim")].copy()

    # baseline: mean shift of the other cell types, from the model's training split only
    split = D.make_split(read("kang2018"), D.SEED)
    train = np.zeros(adata.n_obs, bool)
    train[split.train] = True
    others = train & (ct != CELL_TYPE)
    shift = mean_expression(adata[others & (cond == "stim")]) - mean_expression(adata[others & (cond == "ctrl")])
    shifted = ctrl.copy()
    X = shifted.X.toarray() if hasattr(shifted.X, "toarray") else np.asarray(shifted.X)
    shifted.X = np.clip(X + shift.reindex(shifted.var_names).fillna(0).to_numpy()[None, :], 0, None).astype(np.float32)

    # model prediction
    k = int(m.top_k["perturbation"])
    ctrl_texts, _, _ = m.sentences(ctrl, k)
    t_model = time.perf_counter()
    pred_texts = m.perturb(ctrl_texts, PERTURBATION, seed=seed)
    t_model = time.perf_counter() - t_model
    reverse = ReverseTransform.load(embedded_model_path() / "reverse_transform.json")
    recon_pred = mean_expression(reverse.reconstruct(pred_texts, genes=m.genes))
    recon_ctrl = mean_expression(reverse.reconstruct(ctrl_texts, genes=m.genes))

    ctrl_mean, stim_mean = mean_expression(ctrl), mean_expression(stim)
    means = {
        "C2S model (embedded)": ctrl_mean.add((recon_pred - recon_ctrl).reindex(ctrl_mean.index).fillna(0)),
        "no change": ctrl_mean,
        "mean shift (other cell types)": ctrl_mean.add(shift.reindex(ctrl_mean.index).fillna(0)),
    }
    stim_texts, _, _ = m.sentences(stim, k)
    cells = {
        "C2S model (embedded)": pred_texts,
        "no change": ctrl_texts,
        "mean shift (other cell types)": m.sentences(shifted, k)[0],
    }
    enc = get_encoder("pca")
    enc.fit(adata)

    gene_sets = {"top 100 DE genes": None, **{name: list(get_program(short).genes) for name, short in PROGRAMS.items()}}
    top_de = lfc_agreement(stim_mean, stim_mean, ctrl_mean, top_n=100).table.index.tolist()
    recon = {name: mean_expression(reverse.reconstruct(texts, genes=m.genes)) for name, texts in cells.items()}
    recon_obs = mean_expression(reverse.reconstruct(stim_texts, genes=m.genes))
    rows = []
    for method, mean in means.items():
        row = {"method": method}
        for label, genes in gene_sets.items():
            agr = lfc_agreement(mean, stim_mean, ctrl_mean, genes=genes, top_n=100)
            row[f"{label}: pearson"], row[f"{label}: kendall"] = agr.pearson, agr.kendall
            row[f"{label}: n_genes"] = agr.n_genes
            # the same genes with every side (observed too) as reconstructed top-k sentences
            agr = lfc_agreement(recon[method], recon_obs, recon["no change"], genes=genes or top_de)
            row[f"{label}: sentence-space pearson"], row[f"{label}: sentence-space kendall"] = agr.pearson, agr.kendall
            row[f"{label}: sentence-space n_genes"] = agr.n_genes
        ev = evaluate_generation(
            stim_texts, cells[method], encoder=enc, metrics=["scfid", "mmd"], n_boot=n_boot, seed=seed
        )
        for name, v in ev.metrics.items():
            row[name], row[f"{name}_interval"] = v.value, [v.low, v.high]
        rows.append(row)
    result = {
        "task": f"predict {PERTURBATION}-stimulated {CELL_TYPE} cells (held out of every training task) from "
        f"{CELL_TYPE} control cells",
        "n_control": int(ctrl.n_obs),
        "n_observed": int(stim.n_obs),
        "model": m.name,
        "seed": seed,
        "model_training": m.meta.get("training", {}).get("finished"),
        "sentence_length": k,
        "baseline_shift_from": f"{int((others & (cond == 'stim')).sum())} stim and {int((others & (cond == 'ctrl')).sum())} "
        f"ctrl cells of the other cell types in the training split",
        "rows": rows,
        "model_seconds": round(t_model, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "notes": [
            "Pearson/Kendall of a constant prediction (no change) are undefined (NaN); they count as 0.",
            "scFID/MMD: lower is closer to the real stimulated cells; 95% bootstrap intervals in brackets.",
        ],
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=1, default=lambda x: None if x != x else x))
    (HERE / "results.md").write_text(markdown(result))
    card = update_model_card(embedded_model_path() / "README.md", markdown(result))
    print(markdown(result))
    print(f"model card: {'updated ' + str(card) if card else 'no README.md in the model folder yet'}")
    return result


BEGIN, END = "<!-- perturbation-eval: written by evals/perturbation/run.py -->", "<!-- /perturbation-eval -->"


def update_model_card(card: Path, table: str) -> Path | None:
    """Put the table into the model card between markers (replacing an earlier one); None without a card."""
    if not card.exists():
        return None
    text = card.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)].rstrip() + "\n\n" + text[text.index(END) + len(END) :].lstrip()
    section = f"{BEGIN}\n## Held-out perturbation evaluation\n\n{table.replace('### ', '#### ', 1)}{END}\n"
    anchor = "## Use"
    text = text.replace(anchor, section + "\n" + anchor, 1) if anchor in text else text.rstrip() + "\n\n" + section
    card.write_text(text)
    return card


def _f(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    """The result table as Markdown (also pasted into the model card)."""
    cols = [
        ("top 100 DE genes", "top-100 DE"),
        ("HALLMARK_INTERFERON_ALPHA_RESPONSE", "IFN-alpha"),
        ("HALLMARK_INTERFERON_GAMMA_RESPONSE", "IFN-gamma"),
    ]
    head = ["method", *[f"{short} {s}" for _, short in cols for s in ("r", "tau")], "scFID [95% CI]", "MMD [95% CI]"]
    lines = [
        f"### Held-out perturbation: {result['task']}",
        "",
        f"{result['n_control']} control cells in, compared with {result['n_observed']} real stimulated cells. "
        "r = Pearson, tau = Kendall of predicted vs observed mean log-fold change (higher is better); "
        "scFID and MMD against the real stimulated cells (lower is better).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in result["rows"]:
        cells = [row["method"]]
        for label, _ in cols:
            cells += [_f(row[f"{label}: pearson"]), _f(row[f"{label}: kendall"])]
        for name in ("scfid", "mmd"):
            lo, hi = row[f"{name}_interval"]
            cells.append(
                f"{_f(row[name], 2 if name == 'scfid' else 4)} [{_f(lo, 2 if name == 'scfid' else 4)}, "
                f"{_f(hi, 2 if name == 'scfid' else 4)}]"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Same genes, every side (the observed change too) as top-64 sentences over the model's vocabulary, "
        "reconstructed with the model's reverse transform (fold changes in the model's own representation):",
        "",
        "| " + " | ".join(head[:7]) + " |",
        "|" + "---|" * 7,
    ]
    for row in result["rows"]:
        cells = [row["method"]]
        for label, _ in cols:
            cells += [_f(row[f"{label}: sentence-space pearson"]), _f(row[f"{label}: sentence-space kendall"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Genes: top-100 DE {result['rows'][0]['top 100 DE genes: n_genes']}, IFN-alpha "
        f"{result['rows'][0]['HALLMARK_INTERFERON_ALPHA_RESPONSE: n_genes']}, IFN-gamma "
        f"{result['rows'][0]['HALLMARK_INTERFERON_GAMMA_RESPONSE: n_genes']} measured (in the model's vocabulary: "
        f"{result['rows'][0]['top 100 DE genes: sentence-space n_genes']}, "
        f"{result['rows'][0]['HALLMARK_INTERFERON_ALPHA_RESPONSE: sentence-space n_genes']}, "
        f"{result['rows'][0]['HALLMARK_INTERFERON_GAMMA_RESPONSE: sentence-space n_genes']}). "
        f"Mean-shift baseline from {result['baseline_shift_from']}.",
        "",
    ]
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
