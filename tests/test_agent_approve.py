"""Human in the loop: --approve pauses before expensive steps (LangGraph interrupt); the user accepts, edits the
arguments or skips, now or later with `c2s resume`, from an answers file or the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from c2s_agent.agent import runs
from c2s_agent.config import Settings
from c2s_agent.errors import InputError

C2S = str(Path(sys.executable).parent / "c2s")
LR = "Which ligand-receptor pairs connect monocytes to T cells?"


@pytest.fixture
def asettings(tmp_path):
    return Settings(runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")


def _cli(settings, *args, input=None):
    env = {
        **os.environ,
        "C2S_RUNS_DIR": str(settings.runs_dir),
        "C2S_CACHE_DIR": str(settings.cache_dir),
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run([C2S, *args], env=env, capture_output=True, text=True, timeout=600, input=input)


def test_pause_then_resume_later_with_edited_arguments(asettings):
    out = runs.ask(LR, "demo", asettings, approve="medium")
    run = out["run"]
    assert run["status"] == "awaiting_approval"
    assert run["waiting_for"]["step"] == "s1" and run["waiting_for"]["tool"] == "score_ligand_receptor"
    assert not (out["run_dir"] / "report.md").exists()
    shown = runs.show_run(asettings, run["id"])
    assert shown["status"] == "awaiting_approval" and not [r for r in shown["ledger"] if r["kind"] == "tool"]

    requests = []

    def approver(request):
        requests.append(request)
        if len(requests) == 1:  # a bad edit is asked again with the tool's complaint
            return {"action": "edit", "args": {**request["args"], "n_perms": 1}}
        return {"action": "edit", "args": {**request["args"], "n_perms": 50}}

    done = runs.resume(run["id"], asettings, approver=approver)
    assert done["run"]["status"] == "done"
    assert requests[0]["problem"] is None and "n_perms" in requests[1]["problem"]
    res = done["results"]["s1"]
    assert res.args["n_perms"] == 50 and "50 permutations" in res.evidence
    md = (done["run_dir"] / "report.md").read_text()
    assert "arguments edited by the user" in md and '"n_perms": 50' in md
    assert done["state"]["approvals"][-1]["action"] == "edit"


def test_cli_skip_from_answers_file_and_accept_from_stdin(asettings, tmp_path):
    skip = tmp_path / "skip.json"
    skip.write_text(json.dumps([{"action": "skip"}]))
    r = _cli(asettings, "ask", LR, "--data", "demo", "--approve", "--approve-cost", "medium", "--answers", str(skip))
    assert r.returncode == 0, r.stderr
    rd = Path(r.stdout.strip().splitlines()[-1]).parent
    md = (rd / "report.md").read_text()
    assert "s1 (score_ligand_receptor) skipped by the user" in md
    assert json.loads((rd / "run.json").read_text())["status"] == "done"

    empty = tmp_path / "none.json"
    empty.write_text("[]")
    r = _cli(asettings, "ask", LR, "--data", "demo", "--approve", "--approve-cost", "medium", "--answers", str(empty))
    assert r.returncode == 0 and "paused before s1 score_ligand_receptor" in r.stdout + r.stderr
    run_id = Path(r.stdout.strip().splitlines()[-1]).name
    r = _cli(asettings, "resume", run_id, input="accept\n")
    assert r.returncode == 0, r.stderr
    assert json.loads((asettings.runs_dir / run_id / "run.json").read_text())["status"] == "done"
    assert (asettings.runs_dir / run_id / "report.html").exists()


def test_low_cost_steps_run_without_pausing_and_bad_inputs(asettings, tmp_path):
    out = runs.ask("Describe the dataset", "demo", asettings, approve="high")
    assert out["run"]["status"] == "done" and not out["state"].get("approvals")
    with pytest.raises(InputError, match="--approve"):
        runs.ask(LR, "demo", asettings, approve="sometimes")
    bad = tmp_path / "bad.json"
    bad.write_text('{"action": "accept"}')
    r = _cli(asettings, "ask", LR, "--data", "demo", "--approve", "--answers", str(bad))
    assert r.returncode != 0 and "must hold a JSON list of objects" in r.stdout + r.stderr
