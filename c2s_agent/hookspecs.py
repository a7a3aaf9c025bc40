"""The plugin API. Each hook receives a ``register`` callable; call it once per thing the plugin adds.

Write a plugin as a module with functions decorated ``@c2s_agent.hookimpl`` named after these hooks and
expose it through the ``c2s_agent`` entry-point group of your package::

    [project.entry-points.c2s_agent]
    my_plugin = "my_package.plugin"

Each hook's docstring documents its parameters in a ``Parameters:`` section (a test checks that the section
names exactly the hook's parameters).
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("c2s_agent")
hookimpl = HookimplMarker("c2s_agent")


@hookspec
def register_tools(register):
    """Add agent tools the planner can choose from.

    Parameters:
        register: call ``register(tool)`` once per :class:`c2s_agent.tools.Tool`; the tool's ``name`` is its
            key and its ``description``, ``examples`` and ``input_model`` are what the planners match against.
    """


@hookspec
def register_backends(register):
    """Add model backends that run Cell2Sentence models.

    Parameters:
        register: call ``register(name, factory)``; ``factory(model, settings)`` returns a
            :class:`c2s_agent.models.backend.Backend` for a model path or URL.
    """


@hookspec
def register_encoders(register):
    """Add cell encoders that map real or generated cells into one embedding space (for metrics).

    Parameters:
        register: call ``register(name, factory)``; ``factory(settings)`` returns a
            :class:`c2s_agent.metrics.encoders.Encoder`.
    """


@hookspec
def register_knowledge_sources(register):
    """Add knowledge sources to index and retrieve (interactions, gene sets, ontologies).

    Parameters:
        register: call ``register(name, loader)``; ``loader()`` yields
            :class:`c2s_agent.knowledge.records.Record` objects.
    """


@hookspec
def register_gene_programs(register):
    """Add named gene programs (signatures) for scoring and screens.

    Parameters:
        register: call ``register(name, genes, source)`` with a list of gene symbols and a short provenance
            text.
    """


@hookspec
def register_rewards(register):
    """Add training rewards for reinforcement learning of C2S models.

    Parameters:
        register: call ``register(name, factory)``; ``factory(data=RewardData, **options)`` returns
            ``reward(prompts, completions, **columns) -> list[float]`` (one value per completion, as TRL's
            GRPO trainer calls it; see :mod:`c2s_agent.training.rewards`).
    """
