"""The tuned planner (the embedded planner with the bundled fine-tuned SmolLM2 tool chooser) against the embedded
planner on every bundled planning question set, in one process on the same questions.

Per planner and set: exact-plan accuracy, median and largest plan latency (after a warm-up), and for the tuned
planner how many clauses went to the model and how many of its choices differ from the matcher's best tool.

Usage: ``python bench/planning/tuned.py [--out bench/planning/TUNED.json]`` (needs ``c2s models pull smollm2``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from c2s_agent.agent.evaluate import QUESTION_SETS, evaluate, load_questions
from c2s_agent.agent.planners import get_planner
from c2s_agent.config import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("TUNED.json")))
    a = ap.parse_args()
    settings = Settings(threads=2)
    tuned = get_planner(settings, "tuned")
    out: dict = {"threads": 2, "results": {}}
    print(
        f"{'set':12s} {'n':>4s} {'embedded':>9s} {'tuned':>7s} {'ratio':>6s} {'model calls':>12s} {'changed':>8s} "
        f"{'latency median/max (s), tuned':>30s}",
        file=sys.stderr,
    )
    for name in QUESTION_SETS:
        qs = load_questions(name)
        emb = evaluate(settings, qs, "embedded")
        calls, overrides = tuned.calls, tuned.overrides
        tun = evaluate(settings, qs, "tuned", planner=tuned)
        row = {
            "n": emb["n"],
            "embedded": round(emb["accuracy"], 3),
            "tuned": round(tun["accuracy"], 3),
            "model_calls": tuned.calls - calls,
            "choices_changed": tuned.overrides - overrides,
            "latency_median_s": round(tun["latency_median_s"], 3),
            "latency_max_s": round(tun["latency_max_s"], 3),
            "embedded_latency_median_s": round(emb["latency_median_s"], 3),
            "wrong_tuned": [r["id"] for r in tun["rows"] if not r["ok"]],
            "wrong_embedded": [r["id"] for r in emb["rows"] if not r["ok"]],
        }
        out["results"][name] = row
        print(
            f"{name:12s} {row['n']:4d} {row['embedded']:9.3f} {row['tuned']:7.3f} "
            f"{row['tuned'] / row['embedded']:6.2f} {row['model_calls']:12d} {row['choices_changed']:8d} "
            f"{row['latency_median_s']:14.2f} / {row['latency_max_s']:.2f}",
            file=sys.stderr,
        )
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: {m: v[m] for m in ("n", "embedded", "tuned")} for k, v in out["results"].items()}))


if __name__ == "__main__":
    main()
