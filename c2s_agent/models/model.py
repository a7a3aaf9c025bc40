"""C2SModel: the C2S tasks (cell type prediction, generation, perturbation, embedding, multi-cell prompts)
on top of any backend, and :func:`load_model`, which loads a model once per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import C2SError, InputError, ModelError
from ..resources import bundled
from . import prompts as prompt_sets
from .backend import Backend, GenParams
from .tokenizer import label_token

UNKNOWN = "unknown"
DEFAULT_K = 200
Recorder = Callable[..., None]


def embedded_model_path() -> Path:
    """The directory of the model bundled with c2s-agent."""
    return bundled("data") / "models" / "c2s-embedded"


class C2SModel:
    """A C2S model behind a backend. Inputs are CellSentences, an AnnData, or a list of sentence strings;
    outputs are aligned with the input cells."""

    def __init__(self, backend: Backend, prompt_set: str | None = None):
        self.backend = backend
        self.meta = dict(backend.metadata or {})
        self.prompts = prompt_sets.get(prompt_set or self.meta.get("prompt_set") or "cell2sentence")
        self.top_k = {"cell_type": DEFAULT_K, "generation": DEFAULT_K, "perturbation": DEFAULT_K,
                      **self.meta.get("top_k", {})}
        genes = self.meta.get("genes")
        self.genes: list[str] | None = list(genes) if genes else None
        self._gene_set = frozenset(self.genes) if self.genes else None
        order = self.meta.get("gene_priority")
        self._priority = {g: i for i, g in enumerate(order)} if order else None
        # genes that respond to the experimental condition in the model's training cells: cell-type prompts
        # leave them out, so a cell's predicted type does not hinge on its stimulation state
        self.condition_genes = frozenset(self.meta.get("condition_genes", ()))

    def _rank(self, adata, k: int, exclude: frozenset) -> tuple[list[str], np.ndarray]:
        """Top-``k`` sentences of the model's genes straight from the expression matrix (one pass of the ranking
        kernel), ties broken in the model's training order so a cell's sentence does not depend on the other
        cells given; and the fraction of each cell's top-``k`` genes (``exclude`` left out) the model knows."""
        from ..data import prepare
        from ..sentences.transform import _priority, gene_vocabulary, rank_csr, ranking_matrix, sentence_strings

        tie_break = self.meta.get("tie_break", "random")
        # ranks need no normalisation; a tie order by gene means needs the normalised values
        X, data, _ = ranking_matrix(prepare(adata) if self._priority is None and tie_break == "mean" else adata)
        names, usable = gene_vocabulary(data.var_names, on_collision="keep_first")  # as the agent notes
        if self._priority is None:
            priority, inv = _priority(len(names), tie_break, 42, X)
        else:  # the model's genes in training order, then every other gene
            rank = np.array([self._priority.get(g, len(self._priority)) for g in names], np.int64)
            inv = np.lexsort((np.arange(len(names)), rank)).astype(np.int32)
            priority = np.empty(len(names), np.uint32)
            priority[inv] = np.arange(len(names), dtype=np.uint32)

        def top(mask):
            return rank_csr(X, k, priority, inv, mask)[0] if mask.any() else np.full((X.shape[0], 0), -1)

        def member(genes):
            return np.fromiter((g in genes for g in names), bool, len(names))

        usable = usable & ~member(exclude)
        idx = top(usable)
        known = np.ones(len(idx))
        if self._gene_set is not None:
            model_gene = member(self._gene_set)
            real = idx >= 0
            known = (model_gene[np.maximum(idx, 0)] & real).sum(1) / np.maximum(1, real.sum(1))
            idx = top(usable & model_gene)
        return sentence_strings(idx, names), known

    # -- what the model knows ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", self.backend.model_id)

    @property
    def known_labels(self) -> list[str]:
        return list(self.meta.get("labels", []))

    @property
    def known_conditions(self) -> list[str]:
        return list(self.meta.get("conditions", []))

    @property
    def known_perturbations(self) -> list[str]:
        return list(self.meta.get("perturbations", []))

    @property
    def confidence_threshold(self) -> float:
        return float(self.meta.get("ood", {}).get("confidence_threshold", 0.5))

    def _token(self, label: str) -> str:
        """How a label is written in prompts/responses: one token for the embedded model, else the text."""
        return label_token(label) if self.meta.get("single_token_labels", bool(self.meta)) else label

    # -- inputs --------------------------------------------------------------------------------------------
    def sentences(self, cells, k: int, exclude: frozenset = frozenset()) -> tuple[list[str], np.ndarray, pd.Index]:
        """Top-``k`` known-gene sentences for ``cells`` (genes in ``exclude`` left out before the cut); also the
        fraction of each cell's top-``k`` genes that the model knows, and the cell names."""
        from ..sentences import CellSentences

        if hasattr(cells, "obs_names") and hasattr(cells, "X"):
            if cells.n_obs == 0:
                raise InputError("cells", "are empty", "pass at least one cell")
            texts, known = self._rank(cells, k, exclude)
            return texts, known, cells.obs_names.copy()
        if isinstance(cells, CellSentences):
            names = cells.obs_names
            words = [cells.words(i) for i in range(len(cells))]
        elif isinstance(cells, str):
            raise InputError("cells", "is a single string", "pass a list of sentences, CellSentences or an AnnData")
        elif isinstance(cells, Sequence):
            if not all(isinstance(s, str) for s in cells):
                raise InputError("cells", "must be sentence strings", "pass a list of space-separated gene names")
            words = [s.replace(",", " ").strip().rstrip(".").upper().split() for s in cells]
            names = pd.Index([f"cell_{i}" for i in range(len(cells))])
        else:
            raise InputError("cells", f"is a {type(cells).__name__}", "pass an AnnData, CellSentences or a list of sentences")
        if len(words) == 0:
            raise InputError("cells", "are empty", "pass at least one cell")
        out, known = [], np.ones(len(words))
        for i, w in enumerate(words):
            if exclude:
                w = [g for g in w if g not in exclude]
            if self._gene_set is not None:
                top = w[:k]
                known[i] = sum(g in self._gene_set for g in top) / max(1, len(top))
                w = [g for g in w if g in self._gene_set]
            out.append(" ".join(w[:k]))
        return out, known, names

    # -- cell type prediction ------------------------------------------------------------------------------
    def predict_cell_types(self, cells, mode: str = "score", labels: list[str] | None = None,
                           threshold: float | None = None, on_call: Recorder | None = None) -> pd.DataFrame:
        """Cell types with a confidence per cell; "unknown" below ``threshold`` or for atypical cells.

        ``mode="score"`` scores every candidate label by log-likelihood (batched forward passes) and returns
        ``p_<label>`` columns; ``mode="generate"`` decodes greedily and maps the text onto a known label
        (anything else becomes "unknown"). Never returns a label outside the candidate set."""
        if mode not in ("score", "generate"):
            raise InputError("mode", f"{mode!r} is not a prediction mode", "use 'score' or 'generate'")
        threshold = self.confidence_threshold if threshold is None else float(threshold)
        if not 0 <= threshold <= 1:
            raise InputError("threshold", f"must be in [0, 1] (got {threshold})", "pass a probability such as 0.5")
        labels = self._candidate_labels(labels)
        prompts, known, names = self.cell_type_prompts(cells)
        t0 = time.perf_counter()
        if mode == "score":
            cont = [self.prompts.response("cell_type", label=self._token(x)) for x in labels]
            if not self.meta:
                cont = [" " + c for c in cont]
            scores = self.backend.score_labels(prompts, cont)
            self._record(on_call, "predict_cell_types", len(prompts), t0, prompt_tokens=scores.n_tokens)
            lp = scores.logprobs - scores.logprobs.max(1, keepdims=True)
            probs = np.exp(lp) / np.exp(lp).sum(1, keepdims=True)
            best = probs.argmax(1)
            df = pd.DataFrame({"label": np.asarray(labels, dtype=object)[best], "confidence": probs.max(1)}, index=names)
            nll = scores.prompt_nll
        else:
            # single-token labels: decoding is constrained to the candidates' tokens (then end of text)
            allowed = tuple(self._token(x) for x in labels) if self.meta.get("single_token_labels") else None
            comps = self.backend.complete(prompts, GenParams(max_new_tokens=2 if allowed else 8, temperature=0.0,
                                                             allowed=allowed))
            self._record(on_call, "predict_cell_types", len(prompts), t0,
                         prompt_tokens=sum(c.n_prompt_tokens for c in comps),
                         completion_tokens=sum(c.n_completion_tokens for c in comps))
            lookup = {self._norm(self._token(x)): x for x in labels} | {self._norm(x): x for x in labels}
            got = [lookup.get(self._norm(c.text)) for c in comps]
            df = pd.DataFrame({"label": [g or UNKNOWN for g in got],
                               "confidence": [float(np.exp(c.logprob)) if g else 0.0 for c, g in zip(comps, got)]},
                              index=names)
            df["generated_text"] = [c.text for c in comps]
            nll, probs = None, None
        df["known_gene_fraction"] = known
        reason = np.where(df["confidence"].to_numpy() < threshold, "low confidence", "")
        ood = self.meta.get("ood", {})
        if nll is not None:
            df["sentence_nll"] = nll
            if "max_sentence_nll" in ood:
                reason = np.where(nll > ood["max_sentence_nll"], "atypical cell", reason)
        reason = np.where(known < ood.get("min_known_gene_fraction", 0.0), "few known genes", reason)
        df["unknown_reason"] = reason
        df.loc[reason != "", "label"] = UNKNOWN
        if probs is not None:
            for j, lab in enumerate(labels):
                df[f"p_{lab}"] = probs[:, j]
        return df

    def cell_type_prompts(self, cells) -> tuple[list[str], np.ndarray, pd.Index]:
        """The cell-type prediction prompt of each cell (its top-K genes, the model's condition genes left out),
        the fraction of its top genes the model knows, and the cell names."""
        texts, known, names = self.sentences(cells, self.top_k["cell_type"], self.condition_genes)
        return [self.prompts.format("cell_type", cell=t, num_genes=len(t.split())) for t in texts], known, names

    @staticmethod
    def _norm(text: str) -> str:
        return " ".join(str(text).replace("_", " ").strip().rstrip(".").lower().split())

    def _candidate_labels(self, labels):
        known = self.known_labels
        if labels is None:
            if not known:
                raise InputError("labels", "are needed: this model does not list the labels it knows",
                                 "pass the candidate cell types, e.g. labels=['B', 'NK', 'CD14 Mono']")
            return known
        labels = list(dict.fromkeys(str(x) for x in labels))
        if len(labels) < 2:
            raise InputError("labels", f"give {len(labels)} candidate(s)", "pass at least two candidate cell types")
        if known:
            bad = [x for x in labels if x not in known]
            if bad:
                raise InputError("labels", f"{bad} are not labels this model was trained on",
                                 f"choose from {known}")
        return labels

    # -- generation ----------------------------------------------------------------------------------------
    def generate(self, cell_types: list[str], conditions: list[str] | None = None, n_genes: int | None = None,
                 seed: int = 0, temperature: float = 1.0, top_k: int = 50, top_p: float = 0.95,
                 guidance: float | None = None, on_call: Recorder | None = None) -> list[str]:
        """One generated cell sentence per requested cell type (and condition; default the first known
        condition). Genes are never repeated within a sentence and only known genes are emitted.
        ``guidance``: classifier-free guidance weight towards the requested type (default: the model's
        ``generation_guidance`` where the backend offers guidance, else 0)."""
        if isinstance(cell_types, str):
            cell_types = [cell_types]
        if not cell_types:
            raise InputError("cell_types", "is empty", "pass at least one cell type")
        self._check_known("cell type", cell_types, self.known_labels)
        if conditions is None:
            conditions = [self.known_conditions[0] if self.known_conditions else ""] * len(cell_types)
        if isinstance(conditions, str):
            conditions = [conditions] * len(cell_types)
        if len(conditions) != len(cell_types):
            raise InputError("conditions", f"has {len(conditions)} entries for {len(cell_types)} cell types",
                             "give one condition per cell type, or a single condition")
        self._check_known("condition", conditions, self.known_conditions)
        n_genes = int(n_genes or self.top_k["generation"])
        if n_genes < 1:
            raise InputError("n_genes", f"must be >= 1 (got {n_genes})", "ask for a positive number of genes")
        prompts = [self.prompts.format("generation", cell_type=self._token(c), label=self._token(c), condition=d,
                                       num_genes=n_genes) for c, d in zip(cell_types, conditions)]
        if guidance is None:
            guidance = self.meta.get("generation_guidance", 0.0) if getattr(self.backend, "supports_guidance", False) else 0.0
        twins = None
        if guidance > 0:
            twins = tuple(self.prompts.format("generation_unconditional", condition=d, num_genes=n_genes) for d in conditions)
        return self._complete_sentences(prompts, n_genes, seed, temperature, top_k, top_p, on_call, "generate",
                                        guidance, twins)

    def perturb(self, cells, perturbation: str, context: str | None = None, seed: int = 0, n_genes: int | None = None,
                temperature: float = 1.0, top_k: int = 50, top_p: float = 0.95,
                on_call: Recorder | None = None) -> list[str]:
        """The predicted perturbed sentence for each control cell under ``perturbation``."""
        self._check_known("perturbation", [perturbation], self.known_perturbations)
        task = "perturbation"
        if context:
            if "perturbation_context" not in self.meta.get("tasks", ["perturbation_context"]):
                raise InputError("context", "this model was not trained with perturbation contexts",
                                 "omit context, or use a model trained with context prompts")
            task = "perturbation_context"
        k = self.top_k["perturbation"]
        texts, _, _ = self.sentences(cells, k)
        prompts = [self.prompts.format(task, cell=t, perturbation=perturbation, context=context or "",
                                       num_genes=len(t.split())) for t in texts]
        return self._complete_sentences(prompts, int(n_genes or k), seed, temperature, top_k, top_p, on_call, "perturb")

    def _complete_sentences(self, prompts, n_genes, seed, temperature, top_k, top_p, on_call, kind,
                            guidance: float = 0.0, twins: tuple[str, ...] | None = None) -> list[str]:
        allowed = tuple(self.genes) + (".",) if self.genes else None
        params = GenParams(max_new_tokens=n_genes + 1, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                           ban_repeats=True, allowed=allowed, guidance=guidance, unconditional=twins)
        t0 = time.perf_counter()
        comps = self.backend.complete(prompts, params)
        self._record(on_call, kind, len(prompts), t0, prompt_tokens=sum(c.n_prompt_tokens for c in comps),
                     completion_tokens=sum(c.n_completion_tokens for c in comps))
        return [" ".join([w for w in c.text.split() if w != "."][:n_genes]) for c in comps]

    @staticmethod
    def _check_known(what: str, values, known: list[str]) -> None:
        if not known:
            return
        bad = sorted({v for v in values if v not in known})
        if bad:
            raise InputError(what, f"{bad} not known to this model", f"choose from {known}")

    # -- embeddings ----------------------------------------------------------------------------------------
    def embed(self, cells, on_call: Recorder | None = None) -> np.ndarray:
        """Cell embeddings (n, d): the mean last hidden state over the real tokens of each cell's prompt."""
        texts, _, _ = self.sentences(cells, self.top_k["cell_type"])
        prompts = [self.prompts.format("cell_type", cell=t, num_genes=len(t.split())) for t in texts]
        t0 = time.perf_counter()
        emb = self.backend.embed(prompts)
        self._record(on_call, "embed", len(prompts), t0, prompt_tokens=emb.n_tokens)
        return emb.vectors

    # -- multi-cell ----------------------------------------------------------------------------------------
    def multicell_prompt(self, cells, groups: Sequence[int], interactions: Sequence[str] | None = None,
                         top_k: int = 50) -> str:
        """A multi-cell prompt ("Cell 1: ...") for the cells at positions ``groups``, with optional interaction
        knowledge (e.g. "CCL5 -> CCR5") injected as text before the cells."""
        texts, _, _ = self.sentences(cells, top_k)
        lines = "\n".join(f"Cell {n}: {texts[i]} ." for n, i in enumerate(groups, start=1))
        knowledge = ""
        if interactions:
            tmpl = self.prompts.extra.get("multicell_knowledge", "Known interactions: {interactions} .\n")
            knowledge = tmpl.format(interactions="; ".join(interactions))
        return self.prompts.format("multicell", cells=lines, knowledge=knowledge)

    def complete(self, prompts: list[str], params: GenParams | None = None, on_call: Recorder | None = None) -> list[str]:
        """Free completion of raw prompts (e.g. multi-cell prompts)."""
        t0 = time.perf_counter()
        comps = self.backend.complete(list(prompts), params or GenParams())
        self._record(on_call, "complete", len(prompts), t0, prompt_tokens=sum(c.n_prompt_tokens for c in comps),
                     completion_tokens=sum(c.n_completion_tokens for c in comps))
        return [c.text for c in comps]

    def _record(self, on_call, task, n, t0, **tokens) -> None:
        if on_call is not None:
            on_call("model", task=task, model=self.name, backend=self.backend.name, n_inputs=n,
                    seconds=round(time.perf_counter() - t0, 4), **tokens)


