"""Planner accuracy on the planning benchmark (``evals/planning/questions.yaml``), scored by the same function
as ``c2s eval planning``: :func:`c2s_agent.agent.evaluate.evaluate`. One item per question."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..evaluation.tasks import Task


class PlannerAccuracy(Task):
    name = "planner_accuracy"
    description = "exact plan accuracy of the planner on the planning benchmark"
    uses_dataset = False
    defaults = {"planner": "embedded", "questions": None, "limit": None}
    better = {"accuracy": "higher"}
    shard_size = 16

    def check_params(self, params, suite_path):
        from .evaluate import QUESTION_SETS

        params = super().check_params(params, suite_path)
        if params["questions"] is not None and params["questions"] not in QUESTION_SETS:
            path = Path(params["questions"])
            if not path.is_absolute() and suite_path is not None:
                path = suite_path.parent / path
            params["questions"] = str(path.resolve())
        return params

    def _questions(self, cell) -> list[dict]:
        from .evaluate import load_questions

        qs = load_questions(cell.params["questions"] or "development")
        limit = cell.params["limit"]
        return qs[:limit] if limit else qs

    def items(self, cell, settings) -> list[dict]:
        return [{"id": q["id"], "question": q} for q in self._questions(cell)]

    def run(self, cell, items, settings) -> list[dict]:
        from .evaluate import evaluate

        res = evaluate(settings, [it["question"] for it in items], cell.params["planner"])
        by_id = {r["id"]: r for r in res["rows"]}
        out = []
        for it in items:
            r = by_id.get(it["id"])
            if r is None:
                out.append({"skipped": True, "kind": it["question"]["kind"], "reason": "its tools are not installed"})
            else:
                out.append(
                    {
                        "skipped": False,
                        "kind": r["kind"],
                        "ok": bool(r["ok"]),
                        "got": r["got"],
                        "problems": list(r["problems"]),
                    }
                )
        return out

    def summarise(self, cell, results) -> dict:
        done = [r for r in results if not r["skipped"]]
        if not done:
            raise InputError(
                "planner_accuracy",
                "every question was skipped (tools not installed)",
                "install the plugins the questions need",
            )
        out = {
            "n_questions": len(done),
            "n_skipped": len(results) - len(done),
            "accuracy": sum(r["ok"] for r in done) / len(done),
        }
        for kind in sorted({r["kind"] for r in done}):
            rows = [r for r in done if r["kind"] == kind]
            out[f"accuracy_{kind}"] = sum(r["ok"] for r in rows) / len(rows)
        return out


TASK = PlannerAccuracy()
