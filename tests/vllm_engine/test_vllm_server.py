"""A real vLLM OpenAI server on 127.0.0.1 serving the embedded model: our HTTP backend, loaded by URL, gives the
transformers backend's greedy completions and cell type predictions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from c2s_agent.models.backend import GenParams


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from c2s_agent.models.model import embedded_model_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(embedded_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=os.environ.copy()
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(vllm_server, settings_1t):
    from c2s_agent.models import load_model

    return load_model(vllm_server, settings_1t)


def test_model_is_described_by_its_directory(served, reference):
    assert served.backend.name == "openai-http" and not served.backend.c2s_server
    assert served.prompts.name == "embedded" and served.known_labels == reference.known_labels


def test_greedy_completions_agree(served, reference, held_out):
    texts, _, _ = reference.sentences(held_out[:6], reference.top_k["perturbation"])
    prompts = [reference.prompts.format("perturbation", cell=t, perturbation="IFN-beta") for t in texts]
    params = GenParams(max_new_tokens=64)
    a = reference.backend.complete(prompts, params)
    b = served.backend.complete(prompts, params)
    assert [c.text for c in b] == [c.text for c in a]
    assert [c.n_completion_tokens for c in b] == [c.n_completion_tokens for c in a]
    np.testing.assert_allclose([c.logprob for c in b], [c.logprob for c in a], rtol=1e-4)


def test_cell_type_prediction_agrees(served, reference, held_out, same_as_reference):
    same_as_reference(served)
    # greedy decoding on a vLLM server is unconstrained (no allowed-token extension), and picks the same labels
    g = served.predict_cell_types(held_out, mode="generate", threshold=0.0)
    assert list(g["label"]) == list(reference.predict_cell_types(held_out, mode="generate", threshold=0.0)["label"])
