"""The agent graph: plan -> execute steps (one node run per step), each followed by the planner's look at its
result (observe) or, when it failed, a re-plan -> (hypotheses) -> report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.graph import END, START, StateGraph

from ..tools import Evidence, Hypothesis
from . import nodes
from .context import RunContext
from .plan import Note, Plan, Step
from .state import Failure, InputState, RunState


def after_plan(state: RunState) -> str:
    return "execute" if state.get("status") == "planned" else "report"


def _finished(state: RunState) -> str:
    return "hypothesize" if state.get("hypothesize") else "report"


def after_execute(state: RunState) -> str:
    if state.get("status") == "failed_step":
        return "replan"
    if state.get("status") == "stepped":
        return "observe"
    return after_replan(state)


def after_replan(state: RunState) -> str:
    return "execute" if state["cursor"] < len(state["plan"].steps) else _finished(state)


def build(checkpointer=None):
    """The compiled graph; pass a checkpointer to make runs resumable (thread id = run id)."""
    g = StateGraph(RunState, input_schema=InputState, context_schema=RunContext)
    g.add_node("plan", nodes.plan)
    g.add_node("execute", nodes.execute)
    g.add_node("replan", nodes.replan)
    g.add_node("observe", nodes.observe)
    g.add_node("hypothesize", nodes.hypothesize)
    g.add_node("report", nodes.report)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", after_plan, ["execute", "report"])
    g.add_conditional_edges("execute", after_execute, ["execute", "replan", "observe", "hypothesize", "report"])
    g.add_conditional_edges("replan", after_replan, ["execute", "hypothesize", "report"])
    g.add_conditional_edges("observe", after_replan, ["execute", "hypothesize", "report"])
    g.add_edge("hypothesize", "report")
    g.add_edge("report", END)
    return g.compile(checkpointer=checkpointer)


#: The only types a checkpoint may hold besides plain data (the serializer refuses any other class).
STATE_TYPES = [Plan, Step, Note, Failure, Hypothesis, Evidence]


def sqlite_checkpointer(runs_dir: Path):
    """A SQLite checkpointer shared by all runs in ``runs_dir`` (one thread per run), restricted to the state's
    own types."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    runs_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(runs_dir / "checkpoints.sqlite", check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    serde = JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in STATE_TYPES])
    return SqliteSaver(conn, serde=serde)
