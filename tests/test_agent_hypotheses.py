"""Hypothesis mode on the Kang data: ranked ligand-receptor routes whose evidence matches the data, knowledge
sources and a proposed experiment, in the report and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c2s_agent.agent import runs
from c2s_agent.agent.report import hypotheses_markdown
from c2s_agent.config import Settings
from c2s_agent.tl.hypotheses import CONFIDENCE_RULE, focus_condition

QUESTION = "How might monocytes signal to T cells after interferon stimulation?"
MONO = ["CD14 Mono", "CD16 Mono"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # the knowledge index is shared with the default cache (built once); runs go to a temporary folder
    settings = Settings(runs_dir=tmp_path_factory.mktemp("runs"))
    return runs.ask(QUESTION, "demo", settings, hypothesize=True)


def _mean(adata, gene, cells):
    x = adata[cells, gene].X
    return float(np.asarray(x.todense() if hasattr(x, "todense") else x).mean())


def test_routes_are_ranked_with_evidence_that_matches_the_data(run, kang):
    from c2s_agent.data import prepare

    state = run["state"]
    hyps = state["hypotheses"]
    assert hyps, "a significant route should give at least one hypothesis"
    assert [h.id for h in hyps] == [f"h{i + 1}" for i in range(len(hyps))]
    assert [h.confidence for h in hyps] == sorted((h.confidence for h in hyps), reverse=True)
    # hypothesis mode scored both conditions to compare stim with ctrl
    lr = next(r for r in run["results"].values() if r.tool == "score_ligand_receptor")
    assert "condition_value" not in lr.args and state["focus"] == {"s1": "stim"}
    top = hyps[0]
    assert "after stim (compared with ctrl)" in top.statement
    ligand = top.statement.split(" through ")[1].split(" -> ")[0]
    # the top route's ligand is higher in stimulated than in control monocytes, as its evidence says
    data = prepare(kang)
    mono = data.obs.cell_type.isin(MONO).to_numpy()
    stim = (data.obs.condition == "stim").to_numpy()
    up = _mean(data, ligand, mono & stim) - _mean(data, ligand, mono & ~stim)
    assert up > 0.3, f"{ligand} should rise in stimulated monocytes (got {up:+.2f})"
    assert top.confidence_parts["change"] > 0.3
    for h in hyps:
        kinds = {e.kind for e in h.evidence}
        assert {"data", "knowledge"} <= kinds
        assert all(e.step == "s1" for e in h.evidence if e.kind == "data")
        assert any(e.source and "CellPhoneDB" in e.source for e in h.evidence)
        assert h.confidence == pytest.approx(round(sum(h.confidence_parts.values()) / 3, 2))
        assert "block" in h.experiment and "knock out" in h.experiment


def test_report_and_hypotheses_file(run):
    rd = Path(run["run_dir"])
    md = (rd / "report.md").read_text()
    saved = json.loads((rd / "hypotheses.json").read_text())
    assert saved == [h.model_dump() for h in run["state"]["hypotheses"]]
    assert "## Hypotheses" in md and CONFIDENCE_RULE in md
    for h in saved:
        assert f'<a id="hyp-{h["id"]}"></a>' in md and h["statement"] in md
    assert "(#step-s1)" in md.split("## Hypotheses")[1].split("## Plan")[0]
    assert "Each needs the proposed experiment" in md


def test_focus_condition_and_no_hypothesis_source(tmp_path):
    assert focus_condition(["ctrl", "stim"]) == ("stim", "ctrl")
    assert focus_condition(["ctrl", "stim"], "ctrl") == ("ctrl", "stim")
    assert focus_condition(["all"]) == ("all", None)
    out = runs.ask("Which genes mark the NK cells?", "demo", Settings(runs_dir=tmp_path / "runs"), hypothesize=True)
    assert out["state"]["hypotheses"] == [] and "No hypothesis could be built" in hypotheses_markdown([])
    assert "No hypothesis could be built" in (out["run_dir"] / "report.md").read_text()


def test_cli_hypothesize_prints_ranked_hypotheses(tmp_path):
    env = {**os.environ, "C2S_RUNS_DIR": str(tmp_path / "runs"), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "c2s"), "hypothesize", QUESTION, "--data", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    shown = out.stdout + out.stderr  # rich output goes to the console (stderr); the report path to stdout
    assert "h1 (" in shown and "after stim (compared with ctrl)" in shown
    report = Path(out.stdout.strip().splitlines()[-1])
    assert report.name == "report.html" and "Hypotheses" in report.read_text()
