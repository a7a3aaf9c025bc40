"""Gene programs, perturbation prediction on chosen cells, and the resumable dual-context screen (Python, CLI,
agent tools), on the bundled Kang data with the embedded model."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from c2s_agent import pl
from c2s_agent.errors import InputError
from c2s_agent.screen import (
    get_program,
    load_library,
    predict,
    programs,
    rank_scores,
    resolve_contexts,
    run_screen,
    score_cells,
)


@pytest.fixture(scope="module")
def model():
    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    return load_model("embedded", Settings(threads=1))


def c2s(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "c2s_agent", *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def _env():
    return {**os.environ, "C2S_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------- programs
def test_builtin_programs_come_from_the_bundled_gene_sets(settings):
    from c2s_agent.knowledge.sources import load_gene_sets

    progs = programs(settings)
    sets = load_gene_sets()
    assert {"ifn_alpha", "ifn_gamma", "apoptosis", "mhc_i", "mhc_i_loading"} <= set(progs)
    assert list(progs["ifn_alpha"].genes) == list(sets["HALLMARK_INTERFERON_ALPHA_RESPONSE"])
    assert "HALLMARK_INTERFERON_GAMMA_RESPONSE" in progs["ifn_gamma"].source
    assert {"HLA-A", "B2M", "TAP1", "NLRC5"} <= set(progs["mhc_i"].genes)
    assert {"TAP1", "TAPBP"} <= set(progs["mhc_i_loading"].genes)
    assert get_program("hallmark_hypoxia").genes == tuple(sets["HALLMARK_HYPOXIA"])  # any bundled set by name
    assert get_program(["isg15", "MX1", "ISG15"]).genes == ("ISG15", "MX1")
    assert get_program("ISG15, MX1").name == "custom"


def test_bad_programs_say_what_to_do():
    with pytest.raises(InputError, match="program: 'interferonish' is not a registered program.*use one of"):
        get_program("interferonish")
    with pytest.raises(InputError, match="program: gives 1 gene"):
        get_program(["ISG15"])
    with pytest.raises(InputError, match="method: 'zscore' is not a scoring method"):
        score_cells(["ISG15 MX1"], "ifn_alpha", method="zscore")


def test_rank_score_weights_genes_by_rank():
    s = rank_scores(["B2M HLA-A CD3E ISG15", "CD3E ACTB GAPDH LYZ", "TAP1 B2M"], ["B2M", "TAP1"], k=4)
    np.testing.assert_allclose(s, [(1 + 0) / 2, 0.0, (1 + 0.75) / 2])


def test_expression_and_rank_scores_see_the_interferon_response(kang):
    stim = (kang.obs["condition"] == "stim").to_numpy()
    for method in ("expression", "rank"):
        scores, genes = score_cells(kang, "ifn_alpha", method=method, k=100)
        assert len(genes) > 50 and scores.shape == (kang.n_obs,)
        assert scores[stim].mean() > 2 * scores[~stim].mean(), method  # IFN-beta induces the Hallmark IFN-alpha set


def test_score_program_writes_the_scores_and_tables_the_group_means(kang):
    from c2s_agent import tl

    adata = kang.copy()
    res = tl.score_program(adata, "ifn_alpha", "condition")
    assert adata.uns["c2s_program_scores"] == {"ifn_alpha": res.key} and res.key in adata.obs
    table = res.table()
    assert list(table.columns) == ["mean ifn_alpha score"] and table.index.tolist() == ["ctrl", "stim"]
    assert table.loc["stim"].item() > 2 * table.loc["ctrl"].item()
    assert table.loc["ctrl"].item() == pytest.approx(adata.obs[res.key][adata.obs.condition == "ctrl"].mean())


# ---------------------------------------------------------------------------------------- library, contexts
def test_library_from_list_string_and_csv(tmp_path):
    assert load_library("IFN-beta, TNF")["item"].tolist() == ["IFN-beta", "TNF"]
    csv = tmp_path / "lib.csv"
    pd.DataFrame({"item": ["a#1", "a#2"], "perturbation": ["IFN-beta", "IFN-beta"]}).to_csv(csv, index=False)
    lib = load_library(csv)
    assert lib["perturbation"].tolist() == ["IFN-beta", "IFN-beta"] and lib["item"].tolist() == ["a#1", "a#2"]
    with pytest.raises(InputError, match=r"perturbations: list \['IFN-beta'\] more than once.*'item' column"):
        load_library(["IFN-beta", "IFN-beta"])
    pd.DataFrame({"drug": ["x"]}).to_csv(csv, index=False)
    with pytest.raises(InputError, match="has no 'perturbation' column"):
        load_library(csv)
    with pytest.raises(InputError, match="no such file"):
        load_library(tmp_path / "missing.csv")


def test_contexts_default_and_bad_specs(kang, pbmc):
    assert resolve_contexts(kang) == [("stim", {"condition": "stim"}), ("ctrl", {"condition": "ctrl"})]
    assert resolve_contexts(kang, ["hi:condition=stim;cell_type=B", "lo:condition=ctrl"])[0] == (
        "hi",
        {"condition": "stim", "cell_type": "B"},
    )
    with pytest.raises(InputError, match="context: 'stim' is not of the form NAME:COLUMN=VALUE"):
        resolve_contexts(kang, ["stim"])
    with pytest.raises(InputError, match="contexts: were not given and the data has no condition column"):
        resolve_contexts(pbmc)


# ------------------------------------------------------------------------------------------- prediction
def test_predict_on_one_cell_type(kang, model):
    out = predict(kang, "IFN-beta", cell_type="CD14 Mono", where={"condition": "ctrl"}, n_cells=5, model=model)
    assert out.n_obs == 5 and set(out.obs["cell_type"]) == {"CD14 Mono"}
    assert all(len(s.split()) > 10 for s in out.obs["c2s_sentence"]) and out.X.sum() > 0
    with pytest.raises(InputError, match="base cells selection: obs\\['cell_type'\\] has no value 'Neuron'"):
        predict(kang, "IFN-beta", cell_type="Neuron", model=model)
    with pytest.raises(InputError, match=r"perturbation: \['TNF'\] not known to this model"):
        predict(kang, "TNF", n_cells=3, model=model)


# ---------------------------------------------------------------------------------------------- the screen
def test_screen_scores_known_flags_unseen_and_skips_finished(kang, model, tmp_path):
    kw = dict(out_dir=tmp_path / "s", model=model, n_cells=6, n_boot=200, progress=False)
    adata = kang.copy()
    res = run_screen(adata, ["IFN-beta", "TNF"], None, "ifn_alpha", **kw)
    t = res.table.set_index("item")
    assert t.loc["IFN-beta", "status"] == "scored" and t.loc["IFN-beta", "rank"] == 1
    assert t.loc["TNF", "status"] == "unseen" and np.isnan(t.loc["TNF", "split"]) and t.loc["TNF", "rank"] == 0
    assert "not among the perturbations the model was trained on" in t.loc["TNF", "reason"]
    # the model was trained to turn control cells into IFN-beta-stimulated ones: the IFN program goes up
    assert t.loc["IFN-beta", "shift_ctrl"] > 0.05 and t.loc["IFN-beta", "low_ctrl"] > 0
    assert t.loc["IFN-beta", "split_low"] <= t.loc["IFN-beta", "split"] <= t.loc["IFN-beta", "split_high"]
    assert np.isclose(t.loc["IFN-beta", "split"], t.loc["IFN-beta", "shift_stim"] - t.loc["IFN-beta", "shift_ctrl"])
    assert res.summary["run"]["cells_predicted"] == 12 and res.summary["run"]["items_run"] == 4
    assert "IFN-beta" in res.summary["trained_on"] and "stim CD14 Mono" in res.summary["trained_on"]
    for key in ("ranked", "items", "summary"):
        assert res.files[key].exists() and res.files[key].stat().st_size > 0
    assert {r["context"] for r in res.records} == {"stim", "ctrl"} and len(res.records) == 4
    assert adata.uns["c2s_screen"] == {
        "program": "ifn_alpha",
        "contexts": ["stim", "ctrl"],
        "out_dir": str(tmp_path / "s"),
        "counts": {"scored": 1, "unseen": 1},
    }
    assert res.contexts == ["stim", "ctrl"] and res.scored.item.tolist() == ["IFN-beta"]
    assert list(res.not_scored) == ["TNF"] and res.not_scored["TNF"] == f"unseen: {t.loc['TNF', 'reason']}"
    (row,) = res.ranking()
    assert row["item"] == "IFN-beta" and row["split"] == round(t.loc["IFN-beta", "split"], 5)
    assert {"shift_stim", "low_ctrl", "high_stim", "split_low", "split_excludes_zero"} <= set(row)
    for fig in (pl.screen_ranking(res), pl.screen_distributions(res)):
        assert len(fig.axes) >= 1 and fig.axes[0].has_data()
    again = run_screen(kang, ["IFN-beta", "TNF"], None, "ifn_alpha", **kw)
    assert again.summary["run"]["items_skipped_finished"] == 4 and again.summary["run"]["cells_predicted"] == 0
    pd.testing.assert_frame_equal(again.table, res.table)
    # a different program is a different item: nothing is reused by mistake
    other = run_screen(kang, ["IFN-beta"], None, "mhc_i", **kw)
    assert other.summary["run"]["items_skipped_finished"] == 0 and other.summary["run"]["cells_predicted"] == 12
    # no perturbations given: those the model was trained on
    known = run_screen(kang, None, None, "ifn_alpha", **kw)
    assert known.table.item.tolist() == model.known_perturbations == ["IFN-beta"]


def test_screen_bad_inputs(kang, model, tmp_path):
    kw = dict(out_dir=tmp_path / "s", model=model, progress=False)
    with pytest.raises(InputError, match="n_cells: must be >= 2"):
        run_screen(kang, ["IFN-beta"], None, "mhc_i", n_cells=1, **kw)
    with pytest.raises(InputError, match="context 'x' selection: obs has no column 'dose'"):
        run_screen(kang, ["IFN-beta"], ["x:dose=1", "y:condition=ctrl"], "mhc_i", **kw)
    lib = pd.DataFrame({"perturbation": ["IFN-beta"], "context_text": ["low interferon"]})
    with pytest.raises(InputError, match="context_text: model c2s-embedded was not trained with perturbation contexts"):
        run_screen(kang, lib, None, "mhc_i", **kw)


def _rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT key, record, finished_at FROM items ORDER BY key").fetchall()


def test_screen_resumes_after_kill_9_without_losing_or_redoing(tmp_path):
    lib = tmp_path / "lib.csv"
    pd.DataFrame({"item": [f"IFN-beta#{i}" for i in range(5)], "perturbation": "IFN-beta"}).to_csv(lib, index=False)
    out = tmp_path / "screen"
    args = [
        "screen",
        "--data",
        "demo",
        "--perturbations",
        lib,
        "--out",
        out,
        "--n-cells",
        4,
        "--batch-cells",
        4,
        "--program",
        "ifn_alpha",
        "--n-boot",
        50,
        "--json",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "c2s_agent", *map(str, args)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "screen.sqlite"
    deadline = time.time() + 240
    before = []
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                before = _rows(db)
            except sqlite3.OperationalError:
                before = []
            if len(before) >= 2:
                break
        time.sleep(0.05)
    seed = 7  # kill at a seeded moment after the second item
    time.sleep(random.Random(seed).uniform(0, 0.2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(db)
    assert 2 <= len(before) < 10, f"the screen must be killed part-way (seed {seed})"
    r = c2s(*args, env=_env())
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    after = _rows(db)
    assert len(after) == 10 and len({k for k, _, _ in after}) == 10  # every item once
    assert set(before) <= set(after)  # finished items kept exactly as they were
    assert summary["run"]["items_skipped_finished"] == len(before)
    assert summary["run"]["items_run"] == 10 - len(before)
    assert summary["run"]["cells_predicted"] == 4 * (10 - len(before))  # nothing redone
    assert summary["counts"] == {"scored": 5}


def test_screen_cli_reports_unseen_and_bad_program(tmp_path):
    r = c2s("screen", "--perturbations", "TNF,IL4", "--out", tmp_path / "o", "--n-cells", 3, env=_env())
    assert r.returncode == 0, r.stderr
    assert "unseen" in r.stderr and "The only perturbation(s) it was trained on: IFN-beta" in r.stderr
    r = c2s("screen", "--perturbations", "IFN-beta", "--out", tmp_path / "o", "--program", "nope", env=_env())
    assert r.returncode == 2 and "program: 'nope' is not a registered program" in r.stderr
    r = c2s("programs", env=_env())
    assert r.returncode == 0 and "mhc_i" in r.stderr and "ifn_alpha" in r.stderr


# --------------------------------------------------------------------------------------------- agent tools
def test_agent_tools(kang, model, tmp_path, settings):
    from c2s_agent import registry
    from c2s_agent.tools import ToolContext

    tools = registry.tools(settings)
    assert {"run_screen", "score_gene_program"} <= set(tools)
    assert all(len(tools[n].examples) >= 4 for n in ("run_screen", "score_gene_program"))
    calls = []
    ctx = ToolContext(
        kang.copy(),
        tmp_path,
        settings.model_copy(update={"threads": 1}),
        step_id="s1",
        record_call=lambda kind, **f: calls.append(f),
    )
    res = tools["score_gene_program"].invoke(ctx, {"program": "ifn_alpha", "groupby": "condition"})
    assert res.output.by_group["stim"] > res.output.by_group["ctrl"] and "c2s_program_ifn_alpha" in ctx.adata.obs
    assert any(a.kind == "plot" for a in res.artefacts)
    question = "Which of these perturbations raise antigen presentation only under interferon: IFN-beta, TNF?"
    res = tools["run_screen"].invoke(ctx, {"question": question, "n_cells": 4})
    out = res.output
    assert out.program == "mhc_i" and out.contexts == ["stim", "ctrl"]
    assert out.n_scored == 1 and out.n_not_scored == 1 and "unseen" in out.not_scored["TNF"]
    assert out.ranking[0]["item"] == "IFN-beta" and "split" in out.ranking[0]
    assert "Not scored (1): TNF" in res.evidence and "trained on" in res.evidence
    kinds = {a.kind for a in res.artefacts}
    assert {"table", "plot", "file"} <= kinds and all((tmp_path / a.path).exists() for a in res.artefacts)
    assert [c["task"] for c in calls] == ["perturb"] and calls[0]["model"] == "c2s-embedded"
    assert "Ranking: context split = shift in stim minus shift in ctrl" in res.evidence
    with pytest.raises(InputError, match="program: was not given and the question names none"):
        tools["score_gene_program"].invoke(ctx, {"question": "score the cells"})


def test_planner_sends_screen_questions_to_the_screen(kang, settings):
    from c2s_agent import registry
    from c2s_agent.agent.dataset import DatasetView
    from c2s_agent.agent.planners.embedded import EmbeddedPlanner

    tools, vocab, planner = registry.tools(settings), DatasetView.from_adata(kang), EmbeddedPlanner(settings)
    expected = {
        "Which of these perturbations raise antigen presentation only under interferon: IFN-beta, TNF?": "run_screen",
        "Which perturbations increase MHC class I presentation in stimulated but not control cells?": "run_screen",
        "Score the interferon gamma response per condition": "score_gene_program",
        "How strong is the apoptosis program in each cell type?": "score_gene_program",
    }
    for question, tool in expected.items():
        plan = planner.plan(question, tools, vocab)
        assert [s.tool for s in plan.steps] == [tool], question
        assert plan.steps[0].args.get("question"), question
