"""Everything plugins add, as typed registrations, and one accessor per kind.

A plugin's hook calls ``register(obj)`` with one of these objects (a :class:`~c2s_agent.tools.Tool` for tools);
``obj.name`` is its key. The plugin manager (:mod:`c2s_agent.plugins`) fills in ``plugin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plugins

if TYPE_CHECKING:
    from .tools import Tool


@dataclass(frozen=True)
class BackendFactory:
    """A model backend: ``factory(model, settings)`` returns a :class:`c2s_agent.models.backend.Backend` for a
    model path or URL."""

    name: str
    factory: Callable[[str, Any], Any]
    plugin: str = ""


@dataclass(frozen=True)
class EncoderFactory:
    """A cell encoder for metrics: ``factory(settings)`` returns a :class:`c2s_agent.metrics.encoders.Encoder`."""

    name: str
    factory: Callable[..., Any]
    plugin: str = ""


@dataclass(frozen=True)
class KnowledgeSource:
    """A knowledge source: ``loader(path=None)`` yields :class:`c2s_agent.knowledge.records.Record` objects read
    from ``files`` (a different path may be given); ``files`` also decide when the index is stale."""

    name: str
    loader: Callable[..., Iterator[Any]]
    files: tuple[Path, ...] = ()
    plugin: str = ""


@dataclass(frozen=True)
class GeneProgram:
    """A named gene program (signature) for scoring and screens, with a short provenance text."""

    name: str
    genes: tuple[str, ...]
    source: str = ""
    plugin: str = ""

    def restricted(self, universe) -> tuple[str, ...]:
        """The program's genes that are in ``universe`` (all of them when ``universe`` is None)."""
        if universe is None:
            return self.genes
        known = {str(g).upper() for g in universe}
        return tuple(g for g in self.genes if g in known)


@dataclass(frozen=True)
class RewardFactory:
    """A training reward: ``factory(data=RewardData, **options)`` returns ``reward(prompts, completions,
    **columns) -> list[float]`` (see :mod:`c2s_agent.training.rewards`)."""

    name: str
    factory: Callable[..., Callable[..., list[float]]]
    plugin: str = ""


@dataclass(frozen=True)
class EvalTask:
    """An evaluation task of the suites (:class:`c2s_agent.evaluation.tasks.Task` instance)."""

    name: str
    task: Any
    plugin: str = ""


@dataclass(frozen=True)
class PlannerFactory:
    """A planner: ``factory(settings, **options)`` returns an object with ``plan`` and ``replan`` (see
    :class:`c2s_agent.agent.planners.base.Planner`)."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""


#: Kind of registration -> (its hook, the type its objects must have; None: a Tool).
KINDS: dict[str, tuple[str, type | None]] = {
    "tools": ("register_tools", None),
    "backends": ("register_backends", BackendFactory),
    "encoders": ("register_encoders", EncoderFactory),
    "knowledge_sources": ("register_knowledge_sources", KnowledgeSource),
    "gene_programs": ("register_gene_programs", GeneProgram),
    "rewards": ("register_rewards", RewardFactory),
    "eval_tasks": ("register_eval_tasks", EvalTask),
    "planners": ("register_planners", PlannerFactory),
}


def collect(kind: str, settings=None) -> dict[str, Any]:
    """Every registration of ``kind`` (a key of :data:`KINDS`) by name, under the settings' allow-list."""
    from .tools import Tool

    hook, cls = KINDS[kind]
    return plugins.registered(hook, settings, cls or Tool)


def tools(settings=None) -> dict[str, Tool]:
    """Agent tools by name."""
    return collect("tools", settings)


def backends(settings=None) -> dict[str, BackendFactory]:
    return collect("backends", settings)


def encoders(settings=None) -> dict[str, EncoderFactory]:
    return collect("encoders", settings)


def knowledge_sources(settings=None) -> dict[str, KnowledgeSource]:
    return collect("knowledge_sources", settings)


def gene_programs(settings=None) -> dict[str, GeneProgram]:
    return collect("gene_programs", settings)


def rewards(settings=None) -> dict[str, RewardFactory]:
    return collect("rewards", settings)


def eval_tasks(settings=None) -> dict[str, EvalTask]:
    return collect("eval_tasks", settings)


def planners(settings=None) -> dict[str, PlannerFactory]:
    return collect("planners", settings)
