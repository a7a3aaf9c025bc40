"""``c2s mcp``: c2s-agent for any Model Context Protocol client (desktop assistants, IDEs, other agents).

Built on the official ``mcp`` SDK's low-level :class:`mcp.server.Server`, so that each installed tool is offered
with its own input model's JSON schema, exactly (plus ``data``: the dataset the tool runs on), and its description.
Besides the tools: ``ask`` (the whole agent: plan, run, report; ``follow_up_of`` continues a session) and the run
reports as resources (``c2s://runs/{run_id}/report.md``). Datasets are named by path and must lie in the allowed
directories (the working directory, the bundled demo data, ``--allow`` / ``C2S_MCP_ALLOW``), or be a demo name.

A dataset is read and normalised once and kept in memory with the slots tools add (e.g. predicted cell types),
so later calls on it can use them. Each tool call writes its files to ``<runs_dir>/mcp/<id>/``.

Start-up: importing the plugins (numpy, pandas, matplotlib ...) takes seconds, so the tool list is kept in the
cache directory under a fingerprint of what defines it (c2s-agent's version, the plugin allow-list, the allowed
directories and the plugins' source files). A server whose fingerprint matches answers ``tools/list`` from it at
once, then loads the plugins and, should the live list differ, replaces it and tells the client (``list_changed``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Optional

import typer

from ._app import app, console

REPORT_URI = re.compile(r"^c2s://runs/(?P<run_id>[\w.-]+)/report\.md$")
ASK_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "the research question in plain language"},
        "data": {
            "type": "string",
            "description": "the dataset (see the data argument of the other tools); not needed with follow_up_of",
        },
        "follow_up_of": {
            "type": "string",
            "description": "a run id: ask a follow-up in that run's session, which "
            "keeps its data state and may refer to its earlier turns "
            '("those genes", "now the same for the B cells")',
        },
        "hypothesize": {
            "type": "boolean",
            "default": False,
            "description": "also propose ranked, testable hypotheses with their evidence",
        },
    },
    "required": ["question"],
}


ASK_DESCRIPTION = (
    "Ask c2s-agent a research question about a single-cell dataset: it plans with the installed tools, "
    "runs them and returns an evidence-linked report (also readable as the run's report resource)."
)


class Roots:
    """The directories datasets may be read from; demo names are always allowed."""

    def __init__(self, extra: list[str] | None = None):
        from ..resources import bundled

        dirs = [Path.cwd(), bundled("data"), *(Path(d).expanduser() for d in extra or [])]
        self.dirs = list(dict.fromkeys(d.resolve() for d in dirs))

    def check(self, data: str) -> str:
        """``data`` as a demo name, or as the resolved path of a file inside the allowed directories."""
        from ..errors import InputError
        from ..resources import DEMO_ALIASES, DEMO_DATASETS

        if data in DEMO_DATASETS or data in DEMO_ALIASES:
            return data
        path = Path(data).expanduser().resolve()
        if not any(path.is_relative_to(d) for d in self.dirs):
            raise InputError(
                f"data {data!r}",
                "is outside the directories this server may read",
                f"use a file under {', '.join(map(str, self.dirs))}, or restart `c2s mcp --allow DIR`",
            )
        if not path.is_file():
            raise InputError(f"data {data!r}", "no such file", "give the path of an .h5ad file, or 'demo'")
        return str(path)


class Tools:
    """Runs the registered tools for MCP calls on datasets read once and kept in memory."""

    def __init__(self, settings, roots: Roots):
        self.settings, self.roots = settings, roots
        self.data: dict[str, tuple[float, object]] = {}  # dataset -> (file mtime, working AnnData)
        self._loading = threading.Lock()  # plugins load once, whichever thread asks first

    def registered(self) -> dict:
        from .. import registry

        with self._loading:
            return registry.tools(self.settings)

    def listing(self) -> list[dict]:
        """What ``tools/list`` answers: name, description and input schema of every tool, then ``ask``."""
        out = [
            {"name": t.name, "description": self.description(t), "input_schema": self.schema(t)}
            for t in self.registered().values()
            if t.name != "ask"
        ]
        return [*out, {"name": "ask", "description": ASK_DESCRIPTION, "input_schema": ASK_SCHEMA}]

    def fingerprint(self) -> str:
        """A digest of what the listing depends on, found without importing any plugin."""
        import importlib.metadata
        import importlib.util

        def files(spec_name: str) -> list:
            spec = importlib.util.find_spec(spec_name)
            if spec is None or spec.origin is None:
                return [spec_name]
            root = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
            paths = sorted(root.rglob("*.py")) if root.is_dir() else [root]
            return [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths]

        eps = sorted(importlib.metadata.entry_points(group="c2s_agent"), key=lambda e: e.name)
        parts = {
            "version": importlib.metadata.version("c2s-agent"),
            "allow": self.settings.plugins,
            "roots": list(map(str, self.roots.dirs)),
            "files": files("c2s_agent") + files("c2s_builtins"),
            "entry_points": [
                (e.name, e.value, e.dist.version if e.dist else None, files(e.module.split(".")[0])) for e in eps
            ],
        }
        return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=12).hexdigest()

    def cache_path(self) -> Path:
        return Path(self.settings.cache_dir) / "mcp" / f"tools-{self.fingerprint()}.json"

    def save_listing(self, listing: list[dict]) -> None:
        path = self.cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(listing))
        tmp.replace(path)

    def schema(self, tool) -> dict:
        """The tool's input schema, with the ``data`` argument when it needs a dataset."""
        schema = tool.input_model.model_json_schema()
        if tool.needs_data:
            schema.setdefault("properties", {})["data"] = {
                "type": "string",
                "description": "the dataset: an .h5ad file in "
                f"{', '.join(map(str, self.roots.dirs))}, or a bundled demo ('demo' = Kang 2018 PBMCs, 'pbmc68k')",
            }
            schema["required"] = [*schema.get("required", []), "data"]
        return schema

    @staticmethod
    def description(tool) -> str:
        slots = "".join(f"\n{k}: {', '.join(v)}" for k, v in (("Needs", tool.requires), ("Adds", tool.produces)) if v)
        return f"{tool.description}\nExamples: {'; '.join(tool.examples[:3])}{slots}"

    def adata(self, data: str):
        """The working AnnData of a dataset, read and normalised on first use."""
        from ..data import prepare, read
        from ..resources import demo_path

        path = self.roots.check(data)
        file = Path(path) if Path(path).is_absolute() else demo_path(path)
        mtime = file.stat().st_mtime
        if path not in self.data or self.data[path][0] != mtime:
            self.data[path] = (mtime, prepare(read(path)))
        return path, self.data[path][1]

    def call(self, name: str, arguments: dict) -> dict:
        """Run one tool; returns its output, evidence and artefacts (absolute paths)."""
        from ..agent.runs import new_run_id
        from ..tools import ToolContext

        tool = self.registered()[name]
        args = dict(arguments)
        data = args.pop("data", None)
        tool.validate_args(args)
        path, adata = self.adata(data) if tool.needs_data or data else (None, None)
        call_dir = Path(self.settings.runs_dir) / "mcp" / f"{new_run_id()}-{name}"
        call_dir.mkdir(parents=True)
        file = Path(path) if path and Path(path).is_absolute() else None
        result = tool.invoke(ToolContext(adata, call_dir, self.settings, step_id="s1", data_path=file), args)
        files = [{"kind": a.kind, "title": a.title, "path": str(call_dir / a.path)} for a in result.artefacts]
        return {
            "tool": name,
            "data": path,
            "output": result.output.model_dump(mode="json"),
            "evidence": result.evidence,
            "method": result.method,
            "artefacts": files,
        }

    def ask(
        self, question: str, data: str | None = None, follow_up_of: str | None = None, hypothesize: bool = False
    ) -> dict:
        """The agent on a question (or a follow-up in a session); returns the run's summary and report."""
        from ..agent import runs
        from ..agent.session import Session
        from ..errors import InputError

        if follow_up_of:
            session = Session.open(self.settings, follow_up_of)
            if session.data is not None:
                self.roots.check(session.data)
            out = session.ask(question, hypothesize=hypothesize)
        elif data is None:
            raise InputError("ask", "needs data (or follow_up_of)", "give data: an .h5ad path or 'demo'")
        else:
            out = runs.ask(question, self.roots.check(data), self.settings, hypothesize=hypothesize)
        run = out["run"]
        report = out["run_dir"] / "report.md"
        return {
            "run_id": run["id"],
            "session": run["session"],
            "turn": run["turn"],
            "status": run["status"],
            "answer": [f"{r.evidence} (step {r.step}, {r.tool})" for r in out["results"].values()],
            "report_uri": f"c2s://runs/{run['id']}/report.md",
            "report_html": str(out["run_dir"] / "report.html"),
            "report": report.read_text() if report.exists() else "",
        }


