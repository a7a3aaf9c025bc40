"""Planners, registered like any plugin's (hook ``register_planners``): the embedded offline planner (default),
the LLM planner, the hybrid (embedded tool matching, the LLM's choice and arguments) and the tuned planner (the
embedded planner with a fine-tuned model's choice between near-equal tools). Also registers the
planner's evaluation task."""

from __future__ import annotations

from ...hookspecs import hookimpl
from ...registry import EvalTask, PlannerFactory
from .base import Planner


def get_planner(settings, name: str | None = None, **options) -> Planner:
    """The planner named ``name`` (default ``settings.planner``); ``options`` go to its factory (e.g. the LLM
    planner's ``chat_model``)."""
    from ... import registry
    from ...errors import InputError

    name = name or settings.planner
    planners = registry.planners(settings)
    if name not in planners:
        raise InputError(f"planner {name!r}", "is not a planner", f"use one of {sorted(planners)}")
    return planners[name].factory(settings, **options)


def _embedded(settings, **_):
    from .embedded import EmbeddedPlanner

    return EmbeddedPlanner(settings)


def _llm(settings, chat_model=None, **_):
    from .llm import LLMPlanner

    return LLMPlanner(settings, chat_model=chat_model)


def _tuned(settings, **_):
    from .tuned import TunedPlanner

    return TunedPlanner(settings)


def _hybrid(settings, chat_model=None, **_):
    from .hybrid import HybridPlanner

    return HybridPlanner(settings, chat_model=chat_model)


@hookimpl
def register_planners(register):
    register(PlannerFactory("embedded", _embedded, "offline: MiniLM similarity of question clauses to tool texts"))
    register(PlannerFactory("llm", _llm, "an OpenAI-compatible chat model writing a schema-checked JSON plan"))
    register(
        PlannerFactory(
            "tuned", _tuned, "the embedded planner with a fine-tuned SmolLM2 choosing between near-equal tools"
        )
    )
    register(
        PlannerFactory("hybrid", _hybrid, "the embedded matcher proposes 3 tools per clause; the chat model chooses")
    )


@hookimpl
def register_eval_tasks(register):
    from ..eval_task import TASK

    register(EvalTask(TASK.name, TASK))


__all__ = ["Planner", "get_planner"]
