"""Start-up of `c2s mcp`: seconds from spawning the server to the SDK client holding its tools/list answer (process
start, initialize, tools/list), side by side with the floor: a bare server of the same MCP SDK offering one tool
(Python, the SDK and the stdio transport, nothing of ours). Prints the medians and their ratio.

    .venv/bin/python bench/mcp/startup.py [--repeats 7]

Target (issue 20): `c2s mcp` answers tools/list within 2 s of its start on the 2-core development machine.
Runs and caches go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

BARE = """
import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="echo", description="echo", input_schema={"type": "object"})])


async def main():
    server = Server("bare", on_list_tools=list_tools)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""


async def time_to_tools(command: str, args: list[str], env: dict) -> tuple[float, int]:
    """Seconds until tools/list is answered, and how many tools it listed."""
    t0 = time.perf_counter()
    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params, errlog=open(os.devnull, "w")) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        n = len((await s.list_tools()).tools)
        return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    c2s = str(Path(sys.executable).parent / "c2s")
    with tempfile.TemporaryDirectory(prefix="c2s-bench-mcp-") as tmp:
        env = {
            **os.environ,
            "C2S_RUNS_DIR": f"{tmp}/runs",
            "C2S_CACHE_DIR": f"{tmp}/cache",
            "HF_HUB_OFFLINE": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        cases = {"bare MCP SDK server (floor)": (sys.executable, ["-c", BARE]), "c2s mcp": (c2s, ["mcp"])}
        times: dict[str, list[float]] = {k: [] for k in cases}
        tools: dict[str, int] = {}
        anyio.run(time_to_tools, c2s, ["mcp"], env)  # warm the file cache once, as a second start would find it
        for _ in range(a.repeats):
            for name, (cmd, args) in cases.items():  # interleaved, so load changes hit both alike
                seconds, tools[name] = anyio.run(time_to_tools, cmd, args, env)
                times[name].append(seconds)
    print(f"spawn -> tools/list answered, median of {a.repeats} (min-max), load average {os.getloadavg()[0]:.1f}")
    for name, ts in times.items():
        print(f"  {name:28s} {statistics.median(ts):6.2f} s ({min(ts):.2f}-{max(ts):.2f}), {tools[name]} tools")
    floor, ours = (statistics.median(t) for t in times.values())
    print(f"  ratio c2s mcp / floor: {ours / floor:.2f}x; target <= 2 s: {'met' if ours <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
