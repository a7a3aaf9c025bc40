"""Planners: the embedded offline planner (default) and the LLM planner, chosen by ``Settings.planner``."""

from __future__ import annotations

from .base import Planner


def get_planner(settings, name: str | None = None, chat_model=None) -> Planner:
    """The planner named ``name`` (default ``settings.planner``); ``chat_model`` overrides the LLM planner's."""
    from ...errors import InputError

    name = name or settings.planner
    if name == "embedded":
        from .embedded import EmbeddedPlanner

        return EmbeddedPlanner(settings)
    if name == "llm":
        from .llm import LLMPlanner

        return LLMPlanner(settings, chat_model=chat_model)
    raise InputError(f"planner {name!r}", "is not a planner", "use 'embedded' or 'llm'")


__all__ = ["Planner", "get_planner"]