_CACHE: dict[tuple, C2SModel] = {}
_LOCK = threading.Lock()


def resolve(model: str | None, settings=None) -> tuple[str, str]:
    """(backend name, model path or URL) for a model value: None/"embedded", a directory, or a URL."""
    value = str(model or getattr(settings, "model", None) or "embedded")
    wanted = getattr(settings, "backend", "auto") or "auto"
    if value.startswith(("http://", "https://")):
        return ("openai-http" if wanted == "auto" else wanted), value.rstrip("/")
    path = embedded_model_path() if value == "embedded" else Path(value).expanduser()
    if not path.exists():
        if value == "embedded":
            raise ModelError("embedded model", f"not found at {path}", "reinstall c2s-agent, or run `c2s train`")
        raise InputError(value, "is not a model directory or an http(s) URL",
                         "pass a folder written by save_pretrained, 'embedded', or a server URL such as http://127.0.0.1:8000")
    return ("transformers" if wanted == "auto" else wanted), str(path)


def model_metadata(settings=None, model: str | None = None) -> dict:
    """A model's ``c2s_model.json`` (labels, conditions, perturbations ...) read without loading its weights;
    {} for a model served by URL or one without metadata."""
    import json

    try:
        _, target = resolve(model, settings)
    except C2SError:
        return {}
    meta = Path(target) / "c2s_model.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def load_model(model: str | None = None, settings=None) -> C2SModel:
    """Load a model once per process: None or "embedded" (the bundled model), a local HF directory, or the
    URL of an OpenAI-compatible server (a vLLM server or ``c2s serve``)."""
    from ..config import Settings
    from .. import registry

    settings = settings or Settings()
    backend_name, target = resolve(model, settings)
    key = (backend_name, target, settings.dtype, settings.device, settings.threads, settings.api_key)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        factories = {name: reg.factory for name, reg in registry.backends(settings).items()}
        if backend_name not in factories:
            raise InputError("backend", f"{backend_name!r} is not registered", f"use one of {sorted(factories)}")
        _CACHE[key] = C2SModel(factories[backend_name](target, settings))
        return _CACHE[key]
