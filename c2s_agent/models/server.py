"""``c2s serve``: an OpenAI-compatible model server (FastAPI + uvicorn) with C2S task endpoints.

- ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``, ``POST /v1/embeddings``: the
  OpenAI API subset the official ``openai`` client uses (embeddings in float or base64; chat with the model's
  chat template and, given ``response_format`` of type ``json_schema``, decoding constrained to that schema).
- ``POST /v1/c2s/score_labels``, ``/v1/c2s/predict_cell_types``, ``/v1/c2s/generate_cells``, ``/v1/c2s/perturb``,
  ``/v1/c2s/embed``: the C2S tasks.
- Concurrent requests are batched together: one worker thread owns the model and merges every request
  waiting in its queue into one backend call per kind of work.
- Binds 127.0.0.1 unless told otherwise; optional API key (``Authorization: Bearer``, constant-time compare);
  request bodies above ``max_body_bytes`` are refused with 413, and lists and token counts are bounded.
"""

import base64
import hmac
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ..errors import C2SError, InputError
from .backend import Completion, Embeddings, GenParams, LabelScores, cut_at_stop
from .chat import ChatParams, ChatReply
from .constraint import WordList
from .model import C2SModel

MAX_INPUTS = 512
MAX_TEXT = 200_000


class BatchingBackend:
    """Wraps a backend so calls from many threads are merged into batched calls by one worker thread."""

    def __init__(self, backend, max_batch: int = 256):
        self.inner, self.max_batch = backend, max_batch
        self.name, self.model_id, self.metadata = backend.name, backend.model_id, backend.metadata
        self.path = getattr(backend, "path", None)
        self.supports_guidance = getattr(backend, "supports_guidance", False)
        self._q: queue.Queue = queue.Queue()
        self.batches_run = 0
        self.items_run = 0
        threading.Thread(target=self._worker, daemon=True, name="c2s-model-worker").start()

    def _submit(self, kind: str, key, items: list):
        fut: Future = Future()
        self._q.put((kind, key, items, fut))
        return fut.result()

    def complete(self, prompts, params: GenParams) -> list[Completion]:
        twins = params.unconditional or [None] * len(prompts)  # travel with their prompts into merged batches
        return self._submit("complete", replace(params, unconditional=None), list(zip(prompts, twins)))

    def score_labels(self, prompts, labels) -> LabelScores:
        rows = self._submit("score", tuple(labels), list(prompts))
        nll = None if rows and rows[0][1] is None else np.array([r[1] for r in rows])
        return LabelScores(np.array([r[0] for r in rows]).reshape(len(rows), len(labels)), nll, sum(r[2] for r in rows))

    def chat(self, messages: list[dict], params: ChatParams) -> ChatReply:
        if not hasattr(self.inner, "chat"):
            raise InputError(
                f"model {self.model_id!r}",
                "offers no chat",
                "serve a Hugging Face model directory with a chat template",
            )
        return self._submit("chat", None, [(messages, params)])[0]

    def embed(self, texts) -> Embeddings:
        rows = self._submit("embed", None, list(texts))
        return Embeddings(np.array([r[0] for r in rows], np.float32).reshape(len(rows), -1), sum(r[1] for r in rows))

    def _worker(self) -> None:
        while True:
            jobs = [self._q.get()]
            n = len(jobs[0][2])
            while n < self.max_batch:
                try:
                    job = self._q.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                n += len(job[2])
            groups: dict = {}
            for job in jobs:
                groups.setdefault((job[0], repr(job[1])), []).append(job)
            for (kind, _), group in groups.items():
                self._run(kind, group)

    def _run(self, kind: str, group: list) -> None:
        items = [x for job in group for x in job[2]]
        key = group[0][1]
        try:
            if kind == "complete":
                prompts, twins = (list(x) for x in zip(*items))
                res = self.inner.complete(
                    prompts, replace(key, unconditional=tuple(twins) if key.guidance > 0 else None)
                )
            elif kind == "chat":
                res = [self.inner.chat(messages, params) for messages, params in items]
            elif kind == "score":
                s = self.inner.score_labels(items, list(key))
                share = s.n_tokens // max(1, len(items))
                res = [
                    (s.logprobs[i], None if s.prompt_nll is None else float(s.prompt_nll[i]), share)
                    for i in range(len(items))
                ]
            else:
                e = self.inner.embed(items)
                share = e.n_tokens // max(1, len(items))
                res = [(e.vectors[i], share) for i in range(len(items))]
            self.batches_run += 1
            self.items_run += len(items)
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
            for job in group:
                job[3].set_exception(exc)
            return
        start = 0
        for job in group:
            job[3].set_result(res[start : start + len(job[2])])
            start += len(job[2])


