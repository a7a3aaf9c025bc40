"""Executors: where the shards of a suite run. ``local`` runs them one after another in this process;
``ray`` sends each shard to a Ray cluster as a task (a local Ray started on demand, or ``address``), through
:func:`c2s_agent.jobs.run_jobs`.

Both call the same :func:`run_shard`, with the same items in the same shards and the same torch thread
count, so they produce identical result rows.

With the ``vllm`` backend, the ``ray`` executor sends model inference through Ray Data's LLM processor
(``ray.data.llm.build_processor`` with a ``vLLMEngineProcessorConfig``: one vLLM engine per GPU of the cluster,
one CPU engine on a cluster without GPUs): shards of model tasks run in the driver on the ``ray-vllm`` backend,
each of their model calls one Ray Data job; the other shards still go to Ray tasks.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InputError
from ..jobs import EXECUTORS, ray_cluster, run_jobs


@dataclass
class Shard:
    """Items of one cell sent to a worker together, with their row keys."""

    cell: object
    items: list[dict]
    keys: list[str]


@dataclass
class ShardResult:
    shard: Shard
    results: list[dict] | None
    error: str | None
    seconds: float
    worker: str


def run_shard(cell, items: list[dict], settings, threads: int) -> tuple[list[dict] | None, str | None, float, str]:
    """Run one shard in this process: (results, error, seconds, worker)."""
    import torch

    from .tasks import get_task

    torch.set_num_threads(max(1, threads))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        results = get_task(cell.task, settings).run(cell, items, settings)
        if len(results) != len(items):
            raise RuntimeError(f"task {cell.task} returned {len(results)} results for {len(items)} items")
        return results, None, time.perf_counter() - t0, worker
    except Exception as exc:  # noqa: BLE001 - a failing item is recorded, the others go on
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0, worker


def execute(
    executor: str,
    shards: list[Shard],
    settings,
    threads: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[ShardResult]:
    """Yield each shard's results as soon as it finishes."""
    if executor == "local":
        for shard in shards:
            yield ShardResult(shard, *run_shard(shard.cell, shard.items, settings, threads))
    elif executor == "ray":
        yield from _ray(shards, settings, threads, address, num_cpus)
    else:
        raise InputError(f"executor {executor!r}", "is not an executor", f"use one of {list(EXECUTORS)}")


def _ray(shards, settings, threads, address, num_cpus) -> Iterator[ShardResult]:
    in_driver = [_ray_llm(s, settings) for s in shards]
    remote = [s for s, here in zip(shards, in_driver) if not here]
    with ray_cluster(address, num_cpus):
        jobs = run_jobs(run_shard, [(s.cell, s.items, settings, threads) for s in remote], "ray", threads)
        llm_settings = settings.model_copy(update={"backend": "ray-vllm"})
        for shard in (s for s, here in zip(shards, in_driver) if here):
            yield ShardResult(shard, *run_shard(shard.cell, shard.items, llm_settings, threads))
        for i, out in jobs:
            if isinstance(out, Exception):
                yield ShardResult(remote[i], None, f"{type(out).__name__}: {out}", 0.0, "ray")
            else:
                yield ShardResult(remote[i], *out)


def _ray_llm(shard: Shard, settings) -> bool:
    """Whether this shard's model inference goes through Ray Data's LLM processor (model tasks, vllm backend)."""
    from .tasks import get_task

    return getattr(settings, "backend", "auto") == "vllm" and get_task(shard.cell.task, settings).uses_model
