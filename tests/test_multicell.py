"""Multi-cell reasoning with knowledge on the Kang data and the embedded model: groups, the interactions a group
expresses (from the knowledge index), prompts with and without them, the agent tool and the evaluation task."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent.config import Settings
from c2s_agent.knowledge import multicell as mc


@pytest.fixture(scope="module")
def model():
    import torch

    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model()


@pytest.fixture(scope="module")
def records():
    from c2s_agent.knowledge.index import load

    return mc.lr_records(load(Settings(), progress=False))  # the shared knowledge index (built once per cache)


@pytest.fixture(scope="module")
def mono(kang):
    """Stimulated CD14 monocytes and CD4 naive T cells (60 each)."""
    obs = kang.obs
    keep = [
        np.flatnonzero(((obs.cell_type == t) & (obs.condition == "stim")).to_numpy())[:60]
        for t in ("CD14 Mono", "CD4 Naive T")
    ]
    return kang[np.concatenate(keep)].copy()


def test_neighbourhoods_are_the_nearest_cells_centre_first(kang):
    groups = mc.neighbourhoods(kang, 5, use_rep="X_umap_2d", centers=[0, 7, 1999])
    X = np.asarray(kang.obsm["X_umap_2d"])
    for g, c in zip(groups, [0, 7, 1999]):
        assert g.positions[0] == c and len(set(g.positions)) == 5 and g.label == kang.obs_names[c]
        d = np.linalg.norm(X - X[c], axis=1)
        assert d[list(g.positions)].max() <= np.sort(d)[4] + 1e-6  # no cell outside the group is nearer
    with pytest.raises(Exception, match="use_rep 'X_nope'"):
        mc.neighbourhoods(kang, 3, use_rep="X_nope")


def test_cluster_groups_partition_each_cluster(kang):
    groups = mc.clusters(kang, "cell_type", 4, values=["pDC", "Eryth"])
    for v, n in (("pDC", 15), ("Eryth", 5)):
        cells = [p for g in groups if g.label == v for p in g.positions]
        assert len(cells) == len(set(cells)) and set(cells) <= set(np.flatnonzero(kang.obs.cell_type == v))
        assert len(cells) == n - (n % 4 if n % 4 < 2 else 0)  # a last chunk of 1 cell (< half of 4) is dropped
    with pytest.raises(Exception, match="not values of obs"):
        mc.clusters(kang, "cell_type", 4, values=["Neuron"])


def test_group_interactions_are_expressed_in_the_group(mono, records, model):
    from c2s_agent.data import prepare

    assert len(records) > 2000 and all(r.source.startswith("CellPhoneDB") for r in records)
    groups = mc.clusters(mono, "cell_type", 20, seed=1)
    found = mc.group_interactions(mono, groups, records, model.genes, min_fraction=0.5, max_interactions=6)
    X = prepare(mono).to_df()
    X.columns = X.columns.str.upper()
    known = set(model.genes)
    assert sum(map(len, found)) > 0
    for g, pairs in zip(groups, found):
        assert len(pairs) <= 6
        cells = X.iloc[list(g.positions)]
        scores = []
        for p in pairs:
            lig, rec = list(p.ligand_genes), list(p.receptor_genes)
            assert set(lig + rec) <= known
            assert (cells[lig + rec] > 0).mean().min() >= 0.5  # every subunit in at least half the cells
            scores.append((cells[lig].mean().min() + cells[rec].mean().min()) / 2)
        assert scores == sorted(scores, reverse=True)
    # without the vocabulary restriction more pairs qualify, never fewer
    free = mc.group_interactions(mono, groups, records, None, min_fraction=0.5, max_interactions=1000)
    strict = mc.group_interactions(mono, groups, records, model.genes, min_fraction=0.5, max_interactions=1000)
    assert all(len(a) >= len(b) for a, b in zip(free, strict)) and sum(map(len, free)) > sum(map(len, strict))


def test_prompts_with_and_without_knowledge(mono, records, model):
    groups = mc.neighbourhoods(mono, 4, use_rep="X_umap_2d", centers=range(0, 120, 12))
    df = mc.reason(mono, groups, model, records)
    p0, p1 = df.attrs["p_without"], df.attrs["p_with"]
    assert p0.shape == (10, len(model.known_labels)) and np.allclose(p0.sum(1), 1) and np.allclose(p1.sum(1), 1)
    none = (df.n_interactions == 0).to_numpy()
    assert none.any() and (~none).any()
    # a group with nothing to inject gets the same prompt twice
    assert np.allclose(p0[none], p1[none], atol=1e-6) and (df.kl_with_vs_without[none] < 1e-6).all()
    assert (df.kl_with_vs_without[~none] > 1e-4).all()
    np.testing.assert_allclose(df.kl_with_vs_without, (p1 * np.log(p1 / p0)).sum(1), rtol=1e-5, atol=1e-9)
    # the scores are the model's label log-likelihoods after the multi-cell prompt, knowledge first
    g, inter = groups[int(np.flatnonzero(~none)[0])], df.interactions[~none].iloc[0].split("; ")
    texts, _, _ = model.sentences(mono[list(g.positions)], 40)
    prompt = model.multicell_prompt(texts, range(4), inter, 40)
    assert prompt.startswith(f"Known interactions: {'; '.join(inter)} .\nCells:\nCell 1: ")
    cont = [model.prompts.response("cell_type", label=model._token(x)) for x in model.known_labels]
    lp = model.backend.score_labels([prompt], cont).logprobs[0]
    np.testing.assert_allclose(
        np.exp(lp - lp.max()) / np.exp(lp - lp.max()).sum(), p1[int(np.flatnonzero(~none)[0])], rtol=1e-4
    )


def test_summary_counts_answers_changes_and_agreement(mono, records, model):
    from collections import Counter

    groups = mc.clusters(mono, "cell_type", 4)[::3]
    df = mc.reason(mono, groups, model, records)
    s = mc.multicell_summary(mono, df, "cell_type", top=3)
    assert s.n_groups == len(df) == 10 and sum(s.answers_without.values()) == sum(s.answers_with.values()) == 10
    assert s.n_groups_with_interactions == int((df.n_interactions > 0).sum())
    assert s.fraction_changed == pytest.approx(df.changed.mean()) and s.mean_kl == pytest.approx(
        df.kl_with_vs_without.mean()
    )
    assert df.majority_cell_type.tolist() == [g.label for g in groups]  # a cluster's cells share its label
    assert s.accuracy_with == pytest.approx((df.with_knowledge == df.majority_cell_type).mean())
    counted = Counter(p for x in df.interactions for p in x.split("; ") if p)
    assert len(s.top_interactions) == 3 and counted[s.top_interactions[0]] == max(counted.values())
    unlabelled = mc.multicell_summary(mono, df)
    assert unlabelled.compared_with is None and unlabelled.accuracy_without is None


def test_multicell_tool_in_a_run_reports_the_change_and_how(tmp_path):
    import pandas as pd

    from c2s_agent.agent import runs
    from c2s_agent.data import read

    out = runs.ask(
        "Reason over 12 monocyte neighbourhoods with interaction knowledge",
        "demo",
        Settings(runs_dir=tmp_path / "runs"),
    )
    res = out["results"]["s1"]
    assert res.tool == "multicell_reasoning"
    assert res.args == {
        "groupby": "cell_type",
        "groups": ["CD14 Mono", "CD16 Mono"],
        "max_groups": 12,
        "mode": "neighbourhood",  # named by the question ("neighbourhoods")
    }
    o = res.output
    table = pd.read_csv(out["run_dir"] / next(a.path for a in res.artefacts if a.path.endswith("multicell.csv")))
    assert o["n_groups"] == 12 == len(table) and sum(o["answers_with"].values()) == 12
    assert o["fraction_changed"] == pytest.approx(table.changed.mean())
    assert o["n_groups_with_interactions"] == int((table.n_interactions > 0).sum())
    cell_type = read("demo").obs.cell_type.astype(str)
    assert all(cell_type[c.split(",")[0]] in ("CD14 Mono", "CD16 Mono") for c in table.cells)  # centred on monocytes
    assert "trained on single-cell prompts only" in res.method
    assert f"How step s1 (multicell_reasoning) was made: {res.method}." in (out["run_dir"] / "report.md").read_text()


def test_evaluation_task_rows_and_summary(tmp_path):
    from c2s_agent.evaluation.suite import Cell
    from c2s_agent.evaluation.tasks import get_task, model_meta, read_obs

    task = get_task("multicell_knowledge")
    params = task.check_params({"limit": 6, "chunk_size": 3}, None)
    cell = Cell(task="multicell_knowledge", dataset="kang2018", model="embedded", prompt_set="default", params=params)
    settings = Settings(runs_dir=tmp_path)
    items = task.items(cell, settings)
    assert [len(it["groups"]) for it in items] == [3, 3] and all(len(g) == 4 for it in items for g in it["groups"])
    obs = read_obs("kang2018")
    test = set(model_meta(cell, settings)["split"]["test_obs_names"])
    assert all(obs.index[p] in test for it in items for g in it["groups"] for p in g)  # held-out cells only
    rows = task.run(cell, items, settings)
    summary = task.summarise(cell, rows)
    groups = [g for r in rows for g in r["groups"]]
    assert summary["n_groups"] == 6
    assert summary["accuracy_with"] == np.mean([g["with"] == g["truth"] for g in groups])
    assert summary["fraction_changed"] == np.mean([g["with"] != g["without"] for g in groups])
    assert summary["n_fixed"] - summary["n_broken"] == sum(g["with"] == g["truth"] for g in groups) - sum(
        g["without"] == g["truth"] for g in groups
    )
    # cluster groups: held-out cells of one cluster each
    by = cell.model_copy(update={"params": task.check_params({"groupby": "seurat_clusters", "limit": 6}, None)})
    clusters = obs.seurat_clusters.astype(str).to_numpy()
    for g in [g for it in task.items(by, settings) for g in it["groups"]]:
        assert len(set(clusters[g])) == 1 and all(obs.index[p] in test for p in g)


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        ({"mode": "tissue"}, ["mode", "'neighbourhood' or 'cluster'"]),
        ({"mode": "cluster"}, ["groupby", "is needed to reason over clusters"]),
        ({"values": ["CD14 Mono"]}, ["values", "without groupby"]),
        ({"groupby": "cell_type", "values": ["Neuron"]}, ["Neuron", "not values of obs['cell_type']"]),
        ({"groupby": "tissue"}, ["tissue", "is not a column"]),
        ({"max_groups": 0}, ["max_groups", ">= 1"]),
    ],
)
def test_bad_multicell_arguments_are_named(mono, model, kwargs, needles):
    from c2s_agent.errors import InputError

    with pytest.raises(InputError) as err:
        mc.multicell(mono, model, **kwargs)
    assert all(n in str(err.value) for n in needles), str(err.value)
