"""The model server on a real uvicorn on 127.0.0.1: the official openai client, the C2S endpoints, the HTTP
backend, API keys, size limits, and a bounded concurrent load (32 clients, 1,000 requests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest

from c2s_agent.errors import InputError

KEY = "test-key-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def model():
    import torch

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(None, Settings(threads=1))


@pytest.fixture(scope="module")
def server(model):
    from c2s_agent.models.server import create_app

    app = create_app(model, api_key=None, max_body_bytes=200_000)
    srv, thread, url = _start(app)
    yield url, app
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def keyed_server(model):
    from c2s_agent.models.server import create_app

    srv, thread, url = _start(create_app(model, api_key=KEY))
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def cells(kang, model):
    test = model.meta["split"]["test_obs_names"][:24]
    return kang[test].copy()


def test_openai_client_works_unchanged(server, model, cells):
    from openai import OpenAI

    url, _ = server
    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    ids = [m.id for m in client.models.list().data]
    assert ids == [model.name]
    texts, _, _ = model.sentences(cells[:3], 128)
    prompt = model.prompts.format("cell_type", cell=texts[0])
    out = client.completions.create(model=model.name, prompt=prompt, max_tokens=2, temperature=0)
    assert out.choices[0].text.split()[0].replace("_", " ") in model.known_labels
    assert out.usage.prompt_tokens > 100 and out.usage.completion_tokens >= 1
    emb = client.embeddings.create(model=model.name, input=[prompt, "Cell sentence: CD74 LYZ ."])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == model.backend.model.config.hidden_size
    local = model.embed([texts[0]])[0]
    np.testing.assert_allclose(emb.data[0].embedding, local, atol=1e-4)
    gen = client.completions.create(
        model=model.name,
        prompt=model.prompts.format("generation", condition="ctrl", cell_type="B"),
        max_tokens=30,
        temperature=1.0,
        seed=1,
    )
    assert len(gen.choices[0].text.split()) >= 10


def test_http_backend_matches_in_process_model(server, model, cells):
    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    url, _ = server
    remote = load_model(url, Settings(threads=1))
    assert remote.backend.name == "openai-http" and remote.known_labels == model.known_labels
    a = remote.predict_cell_types(cells[:12])
    b = model.predict_cell_types(cells[:12])
    assert a["label"].tolist() == b["label"].tolist()
    np.testing.assert_allclose(a["confidence"], b["confidence"], atol=1e-4)
    np.testing.assert_allclose(remote.embed(cells[:4]), model.embed(cells[:4]), atol=1e-4)
    sents = remote.generate(["NK", "B"], ["ctrl", "stim"], n_genes=40, seed=2)
    assert all(len(set(s.split())) == len(s.split()) > 5 for s in sents)


def test_task_endpoints(server, model, cells):
    import httpx

    url, _ = server
    texts, _, _ = model.sentences(cells[:5], 128)
    r = httpx.post(f"{url}/v1/c2s/predict_cell_types", json={"sentences": texts}, timeout=60).json()
    assert [p["label"] for p in r["predictions"]] == model.predict_cell_types(texts)["label"].tolist()
    r = httpx.post(
        f"{url}/v1/c2s/generate_cells", json={"cell_types": ["CD14 Mono"], "conditions": ["stim"]}, timeout=60
    )
    assert r.status_code == 200 and len(r.json()["sentences"][0].split()) > 10
    # guided generation (the default) through the request-merging worker: each prompt keeps its own twin
    body = {"cell_types": ["NK", "B", "CD14 Mono"], "conditions": ["ctrl", "stim", "ctrl"], "seed": 4}
    assert httpx.post(f"{url}/v1/c2s/generate_cells", json=body, timeout=60).json()["sentences"] == model.generate(
        body["cell_types"], body["conditions"], seed=4
    )
    assert model.meta["generation_guidance"] > 0
    r = httpx.post(f"{url}/v1/c2s/perturb", json={"sentences": texts[:2], "perturbation": "IFN-beta"}, timeout=60)
    assert len(r.json()["sentences"]) == 2
    r = httpx.post(f"{url}/v1/c2s/embed", json={"sentences": texts[:2]}, timeout=60)
    assert np.asarray(r.json()["embeddings"]).shape == (2, model.backend.model.config.hidden_size)
    r = httpx.post(f"{url}/v1/c2s/generate_cells", json={"cell_types": ["Neuron"]}, timeout=60)
    assert r.status_code == 400 and "not known to this model" in r.json()["error"]["message"]


def test_limits_and_bad_requests(server):
    import httpx

    url, _ = server
    r = httpx.post(
        f"{url}/v1/completions",
        content=b'{"prompt": "' + b"A " * 150_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "n": 3})
    assert r.status_code == 400 and "n>1" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"prompt": [], "max_tokens": 1})
    assert r.status_code == 400 and "prompt: is empty" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 100000})
    assert r.status_code == 422
    # the embedded C2S model reads cell sentences, not chat: one clear line (chat is tested with SmolLM2)
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "has no chat template" in r.json()["error"]["message"]


def test_api_key_is_required_when_set(keyed_server):
    import httpx
    from openai import AuthenticationError, OpenAI

    assert httpx.get(f"{keyed_server}/v1/models").status_code == 401
    assert httpx.get(f"{keyed_server}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{keyed_server}/health").status_code == 200
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{keyed_server}/v1", api_key="wrong").models.list()
    assert OpenAI(base_url=f"{keyed_server}/v1", api_key=KEY).models.list().data
    from c2s_agent.config import Settings
    from c2s_agent.models.http_backend import OpenAIHTTPBackend

    with pytest.raises(InputError, match="refused the API key"):
        OpenAIHTTPBackend(keyed_server, Settings(api_key="wrong"))


def test_32_concurrent_clients_1000_requests_batched_without_error(server):
    """Bounded load: 32 clients send 1,000 short requests in total; every one succeeds and requests are
    merged into shared batches."""
    import httpx

    url, app = server
    backend = app.state.backend
    before_batches, before_items = backend.batches_run, backend.items_run
    bodies = [
        ("/v1/embeddings", {"input": f"Cell sentence: CD74 LYZ S100A{i % 12} ."})
        if i % 2
        else (
            "/v1/completions",
            {"prompt": "Generate a ctrl B cell . Cell sentence:", "max_tokens": 2, "temperature": 0},
        )
        for i in range(1000)
    ]

    async def run():
        queue: asyncio.Queue = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)
        statuses = []

        async def client():
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                while not queue.empty():
                    path, body = queue.get_nowait()
                    statuses.append((await c.post(path, json=body)).status_code)

        await asyncio.gather(*[client() for _ in range(32)])
        return statuses

    statuses = asyncio.run(run())
    assert len(statuses) == 1000 and set(statuses) == {200}
    batches = backend.batches_run - before_batches
    items = backend.items_run - before_items
    assert items == 1000 and batches < 500, batches
