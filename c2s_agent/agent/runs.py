"""Runs: ``ask`` starts one, ``resume`` continues a killed one, ``list_runs``/``show_run`` read them back.

Each run lives in ``<runs_dir>/<id>/``: ``run.json`` (manifest: question, data, planner, versions, status,
timings), ``plan.json``, ``ledger.sqlite``, ``artefacts/``, ``slots/`` (what each step changed in the working data's
slots, one delta file per step; ``working_data`` puts them back on the input), ``report.md`` and ``report.html``. Graph checkpoints of all runs are in
``<runs_dir>/checkpoints.sqlite``, one thread per run id.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from .context import RunContext, RunManifest
from .ledger import Ledger
from .plan import Plan


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("c2s-agent", "langgraph", "scanpy", "anndata"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _data_summary(adata) -> str | None:
    return None if adata is None else f"{adata.n_obs:,} cells × {adata.n_vars:,} genes"


def dry_run(question: str, data: str | None, settings, planner_name: str | None = None, chat_model=None) -> Plan:
    """The checked plan for ``question`` on ``data``, without running anything."""
    from .. import registry
    from ..data import read
    from .dataset import DatasetView
    from .planners import get_planner

    _check_question(question)
    view = DatasetView.from_adata(read(data, backed=True)) if data else None
    planner = get_planner(settings, planner_name, chat_model=chat_model)
    return planner.plan(question, registry.tools(settings), view)


def _check_question(question: str) -> None:
    if not question or not question.strip():
        raise InputError("question", "is empty", 'ask something, e.g. c2s ask "Which genes mark each cell type?" --data demo')


def _context(run_dir: Path, run: RunManifest, settings, progress, chat_model=None, base=None) -> RunContext:
    from .. import registry
    from .planners import get_planner

    return RunContext(settings=settings, tools=registry.tools(settings),
                      planner=get_planner(settings, run.planner, chat_model=chat_model),
                      ledger=Ledger(run_dir / "ledger.sqlite", run.id), run_dir=run_dir, manifest=run,
                      progress=progress or (lambda event, info: None), base=base)


def pending_approval(graph, config) -> dict | None:
    """The approval request a paused run is waiting for (the interrupt's value), or None."""
    snap = graph.get_state(config)
    return next((i.value for t in snap.tasks for i in t.interrupts), None)


def _invoke(ctx: RunContext, inputs, approver=None) -> dict:
    """Run the graph from ``inputs`` (None: from the last checkpoint). At an approval pause, ``approver(request)``
    gives the answer ({"action": "accept"|"edit"|"skip", "args": {...}}); without one, or when it returns None,
    the run stops with status ``awaiting_approval`` and ``resume`` continues it later."""
    t0 = time.perf_counter()
    import langgraph.checkpoint.sqlite  # noqa: F401 - library imports, timed apart from orchestration
    from langgraph.types import Command

    from .graph import build, sqlite_checkpointer

    ctx.timings["imports_s"] = ctx.timings.get("imports_s", 0.0) + time.perf_counter() - t0

    saver = sqlite_checkpointer(Path(ctx.settings.runs_dir))
    try:
        graph = build(saver)
        config = {"configurable": {"thread_id": ctx.manifest.id}, "recursion_limit": 200}
        request = pending_approval(graph, config) if inputs is None else None
        state = None
        while True:
            if request is not None:
                answer = approver(request) if approver else None
                if answer is None:
                    state = graph.get_state(config).values
                    break
                inputs = Command(resume=answer)
            state = graph.invoke(inputs, config, context=ctx, durability="sync")
            request = pending_approval(graph, config)
            if request is None:
                break
        paused = request is not None
        ctx.save_manifest(status="awaiting_approval" if paused else state.get("status"),
                          finished=None if paused else datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          timings={**ctx.timings, "total_s": ctx.wall()}, pid=None, waiting_for=request,
                          report=str(ctx.run_dir / "report.html") if state.get("report") else None)
        results = {r.step: r for r in ctx.ledger.results()}
    finally:
        saver.conn.close()
        ctx.ledger.close()
    return {"run_id": ctx.manifest.id, "run_dir": ctx.run_dir, "state": state, "run": ctx.manifest.model_dump(),
            "results": results}


def ask(question: str, data: str | None, settings, planner_name: str | None = None, progress=None,
        chat_model=None, run_id: str | None = None, hypothesize: bool = False, approve: str | None = None,
        approver=None) -> dict:
    """Plan and run ``question`` on ``data``; returns ``{"run_id", "run_dir", "state", "run"}``. With
    ``hypothesize`` the report also holds ranked, testable hypotheses built from the results. With ``approve``
    ("high" or "medium") the run pauses before steps costing at least that and asks ``approver`` (see ``_invoke``)."""
    if approve not in (None, "high", "medium"):
        raise InputError("--approve", f"must be 'high' or 'medium' (got {approve!r})",
                         "use --approve (pauses before high-cost steps) or --approve-cost medium")
    from .. import registry
    from ..resources import DEMO_ALIASES, DEMO_DATASETS

    _check_question(question)
    if data is not None and str(data) not in DEMO_DATASETS and str(data) not in DEMO_ALIASES:
        if not Path(data).exists():
            raise InputError(data, "no such file", "check the path, or use --data demo for the bundled Kang 2018 data")
        data = str(Path(data).resolve())
    run_id = run_id or new_run_id()
    run_dir = Path(settings.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    run = RunManifest(id=run_id, question=question, data=data, planner=planner_name or settings.planner,
                      hypothesize=hypothesize, approve=approve,
                      created=datetime.now(timezone.utc).isoformat(timespec="seconds"), created_epoch=time.time(),
                      pid=os.getpid(), versions=_versions(),
                      tools={n: t.plugin for n, t in registry.tools(settings).items()})
    ctx = _context(run_dir, run, settings, progress, chat_model)
    ctx.save_manifest(data_summary=_data_summary(ctx.adata()))
    return _invoke(ctx, {"run_id": run_id, "question": question, "data": data, "hypothesize": hypothesize,
                         "approve": approve}, approver)


def load_run(settings, run_id: str) -> tuple[Path, RunManifest]:
    run_dir = Path(settings.runs_dir) / run_id
    if not (run_dir / "run.json").exists():
        known = [r["id"] for r in list_runs(settings)][:5]
        raise InputError(f"run {run_id!r}", f"not found in {settings.runs_dir}",
                         f"use an id from `c2s runs list` (latest: {', '.join(known) or 'none'})")
    return run_dir, RunManifest.model_validate_json((run_dir / "run.json").read_text())


def resume(run_id: str, settings, progress=None, chat_model=None, approver=None) -> dict:
    """Continue a run from its last checkpoint (or its approval pause, answered by ``approver``); finished steps
    are not run again."""
    run_dir, run = load_run(settings, run_id)
    if run.status in ("done", "unanswerable", "invalid"):
        raise InputError(f"run {run_id!r}", f"already finished ({run.status})",
                         f"read its report at {run_dir / 'report.html'}, or ask again")
    if run.pid and run.pid != os.getpid() and _alive(run.pid):
        raise InputError(f"run {run_id!r}", f"is still running (process {run.pid})",
                         f"wait for it to finish, or stop that process (kill {run.pid}) and resume")
    ctx = _context(run_dir, run, settings, progress, chat_model)
    last = max((r["started"] + (r["duration_s"] or 0) for r in ctx.ledger.rows()), default=run.created_epoch)
    ctx.elapsed_before = max(0.0, last - run.created_epoch)
    ctx.save_manifest(status="running", pid=os.getpid(), resumed=run.resumed + 1)
    return _invoke(ctx, None, approver)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def list_runs(settings) -> list[dict]:
    """Manifests of all runs in ``settings.runs_dir``, newest first."""
    root = Path(settings.runs_dir)
    runs = []
    for p in root.glob("*/run.json") if root.exists() else []:
        try:
            runs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(runs, key=lambda r: r.get("created", ""), reverse=True)


def working_data(settings, run_id: str):
    """The run's working AnnData: its input normalised, with every slot its steps added (``c2s runs export``)."""
    run_dir, run = load_run(settings, run_id)
    if run.data is None:
        raise InputError(f"run {run_id!r}", "has no data", "export a run that was asked with --data")
    from ..data import prepare, read
    from .slots import apply_deltas

    adata = prepare(read(run.data))
    apply_deltas(adata, run_dir / "slots")
    return adata


def show_run(settings, run_id: str) -> dict:
    """A run's manifest with its plan, ledger rows and the paths of its report."""
    run_dir, run = load_run(settings, run_id)
    plan = json.loads((run_dir / "plan.json").read_text()) if (run_dir / "plan.json").exists() else None
    ledger = Ledger(run_dir / "ledger.sqlite", run_id)
    try:
        rows = ledger.rows()
    finally:
        ledger.close()
    return {**run.model_dump(), "plan": plan, "ledger": rows, "run_dir": str(run_dir)}
