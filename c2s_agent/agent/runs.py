"""Runs: ``ask`` starts one (or the next turn of a session), ``resume`` continues a killed one,
``list_runs``/``show_run`` read them back.

Each run lives in ``<runs_dir>/<id>/``: ``run.json`` (manifest: question, data, planner, versions, status,
timings), ``plan.json``, ``ledger.sqlite``, ``artefacts/``, ``slots/`` (what each step changed in the working data's
slots, one delta file per step; ``working_data`` puts them back on the input), ``report.md`` and ``report.html``. Graph checkpoints of all runs are in
``<runs_dir>/checkpoints.sqlite``, one thread per run id. A follow-up question is a run whose manifest names
its session and the previous turn (``parent``): it starts from the data state that turn left and its planner
resolves references to the earlier turns (:mod:`.followup`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError
from ..logs import library_output_to
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
        raise InputError(
            "question", "is empty", 'ask something, e.g. c2s ask "Which genes mark each cell type?" --data demo'
        )


def _context(run_dir: Path, run: RunManifest, settings, progress, chat_model=None, base=None, state=None) -> RunContext:
    from .. import registry
    from .planners import get_planner

    earlier = earlier_turns(settings, run)
    planner = get_planner(settings, run.planner, chat_model=chat_model)
    if earlier:
        from .followup import FollowUpPlanner, Turn

        planner = FollowUpPlanner(planner, [Turn.load(d) for d, _ in earlier])
    return RunContext(
        settings=settings,
        tools=registry.tools(settings),
        planner=planner,
        ledger=Ledger(run_dir / "ledger.sqlite", run.id),
        run_dir=run_dir,
        manifest=run,
        progress=progress or (lambda event, info: None),
        base=base,
        state=state,
        history=[d / "slots" for d, _ in earlier],
    )


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
        with library_output_to(ctx.run_dir / "run.log"):  # library warnings into the run's log, not the terminal
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
        ctx.save_manifest(
            status="awaiting_approval" if paused else state.get("status"),
            finished=None if paused else datetime.now(timezone.utc).isoformat(timespec="seconds"),
            timings={**ctx.timings, "total_s": ctx.wall()},
            pid=None,
            waiting_for=request,
            report=str(ctx.run_dir / "report.html") if state.get("report") else None,
        )
        results = {r.step: r for r in ctx.ledger.results()}
        adata = ctx.adata()
    finally:
        saver.conn.close()
        ctx.ledger.close()
    return {
        "run_id": ctx.manifest.id,
        "run_dir": ctx.run_dir,
        "state": state,
        "run": ctx.manifest.model_dump(),
        "results": results,
        "adata": adata,
    }


def ask(
    question: str,
    data: str | None,
    settings,
    planner_name: str | None = None,
    progress=None,
    chat_model=None,
    run_id: str | None = None,
    hypothesize: bool = False,
    approve: str | None = None,
    approver=None,
    base=None,
    follows: str | None = None,
    state=None,
) -> dict:
    """Plan and run ``question`` on ``data`` (a path or demo name) or ``base`` (an AnnData in memory); returns
    ``{"run_id", "run_dir", "state", "run", "results", "adata"}`` (``adata``: the working data). With
    ``hypothesize`` the report also holds ranked, testable hypotheses built from the results. With ``approve``
    ("high" or "medium") the run pauses before steps costing at least that and asks ``approver`` (see ``_invoke``).

    ``follows`` (a run id) makes this run the next turn of that run's session: same data, starting from the data
    state the session's turns left (``state``, its AnnData still in memory, spares reading it again)."""
    if approve not in (None, "high", "medium"):
        raise InputError(
            "--approve",
            f"must be 'high' or 'medium' (got {approve!r})",
            "use --approve (pauses before high-cost steps) or --approve-cost medium",
        )
    from .. import registry

    _check_question(question)
    run_id = run_id or new_run_id()
    link = {"session": run_id}
    if follows is not None:
        data, link = _follow(settings, follows, data, base if base is not None else state)
    elif base is None:
        data = input_path(data)
    run_dir = Path(settings.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    planner = planner_name or link.pop("planner", None) or settings.planner
    run = RunManifest(
        id=run_id,
        question=question,
        data=data,
        planner=planner,
        hypothesize=hypothesize,
        approve=approve,
        in_memory=data is None and (base is not None or state is not None),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        created_epoch=time.time(),
        pid=os.getpid(),
        versions=_versions(),
        tools={n: t.plugin for n, t in registry.tools(settings).items()},
        **link,
    )
    ctx = _context(run_dir, run, settings, progress, chat_model, base=base, state=state)
    ctx.save_manifest(data_summary=_data_summary(ctx.adata()))
    return _invoke(
        ctx,
        {"run_id": run_id, "question": question, "data": ctx.data, "hypothesize": hypothesize, "approve": approve},
        approver,
    )


def input_path(data: str | None) -> str | None:
    """A demo name as it is, a file as its absolute path; a missing file is an error."""
    from ..resources import DEMO_ALIASES, DEMO_DATASETS

    if data is None or str(data) in DEMO_DATASETS or str(data) in DEMO_ALIASES:
        return data
    if not Path(data).exists():
        raise InputError(data, "no such file", "check the path, or use --data demo for the bundled Kang 2018 data")
    return str(Path(data).resolve())


def _follow(settings, follows: str, data: str | None, adata) -> tuple[str | None, dict]:
    """The data and session fields of a turn following run ``follows`` (which must have finished)."""
    _, prev = load_run(settings, follows)
    if prev.status not in FINISHED:
        raise InputError(
            f"run {follows!r}",
            f"has not finished ({prev.status})",
            f"finish it first (c2s resume {follows}), then ask the follow-up",
        )
    if data is not None and input_path(data) != prev.data:
        raise InputError(
            f"--data {data}",
            f"differs from the session's data ({prev.data or 'an AnnData in memory'})",
            "leave --data out to continue the session, or start a new one without --session",
        )
    if prev.in_memory and adata is None:
        raise InputError(
            f"session {prev.session or prev.id!r}",
            "was asked of an AnnData in memory",
            "pass the same AnnData again: c2s.Run.load(ID).ask(question, adata=adata)",
        )
    return prev.data, {
        "session": prev.session or prev.id,
        "turn": prev.turn + 1,
        "parent": prev.id,
        "planner": prev.planner,
    }


#: Statuses of runs that will not change any more.
FINISHED = ("done", "unanswerable", "invalid")


def load_run(settings, run_id: str) -> tuple[Path, RunManifest]:
    run_dir = Path(settings.runs_dir) / run_id
    if not (run_dir / "run.json").exists():
        known = [r["id"] for r in list_runs(settings)][:5]
        raise InputError(
            f"run {run_id!r}",
            f"not found in {settings.runs_dir}",
            f"use an id from `c2s runs list` (latest: {', '.join(known) or 'none'})",
        )
    return run_dir, RunManifest.model_validate_json((run_dir / "run.json").read_text())


def earlier_turns(settings, run: RunManifest) -> list[tuple[Path, RunManifest]]:
    """The session turns before ``run`` (following ``parent`` links), oldest first."""
    out, parent, seen = [], run.parent, {run.id}
    while parent is not None and parent not in seen:
        seen.add(parent)
        out.append(load_run(settings, parent))
        parent = out[-1][1].parent
    return out[::-1]


def resume(run_id: str, settings, progress=None, chat_model=None, approver=None, base=None, state=None) -> dict:
    """Continue a run from its last checkpoint (or its approval pause, answered by ``approver``); finished steps
    are not run again. A run asked of an AnnData in memory needs it again (``base``, or a session's ``state``)."""
    run_dir, run = load_run(settings, run_id)
    if run.status in FINISHED:
        raise InputError(
            f"run {run_id!r}",
            f"already finished ({run.status})",
            f"read its report at {run_dir / 'report.html'}, or ask again",
        )
    if run.pid and run.pid != os.getpid() and _alive(run.pid):
        raise InputError(
            f"run {run_id!r}",
            f"is still running (process {run.pid})",
            f"wait for it to finish, or stop that process (kill {run.pid}) and resume",
        )
    if run.in_memory and base is None and state is None:
        raise InputError(
            f"run {run_id!r}",
            "was asked of an AnnData in memory",
            "resume it from Python with the same AnnData: c2s.Run.load(ID).resume(adata=adata)",
        )
    ctx = _context(run_dir, run, settings, progress, chat_model, base=base, state=state)
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
    return sorted(runs, key=lambda r: (r.get("created_epoch") or 0.0, r.get("created", "")), reverse=True)


def working_data(settings, run_id: str):
    """The run's working AnnData: its input normalised, with every slot its steps (and its session's earlier
    turns) added (``c2s runs export``)."""
    run_dir, run = load_run(settings, run_id)
    if run.data is None:
        fix = (
            "use the AnnData you asked it of: c2s added the results to its slots"
            if run.in_memory
            else "export a run that was asked with --data"
        )
        raise InputError(f"run {run_id!r}", "has no data file", fix)
    from ..data import prepare, read
    from .slots import apply_deltas

    adata = prepare(read(run.data))
    for folder in [*(d / "slots" for d, _ in earlier_turns(settings, run)), run_dir / "slots"]:
        apply_deltas(adata, folder)
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
