"""Cell type annotation: accuracy and macro-F1 of a C2S model on held-out cells, against a logistic-regression
baseline trained on the same training cells.

The held-out cells are the model's own test split (``split.test_obs_names`` in ``c2s_model.json``) when it
has one, else every cell. Items are chunks of ``chunk_size`` held-out cells, read from the backed ``.h5ad``;
the baseline is one more item (:func:`c2s_agent.training.evaluate._lr_baseline`, the model card's
baseline, restricted to the evaluated cells), fitted on at most ``baseline_max_train`` training cells (a seeded
sample) read from the backed file, so a large dataset is never loaded whole. Ties in the sentences are broken within a chunk (the model's
``tie_break``), so ``chunk_size`` is part of the configuration. Rows hold predicted labels, not
probabilities: model probabilities can differ in the 7th digit between processes, labels do not.
"""

from __future__ import annotations

import numpy as np

from ...conventions.slots import CELL_TYPE
from ...errors import InputError
from . import Task, load_cell_model, model_meta, read_obs, read_rows, rounded

BASELINE = "baseline:logistic_regression"


class Annotation(Task):
    name = "cell_type_annotation"
    description = "cell type accuracy and macro-F1 on held-out cells vs a logistic-regression baseline"
    uses_model = True
    defaults = {
        "label_column": CELL_TYPE,
        "limit": None,
        "chunk_size": 50,
        "seed": 0,
        "baseline": True,
        "baseline_max_train": 20000,
    }
    better = {"accuracy": "higher", "macro_f1": "higher", "baseline_accuracy": "higher", "baseline_macro_f1": "higher"}

    def _positions(self, cell, settings) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) row positions: the model's split if it has one for this dataset, else all cells as test."""
        obs = read_obs(cell.dataset)
        col = cell.params["label_column"]
        if col not in obs:
            raise InputError(
                f"dataset {cell.dataset} label_column {col!r}",
                "is not an obs column",
                f"use one of {list(obs.columns)}",
            )
        split = model_meta(cell, settings).get("split") or {}
        names = set(split.get("test_obs_names") or [])
        is_test = obs.index.isin(names) if names else np.ones(len(obs), bool)
        if names and not is_test.any():
            is_test = np.ones(len(obs), bool)  # the model never saw this dataset: every cell is held out
        test = np.flatnonzero(is_test)
        limit = cell.params["limit"]
        if limit is not None and limit < len(test):
            test = np.sort(np.random.default_rng(cell.params["seed"]).choice(test, size=int(limit), replace=False))
        return np.flatnonzero(~is_test), test

    def items(self, cell, settings) -> list[dict]:
        train, test = self._positions(cell, settings)
        size = int(cell.params["chunk_size"])
        out = [
            {"id": f"cells:{i:05d}-{min(i + size, len(test)):05d}", "positions": test[i : i + size].tolist()}
            for i in range(0, len(test), size)
        ]
        cap = int(cell.params["baseline_max_train"])
        if len(train) > cap:
            train = np.sort(np.random.default_rng(cell.params["seed"]).choice(train, size=cap, replace=False))
        if cell.params["baseline"] and len(train):
            out.append({"id": BASELINE, "train": train.tolist(), "test": test.tolist()})
        return out

    def run(self, cell, items, settings) -> list[dict]:
        return [self._baseline(cell, it) if it["id"] == BASELINE else self._predict(cell, it, settings) for it in items]

    def _predict(self, cell, item, settings) -> dict:
        model = load_cell_model(cell, settings)
        cells = read_rows(cell.dataset, item["positions"])
        labels = model.known_labels
        df = model.predict_cell_types(cells, threshold=0.0)
        probs = df[[f"p_{x}" for x in labels]].to_numpy()
        pred = np.asarray(labels, dtype=object)[probs.argmax(1)]
        return {
            "obs_names": cells.obs_names.tolist(),
            "truth": cells.obs[cell.params["label_column"]].astype(str).tolist(),
            "pred": pred.tolist(),
        }

    def _baseline(self, cell, item) -> dict:
        from ...training.data import Split
        from ...training.evaluate import _lr_baseline

        train, test = np.asarray(item["train"]), np.asarray(item["test"])
        rows = np.union1d(train, test)  # read_rows returns these rows in sorted order
        adata = read_rows(cell.dataset, rows)
        if cell.params["label_column"] != CELL_TYPE:
            adata.obs[CELL_TYPE] = adata.obs[cell.params["label_column"]]
        split = Split(np.searchsorted(rows, train), np.searchsorted(rows, test), np.array([], int))
        res = _lr_baseline(adata, split)
        return {
            "accuracy": rounded(res["accuracy"]),
            "macro_f1": rounded(res["macro_f1"]),
            "features": res["features"],
            "n_train": len(train),
            "n_test": len(test),
        }

    def summarise(self, cell, results) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        truth = [t for r in results if "truth" in r for t in r["truth"]]
        pred = [p for r in results if "pred" in r for p in r["pred"]]
        base = next((r for r in results if "features" in r), {})
        if not truth:
            return {"n_cells": 0}
        return {
            "n_cells": len(truth),
            "accuracy": accuracy_score(truth, pred),
            "macro_f1": f1_score(truth, pred, average="macro"),
            "baseline_accuracy": base.get("accuracy"),
            "baseline_macro_f1": base.get("macro_f1"),
            "baseline_n_train": base.get("n_train"),
        }


TASK = Annotation()
