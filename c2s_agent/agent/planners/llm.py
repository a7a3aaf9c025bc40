"""The LLM planner: any LangChain chat model that supports tool calling plans by calling the installed tools
(each tool's input model is its schema). By default a ``ChatOpenAI`` client for the OpenAI-compatible endpoint
in settings (``llm_base_url``, ``llm_model``, ``llm_api_key``; for example a vLLM server)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ...errors import InputError, ModelError
from ...resources import bundled
from ..plan import NO_TOOL, Note, Plan, Step
from .base import Recorder, drop_dependents, finish, keep_intent

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView


def tool_spec(tool: Tool) -> dict:
    """An OpenAI-style function spec for a tool: description plus example questions, and its input schema."""
    desc = tool.description + " Examples: " + "; ".join(tool.examples)
    return {
        "type": "function",
        "function": {"name": tool.name, "description": desc, "parameters": tool.input_model.model_json_schema()},
    }


def dataset_text(
    vocab: DatasetView | None, max_values: int = 30, predicted: dict[str, tuple[str, list[str]]] | None = None
) -> str:
    """The dataset's columns, values, genes and slots; ``predicted`` maps an obs column a tool can add to
    (tool name, its values), e.g. the cell types annotate_cells predicts."""
    if vocab is None:
        return "(no dataset given)"
    lines = [
        f"- obs column {c!r}: {', '.join(map(repr, v[:max_values]))}" + (" ..." if len(v) > max_values else "")
        for c, v in vocab.columns.items()
    ]
    lines += [
        f"- obs column {c!r} once {tool} has run (use it, with these labels, for groups named after that "
        f"step): {', '.join(map(repr, v[:max_values]))}"
        for c, (tool, v) in (predicted or {}).items()
    ]
    lines.append(f"- {len(vocab.genes):,} genes (symbols), slots present: {', '.join(sorted(vocab.slots)[:40])}")
    return "\n".join(lines)


def predicted_columns(tools: dict[str, Tool], vocab: DatasetView | None, settings) -> dict[str, tuple[str, list[str]]]:
    """Obs columns the data lacks that a tool will write, with the values it says it will write."""
    if vocab is None:
        return {}
    out = {}
    for tool in tools.values():
        for slot, values in (tool.produced_values(settings) if tool.produced_values else {}).items():
            kind, _, col = slot.partition(":")
            if kind == "obs" and col not in vocab.columns and values:
                out[col] = (tool.name, list(values))
    return out


class LLMPlanner:
    """Plans with a tool-calling chat model; ``chat_model`` (any LangChain ``BaseChatModel``) overrides the
    endpoint in settings."""

    name = "llm"

    def __init__(self, settings, chat_model=None):
        self.settings = settings
        if chat_model is None:
            if not settings.llm_base_url or not settings.llm_model:
                raise InputError(
                    "planner 'llm'",
                    "needs an endpoint and a model name",
                    "set C2S_LLM_BASE_URL and C2S_LLM_MODEL (e.g. a vLLM server's /v1 URL), or use --planner embedded",
                )
            try:
                from langchain_openai import ChatOpenAI
            except ImportError:
                raise InputError(
                    "planner 'llm'", "needs the langchain-openai package", "pip install 'c2s-agent[openai]'"
                ) from None
            chat_model = ChatOpenAI(
                base_url=settings.llm_base_url,
                model=settings.llm_model,
                api_key=settings.llm_api_key or "not-needed",
                temperature=0,
                timeout=120,
                max_retries=1,
            )
        self.model = chat_model

    def _ask(self, messages, tools: dict[str, Tool], record: Recorder | None, step: str):
        bound = self.model.bind_tools([tool_spec(t) for t in tools.values()])
        t0 = time.perf_counter()
        try:
            reply = bound.invoke(messages)
        except Exception as exc:  # noqa: BLE001 - network, auth or server errors
            if record:
                record(
                    "model",
                    name=f"{self.name}:{step}",
                    duration_s=time.perf_counter() - t0,
                    status="error",
                    error=repr(exc),
                )
            raise ModelError(
                "LLM planner",
                f"the chat model call failed ({exc})",
                "check C2S_LLM_BASE_URL / C2S_LLM_MODEL, or use --planner embedded",
            ) from None
        usage = getattr(reply, "usage_metadata", None) or {}
        if record:
            record(
                "model",
                name=f"{self.name}:{step}",
                duration_s=time.perf_counter() - t0,
                arguments={"messages": len(messages)},
                tokens_in=usage.get("input_tokens"),
                tokens_out=usage.get("output_tokens"),
                output_bytes=len(str(reply.content)),
            )
        return reply

    def _messages(self, question: str, vocab, tools: dict[str, Tool]):
        from langchain_core.messages import HumanMessage, SystemMessage

        data = dataset_text(vocab, predicted=predicted_columns(tools, vocab, self.settings))
        system = (bundled("prompts") / "planner_system.md").read_text().replace("{dataset}", data)
        return [SystemMessage(system), HumanMessage(question)]

    def plan(
        self, question: str, tools: dict[str, Tool], vocab: DatasetView | None, record: Recorder | None = None
    ) -> Plan:
        reply = self._ask(self._messages(question, vocab, tools), tools, record, "plan")
        steps = [Step(id="", tool=c["name"], args=dict(c.get("args") or {}), why=question) for c in reply.tool_calls]
        notes, unanswered = [], []
        if not steps:
            unanswered = [question]
            notes.append(
                Note(kind="unanswered", text=f"{NO_TOOL}: {str(reply.content)[:300]}" if reply.content else NO_TOOL)
            )
        return finish(
            Plan(question=question, steps=steps, planner=self.name, unanswered=unanswered, notes=notes), tools, vocab
        )

    def replan(
        self,
        plan: Plan,
        failed: Step,
        error: str,
        tools: dict[str, Tool],
        vocab: DatasetView | None,
        record: Recorder | None = None,
        done_slots: set[str] | None = None,
    ) -> tuple[list[Step], list[Note]]:
        """The dataset's own labels where the failed step needed a column the data lacks; else ask the model for
        replacement steps, telling it what failed; drop dependents if it offers none."""
        idx = next(i for i, s in enumerate(plan.steps) if s.id == failed.id)
        kept, notes = keep_intent(failed, plan.steps[idx + 1 :], tools, vocab, done_slots or set())
        if kept is not None:
            return kept, notes
        done = ", ".join(f"{s.tool}({s.args})" for s in plan.steps[:idx]) or "nothing"
        msgs = self._messages(
            f"{plan.question}\n\nAlready done: {done}. The step {failed.tool}({failed.args}) "
            f"failed with: {error}. Plan only the remaining work, avoiding that failure.",
            vocab,
            tools,
        )
        reply = self._ask(msgs, tools, record, "replan")
        new = [
            Step(
                id=f"{failed.id}r{i + 1}",
                tool=c["name"],
                args=dict(c.get("args") or {}),
                why=plan.question,
                origin="replacement",
            )
            for i, c in enumerate(reply.tool_calls)
            if c["name"] in tools
        ]
        if new:
            return new, [Note(kind="replanned", text=f"the {self.name} planner replaced {failed.id} and what followed")]
        kept, dropped = drop_dependents(plan.steps[idx + 1 :], failed, tools, vocab, done_slots or set())
        return kept, [Note(kind="replanned", text=d) for d in dropped]
