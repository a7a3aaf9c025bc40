"""The batch evaluation harness on real data: suites, the results store, resume after kill -9, caching,
reports and comparisons, and the Ray executor against the local one (a real local Ray with 2 CPUs)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2s_agent.errors import InputError
from c2s_agent.evaluation import compare, load_suite, report, run_suite

TINY = """
name: tiny
description: reverse-transform R^2, annotation of 30 held-out cells with its baseline, planner accuracy on 6 questions
matrix: {datasets: [kang2018], models: [MODEL]}
tasks:
  - task: reverse_transform_r2
    params: {top_k: [50, 100], max_cells: 600}
  - task: cell_type_annotation
    params: {limit: 30, chunk_size: 10, baseline_max_train: 1000}
  - task: planner_accuracy
    params: {limit: 6}
"""

# 12 items of 4 cells each: long enough to kill mid-way, short enough for CI
KILLABLE = """
name: killable
matrix: {datasets: [kang2018], models: [MODEL]}
tasks:
  - task: cell_type_annotation
    params: {limit: 48, chunk_size: 4, baseline: false}
"""


def _write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    """Write a suite whose model is a private copy of the bundled model (immune to it being retrained)."""
    from c2s_agent.models import embedded_model_path

    model = tmp_path / "model"
    if "MODEL" in text and not model.exists():
        shutil.copytree(embedded_model_path(), model)
    path = tmp_path / name
    path.write_text(text.replace("MODEL", str(model)))
    return path


def _rows(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return sorted(db.execute("SELECT key, item, status, result, finished_at FROM rows"))
    finally:
        db.close()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from c2s_agent.config import Settings

    tmp = tmp_path_factory.mktemp("evals")
    settings = Settings(runs_dir=tmp / "runs", cache_dir=tmp / "cache")
    suite = load_suite(_write(tmp, TINY))
    return suite, settings, run_suite(suite, settings, progress=False)


def test_suite_runs_and_scores_every_cell(local_run):
    suite, settings, res = local_run
    assert res.run_dir == settings.runs_dir / "evals" / "tiny"
    assert (res.n_items, res.n_cached, res.n_run, res.n_errors) == (2 + 3 + 1 + 6, 0, 12, 0)
    cells = {c["spec"]["task"]: c for c in res.summary["cells"]}
    assert all("error" not in c for c in cells.values())
    rt = cells["reverse_transform_r2"]["metrics"]
    assert 0.5 < rt["r2@50"] <= 1 and 0.5 < rt["r2@100"] <= 1
    ann = cells["cell_type_annotation"]["metrics"]
    assert ann["n_cells"] == 30
    assert ann["accuracy"] > 1 / 13 and ann["baseline_accuracy"] > 0.5  # both well above chance on 13 types
    assert ann["baseline_n_train"] == 1000  # a seeded sample of training rows, read from the backed file
    plan = cells["planner_accuracy"]["metrics"]
    assert plan["n_questions"] + plan["n_skipped"] == 6 and 0 <= plan["accuracy"] <= 1
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["suite"] == "tiny" and manifest["code"]["package"] and manifest["history"]


def test_rerun_is_cached_and_rerun_flag_recomputes(local_run):
    suite, settings, first = local_run
    before = _rows(first.run_dir)
    again = run_suite(suite, settings, progress=False)
    assert (again.n_cached, again.n_run) == (first.n_items, 0)
    assert _rows(first.run_dir) == before  # nothing rewritten
    assert again.summary["cells"][0]["metrics"] == first.summary["cells"][0]["metrics"]
    # --rerun recomputes only what is asked: a one-task suite over the same store
    only_rt = load_suite(_write(settings.runs_dir.parent, TINY.split("  - task: cell_type_annotation")[0], "rt.yaml"))
    forced = run_suite(only_rt, settings, out=first.run_dir, rerun=True, progress=False)
    assert (forced.n_run, forced.n_cached) == (2, 0)
    after = {r[1]: r for r in _rows(first.run_dir)}
    assert len(after) == len(before)
    assert after["top_k:50"][4] > {r[1]: r for r in before}["top_k:50"][4]  # rewritten, same result
    assert after["top_k:50"][3] == {r[1]: r for r in before}["top_k:50"][3]
    assert run_suite(suite, settings, progress=False).n_run == 0  # the full suite's summary again, all cached


def test_report_and_compare_flag_regressions(local_run, tmp_path):
    _, settings, res = local_run
    md, html = report(res.run_dir)
    text = md.read_text()
    for task in ("reverse_transform_r2", "cell_type_annotation", "planner_accuracy"):
        assert f"## {task}" in text and (res.run_dir / "plots" / f"{task}.png").stat().st_size > 1000
    assert "<table>" in html.read_text()
    # a copy of the run with worse annotation accuracy and better R^2
    worse = tmp_path / "worse"
    shutil.copytree(res.run_dir, worse)
    summary = json.loads((worse / "summary.json").read_text())
    for c in summary["cells"]:
        if c["spec"]["task"] == "cell_type_annotation":
            c["metrics"]["accuracy"] -= 0.1
        if c["spec"]["task"] == "reverse_transform_r2":
            c["metrics"]["r2"] += 0.01
    (worse / "summary.json").write_text(json.dumps(summary))
    md, html, rows = compare("tiny", worse, settings=settings)
    flagged = {(r["cell"].split(" ")[0], r["metric"]) for r in rows if r["regression"]}
    assert flagged == {("cell_type_annotation", "accuracy")}
    assert "**REGRESSION**" in md.read_text() and "1 regression(s)" in md.read_text()
    assert "<strong>REGRESSION</strong>" in html.read_text()
    _, _, same = compare(res.run_dir, res.run_dir, out=tmp_path / "same")
    assert same and not any(r["regression"] for r in same)


def test_ray_executor_gives_identical_rows(local_run, tmp_path):
    pytest.importorskip("ray")
    suite, settings, local = local_run
    ray_run = run_suite(suite, settings, out=tmp_path / "ray", executor="ray", num_cpus=2, progress=False)
    assert ray_run.n_errors == 0 and ray_run.n_run == local.n_items
    local_rows = [(k, item, status, result) for k, item, status, result, _ in _rows(local.run_dir)]
    ray_rows = [(k, item, status, result) for k, item, status, result, _ in _rows(ray_run.run_dir)]
    assert ray_rows == local_rows
    db = sqlite3.connect(ray_run.run_dir / "results.sqlite")
    workers = {w for (w,) in db.execute("SELECT DISTINCT worker FROM rows")}
    db.close()
    assert not any(w.endswith(f":{os.getpid()}") for w in workers)  # computed in Ray workers, not here


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    suite = _write(tmp_path, KILLABLE)
    out = tmp_path / "run"
    env = {
        **os.environ,
        "C2S_CACHE_DIR": str(tmp_path / "cache"),
        "C2S_RUNS_DIR": str(tmp_path / "runs"),
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "c2s_agent", "eval", "run", str(suite), "--out", str(out), "--no-report"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 150
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if (out / "results.sqlite").exists() and len(_rows(out)) >= 3:
                    break
            except sqlite3.OperationalError:  # the store is being created
                pass
            time.sleep(0.2)
        seed = 11  # kill at a seeded moment after the third row
        time.sleep(random.Random(seed).uniform(0, 0.3))
        assert proc.poll() is None, f"the run ended before it could be killed (seed {seed})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _rows(out)
    assert 3 <= len(before) < 12
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} cached, {12 - len(before)} run" in done.stderr.replace("\n", " ")
    after = _rows(out)
    items = [r[1] for r in after]
    assert len(items) == len(set(items)) == 12 and all(r[2] == "ok" for r in after)
    assert set(before) <= set(after)  # finished rows kept as they were (same result, same finish time)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cells"][0]["metrics"]["n_cells"] == 48


@pytest.mark.parametrize(
    "text, subject, problem",
    [
        ("name: x\ntasks: [{task: nope}]", "task 'nope'", "is not an evaluation task"),
        ("name: x\ntasks: [{task: reverse_transform_r2, params: {topk: 5}}]", "params ['topk']", "are not parameters"),
        ("name: x\ntasks: []", "suite.yaml", "lists no tasks"),
        ("name: x\ntasks: [{task: reverse_transform_r2}]\nextra: 1", "suite.yaml extra", "Extra inputs"),
        ("name: [x\n", "suite.yaml", "is not valid YAML"),
        ("- a\n- b\n", "suite.yaml", "must be a mapping"),
    ],
)
def test_bad_suites_are_clear_input_errors(tmp_path, text, subject, problem):
    with pytest.raises(InputError) as err:
        load_suite(_write(tmp_path, text))
    assert subject in str(err.value) and problem in str(err.value) and "Fix:" in str(err.value)


def test_bad_arguments_are_clear_input_errors(tmp_path, settings):
    with pytest.raises(InputError, match="no such suite file"):
        load_suite(tmp_path / "missing.yaml")
    suite = load_suite(_write(tmp_path, "name: x\ntasks: [{task: reverse_transform_r2, datasets: [nowhere.h5ad]}]"))
    with pytest.raises(InputError, match="neither a bundled dataset nor an existing .h5ad"):
        run_suite(suite, settings, progress=False)
    with pytest.raises(InputError, match="is not an executor"):
        run_suite(suite, settings, executor="spark", progress=False)
    with pytest.raises(InputError, match="has no summary.json"):
        report(tmp_path / "nothing")


def test_cli_report_and_compare(local_run, tmp_path):
    from typer.testing import CliRunner

    from c2s_agent.cli import app

    _, _, res = local_run
    runner = CliRunner()
    out = runner.invoke(app, ["eval", "report", str(res.run_dir), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    assert "## cell_type_annotation" in (tmp_path / "rep" / "report.md").read_text()
    out = runner.invoke(
        app,
        ["eval", "compare", str(res.run_dir), str(res.run_dir), "--out", str(tmp_path / "cmp"), "--fail-on-regression"],
    )
    assert out.exit_code == 0, out.output
    assert "No regressions" in (tmp_path / "cmp" / "compare.md").read_text()


def test_retrieval_query_set_and_relevance_rule():
    from c2s_agent.evaluation.suite import Cell
    from c2s_agent.evaluation.tasks import get_task
    from c2s_agent.evaluation.tasks.retrieval import is_relevant

    task = get_task("retrieval_recall")
    cell = Cell(task=task.name, dataset="-", model="-", prompt_set="-", params=task.check_params({}, None))
    items = task.items(cell, None)
    assert len(items) == 24 and len({it["id"] for it in items}) == 24
    lr = {
        "id": "cellphonedb:1:CCL5>CCR5",
        "kind": "ligand_receptor",
        "genes": ["CCL5", "CCR5"],
        "text": "Ligand CCL5 binds CCR5",
    }
    assert is_relevant(lr, items[0]["relevant"])  # lr01: CCL5 -> CCR5
    assert not is_relevant({**lr, "kind": "gene_summary"}, items[0]["relevant"])
    assert not is_relevant({**lr, "genes": ["CCL5", "CCR1"]}, items[0]["relevant"])
    summary = task.summarise(cell, [{"rank": 1}, {"rank": 4}, {"rank": None}, {"rank": 10}])
    assert summary["recall@1"] == 0.25 and summary["recall@5"] == 0.5 and summary["recall@10"] == 0.75
    assert summary["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 10) / 4)
