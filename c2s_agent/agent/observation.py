"""What a planner sees of a finished step before it decides what comes next: a short structured summary of the
result, never its tables."""

from __future__ import annotations

from ..tools import StepResult

#: Items of a list (and keys of a mapping) kept; characters of a text kept.
MAX_ITEMS, MAX_TEXT = 5, 300


def summary(result: StepResult) -> dict:
    """The step's id, tool, arguments, evidence line and output, lists cut to their first items, nesting to two
    levels and text to its first characters (larger parts are said by their size)."""
    return {
        "step": result.step,
        "tool": result.tool,
        "args": _short(result.args, 2),
        "evidence": _short(result.evidence, 0),
        "output": _short(result.output, 2),
    }


def _short(value, depth: int):
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + " ..."
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        if depth == 0:
            return f"<{len(value)} entries>"
        items = list(value.items())
        out = {str(k): _short(v, depth - 1) for k, v in items[: 2 * MAX_ITEMS]}
        if len(items) > 2 * MAX_ITEMS:
            out["..."] = f"{len(items) - 2 * MAX_ITEMS} more entries"
        return out
    if isinstance(value, (list, tuple)):
        if depth == 0:
            return f"<{len(value)} items>"
        out = [_short(v, depth - 1) for v in value[:MAX_ITEMS]]
        return out + ([f"... {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else [])
    return _short(str(value), 0)
