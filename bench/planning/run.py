"""LLM planners against a real model server: SmolLM2-135M-Instruct zero-shot behind ``c2s serve`` (its
/v1/chat/completions with JSON-schema-constrained decoding), with the ``llm`` and ``hybrid`` planners, on every
``--every``-th question of the development set and of held-out set 2 (nothing is tuned on either here).

Per planner and set: exact-plan accuracy, how many plans the LLM made (``planned_by_llm``; the rest fell back to
the embedded planner after two invalid replies; ``--planners embedded`` gives the baseline), invalid model replies, invalid plans that would reach execution (steps whose arguments
the tool's input model rejects, or check problems in a plan the LLM made: must be 0), and the median plan
latency (the model calls, retries and any fallback together, after a warm-up).

Usage: ``python bench/planning/run.py [--model DIR] [--every 8] [--out bench/planning/RESULTS.json]``
(needs ``c2s models pull smollm2``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "c2s_agent", "serve", "--model", model, "--port", str(port), "--threads", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the model server did not start")


def run_set(planner, tools, questions: list[dict], views: dict) -> dict:
    from c2s_agent.agent.dataset import DatasetView
    from c2s_agent.agent.evaluate import plan_ok
    from c2s_agent.data import read

    rows = []
    for q in questions:
        data = q.get("data", "demo")
        if data not in views:
            views[data] = DatasetView.from_adata(read(data, backed=True))
        calls: list[str] = []
        t0 = time.perf_counter()
        plan = planner.plan(q["question"], tools, views[data], record=lambda kind, **f: calls.append(f["name"]))
        latency = time.perf_counter() - t0
        fell_back = any(n.kind == "planner_fallback" for n in plan.notes)
        bad_args = 0
        for s in plan.steps:
            try:
                tools[s.tool].input_model.model_validate(s.args)
            except Exception:  # noqa: BLE001 - counted
                bad_args += 1
        rows.append(
            {
                "id": q["id"],
                "ok": plan_ok(q["expected"], plan),
                "by_llm": not fell_back,
                "model_calls": sum(c.endswith(("plan", "plan:retry")) for c in calls),
                "invalid_replies": sum(c.endswith(":retry") for c in calls) + fell_back,
                "invalid_reaching_execution": bad_args + (0 if fell_back else int(bool(plan.problems and plan.steps))),
                "latency_s": round(latency, 2),
                "expected": q["expected"],
                "got": plan.summary(),
            }
        )
    lat = sorted(r["latency_s"] for r in rows)
    return {
        "n": len(rows),
        "accuracy": round(sum(r["ok"] for r in rows) / len(rows), 3),
        "planned_by_llm": sum(r["by_llm"] for r in rows),
        "correct_by_llm": sum(r["ok"] and r["by_llm"] for r in rows),
        "invalid_replies": sum(r["invalid_replies"] for r in rows),
        "invalid_reaching_execution": sum(r["invalid_reaching_execution"] for r in rows),
        "latency_median_s": lat[len(lat) // 2],
        "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(Path.home() / ".cache/c2s-agent/models/smollm2"))
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--planners", default="llm,hybrid")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.json")))
    a = ap.parse_args()

    from c2s_agent import registry
    from c2s_agent.agent.evaluate import load_questions
    from c2s_agent.agent.planners import get_planner
    from c2s_agent.config import Settings

    port = free_port()
    server = start_server(a.model, port)
    try:
        settings = Settings(llm_base_url=f"http://127.0.0.1:{port}/v1", llm_model="smollm2")
        tools = registry.tools(settings)
        sets = {name: load_questions(name)[:: a.every] for name in ("development", "heldout2")}
        out = {"model": Path(a.model).name, "every": a.every, "cpu_threads_server": 2, "results": {}}
        views: dict = {}
        for name in a.planners.split(","):
            planner = get_planner(settings, name)
            run_set(planner, tools, [{"question": "warm up", "expected": [], "id": "w"}], views)
            for set_name, qs in sets.items():
                res = run_set(planner, tools, qs, views)
                out["results"][f"{name}/{set_name}"] = res
                print(
                    f"{name:8s} {set_name:12s} accuracy {res['accuracy']:.3f} (n={res['n']}), planned without fallback "
                    f"{res['planned_by_llm']} (correct {res['correct_by_llm']}), invalid replies "
                    f"{res['invalid_replies']}, invalid reaching execution {res['invalid_reaching_execution']}, "
                    f"median latency {res['latency_median_s']:.1f} s",
                    flush=True,
                )
                Path(a.out).write_text(json.dumps(out, indent=1))
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
