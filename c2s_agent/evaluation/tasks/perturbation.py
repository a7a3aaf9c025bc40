"""Perturbation response: how well a C2S model's predicted perturbed cells reproduce the real response of a
cell type, against two baselines.

Per cell type, control cells go through :func:`c2s_agent.screen.cells.predict` (the model's perturbation
task) and are compared with the real perturbed cells of that type:
- fold-change agreement (:func:`c2s_agent.metrics.lfc_agreement`, Pearson and Kendall on the top changed
  genes) of the prediction, and of the *mean-shift* baseline (the control mean plus the average response of
  the other cell types);
- MMD (:func:`c2s_agent.metrics.evaluate_generation`) of the prediction and of the *no-change* baseline (the
  control cells themselves, as sentences of the same length).
Items flagged ``held_out`` are types whose perturbed cells the model never saw in training (for the bundled
model: stimulated CD14 Mono).
"""

from __future__ import annotations

import numpy as np

from ...conventions.slots import CELL_TYPE, CONDITION
from . import Task, load_cell_model, model_meta, read_obs, read_rows, rounded


class PerturbationResponse(Task):
    name = "perturbation_response"
    description = "fold-change agreement and MMD of predicted perturbed cells vs mean-shift and no-change baselines"
    uses_model = True
    defaults = {
        "perturbation": None,
        "label_column": CELL_TYPE,
        "condition_column": CONDITION,
        "control": "ctrl",
        "perturbed": "stim",
        "cell_types": None,
        "n_cells": 30,
        "top_n": 100,
        "n_boot": 20,
        "min_cells": 20,
        "seed": 0,
    }
    better = {
        "lfc_pearson": "higher",
        "lfc_kendall": "higher",
        "baseline_lfc_pearson": "higher",
        "baseline_lfc_kendall": "higher",
        "heldout_lfc_pearson": "higher",
        "heldout_baseline_lfc_pearson": "higher",
        "mmd": "lower",
        "no_change_mmd": "lower",
    }
    shard_size = 1

    def _groups(self, cell) -> dict[str, dict[str, np.ndarray]]:
        p = cell.params
        obs = read_obs(cell.dataset)
        ct = obs[p["label_column"]].astype(str).to_numpy()
        cond = obs[p["condition_column"]].astype(str).to_numpy()
        out = {}
        for t in sorted(set(ct)):
            ctrl, stim = (
                np.flatnonzero((ct == t) & (cond == p["control"])),
                np.flatnonzero((ct == t) & (cond == p["perturbed"])),
            )
            if min(len(ctrl), len(stim)) >= p["min_cells"]:
                out[t] = {"ctrl": ctrl, "stim": stim}
        return out

    def items(self, cell, settings) -> list[dict]:
        held = (model_meta(cell, settings).get("split") or {}).get("held_out_perturbed", {}).get(CELL_TYPE)
        groups = self._groups(cell)
        types = cell.params["cell_types"] or sorted(groups)
        return [
            {
                "id": t,
                CELL_TYPE: t,
                "held_out": t == held,
                "ctrl": groups[t]["ctrl"].tolist(),
                "stim": groups[t]["stim"].tolist(),
                "others": {o: {k: v.tolist() for k, v in g.items()} for o, g in groups.items() if o != t},
            }
            for t in types
            if t in groups
        ]

    def run(self, cell, items, settings) -> list[dict]:
        import pandas as pd

        from ...metrics import evaluate_generation, lfc_agreement, mean_expression
        from ...screen.cells import predict
        from ...sentences import to_sentences

        p = cell.params
        model = load_cell_model(cell, settings)
        perturbation = p["perturbation"] or model.known_perturbations[0]
        out = []
        for it in items:
            ctrl, stim = read_rows(cell.dataset, it["ctrl"]), read_rows(cell.dataset, it["stim"])
            pred = predict(ctrl, perturbation, n_cells=p["n_cells"], model=model, seed=p["seed"], settings=settings)
            agree = lfc_agreement(pred, stim, ctrl, top_n=p["top_n"])
            shifts = [
                mean_expression(read_rows(cell.dataset, g["stim"]))
                - mean_expression(read_rows(cell.dataset, g["ctrl"]))
                for g in it["others"].values()
            ]
            shift = pd.concat(shifts, axis=1).mean(axis=1)
            base_ctrl = mean_expression(ctrl)
            baseline = lfc_agreement(
                (base_ctrl + shift.reindex(base_ctrl.index).fillna(0.0)), stim, ctrl, top_n=p["top_n"]
            )
            k = max(len(s.split()) for s in pred.obs["c2s_sentence"])
            mmd = evaluate_generation(stim, pred, metrics=["mmd"], reference=stim, n_boot=p["n_boot"], seed=p["seed"])
            none = evaluate_generation(
                stim,
                to_sentences(ctrl, top_k=k).strings(k),
                metrics=["mmd"],
                reference=stim,
                n_boot=p["n_boot"],
                seed=p["seed"],
            )
            out.append(
                {
                    "held_out": it["held_out"],
                    "n_predicted": pred.n_obs,
                    "n_genes": agree.n_genes,
                    "lfc_pearson": rounded(agree.pearson, 8),
                    "lfc_kendall": rounded(agree.kendall, 8),
                    "baseline_lfc_pearson": rounded(baseline.pearson, 8),
                    "baseline_lfc_kendall": rounded(baseline.kendall, 8),
                    "mmd": rounded(mmd.metrics["mmd"].value, 8),
                    "no_change_mmd": rounded(none.metrics["mmd"].value, 8),
                }
            )
        return out

    def summarise(self, cell, results) -> dict:
        def mean(key, rows):
            vals = [r[key] for r in rows if r[key] is not None]
            return float(np.mean(vals)) if vals else None

        held = [r for r in results if r["held_out"]]
        out = {"n_types": len(results)}
        for key in (
            "lfc_pearson",
            "baseline_lfc_pearson",
            "lfc_kendall",
            "baseline_lfc_kendall",
            "mmd",
            "no_change_mmd",
        ):
            out[key] = mean(key, results)
        if held:
            out["heldout_lfc_pearson"] = mean("lfc_pearson", held)
            out["heldout_baseline_lfc_pearson"] = mean("baseline_lfc_pearson", held)
        return out


TASK = PerturbationResponse()
