"""The agent graph's state. Input is narrow (run id, question, data, options); the nodes fill in the plan, the
cursor and what went wrong, checkpointed after every node, so a killed run resumes where it stopped. Step results
are not state: the run's ledger alone records which steps finished and what they returned."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from pydantic import BaseModel

from ..tools import Hypothesis
from .plan import Plan


class Failure(BaseModel):
    """A step that raised: its id, tool, arguments and the error."""

    step: str
    tool: str
    args: dict = {}
    error: str


class InputState(TypedDict):
    """What a caller gives: the run id (also the checkpointer's thread id), the question and the data."""

    run_id: str
    question: str
    data: str | None
    approve: str | None  # pause before steps costing at least this ("medium" or "high"), or None
    hypothesize: bool  # hypothesis mode: build ranked hypotheses from the results before the report


class RunState(InputState, total=False):
    plan: Plan  # the plan being carried out (changes on re-plan)
    initial_plan: Plan
    cursor: int  # index of the next step to run
    failures: Annotated[list[Failure], operator.add]
    replans: int
    status: str  # planned | unanswerable | invalid | running | stepped (a step ran) | failed_step | done
    report: str | None
    approvals: Annotated[list[dict], operator.add]  # the user's answers at approval pauses
    focus: dict[str, str]  # hypothesis mode: step id -> condition of interest
    hypotheses: list[Hypothesis]  # ranked
