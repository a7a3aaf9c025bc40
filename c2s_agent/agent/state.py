"""The agent graph's state. Input is narrow (run id, question, data); the rest is filled by the nodes and
checkpointed after every node, so a killed run resumes where it stopped."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict


def merge(left: dict, right: dict) -> dict:
    """Reducer: step results accumulate by step id."""
    return {**(left or {}), **(right or {})}


class InputState(TypedDict):
    """What a caller gives: the run id (also the checkpointer's thread id), the question and the data."""

    run_id: str
    question: str
    data: str | None
    approve: str | None  # pause before steps costing at least this ("medium" or "high"), or None
    hypothesize: bool  # hypothesis mode: build ranked hypotheses from the results before the report


class RunState(InputState, total=False):
    plan: dict | None  # Plan.model_dump(): the plan being carried out (changes on re-plan)
    initial_plan: dict | None
    cursor: int  # index of the next step to run
    results: Annotated[dict, merge]  # step id -> {tool, args, evidence, output, artefacts, duration_s, plugin}
    failures: Annotated[list, operator.add]  # {step, tool, error}
    replans: int
    status: str  # planned | unanswerable | invalid | running | failed_step | done
    report: str | None
    approvals: Annotated[list, operator.add]  # {step, action, args|tool}: the user's answers at approval pauses
    focus: dict  # hypothesis mode: ligand-receptor step id -> condition of interest
    hypotheses: list  # Hypothesis.model_dump() of each, ranked
