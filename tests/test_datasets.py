"""Datasets as they come: on every bundled dataset (different column names, organisms and normalisations) the
agent answers with the dataset's own columns, matches a user's words to its labels, and no step fails."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent.agent import runs
from c2s_agent.agent.dataset import DatasetView
from c2s_agent.conventions import MOUSE, find_columns
from c2s_agent.data import read

#: dataset -> (its cell-type column, a hypothesis question naming two of its groups, the groups it names)
DATASETS = {
    "demo": (
        "cell_type",
        "How might monocytes signal to T cells after interferon stimulation?",
        (["CD14 Mono", "CD16 Mono"], ["CD4 Memory T", "CD4 Naive T", "CD8 T", "T activated"]),
    ),
    "pbmc68k": ("bulk_labels", "How might monocytes signal to NK cells?", (["CD14+ Monocyte"], ["CD56+ NK"])),
    "cellbench": ("cell_line", "How might A549 cells signal to H1975 cells?", (["A549"], ["H1975"])),
    "moor2018": ("zone_label", "How might crypt cells signal to V6 cells?", (["crypt"], ["V6"])),
    "visium": ("leiden", "How might cluster 0 signal to cluster 2?", (["0"], ["2"])),
}


def _ok(out) -> dict:
    state = out["state"]
    assert not state.get("failures"), state.get("failures")
    assert state["status"] == "done" and out["results"]
    return out["results"]


@pytest.mark.parametrize("data", list(DATASETS))
def test_roles_and_species_are_found(data):
    adata = read(data, backed=True)
    roles = find_columns(adata.obs)
    assert roles.groups() == DATASETS[data][0]
    assert roles.condition == ("condition" if data == "demo" else None)
    assert (DatasetView.from_adata(adata).species.name == MOUSE) == (data in ("moor2018", "visium"))


@pytest.mark.slow
@pytest.mark.parametrize("data", list(DATASETS))
def test_cell_types_and_their_markers_from_the_datasets_own_labels(data, settings):
    col = DATASETS[data][0]
    out = runs.ask("What cell types are in this dataset and which genes mark them?", data, settings)
    results = _ok(out)
    markers = next(r for r in results.values() if r.tool == "marker_genes")
    assert markers.args["groupby"] == col
    assert set(markers.output["markers"]) == {
        str(v)
        for v in read(data, backed=True).obs[col].astype(str).unique()
        if (read(data, backed=True).obs[col].astype(str) == v).sum() >= 3
    }
    genes = [g for gs in markers.output["markers"].values() for g in gs]
    assert genes and not [
        g for g in genes if g.upper().startswith(("RPL", "RPS", "MRPL", "MRPS", "MT-"))
    ]  # no housekeeping


@pytest.mark.slow
@pytest.mark.parametrize("data", list(DATASETS))
def test_hypotheses_between_the_datasets_own_groups(data, settings):
    col, question, (senders, receivers) = DATASETS[data]
    out = runs.ask(question, data, settings, hypothesize=True)
    results = _ok(out)
    lr = next(r for r in results.values() if r.tool == "score_ligand_receptor")
    assert lr.args["groupby"] == col
    assert sorted(lr.args["source"]) == sorted(senders) and sorted(lr.args["target"]) == sorted(receivers)
    assert (out["run_dir"] / "hypotheses.json").exists()


@pytest.mark.slow
def test_conditions_compared_on_the_demo(settings):
    out = runs.ask("How do the groups differ between conditions?", "demo", settings)
    results = _ok(out)
    step = next(iter(results.values()))
    assert step.tool == "marker_genes" and step.args["groupby"] == "condition"
    assert set(step.output["markers"]) == {"ctrl", "stim"}
    assert "ISG15" in step.output["markers"]["stim"]  # the interferon response


def test_gene_names_that_collide_after_upper_casing_are_noted_not_fatal(settings, tmp_path):
    adata = read("moor2018")[:200].copy()
    first = adata.var_names[0]
    adata.var_names = [first.upper() if i == 1 else g for i, g in enumerate(adata.var_names)]  # e.g. Pisd / PISD
    path = tmp_path / "collide.h5ad"
    adata.write_h5ad(path)
    view = DatasetView.from_adata(adata)
    assert any("collide after upper-casing" in n.text for n in view.notes)
    out = runs.ask("Convert the cells into cell sentences", str(path), settings)
    _ok(out)
    assert np.isfinite(out["results"]["s1"].output["median_length"])


def test_describe_tables_each_column_with_its_role(kang):
    from c2s_agent import tl

    d = tl.describe(kang, "condition")
    table = d.table()
    assert d.breakdown == {"ctrl": 1000, "stim": 1000} and list(table.index) == list(kang.obs.columns)
    assert table.loc["cell_type", "role"] == "cell_type" and table.loc["cell_type", "values"] == 13
    assert table.loc["orig.ident", "role"] == "sample" and table.loc["nCount_RNA", "values"] == "numeric"
    assert table.loc["condition", "examples"] == "ctrl, stim"
