"""`c2s ask --planner llm` end to end against a real vLLM OpenAI server serving SmolLM2-135M-Instruct (the pulled
stand-in) on 127.0.0.1: plans asked for under vLLM's structured output (`response_format` json_schema), checked or
replaced, run, and observed after each step within the step budget."""

from __future__ import annotations


def test_c2s_ask_with_the_llm_planner_against_a_vllm_server(serving, ask_with_llm_planner, tmp_path):
    from c2s_agent.models.catalogue import pulled_path

    args = ["vllm.entrypoints.openai.api_server", "--model", pulled_path("smollm2"), "--served-model-name", "smollm2"]
    args += ["--dtype", "float32", "--enforce-eager", "--max-model-len", "4096"]
    with serving(args, tmp_path / "vllm.log") as url:
        ask_with_llm_planner(f"{url}/v1")
