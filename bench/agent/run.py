"""Agent benchmark: plan latency after warm-up, and the orchestration overhead share of a demo run.

Runs ``c2s ask`` on the demo question in fresh processes (the first fills the planner's embedding cache) and
reads each run's timings from run.json:

    orchestration = planning + graph + checkpoints + ledger = wall - (load data + tools + save data + report)

Prints ratios; no pass/fail. Usage: ``python bench/agent/run.py [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "Which marker genes distinguish the cell types, and how do monocytes respond to interferon?"
THREE_STEP = (
    "Annotate the cells with the C2S model, then score ligand-receptor communication from monocytes to T "
    "cells, and report the evidence"
)


def plan_latency(n: int = 20) -> tuple[float, float]:
    from c2s_agent.agent.vocabulary import Vocabulary

    from c2s_agent import registry
    from c2s_agent.agent.evaluate import load_questions
    from c2s_agent.agent.planners.embedded import EmbeddedPlanner
    from c2s_agent.config import Settings
    from c2s_agent.data import read

    settings = Settings()
    tools = registry.tools(settings)
    vocab = Vocabulary.from_adata(read("demo", backed=True))
    planner = EmbeddedPlanner(settings)
    t0 = time.perf_counter()
    planner.plan(QUESTION, tools, vocab)
    warm = time.perf_counter() - t0
    qs = [q["question"] for q in load_questions()][:n]
    times = []
    for q in qs:
        t0 = time.perf_counter()
        planner.plan(q, tools, vocab)
        times.append(time.perf_counter() - t0)
    times.sort()
    return warm, times[len(times) // 2], times[-1]


def in_process() -> None:
    """A second run in a warm process (as in a notebook or the server): no imports or model loading left."""
    from c2s_agent.agent.runs import ask
    from c2s_agent.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(runs_dir=Path(tmp) / "runs", cache_dir=Path(tmp) / "cache")
        ask(QUESTION, "demo", s)
        t = ask(QUESTION, "demo", s)["run"]["timings"]
    orch = t["total_s"] - t["load_s"] - t["tools_s"] - t["persist_s"] - t["report_s"] - t.get("imports_s", 0)
    print(
        f"warm process: wall {t['total_s']:.2f} s, tools {t['tools_s']:.2f} s, planning {t['plan_s']:.2f} s; "
        f"orchestration {orch:.2f} s = {orch / t['total_s']:.1%} of wall; with data saving "
        f"{(orch + t['persist_s']) / t['total_s']:.1%}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    c2s = str(Path(sys.executable).parent / "c2s")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "C2S_RUNS_DIR": f"{tmp}/runs",
            "C2S_CACHE_DIR": f"{tmp}/cache",
            "OMP_WAIT_POLICY": "PASSIVE",
            "HF_HUB_OFFLINE": "1",
        }
        for i in range(a.repeats):
            t0 = time.perf_counter()
            p = subprocess.run([c2s, "ask", QUESTION, "--data", "demo"], env=env, capture_output=True, text=True)
            wall_proc = time.perf_counter() - t0
            if p.returncode:
                sys.exit(p.stderr)
            run = json.loads((Path(p.stdout.strip().splitlines()[-1]).parent / "run.json").read_text())
            t = run["timings"]
            orch = t["total_s"] - t["load_s"] - t["tools_s"] - t["persist_s"] - t["report_s"] - t.get("imports_s", 0)
            label = "cold cache" if i == 0 else "warm cache"
            print(
                f"run {i + 1} ({label}): wall {t['total_s']:.2f} s (process {wall_proc:.2f} s incl. imports); "
                f"tools {t['tools_s']:.2f} s, load {t['load_s']:.2f} s, planning {t['plan_s']:.2f} s, "
                f"save data {t['persist_s']:.2f} s, report {t['report_s']:.2f} s, importing langgraph {t.get('imports_s', 0):.2f} s"
            )
            print(
                f"  orchestration (planning+graph+checkpoints+ledger) {orch:.2f} s = {orch / t['total_s']:.1%} of wall; "
                f"with data saving {(orch + t['persist_s']) / t['total_s']:.1%}"
            )
        t0 = time.perf_counter()  # annotate -> interactions -> report, in a fresh process (model load included)
        p = subprocess.run([c2s, "ask", THREE_STEP, "--data", "demo"], env=env, capture_output=True, text=True)
        wall_proc = time.perf_counter() - t0
        if p.returncode:
            sys.exit(p.stderr)
        rd = Path(p.stdout.strip().splitlines()[-1]).parent
        steps = [(s["tool"], s.get("duration_s", 0)) for s in json.loads((rd / "plan.json").read_text())["steps"]]
        t = json.loads((rd / "run.json").read_text())["timings"]
        print(
            f"three-step ask (annotate, interactions, report): process wall {wall_proc:.1f} s (target <= 60 s, "
            f"ratio {wall_proc / 60:.2f}); run wall {t['total_s']:.1f} s, tools {t['tools_s']:.1f} s; "
            f"steps {[name for name, _ in steps]}"
        )
    in_process()
    warm, med, mx = plan_latency()
    print(
        f"plan latency: first plan in a process {warm * 1000:.0f} ms (model load + tool embeddings); "
        f"after warm-up median {med * 1000:.0f} ms, max {mx * 1000:.0f} ms (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
