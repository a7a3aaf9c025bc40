"""The JSON schema of a whole plan, built from the installed tools: ``{"steps": [{"tool": ..., "args": {...}}]}``,
one ``anyOf`` branch per tool whose ``args`` follow the tool's input model, with label-valued fields restricted to
the dataset's own columns and labels; and checking a model's reply against it (schema, then the input model)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..arguments import KINDS, base_type, column_named, entity_kind

if TYPE_CHECKING:
    from ...tools import Tool
    from ..dataset import DatasetView

#: The most steps a plan may have.
MAX_STEPS = 5
#: The most items a list argument may have (small models otherwise repeat items until cut off).
MAX_ITEMS = 6
_DROP = {"title", "default", "examples", "entity", "$defs"}  # "entity": the planner's own hint (arguments.py)


class InvalidPlan(ValueError):
    """A model's reply that is not a plan of the installed tools; the message says what is wrong."""


def _inline(node, defs: dict):
    """``node`` with every ``$ref`` to ``$defs`` replaced by the definition, and annotations (``_DROP``) dropped."""
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out = {k: _inline(v, defs) for k, v in node.items() if k not in _DROP and k != "properties"}
    if "properties" in node:
        out["properties"] = {name: _inline(v, defs) for name, v in node["properties"].items()}
    return out


def _allowed(kind, view: DatasetView, predicted: dict[str, list[str]]) -> tuple[str, list[str]] | None:
    """("one" or "many", allowed values) for a field taking ``kind`` of entity; None when it is not restricted."""
    columns = {**view.columns, **predicted}
    labels = sorted({v for vs in columns.values() for v in vs})
    if kind == "obs_column":
        return "one", [*columns, *view.numeric_columns]
    if kind in ("obs_value", "obs_values", "obs_filter"):
        return ("one" if kind == "obs_value" else "many"), labels
    if kind not in KINDS and (col := column_named(view, str(kind))):
        return "one", list(columns.get(col, labels))
    return None


def args_schema(tool: Tool, view: DatasetView | None, predicted: dict[str, list[str]] | None = None) -> dict:
    """The JSON schema of ``tool``'s arguments: its input model's, closed to unknown fields, with fields that
    take the dataset's columns or labels restricted to those the dataset has (or ``predicted`` ones)."""
    raw = tool.input_model.model_json_schema()
    schema = _inline(raw, raw.get("$defs", {}))
    props = schema.get("properties", {})
    for name, f in tool.input_model.model_fields.items() if view is not None else ():
        allowed = _allowed(entity_kind(name, f), view, predicted or {})
        if name not in props or not allowed or not allowed[1]:
            continue
        many = allowed[0] == "many" or base_type(f.annotation)[1]
        enum = {"type": "string", "enum": allowed[1]}
        props[name] = {"type": "array", "items": enum, "minItems": 1} if many else enum
    for prop in props.values():
        for node in [prop, *prop.get("anyOf", [])]:
            if node.get("type") == "array":
                node.setdefault("maxItems", MAX_ITEMS)
    return {
        "type": "object",
        "properties": props,
        "required": schema.get("required", []),
        "additionalProperties": False,
    }


def plan_schema(
    tools: dict[str, Tool], view: DatasetView | None, predicted: dict[str, list[str]] | None = None
) -> dict:
    """The schema of a plan of ``tools``: at most ``MAX_STEPS`` steps, each a tool name and its arguments."""
    steps = [
        {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": [name]}, "args": args_schema(tool, view, predicted)},
            "required": ["tool", "args"],
            "additionalProperties": False,
        }
        for name, tool in tools.items()
    ]
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"anyOf": steps}, "maxItems": MAX_STEPS}},
        "required": ["steps"],
        "additionalProperties": False,
    }


def _where(error) -> str:
    return "/".join(map(str, error.absolute_path)) or "the plan"


def parse_plan(text: str, schema: dict, tools: dict[str, Tool]) -> list[tuple[str, dict]]:
    """The (tool, args) steps of a model's reply; :class:`InvalidPlan` saying what is wrong when the reply is
    not JSON, does not follow ``schema`` or gives arguments a tool's input model rejects."""
    from jsonschema import Draft202012Validator
    from pydantic import ValidationError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPlan(f"the reply is not JSON ({exc.msg} at character {exc.pos}): {text[:120]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise InvalidPlan('the reply must be a JSON object {"steps": [{"tool": ..., "args": {...}}, ...]}')
    branches = {b["properties"]["tool"]["enum"][0]: b for b in schema["properties"]["steps"]["items"]["anyOf"]}
    for i, step in enumerate(data["steps"]):
        name = step.get("tool") if isinstance(step, dict) else None
        if name not in branches:
            raise InvalidPlan(f"steps/{i}/tool {name!r} is not an installed tool; use one of {sorted(branches)}")
        err = next(iter(Draft202012Validator(branches[name]).iter_errors(step)), None)
        if err is not None:
            raise InvalidPlan(f"steps/{i} ({name}): {_where(err)}: {err.message[:200]}")
        try:
            tools[name].input_model.model_validate(step["args"])
        except ValidationError as exc:
            e = exc.errors()[0]
            raise InvalidPlan(f"steps/{i} ({name}): args/{'/'.join(map(str, e['loc']))}: {e['msg']}") from None
    err = next(iter(Draft202012Validator(schema).iter_errors(data)), None)
    if err is not None:
        raise InvalidPlan(f"{_where(err)}: {err.message[:200]}")
    return [(s["tool"], s["args"]) for s in data["steps"]]
