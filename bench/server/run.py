"""Model server under bounded load on 127.0.0.1: throughput, p50/p99 latency per endpoint, server RSS before
and after, and a graceful shutdown with requests in flight.

    .venv/bin/python bench/server/run.py [--clients 64] [--requests 5000] [--threads 1]

The server is `c2s serve` (embedded model) in its own process; the request mix is bench/server/load.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import request_mix, rss_mb, run_load, shutdown_with_requests_in_flight, start_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    proc, url = start_server(a.threads)
    try:
        asyncio.run(run_load(url, request_mix(200), a.clients))  # warm-up
        before = rss_mb(proc.pid)
        res = asyncio.run(run_load(url, request_mix(a.requests), a.clients))
        after = rss_mb(proc.pid)
        statuses, code = asyncio.run(shutdown_with_requests_in_flight(proc, url))
    finally:
        if proc.poll() is None:
            proc.kill()
    n_ok = sum(s == 200 for s in res.statuses)
    print(
        f"load: {len(res.statuses)} requests from {a.clients} clients in {res.seconds:.1f} s "
        f"({len(res.statuses) / res.seconds:.0f} req/s), {len(res.statuses) - n_ok} errors"
    )
    allv = np.concatenate([np.asarray(v) for v in res.latencies.values()]) * 1000
    print(
        f"  all            n={allv.size:5d}  p50={np.percentile(allv, 50):7.1f} ms  p99={np.percentile(allv, 99):7.1f} ms"
    )
    for path, lat in sorted(res.latencies.items()):
        ms = np.asarray(lat) * 1000
        print(f"  {path:28s} n={ms.size:5d}  p50={np.percentile(ms, 50):7.1f} ms  p99={np.percentile(ms, 99):7.1f} ms")
    print(f"server RSS: {before:.0f} MB after warm-up, {after:.0f} MB after the load ({after - before:+.0f} MB)")
    print(
        f"graceful shutdown: {sum(s == 200 for s in statuses)}/{len(statuses)} in-flight requests completed, "
        f"exit code {code}"
    )
    for e in res.errors[:5]:
        print("  error:", e)


if __name__ == "__main__":
    main()
