"""Saving a run's slots as per-step deltas: only what changed is written, and replaying the deltas on the
normalised input gives back every slot (added, changed, removed) exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from c2s_agent.agent.slots import apply_deltas, fingerprint, save_delta
from c2s_agent.data import prepare, read


def _fresh():
    return prepare(read("demo"))


def test_deltas_replay_to_the_same_slots(tmp_path):
    a = _fresh()
    saved = fingerprint(a)
    assert save_delta(a, tmp_path, saved) == saved and not list(tmp_path.glob("*.h5"))  # nothing changed

    a.obs["c2s_cell_type"] = pd.Categorical(np.where(np.arange(a.n_obs) % 2, "B", "NK"))
    a.obsm["X_c2s"] = np.random.default_rng(0).normal(size=(a.n_obs, 8)).astype(np.float32)
    a.uns["c2s_markers"] = {
        "groupby": "cell_type",
        "table": pd.DataFrame({"gene": ["CD14", "LYZ"], "score": [3.0, 2.5]}),
    }
    saved = save_delta(a, tmp_path, saved)
    a.uns["c2s_markers"]["groupby"] = "condition"  # changed in place
    del a.obsm["X_c2s"]
    a.var["c2s_gene"] = a.var_names.str.upper()
    saved = save_delta(a, tmp_path, saved)
    assert len(list(tmp_path.glob("*.h5"))) == 2

    b = _fresh()
    apply_deltas(b, tmp_path)
    assert fingerprint(b) == fingerprint(a)
    assert "X_c2s" not in b.obsm and b.uns["c2s_markers"]["groupby"] == "condition"
    assert list(b.obs["c2s_cell_type"].cat.categories) == ["B", "NK"]


def test_a_delta_holds_only_what_changed(tmp_path):
    import h5py

    a = _fresh()
    saved = fingerprint(a)
    a.obs["c2s_confidence"] = np.linspace(0, 1, a.n_obs)
    save_delta(a, tmp_path, saved)
    with h5py.File(next(tmp_path.glob("*.h5"))) as f:
        assert set(f) == {"obs"} and list(f["obs"].attrs["column-order"]) == ["c2s_confidence"]
