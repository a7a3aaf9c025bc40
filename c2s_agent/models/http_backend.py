"""Backend for any OpenAI-compatible server reached by URL: a vLLM server or ``c2s serve``.

Completions use ``/v1/completions`` and embeddings ``/v1/embeddings``. Label scoring uses the fast
``/v1/c2s/score_labels`` endpoint of a c2s-agent server, and on other servers the log-probabilities of
``prompt + label`` echoed back by ``/v1/completions`` (``echo=true, max_tokens=0, logprobs=0``), as vLLM offers.
A c2s-agent server describes its model (labels, prompt set...); a vLLM server started on a local C2S model
directory is described by that directory's ``c2s_model.json`` when this machine can read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from . import constraint
from .backend import Completion, Embeddings, GenParams, LabelScores, refuse_guidance


class OpenAIHTTPBackend:
    name = "openai-http"

    def __init__(self, url: str, settings=None, timeout: float = 600.0, batch_size: int = 64):
        import httpx

        base = url.rstrip("/")
        base = base[:-3] if base.endswith("/v1") else base
        headers = {}
        key = getattr(settings, "api_key", None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=base, headers=headers, timeout=timeout)
        self.url, self.batch_size = base, batch_size
        models = self._call("GET", "/v1/models")["data"]
        if not models:
            raise ModelError(base, "serves no models", "start the server with a model")
        self.model_id = models[0]["id"]
        self.c2s_server = "c2s" in models[0]  # a c2s-agent server, with its extensions
        self.metadata = dict(models[0].get("c2s") or {}) if self.c2s_server else _local_metadata(models[0])
        # another server (vLLM) serving a directory this machine can read: prompts go as token ids of its tokenizer,
        # tokenised as the other backends do, and decoding constraints as vLLM extra arguments (vllm_xargs)
        self.tok = None if self.c2s_server else _local_tokenizer(models[0])

    def _call(self, method: str, path: str, json: dict | None = None) -> dict:
        import httpx

        try:
            r = self.client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ModelError(
                self.url,
                f"could not be reached ({type(exc).__name__}: {exc})",
                "check the URL and that the server is running (c2s serve)",
            ) from None
        if r.status_code == 401:
            raise InputError(self.url, "refused the API key", "set C2S_API_KEY to the server's key")
        if r.status_code >= 400:
            raise ModelError(
                self.url, f"answered {r.status_code} to {path}: {r.text[:300]}", "check the request and server logs"
            )
        return r.json()

    def _chunks(self, items):
        for i in range(0, len(items), self.batch_size):
            yield i, items[i : i + self.batch_size]

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        refuse_guidance(self.name, params)
        out: list[Completion] = []
        for _, chunk in self._chunks(list(prompts)):
            body = {
                "model": self.model_id,
                "prompt": self._prompts(chunk),
                "max_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p if params.temperature > 0 else 1.0,
                "seed": params.seed,
                "logprobs": 1,
                **({"stop": list(params.stop)} if params.stop else {}),
            }
            if params.temperature > 0 and params.top_k:
                body["top_k"] = params.top_k
            body.update(self._constraints(params))
            data = self._call("POST", "/v1/completions", body)
            choices = sorted(data["choices"], key=lambda c: c["index"])
            usage = data.get("usage") or {}
            per_prompt = (usage.get("prompt_tokens") or 0) // max(1, len(chunk))
            for c in choices:
                lp = (c.get("logprobs") or {}).get("token_logprobs") or []
                n = len(lp) or len(c["text"].split())
                out.append(Completion(c["text"].strip(), per_prompt, n, float(sum(x for x in lp if x is not None))))
        return out

    def _prompts(self, texts: list[str]) -> list:
        """Prompts as sent: token ids where the served directory's tokenizer is at hand, else text."""
        return [self.tok(t)["input_ids"] for t in texts] if self.tok is not None else list(texts)

    def _constraints(self, params: GenParams) -> dict:
        """Decoding constraints as request fields: a c2s server's extensions, or vLLM extra arguments read by the
        c2s logits processors (a vLLM server started with them: see vllm_backend.LOGITS_PROCESSORS)."""
        if self.c2s_server:
            return {"ban_repeats": params.ban_repeats, "words": asdict(params.words) if params.words else None}
        xargs = {}
        if params.words is not None and self.tok is not None:
            xargs["c2s_words"] = constraint.encode(self.tok, params.words)
        if params.ban_repeats:
            xargs["ban_repeats"] = True
        return {"vllm_xargs": xargs} if xargs else {}

    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        if self.c2s_server:
            lp, nll, n_tok = [], [], 0
            for _, chunk in self._chunks(list(prompts)):
                data = self._call("POST", "/v1/c2s/score_labels", {"prompts": chunk, "labels": labels})
                lp.extend(data["logprobs"])
                nll.extend(data["prompt_nll"])
                n_tok += data.get("n_tokens", 0)
            return LabelScores(np.asarray(lp, np.float64), np.asarray(nll, np.float64), n_tok)
        # echo each prompt alone and with each label: the label's tokens are those past the prompt's (token
        # counts, not text offsets, which servers compute from token strings); a label is set apart from its
        # prompt by whitespace, which word-level tokenizers need (other backends tokenise the two apart)
        pairs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
        if self.tok is not None:  # prompt and label tokenised apart, as the other backends do
            enc = self._prompts(prompts)
            lab = [self.tok(x, add_special_tokens=False)["input_ids"] for x in labels]
            texts = [enc[i] + lab[j] for i, j in pairs]
            prompt_texts = enc
        else:
            texts = [
                p + (lab if p[-1:].isspace() or lab[:1].isspace() else " " + lab)
                for p, lab in ((prompts[i], labels[j]) for i, j in pairs)
            ]
            prompt_texts = list(prompts)
        echoed, n_tok = self._echo(prompt_texts + texts)
        prompt_lp = echoed[: len(prompts)]
        out = np.zeros((len(prompts), len(labels)))
        for (i, j), lps in zip(pairs, echoed[len(prompts) :]):
            out[i, j] = sum(lps[len(prompt_lp[i]) :])
        nll = np.array([-np.mean(lp[1:]) if len(lp) > 1 else 0.0 for lp in prompt_lp])
        return LabelScores(out, nll, n_tok)

    def _echo(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Each text's token log-probabilities (the first token has none) as echoed by /v1/completions."""
        out, n_tok = [], 0
        for _, chunk in self._chunks(texts):
            body = {
                "model": self.model_id,
                "prompt": chunk,
                "max_tokens": 0,
                "echo": True,
                "logprobs": 0,
                "temperature": 0,
            }
            data = self._call("POST", "/v1/completions", body)
            n_tok += (data.get("usage") or {}).get("prompt_tokens", 0)
            for c in sorted(data["choices"], key=lambda c: c["index"]):
                lps = (c.get("logprobs") or {}).get("token_logprobs")
                if lps is None:
                    raise ModelError(
                        self.url,
                        "does not return prompt log-probabilities (echo)",
                        "use mode='generate', or a server that supports echo with logprobs (vLLM)",
                    )
                out.append([0.0 if x is None else float(x) for x in lps])
        return out, n_tok

    def embed(self, texts: list[str]) -> Embeddings:
        vecs, n_tok = [], 0
        for _, chunk in self._chunks(list(texts)):
            data = self._call("POST", "/v1/embeddings", {"model": self.model_id, "input": chunk})
            vecs.extend(d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"]))
            n_tok += (data.get("usage") or {}).get("prompt_tokens", 0)
        return Embeddings(np.asarray(vecs, np.float32), n_tok)


def _local_tokenizer(entry: dict):
    """The tokenizer of the directory a server reports serving, when this machine can read it; else None."""
    root = Path(entry.get("root") or entry["id"])
    if not (root / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(root)


def _local_metadata(entry: dict) -> dict:
    """The c2s_model.json of the directory a server (e.g. vLLM) reports serving, when it is readable here."""
    meta = Path(entry.get("root") or entry["id"]) / "c2s_model.json"
    try:
        return json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}