class Listing:
    """The ``tools/list`` answer: from the cache when its fingerprint matches (then checked against the live list
    once the plugins are loaded, the client told if it changed), else live (and cached)."""

    def __init__(self, tools: Tools):
        self.tools, self.served, self._check = tools, None, None

    async def get(self, session) -> list[dict]:
        import asyncio

        import anyio

        if self.served is None:
            path = await anyio.to_thread.run_sync(self.tools.cache_path)
            if path.exists():
                self.served = json.loads(path.read_text())
                self._check = asyncio.get_running_loop().create_task(self._refresh(session))
            else:
                self.served = await anyio.to_thread.run_sync(self.tools.listing)
                await anyio.to_thread.run_sync(self.tools.save_listing, self.served)
        return self.served

    async def _refresh(self, session) -> None:
        import anyio

        live = await anyio.to_thread.run_sync(self.tools.listing)
        live = json.loads(json.dumps(live))
        if live != self.served:
            self.served = live
            await anyio.to_thread.run_sync(self.tools.save_listing, live)
            await session.send_tool_list_changed()


def _content(result: dict) -> list:
    """The text a model reads (evidence, or the report for ``ask``) and the plots as images."""
    import base64

    from mcp.types import ImageContent, TextContent

    if "report" in result:
        return [TextContent(type="text", text=result["report"] or "\n".join(result["answer"]))]
    files = "".join(f"\n- {a['title']}: {a['path']}" for a in result["artefacts"])
    out = [TextContent(type="text", text=result["evidence"] + (f"\nFiles:{files}" if files else ""))]
    for a in result["artefacts"]:
        if a["kind"] == "plot" and a["path"].endswith(".png"):
            data = base64.b64encode(Path(a["path"]).read_bytes()).decode()
            out.append(ImageContent(type="image", data=data, mime_type="image/png"))
    return out


