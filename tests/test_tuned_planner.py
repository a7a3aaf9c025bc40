"""The tuned planner: the embedded planner whose choice between near-equal tools is the bundled fine-tuned
SmolLM2 adapter's (real model, pulled base); its training examples and `c2s train --task planner`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from c2s_agent import registry
from c2s_agent.agent.dataset import DatasetView
from c2s_agent.agent.evaluate import load_questions
from c2s_agent.agent.planners import get_planner
from c2s_agent.agent.planners.chooser import bundled_path, prompt
from c2s_agent.agent.planners.chooser_data import HELD_OUT, training_examples
from c2s_agent.agent.planners.matching import intent, mask_entities, split_clauses
from c2s_agent.config import Settings
from c2s_agent.data import read
from c2s_agent.errors import InputError


@pytest.fixture(scope="module")
def tsettings(tmp_path_factory):
    d = tmp_path_factory.mktemp("tuned")
    return Settings(runs_dir=d / "runs", cache_dir=d / "cache", threads=2)


@pytest.fixture(scope="module")
def tuned(tsettings):
    return get_planner(tsettings, "tuned")


def test_the_bundled_adapter_is_small_and_has_a_card():
    path = bundled_path()
    assert (path / "adapter_model.safetensors").stat().st_size < 20 * 2**20
    meta = json.loads((path / "chooser.json").read_text())
    assert meta["base"] == "smollm2" and meta["minutes"] <= 30
    assert "No held-out question set" in (path / "README.md").read_text()


def test_the_chooser_picks_the_tool_a_clause_asks_for(tuned, tsettings):
    tools = registry.tools(tsettings)
    cands = [tools[n] for n in ("marker_genes", "describe_dataset", "similar_cells")]
    probs = tuned.chooser.choose("Which genes mark the X cells?", cands)
    assert set(probs) == {"marker_genes", "describe_dataset", "similar_cells"}
    assert abs(sum(probs.values()) - 1) < 1e-5
    assert max(probs, key=probs.get) == "marker_genes"
    probs = tuned.chooser.choose("How many cells are in each group?", cands)
    assert max(probs, key=probs.get) == "describe_dataset"


def test_tuned_plans_are_checked_plans(tuned, tsettings, kang):
    view = DatasetView.from_adata(kang)
    tools = registry.tools(tsettings)
    plan = tuned.plan("Generate 30 NK cells and then tell me how realistic they are", tools, view)
    assert [s.tool for s in plan.steps] == ["generate_cells", "evaluate_generation"]
    assert plan.planner == "tuned" and plan.ok
    assert tuned.plan("What will the weather be in Paris tomorrow?", tools, view).steps == []


def test_training_examples_come_from_contracts_and_the_development_set_only(tsettings):
    for name in HELD_OUT:
        with pytest.raises(InputError, match="held-out"):
            training_examples(tsettings, name)
    examples = training_examples(tsettings, orders=1)
    assert len(examples) > 200 and all(e.response == f" {e.label}" for e in examples)
    asked = {e.prompt.rsplit("Request: ", 1)[1] for e in examples}
    views = {
        d: DatasetView.from_adata(read(d, backed=True)) for d in ("demo", "pbmc68k", "cellbench", "moor2018", "visium")
    }
    request = lambda text, view: json.dumps(mask_entities(intent(text), view)) + "\nTool:"  # noqa: E731
    allowed = {request(x, views["demo"]) for t in registry.tools(tsettings).values() for x in t.examples}
    allowed |= {
        request(c, views[q.get("data", "demo")])
        for q in load_questions("development")
        for c in split_clauses(q["question"])
    }
    assert asked <= allowed  # tool examples and development clauses only
    assert all(e.prompt.startswith(prompt("", [])[:40]) for e in examples)


def test_c2s_train_task_planner_writes_an_adapter_and_its_card(tmp_path):
    from c2s_agent.cli import app

    out = tmp_path / "chooser"
    res = CliRunner().invoke(
        app, ["train", "--task", "planner", "--steps", "1", "--batch-size", "2", "--threads", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "adapter_config.json").is_file() and (out / "README.md").is_file()
    meta = json.loads((out / "chooser.json").read_text())
    assert meta["steps"] == 1 and meta["questions"] == "development"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2"