# ---------------------------------------------------------------- request models
class WordListRequest(BaseModel):
    """c2s extension: the completion is a list of these words (see c2s_agent.models.constraint.WordList)."""

    words: list[str] = Field(min_length=1, max_length=100_000)
    max_words: int = Field(ge=1, le=4096)
    first: str = " "
    separator: str = " "
    end: str = "."
    distinct: bool = True


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0, le=4096)
    temperature: float = Field(1.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    seed: int | None = None
    n: int = 1
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    stop: str | list[str] | None = None
    stream: bool = False
    ban_repeats: bool = False
    words: WordListRequest | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TEXT)


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0, le=5)
    seed: int | None = None
    n: int = 1
    stream: bool = False
    response_format: dict | None = None

    def schema(self) -> dict | None:
        """The JSON schema the reply must follow (``response_format`` of type json_schema), else None."""
        fmt = self.response_format or {"type": "text"}
        if fmt.get("type") == "text":
            return None
        if fmt.get("type") != "json_schema" or not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
            raise InputError(
                "response_format",
                f"of type {fmt.get('type')!r} is not offered",
                'send {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}} or {"type": "text"}',
            )
        return fmt["json_schema"]["schema"]


class EmbeddingRequest(BaseModel):
    model: str | None = None
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class ScoreRequest(BaseModel):
    prompts: list[str] = Field(max_length=MAX_INPUTS)
    labels: list[str] = Field(min_length=1, max_length=256)


class PredictRequest(BaseModel):
    sentences: list[str] = Field(min_length=1, max_length=MAX_INPUTS)
    mode: Literal["score", "generate"] = "score"
    labels: list[str] | None = None
    threshold: float | None = Field(None, ge=0, le=1)


class GenerateRequest(BaseModel):
    cell_types: list[str] = Field(min_length=1, max_length=MAX_INPUTS)
    conditions: list[str] | None = None
    n_genes: int | None = Field(None, ge=1, le=2048)
    seed: int = 0
    guidance: float | None = Field(None, ge=0, le=20)


class PerturbRequest(BaseModel):
    sentences: list[str] = Field(min_length=1, max_length=MAX_INPUTS)
    perturbation: str
    context: str | None = None
    seed: int = 0


class EmbedRequest(BaseModel):
    sentences: list[str] = Field(min_length=1, max_length=MAX_INPUTS)


