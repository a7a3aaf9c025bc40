"""Planners: the embedded planner on the planning benchmark, entity extraction against the dataset's own
vocabulary, ordering by requires/produces, the plan check, and the LLM planner driven by a scripted chat model."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel, Field

from c2s_agent import hookimpl, plugins, registry
from c2s_agent.agent.dataset import DatasetView
from c2s_agent.agent.evaluate import evaluate, load_questions
from c2s_agent.agent.mentions import find_mentions
from c2s_agent.agent.plan import NO_TOOL, Plan, Step, check
from c2s_agent.agent.planners import get_planner
from c2s_agent.agent.planners.embedded import EmbeddedPlanner
from c2s_agent.agent.planners.matching import split_clauses
from c2s_agent.config import Settings
from c2s_agent.errors import InputError
from c2s_agent.tools import Tool, ToolResult


@pytest.fixture(scope="module")
def asettings(tmp_path_factory):
    d = tmp_path_factory.mktemp("agent")
    return Settings(runs_dir=d / "runs", cache_dir=d / "cache")


@pytest.fixture(scope="module")
def vocab(kang):
    return DatasetView.from_adata(kang)


@pytest.fixture(scope="module")
def tools(asettings):
    return registry.tools(asettings)


@pytest.fixture(scope="module")
def planner(asettings):
    return EmbeddedPlanner(asettings)


def test_embedded_planner_accuracy_on_benchmark(asettings):
    res = evaluate(asettings, load_questions())
    wrong = [(r["id"], r["question"], r["got"]) for r in res["rows"] if not r["ok"]]
    assert res["n"] >= 80
    assert res["accuracy"] >= 0.90, wrong
    covered = {s["tool"] for q in load_questions() for s in q["expected"]}
    assert set(registry.tools(asettings)) <= covered, "every installed tool has a benchmark question"
    assert res["by_kind"]["unanswerable"]["accuracy"] >= 0.9


def test_unanswerable_gets_an_honest_no(planner, tools, vocab):
    plan = planner.plan("What will the weather be in Paris tomorrow?", tools, vocab)
    assert plan.steps == [] and not plan.answerable
    assert plan.unanswered == ["What will the weather be in Paris tomorrow"]
    assert any(n.kind == "unanswered" and n.text.startswith(NO_TOOL) for n in plan.notes)


def test_clause_splitting():
    assert split_clauses("Describe the data and then find markers; make sentences") == [
        "Describe the data",
        "find markers",
        "make sentences",
    ]
    assert split_clauses("Which genes mark B and NK cells?") == ["Which genes mark B and NK cells"]
    assert split_clauses("Which marker genes distinguish the cell types, and how do monocytes respond?") == [
        "Which marker genes distinguish the cell types",
        "how do monocytes respond",
    ]


def test_entities_from_the_datasets_vocabulary(vocab):
    found = [
        (m.kind, m.text, m.column)
        for m in find_mentions("top 20 genes up in stimulated CD14 Mono, is ISG15 among them?", vocab)
    ]
    assert ("number", "20", None) in found
    assert ("value", "stim", "condition") in found
    assert ("value", "CD14 Mono", "cell_type") in found
    assert ("gene", "ISG15", None) in found
    assert ("gene", "CD14", None) not in found  # part of the label, not a gene mention
    assert [(m.text, m.column) for m in find_mentions("markers for clusters 3 and 5", vocab)] == [
        ("seurat_clusters", "seurat_clusters"),
        ("3", "seurat_clusters"),
        ("5", "seurat_clusters"),
    ]


def test_producer_step_is_inserted_and_ordered(planner, tools, vocab):
    plan = planner.plan("Fit the reverse transform on the top 40 genes", tools, vocab)
    assert [s.tool for s in plan.steps] == ["cell_sentences", "reconstruct_expression"]
    assert plan.steps[1].args == {"top_k": 40}
    assert any(
        n.kind == "inserted" and "added cell_sentences before reconstruct_expression" in n.text for n in plan.notes
    )
    assert plan.steps[0].origin == "inserted"
    assert plan.ok
    # a dataset that already holds the sentences needs no producer step
    have = dataclasses.replace(vocab, slots=vocab.slots | {"obsm:c2s_rank_idx"})
    assert [s.tool for s in planner.plan("Fit the reverse transform", tools, have).steps] == ["reconstruct_expression"]


def test_plan_check_reports_problems(tools, vocab):
    plan = Plan(
        question="q",
        planner="test",
        steps=[
            Step(id="s1", tool="no_such_tool"),
            Step(id="s2", tool="marker_genes", args={"groupby": "tissue"}),
            Step(id="s3", tool="reconstruct_expression"),
            Step(id="s4", tool="marker_genes", args={"groupby": "cell_type", "n_genes": 0}),
        ],
    )
    problems = check(plan, tools, vocab)
    assert problems[0] == "s1: no installed tool is called 'no_such_tool'"
    assert "s2: marker_genes: groupby='tissue' is not an obs column" in problems[1]
    assert "s3: reconstruct_expression needs obsm:c2s_rank_idx" in problems[2]
    assert (
        "s4: tool 'marker_genes': invalid arguments (n_genes: Input should be greater than or equal to 1)"
        in problems[3]
    )


class QcIn(BaseModel):
    pct_threshold: float = Field(20.0, description="percent mitochondrial counts above which a cell is flagged")


class QcOut(BaseModel):
    n_flagged: int


def _qc(ctx, args):
    import numpy as np

    X = ctx.adata.X
    mt = np.asarray(ctx.adata.var_names.str.upper().str.startswith("MT-"))
    pct = 100 * np.asarray(X[:, mt].sum(1)).ravel() / np.maximum(np.asarray(X.sum(1)).ravel(), 1)
    return ToolResult(output=QcOut(n_flagged=int((pct > args.pct_threshold).sum())), evidence="qc")


class QcPlugin:
    @hookimpl
    def register_tools(self, register):
        register(
            Tool(
                name="mito_qc",
                description="Quality control: flag cells with a high percentage of "
                "mitochondrial reads (dying or broken cells).",
                examples=["Which cells have too many mitochondrial reads?", "Run quality control on the cells"],
                input_model=QcIn,
                output_model=QcOut,
                run=_qc,
            )
        )


def test_planner_uses_whatever_tools_are_registered(planner, vocab, asettings):
    plugins.setup(None)
    plugins.pm.register(QcPlugin(), name="qc-test-plugin")
    try:
        tools = registry.tools(asettings)
        plan = planner.plan("Flag cells with more than 15 percent mitochondrial reads", tools, vocab)
        assert plan.summary() == [{"id": "s1", "tool": "mito_qc", "args": {"pct_threshold": 15.0}}]
    finally:
        plugins.pm.unregister(name="qc-test-plugin")
    assert "mito_qc" not in registry.tools(asettings)


# ------------------------------------------------------------------ LLM planner (scripted chat model)
def test_llm_planner_turns_tool_calls_into_a_checked_plan(tools, vocab, asettings, scripted_model):
    from langchain_core.messages import AIMessage

    reply = AIMessage(
        content="",
        tool_calls=[
            {"name": "reconstruct_expression", "args": {"top_k": 50}, "id": "c1"},
            {"name": "marker_genes", "args": {"groupby": "condition", "within": ["CD14 Mono"]}, "id": "c2"},
        ],
        usage_metadata={"input_tokens": 812, "output_tokens": 41, "total_tokens": 853},
    )
    model = scripted_model(reply)
    planner = get_planner(asettings.model_copy(update={"planner": "llm"}), chat_model=model)
    calls = []
    plan = planner.plan(
        "How well do ranks reconstruct expression, and how do CD14 monocytes respond?",
        tools,
        vocab,
        record=lambda kind, **f: calls.append((kind, f)),
    )
    assert [s.tool for s in plan.steps] == ["cell_sentences", "reconstruct_expression", "marker_genes"]
    assert plan.ok and plan.planner == "llm"
    assert set(tools) == set(model.bound[0])
    assert calls[0][0] == "model" and calls[0][1]["tokens_in"] == 812 and calls[0][1]["tokens_out"] == 41


def test_llm_planner_knows_the_predicted_labels(tools, vocab, asettings, scripted_model):
    """The system prompt lists the column annotate_cells will add and its labels; a plan that groups a later step by
    it passes the check although the data does not have it yet."""
    from langchain_core.messages import AIMessage

    reply = AIMessage(
        content="",
        tool_calls=[
            {"name": "annotate_cells", "args": {}, "id": "c1"},
            {
                "name": "score_ligand_receptor",
                "args": {"groupby": "c2s_cell_type", "source": ["CD16 Mono"], "target": ["NK"]},
                "id": "c2",
            },
        ],
    )
    planner = get_planner(asettings, "llm", chat_model=scripted_model(reply))
    system = planner._messages("q", vocab, tools)[0].content
    assert "- obs column 'c2s_cell_type' once annotate_cells has run" in system and "'CD14 Mono', 'CD16 Mono'" in system
    plan = planner.plan("Annotate the cells and score signals from CD16 monocytes to NK cells", tools, vocab)
    assert [s.tool for s in plan.steps] == ["annotate_cells", "score_ligand_receptor"] and plan.ok, plan.problems
    # without the annotation step the same arguments name a column the data lacks
    assert "c2s_cell_type" in " ".join(check(Plan(question="q", planner="t", steps=plan.steps[1:]), tools, vocab))


def test_llm_planner_without_tool_calls_says_no_tool(tools, vocab, asettings, scripted_model):
    from langchain_core.messages import AIMessage

    planner = get_planner(
        asettings, "llm", chat_model=scripted_model(AIMessage(content="No installed tool can do this."))
    )
    plan = planner.plan("Book a meeting", tools, vocab)
    assert not plan.steps and plan.unanswered == ["Book a meeting"]


def test_llm_planner_needs_an_endpoint(asettings):
    with pytest.raises(InputError, match="needs an endpoint and a model name.*C2S_LLM_BASE_URL"):
        get_planner(asettings, "llm")
    with pytest.raises(InputError, match="is not a planner"):
        get_planner(asettings, "oracle")


def test_llm_planner_reports_an_unreachable_endpoint(tools, vocab, asettings):
    from c2s_agent.errors import ModelError

    s = asettings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "any"})
    calls = []
    with pytest.raises(ModelError, match="LLM planner: the chat model call failed.*use --planner embedded"):
        get_planner(s, "llm").plan("Find markers", tools, vocab, record=lambda kind, **f: calls.append(f))
    assert calls and calls[0]["status"] == "error"


def test_numpy_embedder_matches_sentence_transformers():
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from c2s_agent.agent.embedder import embedder, model_dir

    torch.set_num_threads(1)
    texts = ["How do monocytes respond to interferon?", "Find marker genes", "a much longer sentence " * 20]
    ref = SentenceTransformer(str(model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = embedder().encode(texts)
    assert np.allclose(ours, ref, atol=1e-4)


def test_bundled_tool_embeddings_are_current_and_right():
    """The shipped embeddings cover every built-in tool text (else: python -m c2s_agent.agent.planners.matching)
    and equal what the embedder computes now."""
    import numpy as np

    from c2s_agent.agent.embedder import embedder
    from c2s_agent.agent.planners.matching import _bundled, _text_key, builtin_tool_texts

    texts = builtin_tool_texts()
    assert len(texts) > 50
    missing = [t for t in texts if _text_key(t) not in _bundled()]
    assert not missing, (
        f"stale prompts/planner_embeddings.npz; rebuild it: python -m c2s_agent.agent.planners.matching ({missing[:3]})"
    )
    sample = texts[::17]
    fresh = embedder().encode(sample)
    np.testing.assert_allclose(np.stack([_bundled()[_text_key(t)] for t in sample]), fresh, atol=1e-5)


@pytest.mark.parametrize("data", ["demo", "pbmc68k"])
def test_annotate_then_interactions_use_the_predicted_labels(planner, tools, asettings, data):
    """Annotation keeps every label; the ligand-receptor step groups by the predicted types, with "monocytes" and
    "T cells" mapped onto the model's labels, whatever the dataset calls its own cell types."""
    from c2s_agent.data import read

    vocab = DatasetView.from_adata(read(data, backed=True))
    plan = planner.plan("Annotate the cells and find interactions from monocytes to T cells", tools, vocab)
    assert plan.summary() == [
        {"id": "s1", "tool": "annotate_cells", "args": {}},
        {
            "id": "s2",
            "tool": "score_ligand_receptor",
            "args": {
                "groupby": "c2s_cell_type",
                "source": ["CD14 Mono", "CD16 Mono"],
                "target": ["CD4 Memory T", "CD4 Naive T", "CD8 T", "T activated"],
            },
        },
    ]
    assert plan.ok, plan.problems
    # without the annotation the data's own column is used, and a predicted column is not assumed
    alone = planner.plan("Find interactions from monocytes to T cells", tools, vocab)
    assert [s.tool for s in alone.steps] == ["score_ligand_receptor"] and alone.steps[0].args[
        "groupby"
    ] != "c2s_cell_type"


def test_question_file_with_a_repeated_id_is_refused(tmp_path):
    """Results are keyed by question id (the eval harness caches by it): a repeated id would hide a question."""
    q = "- {id: a1, kind: single, question: Describe the data, expected: [{tool: describe_dataset}]}\n"
    path = tmp_path / "q.yaml"
    path.write_text(q + q)
    with pytest.raises(InputError, match=r"\['a1'\] more than once"):
        load_questions(path)
