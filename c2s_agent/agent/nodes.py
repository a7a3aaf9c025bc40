"""The graph's nodes. Each is idempotent: a step whose ledger row says it finished is not run again, so a run
resumed after a crash between a step's end and the next checkpoint does not redo it. The agent knows tools only
through their contract (:class:`c2s_agent.tools.Tool`): costs, slots, hypothesis builders."""

from __future__ import annotations

import json
import time
import traceback

from langgraph.runtime import Runtime

from ..tools import HypothesisContext, StepResult, ToolContext
from .context import RunContext
from .plan import Note, Plan, Step
from .state import Failure, RunState

MAX_REPLANS = 2
COST_RANK = {"low": 0, "medium": 1, "high": 2}


def needs_approval(tool, approve: str | None) -> bool:
    """With ``--approve LEVEL``, steps whose tool costs at least LEVEL pause for the user."""
    return bool(approve) and COST_RANK.get(tool.cost, 0) >= COST_RANK.get(approve, 2)


def _ask_approval(step: Step, tool) -> tuple[str, dict]:
    """Pause the graph (LangGraph interrupt) until the user accepts, edits the arguments or skips the step.
    Returns (action, arguments); an edit with arguments the tool rejects is asked again."""
    from langgraph.types import interrupt

    from ..errors import PlanError

    args, problem = step.args, None
    for _ in range(5):
        answer = (
            interrupt(
                {
                    "step": step.id,
                    "tool": step.tool,
                    "args": args,
                    "cost": tool.cost,
                    "why": step.why,
                    "problem": problem,
                }
            )
            or {}
        )
        action = answer.get("action", "accept")
        if action not in ("accept", "edit", "skip"):
            problem = f"unknown action {action!r}: answer accept, edit or skip"
            continue
        if action != "edit":
            return action, args
        try:
            tool.validate_args(answer.get("args") or {})
        except PlanError as exc:
            problem, args = f"the edited arguments were rejected: {exc}", answer.get("args") or {}
            continue
        return "edit", answer["args"]
    return "skip", args


def _write_plan(ctx: RunContext, plan: Plan) -> None:
    path = ctx.run_dir / "plan.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(plan.model_dump_json(indent=1))
    tmp.replace(path)


def _focus(plan: Plan, tools: dict) -> tuple[Plan, dict[str, str]]:
    """Hypothesis mode: steps whose tool says how (``focus_args``) run with the arguments it gives, and the
    condition of interest it took out is kept for the hypotheses."""
    steps, notes, focus = [], [], {}
    for s in plan.steps:
        adapt = getattr(tools.get(s.tool), "focus_args", None)
        args, cond = adapt(s.args) if adapt else (s.args, None)
        if cond is not None:
            focus[s.id] = cond
            notes.append(
                Note(
                    kind="hypothesis",
                    text=f"hypothesis mode: {s.id} ({s.tool}) scores every condition "
                    f"to compare {cond} with its reference",
                )
            )
            s = s.model_copy(update={"args": args})
        steps.append(s)
    return plan.model_copy(update={"steps": steps, "notes": [*plan.notes, *notes]}), focus


