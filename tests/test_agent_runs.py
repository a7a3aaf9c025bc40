"""Runs of the agent graph on the demo data: run directory, ledger, evidence-linked reports, re-planning after
a failed step, the CLI, the third-party plugin used by entry point alone, and resume after kill -9."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from c2s_agent import hookimpl, plugins
from c2s_agent.agent import runs
from c2s_agent.config import Settings
from c2s_agent.errors import InputError
from c2s_agent.tools import Tool

C2S = str(Path(sys.executable).parent / "c2s")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def asettings(tmp_path, cache_dir):
    return Settings(runs_dir=tmp_path / "runs", cache_dir=cache_dir)


def _env(settings, **extra):
    env = {
        **os.environ,
        "C2S_RUNS_DIR": str(settings.runs_dir),
        "C2S_CACHE_DIR": str(settings.cache_dir),
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    env.pop("C2S_PLUGINS", None)
    return {**env, **extra}


def _ledger(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM calls ORDER BY step_id, seq")]
    db.close()
    return rows


def test_run_writes_plan_ledger_artefacts_and_linked_reports(asettings):
    out = runs.ask(
        "Make cell sentences with the top 60 genes, then how well can expression be reconstructed?", "demo", asettings
    )
    rd, run = out["run_dir"], out["run"]
    assert run["status"] == "done"
    plan = json.loads((rd / "plan.json").read_text())
    assert [s["tool"] for s in plan["steps"]] == ["cell_sentences", "reconstruct_expression"]
    rows = _ledger(rd)
    tool_rows = [r for r in rows if r["kind"] == "tool"]
    assert [(r["step_id"], r["name"], r["status"]) for r in tool_rows] == [
        ("s1", "cell_sentences", "ok"),
        ("s2", "reconstruct_expression", "ok"),
    ]
    assert all(r["duration_s"] > 0 and r["output_bytes"] > 0 for r in tool_rows)
    assert json.loads(tool_rows[0]["arguments"]) == {"top_k": 60}
    assert [r["kind"] for r in rows if r["step_id"] == "plan"] == ["planner"]
    result = json.loads(tool_rows[1]["result"])
    assert 0.5 < result["output"]["r2"] <= 1
    # the working data holds the slots the steps added: one delta per step that changed any
    from c2s_agent.agent.runs import working_data

    assert len(list((rd / "slots").glob("*.h5"))) == 2
    assert working_data(asettings, rd.name).obsm["c2s_rank_idx"].shape == (2000, 60)
    md = (rd / "report.md").read_text()
    answer = md.split("## Answer")[1].split("## Plan")[0]
    statements = [line for line in answer.splitlines() if line.startswith("- ")]
    assert len(statements) == 2 and all(re.search(r"\(\[step s\d\]\(#step-s\d\)\)$", s) for s in statements)
    assert '<a id="step-s1"></a>' in md and '<a id="step-s2"></a>' in md
    assert "## Cost" in md and "## Limitations" in md
    html = (rd / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2 and 'src="artefacts/' not in html
    assert 'href="#step-s2"' in html and 'id="step-s2"' in html
    assert [r["id"] for r in runs.list_runs(asettings)] == [run["id"]]
    assert len(runs.show_run(asettings, run["id"])["ledger"]) == len(rows)


def test_unanswerable_question_runs_no_tool(asettings):
    out = runs.ask("What is the stock price of Illumina?", "demo", asettings)
    assert out["run"]["status"] == "unanswerable"
    assert [r["kind"] for r in _ledger(out["run_dir"])] == ["data", "planner"]  # the data read, a plan, no tool
    assert "No installed tool can do this" in (out["run_dir"] / "report.md").read_text()


class _In(BaseModel):
    pass


class _Out(BaseModel):
    n: int


def _fail(ctx, args):
    raise InputError("spatial coordinates", "the dataset has none", "give a dataset with obsm['spatial']")


class SpatialPlugin:
    @hookimpl
    def register_tools(self, register):
        register(
            Tool(
                name="spatial_neighbourhoods",
                description="Find spatial neighbourhoods of cells in tissue "
                "coordinates and the rank genes of each neighbourhood.",
                examples=["Which spatial neighbourhoods do the cells form in the tissue?"],
                input_model=_In,
                output_model=_Out,
                run=_fail,
                produces=("obsm:spatial_nbhd",),
            )
        )
        register(
            Tool(
                name="nbhd_genes",
                description="Summarise the genes of each spatial neighbourhood.",
                examples=["Summarise the genes of each spatial neighbourhood"],
                input_model=_In,
                output_model=_Out,
                run=_fail,
                requires=("obsm:spatial_nbhd",),
            )
        )


def test_failed_step_is_replanned_and_reported(asettings):
    plugins.setup(None)
    plugins.pm.register(SpatialPlugin(), name="spatial-test-plugin")
    try:
        out = runs.ask(
            "Find spatial neighbourhoods of the cells in the tissue, then describe the dataset", "demo", asettings
        )
    finally:
        plugins.pm.unregister(name="spatial-test-plugin")
    state, rd = out["state"], out["run_dir"]
    assert state["failures"][0].tool == "spatial_neighbourhoods"
    assert "the dataset has none" in state["failures"][0].error
    assert "describe_dataset" in [r.tool for r in out["results"].values()]
    statuses = {(r["name"], r["status"]) for r in _ledger(rd) if r["kind"] == "tool"}
    assert ("spatial_neighbourhoods", "error") in statuses and ("describe_dataset", "ok") in statuses
    md = (rd / "report.md").read_text()
    assert "failed" in md.split("## Limitations")[1]


def test_cli_dry_run_json_and_bad_input(asettings):
    env = _env(asettings)
    p = subprocess.run(
        [
            C2S,
            "ask",
            "Which genes are specific to CD14 Mono cells? Show the top 8.",
            "--data",
            "demo",
            "--dry-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["ok"] and plan["steps"] == [
        {"id": "s1", "tool": "marker_genes", "args": {"groupby": "cell_type", "groups": ["CD14 Mono"], "n_genes": 8}}
    ]
    p = subprocess.run(
        [C2S, "ask", "find markers", "--data", "missing.h5ad"], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 2 and "missing.h5ad: no such file" in p.stderr
    p = subprocess.run([C2S, "resume", "nope"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "run 'nope': not found" in p.stderr


def test_third_party_plugin_is_planned_and_run_by_entry_point_alone(asettings, example_plugin):
    q = "Which cell cycle phase are the cells in, per cell type?"
    p = subprocess.run(
        [C2S, "ask", q, "--data", "demo"], capture_output=True, text=True, env=_env(asettings), timeout=600
    )
    assert p.returncode == 0, p.stderr
    rd = Path(p.stdout.strip().splitlines()[-1]).parent
    plan = json.loads((rd / "plan.json").read_text())
    assert plan["steps"][0]["tool"] == "cell_cycle_phase" and plan["steps"][0]["args"] == {"groupby": "cell_type"}
    run = json.loads((rd / "run.json").read_text())
    assert run["status"] == "done" and run["tools"]["cell_cycle_phase"] == "cell_cycle"
    assert "Cell-cycle scoring" in (rd / "report.md").read_text()
    p = subprocess.run(
        [C2S, "plugins", "list", "--json"], capture_output=True, text=True, env=_env(asettings), timeout=300
    )
    listed = {r["name"]: r for r in json.loads(p.stdout)["plugins"]}
    assert listed["cell_cycle"]["registered"] == {"tools": ["cell_cycle_phase"]}
    assert listed["cell_cycle"]["source"] == "entry point"
    assert "marker_genes" in listed["c2s_builtins.data_tools"]["registered"]["tools"]
    p = subprocess.run(
        [C2S, "runs", "show", rd.name, "--json"], capture_output=True, text=True, env=_env(asettings), timeout=300
    )
    shown = json.loads(p.stdout)
    assert shown["status"] == "done" and [r["name"] for r in shown["ledger"] if r["kind"] == "tool"] == [
        "cell_cycle_phase"
    ]
    p = subprocess.run(
        [C2S, "ask", q, "--data", "demo", "--dry-run", "--json"],
        capture_output=True,
        text=True,
        env=_env(asettings, C2S_PLUGINS="another_plugin"),
        timeout=300,
    )
    assert "cell_cycle_phase" not in [s["tool"] for s in json.loads(p.stdout)["steps"]]


@pytest.mark.parametrize("kill_after", [1, 2])
def test_resume_after_kill_9_redoes_no_finished_step(asettings, kill_after):
    """Killed after step 1, or after step 2 (whose obsm slot step 3 needs: it must come back from the saved slots)."""
    q = "Describe the dataset, then make cell sentences, then fit the reverse transform, then find markers per cell type"
    env = _env(asettings)
    proc = subprocess.Popen(
        [C2S, "ask", q, "--data", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    runs_dir = Path(asettings.runs_dir)
    deadline, rd = time.time() + 240, None
    while time.time() < deadline:  # wait until the first step is finished in the ledger
        found = [p.parent for p in runs_dir.glob("*/ledger.sqlite")]
        if found:
            rd = found[0]
            try:
                done = [r for r in _ledger(rd) if r["kind"] == "tool" and r["status"] == "ok"]
            except sqlite3.Error:
                done = []
            if len(done) >= kill_after:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    seed = 1000 + kill_after  # a seeded moment after the step: mid-step, mid-write, ...
    time.sleep(random.Random(seed).uniform(0, 0.4))
    assert proc.poll() is None, f"the run ended before it could be killed (seed {seed})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {r["step_id"]: r for r in _ledger(rd) if r["kind"] == "tool" and r["status"] == "ok"}
    assert len(before) >= kill_after and json.loads((rd / "run.json").read_text())["status"] == "running"
    p = subprocess.run([C2S, "resume", rd.name], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = _ledger(rd)
    tools = [(r["step_id"], r["name"], r["status"]) for r in rows if r["kind"] == "tool"]
    assert tools == [
        ("s1", "describe_dataset", "ok"),
        ("s2", "cell_sentences", "ok"),
        ("s3", "reconstruct_expression", "ok"),
        ("s4", "marker_genes", "ok"),
    ]
    keys = [(r["run_id"], r["step_id"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert [r["kind"] for r in rows if r["step_id"] == "plan"] == ["planner"]
    for sid, row in before.items():  # finished steps were not run again
        after = next(r for r in rows if r["step_id"] == sid and r["seq"] == 0)
        assert (after["started"], after["duration_s"], after["result"]) == (
            row["started"],
            row["duration_s"],
            row["result"],
        )
    run = json.loads((rd / "run.json").read_text())
    assert run["status"] == "done" and run["resumed"] == 1
    md = (rd / "report.md").read_text()
    assert all(f"#step-s{i}" in md for i in range(1, 5))


def test_resume_refuses_a_run_that_is_still_running(asettings):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        rd = Path(asettings.runs_dir) / "r-live"
        rd.mkdir(parents=True)
        (rd / "run.json").write_text(
            json.dumps(
                {
                    "id": "r-live",
                    "question": "q",
                    "data": "demo",
                    "planner": "embedded",
                    "status": "running",
                    "pid": sleeper.pid,
                    "created": "2026-12-04T00:00:00",
                    "created_epoch": 0,
                }
            )
        )
        with pytest.raises(InputError, match=rf"run 'r-live': is still running \(process {sleeper.pid}\)"):
            runs.resume("r-live", asettings)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_llm_planner_observes_each_result_and_changes_the_rest_of_the_plan(asettings, scripted_model, plan_reply):
    """SCRIPTED chat model: after s1 it sees s1's result and replaces the rest of the plan (s2 never runs; its
    marker step runs as s1o1); after s1o1 it has nothing to add."""
    model = scripted_model(
        plan_reply(("describe_dataset", {"column": "condition"}), ("describe_dataset", {"column": "cell_type"})),
        plan_reply(("marker_genes", {"groupby": "cell_type", "groups": ["NK"], "n_genes": 5})),
        plan_reply(),
    )
    out = runs.ask("How many cells per condition, and what marks NK cells?", "demo", asettings, "llm", chat_model=model)
    ran = [(r["step_id"], r["name"]) for r in _ledger(out["run_dir"]) if r["kind"] == "tool" and r["status"] == "ok"]
    assert ran == [("s1", "describe_dataset"), ("s1o1", "marker_genes")]
    plan = json.loads((out["run_dir"] / "plan.json").read_text())
    assert [(s["id"], s["origin"]) for s in plan["steps"]] == [("s1", "question"), ("s1o1", "observation")]
    assert any(
        "after s1 (describe_dataset) the llm planner changed the rest of the plan to marker_genes" in n["text"]
        for n in plan["notes"]
    )
    seen = model.calls[1]["messages"][-1].content
    assert '"tool": "describe_dataset"' in seen and '"column": "cell_type"' in seen  # the rest of the plan it saw


def test_llm_planner_observation_keeps_to_the_step_budget(asettings, scripted_model, plan_reply):
    """With a budget of one step, a reply that adds steps after s1 is invalid (twice): the plan goes on as it was,
    with a note; nothing beyond the plan runs."""
    extra = plan_reply(("marker_genes", {"groupby": "cell_type", "groups": ["NK"]}))
    model = scripted_model(
        plan_reply(("describe_dataset", {"column": "condition"}), ("describe_dataset", {"column": "cell_type"})),
        extra,
        extra,
        plan_reply(),
    )
    settings = asettings.model_copy(update={"max_steps": 1})
    out = runs.ask("How many cells per condition and per cell type?", "demo", settings, "llm", chat_model=model)
    ran = [r["step_id"] for r in _ledger(out["run_dir"]) if r["kind"] == "tool" and r["status"] == "ok"]
    assert ran == ["s1", "s2"]
    notes = [n["text"] for n in json.loads((out["run_dir"] / "plan.json").read_text())["notes"]]
    assert any("invalid twice" in n and "exceed the step budget of 0" in n for n in notes), notes


def test_llm_planner_run_replans_and_records_tokens(asettings, scripted_model, plan_reply):
    """The LLM planner end to end, with a SCRIPTED chat model: its first plan calls a tool that fails, its
    re-plan swaps in another, and after that step ran it sees its result and has nothing to add; tokens land in
    the ledger and report."""
    usage = {"input_tokens": 900, "output_tokens": 30, "total_tokens": 930}
    model = scripted_model(
        plan_reply(("spatial_neighbourhoods", {}), usage=usage),
        plan_reply(("describe_dataset", {"column": "condition"}), usage=usage),
        plan_reply(usage=usage),
    )
    plugins.setup(None)
    plugins.pm.register(SpatialPlugin(), name="spatial-test-plugin")
    try:
        out = runs.ask(
            "Which spatial neighbourhoods do the cells form?", "demo", asettings, planner_name="llm", chat_model=model
        )
    finally:
        plugins.pm.unregister(name="spatial-test-plugin")
    rows = _ledger(out["run_dir"])
    assert [(r["step_id"], r["name"], r["status"]) for r in rows if r["kind"] == "tool"] == [
        ("s1", "spatial_neighbourhoods", "error"),
        ("s1r1", "describe_dataset", "ok"),
    ]
    assert sorted(r["name"] for r in rows if r["kind"] == "model") == ["llm:observe", "llm:plan", "llm:replan"]
    assert sum(r["tokens_in"] or 0 for r in rows) == 2700
    assert out["results"]["s1r1"].output["breakdown"] == {"ctrl": 1000, "stim": 1000}
    assert "| tokens (in / out) | 2700 / 90 |" in (out["run_dir"] / "report.md").read_text()
    seen = model.calls[2]["messages"][-1].content  # the finished step's result, as data
    assert "Step s1r1 (describe_dataset) has finished" in seen and '"ctrl": 1000' in seen
