"""The plugin API. Each hook receives a ``register`` callable; call it once per thing the plugin adds.

Write a plugin as a module with functions decorated ``@c2s_agent.hookimpl`` named after these hooks and
expose it through the ``c2s_agent`` entry-point group of your package.
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("c2s_agent")
hookimpl = HookimplMarker("c2s_agent")


@hookspec
def register_tools(register):
    """Add agent tools: call ``register(tool)`` with a :class:`c2s_agent.tools.Tool` for each one."""


@hookspec
def register_backends(register):
    """Add model backends: call ``register(name, factory)`` where ``factory(model, settings)`` returns a
    :class:`c2s_agent.models.backend.Backend` for a model path or URL."""


@hookspec
def register_encoders(register):
    """Add cell encoders: call ``register(name, factory)`` where ``factory(settings)`` returns a
    :class:`c2s_agent.metrics.encoders.Encoder` that maps real or generated cells into one embedding space."""


@hookspec
def register_knowledge_sources(register):
    """Add knowledge sources: call ``register(name, loader)`` where ``loader()`` yields
    :class:`c2s_agent.knowledge.records.Record` objects to index and retrieve."""


@hookspec
def register_gene_programs(register):
    """Add named gene programs: call ``register(name, genes, source)`` with a list of gene symbols and a short
    provenance text."""


@hookspec
def register_rewards(register):
    """Add training rewards: call ``register(name, factory)`` where ``factory(**options)`` returns a callable
    scoring a batch of completions, as TRL's GRPO trainer expects."""
