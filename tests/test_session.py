"""Sessions and follow-up questions on the demo data: ``c2s.ask`` on an AnnData in memory, ``run.ask`` follow-ups
that reuse the session's data state (the ledger shows no re-reading and no step run again), references to earlier
turns ("those genes", "now the same for the B cells", "that comparison"), ``c2s ask --session`` in a new process,
and a follow-up turn killed with -9 and resumed."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import c2s_agent as c2s
from c2s_agent.agent import runs
from c2s_agent.agent.followup import FollowUpPlanner, Turn
from c2s_agent.agent.session import Session
from c2s_agent.errors import InputError

C2S = str(Path(sys.executable).parent / "c2s")
SENTENCES = "Make cell sentences with the top 60 genes"
RECONSTRUCT = "How well can expression be reconstructed from the top 60 genes?"


def _ledger(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM calls ORDER BY started, step_id, seq")]
    db.close()
    return rows


def _tools_run(run_dir: Path) -> list[str]:
    return [r["name"] for r in _ledger(run_dir) if r["kind"] == "tool"]


def _loads(run_dir: Path) -> list[str]:
    """How the run got its data: 'read' (from the file), 'in-memory AnnData' or 'session state'."""
    return [r["name"] for r in _ledger(run_dir) if r["kind"] == "data"]


def _env(settings, **extra):
    env = {**os.environ, "C2S_RUNS_DIR": str(settings.runs_dir), "C2S_CACHE_DIR": str(settings.cache_dir), **extra}
    env.pop("C2S_PLUGINS", None)
    return env


def test_ask_in_memory_then_follow_up_reuses_the_data_state(settings, kang):
    adata = kang.copy()
    run = c2s.ask(adata, SENTENCES, settings=settings, progress=False)
    assert run.status == "done" and [s.tool for s in run.plan.steps] == ["cell_sentences"]
    assert adata.obsm["c2s_rank_idx"].shape == (2000, 60)  # the result is in the caller's AnnData
    assert (adata.X != kang.X).nnz == 0  # ... and its X is left alone
    assert run.steps[0].output["top_k"] == 60 and run.figures and run.paths["report_html"].exists()
    html = run._repr_html_()
    assert "<html" not in html and html.count("data:image/png;base64,") >= 1 and "cell_sentences" in html

    follow = run.ask(RECONSTRUCT, progress=False)
    m = follow.manifest
    assert (m["session"], m["turn"], m["parent"]) == (run.id, 2, run.id)
    assert _tools_run(follow.run_dir) == ["reconstruct_expression"]  # the sentences are not made again
    assert _loads(run.run_dir) == ["in-memory AnnData"] and _loads(follow.run_dir) == ["session state"]
    assert 0.5 < follow.steps[0].output["r2"] <= 1
    assert "c2s_reverse_fit" in adata.uns

    assert [r.id for r in c2s.runs(settings)] == [follow.id, run.id]
    again = c2s.Run.load(follow.id, settings)
    assert [t.id for t in again.turns] == [run.id, follow.id]
    assert again.steps[0].output == follow.steps[0].output
    with pytest.raises(InputError, match="was asked of an AnnData in memory"):
        again.ask("Which genes mark each cell type?")  # a new process has not got that AnnData


def test_follow_up_in_a_new_process_rebuilds_the_state_from_earlier_turns(settings):
    first = Session(settings, data="demo").ask(SENTENCES)
    p = subprocess.run(
        [C2S, "ask", "--session", first["run_id"], RECONSTRUCT],
        capture_output=True,
        text=True,
        env=_env(settings),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    rd = Path(p.stdout.strip().splitlines()[-1]).parent
    assert _tools_run(rd) == ["reconstruct_expression"] and _loads(rd) == ["read"]
    data_row = next(r for r in _ledger(rd) if r["kind"] == "data")
    assert '"earlier_turns": 1' in data_row["arguments"]  # the input, plus the slots turn 1 saved
    assert runs.working_data(settings, rd.name).uns["c2s_reverse_fit"]
    p = subprocess.run(
        [C2S, "ask", "--session", rd.name, "--data", "pbmc68k", "Describe the dataset"],
        capture_output=True,
        text=True,
        env=_env(settings),
        timeout=300,
    )
    assert p.returncode == 2 and "differs from the session's data" in p.stderr


@pytest.fixture(scope="module")
def marker_session(tmp_path_factory):
    """Three turns on the demo data: a comparison (stimulated against control NK cells), markers of NK cells
    (top 8), and "the same for the B cells"."""
    from c2s_agent.config import Settings

    root = tmp_path_factory.mktemp("markers")
    settings = Settings(runs_dir=root / "runs", cache_dir=root / "cache")
    session = Session(settings, data="demo")
    outs = [
        session.ask("Which genes change in NK cells between stimulated and control?"),
        session.ask("Which genes are specific to NK cells? Show the top 8."),
        session.ask("now the same for the B cells"),
    ]
    return settings, session, outs


def test_the_same_for_other_cells_reruns_the_previous_steps_on_them(marker_session):
    _, _, (_, nk, b) = marker_session
    assert nk["results"]["s1"].args == {"groupby": "cell_type", "groups": ["NK"], "n_genes": 8}
    assert b["run"]["status"] == "done" and _loads(b["run_dir"]) == ["session state"]
    assert [(r.tool, r.args) for r in b["results"].values()] == [  # "B cells": the B and activated B labels
        ("marker_genes", {"groupby": "cell_type", "groups": ["B", "B Activated"], "n_genes": 8})
    ]
    markers = b["results"]["s1"].output["markers"]
    assert len(markers["B"]) == 8 and "MS4A1" in markers["B"]
    note = next(n.text for n in b["state"]["plan"].notes if n.kind == "assumption")
    assert nk["run_id"] in note and "groups NK -> B, B Activated" in note


def _planner(settings, session) -> tuple[FollowUpPlanner, dict, object]:
    from c2s_agent import registry
    from c2s_agent.agent.dataset import DatasetView
    from c2s_agent.agent.planners import get_planner

    turns = [Turn.load(Path(settings.runs_dir) / t["id"]) for t in session.turns()]
    view = DatasetView.from_adata(runs.working_data(settings, turns[-1].run_id))
    return FollowUpPlanner(get_planner(settings), turns), registry.tools(settings), view


def test_references_to_earlier_turns_are_resolved(marker_session):
    settings, session, (stim, _, b) = marker_session
    assert stim["results"]["s1"].args == {"groupby": "condition", "within": ["NK"]}
    planner, tools, view = _planner(settings, session)
    markers = b["results"]["s1"].output["markers"]
    b_markers = list(dict.fromkeys(markers["B"] + markers["B Activated"]))

    genes = planner.plan("Which gene sets contain those genes?", tools, view)
    assert genes.ok and genes.steps[0].args["genes"] == b_markers  # the most recent step's genes
    assert any("those genes" in n.text and b["run_id"] in n.text for n in genes.notes)

    inherited = planner.plan("How do they respond to interferon?", tools, view)
    step = inherited.steps[0]
    assert inherited.ok and step.tool == "marker_genes" and step.args["groupby"] == "condition"
    assert step.args["within"] == ["B", "B Activated"]  # "they": the previous turn's cells

    they = planner.plan("Which genes mark them? Show the top 3.", tools, view)
    assert they.ok and they.steps[0].args == {"groupby": "cell_type", "groups": ["B", "B Activated"], "n_genes": 3}

    compared = planner.plan("Which genes drive that comparison? Show the top 3.", tools, view)
    assert compared.ok and compared.steps[0].args == {"groupby": "condition", "within": ["NK"], "n_genes": 3}
    assert any(stim["run_id"] in n.text for n in compared.notes)


def test_a_step_the_session_already_ran_is_not_run_again(settings):
    session = Session(settings, data="demo")
    session.ask(SENTENCES)
    out = session.ask("Make cell sentences with the top 60 genes, then how well can expression be reconstructed?")
    assert _tools_run(out["run_dir"]) == ["reconstruct_expression"]
    skipped = [n.text for n in out["state"]["plan"].notes if n.kind == "skipped"]
    assert len(skipped) == 1 and "cell_sentences not run again" in skipped[0]


def _wait_for_ok_steps(runs_dir: Path, exclude: set[str], n: int, proc) -> Path | None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        for rd in (p.parent for p in runs_dir.glob("*/ledger.sqlite") if p.parent.name not in exclude):
            try:
                if sum(r["kind"] == "tool" and r["status"] == "ok" for r in _ledger(rd)) >= n:
                    return rd
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    return None


def test_follow_up_killed_mid_turn_resumes_with_the_session_state(settings):
    first = Session(settings, data="demo").ask(SENTENCES)
    q = "Describe the dataset, then fit the reverse transform with the top 60 genes, then find markers per cell type"
    proc = subprocess.Popen(
        [C2S, "ask", "--session", first["run_id"], q],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    rd = _wait_for_ok_steps(Path(settings.runs_dir), {first["run_id"]}, 1, proc)
    time.sleep(random.Random(7).uniform(0, 0.3))  # a seeded moment after the first step
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert rd is not None, "the follow-up never finished its first step"
    before = {r["step_id"]: r["started"] for r in _ledger(rd) if r["kind"] == "tool" and r["status"] == "ok"}
    p = subprocess.run(
        [C2S, "chat", "--session", first["run_id"]],
        input="/quit\n",
        capture_output=True,
        text=True,
        env=_env(settings),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "resuming it" in p.stderr
    rows = [r for r in _ledger(rd) if r["kind"] == "tool"]
    assert [r["name"] for r in rows] == ["describe_dataset", "reconstruct_expression", "marker_genes"]
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["started"] == before[r["step_id"]] for r in rows if r["step_id"] in before)  # not run again
    fit = next(r for r in rows if r["name"] == "reconstruct_expression")
    assert fit["step_id"] not in before or before[fit["step_id"]] == fit["started"]
    assert runs.load_run(settings, rd.name)[1].status == "done"
    assert np.isfinite(Session.open(settings, rd.name).turns()[-1]["timings"]["total_s"])
