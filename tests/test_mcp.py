"""``c2s mcp`` tested with the MCP SDK's own client: over stdio (every registered tool listed with its input schema
and description, tools called on the demo data and on a file in an allowed directory, files outside refused,
``ask`` and a follow-up, run reports read as resources) and over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from c2s_agent import registry
from c2s_agent.resources import demo_path

C2S = str(Path(sys.executable).parent / "c2s")
NK = "Which genes are specific to NK cells? Show the top 8."


def _env(settings) -> dict:
    env = {**os.environ, "C2S_RUNS_DIR": str(settings.runs_dir), "C2S_CACHE_DIR": str(settings.cache_dir)}
    env.pop("C2S_PLUGINS", None)
    return env


def _text(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


async def _over_stdio(settings, cwd: Path, outside: Path) -> dict:
    params = StdioServerParameters(command=C2S, args=["mcp"], env=_env(settings), cwd=str(cwd))
    seen = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        seen["tools"] = {t.name: t for t in (await client.list_tools()).tools}
        seen["describe"] = await client.call_tool("describe_dataset", {"data": "demo"})
        seen["markers"] = await client.call_tool(
            "marker_genes", {"data": "local.h5ad", "groupby": "cell_type", "groups": ["NK"], "n_genes": 5}
        )
        seen["outside"] = await client.call_tool("describe_dataset", {"data": str(outside)})
        seen["escape"] = await client.call_tool("describe_dataset", {"data": "link.h5ad"})
        seen["bad_args"] = await client.call_tool("marker_genes", {"data": "demo", "n_genes": "many"})
        seen["ask"] = await client.call_tool("ask", {"question": NK, "data": "demo"})
        run_id = seen["ask"].structured_content["run_id"]
        seen["follow"] = await client.call_tool(
            "ask", {"question": "now the same for the B cells", "follow_up_of": run_id}
        )
        seen["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
        seen["report"] = await client.read_resource(f"c2s://runs/{run_id}/report.md")
        try:
            await client.read_resource("c2s://runs/nope/report.md")
        except MCPError as exc:
            seen["missing"] = str(exc)
    return seen


@pytest.mark.slow
def test_mcp_over_stdio_with_the_sdk_client(settings, tmp_path):
    cwd, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    cwd.mkdir()
    elsewhere.mkdir()
    shutil.copy(demo_path("demo"), cwd / "local.h5ad")
    shutil.copy(demo_path("demo"), elsewhere / "secret.h5ad")
    (cwd / "link.h5ad").symlink_to(elsewhere / "secret.h5ad")  # a link inside that points outside
    seen = anyio.run(_over_stdio, settings, cwd, elsewhere / "secret.h5ad")

    installed = registry.tools(settings)
    assert set(seen["tools"]) == set(installed) | {"ask"}
    for name, tool in installed.items():
        listed = seen["tools"][name]
        assert listed.description.startswith(tool.description)
        props = tool.input_model.model_json_schema().get("properties", {})
        assert set(listed.input_schema["properties"]) == set(props) | ({"data"} if tool.needs_data else set())
        assert ("data" in listed.input_schema.get("required", [])) == tool.needs_data
    assert seen["tools"]["marker_genes"].input_schema["required"] == ["groupby", "data"]

    describe = seen["describe"]
    assert not describe.is_error and describe.structured_content["output"]["n_cells"] == 2000
    markers = seen["markers"]
    assert not markers.is_error and len(markers.structured_content["output"]["markers"]["NK"]) == 5
    assert any(c.type == "image" for c in markers.content)  # the dot plot
    table = next(a["path"] for a in markers.structured_content["artefacts"] if a["kind"] == "table")
    assert Path(table).is_relative_to(settings.runs_dir) and Path(table).exists()
    for key in ("outside", "escape"):
        assert seen[key].is_error and "outside the directories this server may read" in _text(seen[key])
    assert seen["bad_args"].is_error and "n_genes" in _text(seen["bad_args"])

    ask = seen["ask"].structured_content
    assert ask["status"] == "done" and ask["report"].startswith(f"# {NK}")
    follow = seen["follow"].structured_content
    assert (follow["session"], follow["turn"], follow["status"]) == (ask["run_id"], 2, "done")
    assert "MS4A1" in follow["report"]
    assert f"c2s://runs/{ask['run_id']}/report.md" in seen["resources"] and follow["report_uri"] in seen["resources"]
    assert seen["report"].contents[0].text == ask["report"]
    assert "no report at c2s://runs/nope/report.md" in seen["missing"]


async def _listings(settings, cwd: Path) -> tuple[list[str], list[str]]:
    """Tool names listed first, and again after the server said its list changed."""
    from mcp.types import ToolListChangedNotification

    changed = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, ToolListChangedNotification):
            changed.set()

    params = StdioServerParameters(command=C2S, args=["mcp"], env=_env(settings), cwd=str(cwd))
    async with stdio_client(params) as (read, write), ClientSession(read, write, message_handler=on_message) as client:
        await client.initialize()
        first = [t.name for t in (await client.list_tools()).tools]
        with anyio.fail_after(300):
            await changed.wait()
        second = [t.name for t in (await client.list_tools()).tools]
    return first, second


def test_cached_tool_list_is_served_first_and_corrected_when_stale(settings, tmp_path, monkeypatch):
    """A new server answers tools/list from the cache kept under the fingerprint of its plugins; a cached list
    that no longer matches the plugins is replaced as soon as they are loaded, and the client is told."""
    from c2s_agent.cli.mcp_server import Roots, Tools

    monkeypatch.chdir(tmp_path)
    cached = Tools(settings, Roots()).cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps([{"name": "ask", "description": "stale", "input_schema": {"type": "object"}}]))
    first, second = anyio.run(_listings, settings, tmp_path)
    assert first == ["ask"]  # served from the cache, before any plugin was imported
    assert set(second) == set(registry.tools(settings)) | {"ask"}
    assert {t["name"] for t in json.loads(cached.read_text())} == set(second)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _over_http(url: str) -> tuple[list[str], dict]:
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        names = [t.name for t in (await client.list_tools()).tools]
        out = await client.call_tool("describe_dataset", {"data": "pbmc68k"})
    return names, out.structured_content


def test_mcp_over_streamable_http_on_localhost(settings, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [C2S, "mcp", "--http", "--port", str(port)],
        env=_env(settings),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        names, described = anyio.run(_over_http, f"http://127.0.0.1:{port}/mcp")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "ask" in names and "marker_genes" in names
    assert described["output"]["n_cells"] == 700 and json.dumps(described)
