"""`c2s ask --planner llm` end to end against a real vLLM OpenAI server serving SmolLM2-135M-Instruct (the pulled
stand-in) on 127.0.0.1: plans asked for under vLLM's structured output (`response_format` json_schema), checked or
replaced, run, and observed after each step within the step budget."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_c2s_ask_with_the_llm_planner_against_a_vllm_server(serving, tmp_path):
    from c2s_agent import registry
    from c2s_agent.config import Settings
    from c2s_agent.models.catalogue import pulled_path

    args = ["vllm.entrypoints.openai.api_server", "--model", pulled_path("smollm2"), "--served-model-name", "smollm2"]
    args += ["--dtype", "float32", "--enforce-eager", "--max-model-len", "4096"]
    with serving(args, tmp_path / "vllm.log") as url:
        env = {
            **os.environ,
            "C2S_LLM_BASE_URL": f"{url}/v1",
            "C2S_LLM_MODEL": "smollm2",
            "C2S_LLM_MAX_TOKENS": "96",
            "C2S_MAX_STEPS": "3",
            "C2S_RUNS_DIR": str(tmp_path / "runs"),
        }
        cmd = [sys.executable, "-m", "c2s_agent", "ask", "Which marker genes distinguish the cell types?"]
        out = subprocess.run(cmd + ["--data", "demo", "--planner", "llm"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir = Path(out.stdout.strip().splitlines()[-1]).parent
    plan = json.loads((run_dir / "plan.json").read_text())
    fell_back = [n for n in plan["notes"] if n["kind"] == "planner_fallback" and "planned instead" in n["text"]]
    assert plan["steps"] and plan["planner"] == ("embedded" if fell_back else "llm"), plan
    assert len(plan["steps"]) <= 3 and not plan["problems"], plan
    tools = registry.tools(Settings())
    for step in plan["steps"]:
        tools[step["tool"]].input_model.model_validate(step["args"])
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    calls = db.execute("SELECT name, status, tokens_in FROM calls WHERE kind='model'").fetchall()
    ran = [r[0] for r in db.execute("SELECT step_id FROM calls WHERE kind='tool' AND status='ok' ORDER BY started")]
    db.close()
    assert ran == [s["id"] for s in plan["steps"]]  # every step of the final plan ran, nothing else
    assert any(c[0] == "llm:plan" for c in calls) and any(c[0].startswith("llm:observe") for c in calls), calls
    assert all(c[1] == "ok" and c[2] > 100 for c in calls), calls
