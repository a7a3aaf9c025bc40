"""The planning benchmark: questions with expected plans, scored by exact plan accuracy: the right tools in the
right order with the right key arguments, or an honest refusal. Six bundled sets: ``development`` (the questions
the planners are developed on), ``heldout`` (written before tuning; its failures were seen once measured),
``heldout2`` to ``heldout5`` (each written by someone who had not seen the planner, its code or the other sets;
first measured blind; the failures of sets 2-4 were seen since, set 5 is only scored). None is ever a training set.

Run it with ``c2s eval planning [--planner embedded] [--questions development|heldout|heldout2|heldout3|heldout4|heldout5|FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import yaml

from ..errors import InputError

#: The bundled question sets by name.
QUESTION_SETS = {
    "development": "questions.yaml",
    "heldout": "heldout.yaml",
    "heldout2": "heldout2.yaml",
    "heldout3": "heldout3.yaml",
    "heldout4": "heldout4.yaml",
    "heldout5": "heldout5.yaml",
    "heldout6": "heldout6.yaml",
    "heldout7": "heldout7.yaml",
    "heldout8": "heldout8.yaml",
}


def question_file(name_or_path: str | Path = "development") -> Path:
    """A bundled question set (a name in ``QUESTION_SETS``) or a YAML file."""
    from ..resources import bundled

    if str(name_or_path) in QUESTION_SETS:
        return bundled("evals") / "planning" / QUESTION_SETS[str(name_or_path)]
    return Path(name_or_path)


def _same(expected, got) -> bool:
    if isinstance(expected, list):
        return isinstance(got, list) and sorted(map(_key, expected)) == sorted(map(_key, got))
    return _key(expected) == _key(got)


def _key(value):
    return value.lower() if isinstance(value, str) else value


def plan_matches(expected: list[dict], steps: list[dict]) -> bool:
    """Tools equal and in order; every expected argument equal (lists as sets, strings case-insensitively)."""
    if [e["tool"] for e in expected] != [s["tool"] for s in steps]:
        return False
    return all(
        all(k in s["args"] and _same(v, s["args"][k]) for k, v in (e.get("args") or {}).items())
        for e, s in zip(expected, steps)
    )


def plan_ok(expected: list[dict], plan) -> bool:
    """Whether ``plan`` is the expected one: the same steps (:func:`plan_matches`) and no check problems, or no
    steps where none are expected."""
    if not expected:
        return not plan.steps
    return plan_matches(expected, plan.summary()) and not plan.problems


def load_questions(which: str | Path = "development") -> list[dict]:
    path = question_file(which)
    if not path.exists():
        raise InputError(
            path, "no such question file", f"pass --questions {' or '.join(QUESTION_SETS)}, or a YAML file"
        )
    items = yaml.safe_load(path.read_text())
    for q in items:
        if not {"id", "kind", "question", "expected"} <= set(q):
            raise InputError(
                f"{path} item {q.get('id', '?')}",
                "lacks one of id, kind, question, expected",
                "give every question all four keys",
            )
    seen = Counter(q["id"] for q in items)
    if twice := sorted(i for i, n in seen.items() if n > 1):
        raise InputError(path, f"uses the ids {twice} more than once", "give every question its own id")
    return items


def evaluate(settings, questions: list[dict], planner_name: str = "embedded", chat_model=None, planner=None) -> dict:
    """Plan every question whose expected tools are installed (with ``planner``, else the one named); return
    accuracy overall and per kind."""
    from .. import registry
    from ..data import read
    from .dataset import DatasetView
    from .planners import get_planner

    tools = registry.tools(settings)
    planner = planner or get_planner(settings, planner_name, chat_model=chat_model)
    vocabs: dict[str, DatasetView] = {}
    rows, skipped = [], []
    planner.plan("warm up", tools, None)  # load the embedding model and embed the tools once
    for q in questions:
        needed = {e["tool"] for e in q["expected"]}
        if not needed <= set(tools):
            skipped.append(q["id"])
            continue
        data = q.get("data", "demo")
        if data not in vocabs:
            vocabs[data] = DatasetView.from_adata(read(data, backed=True))
        t0 = time.perf_counter()
        plan = planner.plan(q["question"], tools, vocabs[data])
        latency = time.perf_counter() - t0
        steps = plan.summary()
        rows.append(
            {
                "id": q["id"],
                "kind": q["kind"],
                "question": q["question"],
                "ok": plan_ok(q["expected"], plan),
                "latency_s": latency,
                "expected": q["expected"],
                "got": steps,
                "problems": plan.problems,
            }
        )
    kinds = sorted({r["kind"] for r in rows})
    acc = lambda rs: sum(r["ok"] for r in rs) / len(rs) if rs else float("nan")  # noqa: E731
    lat = sorted(r["latency_s"] for r in rows)
    return {
        "planner": planner_name,
        "n": len(rows),
        "accuracy": acc(rows),
        "by_kind": {
            k: {"n": sum(r["kind"] == k for r in rows), "accuracy": acc([r for r in rows if r["kind"] == k])}
            for k in kinds
        },
        "latency_median_s": lat[len(lat) // 2] if lat else None,
        "latency_max_s": lat[-1] if lat else None,
        "skipped": skipped,
        "tools": sorted(tools),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    from ..config import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--questions", default="development", help="development, heldout, heldout2 ... heldout5 or a YAML file"
    )
    ap.add_argument("--planner", default="embedded")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the questions planned wrongly")
    a = ap.parse_args(argv)
    res = evaluate(Settings(), load_questions(a.questions), a.planner)
    if a.json:
        print(json.dumps(res, indent=1, default=str))
        return 0
    for r in res["rows"]:
        if a.verbose and not r["ok"]:
            print(
                f"WRONG {r['id']} [{r['kind']}] {r['question']}\n   expected {r['expected']}\n   got      {r['got']}"
                + (f"\n   problems {r['problems']}" if r["problems"] else "")
            )
    for k, v in res["by_kind"].items():
        print(f"{k:14s} {v['accuracy']:.3f}  (n={v['n']})")
    print(
        f"planning accuracy ({res['planner']}): {res['accuracy']:.3f} on {res['n']} questions "
        f"({len(res['skipped'])} skipped: tools not installed); plan latency median "
        f"{res['latency_median_s'] * 1000:.0f} ms, max {res['latency_max_s'] * 1000:.0f} ms after warm-up"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
