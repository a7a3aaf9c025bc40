"""Safe defaults: local-only servers unless told otherwise (with a warning when exposed without a key),
constant-time key checks, no model or LLM output ever executed, planner file paths confined to the run and
data directories."""

from __future__ import annotations

import ast
import inspect
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2s_agent.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.joinpath("c2s_agent").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")])
SOURCES = [p for p in SOURCES if "build" not in p.parts and ".venv" not in p.parts]


def test_servers_bind_loopback_by_default():
    from c2s_agent.config import Settings
    from c2s_agent.models import server

    assert Settings().host == "127.0.0.1"
    assert inspect.signature(server.serve).parameters["host"].default == "127.0.0.1"


def _serve_stderr(extra_env: dict, host: str) -> str:
    """Start `c2s serve --host HOST`, read its start-up lines, then stop it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "C2S_API_KEY"}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", **extra_env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "c2s_agent", "serve", "--host", host, "--port", str(port), "--threads", "1"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    out = b""
    deadline = time.monotonic() + 120
    try:  # raw reads of the pipe: a buffered readline can hold a line select() no longer reports
        while time.monotonic() < deadline and b"Serving" not in out:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)  # never block past the deadline
            if not ready:
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out.decode(errors="replace")


def test_exposed_server_without_key_warns():
    # 127.0.0.2 is loopback (no traffic leaves the machine) but is not the default local address, so it counts
    # as "told to bind elsewhere"
    out = _serve_stderr({}, "127.0.0.2")
    assert "Serving" in out and "non-local address without an API key" in out
    out = _serve_stderr({"C2S_API_KEY": "s3cret-key"}, "127.0.0.2")
    assert "Serving" in out and "without an API key" not in out


def test_api_keys_are_compared_in_constant_time():
    from c2s_agent.models import server

    tree = ast.parse(inspect.getsource(server))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    for node in ast.walk(tree):  # no ==/!= comparison touching the key
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"api_key", "token", "given"}, ast.unparse(node)


def _unsafe_calls(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
            bad.append(func)
        elif func == "__import__" and not all(isinstance(a, ast.Constant) for a in node.args):
            bad.append(f"{func} of a computed name")
        elif func in (
            "pickle.load",
            "pickle.loads",
            "marshal.loads",
            "os.system",
            "os.popen",
            "yaml.unsafe_load",
            "yaml.full_load",
            "dill.load",
            "dill.loads",
            "cloudpickle.load",
            "cloudpickle.loads",
        ):
            bad.append(func)
        elif func == "yaml.load" and "SafeLoader" not in kw.get("Loader", ""):
            bad.append(func)
        elif kw.get("shell") == "True":
            bad.append(f"{func}(shell=True)")
        elif func == "torch.load" and kw.get("weights_only") != "True":
            bad.append("torch.load without weights_only=True")
        elif func in ("np.load", "numpy.load") and kw.get("allow_pickle") == "True":
            bad.append("np.load(allow_pickle=True)")
    return bad


def test_no_output_is_ever_executed_or_unpickled():
    """No eval/exec, unpickling, unsafe YAML or shell anywhere in the package or built-in plugins, so no model
    or LLM output (nor any file a user is handed) can be run as code."""
    assert len(SOURCES) > 40
    found = {str(p.relative_to(ROOT)): bad for p in SOURCES if (bad := _unsafe_calls(ast.parse(p.read_text())))}
    assert found == {}
    # the checker itself catches what it is meant to
    assert _unsafe_calls(ast.parse("eval(x); pickle.loads(b); subprocess.run(c, shell=True); yaml.load(s)")) == [
        "eval",
        "pickle.loads",
        "subprocess.run(shell=True)",
        "yaml.load",
    ]


def test_planner_paths_are_confined_to_run_and_data_dirs(tmp_path):
    from c2s_agent.config import Settings
    from c2s_agent.tools import ToolContext

    run, data = tmp_path / "runs" / "r1", tmp_path / "data"
    run.mkdir(parents=True)
    data.mkdir()
    (data / "gen.h5ad").write_text("x")
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    (run / "link").symlink_to(outside)
    ctx = ToolContext(None, run, Settings(), data_path=data / "cells.h5ad")
    assert ctx.confined("artefacts/s1_x.csv", "file") == (run / "artefacts" / "s1_x.csv").resolve()
    assert ctx.confined(data / "gen.h5ad", "file") == (data / "gen.h5ad").resolve()
    assert ctx.confined("../../data/gen.h5ad", "file") == (data / "gen.h5ad").resolve()
    for bad in ("../../secret.txt", str(outside), "/etc/passwd", "link", "artefacts/../../../secret.txt"):
        with pytest.raises(InputError, match=r"is outside the run and data directories.*Fix: give a path inside"):
            ctx.confined(bad, "file")
    without_data = ToolContext(None, run, Settings())
    with pytest.raises(InputError, match="outside"):
        without_data.confined(data / "gen.h5ad", "file")
