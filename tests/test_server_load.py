"""The model server (`c2s serve`, its own process, 127.0.0.1) under a bounded load: 64 concurrent clients send
5,000 requests with real model work in the mix (embeddings, completions, cell-type scoring); every request
succeeds, the server's memory stays bounded, and SIGTERM lets in-flight requests finish before it exits.

Figures (throughput, p50/p99, RSS) are printed by bench/server/run.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import sys
from pathlib import Path

import pytest

CLIENTS, REQUESTS = 64, 5000
RSS_GROWTH_MB = 150


def _load_module():
    path = Path(__file__).resolve().parents[1] / "bench" / "server" / "load.py"
    spec = importlib.util.spec_from_file_location("c2s_bench_server_load", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


load = _load_module()


@pytest.fixture(scope="module")
def served():
    proc, url = load.start_server(threads=1)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def test_64_clients_5000_requests_no_errors_bounded_memory(served):
    proc, url = served
    warm = asyncio.run(load.run_load(url, load.request_mix(200), CLIENTS))
    assert not warm.errors, warm.errors[:3]
    before = load.rss_mb(proc.pid)
    res = asyncio.run(load.run_load(url, load.request_mix(REQUESTS), CLIENTS))
    after = load.rss_mb(proc.pid)
    assert len(res.statuses) == REQUESTS
    assert res.errors == [] and set(res.statuses) == {200}
    assert {"/v1/embeddings", "/v1/completions", "/v1/c2s/predict_cell_types"} <= set(res.latencies)
    assert after - before < RSS_GROWTH_MB, (before, after)


def test_sigterm_finishes_in_flight_requests(served):
    proc, url = served
    assert proc.poll() is None
    statuses, code = asyncio.run(load.shutdown_with_requests_in_flight(proc, url, n=16))
    assert statuses == [200] * 16
    # uvicorn drains, then re-raises the signal it caught: the exit is the SIGTERM, after the requests finished
    assert code in (0, -signal.SIGTERM)
