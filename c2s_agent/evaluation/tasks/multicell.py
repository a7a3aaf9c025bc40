"""Multi-cell reasoning with knowledge: what injecting the ligand-receptor interactions a group expresses
changes in a C2S model's answer about the group (:mod:`c2s_agent.knowledge.multicell`).

Groups are drawn from the model's held-out cells (``split.test_obs_names``; every cell when the model has no
split for the dataset): kNN neighbourhoods of ``n_cells`` cells in a PCA of those cells only, one per held-out
centre cell, or, with ``groupby``, the clusters of that obs column cut into chunks of ``n_cells`` cells. The
question is the group's cell type, answered by label log-likelihood after the multi-cell prompt, without and
with the interactions; the truth is the first (centre) cell's label and, separately, the group's majority
label. The single-cell prediction of the first cell is the reference. Items are chunks of ``chunk_size``
groups; rows hold labels and probabilities rounded to 6 digits.
"""

from __future__ import annotations

import numpy as np

from ...conventions.slots import CELL_TYPE
from ...errors import InputError
from . import Task, load_cell_model, model_meta, read_obs, read_rows, rounded


class MulticellKnowledge(Task):
    name = "multicell_knowledge"
    description = "cell type of cell neighbourhoods from multi-cell prompts, with vs without injected interactions"
    uses_model = True
    defaults = {
        "label_column": CELL_TYPE,
        "groupby": None,
        "n_cells": 4,
        "top_k": 40,
        "min_fraction": 0.5,
        "max_interactions": 6,
        "limit": None,
        "chunk_size": 50,
        "seed": 0,
    }
    better = {
        "accuracy_without": "higher",
        "accuracy_with": "higher",
        "true_logprob_without": "higher",
        "true_logprob_with": "higher",
        "accuracy_single_cell": "higher",
    }

    def _test_positions(self, cell, settings) -> np.ndarray:
        obs = read_obs(cell.dataset)
        if cell.params["label_column"] not in obs:
            raise InputError(
                f"dataset {cell.dataset} label_column {cell.params['label_column']!r}",
                "is not an obs column",
                f"use one of {list(obs.columns)}",
            )
        names = set((model_meta(cell, settings).get("split") or {}).get("test_obs_names") or [])
        is_test = obs.index.isin(names)
        return np.flatnonzero(is_test) if is_test.any() else np.arange(len(obs))

    def items(self, cell, settings) -> list[dict]:
        from ...knowledge.multicell import clusters, neighbourhoods

        test = self._test_positions(cell, settings)
        cells = read_rows(cell.dataset, test)
        n, by = int(cell.params["n_cells"]), cell.params["groupby"]
        groups = clusters(cells, by, n, seed=cell.params["seed"]) if by else neighbourhoods(cells, n)  # held-out only
        limit = cell.params["limit"]
        if limit is not None and limit < len(groups):
            pick = np.random.default_rng(cell.params["seed"]).choice(len(groups), size=int(limit), replace=False)
            groups = [groups[i] for i in np.sort(pick)]
        rows = [[int(test[p]) for p in g.positions] for g in groups]  # dataset positions, centre first
        size = int(cell.params["chunk_size"])
        return [
            {"id": f"groups:{i:05d}-{min(i + size, len(rows)):05d}", "groups": rows[i : i + size]}
            for i in range(0, len(rows), size)
        ]

    def run(self, cell, items, settings) -> list[dict]:
        from ... import knowledge
        from ...knowledge.multicell import Group, lr_records, reason

        model = load_cell_model(cell, settings)
        records = lr_records(knowledge.load(settings, progress=False))
        p = cell.params
        out = []
        for it in items:
            rows = sorted({r for g in it["groups"] for r in g})
            cells = read_rows(cell.dataset, rows)
            at = {r: i for i, r in enumerate(rows)}
            groups = [Group(str(g[0]), str(g[0]), tuple(at[r] for r in g)) for g in it["groups"]]
            df = reason(
                cells,
                groups,
                model,
                records,
                top_k=p["top_k"],
                min_fraction=p["min_fraction"],
                max_interactions=p["max_interactions"],
            )
            labels = df.attrs["labels"]
            truth = cells.obs[p["label_column"]].astype(str).to_numpy()
            centre = [truth[g.positions[0]] for g in groups]
            single = model.predict_cell_types(cells[[g.positions[0] for g in groups]], threshold=0.0)
            single = np.asarray(labels, dtype=object)[single[[f"p_{x}" for x in labels]].to_numpy().argmax(1)]

            def true_logprob(probs, t):
                return rounded(np.log(max(probs[labels.index(t)], 1e-12)), 6) if t in labels else None

            out.append(
                {
                    "groups": [
                        {
                            "centre": str(cells.obs_names[g.positions[0]]),
                            "truth": centre[i],
                            "majority": _majority([truth[q] for q in g.positions]),
                            "single_cell": str(single[i]),
                            "without": str(df.without_knowledge.iloc[i]),
                            "with": str(df.with_knowledge.iloc[i]),
                            "n_interactions": int(df.n_interactions.iloc[i]),
                            "interactions": df.interactions.iloc[i],
                            "true_logprob_without": true_logprob(df.attrs["p_without"][i], centre[i]),
                            "true_logprob_with": true_logprob(df.attrs["p_with"][i], centre[i]),
                            "kl": rounded(df.kl_with_vs_without.iloc[i], 6),
                        }
                        for i, g in enumerate(groups)
                    ]
                }
            )
        return out

    def summarise(self, cell, results) -> dict:
        rows = [g for r in results for g in r["groups"]]
        if not rows:
            return {"n_groups": 0}
        inj = [g for g in rows if g["n_interactions"]]
        acc = lambda rs, key, truth="truth": float(np.mean([g[key] == g[truth] for g in rs])) if rs else None  # noqa: E731
        mean = lambda rs, key: float(np.mean([g[key] for g in rs if g[key] is not None])) if rs else None  # noqa: E731
        return {
            "n_groups": len(rows),
            "accuracy_single_cell": acc(rows, "single_cell"),
            "accuracy_without": acc(rows, "without"),
            "accuracy_with": acc(rows, "with"),
            "accuracy_majority_without": acc(rows, "without", "majority"),
            "accuracy_majority_with": acc(rows, "with", "majority"),
            "true_logprob_without": mean(rows, "true_logprob_without"),
            "true_logprob_with": mean(rows, "true_logprob_with"),
            "mean_kl": mean(rows, "kl"),
            "fraction_changed": float(np.mean([g["with"] != g["without"] for g in rows])),
            "n_fixed": sum(g["with"] == g["truth"] != g["without"] for g in rows),  # wrong -> right with knowledge
            "n_broken": sum(g["without"] == g["truth"] != g["with"] for g in rows),  # right -> wrong
            "fraction_with_interactions": len(inj) / len(rows),
            "mean_interactions": float(np.mean([g["n_interactions"] for g in rows])),
            "injected_accuracy_without": acc(inj, "without"),
            "injected_accuracy_with": acc(inj, "with"),
            "injected_mean_kl": mean(inj, "kl"),
            "injected_fraction_changed": float(np.mean([g["with"] != g["without"] for g in inj])) if inj else None,
        }


def _majority(labels: list[str]) -> str:
    values, counts = np.unique(labels, return_counts=True)
    return str(values[counts.argmax()])


TASK = MulticellKnowledge()
