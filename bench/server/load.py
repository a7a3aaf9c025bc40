"""A bounded load client and a server launcher for the model server, shared by bench/server/run.py and
tests/test_server_load.py. Traffic goes only to 127.0.0.1; request counts and time are bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

HEALTH_TIMEOUT = 120


def request_mix(n: int) -> list[tuple[str, str, dict | None]]:
    """``n`` requests, real model work in the mix: cheap model listings, short embeddings, two-token
    completions and a label-scoring task (method, path, body)."""
    out = []
    for i in range(n):
        r = i % 20
        if r < 9:
            out.append(("GET", "/v1/models", None))
        elif r < 15:
            out.append(("POST", "/v1/embeddings", {"input": f"Cell sentence: CD74 LYZ S100A{i % 12} HLA-DRA ."}))
        elif r < 19:
            out.append(
                (
                    "POST",
                    "/v1/completions",
                    {"prompt": "Generate a ctrl B cell . Cell sentence:", "max_tokens": 2, "temperature": 0},
                )
            )
        else:
            out.append(("POST", "/v1/c2s/predict_cell_types", {"sentences": ["CD74 HLA-DRA MS4A1 CD79A CD79B LYZ"]}))
    return out


@dataclass
class LoadResult:
    statuses: list[int] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def run_load(url: str, requests: list, clients: int, timeout: float = 120) -> LoadResult:
    """Send ``requests`` from ``clients`` concurrent connections; every response and error is recorded."""
    import httpx

    res = LoadResult()
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def client():
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
            while True:
                try:
                    method, path, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    resp = await (c.get(path) if method == "GET" else c.post(path, json=body))
                    res.statuses.append(resp.status_code)
                    if resp.status_code != 200:
                        res.errors.append(f"{path}: {resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    res.statuses.append(-1)
                    res.errors.append(f"{path}: {type(exc).__name__}: {exc}")
                res.latencies.setdefault(path, []).append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    res.seconds = time.perf_counter() - t0
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int = 1, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``c2s serve`` in its own process on 127.0.0.1 (so its memory can be measured and it can be signalled)."""
    import httpx

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "c2s_agent", "serve", "--port", str(port), "--threads", str(threads), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def shutdown_with_requests_in_flight(
    proc: subprocess.Popen, url: str, n: int = 16, wait: float = 60
) -> tuple[list[int], int | None]:
    """Start ``n`` label-scoring requests, send SIGTERM while they run, and return their statuses and the
    server's exit code (None if it did not exit within ``wait`` seconds)."""
    import httpx

    body = {"sentences": ["CD74 HLA-DRA MS4A1 CD79A CD79B LYZ S100A8 S100A9 " * 8] * 64}

    async def one(c):
        try:
            return (await c.post("/v1/c2s/predict_cell_types", json=body)).status_code
        except httpx.HTTPError:
            return -1

    async with httpx.AsyncClient(base_url=url, timeout=wait, limits=httpx.Limits(max_connections=n)) as c:
        tasks = [asyncio.create_task(one(c)) for _ in range(n)]
        await asyncio.sleep(0.5)  # the requests are sent and being worked on
        proc.send_signal(signal.SIGTERM)
        statuses = list(await asyncio.gather(*tasks))
    try:
        code = proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    return statuses, code
