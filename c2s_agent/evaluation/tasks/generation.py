"""Generation fidelity: scFID and MMD between cells a C2S model generates for a cell type (and condition) and
the real cells of that type, with :func:`c2s_agent.metrics.evaluate_generation`.

The reference point is the same metric between two random halves of the real cells (generated half as
top-k sentences, like the model's): a model can at best reach it. One item per (cell type, condition) with at
least ``min_real`` real cells; one PCA encoder, fitted on up to ``max_reference`` cells of the dataset (read
from the backed file), serves every item."""

from __future__ import annotations

import numpy as np

from ...conventions.slots import CELL_TYPE, CONDITION
from . import Task, load_cell_model, model_meta, read_obs, read_rows, rounded


class GenerationFidelity(Task):
    name = "generation_fidelity"
    description = "scFID and MMD of generated vs real cells per type, against a real-vs-real reference"
    uses_model = True
    defaults = {
        "label_column": CELL_TYPE,
        "condition_column": CONDITION,
        "conditions": ["ctrl"],
        "cell_types": None,
        "n_generate": 20,
        "min_real": 20,
        "n_boot": 20,
        "max_reference": 5000,
        "seed": 0,
    }
    better = {
        "scfid": "lower",
        "mmd": "lower",
        "reference_scfid": "lower",
        "reference_mmd": "lower",
        "scfid_ratio": "lower",
    }
    shard_size = 2

    def items(self, cell, settings) -> list[dict]:
        obs = read_obs(cell.dataset)
        p = cell.params
        types = p["cell_types"] or model_meta(cell, settings).get("labels", [])
        out = []
        for ct in types:
            for cond in p["conditions"]:
                rows = np.flatnonzero(
                    (obs[p["label_column"]].astype(str) == ct).to_numpy()
                    & (obs[p["condition_column"]].astype(str) == cond).to_numpy()
                )
                if len(rows) >= p["min_real"]:
                    out.append({"id": f"{ct}|{cond}", CELL_TYPE: ct, CONDITION: cond, "positions": rows.tolist()})
        return out

    def run(self, cell, items, settings) -> list[dict]:
        from ...metrics import evaluate_generation, get_encoder
        from ...models import tl
        from ...sentences import to_sentences

        p = cell.params
        model = load_cell_model(cell, settings)
        encoder = get_encoder("pca", settings)
        n = len(read_obs(cell.dataset))
        rng = np.random.default_rng(p["seed"])
        encoder.fit(read_rows(cell.dataset, rng.permutation(n)[: p["max_reference"]]))
        out = []
        for it in items:
            real = read_rows(cell.dataset, it["positions"])
            gen = tl.generate_cells(
                it[CELL_TYPE], n=p["n_generate"], condition=it[CONDITION], model=model, seed=p["seed"]
            )
            res = evaluate_generation(
                real, gen, encoder=encoder, metrics=["scfid", "mmd"], n_boot=p["n_boot"], seed=p["seed"]
            )
            half = np.random.default_rng(p["seed"]).permutation(real.n_obs)
            a, b = real[np.sort(half[: len(half) // 2])].copy(), real[np.sort(half[len(half) // 2 :])].copy()
            k = max(len(s.split()) for s in gen.obs["c2s_sentence"])
            ref = evaluate_generation(
                a,
                to_sentences(b, top_k=k).strings(k),
                encoder=encoder,
                metrics=["scfid", "mmd"],
                n_boot=p["n_boot"],
                seed=p["seed"],
            )
            out.append(
                {
                    "n_real": real.n_obs,
                    "n_generated": gen.n_obs,
                    **{m: rounded(v.value, 8) for m, v in res.metrics.items()},
                    **{f"reference_{m}": rounded(v.value, 8) for m, v in ref.metrics.items()},
                }
            )
        return out

    def summarise(self, cell, results) -> dict:
        mean = lambda key: float(np.mean([r[key] for r in results if r[key] is not None]))  # noqa: E731
        out = {
            "n_types": len(results),
            "scfid": mean("scfid"),
            "mmd": mean("mmd"),
            "reference_scfid": mean("reference_scfid"),
            "reference_mmd": mean("reference_mmd"),
        }
        out["scfid_ratio"] = out["scfid"] / out["reference_scfid"] if out["reference_scfid"] else None
        return out


TASK = GenerationFidelity()
