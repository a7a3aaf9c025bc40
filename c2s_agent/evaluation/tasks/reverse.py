"""Reverse transform: R^2 (and Pearson, Spearman) of expression reconstructed from gene ranks.

:meth:`c2s_agent.sentences.ReverseTransform.fit` on a random half of the cells, :meth:`~ReverseTransform.evaluate`
on the other half; one item per ``top_k`` (how many ranked genes are scored)."""

from __future__ import annotations

import numpy as np

from . import Task, read_obs, read_rows, rounded


class ReverseR2(Task):
    name = "reverse_transform_r2"
    description = "R^2 of expression reconstructed from ranks (fit on half the cells, scored on the other half)"
    defaults = {"top_k": [50, 100, 200], "seed": 0, "max_cells": 2048}
    better = {"r2": "higher", "pearson": "higher", "spearman": "higher"}
    shard_size = 8

    def items(self, cell, settings) -> list[dict]:
        ks = cell.params["top_k"]
        return [{"id": f"top_k:{int(k)}", "top_k": int(k)} for k in (ks if isinstance(ks, list) else [ks])]

    def run(self, cell, items, settings) -> list[dict]:
        from ...sentences import ReverseTransform, to_sentences

        n = len(read_obs(cell.dataset))
        order = np.random.default_rng(cell.params["seed"]).permutation(n)[: cell.params["max_cells"]]
        half = len(order) // 2
        fit_cs = to_sentences(read_rows(cell.dataset, order[:half]), top_k=None)
        test_cs = to_sentences(read_rows(cell.dataset, order[half:]), top_k=None)
        rt = ReverseTransform.fit(fit_cs, seed=cell.params["seed"])
        out = []
        for it in items:
            scores = rt.evaluate(test_cs, top_k=it["top_k"])
            out.append(
                {k: rounded(v) if isinstance(v, float) else v for k, v in scores.items()}
                | {"n_fit": half, "n_test": len(order) - half}
            )
        return out

    def summarise(self, cell, results) -> dict:
        res = {}
        for r, k in zip(
            results, cell.params["top_k"] if isinstance(cell.params["top_k"], list) else [cell.params["top_k"]]
        ):
            res[f"r2@{k}"] = r["r2"]
        res.update(
            {
                "r2": float(np.mean([r["r2"] for r in results])),
                "pearson": float(np.mean([r["pearson"] for r in results])),
                "spearman": float(np.mean([r["spearman"] for r in results])),
            }
        )
        return res


TASK = ReverseR2()
