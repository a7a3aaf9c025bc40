"""The graph's nodes. Each is idempotent: a step whose ledger row says it finished is not run again, so a
run resumed after a crash between a step's end and the next checkpoint does not redo it."""

from __future__ import annotations

import json
import time
import traceback

from langgraph.runtime import Runtime

from .context import RunContext
from .plan import Plan, Step
from .state import RunState

MAX_REPLANS = 2
COST_RANK = {"low": 0, "medium": 1, "high": 2}


def needs_approval(tool, approve: str | None) -> bool:
    """With ``--approve LEVEL``, steps whose tool costs at least LEVEL (or is irreversible) pause for the user."""
    if not approve:
        return False
    return COST_RANK.get(tool.cost, 0) >= COST_RANK.get(approve, 2) or bool(getattr(tool, "irreversible", False))


def _ask_approval(step: Step, tool) -> tuple[str, dict]:
    """Pause the graph (LangGraph interrupt) until the user accepts, edits the arguments or skips the step.
    Returns (action, arguments); an edit with arguments the tool rejects is asked again."""
    from langgraph.types import interrupt

    from ..errors import PlanError

    args, problem = step.args, None
    for _ in range(5):
        answer = interrupt({"step": step.id, "tool": step.tool, "args": args, "cost": tool.cost, "why": step.why,
                            "problem": problem}) or {}
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


def _write_plan(ctx: RunContext, plan: Plan, name: str = "plan.json") -> None:
    path = ctx.run_dir / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(plan.model_dump_json(indent=1))
    tmp.replace(path)


