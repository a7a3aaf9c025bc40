"""The run ledger: one row per call, keyed by (run, step, seq); a re-run step replaces its rows."""

from __future__ import annotations

from c2s_agent.agent.ledger import Ledger
from c2s_agent.tools import StepResult


def test_ledger_rows_tokens_and_rerun_without_duplicates(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite", "r1")
    led.record("plan", "planner", name="embedded:minilm", duration_s=0.1, arguments={"question": "q"})
    led.start_step("s1", "embed_cells", {"top_k": 5})
    # the model layer's field names (as c2s_agent.models passes them through ToolContext.record_call)
    led.record(
        "s1",
        "model",
        task="embed",
        model="c2s-embedded",
        backend="transformers",
        n_inputs=700,
        seconds=1.5,
        prompt_tokens=98700,
    )
    led.record("s1", "model", task="embed", model="c2s-embedded", seconds=0.5, prompt_tokens=100)
    assert led.finished("s1") is None  # still running
    led.start_step("s1", "embed_cells", {"top_k": 5})  # the step re-runs after a crash
    led.record("s1", "model", task="embed", model="c2s-embedded", seconds=1.4, prompt_tokens=98700)
    result = StepResult(step="s1", tool="embed_cells", args={"top_k": 5}, evidence="embedded", duration_s=2.0)
    led.finish_step("s1", "ok", 2.0, result=result)
    rows = [(r["step_id"], r["seq"], r["kind"], r["name"], r["status"]) for r in led.rows()]
    assert sorted(rows) == [
        ("plan", 1, "planner", "embedded:minilm", "ok"),
        ("s1", 0, "tool", "embed_cells", "ok"),
        ("s1", 1, "model", "c2s-embedded.embed", "ok"),
    ]
    model = next(r for r in led.rows() if r["kind"] == "model")
    assert model["tokens_in"] == 98700 and model["duration_s"] == 1.4 and '"backend"' not in (model["arguments"] or "")
    assert led.finished("s1") == result and led.results() == [result]
    assert led.totals() == {"calls": 3, "model_calls": 2, "tokens_in": 98700, "tokens_out": 0, "tool_seconds": 2.0}
    led.close()
    again = Ledger(tmp_path / "ledger.sqlite", "r1")  # a resumed process sees the same rows
    assert len(again.rows()) == 3 and again.finished("s1") == result
    again.close()
