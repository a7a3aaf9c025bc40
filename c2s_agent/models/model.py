"""C2SModel: the C2S tasks (cell type prediction, generation, perturbation, embedding, multi-cell prompts)
on top of any backend, and :func:`load_model`, which loads a model once per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions.slots import CELL_TYPE, CONDITION
from ..errors import C2SError, InputError, ModelError
from ..resources import bundled
from . import prompts as prompt_sets
from .backend import Backend, GenParams
from .constraint import WordList
from .tokenizer import label_token

UNKNOWN = "unknown"
DEFAULT_K = 200
FREE_TEXT_TOKENS = 24  # a free-text cell type: its first sentence, at most this many tokens
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
        self.prompts = prompt_sets.get(prompt_set or self.meta.get("prompt_set") or "c2s-scale")
        self.top_k = {
            CELL_TYPE: DEFAULT_K,
            "generation": DEFAULT_K,
            "perturbation": DEFAULT_K,
            **self.meta.get("top_k", {}),
        }
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

    def organism(self, cells=None) -> str:
        """The organism prompts name: told by the gene names of ``cells`` (an AnnData, CellSentences or sentence
        strings), else the model's own (its training data's), else the prompt set's."""
        from ..conventions import detect_species

        names = None
        if hasattr(cells, "var_names"):
            names = cells.var_names
        elif hasattr(cells, "genes"):
            names = cells.genes
        elif isinstance(cells, Sequence) and not isinstance(cells, str):
            names = [w for s in list(cells)[:50] if isinstance(s, str) for w in s.replace(",", " ").split()]
        found = detect_species(names).name if names is not None else None
        return found or self.meta.get("organism") or self.prompts.organism

    def _template_parts(self, task: str, field: str) -> tuple[str, str]:
        """What a task's response template writes before and after its ``{field}``: how a completion starts and ends."""
        before, _, after = self.prompts.template(task)[1].partition("{" + field + "}")
        return before, after

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
            raise InputError(
                "cells", f"is a {type(cells).__name__}", "pass an AnnData, CellSentences or a list of sentences"
            )
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
    def predict_cell_types(
        self,
        cells,
        mode: str = "score",
        labels: list[str] | None = None,
        threshold: float | None = None,
        on_call: Recorder | None = None,
    ) -> pd.DataFrame:
        """Cell types with a confidence per cell; "unknown" below ``threshold`` or for atypical cells.

        ``mode="score"`` scores every candidate label by log-likelihood (the prompt read once per cell) and
        returns ``p_<label>`` columns. ``mode="generate"`` decodes greedily: with candidate labels (given, or the
        model's own) decoding is constrained to them; with none, the model writes its own words (free text),
        normalised to a Cell Ontology term (``cell_ontology_id``) when one matches and kept verbatim otherwise,
        with the text's probability as confidence."""
        if mode not in ("score", "generate"):
            raise InputError("mode", f"{mode!r} is not a prediction mode", "use 'score' or 'generate'")
        threshold = self.confidence_threshold if threshold is None else float(threshold)
        if not 0 <= threshold <= 1:
            raise InputError("threshold", f"must be in [0, 1] (got {threshold})", "pass a probability such as 0.5")
        labels = self._candidate_labels(labels, free_text=mode == "generate")
        prompts, known, names = self.cell_type_prompts(cells)
        ood = self.meta.get("ood", {})
        t0 = time.perf_counter()
        probs = None
        if mode == "score":
            cont = [self.prompts.response(CELL_TYPE, label=self._token(x)) for x in labels]
            scores = self.backend.score_labels(prompts, cont)
            self._record(on_call, "predict_cell_types", len(prompts), t0, prompt_tokens=scores.n_tokens)
            lp = scores.logprobs - scores.logprobs.max(1, keepdims=True)
            probs = np.exp(lp) / np.exp(lp).sum(1, keepdims=True)
            best = probs.argmax(1)
            df = pd.DataFrame(
                {"label": np.asarray(labels, dtype=object)[best], "confidence": probs.max(1)}, index=names
            )
            nll = scores.prompt_nll
        else:
            comps = self._generate_labels(prompts, labels, "max_sentence_nll" in ood)
            self._record(
                on_call,
                "predict_cell_types",
                len(prompts),
                t0,
                prompt_tokens=sum(c.n_prompt_tokens for c in comps),
                completion_tokens=sum(c.n_completion_tokens for c in comps),
            )
            df = self._read_labels(comps, labels, names)
            nll = np.array([c.prompt_nll for c in comps], float) if comps[0].prompt_nll is not None else None
        df["known_gene_fraction"] = known
        reason = np.where(df["confidence"].to_numpy() < threshold, "low confidence", "")
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

    def _generate_labels(self, prompts: list[str], labels: list[str] | None, prompt_nll: bool):
        """Greedy answers to cell-type prompts: one of ``labels`` (decoding constrained to them), or free text
        up to the end of its first sentence."""
        if labels is not None:
            first, end = self._template_parts(CELL_TYPE, "label")
            words = WordList(tuple(self._token(x) for x in labels), 1, first=first, end=end)
            params = GenParams(max_new_tokens=64, temperature=0.0, words=words, prompt_nll=prompt_nll)
        else:
            params = GenParams(
                max_new_tokens=FREE_TEXT_TOKENS, temperature=0.0, stop=(".", "\n"), prompt_nll=prompt_nll
            )
        return self.backend.complete(prompts, params)

    def _read_labels(self, comps, labels: list[str] | None, names) -> pd.DataFrame:
        """The label of each answer: a candidate label, or (free text) a Cell Ontology term's name when the text
        names one, else the text itself; confidence is the answer's probability."""
        from ..conventions import ontology

        conf = np.array([float(np.exp(c.logprob)) for c in comps])
        texts = [c.text for c in comps]
        if labels is not None:
            lookup = {self._norm(self._token(x)): x for x in labels} | {self._norm(x): x for x in labels}
            got = [lookup.get(self._norm(t)) for t in texts]
            df = pd.DataFrame(
                {"label": [g or UNKNOWN for g in got], "confidence": np.where([g is not None for g in got], conf, 0.0)},
                index=names,
            )
        else:
            terms = [ontology.lookup(t, strict=True) if t.strip() else None for t in texts]
            words = [term.name if term else (t.strip() or UNKNOWN) for t, term in zip(texts, terms)]
            df = pd.DataFrame(
                {"label": words, "confidence": conf, "cell_ontology_id": [term.id if term else "" for term in terms]},
                index=names,
            )
        df["generated_text"] = texts
        return df

    def cell_type_prompts(self, cells) -> tuple[list[str], np.ndarray, pd.Index]:
        """The cell-type prediction prompt of each cell (its top-K genes, the model's condition genes left out),
        the fraction of its top genes the model knows, and the cell names."""
        texts, known, names = self.sentences(cells, self.top_k[CELL_TYPE], self.condition_genes)
        organism = self.organism(cells)
        return (
            [self.prompts.format(CELL_TYPE, cell=t, num_genes=len(t.split()), organism=organism) for t in texts],
            known,
            names,
        )

    @staticmethod
    def _norm(text: str) -> str:
        return " ".join(str(text).replace("_", " ").strip().rstrip(".").lower().split())

    def _candidate_labels(self, labels, free_text: bool = False):
        """The labels to choose from: ``labels``, else the model's own; None (free text) with ``free_text``
        when neither is given."""
        known = self.known_labels
        if labels is None:
            if not known and free_text:
                return None
            if not known:
                raise InputError(
                    "labels",
                    "are needed: this model does not list the labels it knows",
                    "pass the candidate cell types, e.g. labels=['B', 'NK', 'CD14 Mono'], or use "
                    "mode='generate' for the model's own words",
                )
            return known
        labels = list(dict.fromkeys(str(x) for x in labels))
        if len(labels) < 2:
            raise InputError("labels", f"give {len(labels)} candidate(s)", "pass at least two candidate cell types")
        if known:
            bad = [x for x in labels if x not in known]
            if bad:
                raise InputError("labels", f"{bad} are not labels this model was trained on", f"choose from {known}")
        return labels

    # -- generation ----------------------------------------------------------------------------------------
    def generate(
        self,
        cell_types: list[str],
        conditions: list[str] | None = None,
        n_genes: int | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 0.95,
        guidance: float | None = None,
        genes: Sequence[str] | None = None,
        organism: str | None = None,
        on_call: Recorder | None = None,
    ) -> list[str]:
        """One generated cell sentence per requested cell type (and condition; default the first known
        condition). Genes come from ``genes`` (default: the model's vocabulary; unconstrained for a model
        without one) and are never repeated within a sentence. ``guidance``: classifier-free guidance weight
        towards the requested type (default: the model's ``generation_guidance`` where the backend offers
        guidance, else 0). ``organism``: named in the prompt (default: the model's)."""
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
            raise InputError(
                "conditions",
                f"has {len(conditions)} entries for {len(cell_types)} cell types",
                "give one condition per cell type, or a single condition",
            )
        self._check_known(CONDITION, conditions, self.known_conditions)
        n_genes = int(n_genes or self.top_k["generation"])
        if n_genes < 1:
            raise InputError("n_genes", f"must be >= 1 (got {n_genes})", "ask for a positive number of genes")
        organism = organism or self.organism()
        prompts = [
            self.prompts.format(
                "generation",
                cell_type=self._token(c),
                label=self._token(c),
                condition=d,
                num_genes=n_genes,
                organism=organism,
            )
            for c, d in zip(cell_types, conditions)
        ]
        if guidance is None:
            guidance = (
                self.meta.get("generation_guidance", 0.0) if getattr(self.backend, "supports_guidance", False) else 0.0
            )
        twins = None
        if guidance > 0:
            twins = tuple(
                self.prompts.format("generation_unconditional", condition=d, num_genes=n_genes, organism=organism)
                for d in conditions
            )
        return self._complete_sentences(
            prompts,
            "generation",
            n_genes,
            genes or self.genes,
            seed,
            temperature,
            top_k,
            top_p,
            on_call,
            "generate",
            guidance,
            twins,
        )

    def perturb(
        self,
        cells,
        perturbation: str,
        context: str | None = None,
        seed: int = 0,
        n_genes: int | None = None,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 0.95,
        on_call: Recorder | None = None,
    ) -> list[str]:
        """The predicted perturbed sentence for each control cell under ``perturbation``, of the model's genes (or,
        for a model without a vocabulary, the genes of ``cells``)."""
        self._check_known("perturbation", [perturbation], self.known_perturbations)
        task = "perturbation"
        if context:
            if "perturbation_context" not in self.meta.get("tasks", ["perturbation_context"]):
                raise InputError(
                    "context",
                    "this model was not trained with perturbation contexts",
                    "omit context, or use a model trained with context prompts",
                )
            task = "perturbation_context"
        k = self.top_k["perturbation"]
        texts, _, _ = self.sentences(cells, k)
        organism = self.organism(cells)
        prompts = [
            self.prompts.format(
                task,
                cell=t,
                perturbation=perturbation,
                context=context or "",
                num_genes=len(t.split()),
                organism=organism,
            )
            for t in texts
        ]
        return self._complete_sentences(
            prompts,
            task,
            int(n_genes or k),
            self.genes or self._input_genes(cells),
            seed,
            temperature,
            top_k,
            top_p,
            on_call,
            "perturb",
        )

    @staticmethod
    def _input_genes(cells) -> list[str] | None:
        """The usable gene names of an AnnData (or CellSentences); None for sentence strings."""
        from ..sentences.transform import gene_vocabulary

        if hasattr(cells, "var_names"):
            names, usable = gene_vocabulary(cells.var_names)
            return [str(g) for g in names[usable]]
        return [str(g) for g in cells.genes] if hasattr(cells, "genes") else None

    def _complete_sentences(
        self,
        prompts,
        task,
        n_genes,
        genes,
        seed,
        temperature,
        top_k,
        top_p,
        on_call,
        kind,
        guidance: float = 0.0,
        twins: tuple[str, ...] | None = None,
    ) -> list[str]:
        """Cell sentences completing ``prompts``: at most ``n_genes`` distinct genes of ``genes`` (decoding
        constrained to them, written as the task's response writes a cell), or unconstrained without genes."""
        first, end = self._template_parts(task, "cell")
        words = WordList(tuple(dict.fromkeys(genes)), n_genes, first=first, end=end) if genes else None
        params = GenParams(
            max_new_tokens=n_genes * 8 + 2,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            ban_repeats=words is None,
            words=words,
            guidance=guidance,
            unconditional=twins,
        )
        t0 = time.perf_counter()
        comps = self.backend.complete(prompts, params)
        self._record(
            on_call,
            kind,
            len(prompts),
            t0,
            prompt_tokens=sum(c.n_prompt_tokens for c in comps),
            completion_tokens=sum(c.n_completion_tokens for c in comps),
        )
        return [" ".join(c.text.removesuffix(end.strip()).split()[:n_genes]) for c in comps]

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
        texts, _, _ = self.sentences(cells, self.top_k[CELL_TYPE])
        organism = self.organism(cells)
        prompts = [self.prompts.format(CELL_TYPE, cell=t, num_genes=len(t.split()), organism=organism) for t in texts]
        t0 = time.perf_counter()
        emb = self.backend.embed(prompts)
        self._record(on_call, "embed", len(prompts), t0, prompt_tokens=emb.n_tokens)
        return emb.vectors

    # -- multi-cell ----------------------------------------------------------------------------------------
    def multicell_prompt(
        self,
        cells,
        groups: Sequence[int],
        interactions: Sequence[str] | None = None,
        top_k: int = 50,
        task: str = "multicell",
        **values,
    ) -> str:
        """A multi-cell prompt ("Cell 1: ...", each cell written as the prompt set writes one) for the cells at
        positions ``groups``, with optional interaction knowledge (e.g. "CCL5 -> CCR5") injected as text before
        the cells. ``task``: a multi-cell task of the prompt set; ``values`` fill its other placeholders."""
        texts, _, _ = self.sentences(cells, top_k)
        line = self.prompts.extra.get("multicell_cell", prompt_sets.CELL_LINE)
        lines = "".join(line.format(n=n, cell=texts[i]) for n, i in enumerate(groups, start=1))
        knowledge = ""
        if interactions:
            tmpl = self.prompts.extra.get("multicell_knowledge")
            if not tmpl:
                raise InputError(
                    "interactions",
                    f"cannot be injected: prompt set {self.prompts.name!r} has no knowledge template",
                    "use a prompt set with one (embedded, c2s-scale)",
                )
            knowledge = tmpl.format(interactions="; ".join(interactions))
        return self.prompts.format(
            task,
            cells=lines,
            knowledge=knowledge,
            num_cells=len(groups),
            num_genes=top_k,
            organism=self.organism(cells),
            **values,
        )

    def complete(
        self, prompts: list[str], params: GenParams | None = None, on_call: Recorder | None = None
    ) -> list[str]:
        """Free completion of raw prompts (e.g. multi-cell prompts)."""
        t0 = time.perf_counter()
        comps = self.backend.complete(list(prompts), params or GenParams())
        self._record(
            on_call,
            "complete",
            len(prompts),
            t0,
            prompt_tokens=sum(c.n_prompt_tokens for c in comps),
            completion_tokens=sum(c.n_completion_tokens for c in comps),
        )
        return [c.text for c in comps]

    def _record(self, on_call, task, n, t0, **tokens) -> None:
        if on_call is not None:
            on_call(
                "model",
                task=task,
                model=self.name,
                backend=self.backend.name,
                n_inputs=n,
                seconds=round(time.perf_counter() - t0, 4),
                **tokens,
            )