def plan(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Plan the question against the installed tools and the dataset's vocabulary, then check the plan."""
    ctx = runtime.context
    if state.get("plan"):
        return {}
    t0 = time.perf_counter()
    vocab = ctx.vocab()
    record = lambda kind, **f: ctx.ledger.record("plan", kind, **f)  # noqa: E731
    p = ctx.planner.plan(state["question"], ctx.tools, vocab, record=record)
    focus = {}
    if state.get("hypothesize"):
        from .hypotheses import adapt_plan

        p, focus = adapt_plan(p)
    ctx.timings["plan_s"] += time.perf_counter() - t0
    _write_plan(ctx, p)
    status = "unanswerable" if not p.steps else ("invalid" if p.problems else "planned")
    ctx.progress("plan", {"plan": p, "status": status})
    return {"plan": p.model_dump(), "initial_plan": p.model_dump(), "cursor": 0, "results": {}, "replans": 0,
            "status": status, "focus": focus}


def execute(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Run the step at the cursor (or take its stored result if the ledger says it already finished)."""
    ctx = runtime.context
    p = Plan.model_validate(state["plan"])
    step = p.steps[state["cursor"]]
    done = ctx.ledger.finished(step.id)
    if done is not None:
        ctx.progress("step_skipped", {"step": step})
        return {"results": {step.id: done}, "cursor": state["cursor"] + 1, "status": "running"}
    tool = ctx.tools[step.tool]
    extra = {}
    if needs_approval(tool, state.get("approve")):
        action, args = _ask_approval(step, tool)
        if action == "skip":
            return _skip(state, p, step, ctx)
        extra["approvals"] = [{"step": step.id, "action": action, "args": args}]
        if action == "edit" and args != step.args:
            note = f"{step.id} ({step.tool}): arguments edited by the user: {json.dumps(args)}"
            step = step.model_copy(update={"args": args})
            p = p.model_copy(update={"steps": [step if s.id == step.id else s for s in p.steps], "notes": [*p.notes, note]})
            _write_plan(ctx, p)
            extra["plan"] = p.model_dump()
        ctx.progress("approval", {"step": step, "action": action})
    ctx.progress("step_start", {"step": step, "index": state["cursor"], "total": len(p.steps)})
    ctx.ledger.start_step(step.id, step.tool, step.args)
    from ..tools import ToolContext

    tctx = ToolContext(ctx.adata(), ctx.run_dir, ctx.settings, step_id=step.id, data_path=ctx.input_path(),
                       record_call=lambda kind, **f: ctx.ledger.record(step.id, kind, **f))
    t0 = time.perf_counter()
    try:
        res = tool.invoke(tctx, step.args)
    except Exception as exc:  # noqa: BLE001 - a failing tool leads to a re-plan, not a crash
        dt = time.perf_counter() - t0
        ctx.timings["tools_s"] += dt
        error = f"{type(exc).__name__}: {exc}"
        ctx.ledger.finish_step(step.id, "error", dt, error=error + "\n" + traceback.format_exc(limit=3))
        ctx.progress("step_failed", {"step": step, "error": error})
        return {"failures": [{"step": step.id, "tool": step.tool, "args": step.args, "error": error}],
                "status": "failed_step", **extra}
    dt = time.perf_counter() - t0
    ctx.timings["tools_s"] += dt
    if tool.produces and ctx.adata() is not None:
        ctx.persist()
    result = {"tool": step.tool, "plugin": tool.plugin, "args": step.args, "why": step.why, "evidence": res.evidence,
              "output": json.loads(res.output.model_dump_json()), "artefacts": [a.model_dump() for a in res.artefacts],
              "duration_s": dt}
    ctx.ledger.finish_step(step.id, "ok", dt, result=result)
    ctx.progress("step_done", {"step": step, "result": result})
    return {"results": {step.id: result}, "cursor": state["cursor"] + 1, "status": "running", **extra}


def _skip(state: RunState, p: Plan, step: Step, ctx: RunContext) -> dict:
    """The user skipped ``step``: drop it and the later steps that needed what only it would produce."""
    from .planners.base import drop_dependents

    cursor = state["cursor"]
    done_slots = set()
    for s in p.steps[:cursor]:
        done_slots |= set(ctx.tools[s.tool].slots("produces", s.args))
    kept, dropped = drop_dependents(p.steps[cursor + 1:], step, ctx.tools, ctx.vocab(), done_slots)
    note = f"{step.id} ({step.tool}) skipped by the user" + (f"; {'; '.join(dropped)}" if dropped else "")
    p = p.model_copy(update={"steps": p.steps[:cursor] + kept, "notes": [*p.notes, note]})
    _write_plan(ctx, p)
    ctx.progress("approval", {"step": step, "action": "skip"})
    return {"plan": p.model_dump(), "approvals": [{"step": step.id, "action": "skip", "tool": step.tool}],
            "status": "running"}


def replan(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """After a failed step: let the planner replace it (next-best tool) or drop the steps that needed it."""
    ctx = runtime.context
    p = Plan.model_validate(state["plan"])
    cursor = state["cursor"]
    failed: Step = p.steps[cursor]
    error = state["failures"][-1]["error"]
    done_slots = set()
    for s in p.steps[:cursor]:
        done_slots |= set(ctx.tools[s.tool].slots("produces", s.args))
    t0 = time.perf_counter()
    if state.get("replans", 0) < MAX_REPLANS:
        new = ctx.planner.replan(p, failed, error, ctx.tools, ctx.vocab(), done_slots=done_slots,
                                 record=lambda kind, **f: ctx.ledger.record("replan", kind, **f))
    else:
        from .planners.base import drop_dependents

        new, _ = drop_dependents(p.steps[cursor + 1:], failed, ctx.tools, ctx.vocab(), done_slots)
    ctx.timings["plan_s"] += time.perf_counter() - t0
    kept = {s.id for s in new}
    dropped = [s.id for s in p.steps[cursor + 1:] if s.id not in kept]
    note = f"{failed.id} ({failed.tool}) failed: {error}"
    note += "; replaced by " + ", ".join(f"{s.id} ({s.tool})" for s in new if s.id not in {x.id for x in p.steps}) \
        if any(s.id not in {x.id for x in p.steps} for s in new) else ""
    note += f"; dropped {', '.join(dropped)}" if dropped else ""
    p = p.model_copy(update={"steps": p.steps[:cursor] + new, "notes": [*p.notes, note]})
    _write_plan(ctx, p)
    ctx.progress("replan", {"note": note})
    return {"plan": p.model_dump(), "replans": state.get("replans", 0) + 1, "status": "running"}


def hypothesize(state: RunState, runtime: Runtime[RunContext]) -> dict:
    """Hypothesis mode: ranked hypotheses from the step results, saved to hypotheses.json."""
    from .hypotheses import build

    ctx = runtime.context
    t0 = time.perf_counter()
    hyps = build(state.get("results") or {}, ctx.run_dir, ctx.settings, focus=state.get("focus"))
    dt = time.perf_counter() - t0
    ctx.timings["hypotheses_s"] = ctx.timings.get("hypotheses_s", 0.0) + dt
    out = [h.model_dump() for h in hyps]
    (ctx.run_dir / "hypotheses.json").write_text(json.dumps(out, indent=1))
    ctx.progress("hypotheses", {"hypotheses": hyps})
    return {"hypotheses": out}


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
