"""Where independent jobs run: one after another in this process (``local``) or as tasks on a Ray cluster
(``ray``: the cluster at ``address``, or a local Ray started on demand and stopped afterwards).

The evaluation harness sends its shards here and the streaming model tasks their chunks; a job is a function
and its arguments, picklable for Ray. Ray is imported only by the ``ray`` executor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .errors import InputError

EXECUTORS = ("local", "ray")


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None):
    """Connect to Ray (the running session, the cluster at ``address``, or a new local one with ``num_cpus``);
    a session started here is shut down on leaving."""
    try:
        import ray
    except ImportError:
        raise InputError(
            "executor 'ray'",
            "needs Ray, which is not installed",
            'pip install "c2s-agent[ray]" (or pip install "ray[data]")',
        ) from None
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": num_cpus or os.cpu_count()}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def run_jobs(
    fn: Callable,
    jobs: Sequence[tuple],
    executor: str = "local",
    cpus_per_job: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[tuple[int, object]]:
    """Yield ``(i, fn(*jobs[i]))`` as each job finishes. Locally an exception propagates; on Ray a job whose
    worker was lost yields the exception as its result, so the caller decides what it costs."""
    if executor == "local":
        for i, args in enumerate(jobs):
            yield i, fn(*args)
    elif executor == "ray":
        with ray_cluster(address, num_cpus) as ray:
            remote = ray.remote(num_cpus=max(1, cpus_per_job))(fn)
            pending = {remote.remote(*args): i for i, args in enumerate(jobs)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        yield i, ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a lost worker fails its job only
                        yield i, exc
    else:
        raise InputError(f"executor {executor!r}", "is not an executor", f"use one of {list(EXECUTORS)}")