def _texts(value: str | list[str], what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise InputError(what, "is empty", "send at least one text")
    if len(items) > MAX_INPUTS:
        raise InputError(what, f"has {len(items)} entries", f"send at most {MAX_INPUTS} per request")
    if any(not isinstance(t, str) for t in items):
        raise InputError(what, "must be text (token id arrays are not supported)", "send strings")
    if any(len(t) > MAX_TEXT for t in items):
        raise InputError(what, f"has a text longer than {MAX_TEXT} characters", "shorten it")
    return items


def create_app(model: C2SModel, api_key: str | None = None, max_body_bytes: int = 4_000_000):
    """The FastAPI application serving ``model`` (its backend is wrapped for cross-request batching)."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    if not isinstance(model.backend, BatchingBackend):
        model = C2SModel(BatchingBackend(model.backend), model.prompts.name)
    backend = model.backend
    model_id = model.name
    created = int(time.time())
    public_meta = {k: v for k, v in model.meta.items() if k != "split"}
    app = FastAPI(title="c2s-agent model server", version="1")
    app.state.model, app.state.backend = model, backend

    @app.middleware("http")
    async def limit_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is None and request.method in ("POST", "PUT", "PATCH"):  # a streamed body would skip the limit
            return JSONResponse(
                {
                    "error": {
                        "message": "request body has no Content-Length; send one (bodies are "
                        f"limited to {max_body_bytes} bytes)",
                        "type": "invalid_request_error",
                    }
                },
                status_code=411,
            )
        if length is not None and int(length) > max_body_bytes:
            return JSONResponse(
                {
                    "error": {
                        "message": f"request body of {length} bytes exceeds {max_body_bytes}",
                        "type": "invalid_request_error",
                    }
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(C2SError)
    async def c2s_error(_, exc: C2SError):
        return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, detail="invalid or missing API key")

    auth = [Depends(check_key)]

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_id, "batches_run": backend.batches_run, "items_run": backend.items_run}

    def model_card():
        return {"id": model_id, "object": "model", "created": created, "owned_by": "c2s-agent", "c2s": public_meta}

    @app.get("/v1/models", dependencies=auth)
    def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}", dependencies=auth)
    def get_model(name: str):
        if name != model_id:
            raise HTTPException(404, detail=f"model {name!r} is not served here; this server serves {model_id!r}")
        return model_card()

    @app.post("/v1/completions", dependencies=auth)
    def completions(req: CompletionRequest):
        if req.n != 1 or req.stream or req.echo:
            raise InputError(
                "request",
                "asks for n>1, stream or echo, which this server does not offer",
                "send n=1, stream=false, echo=false",
            )
        prompts = _texts(req.prompt, "prompt")
        params = GenParams(
            max_new_tokens=req.max_tokens,
            temperature=req.temperature,
            top_k=req.top_k or 0,
            top_p=req.top_p,
            seed=req.seed or 0,
            ban_repeats=req.ban_repeats,
            words=WordList(**{**req.words.model_dump(), "words": tuple(req.words.words)}) if req.words else None,
            stop=tuple([req.stop] if isinstance(req.stop, str) else req.stop or ()),
        )
        comps = backend.complete(prompts, params) if req.max_tokens > 0 else [Completion("", 0, 0) for _ in prompts]
        choices = []
        for i, c in enumerate(comps):
            lp = (
                {"tokens": None, "token_logprobs": c.token_logprobs, "top_logprobs": None, "text_offset": None}
                if req.logprobs is not None
                else None
            )
            choices.append(
                {"index": i, "text": cut_at_stop(c.text, req.stop), "finish_reason": c.finish_reason, "logprobs": lp}
            )
        pt, ct = sum(c.n_prompt_tokens for c in comps), sum(c.n_completion_tokens for c in comps)
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": choices,
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }

    @app.post("/v1/chat/completions", dependencies=auth)
    def chat_completions(req: ChatRequest):
        if req.n != 1 or req.stream:
            raise InputError(
                "request", "asks for n>1 or stream, which this server does not offer", "send n=1, stream=false"
            )
        params = ChatParams(
            max_tokens=req.max_completion_tokens or req.max_tokens or 256,
            temperature=req.temperature,
            seed=req.seed or 0,
            schema=req.schema(),
        )
        r = backend.chat([m.model_dump() for m in req.messages], params)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": r.text},
                    "finish_reason": r.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": r.n_prompt_tokens,
                "completion_tokens": r.n_completion_tokens,
                "total_tokens": r.n_prompt_tokens + r.n_completion_tokens,
            },
        }

    @app.post("/v1/embeddings", dependencies=auth)
    def embeddings(req: EmbeddingRequest):
        texts = _texts(req.input, "input")
        emb = backend.embed(texts)
        data = []
        for i, v in enumerate(emb.vectors):
            vec = (
                base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()
                if req.encoding_format == "base64"
                else [float(x) for x in v]
            )
            data.append({"object": "embedding", "index": i, "embedding": vec})
        return {
            "object": "list",
            "data": data,
            "model": model_id,
            "usage": {"prompt_tokens": emb.n_tokens, "total_tokens": emb.n_tokens},
        }

    @app.post("/v1/c2s/score_labels", dependencies=auth)
    def score_labels(req: ScoreRequest):
        s = backend.score_labels(_texts(req.prompts, "prompts"), req.labels)
        return {
            "logprobs": s.logprobs.tolist(),
            "prompt_nll": None if s.prompt_nll is None else s.prompt_nll.tolist(),
            "n_tokens": s.n_tokens,
        }

    @app.post("/v1/c2s/predict_cell_types", dependencies=auth)
    def predict(req: PredictRequest):
        df = model.predict_cell_types(
            _texts(req.sentences, "sentences"), mode=req.mode, labels=req.labels, threshold=req.threshold
        )
        probs = [c for c in df.columns if c.startswith("p_")]
        return {
            "predictions": [
                {
                    "label": r["label"],
                    "confidence": float(r["confidence"]),
                    "unknown_reason": r["unknown_reason"],
                    "probs": {c[2:]: float(r[c]) for c in probs},
                }
                for _, r in df.iterrows()
            ]
        }

    @app.post("/v1/c2s/generate_cells", dependencies=auth)
    def generate(req: GenerateRequest):
        return {
            "sentences": model.generate(
                req.cell_types, req.conditions, n_genes=req.n_genes, seed=req.seed, guidance=req.guidance
            )
        }

    @app.post("/v1/c2s/perturb", dependencies=auth)
    def perturb(req: PerturbRequest):
        return {
            "sentences": model.perturb(
                _texts(req.sentences, "sentences"), req.perturbation, context=req.context, seed=req.seed
            )
        }

    @app.post("/v1/c2s/embed", dependencies=auth)
    def embed(req: EmbedRequest):
        return {"embeddings": model.embed(_texts(req.sentences, "sentences")).tolist()}

    return app


def serve(
    model: C2SModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_body_bytes: int = 4_000_000,
    log_level: str = "warning",
) -> None:
    """Run the server until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model, api_key, max_body_bytes), host=host, port=port, log_level=log_level)
