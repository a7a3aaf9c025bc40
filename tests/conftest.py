"""Shared test set-up: offline hubs, calm threads, the bundled datasets."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Hermetic: caches (the knowledge index, embeddings) and runs of a test session live in one temporary folder,
# never in ~/.cache or the working directory.
_SESSION = tempfile.mkdtemp(prefix="c2s-tests-")
atexit.register(shutil.rmtree, _SESSION, ignore_errors=True)
os.environ["C2S_CACHE_DIR"] = os.path.join(_SESSION, "cache")
os.environ["C2S_RUNS_DIR"] = os.path.join(_SESSION, "runs")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def kang():
    """The bundled Kang 2018 IFN-beta PBMC subset (2,000 cells, raw counts)."""
    from c2s_agent.data import read

    return read("kang2018")


@pytest.fixture(scope="session")
def pbmc():
    """The bundled pbmc68k_reduced (700 cells; X scaled, .raw log-normalised)."""
    from c2s_agent.data import read

    return read("pbmc68k")


@pytest.fixture()
def settings(tmp_path):
    """Settings with runs and caches inside the test's temporary folder."""
    from c2s_agent.config import Settings

    return Settings(runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="session")
def example_plugin():
    """The example third-party plugin's entry-point name; ``make setup`` installs its package into the venv."""
    import importlib.metadata

    names = {ep.name for ep in importlib.metadata.entry_points(group="c2s_agent")}
    assert "cell_cycle" in names, (
        "the example plugin is not installed: run `make setup` (pip install -e plugins/c2s-example-plugin)"
    )
    return "cell_cycle"


@pytest.fixture()
def scripted_model():
    """A factory of SCRIPTED chat models (langchain_core's GenericFakeChatModel replaying the given AIMessages, e.g.
    JSON plans) that keep each call's messages and options (``calls``), to exercise how the LLM planner handles
    replies, invalid output, failures and tokens; the planner against a real model is tested with SmolLM2 served by
    `c2s serve` on 127.0.0.1."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class Scripted(GenericFakeChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.__dict__.setdefault("calls", []).append({"messages": messages, **kwargs})
            return super()._generate(messages, stop, run_manager, **kwargs)

    return lambda *replies: Scripted(messages=iter(replies))


@pytest.fixture()
def plan_reply():
    """An AIMessage whose content is a JSON plan of (tool, args) steps, with optional token usage."""
    import json

    from langchain_core.messages import AIMessage

    def reply(*steps, usage=None):
        content = json.dumps({"steps": [{"tool": t, "args": a} for t, a in steps]})
        return AIMessage(content=content, usage_metadata=usage) if usage else AIMessage(content=content)

    return reply
