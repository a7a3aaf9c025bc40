"""The plugin API. Each hook receives a ``register`` callable; call ``register(obj)`` once per thing the plugin
adds, with the typed object of :mod:`c2s_agent.registry` (a :class:`c2s_agent.tools.Tool` for tools). The
object's ``name`` is its key.

Write a plugin as a module with functions decorated ``@c2s_agent.hookimpl`` named after these hooks and
expose it through the ``c2s_agent`` entry-point group of your package::

    [project.entry-points.c2s_agent]
    my_plugin = "my_package.plugin"

Each hook's docstring documents its parameters in a ``Parameters:`` section (a test checks that the section
names exactly the hook's parameters and that every registration of the built-ins has the documented type).
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("c2s_agent")
hookimpl = HookimplMarker("c2s_agent")


@hookspec
def register_tools(register):
    """Add agent tools the planners can choose from.

    Parameters:
        register: call ``register(tool)`` once per :class:`c2s_agent.tools.Tool`; its ``description``,
            ``examples`` and ``input_model`` are what the planners match against.
    """


@hookspec
def register_backends(register):
    """Add model backends that run Cell2Sentence models.

    Parameters:
        register: call ``register(BackendFactory(name, factory))``; ``factory(model, settings)`` returns a
            :class:`c2s_agent.models.backend.Backend` for a model path or URL.
    """


@hookspec
def register_encoders(register):
    """Add cell encoders that map real or generated cells into one embedding space (for metrics).

    Parameters:
        register: call ``register(EncoderFactory(name, factory))``; ``factory(settings)`` returns a
            :class:`c2s_agent.metrics.encoders.Encoder`.
    """


@hookspec
def register_knowledge_sources(register):
    """Add knowledge sources to index and retrieve (interactions, gene sets, ontologies).

    Parameters:
        register: call ``register(KnowledgeSource(name, loader, files))``; ``loader(path=None)`` yields
            :class:`c2s_agent.knowledge.records.Record` objects from ``files`` (or another path).
    """


@hookspec
def register_gene_programs(register):
    """Add named gene programs (signatures) for scoring and screens.

    Parameters:
        register: call ``register(GeneProgram(name, genes, source))`` with a tuple of gene symbols and a
            short provenance text.
    """


@hookspec
def register_rewards(register):
    """Add training rewards for reinforcement learning of C2S models.

    Parameters:
        register: call ``register(RewardFactory(name, factory))``; ``factory(data=RewardData, **options)``
            returns ``reward(prompts, completions, **columns) -> list[float]`` (one value per completion, as
            TRL's GRPO trainer calls it; see :mod:`c2s_agent.training.rewards`).
    """


@hookspec
def register_eval_tasks(register):
    """Add evaluation tasks that suites (``c2s eval run``) can name.

    Parameters:
        register: call ``register(EvalTask(name, task))`` with a
            :class:`c2s_agent.evaluation.tasks.Task` instance.
    """


@hookspec
def register_planners(register):
    """Add planners that turn a question into a plan of tool calls.

    Parameters:
        register: call ``register(PlannerFactory(name, factory, description))``; ``factory(settings,
            **options)`` returns a :class:`c2s_agent.agent.planners.base.Planner`.
    """