_CACHE: dict[tuple, C2SModel] = {}
_LOCK = threading.Lock()


def _named_model(value: str, settings=None) -> Path | None:
    """The directory a model name stands for: "embedded" and the other models bundled in ``data/models``, or a
    model pulled by ``c2s models pull``; None for anything else (a path or a URL)."""
    from .catalogue import CATALOGUE, pulled_path

    if value == "embedded":
        return embedded_model_path()
    if value in CATALOGUE:
        return pulled_path(value, settings)
    bundled_dir = embedded_model_path().parent / value
    return bundled_dir if "/" not in value and (bundled_dir / "c2s_model.json").is_file() else None


def resolve(model: str | None, settings=None) -> tuple[str, str]:
    """(backend name, model path or URL) for a model value: None/"embedded", another bundled model's name, a pulled
    model's name ("smollm2"), a directory, or a URL."""
    value = str(model or getattr(settings, "model", None) or "embedded")
    wanted = getattr(settings, "backend", "auto") or "auto"
    if value.startswith(("http://", "https://")):
        return ("openai-http" if wanted == "auto" else wanted), value.rstrip("/")
    path = _named_model(value, settings) or Path(value).expanduser()
    if not path.exists():
        if value == "embedded":
            raise ModelError("embedded model", f"not found at {path}", "reinstall c2s-agent, or run `c2s train`")
        raise InputError(
            value,
            "is not a model directory or an http(s) URL",
            "pass a folder written by save_pretrained, 'embedded', or a server URL such as http://127.0.0.1:8000",
        )
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
    from .. import registry
    from ..config import Settings

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
