"""Captions for cell groups on the Kang data, composed from markers, predicted types, Cell Ontology definitions
and curated interactions, and saying how they were made."""

from __future__ import annotations

import pytest

from c2s_agent.agent import runs
from c2s_agent.config import Settings
from c2s_agent.tl.captions import METHOD, caption_groups


@pytest.fixture(scope="module")
def kb():
    from c2s_agent.knowledge.index import load

    return load(Settings(), progress=False)  # the shared knowledge index (built once per cache)


def test_captions_cite_markers_ontology_and_predicted_types(kang, kb):
    from c2s_agent.data import prepare

    data = prepare(kang)
    data.obs["c2s_cell_type"] = data.obs.cell_type.astype(str).replace({"CD16 Mono": "CD14 Mono"})  # a known call
    caps = {c.group: c for c in caption_groups(data, "cell_type", kb, n_genes=5)}
    assert set(caps) == set(data.obs.cell_type.astype(str).unique()) - {
        g for g, n in data.obs.cell_type.value_counts().items() if n < 3
    }
    mono = caps["CD14 Mono"]
    assert "CL:0002057" in mono.ontology and "CD14-positive, CD16-negative classical monocyte" in mono.ontology
    assert caps["CD16 Mono"].predicted_type == "CD14 Mono" and caps["CD16 Mono"].predicted_fraction == 1.0
    assert "FCGR3A" in caps["CD16 Mono"].markers  # CD16 is FCGR3A
    assert "CL:0000624" in caps["CD4 Naive T"].ontology  # CD4-positive, alpha-beta T cell
    for c in caps.values():
        assert c.method == METHOD and c.text.startswith(f"{c.group} ({c.n_cells} cells) is marked by {c.markers[0]}")
        assert all(" binds " in i or " interacts with " in i for i in c.interactions)  # CellPhoneDB pair records


def test_caption_tool_in_a_run(tmp_path):
    out = runs.ask("Write a caption for every cell type", "demo", Settings(runs_dir=tmp_path / "runs"))
    res = out["results"]["s1"]
    assert res.tool == "caption_groups" and res.output["method"] == METHOD
    assert "no language model generated the text" in (out["run_dir"] / "report.md").read_text()