def build_server(settings, roots: Roots):
    """The MCP server (low-level SDK server: exact tool schemas, our own validation and errors)."""
    import anyio
    import mcp.types as types
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError

    from ..agent import runs
    from ..errors import C2SError

    tools = Tools(settings, roots)
    lock = anyio.Lock()  # one tool at a time: calls share the datasets in memory

    listing = Listing(tools)

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(**t) for t in await listing.get(ctx.session)])

    async def call_tool(ctx, params) -> types.CallToolResult:
        args = params.arguments or {}
        try:
            if params.name != "ask" and params.name not in tools.registered():
                raise MCPError(types.INVALID_PARAMS, f"no tool {params.name!r}; tools/list names them")
            async with lock:
                if params.name == "ask":
                    result = await anyio.to_thread.run_sync(lambda: tools.ask(**args))
                else:
                    result = await anyio.to_thread.run_sync(lambda: tools.call(params.name, args))
        except C2SError as exc:
            return types.CallToolResult(content=[types.TextContent(type="text", text=f"Error: {exc}")], is_error=True)
        except MCPError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing tool is reported to the model, which may try otherwise
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"{type(exc).__name__}: {exc}")], is_error=True
            )
        return types.CallToolResult(content=_content(result), structured_content=result)

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=f"c2s://runs/{r['id']}/report.md",
                    name=f"report {r['id']}",
                    title=r["question"],
                    description=f"{r.get('status')}; data {r.get('data')}; {r.get('created')}",
                    mime_type="text/markdown",
                )
                for r in runs.list_runs(settings)
                if r.get("report")
            ]
        )

    async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template="c2s://runs/{run_id}/report.md",
                    name="run report",
                    mime_type="text/markdown",
                    description="the evidence-linked report of a c2s-agent run (the ask tool returns run ids)",
                )
            ]
        )

    async def read_resource(ctx, params) -> types.ReadResourceResult:
        m = REPORT_URI.match(str(params.uri))
        path = Path(settings.runs_dir) / m["run_id"] / "report.md" if m else None
        if path is None or not path.is_file():
            raise MCPError(types.INVALID_PARAMS, f"no report at {params.uri}; resources/list names them")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=str(params.uri), mime_type="text/markdown", text=path.read_text())]
        )

    from importlib.metadata import version

    return Server(
        "c2s-agent",
        version=version("c2s-agent"),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        instructions=(
            "Single-cell RNA-seq analysis with Cell2Sentence models. Name datasets by path (or 'demo'); "
            "use ask for whole questions and the other tools for single steps."
        ),
    )


def serve_stdio(server) -> None:
    import anyio
    from mcp.server import NotificationOptions
    from mcp.server.stdio import stdio_server

    async def main():
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options(NotificationOptions(tools_changed=True)))

    anyio.run(main)


def serve_http(server, port: int) -> None:
    import uvicorn

    console.print(f"c2s mcp: streamable HTTP on http://127.0.0.1:{port}/mcp")
    uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=port, log_level="warning")


@app.command("mcp")
def mcp_cmd(
    http: bool = typer.Option(False, "--http", help="serve streamable HTTP on 127.0.0.1 instead of stdio"),
    port: int = typer.Option(8765, "--port", help="with --http: the port"),
    allow: Optional[list[str]] = typer.Option(
        None,
        "--allow",
        help="another directory datasets may be read from (repeatable; also C2S_MCP_ALLOW, ':'-separated)",
    ),
) -> None:
    """Serve c2s-agent's tools, `ask` and the run reports to MCP clients (stdio by default)."""
    from ..config import Settings
    from ..errors import InputError

    try:
        import mcp  # noqa: F401
    except ImportError:
        raise InputError(
            "c2s mcp", "needs the MCP SDK, which is not installed", "pip install 'c2s-agent[mcp]'"
        ) from None
    settings = Settings()
    extra = [*(allow or []), *filter(None, (settings.mcp_allow or "").split(os.pathsep))]
    server = build_server(settings, Roots(extra))
    if http:
        serve_http(server, port)
    else:
        serve_stdio(server)
