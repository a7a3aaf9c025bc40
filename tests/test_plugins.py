"""The plugin manager: built-ins and entry points, allow-list, fail-fast hook names, attribution, duplicates,
plugins that raise, and documented hookspecs. Test plugins are registered in a fixture and unregistered after."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from c2s_agent import hookimpl, hookspecs, plugins, registry
from c2s_agent.config import Settings
from c2s_agent.registry import GeneProgram
from c2s_agent.tools import Tool, ToolResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "c2s-example-plugin"


@pytest.fixture
def register_plugin():
    """Register plugin objects under a name for one test (like simonw/llm's tests), then remove them."""
    names = []

    def register(obj, name):
        plugins.setup(None)
        plugins.pm.register(obj, name=name)
        names.append(name)

    yield register
    for name in names:
        if plugins.pm.has_plugin(name):
            plugins.pm.unregister(name=name)
    plugins.load_errors[:] = [e for e in plugins.load_errors if e[0] not in names]


class _In(BaseModel):
    pass


class _Out(BaseModel):
    n: int


def _tool(name: str, description: str = "A test tool that counts the cells of a dataset.") -> Tool:
    return Tool(
        name=name,
        description=description,
        examples=["count the cells"],
        input_model=_In,
        output_model=_Out,
        run=lambda ctx, a: ToolResult(output=_Out(n=ctx.adata.n_obs), evidence="counted"),
    )


def test_every_hookspec_documents_its_parameters():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
    assert {"register_tools", "register_backends", "register_encoders", "register_knowledge_sources"} <= {
        f.__name__ for f in specs
    }
    for f in specs:
        doc = inspect.getdoc(f) or ""
        assert "Parameters:" in doc, f"{f.__name__} has no Parameters: section"
        section = doc.split("Parameters:", 1)[1]
        documented = re.findall(r"^\s{4}(\w+):", section, re.M)
        assert documented == list(inspect.signature(f).parameters), f"{f.__name__}: {documented}"


def test_builtin_tools_know_their_plugin():
    tools = registry.tools(Settings())
    assert {"describe_dataset", "cell_sentences", "marker_genes", "reconstruct_expression"} <= set(tools)
    assert tools["marker_genes"].plugin == "c2s_builtins.data_tools"
    assert tools["cell_sentences"].plugin == "c2s_builtins.data_tools"


def test_misspelled_hook_fails_fast(register_plugin):
    class Typo:
        @hookimpl
        def register_tool(self, register):  # missing "s"
            register(_tool("typo_tool"))

    register_plugin(Typo(), "typo-plugin")
    with pytest.raises(plugins.PluginError, match=r"typo-plugin.*unknown hook.*register_tool"):
        plugins.check()


def test_plugin_that_raises_is_reported_and_skipped(register_plugin):
    class Broken:
        @hookimpl
        def register_tools(self, register):
            register(_tool("half_registered"))
            raise RuntimeError("database missing")

    register_plugin(Broken(), "broken-plugin")
    tools = registry.tools(Settings())
    assert "half_registered" not in tools  # nothing half-registered
    assert "marker_genes" in tools  # the others keep working
    assert any(name == "broken-plugin" and "database missing" in msg for name, msg in plugins.load_errors)


def test_duplicate_names_keep_the_builtin(register_plugin):
    class Dup:
        @hookimpl
        def register_tools(self, register):
            register(_tool("marker_genes", "Another tool that claims the marker_genes name."))

    register_plugin(Dup(), "dup-plugin")
    tools = registry.tools(Settings())
    assert tools["marker_genes"].plugin == "c2s_builtins.data_tools"
    assert tools["dup-plugin:marker_genes"].plugin == "dup-plugin"
    assert tools["dup-plugin:marker_genes"].description.startswith("Another tool")


def test_other_hooks_register_typed_objects(register_plugin):
    class Programs:
        @hookimpl
        def register_gene_programs(self, register):
            register(GeneProgram("test_ifn", ("ISG15", "IFIT1"), "two interferon genes, for this test"))

        @hookimpl
        def register_rewards(self, register):
            register("length", len)  # the old untyped form is refused, and reported

    register_plugin(Programs(), "programs-plugin")
    reg = registry.gene_programs(Settings())["test_ifn"]
    assert reg.genes == ("ISG15", "IFIT1") and reg.source == "two interferon genes, for this test"
    assert reg.plugin == "programs-plugin"
    assert "length" not in registry.rewards(Settings())
    assert any(n == "programs-plugin" and "RewardFactory" in msg for n, msg in plugins.load_errors)


def test_builtins_register_the_documented_types():
    for kind, (hook, cls) in registry.KINDS.items():
        found = registry.collect(kind, Settings())
        assert found, f"no built-in registers {kind}"
        assert all(isinstance(obj, cls or Tool) and obj.plugin for obj in found.values()), kind


def test_example_plugin_scores_cell_cycle_phases_without_the_agent(kang, example_plugin):
    from c2s_example_plugin.cell_cycle import G2M_SCORE, PHASE, S_SCORE, plot_scores, score_cell_cycle

    from c2s_agent.data import prepare
    from c2s_agent.errors import InputError

    adata = prepare(kang)
    cc = score_cell_cycle(adata, "cell_type")
    assert len(cc.s_genes) >= 10 and len(cc.g2m_genes) >= 10 and set(cc.counts) == {"G1", "S", "G2M"}
    assert cc.counts == adata.obs[PHASE].value_counts().to_dict() and sum(cc.counts.values()) == kang.n_obs
    s_phase, obs = (adata.obs[PHASE] == "S").to_numpy(), adata.obs
    assert (obs[S_SCORE][s_phase] > 0).all() and (obs[S_SCORE][s_phase] > obs[G2M_SCORE][s_phase]).all()
    assert set(cc.by_group.index) == set(kang.obs.cell_type) and np.allclose(cc.by_group.sum(axis=1), 1)
    assert plot_scores(adata).axes[0].has_data() and score_cell_cycle(adata).by_group is None
    with pytest.raises(InputError, match="groupby='tissue': is not an obs column"):
        score_cell_cycle(adata, "tissue")


def test_entry_point_plugin_loads_and_allow_list_excludes_it(example_plugin):
    assert "cell_cycle_phase" in registry.tools(Settings(plugins=None))
    assert registry.tools(Settings(plugins=None))["cell_cycle_phase"].plugin == example_plugin
    assert "cell_cycle_phase" in registry.tools(Settings(plugins=example_plugin))
    assert "cell_cycle_phase" not in registry.tools(Settings(plugins="some_other_plugin"))
    rows = {r["name"]: r for r in plugins.plugin_table(Settings())}
    assert rows[example_plugin]["source"] == "entry point" and rows[example_plugin]["version"] == "0.1.0"
    assert example_plugin not in {r["name"] for r in plugins.plugin_table(Settings(plugins="x"))}


def test_allow_list_from_environment(monkeypatch):
    monkeypatch.setenv("C2S_PLUGINS", "a, b")
    assert Settings().plugin_allow_list == {"a", "b"}