def plan(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Plan the question against the installed tools and the dataset's view, then check the plan."""
    ctx = runtime.context
    if state.get("plan"):
        return {}
    t0 = time.perf_counter()
    p = ctx.planner.plan(
        state["question"], ctx.tools, ctx.view(), record=lambda kind, **f: ctx.ledger.record("plan", kind, **f)
    )
    focus = {}
    if state.get("hypothesize"):
        p, focus = _focus(p, ctx.tools)
    ctx.timings["plan_s"] += time.perf_counter() - t0
    _write_plan(ctx, p)
    status = "unanswerable" if not p.steps else ("invalid" if p.problems else "planned")
    ctx.progress("plan", {"plan": p, "status": status})
    return {"plan": p, "initial_plan": p, "cursor": 0, "replans": 0, "status": status, "focus": focus}


def _run_step(ctx: RunContext, step: Step, tool) -> StepResult:
    tctx = ToolContext(
        ctx.adata(),
        ctx.run_dir,
        ctx.settings,
        step_id=step.id,
        data_path=ctx.input_path(),
        record_call=lambda kind, **f: ctx.ledger.record(step.id, kind, **f),
    )
    t0 = time.perf_counter()
    try:
        res = tool.invoke(tctx, step.args)
    finally:
        ctx.timings["tools_s"] += time.perf_counter() - t0
    if tool.produces and ctx.adata() is not None:
        ctx.persist()
    return StepResult(
        step=step.id,
        tool=step.tool,
        plugin=tool.plugin,
        args=step.args,
        why=step.why,
        evidence=res.evidence,
        method=res.method,
        output=res.output.model_dump(mode="json"),
        artefacts=res.artefacts,
        duration_s=time.perf_counter() - t0,
    )


def execute(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Run the step at the cursor (unless the ledger says it already finished)."""
    ctx = runtime.context
    p: Plan = state["plan"]
    step = p.steps[state["cursor"]]
    if ctx.ledger.finished(step.id) is not None:
        ctx.progress("step_skipped", {"step": step})
        return {"cursor": state["cursor"] + 1, "status": "running"}
    tool = ctx.tools[step.tool]
    extra = {}
    if needs_approval(tool, state.get("approve")):
        action, args = _ask_approval(step, tool)
        if action == "skip":
            return _skip(state, p, step, ctx)
        extra["approvals"] = [{"step": step.id, "action": action, "args": args}]
        if action == "edit" and args != step.args:
            step = step.model_copy(update={"args": args, "origin": "user"})
            note = Note(
                kind="edited", text=f"{step.id} ({step.tool}): arguments edited by the user: {json.dumps(args)}"
            )
            p = p.model_copy(
                update={"steps": [step if s.id == step.id else s for s in p.steps], "notes": [*p.notes, note]}
            )
            _write_plan(ctx, p)
            extra["plan"] = p
        ctx.progress("approval", {"step": step, "action": action})
    ctx.progress("step_start", {"step": step, "index": state["cursor"], "total": len(p.steps)})
    ctx.ledger.start_step(step.id, step.tool, step.args)
    t0 = time.perf_counter()
    try:
        result = _run_step(ctx, step, tool)
    except Exception as exc:  # noqa: BLE001 - a failing tool leads to a re-plan, not a crash
        error = f"{type(exc).__name__}: {exc}"
        ctx.ledger.finish_step(
            step.id, "error", time.perf_counter() - t0, error=error + "\n" + traceback.format_exc(limit=3)
        )
        ctx.progress("step_failed", {"step": step, "error": error})
        return {
            "failures": [Failure(step=step.id, tool=step.tool, args=step.args, error=error)],
            "status": "failed_step",
            **extra,
        }
    ctx.ledger.finish_step(step.id, "ok", result.duration_s, result=result)
    ctx.progress("step_done", {"step": step, "result": result})
    return {"cursor": state["cursor"] + 1, "status": "stepped", **extra}


def _done_slots(ctx: RunContext, steps: list[Step]) -> set[str]:
    out: set[str] = set()
    for s in steps:
        out |= set(ctx.tools[s.tool].slots("produces", s.args))
    return out


def _skip(state: RunState, p: Plan, step: Step, ctx: RunContext) -> dict:
    """The user skipped ``step``: drop it and the later steps that needed what only it would produce."""
    from .planners.base import drop_dependents

    cursor = state["cursor"]
    kept, dropped = drop_dependents(
        p.steps[cursor + 1 :], step, ctx.tools, ctx.view(), _done_slots(ctx, p.steps[:cursor])
    )
    note = Note(
        kind="skipped", text=f"{step.id} ({step.tool}) skipped by the user" + "".join(f"; {d}" for d in dropped)
    )
    p = p.model_copy(update={"steps": p.steps[:cursor] + kept, "notes": [*p.notes, note]})
    _write_plan(ctx, p)
    ctx.progress("approval", {"step": step, "action": "skip"})
    return {"plan": p, "approvals": [{"step": step.id, "action": "skip", "tool": step.tool}], "status": "running"}


def replan(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """After a failed step: let the planner replace it (keeping the question's intent) or drop the steps that
    needed it."""
    from .planners.base import drop_dependents

    ctx = runtime.context
    p: Plan = state["plan"]
    cursor = state["cursor"]
    failed = p.steps[cursor]
    done = _done_slots(ctx, p.steps[:cursor])
    t0 = time.perf_counter()
    if state.get("replans", 0) < MAX_REPLANS:
        new, notes = ctx.planner.replan(
            p,
            failed,
            state["failures"][-1].error,
            ctx.tools,
            ctx.view(),
            record=lambda kind, **f: ctx.ledger.record("replan", kind, **f),
            done_slots=done,
        )
    else:
        new, dropped = drop_dependents(p.steps[cursor + 1 :], failed, ctx.tools, ctx.view(), done)
        notes = [Note(kind="replanned", text=d) for d in dropped]
    ctx.timings["plan_s"] += time.perf_counter() - t0
    notes = [Note(kind="replanned", text=f"{failed.id} ({failed.tool}) failed: {state['failures'][-1].error}"), *notes]
    p = p.model_copy(update={"steps": p.steps[:cursor] + new, "notes": [*p.notes, *notes]})
    _write_plan(ctx, p)
    ctx.progress("replan", {"note": "; ".join(n.text for n in notes)})
    return {"plan": p, "replans": state.get("replans", 0) + 1, "status": "running"}


def observe(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """After a step ran: the planner sees a summary of its result and may change, extend or stop the rest of the
    plan, within the step budget (``settings.max_steps``)."""
    from .observation import summary

    ctx = runtime.context
    p: Plan = state["plan"]
    cursor = state["cursor"]
    done = p.steps[cursor - 1]
    result = ctx.ledger.finished(done.id) if ctx.settings.observe else None
    if result is None:
        return {"status": "running"}
    t0 = time.perf_counter()
    new, notes = ctx.planner.observe(
        p,
        done,
        summary(result),
        ctx.tools,
        ctx.view(),
        record=lambda kind, **f: ctx.ledger.record("observe", kind, **f),
        done_slots=_done_slots(ctx, p.steps[:cursor]),
        budget=max(0, ctx.settings.max_steps - cursor),
    )
    ctx.timings["plan_s"] += time.perf_counter() - t0
    if new is None and not notes:
        return {"status": "running"}
    steps = p.steps[:cursor] + (p.steps[cursor:] if new is None else new)
    p = p.model_copy(update={"steps": steps, "notes": [*p.notes, *notes]})
    _write_plan(ctx, p)
    ctx.progress("replan", {"note": "; ".join(n.text for n in notes)})
    return {"plan": p, "status": "running"}


def hypothesize(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Hypothesis mode: ranked hypotheses from the tools that build them, saved to hypotheses.json."""
    from ..tl.hypotheses import ranked

    ctx = runtime.context
    t0 = time.perf_counter()
    results = ctx.ledger.results()
    hyps = []
    for r in results:
        build = getattr(ctx.tools.get(r.tool), "hypotheses", None)
        if build is not None:
            hyps += build(
                r, HypothesisContext(ctx.run_dir, ctx.settings, results, (state.get("focus") or {}).get(r.step))
            )
    hyps = ranked(hyps)
    ctx.timings["hypotheses_s"] = ctx.timings.get("hypotheses_s", 0.0) + time.perf_counter() - t0
    (ctx.run_dir / "hypotheses.json").write_text("[" + ",\n".join(h.model_dump_json() for h in hyps) + "]")
    ctx.progress("hypotheses", {"hypotheses": hyps})
    return {"hypotheses": hyps}


def report(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Write report.md and report.html into the run directory."""
    from .report import write_report

    ctx = runtime.context
    t0 = time.perf_counter()
    path = write_report(ctx, state)
    ctx.timings["report_s"] += time.perf_counter() - t0
    status = state.get("status") if state.get("status") in ("unanswerable", "invalid") else "done"
    ctx.progress("report", {"path": path})
    return {"report": str(path), "status": status}
