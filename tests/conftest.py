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


@pytest.fixture()
def ask_with_llm_planner(tmp_path):
    """``ask(base_url)`` runs `c2s ask --planner llm` end to end in its own process against the chat server at
    ``base_url`` (SmolLM2, step budget 3) and checks what any real model must leave: a plan validated and checked
    (the LLM's, or the embedded planner's with a note after two invalid replies), every step of it run and nothing
    else, and each model call (plan and observations) in the run's ledger with its tokens. Returns the plan."""
    import json
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    def ask(base_url: str) -> dict:
        from c2s_agent import registry
        from c2s_agent.config import Settings

        env = {
            **os.environ,
            "C2S_LLM_BASE_URL": base_url,
            "C2S_LLM_MODEL": "smollm2",
            "C2S_LLM_MAX_TOKENS": "96",
            "C2S_MAX_STEPS": "3",
            "C2S_RUNS_DIR": str(tmp_path / "runs"),
        }
        cmd = [sys.executable, "-m", "c2s_agent", "ask", "Which marker genes distinguish the cell types?"]
        out = subprocess.run(cmd + ["--data", "demo", "--planner", "llm"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        run_dir = Path(out.stdout.strip().splitlines()[-1]).parent
        plan = json.loads((run_dir / "plan.json").read_text())
        fell_back = [n for n in plan["notes"] if n["kind"] == "planner_fallback" and "planned instead" in n["text"]]
        assert plan["steps"] and plan["planner"] == ("embedded" if fell_back else "llm"), plan
        assert len(plan["steps"]) <= 3 and not plan["problems"], plan
        tools = registry.tools(Settings())
        for step in plan["steps"]:
            tools[step["tool"]].input_model.model_validate(step["args"])
        db = sqlite3.connect(run_dir / "ledger.sqlite")
        calls = db.execute("SELECT name, status, tokens_in FROM calls WHERE kind='model'").fetchall()
        ran = [r[0] for r in db.execute("SELECT step_id FROM calls WHERE kind='tool' AND status='ok' ORDER BY started")]
        db.close()
        assert ran == [s["id"] for s in plan["steps"]]
        assert any(c[0] == "llm:plan" for c in calls) and any(c[0].startswith("llm:observe") for c in calls), calls
        assert all(c[1] == "ok" and c[2] > 100 for c in calls), calls
        return plan

    return ask


@pytest.fixture(scope="session")
def serving():
    """``with serving(args, log) as url``: ``python -m ARGS --host 127.0.0.1 --port P`` (a vLLM or c2s server) in
    its own process, output to ``log``; ``url`` (http://127.0.0.1:P) once /health answers, the process ended after."""

    import contextlib
    import socket
    import subprocess
    import sys
    import time

    @contextlib.contextmanager
    def start(args: list[str], log, env: dict | None = None, timeout_s: float = 300):
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", *map(str, args), "--host", "127.0.0.1", "--port", str(port)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env or os.environ.copy()
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{args[0]} not healthy after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return start
