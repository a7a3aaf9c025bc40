"""Run a suite: expand it into items, skip the ones already in the store, execute the rest (local or Ray),
commit every row as it arrives, then summarise each cell. A re-run with nothing changed only reads the store."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from .executors import EXECUTORS, Shard, execute
from .store import Store
from .suite import NOT_USED, Suite, content_hash


@lru_cache(maxsize=1)
def code_version() -> dict:
    """Package version, the git commit of the checkout, and the git tree hashes of the library code at that
    commit (None outside a checkout). Row keys use the tree hashes, so commits that touch only tests, docs or
    benchmarks keep the cache; the commit is recorded for reports."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("c2s-agent")
    except PackageNotFoundError:
        pkg = "unknown"
    root = Path(__file__).resolve().parents[2]
    out = {"package": pkg, "git": None, "tree": None}
    if (root / ".git").exists():
        try:
            got = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD", "HEAD:c2s_agent", "HEAD:plugins"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.split()
            if len(got) == 3:
                out.update(git=got[0], tree=f"{got[1][:12]}-{got[2][:12]}")
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def model_fingerprint(model: str, settings) -> str | None:
    """What identifies a model's weights: name, size and modification time of every file of a model folder
    (so retraining it in place invalidates the cache), or the URL of a served model."""
    from ..models.model import resolve

    if model == NOT_USED:
        return None
    backend, target = resolve(model, settings)
    path = Path(target)
    if not path.is_dir():
        return f"{backend}:{target}"
    files = sorted(
        (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()
    )
    return f"{backend}:{content_hash(files)[:16]}"


def dataset_fingerprint(dataset: str) -> str | None:
    """Size and modification time of a dataset's file (an edited file is evaluated again)."""
    from ..resources import DEMO_ALIASES, DEMO_DATASETS, demo_path
    from .tasks import resolve_dataset

    if dataset == NOT_USED:
        return None
    path = demo_path(dataset) if dataset in DEMO_DATASETS or dataset in DEMO_ALIASES else Path(resolve_dataset(dataset))
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def row_key(cell, item_id: str, adapter_hash: str, fingerprint: str | None = None) -> str:
    """Content hash of (task, item, dataset, model and its fingerprint, prompt set, config, code version)."""
    return content_hash(
        {
            "task": cell.task,
            "item": item_id,
            "dataset": cell.dataset,
            "dataset_fingerprint": dataset_fingerprint(cell.dataset),
            "model": cell.model,
            "model_fingerprint": fingerprint,
            "prompt_set": cell.prompt_set,
            "config": cell.params,
            "code": {"package": code_version()["package"], "tree": code_version()["tree"], "adapter": adapter_hash},
        }
    )


def run_dir_for(settings, suite_name: str, out: str | Path | None = None, run_id: str | None = None) -> Path:
    if out is not None:
        return Path(out)
    return Path(settings.runs_dir) / "evals" / (run_id or suite_name)


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    n_items: int
    n_cached: int
    n_run: int
    n_errors: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def run_suite(
    suite: Suite,
    settings,
    out: str | Path | None = None,
    run_id: str | None = None,
    executor: str = "local",
    rerun: bool = False,
    threads: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Run every cell of ``suite``; results go to ``out`` (default ``runs_dir/evals/<run_id or suite name>``)."""
    from .tasks import get_task

    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r}", "is not an executor", f"use one of {list(EXECUTORS)}")
    if threads < 1:
        raise InputError("threads", f"must be >= 1 (got {threads})", "use 1 thread per worker, or more")
    t0 = time.perf_counter()
    settings = settings.model_copy(
        update={
            "threads": threads,
            "runs_dir": Path(settings.runs_dir).resolve(),
            "cache_dir": Path(settings.cache_dir).resolve(),
        }
    )
    run_dir = run_dir_for(settings, suite.name, out, run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(run_dir / "results.sqlite")
    cells, plan, shards, n_items, n_cached = suite.cells(settings), [], [], 0, 0
    for cell in cells:
        task = get_task(cell.task, settings)
        items = task.items(cell, settings)
        if not items:
            raise InputError(cell.label, "has no items to evaluate", "check the dataset and the task's parameters")
        adapter = task.source_hash()
        fingerprint = model_fingerprint(cell.model, settings)
        keys = [row_key(cell, it["id"], adapter, fingerprint) for it in items]
        store.add_cell(cell)
        plan.append((cell, [it["id"] for it in items], keys))
        done = set() if rerun else store.done_keys(keys)
        todo = [(it, k) for it, k in zip(items, keys) if k not in done]
        n_items += len(items)
        n_cached += len(items) - len(todo)
        for i in range(0, len(todo), task.shard_size):
            part = todo[i : i + task.shard_size]
            shards.append(Shard(cell, [it for it, _ in part], [k for _, k in part]))
    n_todo = sum(len(s.items) for s in shards)
    errors: list[str] = []
    _say(
        progress,
        f"{suite.name}: {len(cells)} cells, {n_items} items ({n_cached} cached, {n_todo} to run) "
        f"on the {executor} executor -> {run_dir}",
    )
    if shards:
        with _progress(progress) as bar:
            job = bar.add_task("evaluating", total=n_todo)
            for res in execute(executor, shards, settings, threads=threads, address=address, num_cpus=num_cpus):
                sh = res.shard
                for n, (it, key) in enumerate(zip(sh.items, sh.keys)):
                    result = res.results[n] if res.results is not None else None
                    store.write(
                        key,
                        sh.cell.id,
                        sh.cell.task,
                        it["id"],
                        result,
                        res.error,
                        res.seconds / len(sh.items),
                        res.worker,
                    )
                if res.error:
                    errors.append(f"{sh.cell.label} {[it['id'] for it in sh.items][:3]}: {res.error}")
                bar.update(job, advance=len(sh.items), description=sh.cell.label)
    summary = summarise(suite, plan, store, executor)
    seconds = time.perf_counter() - t0
    summary["timing"] = {
        "seconds": round(seconds, 3),
        "items": n_items,
        "cached": n_cached,
        "run": n_todo,
        "errors": len(errors),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _write_manifest(run_dir, suite, executor, threads, summary["timing"])
    store.close()
    return RunResult(run_dir, summary, n_items, n_cached, n_todo, len(errors), seconds, errors)


def summarise(suite: Suite, plan, store: Store, executor: str) -> dict:
    """Metrics of every cell from its stored rows (cells with missing or failed rows are marked incomplete)."""
    from .tasks import get_task

    cells = []
    for cell, item_ids, keys in plan:
        task = get_task(cell.task)
        found = store.results(keys)
        entry = {
            "cell_id": cell.id,
            "label": cell.label,
            "spec": cell.model_dump(),
            "n_items": len(keys),
            "n_done": len(found),
            "metrics": {},
            "better": task.better,
        }
        if len(found) == len(keys):
            try:
                entry["metrics"] = task.summarise(cell, [found[k] for k in keys])
            except Exception as exc:  # noqa: BLE001 - reported in the summary, the other cells still count
                entry["error"] = f"{type(exc).__name__}: {exc}"
        else:
            entry["error"] = f"{len(keys) - len(found)} of {len(keys)} items failed or are missing"
        cells.append(entry)
    return {
        "suite": suite.name,
        "description": suite.description,
        "executor": executor,
        "code": code_version(),
        "cells": cells,
    }


def _write_manifest(run_dir: Path, suite: Suite, executor: str, threads: int, timing: dict) -> None:
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"format": "c2s-agent-eval-run/1", "history": []}
    text = suite.path.read_text() if suite.path else json.dumps(suite.model_dump(), default=str)
    manifest.update(
        {
            "suite": suite.name,
            "suite_path": str(suite.path) if suite.path else None,
            "suite_sha256": content_hash(text),
            "code": code_version(),
            "python": platform.python_version(),
            "results": "results.sqlite",
        }
    )
    manifest["history"].append(
        {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "executor": executor,
            "threads": threads,
            **timing,
        }
    )
    if suite.path:
        (run_dir / "suite.yaml").write_text(text)
    path.write_text(json.dumps(manifest, indent=1))


def _say(progress: bool, text: str) -> None:
    if progress:
        _console().print(text, highlight=False)


def _progress(show: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(),
        disable=not show,
    )


@lru_cache(maxsize=1)
def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)
